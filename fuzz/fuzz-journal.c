/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * fuzz-journal.c — journal recovery (nvt_journal_open, _pending, _replay)
 * on a hostile ring in a memory backend.
 * Input: control byte, the image's UUID (16 bytes), the ring (padded with
 * zeros to a whole number of pages, at least two).  Every record header
 * found on a page boundary gets the UUID and right CRCs unless the control
 * byte says otherwise.  Replay must hand out only in-page changes.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "backend.h"
#include "fuzz-util.h"
#include "journal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SCRATCH_PAGES 16u

static int replay_entry(void *opaque, uint64_t page, uint32_t offset, const uint8_t *bytes,
                        uint32_t length)
{
    if (length == 0 || offset >= NVT_PAGE_SIZE || length > NVT_PAGE_SIZE - offset)
        abort();                          /* replay must never hand this out */
    uint8_t *scratch = opaque;
    memcpy(scratch + (page % SCRATCH_PAGES) * NVT_PAGE_SIZE + offset, bytes, length);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 17)
        return 0;
    uint8_t ctl = data[0];
    const uint8_t *uuid = data + 1;
    size_t n = size - 17;
    size_t len = (n + NVT_PAGE_SIZE - 1) / NVT_PAGE_SIZE * NVT_PAGE_SIZE;
    if (len < 2 * NVT_PAGE_SIZE)
        len = 2 * NVT_PAGE_SIZE;
    uint8_t *ring = g_malloc0(len);
    memcpy(ring, data + 17, n);
    if (!(ctl & FZ_KEEP_CHECKSUMS))
        fz_fix_journal(ring, len, ctl & FZ_KEEP_UUID ? NULL : uuid);

    nvt_backend *be = nvt_mem_backend_new(ring, len);
    g_free(ring);
    nvt_journal *j = NULL;
    if (nvt_journal_open(be, 0, len, uuid, &j) == 0) {
        uint64_t tdb_length = 0;
        if (nvt_journal_pending(j, &tdb_length)) {
            uint8_t *scratch = g_malloc0(SCRATCH_PAGES * NVT_PAGE_SIZE);
            nvt_journal_replay(j, replay_entry, scratch);
            g_free(scratch);
        }
        nvt_journal_free(j);
    }
    nvt_be_close(be);
    return 0;
}
