/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* debug.c — assertion failures and the per-thread stack of held lock
 * ranks (see debug.h).  Empty unless built with NVT_DEBUG. */
#include "config.h"

#include "debug.h"

#ifdef NVT_DEBUG
#include <stdio.h>
#include <stdlib.h>

/* No thread holds more than a handful of locks at once. */
#define HELD_MAX 16

static _Thread_local nvt_lock_rank held[HELD_MAX];
static _Thread_local unsigned n_held;
static _Thread_local unsigned frame_base;  /* held[0..frame_base) do not order */

void nvt_assert_fail(const char *file, int line, const char *expr)
{
    fprintf(stderr, "nvramtdb: %s:%d: assertion failed: %s\n", file, line, expr);
    abort();
}

void nvt_lock(GMutex *m, nvt_lock_rank rank)
{
    /* Strictly increasing: two locks of one rank (say, two stores) would
     * need an order of their own. */
    if (n_held > frame_base && held[n_held - 1] >= rank) {
        fprintf(stderr, "nvramtdb: lock of rank %d taken while holding rank %d\n", (int)rank,
                (int)held[n_held - 1]);
        nvt_assert_fail(__FILE__, __LINE__, "lock order");
    }
    nvt_assert(n_held < HELD_MAX);
    g_mutex_lock(m);
    held[n_held++] = rank;
}

void nvt_unlock(GMutex *m, nvt_lock_rank rank)
{
    unsigned i = n_held;
    while (i && held[i - 1] != rank)
        i--;
    nvt_assert(i > frame_base);  /* unlocking what this thread (frame) does not hold */
    for (; i < n_held; i++)
        held[i - 1] = held[i];
    n_held--;
    g_mutex_unlock(m);
}

unsigned nvt_lock_frame_begin(void)
{
    unsigned saved = frame_base;
    frame_base = n_held;
    return saved;
}

void nvt_lock_frame_end(unsigned saved)
{
    nvt_assert(n_held == frame_base);
    frame_base = saved;
}

bool nvt_lock_held(nvt_lock_rank rank)
{
    for (unsigned i = 0; i < n_held; i++)
        if (held[i] == rank)
            return true;
    return false;
}
#else
/* ISO C forbids an empty translation unit. */
typedef int nvt_debug_unused;
#endif
