/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * test-stress.c — the commit queue under concurrent load: the "threads"
 * contract of nvramtdb.h and the Durable and Atomic contracts of
 * docs/ARCHITECTURE.md, with many threads writing at once.
 *
 * Eight threads each submit N writes (N = NVT_STRESS_WRITES, default 2000;
 * NVT_STRESS_SEED picks the random sequence) to their own private blob and
 * to two shared blobs, at random sizes up to each blob's maximum: mostly
 * NVRAMTDB_ASYNC with a callback, some waiting writes, and in between
 * synchronous reads and queued reads.  Every value encodes (blob, thread,
 * sequence, length) in a header and fills the rest with bytes derived from
 * them, so that any value read can be checked on its own.  Checked:
 *
 *   - every callback runs exactly once, with errcode 0, is_write and the
 *     length written; waiting writes return 0;
 *   - a synchronous read of a private blob by its thread returns exactly
 *     the thread's latest write (reads see every write submitted before);
 *     a read of a shared blob returns a well-formed value written to that
 *     blob; if this thread wrote it, it is the thread's latest write to
 *     the blob; and the values of any one writer seen by one reader never
 *     go back in that writer's sequence;
 *   - at the end every private blob holds its thread's last write, each
 *     shared blob holds the value whose callback ran last (callbacks run
 *     in commit order, those of one group in submission order), every
 *     blob's generation counts its writes, the image passes a full check,
 *     and all of it is still there after close and reopen.
 *
 * The same runs with the stock commit mode (NVRAMTDB_OPEN_STOCK_COMMIT),
 * with an eighth of the writes.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "testutil.h"

#define N_THREADS 8
#define N_SHARED 2
#define N_BLOBS (N_THREADS + N_SHARED)
#define DEFAULT_WRITES 2000

#define MAGIC 0x5354524eu   /* "NRTS" */
#define HEADER 20           /* magic, blob, thread, seq, len: u32 each */

static const tu_blob blobs[N_BLOBS] = {
    { "t0/priv", 6000 }, { "t1/priv", 6000 }, { "t2/priv", 6000 }, { "t3/priv", 6000 },
    { "t4/priv", 6000 }, { "t5/priv", 6000 }, { "t6/priv", 6000 }, { "t7/priv", 6000 },
    { "shared/big", 16384 }, { "shared/small", 256 },
};
#define SHARED0 N_THREADS

/* ---- self-describing values ---------------------------------------------- */

typedef struct stamp {
    uint32_t blob, thread, seq, len;
} stamp;

static uint32_t stamp_seed(const stamp *s)
{
    return (s->blob * 0x9E3779B1u) ^ (s->thread * 0x85EBCA77u) ^ (s->seq * 0xC2B2AE3Du) ^
           s->len;
}

static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint8_t *make_value(const stamp *s)
{
    uint8_t *v = g_malloc(s->len);
    put32(v, MAGIC);
    put32(v + 4, s->blob);
    put32(v + 8, s->thread);
    put32(v + 12, s->seq);
    put32(v + 16, s->len);
    tu_fill(v + HEADER, s->len - HEADER, stamp_seed(s));
    return v;
}

/* Decode and verify a value read from @blob; false (with *why) if it is
 * not one that could have been written to it. */
static bool parse_value(uint32_t blob, const uint8_t *v, size_t len, stamp *s,
                        const char **why)
{
    if (len < HEADER || get32(v) != MAGIC) {
        *why = "no header";
        return false;
    }
    s->blob = get32(v + 4);
    s->thread = get32(v + 8);
    s->seq = get32(v + 12);
    s->len = get32(v + 16);
    if (s->blob != blob || s->thread >= N_THREADS || s->len != len) {
        *why = "header names another blob, thread or length";
        return false;
    }
    uint8_t *want = make_value(s);
    bool ok = memcmp(want, v, len) == 0;
    g_free(want);
    if (!ok)
        *why = "payload does not match its header";
    return ok;
}

/* ---- shared state -------------------------------------------------------- */

typedef struct run run;

/* One write's identity, handed to its callback. */
typedef struct pending {
    run *r;
    stamp s;
} pending;

typedef struct worker {
    run *r;
    uint32_t index;
    GRand *rand;
    uint32_t last_seq[N_BLOBS];     /* own latest write to each blob, +1 (0: none) */
    uint32_t writes_to[N_BLOBS];
    uint32_t seen[N_BLOBS][N_THREADS];  /* highest seq + 1 of each writer seen */
    uint8_t *calls;                 /* callbacks per write (by seq) */
    guint reads, queued_reads, waits;
} worker;

struct run {
    nvramtdb *db;
    uint32_t writes;                /* per thread */
    GMutex lock;                    /* everything below */
    stamp last_done[N_BLOBS];       /* value of the write completed last */
    bool any_done[N_BLOBS];
    guint failures;
    char *first_failure;
    worker workers[N_THREADS];
};

static void fail(run *r, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static void fail(run *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_mutex_lock(&r->lock);
    if (!r->failures++)
        r->first_failure = msg;
    else
        g_free(msg);
    g_mutex_unlock(&r->lock);
}

static void write_done(void *opaque, int errcode, bool is_write, uint8_t *data, size_t len)
{
    pending *p = opaque;
    run *r = p->r;
    free(data);
    if (errcode != 0 || !is_write || len != p->s.len)
        fail(r, "write %u of thread %u to blob %u: callback errcode %d, is_write %d, len %zu "
             "(expected %u)", p->s.seq, p->s.thread, p->s.blob, errcode, is_write, len,
             p->s.len);
    g_mutex_lock(&r->lock);
    r->workers[p->s.thread].calls[p->s.seq]++;
    if (errcode == 0) {
        r->last_done[p->s.blob] = p->s;
        r->any_done[p->s.blob] = true;
    }
    g_mutex_unlock(&r->lock);
    g_free(p);
}

typedef struct queued_read {
    run *r;
    uint32_t blob;
} queued_read;

static void read_done(void *opaque, int errcode, bool is_write, uint8_t *data, size_t len)
{
    queued_read *q = opaque;
    stamp s;
    const char *why = "";
    if (errcode != 0 || is_write)
        fail(q->r, "queued read of blob %u: errcode %d, is_write %d", q->blob, errcode,
             is_write);
    else if (!parse_value(q->blob, data, len, &s, &why))
        fail(q->r, "queued read of blob %u: %s", q->blob, why);
    free(data);
    g_free(q);
}

/* ---- the workers --------------------------------------------------------- */

static void do_write(worker *w, uint32_t blob, uint32_t seq)
{
    run *r = w->r;
    uint32_t max = blobs[blob].max_size;
    uint32_t len = max;
    if (g_rand_int_range(w->rand, 0, 8) != 0)
        len = (uint32_t)g_rand_int_range(w->rand, HEADER, (gint32)max + 1);
    pending *p = g_new(pending, 1);
    p->r = r;
    p->s = (stamp){ blob, w->index, seq, len };
    uint8_t *v = make_value(&p->s);
    unsigned flags = NVRAMTDB_ASYNC;
    guint dice = g_rand_int_range(w->rand, 0, 100);
    if (dice < 3)
        flags = 0;
    else if (dice < 6)
        flags = NVRAMTDB_ASYNC | NVRAMTDB_WAIT_COMPLETION;
    stamp s = p->s;
    int rc = nvramtdb_write(r->db, blobs[blob].name, v, len, flags, write_done, p);
    g_free(v);
    if (rc != 0) {
        fail(r, "write %u of thread %u to %s (%u bytes, flags %u) returned %d: %s", seq,
             w->index, blobs[blob].name, len, flags, rc, nvramtdb_last_error());
        if (flags == NVRAMTDB_ASYNC)
            g_free(p);  /* refused: no callback */
        return;
    }
    if (flags != NVRAMTDB_ASYNC)
        w->waits++;
    w->last_seq[blob] = s.seq + 1;
    w->writes_to[blob]++;
}

static void do_read(worker *w, uint32_t blob)
{
    run *r = w->r;
    uint8_t *v = NULL;
    size_t len = 0;
    stamp s;
    const char *why = "";
    int rc = nvramtdb_read(r->db, blobs[blob].name, &v, &len);
    w->reads++;
    if (rc != 0) {
        if (!(rc == -ENOENT && w->last_seq[blob] == 0))
            fail(r, "thread %u: read of %s returned %d: %s", w->index, blobs[blob].name, rc,
                 nvramtdb_last_error());
        free(v);
        return;
    }
    if (!parse_value(blob, v, len, &s, &why)) {
        fail(r, "thread %u: read of %s: %s", w->index, blobs[blob].name, why);
    } else if (s.thread == w->index && s.seq + 1 != w->last_seq[blob]) {
        fail(r, "thread %u: read of %s returned its own write %u, but its latest write there "
             "is %d", w->index, blobs[blob].name, s.seq, (int)w->last_seq[blob] - 1);
    } else if (blob < SHARED0 && s.thread != w->index) {
        fail(r, "thread %u: private blob %s holds a write of thread %u", w->index,
             blobs[blob].name, s.thread);
    } else if (s.seq + 1 < w->seen[blob][s.thread]) {
        fail(r, "thread %u: read of %s went back in thread %u's writes: %u after %u",
             w->index, blobs[blob].name, s.thread, s.seq, w->seen[blob][s.thread] - 1);
    } else {
        w->seen[blob][s.thread] = s.seq + 1;
    }
    free(v);
}

static gpointer worker_main(gpointer opaque)
{
    worker *w = opaque;
    run *r = w->r;
    for (uint32_t seq = 0; seq < r->writes; seq++) {
        guint dice = g_rand_int_range(w->rand, 0, 100);
        uint32_t blob = dice < 60 ? w->index : SHARED0 + (dice & 1);
        do_write(w, blob, seq);
        dice = g_rand_int_range(w->rand, 0, 100);
        if (dice < 10) {
            do_read(w, g_rand_int_range(w->rand, 0, 2) ? w->index
                                                       : SHARED0 + (dice & 1));
        } else if (dice < 12 && w->last_seq[w->index]) {
            queued_read *q = g_new(queued_read, 1);
            q->r = r;
            q->blob = w->index;
            int rc = nvramtdb_read_async(r->db, blobs[q->blob].name, NVRAMTDB_ASYNC,
                                         read_done, q);
            if (rc != 0) {
                fail(r, "thread %u: queued read returned %d", w->index, rc);
                g_free(q);
            }
            w->queued_reads++;
        }
    }
    return NULL;
}

/* ---- checks -------------------------------------------------------------- */

static uint32_t env_uint(const char *name, uint32_t fallback)
{
    const char *s = g_getenv(name);
    if (!s || !*s)
        return fallback;
    guint64 v;
    GError *err = NULL;
    if (!g_ascii_string_to_unsigned(s, 10, 1, G_MAXUINT32, &v, &err))
        g_error("%s=%s: %s", name, s, err->message);
    return (uint32_t)v;
}

static void assert_stamp_value(nvramtdb *db, uint32_t blob, stamp want_id)
{
    uint8_t *v = NULL;
    size_t len = 0;
    stamp got;
    const char *why = "";
    int rc = nvramtdb_read(db, blobs[blob].name, &v, &len);
    if (rc != 0)
        g_error("%s: read returned %d: %s", blobs[blob].name, rc, nvramtdb_last_error());
    if (!parse_value(blob, v, len, &got, &why))
        g_error("%s: %s", blobs[blob].name, why);
    if (got.thread != want_id.thread || got.seq != want_id.seq)
        g_error("%s holds write %u of thread %u, expected write %u of thread %u",
                blobs[blob].name, got.seq, got.thread, want_id.seq, want_id.thread);
    if (want_id.len && got.len != want_id.len)
        g_error("%s holds %u bytes, expected %u", blobs[blob].name, got.len, want_id.len);
    free(v);
}

static void assert_final_state(run *r, nvramtdb *db)
{
    for (uint32_t t = 0; t < N_THREADS; t++) {
        worker *w = &r->workers[t];
        if (w->last_seq[t])
            assert_stamp_value(db, t, (stamp){ t, t, w->last_seq[t] - 1, 0 });
        g_assert_cmpuint(tu_entry(db, blobs[t].name).generation, ==, w->writes_to[t]);
    }
    for (uint32_t b = SHARED0; b < N_BLOBS; b++) {
        uint64_t writes = 0;
        for (uint32_t t = 0; t < N_THREADS; t++)
            writes += r->workers[t].writes_to[b];
        g_assert_cmpuint(tu_entry(db, blobs[b].name).generation, ==, writes);
        if (r->any_done[b])
            assert_stamp_value(db, b, r->last_done[b]);
        else
            tu_assert_blob(db, blobs[b].name, NULL, -1);
    }
}

static void run_stress(unsigned open_flags, uint32_t writes)
{
    uint32_t seed = env_uint("NVT_STRESS_SEED", g_test_rand_int());
    nvt_backend *mem = nvt_mem_backend_new(NULL, 0);
    int rc = 0;
    run *r = g_new0(run, 1);
    r->db = tu_start(nvt_be_borrow(mem), open_flags, blobs, N_BLOBS, &rc);
    if (!r->db)
        g_error("cannot start: %d %s", rc, nvramtdb_last_error());
    r->writes = writes;
    g_mutex_init(&r->lock);
    uint64_t commits = tu_commits(r->db);

    gint64 t0 = g_get_monotonic_time();
    GThread *th[N_THREADS];
    for (uint32_t t = 0; t < N_THREADS; t++) {
        worker *w = &r->workers[t];
        w->r = r;
        w->index = t;
        w->rand = g_rand_new_with_seed(seed * 31 + t);
        w->calls = g_new0(uint8_t, writes);
        th[t] = g_thread_new("stress", worker_main, w);
    }
    for (uint32_t t = 0; t < N_THREADS; t++)
        g_thread_join(th[t]);
    TU_OK(nvramtdb_flush(r->db));
    gint64 us = g_get_monotonic_time() - t0;

    g_mutex_lock(&r->lock);
    if (r->failures)
        g_error("%u failures (seed %u), the first: %s", r->failures, seed, r->first_failure);
    guint reads = 0, queued = 0, waits = 0;
    for (uint32_t t = 0; t < N_THREADS; t++) {
        worker *w = &r->workers[t];
        for (uint32_t s = 0; s < writes; s++)
            if (w->calls[s] != 1)
                g_error("write %u of thread %u: callback ran %u times (seed %u)", s, t,
                        w->calls[s], seed);
        reads += w->reads;
        queued += w->queued_reads;
        waits += w->waits;
    }
    g_mutex_unlock(&r->lock);
    commits = tu_commits(r->db) - commits;
    g_test_message("%s: %u threads x %u writes (%u waiting), %u reads, %u queued reads in "
                   "%.0f ms: %" G_GUINT64_FORMAT " commits (%.1f writes per commit); seed %u",
                   open_flags & NVRAMTDB_OPEN_STOCK_COMMIT ? "stock commit" : "journal",
                   N_THREADS, writes, waits, reads, queued, us / 1000.0, (guint64)commits,
                   (double)N_THREADS * writes / (double)MAX(commits, 1), seed);

    assert_final_state(r, r->db);
    tu_assert_healthy(r->db);
    TU_OK(nvramtdb_close(r->db));

    nvramtdb *db = tu_start(nvt_be_borrow(mem), open_flags, blobs, N_BLOBS, &rc);
    if (!db)
        g_error("cannot reopen: %d %s", rc, nvramtdb_last_error());
    assert_final_state(r, db);
    tu_assert_healthy(db);
    TU_OK(nvramtdb_close(db));
    nvt_be_close(mem);

    for (uint32_t t = 0; t < N_THREADS; t++) {
        g_rand_free(r->workers[t].rand);
        g_free(r->workers[t].calls);
    }
    g_mutex_clear(&r->lock);
    g_free(r->first_failure);
    g_free(r);
}

static void test_concurrent_writers_journal(void)
{
    run_stress(0, env_uint("NVT_STRESS_WRITES", DEFAULT_WRITES));
}

static void test_concurrent_writers_stock_commit(void)
{
    run_stress(NVRAMTDB_OPEN_STOCK_COMMIT,
               MAX(1, env_uint("NVT_STRESS_WRITES", DEFAULT_WRITES) / 8));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/stress/concurrent-writers/journal", test_concurrent_writers_journal);
    g_test_add_func("/stress/concurrent-writers/stock-commit",
                    test_concurrent_writers_stock_commit);
    return g_test_run();
}
