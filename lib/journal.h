/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * journal.h — one-flush atomic commits of page sets.
 *
 * The journal region of an image has two halves.  Group k's record goes
 * to half k % 2: a header, the list of tdb-region page numbers it changes
 * and the new contents of those pages, covered by CRC32Cs and tagged with
 * the image's UUID and a sequence number.  A commit writes the record,
 * flushes once, then writes the pages in place without flushing.
 *
 * Why that is enough: group k's in-place writes are issued before group
 * k+1's flush, so once record k+1 is durable so are they.  The only
 * in-place writes that may be missing or torn after a crash are those of
 * the newest valid record, and replaying that record alone at open (then
 * flushing) restores them.  Record k+1 never overwrites record k (the
 * other half), and it overwrites k-1 only after k's flush made k-1's pages
 * durable, so reclaiming journal space is safe.
 */
#ifndef NVT_JOURNAL_H
#define NVT_JOURNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"

#define NVT_PAGE_SIZE 4096u
#define NVT_JOURNAL_MAGIC "NVTJRNL1"
#define NVT_JOURNAL_HEADER_SIZE 56u

typedef struct nvt_journal nvt_journal;

/* Bytes of journal region needed for groups of up to @pages pages. */
uint64_t nvt_journal_length_for(uint32_t pages);
/* Largest group (in pages) a journal region of @length bytes holds. */
uint32_t nvt_journal_capacity(uint64_t length);

/* Attach to the journal region [@offset, @offset + @length) of @be, for
 * the image @uuid.  Finds the newest valid record (if any). */
int nvt_journal_open(nvt_backend *be, uint64_t offset, uint64_t length,
                     const uint8_t uuid[16], nvt_journal **out);
void nvt_journal_free(nvt_journal *j);

/* The newest valid record found at open: its pages and the tdb length it
 * records.  Returns false when the journal holds no valid record. */
typedef int nvt_journal_page_fn(void *opaque, uint64_t page, const uint8_t *data);
bool nvt_journal_pending(const nvt_journal *j, uint64_t *tdb_length);
/* Call @fn for each page of the newest valid record, in order. */
int nvt_journal_replay(nvt_journal *j, nvt_journal_page_fn *fn, void *opaque);

/* Write the next record (not flushed: the caller flushes once).
 * @pages[i] is the page number of @data + i * NVT_PAGE_SIZE... given as
 * an array of pointers.  -E2BIG if it does not fit a half. */
int nvt_journal_append(nvt_journal *j, const uint64_t *pages, const uint8_t *const *data,
                       uint32_t n, uint64_t tdb_length);

/* Invalidate both halves (not flushed), so that writes made outside the
 * journal can never be overwritten by a replay. */
int nvt_journal_clear(nvt_journal *j);

uint32_t nvt_journal_max_pages(const nvt_journal *j);
uint64_t nvt_journal_records(const nvt_journal *j);

#endif /* NVT_JOURNAL_H */
