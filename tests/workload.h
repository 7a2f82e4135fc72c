/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * workload.h — the scripted workload shared by test-crash and test-faults:
 * three blobs, sixteen steps (creates, replaces at several sizes, deletes,
 * re-creates), each step's value distinct from every other, and the
 * helpers that read a blob back, report contract violations and run the
 * tests.
 */
#ifndef NVT_WORKLOAD_H
#define NVT_WORKLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "testutil.h"

enum { BLOB_A, BLOB_B, BLOB_C, N_BLOBS };

extern const tu_blob blobs[N_BLOBS];

/* A value a blob can hold: absent, or @len bytes of tu_fill(@seed). */
typedef struct value {
    bool present;
    uint32_t len;
    uint32_t seed;
} value;

typedef struct step {
    const char *slug;
    bool is_delete;
    int blob;
    uint32_t len;
    uint32_t seed;   /* unique per write, so that no two values are equal */
} step;

/* Consecutive values of a blob always differ, so that "old" and "new" can
 * be told apart after a crash, and every step is valid whichever way an
 * earlier failed request ended (each delete follows a write of its blob
 * that leaves it present either way). */
extern const step workload[];
#define N_STEPS ((size_t)16)
#define MAX_SEED 13u

value step_value(const step *s);
/* The bytes of a present value (NULL when empty). */
const uint8_t *value_bytes(const value *v);
char *value_describe(const value *v);

/* The two commit paths every sweep runs. */
typedef enum commit_mode {
    COMMIT_JOURNAL,      /* the default: one journal frame and one flush */
    COMMIT_STOCK,        /* NVRAMTDB_OPEN_STOCK_COMMIT: tdb transactions */
    N_COMMITS,
} commit_mode;

extern const char *const commit_names[N_COMMITS];
extern const unsigned commit_flags[N_COMMITS];

/* A freshly formatted image with the workload's blobs registered, in
 * commit mode @commit: the bytes every sweep starts from.  Made on first
 * use, kept until run_tests() returns. */
const uint8_t *formatted_image(commit_mode commit, size_t *len);

/* What a read of a blob returned. */
typedef struct seen {
    int rc;
    uint8_t *data;
    size_t len;
} seen;

void seen_read(nvramtdb *db, int blob, seen *s);
bool seen_is(const seen *s, const value *v);

/* Seeds per cut point of a crash sweep: NVT_CRASH_SEEDS, default 20. */
unsigned crash_seeds(void);

/* Report a contract violation: the test fails, the run goes on. */
bool violation(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
/* nvramtdb_check() found no problem; otherwise a violation naming @ctx. */
bool healthy(nvramtdb *db, const char *ctx, const char *how);

/* g_test_init() with --keep-going added: each sweep reports its own
 * violations, and one library bug must not hide the others. */
void test_init_keep_going(int *argc, char **argv);
/* Register a data test under the path @fmt formats (kept until
 * run_tests() returns: GTest does not copy it). */
void add_test(gconstpointer data, GTestDataFunc fn, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
/* g_test_run(), then free what this module kept for it (test paths,
 * value bytes, formatted images, arguments), for valgrind. */
int run_tests(void);

#endif /* NVT_WORKLOAD_H */
