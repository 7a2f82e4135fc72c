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
#include "nvttest.h"

/* The message the assertions below print and check: the library's,
 * unless a test of a module with its own messages (test-tpm: nvtpm.h)
 * defines TU_LAST_ERROR() before including this header. */
#ifndef TU_LAST_ERROR
#define TU_LAST_ERROR() nvramtdb_last_error()
#endif

/* Assert that a call returned @expect, printing the message. */
#define TU_ASSERT_RC(call, expect)                                                  \
    do {                                                                           \
        int tu_rc_ = (call);                                                       \
        if (tu_rc_ != (expect))                                                    \
            g_error("%s = %d (%s), expected %d; last error: %s", #call, tu_rc_,     \
                    g_strerror(-tu_rc_), (expect), TU_LAST_ERROR());                \
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

/* Bytes of a memory backend (or of a backend wrapping one), copied. */
uint8_t *tu_mem_copy(nvt_backend *be, size_t *len);

/* ---- files, errors, isolation ------------------------------------------- */

/* Write @len bytes to DIR/NAME (created or replaced, mode 0600); returns the
 * path (g_free it).  Fails the test if the file cannot be written. */
char *tu_write_file(const char *dir, const char *name, const void *data, size_t len);

/* The whole contents of @path (g_free it); fails the test if unreadable. */
uint8_t *tu_read_file(const char *path, size_t *len);

/* Assert that @path still holds exactly @len bytes of @data. */
#define TU_ASSERT_FILE_UNCHANGED(path, data, len) \
    tu_assert_file_unchanged_at(__FILE__, __LINE__, (path), (data), (len))
void tu_assert_file_unchanged_at(const char *file, int line, const char *path,
                                 const void *data, size_t len);

/* Like tu_start(), on an image opened with nvramtdb_open(@uri, @flags). */
nvramtdb *tu_start_uri(const char *uri, unsigned flags, const tu_blob *blobs, size_t n,
                       int *rc);

/* Offset of the first occurrence of @needle in @hay, or -1; *count (if not
 * NULL) receives the number of occurrences. */
long tu_memfind(const uint8_t *hay, size_t len, const void *needle, size_t nlen, size_t *count);

/* Assert that a call failed with exactly @expect (a negative errno) and
 * left a non-empty message (TU_LAST_ERROR()) containing every one of the
 * NULL-terminated strings that follow (compared case-insensitively). */
#define TU_ASSERT_ERROR(rc, expect, ...)                                              \
    do {                                                                             \
        int tu_err_rc_ = (rc);                                                       \
        tu_assert_error_at(__FILE__, __LINE__, #rc, tu_err_rc_, (expect),            \
                           TU_LAST_ERROR(), __VA_ARGS__, NULL);                      \
    } while (0)
void tu_assert_error_at(const char *file, int line, const char *expr, int rc, int expect,
                        const char *msg, ...);

/* Register a test whose body runs in a subprocess (g_test_trap_subprocess):
 * a crash, an abort or a hang (@timeout_s seconds) of the body is reported
 * as that test's failure, with the body's messages, instead of killing or
 * blocking the whole program (GTest then stops unless run with -k).  Under
 * valgrind, or with TU_NO_FORK set in the environment (debugger), bodies
 * run in-process. */
void tu_add_isolated(const char *path, void (*body)(const void *data), const void *data,
                     unsigned timeout_s);

/* ---- completion callbacks ----------------------------------------------- */

/* What the completion callback of a request received (zero it first). */
typedef struct tu_completion {
    int calls;
    int errcode;
    bool is_write;
    size_t len;
} tu_completion;

/* A completion callback recording into the tu_completion @opaque; frees a
 * read's value, which the callback owns. */
void tu_on_complete(void *opaque, int errcode, bool is_write, uint8_t *data, size_t len);

/* ---- the writer thread --------------------------------------------------- */

/* Hold @db's writer thread: queue an NVRAMTDB_ASYNC write of an empty value
 * to @blob (registered, dedicated to this) whose completion callback blocks
 * until tu_writer_release().  Returns once the writer is inside that
 * callback: every request submitted from then until the release is pending,
 * and the writer takes all of them as its next batch (within the queue's
 * bounds of 4096 requests and 16 MiB).  While it is held, the thread that
 * will release it must not wait for the queue (no nvramtdb_flush(), no
 * waiting write, no synchronous nvramtdb_read() that the queue serves). */
typedef struct tu_writer_hold tu_writer_hold;
tu_writer_hold *tu_writer_hold_new(nvramtdb *db, const char *blob);
/* Let the writer go on; may be called from any thread.  Returns the
 * errcode the holding write's callback received, and frees @h. */
int tu_writer_release(tu_writer_hold *h);

/* The nvramtdb_list() entry of @name; fails the test if it is not listed. */
nvramtdb_entry tu_entry(nvramtdb *db, const char *name);

/* nvramtdb_get_info()'s count of committed groups. */
uint64_t tu_commits(nvramtdb *db);

#endif /* NVT_TESTUTIL_H */
