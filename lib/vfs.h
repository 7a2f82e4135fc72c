/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * vfs.h — the file that tdb sees.
 *
 * tdb is linked from its static archive with every file call it makes
 * renamed (objcopy --redefine-syms, lib/tdb-redefine.syms) to the
 * nvt_vfs_* functions of vfs.c.  A "virtual file" (vfile) presents a region
 * of a backend as a plain file: tdb opens it by a registered path, gets a
 * descriptor, and reads, writes, stats, truncates and syncs it as usual.
 * Paths and descriptors that are not ours go straight to libc, so tdb can
 * still open real files (e.g. to export a standalone tdb).
 *
 * What a vfile promises tdb:
 * - st_size is the region's logical length; st_dev/st_ino are unique per
 *   vfile (tdb refuses to open one dev/ino pair twice);
 * - growth beyond the region's capacity fails with ENOSPC, never partially;
 * - a write never returns 0 for a non-zero count (tdb would loop);
 * - fdatasync/fsync flush the backend.
 * What it promises us: any backend write or flush error is latched, so a
 * commit whose last write failed (tdb still returns 0 then) is detected.
 */
#ifndef NVT_VFS_H
#define NVT_VFS_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"

typedef struct nvt_vfile nvt_vfile;

/* Persist a new logical length; called before any write lands beyond the
 * old length, and after a shrink.  Returns 0 or a negative errno. */
typedef int nvt_vfile_resize_fn(void *opaque, uint64_t new_length);

/* Create and register a vfile over [@base, @base + @capacity) of @be
 * (borrowed), currently @length bytes long.  @resize may be NULL (the
 * length then lives only in memory). */
nvt_vfile *nvt_vfile_new(nvt_backend *be, uint64_t base, uint64_t capacity, uint64_t length,
                         nvt_vfile_resize_fn *resize, void *opaque);
/* Unregister and free; tdb must have closed it. */
void nvt_vfile_free(nvt_vfile *vf);

/* The path to give tdb_open(). */
const char *nvt_vfile_path(const nvt_vfile *vf);
uint64_t nvt_vfile_length(const nvt_vfile *vf);
uint64_t nvt_vfile_capacity(const nvt_vfile *vf);
/* The first latched backend error (negative errno) or 0. */
int nvt_vfile_latched_error(const nvt_vfile *vf);
void nvt_vfile_clear_error(nvt_vfile *vf);
/* Whether growth was refused for lack of room since the last call
 * (tdb turns that into a generic I/O error); resets the flag. */
bool nvt_vfile_take_enospc(nvt_vfile *vf);
/* ---- atomic write groups (journal mode) --------------------------------
 * Between group_begin and group_commit every write is staged in memory
 * (reads see it); fdatasync is a no-op.  group_commit appends the staged
 * pages to the journal as one record and flushes once: the group is then
 * durable.  Its pages stay in memory, newest version first for reads,
 * until a checkpoint writes them in place (journal.h says why that is
 * safe).  group_abort drops the staged pages.  The vfile borrows @j. */
struct nvt_journal;
void nvt_vfile_set_journal(nvt_vfile *vf, struct nvt_journal *j);
void nvt_vfile_group_begin(nvt_vfile *vf);
int nvt_vfile_group_commit(nvt_vfile *vf);
void nvt_vfile_group_abort(nvt_vfile *vf);
/* Pages staged by the current group (to bound group sizes). */
uint32_t nvt_vfile_group_pages(const nvt_vfile *vf);
/* Write every journaled page in place, persist the length, flush, and
 * restart the journal ring.  Done when the ring is full and at close. */
int nvt_vfile_checkpoint(nvt_vfile *vf);
/* Checkpoints so far. */
uint64_t nvt_vfile_checkpoints(const nvt_vfile *vf);

/* Counters since creation. */
uint64_t nvt_vfile_flushes(const nvt_vfile *vf);
uint64_t nvt_vfile_writes(const nvt_vfile *vf);

#endif /* NVT_VFS_H */
