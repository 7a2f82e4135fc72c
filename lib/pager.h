/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * pager.h — the commit engine: the pages of the tdb region, and how a
 * group of writes to them becomes durable (pager.c states its invariants).
 *
 * A pager presents [base, base + capacity) of a backend as a file of a
 * logical length: vfs.c hands it tdb's reads, writes, resizes and syncs.
 * Without a journal every write goes in place.  With one (journal mode)
 * writes between group_begin and group_commit are staged in memory, and
 * group_commit appends them to the journal ring as one frame: one durable
 * write, the commit point.  The pages then stay in memory (the journaled
 * pages) until a checkpoint writes them in place and retires the ring.
 * Recovery at open replays the ring's frames into the region.
 *
 * Any backend write or flush error is latched: the first one is kept, and
 * a commit fails if one was latched while its writes were made (tdb may
 * still return success then).  A pager with a latched error takes no more
 * commits; the store replaces it (nvt_pager_open_image recovers the image).
 * Not thread-safe: the store lock serialises every call on one pager.
 */
#ifndef NVT_PAGER_H
#define NVT_PAGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "image.h"
#include "journal.h"

typedef struct nvt_pager nvt_pager;

/* Persist a new logical length; called before any write lands beyond the
 * old length, and after a shrink.  Returns 0 or a negative errno. */
typedef int nvt_pager_length_fn(void *opaque, uint64_t new_length);

/* A pager without a journal over [@base, @base + @capacity) of @be
 * (borrowed), currently @length bytes long.  @persist may be NULL (the
 * length then lives only in memory). */
nvt_pager *nvt_pager_new(nvt_backend *be, uint64_t base, uint64_t capacity, uint64_t length,
                         nvt_pager_length_fn *persist, void *opaque);
/* Journal mode over @j, which the pager takes (freed with it): commits
 * then go through groups.  The journal must hold no frame to replay. */
void nvt_pager_attach_journal(nvt_pager *pg, nvt_journal *j);
/* The pager of @img's tdb region, after recovery: the frames the journal
 * holds are checked, replayed in place, made durable and retired, and the
 * length they record persisted.  With @journaled, commits then go through
 * the journal; otherwise tdb's transactions write in place and the journal
 * is only emptied (nvt_pager_checkpoint).  The length lives in @img's
 * superblock.  @after_failure: reopening after a failed commit (the ring is
 * retired even when it holds no frame to replay). */
int nvt_pager_open_image(nvt_image *img, bool journaled, bool after_failure,
                         nvt_pager **out);
void nvt_pager_free(nvt_pager *pg);

/* ---- file access (vfs.c) -------------------------------------------- */
/* Bytes [@off, @off + @len) of the region, newest copy first; the caller
 * keeps within the length. */
int nvt_pager_read(nvt_pager *pg, void *buf, size_t len, uint64_t off);
/* Write, growing the length first if needed; -ENOSPC beyond the capacity
 * (nothing written).  Staged when in a group, else in place. */
int nvt_pager_write(nvt_pager *pg, const void *buf, size_t len, uint64_t off);
/* Set the logical length, persisting it first when it grows (in a group:
 * with the group).  -ENOSPC beyond the capacity. */
int nvt_pager_set_length(nvt_pager *pg, uint64_t len);
/* Flush the backend (tdb's fsync); a no-op in a group, whose commit
 * flushes. */
int nvt_pager_flush(nvt_pager *pg);

uint64_t nvt_pager_length(const nvt_pager *pg);
uint64_t nvt_pager_capacity(const nvt_pager *pg);
/* The first latched backend error (negative errno) or 0. */
int nvt_pager_latched_error(const nvt_pager *pg);
void nvt_pager_clear_error(nvt_pager *pg);
/* Whether growth was refused for lack of room since the last call
 * (tdb turns that into a generic I/O error); resets the flag. */
bool nvt_pager_take_enospc(nvt_pager *pg);

/* ---- groups (journal mode) ------------------------------------------ */
/* True when commits go through the journal. */
bool nvt_pager_journaled(const nvt_pager *pg);
/* The most pages one frame holds (0 without a journal): the bound of a
 * group, and of a blob's record. */
uint32_t nvt_pager_max_group_pages(const nvt_pager *pg);
/* Between group_begin and group_commit every write is staged in memory
 * (reads see it); flushes are no-ops.  group_commit appends the staged
 * pages to the journal as one frame (a checkpoint first when the ring has
 * no room) and the group is durable.  -E2BIG: the group is larger than
 * any frame (nothing written, nothing latched; nvt_pager_prepare_in_place
 * says how to proceed).  group_abort drops the staged pages. */
void nvt_pager_group_begin(nvt_pager *pg);
int nvt_pager_group_commit(nvt_pager *pg);
void nvt_pager_group_abort(nvt_pager *pg);
/* Pages staged by the current group (to bound group sizes). */
uint32_t nvt_pager_group_pages(const nvt_pager *pg);

/* Empty the journal: in journal mode write every journaled page in place,
 * persist the length, flush, and retire the ring (a checkpoint); with a
 * journal in stock mode flush and retire.  Done when the ring is full and
 * at close, so that a closed image needs no replay. */
int nvt_pager_checkpoint(nvt_pager *pg);
/* Before writes that bypass the journal (a group too large for any
 * frame, redone as a tdb transaction in place): checkpoint, so that no
 * older journaled copy can be read or replayed over them. */
int nvt_pager_prepare_in_place(nvt_pager *pg);

/* Counters since creation. */
uint64_t nvt_pager_checkpoints(const nvt_pager *pg);
uint64_t nvt_pager_flushes(const nvt_pager *pg);
uint64_t nvt_pager_writes(const nvt_pager *pg);

#endif /* NVT_PAGER_H */
