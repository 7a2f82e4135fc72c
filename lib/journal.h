/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * journal.h — one-flush atomic commits of page sets (a write-ahead log).
 *
 * The journal region is a ring written from its start.  Each group commit
 * appends one record: a header, the tdb-region page numbers it changes
 * and their new contents, covered by CRC32Cs and tagged with the image's
 * UUID, an epoch and a sequence number.  The record is flushed once and
 * the commit is durable.  The pages are not written in place then: the
 * VFS keeps the newest version of each page in memory and serves reads
 * from it, so a page rewritten by many commits reaches its home location
 * once.
 *
 * A checkpoint writes every journaled page in place and flushes; only then
 * may the ring restart from its beginning, under a new random epoch.  So a
 * record is never overwritten before its pages are durable in place.
 *
 * Recovery (at open, or after a failed commit) replays, in order, the run
 * of valid records that starts at the ring's beginning: same epoch,
 * consecutive sequence numbers.  A torn record ends the run; its group
 * was never reported durable.  Replaying records whose pages were already
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
/* The smallest ring: a few dozen small commits between checkpoints. */
#define NVT_JOURNAL_MIN_LENGTH (1024u * 1024)

typedef struct nvt_journal nvt_journal;

/* Ring length for groups of up to @pages pages: room for four such records
 * (so that checkpoints stay rare) and at least NVT_JOURNAL_MIN_LENGTH. */
uint64_t nvt_journal_length_for(uint32_t pages);
/* Largest group (in pages) one record in a ring of @length bytes holds. */
uint32_t nvt_journal_capacity(uint64_t length);

/* Attach to the ring [@offset, @offset + @length) of @be for the image
 * @uuid, and find the run of records to replay. */
int nvt_journal_open(nvt_backend *be, uint64_t offset, uint64_t length,
                     const uint8_t uuid[16], nvt_journal **out);
void nvt_journal_free(nvt_journal *j);

/* Whether recovery has records to replay; *tdb_length gets the tdb
 * length the last of them records. */
bool nvt_journal_pending(const nvt_journal *j, uint64_t *tdb_length);
typedef int nvt_journal_page_fn(void *opaque, uint64_t page, const uint8_t *data);
/* Call @fn for each page of each record of the run, in commit order. */
int nvt_journal_replay(nvt_journal *j, nvt_journal_page_fn *fn, void *opaque);

/* Whether a record of @n pages fits in the rest of the ring; when it
 * does not, make a checkpoint and call nvt_journal_restart() first. */
bool nvt_journal_fits(const nvt_journal *j, uint32_t n);
/* Append a record (not flushed: the caller flushes once).  @data[i] holds
 * the new contents of page @pages[i].  -E2BIG: larger than the whole
 * ring; -ENOSPC only if the ring is full (a caller's mistake) or the
 * backend says so. */
int nvt_journal_append(nvt_journal *j, const uint64_t *pages, const uint8_t *const *data,
                       uint32_t n, uint64_t tdb_length);
/* After a checkpoint: start again at the ring's beginning (no I/O). */
void nvt_journal_restart(nvt_journal *j);
/* Invalidate the run (write a zero header at the ring's start, not
 * flushed) and restart, so that nothing replays. */
int nvt_journal_clear(nvt_journal *j);

uint32_t nvt_journal_max_pages(const nvt_journal *j);
/* Records appended since open, and checkpoints-worth of restarts. */
uint64_t nvt_journal_records(const nvt_journal *j);
uint64_t nvt_journal_restarts(const nvt_journal *j);

#endif /* NVT_JOURNAL_H */
