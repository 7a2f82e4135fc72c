/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * fuzz-superblock.c — nvt_sb_decode() on hostile slots.
 * Input: control byte, u64 (LE) size of the backend, the slot (padded with
 * zeros or cut to 128 bytes).  A slot it accepts must describe regions
 * that lie inside the backend: the harness aborts otherwise.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "fuzz-util.h"
#include "image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 9)
        return 0;
    uint8_t ctl = data[0], slot[NVT_SB_ENCODED_SIZE] = { 0 };
    uint64_t backend_size = fz_le64(data + 1);
    size_t n = size - 9 < sizeof slot ? size - 9 : sizeof slot;
    memcpy(slot, data + 9, n);
    if (!(ctl & FZ_KEEP_CHECKSUMS))
        fz_fix_superblock(slot);

    nvt_superblock sb;
    char why[160];
    if (nvt_sb_decode(slot, backend_size, &sb, why, sizeof why) < 0) {
        if (!why[0])
            abort();                      /* every refusal says why */
        return 0;
    }
    /* What the decoder promises to the rest of the library. */
    if (sb.image_size > backend_size || sb.tdb_offset + sb.tdb_capacity > sb.image_size ||
        sb.tdb_logical > sb.tdb_capacity ||
        (sb.journal_length && sb.journal_offset + sb.journal_length > sb.image_size))
        abort();
    return 0;
}
