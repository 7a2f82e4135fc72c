/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * tdbfile.h — opening and closing a tdb database, the library's one way.
 *
 * tdb keeps a process-wide list of open databases, which tdb_open_ex()
 * and tdb_close() walk and change without a lock of their own; every tdb
 * the library opens (the store's, over a vfile of the image, and the
 * standalone files of export.c, which vfs.c passes to libc) goes through
 * here, serialised by one lock.  tdb's log lines are kept in a buffer of
 * the caller's, for error messages.
 */
#ifndef NVT_TDBFILE_H
#define NVT_TDBFILE_H

#include <sys/types.h>  /* tdb.h needs mode_t */

#include <tdb.h>

/* Size of the buffer that receives tdb's latest error line. */
#define NVT_TDBFILE_MSG_SIZE 256

/* tdb_open_ex() of @path (a vfile path or a real file) under the open
 * lock.  @hash_size 0 is tdb's default.  @msg (NVT_TDBFILE_MSG_SIZE
 * bytes, emptied here) receives tdb's error lines from now until the
 * close.  Returns NULL on failure with errno kept from tdb_open_ex(). */
struct tdb_context *nvt_tdbfile_open(const char *path, int hash_size, int tdb_flags,
                                     int open_flags, mode_t mode, char *msg);
/* tdb_close() under the open lock; NULL is accepted.  Returns tdb_close()'s
 * result (0 or -1). */
int nvt_tdbfile_close(struct tdb_context *tdb);
/* Why the last tdb call failed: its log line if it wrote one, otherwise
 * tdb's error string. */
const char *nvt_tdbfile_why(struct tdb_context *tdb, const char *msg);

#endif /* NVT_TDBFILE_H */
