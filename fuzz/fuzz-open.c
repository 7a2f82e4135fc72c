/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * fuzz-open.c — the whole read-only life of a hostile image through the
 * public API: open (NVRAMTDB_OPEN_READONLY) on a memory backend, start
 * (superblocks, tdb guard, tdb open, journal recovery into a private
 * copy), get_info, list, read every blob, check, close.
 *
 * Input: an image is mostly zeros, so it is given as patches:
 *   u8 control, u16 (LE) image size in 4 KiB pages (at least 2, at most
 *   2048), then patches {u32 offset, u16 length, bytes} (LE) applied in
 *   order to an image of zeros (clipped to the image).
 * Unless the control byte says not to, the harness then recomputes the
 * CRCs of both superblock slots, of the journal frames in the region the
 * first valid slot gives (stamped with its UUID) and of every blob record
 * in the tdb region.  fuzz/mkseeds writes images in this form.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "backend.h"
#include "fuzz-util.h"
#include "image.h"
#include "nvramtdb.h"
#include "nvttest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_PAGES 2048u

static void fix_checksums(uint8_t *img, size_t len)
{
    nvt_superblock sb;
    char why[160];
    bool have = false;
    for (int i = 0; i < 2; i++) {
        uint8_t *slot = img + (size_t)i * NVT_SB_SLOT_SIZE;
        if (memcmp(slot, NVT_IMAGE_MAGIC, 8) != 0)
            continue;
        fz_fix_superblock(slot);
        if (!have)
            have = nvt_sb_decode(slot, len, &sb, why, sizeof why) == 0;
    }
    if (!have)
        return;
    fz_fix_records(img + sb.tdb_offset, sb.tdb_capacity);
    if (sb.journal_length)
        fz_fix_journal(img + sb.journal_offset, sb.journal_length, sb.uuid);
}

static void ignore_problem(void *opaque, const char *problem)
{
    (void)problem;
    (*(unsigned *)opaque)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    uint8_t ctl = data[0];
    size_t pages = (size_t)data[1] | (size_t)data[2] << 8;
    if (pages < 2 || pages > MAX_PAGES)
        return 0;
    size_t len = pages * NVT_IMAGE_ALIGN;
    uint8_t *img = g_malloc0(len);
    for (size_t at = 3; at + 6 <= size;) {
        size_t off = fz_le32(data + at), n = (size_t)data[at + 4] | (size_t)data[at + 5] << 8;
        at += 6;
        if (n > size - at)
            n = size - at;
        if (off < len)
            memcpy(img + off, data + at, MIN(n, len - off));
        at += n;
    }
    if (!(ctl & FZ_KEEP_CHECKSUMS))
        fix_checksums(img, len);

    nvt_backend *be = nvt_mem_backend_new(img, len);
    g_free(img);
    nvramtdb *db = NULL;
    if (nvt_open_backend(be, NVRAMTDB_OPEN_READONLY, &db) < 0)
        return 0;
    if (nvramtdb_start(db, 0) == 0) {
        nvramtdb_info info = { .struct_size = sizeof info };
        nvramtdb_get_info(db, &info);
        nvramtdb_entry *entries = NULL;
        size_t count = 0;
        if (nvramtdb_list(db, sizeof(nvramtdb_entry), &entries, &count) == 0) {
            for (size_t i = 0; i < count; i++) {
                uint8_t *value = NULL;
                size_t value_len = 0;
                if (nvramtdb_read(db, entries[i].name, &value, &value_len) == 0 &&
                    value_len > entries[i].max_size)
                    abort();              /* a value above its blob's maximum */
                free(value);
            }
            free(entries);
        }
        unsigned problems = 0;
        nvramtdb_check(db, ignore_problem, &problems);
    }
    nvramtdb_close(db);
    return 0;
}
