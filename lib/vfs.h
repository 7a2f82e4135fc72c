/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * vfs.h — the file that tdb sees.
 *
 * tdb is linked from its static archive with every file call it makes
 * renamed (objcopy --redefine-syms, lib/tdb-redefine.syms) to the
 * nvt_vfs_* functions of vfs.c.  A "virtual file" (vfile) presents a pager
 * (a region of a backend) as a plain file: tdb opens it by a registered path, gets a
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
 * The bytes, the length and their durability are the pager's (pager.h):
 * a vfile only maps tdb's calls onto it, and keeps tdb's file position.
 */
#ifndef NVT_VFS_H
#define NVT_VFS_H

#include "pager.h"

typedef struct nvt_vfile nvt_vfile;

/* Create and register a vfile presenting @pg (borrowed) as a file. */
nvt_vfile *nvt_vfile_new(nvt_pager *pg);
/* Unregister and free; tdb must have closed it. */
void nvt_vfile_free(nvt_vfile *vf);

/* The path to give tdb_open(). */
const char *nvt_vfile_path(const nvt_vfile *vf);

#endif /* NVT_VFS_H */
