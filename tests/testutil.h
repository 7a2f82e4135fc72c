/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* testutil.h — small helpers shared by the GTest programs. */
#ifndef NVT_TESTUTIL_H
#define NVT_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

#include "backend.h"
#include "internal.h"
#include "nvramtdb.h"

/* Assert that a call returned @expect, printing the library's message. */
#define TU_ASSERT_RC(call, expect)                                                  \
    do {                                                                           \
        int tu_rc_ = (call);                                                       \
        if (tu_rc_ != (expect))                                                    \
            g_error("%s = %d (%s), expected %d; last error: %s", #call, tu_rc_,     \
                    g_strerror(-tu_rc_), (expect), nvramtdb_last_error());          \
    } while (0)
#define TU_OK(call) TU_ASSERT_RC(call, 0)

typedef struct tu_blob {
    const char *name;
    uint32_t max_size;
} tu_blob;

/* A fresh temporary directory, removed with its contents by tu_rmtree. */
char *tu_tmpdir(void);
void tu_rmtree(const char *dir);

/* Deterministic bytes: buf[i] depends on (seed, i). */
void tu_fill(uint8_t *buf, size_t len, uint32_t seed);

/* Open a handle on @be (taken), register @blobs, start.  Returns NULL and
 * keeps the error message if any step fails (*rc receives it). */
nvramtdb *tu_start(nvt_backend *be, unsigned flags, const tu_blob *blobs, size_t n, int *rc);

/* Assert that @db passes a full check (reports problems on failure). */
void tu_assert_healthy(nvramtdb *db);

/* Read @name and compare with @data/@len (len = -1: expect -ENOENT). */
void tu_assert_blob(nvramtdb *db, const char *name, const void *data, long len);

/* Bytes of a memory backend, copied. */
uint8_t *tu_mem_copy(nvt_backend *be, size_t *len);

#endif /* NVT_TESTUTIL_H */
