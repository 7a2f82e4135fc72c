/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * nvttest.h — the test library's entry points.
 *
 * lib/test/libnvramtdb-test.la is the library's core compiled a second
 * time, with NVT_TEST_POINTS and NVT_DEBUG, plus what only tests and
 * fuzzers need: opening a handle on a backend they built, backends that
 * wrap another one (borrowed, flush-counting, fault-injecting) and the
 * hook behind the test points of testhook.h.  None of it is in the
 * shipped libnvramtdb.so (tests/symbols.sh checks).  Only code that links
 * the test library may include this header: it is on the include path of
 * the tests and fuzzers alone.
 */
#ifndef NVT_NVTTEST_H
#define NVT_NVTTEST_H

#ifndef NVT_TEST_POINTS
#error "nvttest.h is for code that links lib/test/libnvramtdb-test.la (NVT_TEST_CPPFLAGS)"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "nvramtdb.h"
#include "testhook.h"

/* ---- handles (open.c) ------------------------------------------------- */

/* Open a handle on @be, which it takes ownership of (closed by
 * nvramtdb_close(), also on failure).  @flags as nvramtdb_open(); no lock
 * is taken. */
int nvt_open_backend(nvt_backend *be, unsigned flags, nvramtdb **dbp);

/* The encrypted variant of the suites (tests/encrypted.sh): with
 * NVT_TEST_ENCRYPT=1 in the environment, every handle nvt_open_backend()
 * opens, and every one given to this, gets a fixed test key before start,
 * so blank images are formatted encrypted.  0 or nvramtdb_set_key()'s
 * error; nothing without the variable. */
int nvt_test_give_key(nvramtdb *db);

/* ---- test points (testhook.c) ----------------------------------------- */

/* Install the process-wide hook of the test points (NULL removes it).
 * Set it before opening images and clear it after closing them. */
void nvt_test_set_hook(nvt_test_hook_fn *fn, void *opaque);

/* ---- wrapping backends (backend-wrap.c) ------------------------------- */

/* A backend that forwards every call to @inner but does not close it:
 * lets a test keep an image after the handle that used it is closed. */
nvt_backend *nvt_be_borrow(nvt_backend *inner);

/* A backend that forwards every call to @inner, which it owns, and counts
 * the flushes that reach it (a durable write counts as a write and a
 * flush).  Tests measure what a commit costs with it. */
nvt_backend *nvt_counting_backend_new(nvt_backend *inner);
/* Flushes so far through @be, a counting backend. */
uint64_t nvt_counting_backend_flushes(nvt_backend *be);

/* ---- fault-injecting backend (backend-fault.c) ------------------------ *
 * Wraps another backend (which it owns) and implements the crash model of
 * the tests: every write since the last flush is pending; a
 * simulated power cut at operation N (the Nth pwrite or flush, counting
 * from 1) fails that operation and all later ones with -EIO; afterwards
 * nvt_fault_crash_image() builds what the disk would hold: the durable
 * image plus a random subset of the pending writes, each kept whole,
 * dropped, or torn per 512-byte sector (each sector piece kept, dropped or
 * filled with garbage; bytes outside a write's range are never touched —
 * the "powersafe overwrite" property SQLite also assumes).
 * Error injection instead fails operation N with a chosen errno, once
 * (transient) or from N on (persistent), without modifying anything.
 */
typedef enum nvt_fault_mode {
    NVT_FAULT_NONE = 0,
    NVT_FAULT_POWER_CUT,   /* op N and later fail with -EIO; see crash_image */
    NVT_FAULT_TRANSIENT,   /* op N fails with errno, later ops succeed */
    NVT_FAULT_PERSISTENT,  /* op N and later fail with errno */
} nvt_fault_mode;

typedef enum nvt_fault_ops {
    NVT_FAULT_ON_WRITE = 1u << 0,
    NVT_FAULT_ON_FLUSH = 1u << 1,
    NVT_FAULT_ON_ANY = NVT_FAULT_ON_WRITE | NVT_FAULT_ON_FLUSH,
} nvt_fault_ops;

/* Wrap @inner; the fault backend takes ownership of it. */
nvt_backend *nvt_fault_backend_new(nvt_backend *inner);
/* Arm a fault at the @n-th counted operation from now (n >= 1) among the
 * kinds in @on; @err is the positive errno for TRANSIENT/PERSISTENT. */
void nvt_fault_arm(nvt_backend *be, nvt_fault_mode mode, nvt_fault_ops on,
                   uint64_t n, int err);
/* Model a disk that writes each 512-byte sector atomically (torn writes
 * leave every sector old or new, never garbage).  Stock tdb commits rely
 * on this, as most databases without a checksummed journal do; the
 * default model (garbage allowed) is the harsher one. */
void nvt_fault_set_sector_atomic(nvt_backend *be, bool atomic);
/* Counted operations (pwrite + flush) since creation. */
uint64_t nvt_fault_op_count(nvt_backend *be);
/* True once the armed fault has fired. */
bool nvt_fault_fired(nvt_backend *be);
/* After a power cut (or at any time): the image a disk would hold, built
 * from the durable state plus a random subset of pending writes chosen
 * with @seed.  Returns a malloc()ed buffer of *len bytes. */
uint8_t *nvt_fault_crash_image(nvt_backend *be, uint32_t seed, size_t *len);

#endif /* NVT_NVTTEST_H */
