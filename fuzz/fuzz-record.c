/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * fuzz-record.c — nvt_record_decode() on hostile blob record values.
 * Input: control byte, then the record value (header and payload), whose
 * two CRC32Cs are recomputed unless the control byte says not to.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "fuzz-util.h"
#include "record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t ctl;
    size_t n;
    uint8_t *rec = fz_body(data, size, &ctl, &n);
    if (!rec)
        return 0;
    if (!(ctl & FZ_KEEP_CHECKSUMS) && n >= NVT_RECORD_HEADER_SIZE)
        fz_fix_records(rec, n);

    nvt_record_meta meta;
    for (int check = 0; check < 2; check++) {
        if (nvt_record_decode("fuzz/blob", rec, n, check, &meta) == 0 &&
            (meta.length > meta.max_size ||
             NVT_RECORD_HEADER_SIZE + nvt_record_stored_len(&meta) != n ||
             (meta.encrypted && (!meta.present || n < NVT_RECORD_HEADER_SIZE +
                                                     NVT_RECORD_CRYPT_OVERHEAD))))
            abort();                      /* accepted a record that does not add up */
    }
    g_free(rec);
    return 0;
}
