/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * debug.h — assertions and lock ranks, checked in debug builds only.
 *
 * Built with NVT_DEBUG (configure --enable-debug, or CPPFLAGS=-DNVT_DEBUG)
 * nvt_assert() aborts with the file, line and expression of a broken
 * invariant; otherwise it evaluates nothing and costs nothing.
 *
 * Every mutex of the library has a rank, and a thread takes mutexes only
 * in increasing rank (docs/ARCHITECTURE.md, lib/pager.c): no cycle, so no
 * deadlock.  nvt_lock()/nvt_unlock() take and release a GMutex; in debug
 * builds they also keep the calling thread's stack of held ranks and
 * abort on a lock taken out of order.
 */
#ifndef NVT_DEBUG_H
#define NVT_DEBUG_H

#include <stdbool.h>

#include <glib.h>

/* The lock order, outermost first.  The store lock is held for whole
 * commits; a thread holding it may still use the handle's API (tests do),
 * so it comes before the handle's own short-held lock. */
typedef enum nvt_lock_rank {
    NVT_LOCK_STORE = 1,  /* a handle's store: writer thread vs direct reads */
    NVT_LOCK_DB,         /* a handle's own state (nvramtdb.c) */
    NVT_LOCK_QUEUE,      /* a queue's pending requests (queue.c) */
    NVT_LOCK_INDEX,      /* a store's index and sticky failure (store.c) */
    NVT_LOCK_TDB_OPEN,   /* tdb's process-wide list of open databases */
    NVT_LOCK_VFS_TABLE,  /* the vfile paths and descriptors (vfs.c) */
} nvt_lock_rank;

#ifdef NVT_DEBUG
_Noreturn void nvt_assert_fail(const char *file, int line, const char *expr);
#define nvt_assert(cond) \
    ((cond) ? (void)0 : nvt_assert_fail(__FILE__, __LINE__, #cond))
void nvt_lock(GMutex *m, nvt_lock_rank rank);
void nvt_unlock(GMutex *m, nvt_lock_rank rank);
/* Whether the calling thread holds a lock of @rank. */
bool nvt_lock_held(nvt_lock_rank rank);
#define nvt_assert_held(rank) nvt_assert(nvt_lock_held(rank))
/* Code that stands for another thread (a test hook) orders its locks on
 * their own: between frame_begin and frame_end the locks already held do
 * not count, and every lock taken is released. */
unsigned nvt_lock_frame_begin(void);
void nvt_lock_frame_end(unsigned saved);
#else
/* The condition is not evaluated, but its variables count as used. */
#define nvt_assert(cond) ((void)sizeof((cond) ? 1 : 0))
#define nvt_assert_held(rank) ((void)(rank))
static inline void nvt_lock(GMutex *m, nvt_lock_rank rank)
{
    (void)rank;
    g_mutex_lock(m);
}
static inline void nvt_unlock(GMutex *m, nvt_lock_rank rank)
{
    (void)rank;
    g_mutex_unlock(m);
}
static inline unsigned nvt_lock_frame_begin(void) { return 0; }
static inline void nvt_lock_frame_end(unsigned saved) { (void)saved; }
#endif

#endif /* NVT_DEBUG_H */
