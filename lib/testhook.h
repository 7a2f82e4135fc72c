/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * testhook.h — pause points for tests of interleavings.
 *
 * Some orderings between threads (a commit on a caller's thread ending
 * while the writer's group waits for the store lock; a validation running
 * while the index is reloaded) are too rare to reach by chance and must
 * still be tested.  The library calls nvt_test_point() at those places.
 *
 * The points exist only in the test library (lib/test/, compiled with
 * NVT_TEST_POINTS): there a test installs one process-wide hook
 * (nvt_test_set_hook() in nvttest.h) that may record the event, block
 * until another thread lets it go, or call the library itself.  In the
 * shipped library a point compiles to nothing.
 */
#ifndef NVT_TESTHOOK_H
#define NVT_TESTHOOK_H

#include "debug.h"

typedef enum nvt_test_event {
    NVT_TEST_QUEUED,          /* a submitter queued a request (queue lock held) */
    NVT_TEST_INLINE,          /* a caller's thread is to commit (queue lock held) */
    NVT_TEST_TOOK_GROUP,      /* the writer took a group, not yet committed (no lock) */
    NVT_TEST_INDEX_RELOADED,  /* the store published a reloaded index (store lock held) */
} nvt_test_event;

#ifdef NVT_TEST_POINTS
typedef void nvt_test_hook_fn(nvt_test_event ev, void *opaque);

/* Defined in lib/test/testhook.c; NULL when no test installed one. */
extern nvt_test_hook_fn *nvt_test_hook;
extern void *nvt_test_hook_opaque;

/* Without a hook a point costs one load and one branch. */
static inline void nvt_test_point(nvt_test_event ev)
{
    if (__builtin_expect(nvt_test_hook != 0, 0)) {
        /* The hook stands for another thread: the locks held here do not
         * order the ones it takes (debug.h). */
        unsigned frame = nvt_lock_frame_begin();
        nvt_test_hook(ev, nvt_test_hook_opaque);
        nvt_lock_frame_end(frame);
    }
}
#else
static inline void nvt_test_point(nvt_test_event ev)
{
    (void)ev;
}
#endif

#endif /* NVT_TESTHOOK_H */
