/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * journal.h — the journal: a ring of frames, each one group's changes to
 * the pages of the tdb region, written in one durable backend call.
 *
 * The journal region is a ring written from its start.  Each group commit
 * appends one frame: a header and the byte ranges of tdb-region pages it
 * changes with their new contents (a whole page the first time a page is
 * logged after a restart, only the changed bytes after that), covered by
 * CRC32Cs and tagged with the image's UUID, an epoch and a sequence
 * number.  The frame is written durably in one backend call (a single
 * O_DIRECT+RWF_DSYNC write on files) and the commit is durable.  The pages
 * are not written in place then: the pager (pager.h) keeps the newest
 * version of each page in memory and serves reads from it, so a page
 * rewritten by many commits reaches its home location once.
 *
 * A checkpoint writes every journaled page in place and flushes; then it
 * retires the ring: a zero header at the ring's start, flushed.  Only then
 * may the ring restart from its beginning, under a new random epoch.  So a
 * frame is never overwritten before its pages are durable in place, and
 * the frames of an older epoch, which stay in the ring beyond the new
 * epoch's frames, can never start a run: a torn first frame of the new
 * epoch leaves either its own invalid header or zeros at the start.
 *
 * Recovery (at open, or after a failed commit) replays, in order, the run
 * of valid frames that starts at the ring's beginning: same epoch,
 * consecutive sequence numbers.  A torn frame ends the run; its group
 * was never reported durable.  Replaying frames whose pages were already
 * in place is harmless: applying the whole run in order gives the same
 * pages.  After replay the pages are flushed and the ring is cleared.
 */
#ifndef NVT_JOURNAL_H
#define NVT_JOURNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"

#define NVT_PAGE_SIZE 4096u
#define NVT_JOURNAL_MAGIC "NVTJRNL2"
#define NVT_JOURNAL_HEADER_SIZE 64u
/* The smallest ring a new image gets: about a hundred small commits
 * between checkpoints (a commit of a few bytes is an 8 KiB frame at
 * most), ten of 64 KiB.  Images made before kept 1 MiB: the length is in
 * the superblock. */
#define NVT_JOURNAL_MIN_LENGTH (768u * 1024)
/* Frames of the largest group a new ring holds.  One is enough for
 * correctness: a commit that does not fit the rest of the ring
 * checkpoints first and then starts at offset 0 of a ring that holds the
 * largest group whole, so no commit finds the ring full.  Two let a
 * group of every blob at its maximum follow another without a
 * checkpoint in between. */
#define NVT_JOURNAL_FRAMES 2u

typedef struct nvt_journal nvt_journal;

/* Ring length for groups of up to @pages pages: room for
 * NVT_JOURNAL_FRAMES such frames and at least NVT_JOURNAL_MIN_LENGTH. */
uint64_t nvt_journal_length_for(uint32_t pages);
/* Largest group (in pages) one frame in a ring of @length bytes holds. */
uint32_t nvt_journal_capacity(uint64_t length);

/* Attach to the ring [@offset, @offset + @length) of @be for the image
 * @uuid, and find the run of frames to replay. */
int nvt_journal_open(nvt_backend *be, uint64_t offset, uint64_t length,
                     const uint8_t uuid[16], nvt_journal **out);
void nvt_journal_free(nvt_journal *j);

/* Whether recovery has frames to replay; *tdb_length gets the tdb
 * length the last of them holds. */
bool nvt_journal_pending(const nvt_journal *j, uint64_t *tdb_length);
/* Bytes [offset, offset + length) of tdb-region page @page get @data. */
typedef int nvt_journal_page_fn(void *opaque, uint64_t page, uint32_t offset,
                                const uint8_t *data, uint32_t length);
/* Call @fn for each change of each frame of the run, in commit order. */
int nvt_journal_replay(nvt_journal *j, nvt_journal_page_fn *fn, void *opaque);

/* Whether a frame of @n pages fits in the rest of the ring; when it
 * does not, make a checkpoint (which retires the ring) first. */
bool nvt_journal_fits(const nvt_journal *j, uint32_t n);
/* One change in a frame: bytes [offset, offset + length) of a page
 * (0 < length, offset + length <= NVT_PAGE_SIZE). */
typedef struct nvt_journal_extent {
    uint64_t page;
    uint32_t offset, length;
    const uint8_t *data;
} nvt_journal_extent;
/* Append a frame of @n changes and make it durable, with every earlier
 * write, in one backend call (nvt_be_pwrite_durable): the commit point.
 * A frame of changes to k distinct pages is never larger than the one
 * nvt_journal_fits(j, k) allows for.  The first change to a page after a
 * restart must be the whole page (replay starts from the pages in place,
 * which a torn checkpoint may have damaged); later ones may be parts.
 * -E2BIG: larger than the whole ring; -ENOSPC only if the ring is full
 * (a caller's mistake) or the backend says so. */
int nvt_journal_append_frame(nvt_journal *j, const nvt_journal_extent *e, uint32_t n,
                             uint64_t tdb_length);
/* Once every journaled page is durable in place (after a checkpoint or a
 * replay): invalidate the ring's frames (a zero header at its start) and
 * flush, then restart under a new epoch, so that nothing replays. */
int nvt_journal_retire(nvt_journal *j);

uint32_t nvt_journal_max_pages(const nvt_journal *j);
/* Whether the ring holds no frame of the current epoch (none appended
 * since open or the last retire). */
bool nvt_journal_empty(const nvt_journal *j);
/* Frames appended since open, and checkpoints-worth of restarts. */
uint64_t nvt_journal_frames(const nvt_journal *j);
uint64_t nvt_journal_restarts(const nvt_journal *j);

#endif /* NVT_JOURNAL_H */
