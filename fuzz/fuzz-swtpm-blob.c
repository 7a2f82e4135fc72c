/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * fuzz-swtpm-blob.c — swtpm's state blob container (header and TLVs)
 * decoded without a key, as nvram-tool import-swtpm does for plain state.
 * Input: control byte, then the blob; unless the control byte says not
 * to, the header's totlen is set to the blob's length (it is the only
 * field a mutation almost always breaks).
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
    uint8_t *blob = fz_body(data, size, &ctl, &n);
    if (!blob)
        return 0;
    if (!(ctl & FZ_KEEP_CHECKSUMS) && n >= 10) {
        blob[6] = (uint8_t)(n >> 24);
        blob[7] = (uint8_t)(n >> 16);
        blob[8] = (uint8_t)(n >> 8);
        blob[9] = (uint8_t)n;
    }
    GByteArray *plain = NULL;
    GError *err = NULL;
    swtpm_blob_info info;
    swtpm_blob_keylen(blob, n);
    if (swtpm_blob_decode(blob, n, NULL, &plain, &info, &err)) {
        /* never more bytes out than in, and nothing decrypted without a key
         * (an encrypted blob with no TLVs at all is an empty state) */
        if (!plain || plain->len > n || (info.encrypted && plain->len))
            abort();
        g_byte_array_unref(plain);
    } else {
        if (!err || !err->message[0] || plain)
            abort();                      /* a refusal says why and returns nothing */
        g_error_free(err);
    }
    g_free(blob);
    return 0;
}
