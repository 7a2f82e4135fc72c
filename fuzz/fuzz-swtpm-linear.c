/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * fuzz-swtpm-linear.c — swtpm's linear file backend (header and section
 * table), then every section it finds decoded as a state blob, as
 * nvram-tool import-swtpm file://... does.  Input: control byte (bit 2:
 * decode the sections with a key), then the file.  The file has no
 * checksums.  Every section must lie inside the file after its header.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "fuzz-util.h"
#include "swtpm-crypt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t ctl;
    size_t n;
    uint8_t *file = fz_body(data, size, &ctl, &n);
    if (!file)
        return 0;
    swtpm_key key = { .len = 16 };
    memset(key.bytes, 0x5a, sizeof key.bytes);

    swtpm_linear_entry e[SWTPM_NSTATES];
    GError *err = NULL;
    if (swtpm_linear_parse(file, n, e, &err)) {
        for (unsigned i = 0; i < SWTPM_NSTATES; i++) {
            if (!e[i].present)
                continue;
            if (e[i].offset > n || e[i].length > n - e[i].offset)
                abort();
            GByteArray *plain = NULL;
            if (swtpm_blob_decode(file + e[i].offset, e[i].length, ctl & 4 ? &key : NULL,
                                  &plain, NULL, &err))
                g_byte_array_unref(plain);
            else
                g_clear_error(&err);
        }
    } else {
        if (!err || !err->message[0])
            abort();
        g_error_free(err);
    }
    g_free(file);
    return 0;
}
