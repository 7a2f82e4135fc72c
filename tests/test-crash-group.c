/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * test-crash-group: group commits are all-or-nothing and durable, under
 * the crash model of docs/ARCHITECTURE.md, when the groups come from
 * several writer threads.
 *
 * Each round, N_WRITERS threads each submit an asynchronous write of
 * their own blob, tagged with the round, while the image's writer thread
 * is held; releasing it commits the round as one group.  A power cut at
 * every operation of the workload (times CRASH_SEEDS random outcomes of
 * the pending writes, torn sectors included) must leave every blob from
 * one and the same round, no older than the last round whose every write
 * was acknowledged, and no newer than the last round submitted.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "testutil.h"

#define N_WRITERS 4
#define N_ROUNDS 6
#define BLOB_MAX 3000
#define CRASH_SEEDS 20
#define HOLD_BLOB "hold/x"

static tu_blob blobs[N_WRITERS + 1];
static char names[N_WRITERS][16];

typedef struct round_ctx {
    nvramtdb *db;
    unsigned writer;
    unsigned round;
    int submit_rc;
} round_ctx;

typedef struct acks {
    GMutex lock;
    unsigned done[N_ROUNDS + 1];   /* acknowledged writes per round */
    int failed;                    /* a write completed with an error */
} acks;

static acks tally;

/* A value names its round in its first bytes; its length varies too, so
 * that torn pages show. */
static size_t value_for(unsigned writer, unsigned round, uint8_t *buf)
{
    size_t len = 100 + (round * 997 + writer * 331) % (BLOB_MAX - 100);
    tu_fill(buf, len, round * 31 + writer);
    memcpy(buf, &round, sizeof round);
    return len;
}

static void on_done(void *opaque, int errcode, bool is_write, uint8_t *data, size_t len)
{
    unsigned round = GPOINTER_TO_UINT(opaque);
    g_mutex_lock(&tally.lock);
    if (errcode == 0)
        tally.done[round]++;
    else
        tally.failed++;
    g_mutex_unlock(&tally.lock);
    free(data);
}

static gpointer submit_one(gpointer p)
{
    round_ctx *c = p;
    uint8_t buf[BLOB_MAX];
    size_t len = value_for(c->writer, c->round, buf);
    c->submit_rc = nvramtdb_write(c->db, names[c->writer], buf, len, NVRAMTDB_ASYNC, on_done,
                                  GUINT_TO_POINTER(c->round));
    return NULL;
}

/* Run the rounds; returns the last round fully acknowledged (0: none)
 * and, in *submitted, the last round submitted. */
static unsigned run_rounds(nvramtdb *db, unsigned *submitted)
{
    memset(tally.done, 0, sizeof tally.done);
    tally.failed = 0;
    *submitted = 0;
    for (unsigned round = 1; round <= N_ROUNDS; round++) {
        tu_writer_hold *h = tu_writer_hold_new(db, HOLD_BLOB);
        round_ctx ctx[N_WRITERS];
        GThread *t[N_WRITERS];
        bool all_accepted = true;
        for (unsigned w = 0; w < N_WRITERS; w++) {
            ctx[w] = (round_ctx){ db, w, round, 0 };
            t[w] = g_thread_new("writer", submit_one, &ctx[w]);
        }
        for (unsigned w = 0; w < N_WRITERS; w++) {
            g_thread_join(t[w]);
            all_accepted &= ctx[w].submit_rc == 0;
        }
        tu_writer_release(h);
        nvramtdb_flush(db);
        if (!all_accepted)
            break;  /* the process is "dead": the writer fails fast */
        *submitted = round;
        g_mutex_lock(&tally.lock);
        bool failed = tally.failed != 0;
        g_mutex_unlock(&tally.lock);
        if (failed)
            break;
    }
    unsigned acked = 0;
    for (unsigned round = 1; round <= N_ROUNDS; round++)
        if (tally.done[round] == N_WRITERS)
            acked = round;
    return acked;
}

static void setup_names(void)
{
    for (unsigned w = 0; w < N_WRITERS; w++) {
        snprintf(names[w], sizeof names[w], "grp/w%u", w);
        blobs[w] = (tu_blob){ names[w], BLOB_MAX };
    }
    blobs[N_WRITERS] = (tu_blob){ HOLD_BLOB, 16 };
}

/* The round a blob's value belongs to (0: no value); fails the test on a
 * value that is no round's. */
static unsigned round_of(nvramtdb *db, unsigned w, const char *ctx)
{
    uint8_t *got = NULL;
    size_t len = 0;
    int r = nvramtdb_read(db, names[w], &got, &len);
    if (r == -ENOENT)
        return 0;
    if (r != 0)
        g_error("%s: %s: read failed: %s", ctx, names[w], nvramtdb_last_error());
    unsigned round = 0;
    if (len >= sizeof round)
        memcpy(&round, got, sizeof round);
    uint8_t want[BLOB_MAX];
    if (round < 1 || round > N_ROUNDS || value_for(w, round, want) != len ||
        memcmp(want, got, len) != 0)
        g_error("%s: %s holds %zu bytes that are no value ever written", ctx, names[w], len);
    free(got);
    return round;
}

static void test_group_all_or_nothing(gconstpointer data)
{
    unsigned flags = GPOINTER_TO_UINT(data);
    int rc;
    setup_names();

    /* The formatted image, then a dry run to count the operations. */
    nvt_backend *mem = nvt_mem_backend_new(NULL, 0);
    nvramtdb *db = tu_start(nvt_be_borrow(mem), flags, blobs, N_WRITERS + 1, &rc);
    g_assert_nonnull(db);
    TU_OK(nvramtdb_close(db));
    size_t base_len;
    uint8_t *base = tu_mem_copy(mem, &base_len);
    nvt_be_close(mem);

    nvt_backend *fault = nvt_fault_backend_new(nvt_mem_backend_new(base, base_len));
    db = tu_start(nvt_be_borrow(fault), flags, blobs, N_WRITERS + 1, &rc);
    uint64_t first = nvt_fault_op_count(fault);
    unsigned submitted;
    g_assert_cmpuint(run_rounds(db, &submitted), ==, N_ROUNDS);
    uint64_t ops = nvt_fault_op_count(fault) - first;
    nvramtdb_close(db);
    nvt_be_close(fault);

    unsigned images = 0, mid_group = 0;
    for (uint64_t n = 1; n <= ops; n++) {
        fault = nvt_fault_backend_new(nvt_mem_backend_new(base, base_len));
        if (flags & NVRAMTDB_OPEN_STOCK_COMMIT)
            nvt_fault_set_sector_atomic(fault, true);  /* what tdb's protocol needs */
        db = tu_start(nvt_be_borrow(fault), flags, blobs, N_WRITERS + 1, &rc);
        g_assert_nonnull(db);
        nvt_fault_arm(fault, NVT_FAULT_POWER_CUT, NVT_FAULT_ON_ANY, n, 0);
        unsigned acked = run_rounds(db, &submitted);
        nvramtdb_close(db);
        for (uint32_t seed = 0; seed < CRASH_SEEDS; seed++) {
            char ctx[96];
            snprintf(ctx, sizeof ctx, "cut at op %llu of %llu, seed %u",
                     (unsigned long long)n, (unsigned long long)ops, seed);
            size_t len;
            uint8_t *img = nvt_fault_crash_image(fault, seed, &len);
            nvramtdb *after = tu_start(nvt_mem_backend_new(img, len), flags, blobs,
                                       N_WRITERS + 1, &rc);
            free(img);
            if (!after)
                g_error("%s: start failed: %s", ctx, nvramtdb_last_error());
            unsigned r0 = round_of(after, 0, ctx);
            for (unsigned w = 1; w < N_WRITERS; w++) {
                unsigned rw = round_of(after, w, ctx);
                if (rw != r0)
                    g_error("%s: group torn: %s from round %u, %s from round %u", ctx,
                            names[0], r0, names[w], rw);
            }
            if (r0 < acked)
                g_error("%s: round %u was acknowledged but the image holds round %u", ctx,
                        acked, r0);
            if (r0 > submitted + 1)
                g_error("%s: round %u was never submitted", ctx, r0);
            mid_group += r0 > acked;
            tu_assert_healthy(after);
            nvramtdb_close(after);
            images++;
        }
        nvt_be_close(fault);
    }
    g_test_message("%s: %llu cut points x %d seeds = %u crash images, %u of them holding the "
                   "group in flight", flags ? "stock" : "journal", (unsigned long long)ops,
                   CRASH_SEEDS, images, mid_group);
    g_free(base);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_mutex_init(&tally.lock);
    g_test_add_data_func("/crash-group/journal/all-or-nothing", GUINT_TO_POINTER(0),
                         test_group_all_or_nothing);
    g_test_add_data_func("/crash-group/stock/all-or-nothing",
                         GUINT_TO_POINTER(NVRAMTDB_OPEN_STOCK_COMMIT), test_group_all_or_nothing);
    return g_test_run();
}
