/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * test-queue.c — the ordering and completion contracts of the commit queue
 * (nvramtdb.h "threads" and the docs of nvramtdb_write, nvramtdb_read,
 * nvramtdb_read_async, nvramtdb_flush and nvramtdb_close; queue.h; the
 * group semantics of nvt_store_commit_group in store.h):
 *
 *   - a synchronous read sees every write submitted before it, from the
 *     submitting thread and from any thread told about the write;
 *   - a queued read sees the writes queued before it and hands its value
 *     to the callback, which owns it;
 *   - nvramtdb_flush() returns only after the callbacks of every earlier
 *     request have run;
 *   - callbacks run exactly once each, in submission order, on the
 *     image's writer thread (never the submitter's), with errcode 0,
 *     is_write and the length written; a callback may submit ASYNC
 *     requests and read synchronously, and gets -EDEADLK if it waits;
 *   - nvramtdb_close() completes every accepted request before returning;
 *   - everything pending is committed as one group: a request invalid at
 *     execution fails alone, refused requests never reach the queue,
 *     writes to one blob coalesce but each completes and counts as a
 *     generation, a write and a delete of one blob apply in order, and
 *     under load many writes share one commit;
 *   - an I/O error fails the group it hits (transient: later requests
 *     succeed), a persistent one makes later requests fail without hang.
 *
 * Groups are made deterministic with tu_writer_hold_new(): the writer is
 * held inside a completion callback while the requests of the next group
 * are submitted.  Every test but the load measurement runs in a
 * subprocess with a timeout, so that a deadlock is reported as that
 * test's failure.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "nvttest.h"
#include "testutil.h"

#define TIMEOUT_S 60

#define BLOB_A "dev0/a"
#define BLOB_B "dev0/b"
#define BLOB_C "dev1/c"
#define BLOB_HOLD "gate/hold"
#define N_LOAD 8

static const tu_blob blobs[] = {
    { BLOB_A, 4096 },    { BLOB_B, 4096 },    { BLOB_C, 256 },     { BLOB_HOLD, 16 },
    { "load/t0", 1024 }, { "load/t1", 1024 }, { "load/t2", 1024 }, { "load/t3", 1024 },
    { "load/t4", 1024 }, { "load/t5", 1024 }, { "load/t6", 1024 }, { "load/t7", 1024 },
};
#define N_BLOBS G_N_ELEMENTS(blobs)

static nvramtdb *start_on(nvt_backend *be, unsigned flags)
{
    int rc = 0;
    nvramtdb *db = tu_start(be, flags, blobs, N_BLOBS, &rc);
    if (!db)
        g_error("cannot start the image: %d %s", rc, nvramtdb_last_error());
    return db;
}

static nvramtdb *start_mem(void)
{
    return start_on(nvt_mem_backend_new(NULL, 0), 0);
}

/* A deterministic value: @len bytes of tu_fill(@seed). */
static uint8_t *value(uint32_t seed, size_t len)
{
    uint8_t *v = g_malloc(len ? len : 1);
    tu_fill(v, len, seed);
    return v;
}

static void write_wait(nvramtdb *db, const char *name, uint32_t seed, size_t len)
{
    uint8_t *v = value(seed, len);
    TU_OK(nvramtdb_write(db, name, v, len, 0, NULL, NULL));
    g_free(v);
}

/* Submit an NVRAMTDB_ASYNC write of value(@seed, @len) to @name, with
 * callback @cb(@opaque); the submission must succeed. */
static void write_async(nvramtdb *db, const char *name, uint32_t seed, size_t len,
                        nvramtdb_completion_fn *cb, void *opaque)
{
    uint8_t *v = value(seed, len);
    TU_OK(nvramtdb_write(db, name, v, len, NVRAMTDB_ASYNC, cb, opaque));
    g_free(v);
}

/* Let the writer held by @h take the requests submitted meanwhile as one
 * group, and wait until their callbacks have run. */
static void release_and_flush(nvramtdb *db, tu_writer_hold *h)
{
    g_assert_cmpint(tu_writer_release(h), ==, 0);
    TU_OK(nvramtdb_flush(db));
}

static void assert_value(nvramtdb *db, const char *name, uint32_t seed, size_t len)
{
    uint8_t *v = value(seed, len);
    tu_assert_blob(db, name, v, (long)len);
    g_free(v);
}

/* ---- completion records -------------------------------------------------- */

typedef struct tracker tracker;

/* What the callback of one request received. */
typedef struct slot {
    tracker *t;
    guint calls;
    int errcode;
    bool is_write;
    size_t len;
    bool has_data;
    uint8_t *data;       /* reads: a copy of the value */
    GThread *thread;
    guint order;         /* rank among the tracker's callbacks */
} slot;

struct tracker {
    GMutex lock;
    GCond cond;
    guint n;
    guint done;          /* callbacks run so far */
    slot *slots;
};

static tracker *tracker_new(guint n)
{
    tracker *t = g_new0(tracker, 1);
    g_mutex_init(&t->lock);
    g_cond_init(&t->cond);
    t->n = n;
    t->slots = g_new0(slot, n);
    for (guint i = 0; i < n; i++)
        t->slots[i].t = t;
    return t;
}

static void tracker_free(tracker *t)
{
    for (guint i = 0; i < t->n; i++)
        g_free(t->slots[i].data);
    g_free(t->slots);
    g_mutex_clear(&t->lock);
    g_cond_clear(&t->cond);
    g_free(t);
}

static void on_done(void *opaque, int errcode, bool is_write, uint8_t *data, size_t len)
{
    slot *s = opaque;
    tracker *t = s->t;
    g_mutex_lock(&t->lock);
    s->calls++;
    s->errcode = errcode;
    s->is_write = is_write;
    s->len = len;
    s->thread = g_thread_self();
    s->order = t->done++;
    g_free(s->data);
    s->data = NULL;
    s->has_data = data != NULL;
    if (data)
        s->data = g_memdup2(data, len);
    g_cond_broadcast(&t->cond);
    g_mutex_unlock(&t->lock);
    free(data);  /* the callback owns a read's value */
}

static guint tracker_done(tracker *t)
{
    g_mutex_lock(&t->lock);
    guint done = t->done;
    g_mutex_unlock(&t->lock);
    return done;
}

/* Copy of slot @i, read under the tracker's lock. */
static slot tracker_slot(tracker *t, guint i)
{
    g_mutex_lock(&t->lock);
    slot s = t->slots[i];
    g_mutex_unlock(&t->lock);
    return s;
}

static void assert_write_done(tracker *t, guint i, int errcode, size_t len)
{
    slot s = tracker_slot(t, i);
    if (s.calls != 1)
        g_error("request %u: callback ran %u times, expected once", i, s.calls);
    if (s.errcode != errcode)
        g_error("request %u: callback errcode %d (%s), expected %d (%s)", i, s.errcode,
                g_strerror(-s.errcode), errcode, g_strerror(-errcode));
    g_assert_true(s.is_write);
    g_assert_cmpuint(s.len, ==, len);
    g_assert_false(s.has_data);
}

/* ---- read-your-writes ---------------------------------------------------- */

static void test_sync_read_sees_async_write_same_thread(const void *unused)
{
    (void)unused;
    nvramtdb *db = start_mem();
    for (uint32_t i = 0; i < 300; i++) {
        /* Bursts, so that the read usually finds the queue busy. */
        uint32_t burst = 1 + i % 8;
        for (uint32_t k = 0; k < burst; k++)
            write_async(db, BLOB_A, i * 16 + k, 1 + (i * 37 + k) % 4096, NULL, NULL);
        uint32_t k = burst - 1;
        assert_value(db, BLOB_A, i * 16 + k, 1 + (i * 37 + k) % 4096);
    }
    TU_OK(nvramtdb_close(db));
}

/* A one-slot mailbox between the test and a reader thread (GMutex and
 * GCond only, so that ThreadSanitizer sees the hand-over). */
typedef struct reader_ctx {
    nvramtdb *db;
    GMutex lock;
    GCond cond;
    guint todo;          /* seed + 2 of the value to expect; 1 stops; 0 none */
    guint ack;           /* 1 = saw it, 2 = did not; 0 none */
} reader_ctx;

static size_t reader_len(uint32_t seed)
{
    return 1 + seed * 131 % 4096;
}

static guint mailbox_take(reader_ctx *c, guint *box)
{
    g_mutex_lock(&c->lock);
    while (!*box)
        g_cond_wait(&c->cond, &c->lock);
    guint v = *box;
    *box = 0;
    g_mutex_unlock(&c->lock);
    return v;
}

static void mailbox_put(reader_ctx *c, guint *box, guint v)
{
    g_mutex_lock(&c->lock);
    *box = v;
    g_cond_broadcast(&c->cond);
    g_mutex_unlock(&c->lock);
}

static gpointer reader_main(gpointer p)
{
    reader_ctx *c = p;
    for (;;) {
        guint msg = mailbox_take(c, &c->todo);
        if (msg == 1)
            break;
        uint32_t seed = msg - 2;
        uint8_t *got = NULL;
        size_t len = 0;
        size_t want_len = reader_len(seed);
        uint8_t *want = value(seed, want_len);
        int rc = nvramtdb_read(c->db, BLOB_A, &got, &len);
        bool ok = rc == 0 && len == want_len && memcmp(got, want, len) == 0;
        if (!ok)
            g_test_message("reader: value %u: read returned %d, %zu bytes", seed, rc, len);
        free(got);
        g_free(want);
        mailbox_put(c, &c->ack, ok ? 1 : 2);
    }
    return NULL;
}

static gpointer release_later(gpointer p)
{
    g_usleep(20 * 1000);
    return GINT_TO_POINTER(tu_writer_release(p));
}

static void test_sync_read_sees_async_write_other_thread(const void *unused)
{
    (void)unused;
    nvramtdb *db = start_mem();
    reader_ctx c = { .db = db };
    g_mutex_init(&c.lock);
    g_cond_init(&c.cond);
    GThread *reader = g_thread_new("reader", reader_main, &c);

    for (uint32_t seed = 0; seed < 300; seed++) {
        /* Every tenth round the writer is held, so that the reader's read
         * certainly finds the write still queued. */
        tu_writer_hold *h = seed % 10 == 0 ? tu_writer_hold_new(db, BLOB_HOLD) : NULL;
        write_async(db, BLOB_A, seed, reader_len(seed), NULL, NULL);
        mailbox_put(&c, &c.todo, seed + 2);
        GThread *releaser = h ? g_thread_new("release", release_later, h) : NULL;
        guint ack = mailbox_take(&c, &c.ack);
        if (releaser)
            g_assert_cmpint(GPOINTER_TO_INT(g_thread_join(releaser)), ==, 0);
        if (ack != 1)
            g_error("another thread, told after an ASYNC write was submitted, did not read "
                    "its value (round %u)", seed);
    }
    mailbox_put(&c, &c.todo, 1);
    g_thread_join(reader);
    g_mutex_clear(&c.lock);
    g_cond_clear(&c.cond);
    TU_OK(nvramtdb_close(db));
}

static void test_read_async_sees_earlier_async_writes(const void *unused)
{
    (void)unused;
    nvramtdb *db = start_mem();
    write_wait(db, BLOB_B, 1, 100);
    tracker *t = tracker_new(5);

    /* One group: writes, then the queued reads, then more writes. */
    tu_writer_hold *h = tu_writer_hold_new(db, BLOB_HOLD);
    for (uint32_t k = 0; k < 3; k++)
        write_async(db, BLOB_A, 10 + k, 1000 + k, NULL, NULL);
    TU_OK(nvramtdb_delete(db, BLOB_B, NVRAMTDB_ASYNC, NULL, NULL));
    TU_OK(nvramtdb_read_async(db, BLOB_A, NVRAMTDB_ASYNC, on_done, &t->slots[0]));
    TU_OK(nvramtdb_read_async(db, BLOB_B, NVRAMTDB_ASYNC, on_done, &t->slots[1]));
    write_async(db, BLOB_A, 20, 7, NULL, NULL);
    TU_OK(nvramtdb_read_async(db, BLOB_A, NVRAMTDB_ASYNC, on_done, &t->slots[2]));
    g_assert_cmpint(tu_writer_release(h), ==, 0);

    /* Not held: a waiting queued read returns after its callback ran. */
    TU_OK(nvramtdb_write(db, BLOB_C, NULL, 0, NVRAMTDB_ASYNC, NULL, NULL));
    TU_OK(nvramtdb_read_async(db, BLOB_C, 0, on_done, &t->slots[3]));
    g_assert_cmpuint(tracker_slot(t, 3).calls, ==, 1);
    uint8_t *v = value(30, 50);
    TU_OK(nvramtdb_write(db, BLOB_C, v, 50, NVRAMTDB_ASYNC, NULL, NULL));
    TU_OK(nvramtdb_read_async(db, BLOB_C, NVRAMTDB_ASYNC | NVRAMTDB_WAIT_COMPLETION, on_done,
                              &t->slots[4]));
    g_assert_cmpuint(tracker_slot(t, 4).calls, ==, 1);
    TU_OK(nvramtdb_flush(db));

    slot s = tracker_slot(t, 0);
    uint8_t *want = value(12, 1002);
    g_assert_cmpuint(s.calls, ==, 1);
    g_assert_cmpint(s.errcode, ==, 0);
    g_assert_false(s.is_write);
    g_assert_cmpmem(s.data, s.len, want, 1002);
    g_free(want);
    s = tracker_slot(t, 1);
    g_assert_cmpuint(s.calls, ==, 1);
    g_assert_cmpint(s.errcode, ==, -ENOENT);   /* deleted just before */
    g_assert_false(s.has_data);
    s = tracker_slot(t, 2);
    want = value(20, 7);
    g_assert_cmpint(s.errcode, ==, 0);
    g_assert_cmpmem(s.data, s.len, want, 7);
    g_free(want);
    s = tracker_slot(t, 3);
    g_assert_cmpint(s.errcode, ==, 0);
    g_assert_cmpuint(s.len, ==, 0);            /* an empty value is a value */
    s = tracker_slot(t, 4);
    g_assert_cmpint(s.errcode, ==, 0);
    g_assert_cmpmem(s.data, s.len, v, 50);
    g_free(v);

    tracker_free(t);
    TU_OK(nvramtdb_close(db));
}

/* ---- flush barrier ------------------------------------------------------- */

static void slow_done(void *opaque, int errcode, bool is_write, uint8_t *data, size_t len)
{
    g_usleep(200);
    on_done(opaque, errcode, is_write, data, len);
}

static void test_flush_returns_after_earlier_callbacks(const void *unused)
{
    (void)unused;
    nvramtdb *db = start_mem();
    const guint n = 200;
    tracker *t = tracker_new(2 * n);

    for (guint i = 0; i < n; i++)
        write_async(db, i % 2 ? BLOB_A : BLOB_B, i, 64, slow_done, &t->slots[i]);
    TU_OK(nvramtdb_flush(db));
    g_assert_cmpuint(tracker_done(t), ==, n);

    /* The same with the requests pending behind a held writer, released
     * by another thread while this one waits in the barrier. */
    tu_writer_hold *h = tu_writer_hold_new(db, BLOB_HOLD);
    for (guint i = n; i < 2 * n; i++)
        write_async(db, BLOB_C, i, 64, slow_done, &t->slots[i]);
    GThread *releaser = g_thread_new("release", release_later, h);
    TU_OK(nvramtdb_flush(db));
    g_assert_cmpuint(tracker_done(t), ==, 2 * n);
    g_assert_cmpint(GPOINTER_TO_INT(g_thread_join(releaser)), ==, 0);
    for (guint i = 0; i < 2 * n; i++)
        assert_write_done(t, i, 0, 64);

    tracker_free(t);
    TU_OK(nvramtdb_close(db));
}

/* ---- callbacks ----------------------------------------------------------- */

static void test_callbacks_run_once_in_order_on_writer_thread(const void *unused)
{
    (void)unused;
    nvramtdb *db = start_mem();
    const guint n = 300;
    tracker *t = tracker_new(n);
    write_wait(db, BLOB_C, 1, 10);

    for (guint i = 0; i < n; i++) {
        if (i == n / 2) {
            TU_OK(nvramtdb_delete(db, BLOB_C, NVRAMTDB_ASYNC, on_done, &t->slots[i]));
        } else if (i == n / 2 + 1) {
            TU_OK(nvramtdb_read_async(db, BLOB_A, NVRAMTDB_ASYNC, on_done, &t->slots[i]));
        } else {
            write_async(db, i % 3 ? BLOB_A : BLOB_B, i, i * 13 % 4097, on_done, &t->slots[i]);
        }
    }
    TU_OK(nvramtdb_flush(db));

    GThread *writer = tracker_slot(t, 0).thread;
    g_assert_true(writer != g_thread_self());
    for (guint i = 0; i < n; i++) {
        slot s = tracker_slot(t, i);
        if (s.thread != writer)
            g_error("request %u: callback ran on another thread than request 0's", i);
        if (s.order != i)
            g_error("request %u: its callback ran in position %u", i, s.order);
        if (i == n / 2) {
            assert_write_done(t, i, 0, 0);        /* a delete: is_write, length 0 */
        } else if (i == n / 2 + 1) {
            g_assert_cmpuint(s.calls, ==, 1);
            g_assert_cmpint(s.errcode, ==, 0);
            g_assert_false(s.is_write);
            guint j = i - 1;                       /* the last write of A before it */
            while (j == n / 2 || j % 3 == 0)
                j--;
            uint8_t *v = value(j, j * 13 % 4097);
            g_assert_cmpmem(s.data, s.len, v, j * 13 % 4097);
            g_free(v);
        } else {
            assert_write_done(t, i, 0, i * 13 % 4097);
        }
    }
    tracker_free(t);
    TU_OK(nvramtdb_close(db));
}

typedef struct chain {
    nvramtdb *db;
    GMutex lock;
    GCond cond;
    uint32_t n;          /* writes in the chain */
    uint32_t calls;
    int first_error;     /* first failure seen (submission or errcode) */
    bool finished;
} chain;

static void chain_cb(void *opaque, int errcode, bool is_write, uint8_t *data, size_t len)
{
    chain *c = opaque;
    (void)is_write;
    (void)data;
    (void)len;
    g_mutex_lock(&c->lock);
    uint32_t next = ++c->calls;
    if (errcode && !c->first_error)
        c->first_error = errcode;
    g_mutex_unlock(&c->lock);
    int rc = 0;
    if (next < c->n) {
        uint8_t *v = value(next, 8 + next % 500);
        rc = nvramtdb_write(c->db, BLOB_A, v, 8 + next % 500, NVRAMTDB_ASYNC, chain_cb, c);
        g_free(v);
    }
    g_mutex_lock(&c->lock);
    if (rc && !c->first_error)
        c->first_error = rc;
    if (next >= c->n || rc)
        c->finished = true;
    g_cond_broadcast(&c->cond);
    g_mutex_unlock(&c->lock);
}

static void test_callback_can_submit_async_writes(const void *unused)
{
    (void)unused;
    nvramtdb *db = start_mem();
    chain c = { .db = db, .n = 500 };
    g_mutex_init(&c.lock);
    g_cond_init(&c.cond);

    write_async(db, BLOB_A, 0, 8, chain_cb, &c);
    g_mutex_lock(&c.lock);
    while (!c.finished)
        g_cond_wait(&c.cond, &c.lock);
    g_mutex_unlock(&c.lock);
    TU_OK(nvramtdb_flush(db));

    g_assert_cmpint(c.first_error, ==, 0);
    g_assert_cmpuint(c.calls, ==, c.n);
    assert_value(db, BLOB_A, c.n - 1, 8 + (c.n - 1) % 500);
    g_assert_cmpuint(tu_entry(db, BLOB_A).generation, ==, c.n);
    g_mutex_clear(&c.lock);
    g_cond_clear(&c.cond);
    TU_OK(nvramtdb_close(db));
}

typedef struct waiter_ctx {
    nvramtdb *db;
    int rc[7];
    bool messages;       /* every refusal left a message */
    tracker *never;      /* callbacks of refused requests */
} waiter_ctx;

static void waiter_cb(void *opaque, int errcode, bool is_write, uint8_t *data, size_t len)
{
    waiter_ctx *w = opaque;
    (void)errcode;
    (void)is_write;
    (void)data;
    (void)len;
    uint8_t v[4] = { 9, 9, 9, 9 };
    nvramtdb *db = w->db;
    slot *s = w->never->slots;
    w->messages = true;
    w->rc[0] = nvramtdb_write(db, BLOB_B, v, 4, 0, on_done, &s[0]);
    w->messages &= *nvramtdb_last_error() != '\0';
    w->rc[1] = nvramtdb_write(db, BLOB_B, v, 4, NVRAMTDB_ASYNC | NVRAMTDB_WAIT_COMPLETION,
                              on_done, &s[1]);
    w->messages &= *nvramtdb_last_error() != '\0';
    w->rc[2] = nvramtdb_write(db, BLOB_B, v, 4, NVRAMTDB_WAIT_COMPLETION, on_done, &s[2]);
    w->rc[3] = nvramtdb_delete(db, BLOB_B, 0, on_done, &s[3]);
    w->rc[4] = nvramtdb_flush(db);
    w->rc[5] = nvramtdb_read_async(db, BLOB_B, 0, on_done, &s[5]);
    w->rc[6] = nvramtdb_read_async(db, BLOB_B, NVRAMTDB_ASYNC | NVRAMTDB_WAIT_COMPLETION,
                                   on_done, &s[6]);
    w->messages &= *nvramtdb_last_error() != '\0';
}

static void test_callback_that_waits_gets_edeadlk(const void *unused)
{
    (void)unused;
    nvramtdb *db = start_mem();
    waiter_ctx w = { .db = db, .never = tracker_new(7) };
    write_wait(db, BLOB_B, 5, 20);

    TU_OK(nvramtdb_write(db, BLOB_A, NULL, 0, NVRAMTDB_ASYNC, waiter_cb, &w));
    TU_OK(nvramtdb_flush(db));
    static const char *const what[] = {
        "write (sync)", "write ASYNC|WAIT", "write WAIT", "delete (sync)", "flush",
        "read_async (sync)", "read_async ASYNC|WAIT",
    };
    for (int i = 0; i < 7; i++)
        if (w.rc[i] != -EDEADLK)
            g_error("%s from a completion callback returned %d (%s), expected -EDEADLK",
                    what[i], w.rc[i], g_strerror(-w.rc[i]));
    g_assert_true(w.messages);
    g_assert_cmpuint(tracker_done(w.never), ==, 0);
    assert_value(db, BLOB_B, 5, 20);
    g_assert_cmpuint(tu_entry(db, BLOB_B).generation, ==, 1);
    tracker_free(w.never);
    TU_OK(nvramtdb_close(db));
}

/* Each callback finds its own request's message as the last error. */
typedef struct message_slot {
    int errcode;
    char *message;
} message_slot;

static void message_cb(void *opaque, int errcode, bool is_write, uint8_t *data, size_t len)
{
    message_slot *m = opaque;
    (void)is_write;
    (void)data;
    (void)len;
    m->errcode = errcode;
    m->message = g_strdup(nvramtdb_last_error());
}

static void test_callback_last_error_is_its_requests(const void *unused)
{
    (void)unused;
    nvramtdb *db = start_mem();
    message_slot m[3] = { { 0 } };
    /* One group: two deletes that fail when executed (the blobs have no
     * value) around a write that succeeds. */
    tu_writer_hold *h = tu_writer_hold_new(db, BLOB_HOLD);
    TU_OK(nvramtdb_delete(db, BLOB_C, NVRAMTDB_ASYNC, message_cb, &m[0]));
    write_async(db, BLOB_A, 1, 10, message_cb, &m[1]);
    TU_OK(nvramtdb_delete(db, BLOB_B, NVRAMTDB_ASYNC, message_cb, &m[2]));
    release_and_flush(db, h);
    g_assert_cmpint(m[0].errcode, ==, -ENOENT);
    g_assert_cmpint(m[1].errcode, ==, 0);
    g_assert_cmpint(m[2].errcode, ==, -ENOENT);
    if (!strstr(m[0].message, BLOB_C) || strstr(m[0].message, BLOB_B))
        g_error("the callback of the failed delete of %s read \"%s\"", BLOB_C, m[0].message);
    if (m[1].message[0])
        g_error("the callback of a successful write read \"%s\"", m[1].message);
    if (!strstr(m[2].message, BLOB_B) || strstr(m[2].message, BLOB_C))
        g_error("the callback of the failed delete of %s read \"%s\"", BLOB_B, m[2].message);
    for (int i = 0; i < 3; i++)
        g_free(m[i].message);
    TU_OK(nvramtdb_close(db));
}

/* nvramtdb_close() from a callback is refused, and the handle goes on. */
typedef struct closer_ctx {
    nvramtdb *db;
    int rc;
    bool message;
} closer_ctx;

static void closer_cb(void *opaque, int errcode, bool is_write, uint8_t *data, size_t len)
{
    closer_ctx *c = opaque;
    (void)errcode;
    (void)is_write;
    (void)data;
    (void)len;
    c->rc = nvramtdb_close(c->db);
    c->message = strstr(nvramtdb_last_error(), "callback") != NULL;
}

static void test_callback_close_gets_edeadlk(const void *unused)
{
    (void)unused;
    nvramtdb *db = start_mem();
    closer_ctx c = { .db = db };
    write_async(db, BLOB_A, 1, 10, closer_cb, &c);
    TU_OK(nvramtdb_flush(db));
    g_assert_cmpint(c.rc, ==, -EDEADLK);
    g_assert_true(c.message);
    write_wait(db, BLOB_B, 2, 10);          /* still open and working */
    assert_value(db, BLOB_B, 2, 10);
    TU_OK(nvramtdb_close(db));
}

typedef struct reading_cb_ctx {
    nvramtdb *db;
    int rc_a, rc_b;
    uint8_t *a, *b;
    size_t a_len, b_len;
} reading_cb_ctx;

static void reading_cb(void *opaque, int errcode, bool is_write, uint8_t *data, size_t len)
{
    reading_cb_ctx *r = opaque;
    (void)errcode;
    (void)is_write;
    (void)data;
    (void)len;
    r->rc_a = nvramtdb_read(r->db, BLOB_A, &r->a, &r->a_len);
    r->rc_b = nvramtdb_read(r->db, BLOB_B, &r->b, &r->b_len);
}

static void test_callback_can_read_synchronously(const void *unused)
{
    (void)unused;
    nvramtdb *db = start_mem();
    reading_cb_ctx r = { .db = db };

    /* B then A in one group; A's callback reads both. */
    tu_writer_hold *h = tu_writer_hold_new(db, BLOB_HOLD);
    uint8_t *vb = value(2, 300), *va = value(1, 200);
    TU_OK(nvramtdb_write(db, BLOB_B, vb, 300, NVRAMTDB_ASYNC, NULL, NULL));
    TU_OK(nvramtdb_write(db, BLOB_A, va, 200, NVRAMTDB_ASYNC, reading_cb, &r));
    release_and_flush(db, h);

    g_assert_cmpint(r.rc_a, ==, 0);
    g_assert_cmpmem(r.a, r.a_len, va, 200);
    g_assert_cmpint(r.rc_b, ==, 0);
    g_assert_cmpmem(r.b, r.b_len, vb, 300);
    free(r.a);
    free(r.b);
    g_free(va);
    g_free(vb);
    TU_OK(nvramtdb_close(db));
}

typedef struct submit_read_ctx {
    nvramtdb *db;
    int submit_rc, read_rc;
    uint8_t *got;
    size_t got_len;
} submit_read_ctx;

static void submit_then_read_cb(void *opaque, int errcode, bool is_write, uint8_t *data,
                                size_t len)
{
    submit_read_ctx *c = opaque;
    (void)errcode;
    (void)is_write;
    (void)data;
    (void)len;
    uint8_t *v = value(77, 123);
    c->submit_rc = nvramtdb_write(c->db, BLOB_B, v, 123, NVRAMTDB_ASYNC, NULL, NULL);
    g_free(v);
    c->read_rc = nvramtdb_read(c->db, BLOB_B, &c->got, &c->got_len);
}

/* Documented limit (nvramtdb.h, "threads"): inside a callback a
 * synchronous read sees what is committed so far, because waiting for the
 * queue there would deadlock; the write it submitted lands afterwards. */
static void test_callback_sync_read_sees_committed_state(const void *unused)
{
    (void)unused;
    nvramtdb *db = start_mem();
    write_wait(db, BLOB_B, 1, 10);
    submit_read_ctx c = { .db = db };

    TU_OK(nvramtdb_write(db, BLOB_A, NULL, 0, NVRAMTDB_ASYNC, submit_then_read_cb, &c));
    TU_OK(nvramtdb_flush(db));
    TU_OK(nvramtdb_flush(db));

    g_assert_cmpint(c.submit_rc, ==, 0);
    g_assert_cmpint(c.read_rc, ==, 0);
    g_assert_cmpuint(c.got_len, ==, 10);        /* the committed value */
    assert_value(db, BLOB_B, 77, 123);          /* then the queued write landed */
    free(c.got);
    TU_OK(nvramtdb_close(db));
}

/* ---- close --------------------------------------------------------------- */

static void test_close_completes_every_accepted_request(const void *unused)
{
    (void)unused;
    nvt_backend *inner = nvt_mem_backend_new(NULL, 0);
    nvramtdb *db = start_on(nvt_be_borrow(inner), 0);
    const guint n = 1000;
    tracker *t = tracker_new(n);
    static const char *const names[] = { BLOB_A, BLOB_B, BLOB_C };

    for (guint i = 0; i < n; i++)
        write_async(db, names[i % 3], i, 1 + i % 250, on_done, &t->slots[i]);
    TU_OK(nvramtdb_close(db));
    g_assert_cmpuint(tracker_done(t), ==, n);
    for (guint i = 0; i < n; i++)
        assert_write_done(t, i, 0, 1 + i % 250);

    db = start_on(nvt_be_borrow(inner), 0);
    for (guint k = 0; k < 3; k++) {
        guint last = n - 1 - (n - 1 - k) % 3;  /* the last i with i % 3 == k */
        assert_value(db, names[k], last, 1 + last % 250);
    }
    tu_assert_healthy(db);
    TU_OK(nvramtdb_close(db));
    nvt_be_close(inner);
    tracker_free(t);
}

/* ---- groups -------------------------------------------------------------- */

static void test_invalid_request_fails_alone_in_its_group(const void *unused)
{
    (void)unused;
    nvramtdb *db = start_mem();
    write_wait(db, BLOB_A, 1, 100);
    tracker *t = tracker_new(5);

    tu_writer_hold *h = tu_writer_hold_new(db, BLOB_HOLD);
    uint64_t commits = tu_commits(db);
    uint8_t *vb = value(2, 222), *vc = value(3, 33), *vb2 = value(4, 44);
    TU_OK(nvramtdb_write(db, BLOB_B, vb, 222, NVRAMTDB_ASYNC, on_done, &t->slots[0]));
    TU_OK(nvramtdb_delete(db, BLOB_A, NVRAMTDB_ASYNC, on_done, &t->slots[1]));
    /* Accepted (A has a value now), invalid when it runs: A is gone. */
    TU_OK(nvramtdb_delete(db, BLOB_A, NVRAMTDB_ASYNC, on_done, &t->slots[2]));
    TU_OK(nvramtdb_write(db, BLOB_C, vc, 33, NVRAMTDB_ASYNC, on_done, &t->slots[3]));
    TU_OK(nvramtdb_write(db, BLOB_B, vb2, 44, NVRAMTDB_ASYNC, on_done, &t->slots[4]));
    release_and_flush(db, h);

    assert_write_done(t, 0, 0, 222);
    assert_write_done(t, 1, 0, 0);
    assert_write_done(t, 2, -ENOENT, 0);
    assert_write_done(t, 3, 0, 33);
    assert_write_done(t, 4, 0, 44);
    g_assert_cmpuint(tu_commits(db), ==, commits + 1);
    tu_assert_blob(db, BLOB_A, NULL, -1);
    tu_assert_blob(db, BLOB_B, vb2, 44);
    tu_assert_blob(db, BLOB_C, vc, 33);
    tu_assert_healthy(db);
    g_free(vb);
    g_free(vb2);
    g_free(vc);
    tracker_free(t);
    TU_OK(nvramtdb_close(db));
}

static void test_refused_request_gets_no_callback(const void *unused)
{
    (void)unused;
    nvramtdb *db = start_mem();
    tracker *t = tracker_new(4);
    uint8_t big[4097] = { 0 };

    tu_writer_hold *h = tu_writer_hold_new(db, BLOB_HOLD);
    g_assert_cmpint(nvramtdb_write(db, BLOB_A, big, sizeof big, NVRAMTDB_ASYNC, on_done,
                                   &t->slots[0]), ==, -EFBIG);
    g_assert_cmpint(nvramtdb_write(db, "dev9/nothing", big, 1, NVRAMTDB_ASYNC, on_done,
                                   &t->slots[1]), ==, -ENOENT);
    g_assert_cmpint(nvramtdb_delete(db, "dev9/nothing", NVRAMTDB_ASYNC, on_done,
                                    &t->slots[2]), ==, -ENOENT);
    /* A delete of a blob without a value is accepted at submission (a
     * queued write may give it one) and fails alone when it executes. */
    TU_OK(nvramtdb_delete(db, BLOB_B, NVRAMTDB_ASYNC, on_done, &t->slots[3]));
    release_and_flush(db, h);
    g_assert_cmpuint(tracker_done(t), ==, 1);
    assert_write_done(t, 3, -ENOENT, 0);
    tu_assert_blob(db, BLOB_A, NULL, -1);
    g_assert_cmpuint(tu_entry(db, BLOB_A).generation, ==, 0);
    tracker_free(t);
    TU_OK(nvramtdb_close(db));
}

static void test_writes_to_one_blob_in_a_group_each_complete(const void *unused)
{
    (void)unused;
    nvramtdb *db = start_mem();
    const guint n = 6;
    tracker *t = tracker_new(n);
    write_wait(db, BLOB_A, 100, 10);
    uint64_t gen = tu_entry(db, BLOB_A).generation;

    tu_writer_hold *h = tu_writer_hold_new(db, BLOB_HOLD);
    uint64_t commits = tu_commits(db);
    for (guint i = 0; i < n; i++)
        write_async(db, BLOB_A, i, 500 * i, on_done, &t->slots[i]);
    release_and_flush(db, h);

    for (guint i = 0; i < n; i++)
        assert_write_done(t, i, 0, 500 * i);
    g_assert_cmpuint(tu_commits(db), ==, commits + 1);
    assert_value(db, BLOB_A, n - 1, 500 * (n - 1));
    g_assert_cmpuint(tu_entry(db, BLOB_A).generation, ==, gen + n);
    tu_assert_healthy(db);
    tracker_free(t);
    TU_OK(nvramtdb_close(db));
}

typedef struct gen_ctx {
    nvramtdb *db;
    const char *name;
    guint writes;
    int first_error;
} gen_ctx;

static gpointer gen_main(gpointer p)
{
    gen_ctx *g = p;
    for (guint i = 0; i < g->writes && !g->first_error; i++) {
        uint8_t v[16];
        tu_fill(v, sizeof v, i);
        g->first_error = nvramtdb_write(g->db, g->name, v, 1 + i % 16,
                                        i % 10 ? NVRAMTDB_ASYNC : 0, NULL, NULL);
    }
    return NULL;
}

static void test_generation_counts_every_write(const void *unused)
{
    (void)unused;
    nvramtdb *db = start_mem();
    gen_ctx g[4];
    GThread *th[4];
    for (int i = 0; i < 4; i++) {
        g[i] = (gen_ctx){ db, i % 2 ? BLOB_A : BLOB_B, 250, 0 };
        th[i] = g_thread_new("gen", gen_main, &g[i]);
    }
    for (int i = 0; i < 4; i++) {
        g_thread_join(th[i]);
        g_assert_cmpint(g[i].first_error, ==, 0);
    }
    TU_OK(nvramtdb_flush(db));
    g_assert_cmpuint(tu_entry(db, BLOB_A).generation, ==, 500);
    g_assert_cmpuint(tu_entry(db, BLOB_B).generation, ==, 500);
    TU_OK(nvramtdb_close(db));
}

typedef struct load_ctx {
    nvramtdb *db;
    guint index;
    guint writes;
    int first_error;
} load_ctx;

static gpointer load_main(gpointer p)
{
    load_ctx *l = p;
    char name[16];
    g_snprintf(name, sizeof name, "load/t%u", l->index);
    for (guint i = 0; i < l->writes && !l->first_error; i++) {
        uint8_t *v = value(l->index * 100000 + i, 64 + i % 900);
        l->first_error = nvramtdb_write(l->db, name, v, 64 + i % 900, NVRAMTDB_ASYNC, NULL,
                                        NULL);
        g_free(v);
    }
    return NULL;
}

static void test_concurrent_writes_share_commits(void)
{
    nvramtdb *db = start_mem();
    const guint per_thread = 500;
    load_ctx l[N_LOAD];
    GThread *th[N_LOAD];
    uint64_t commits = tu_commits(db);
    gint64 t0 = g_get_monotonic_time();
    for (guint i = 0; i < N_LOAD; i++) {
        l[i] = (load_ctx){ db, i, per_thread, 0 };
        th[i] = g_thread_new("load", load_main, &l[i]);
    }
    for (guint i = 0; i < N_LOAD; i++) {
        g_thread_join(th[i]);
        g_assert_cmpint(l[i].first_error, ==, 0);
    }
    TU_OK(nvramtdb_flush(db));
    gint64 us = g_get_monotonic_time() - t0;
    commits = tu_commits(db) - commits;
    guint writes = N_LOAD * per_thread;
    g_test_message("grouping: %u writes from %u threads in %" G_GUINT64_FORMAT
                   " commits (%.1f writes per commit), %.1f ms", writes, N_LOAD,
                   (guint64)commits, (double)writes / (double)MAX(commits, 1), us / 1000.0);
    g_assert_cmpuint(commits, >, 0);
    g_assert_cmpuint(commits, <, writes);
    for (guint i = 0; i < N_LOAD; i++) {
        char name[16];
        g_snprintf(name, sizeof name, "load/t%u", i);
        guint last = per_thread - 1;
        assert_value(db, name, i * 100000 + last, 64 + last % 900);
    }
    tu_assert_healthy(db);
    TU_OK(nvramtdb_close(db));
}

static void test_write_then_delete_in_one_group_leaves_no_value(const void *unused)
{
    (void)unused;
    nvramtdb *db = start_mem();
    tracker *t = tracker_new(2);
    write_wait(db, BLOB_A, 1, 10);

    tu_writer_hold *h = tu_writer_hold_new(db, BLOB_HOLD);
    write_async(db, BLOB_A, 2, 20, on_done, &t->slots[0]);
    TU_OK(nvramtdb_delete(db, BLOB_A, NVRAMTDB_ASYNC, on_done, &t->slots[1]));
    release_and_flush(db, h);

    assert_write_done(t, 0, 0, 20);
    assert_write_done(t, 1, 0, 0);
    tu_assert_blob(db, BLOB_A, NULL, -1);
    tracker_free(t);
    TU_OK(nvramtdb_close(db));
}

static void test_delete_then_write_in_one_group_leaves_the_value(const void *unused)
{
    (void)unused;
    nvramtdb *db = start_mem();
    tracker *t = tracker_new(2);
    write_wait(db, BLOB_A, 1, 10);

    tu_writer_hold *h = tu_writer_hold_new(db, BLOB_HOLD);
    TU_OK(nvramtdb_delete(db, BLOB_A, NVRAMTDB_ASYNC, on_done, &t->slots[0]));
    write_async(db, BLOB_A, 2, 20, on_done, &t->slots[1]);
    release_and_flush(db, h);

    assert_write_done(t, 0, 0, 0);
    assert_write_done(t, 1, 0, 20);
    assert_value(db, BLOB_A, 2, 20);
    tracker_free(t);
    TU_OK(nvramtdb_close(db));
}

/* Requests run in submission order: a delete queued behind the write that
 * gives a blob its first value is accepted (presence is checked when the
 * delete executes, not against the committed state at submission). */
static void test_delete_after_queued_first_write_is_accepted(const void *unused)
{
    (void)unused;
    nvramtdb *db = start_mem();
    tracker *t = tracker_new(2);

    tu_writer_hold *h = tu_writer_hold_new(db, BLOB_HOLD);
    write_async(db, BLOB_A, 2, 20, on_done, &t->slots[0]);
    int rc = nvramtdb_delete(db, BLOB_A, NVRAMTDB_ASYNC, on_done, &t->slots[1]);
    char *msg = g_strdup(nvramtdb_last_error());
    release_and_flush(db, h);

    if (rc != 0)
        g_error("delete submitted after an ASYNC write of a blob that had no value was "
                "refused with %d (%s): %s", rc, g_strerror(-rc), msg);
    assert_write_done(t, 0, 0, 20);
    assert_write_done(t, 1, 0, 0);
    tu_assert_blob(db, BLOB_A, NULL, -1);
    g_free(msg);
    tracker_free(t);
    TU_OK(nvramtdb_close(db));
}

/* ---- errors -------------------------------------------------------------- */

static void test_transient_eio_fails_its_group_only(const void *unused)
{
    (void)unused;
    nvt_backend *fault = nvt_fault_backend_new(nvt_mem_backend_new(NULL, 0));
    nvramtdb *db = start_on(nvt_be_borrow(fault), 0);
    static const char *const names[] = { BLOB_A, BLOB_B, BLOB_C };
    const guint n = 6;
    tracker *t = tracker_new(n + 3);
    for (guint k = 0; k < 3; k++)
        write_wait(db, names[k], 100 + k, 50);

    /* The group after the hold meets an EIO at its flush. */
    tu_writer_hold *h = tu_writer_hold_new(db, BLOB_HOLD);
    nvt_fault_arm(fault, NVT_FAULT_TRANSIENT, NVT_FAULT_ON_FLUSH, 1, EIO);
    for (guint i = 0; i < n; i++)
        write_async(db, names[i % 3], i, 40 + i, on_done, &t->slots[i]);
    release_and_flush(db, h);   /* no persistent failure */
    g_assert_true(nvt_fault_fired(fault));
    for (guint i = 0; i < n; i++)
        assert_write_done(t, i, -EIO, 40 + i);

    /* Each blob: its old value or the group's (never a mix). */
    for (guint k = 0; k < 3; k++) {
        uint8_t *got = NULL;
        size_t len = 0;
        TU_OK(nvramtdb_read(db, names[k], &got, &len));
        uint8_t *old = value(100 + k, 50), *new = value(n - 3 + k, 40 + n - 3 + k);
        bool is_old = len == 50 && memcmp(got, old, 50) == 0;
        bool is_new = len == 40 + n - 3 + k && memcmp(got, new, len) == 0;
        if (!is_old && !is_new)
            g_error("%s: after a failed group holds neither its old value nor the new one",
                    names[k]);
        free(got);
        g_free(old);
        g_free(new);
    }

    /* Later requests succeed. */
    for (guint k = 0; k < 3; k++)
        write_async(db, names[k], 200 + k, 60 + k, on_done, &t->slots[n + k]);
    TU_OK(nvramtdb_flush(db));
    for (guint k = 0; k < 3; k++) {
        assert_write_done(t, n + k, 0, 60 + k);
        assert_value(db, names[k], 200 + k, 60 + k);
    }
    tu_assert_healthy(db);
    TU_OK(nvramtdb_close(db));

    db = start_on(nvt_be_borrow(fault), 0);
    for (guint k = 0; k < 3; k++)
        assert_value(db, names[k], 200 + k, 60 + k);
    tu_assert_healthy(db);
    TU_OK(nvramtdb_close(db));
    nvt_be_close(fault);
    tracker_free(t);
}

static void test_persistent_eio_fails_fast(const void *unused)
{
    (void)unused;
    nvt_backend *fault = nvt_fault_backend_new(nvt_mem_backend_new(NULL, 0));
    nvramtdb *db = start_on(nvt_be_borrow(fault), 0);
    const guint n = 5;
    tracker *t = tracker_new(n + 20);
    write_wait(db, BLOB_A, 1, 50);

    tu_writer_hold *h = tu_writer_hold_new(db, BLOB_HOLD);
    nvt_fault_arm(fault, NVT_FAULT_PERSISTENT, NVT_FAULT_ON_ANY, 1, EIO);
    for (guint i = 0; i < n; i++)
        write_async(db, i % 2 ? BLOB_A : BLOB_B, i, 40, on_done, &t->slots[i]);
    g_assert_cmpint(tu_writer_release(h), ==, 0);
    int rc = nvramtdb_flush(db);
    if (rc >= 0)
        g_error("nvramtdb_flush() after a persistent EIO returned %d", rc);
    g_assert_true(nvt_fault_fired(fault));
    for (guint i = 0; i < n; i++) {
        slot s = tracker_slot(t, i);
        g_assert_cmpuint(s.calls, ==, 1);
        g_assert_cmpint(s.errcode, <, 0);
    }

    /* Later requests: refused at once or failed in their callback. */
    uint8_t v[8] = { 1 };
    for (guint i = n; i < n + 20; i++) {
        unsigned flags = i % 2 ? NVRAMTDB_ASYNC : 0;
        rc = nvramtdb_write(db, BLOB_C, v, sizeof v, flags, on_done, &t->slots[i]);
        if (rc == 0 && !(flags & NVRAMTDB_ASYNC))
            g_error("a waiting write after a persistent EIO succeeded");
        if (rc < 0)
            g_assert_cmpstr(nvramtdb_last_error(), !=, "");
    }
    rc = nvramtdb_flush(db);
    g_assert_cmpint(rc, <, 0);
    for (guint i = n; i < n + 20; i++) {
        slot s = tracker_slot(t, i);
        g_assert_cmpuint(s.calls, <=, 1);
        if (s.calls)
            g_assert_cmpint(s.errcode, <, 0);
    }
    rc = nvramtdb_close(db);
    g_assert_cmpint(rc, <, 0);
    nvt_be_close(fault);
    tracker_free(t);
}

/* Submitters running while a commit fails and the store recovers. */
typedef struct eio_ctx {
    nvramtdb *db;
    const char *name;
    guint writes;
    tracker *t;          /* one slot per write */
    guint refused;       /* submissions that returned an error */
    int first_refusal;
    guint wait_ok;       /* waiting writes that returned 0 */
} eio_ctx;

static gpointer eio_main(gpointer p)
{
    eio_ctx *e = p;
    for (guint i = 0; i < e->writes; i++) {
        uint8_t v[32];
        tu_fill(v, sizeof v, i);
        unsigned flags = i % 7 ? NVRAMTDB_ASYNC : 0;
        int rc = nvramtdb_write(e->db, e->name, v, 1 + i % 32, flags, on_done, &e->t->slots[i]);
        /* A waiting write returns its result: refused means no callback. */
        if (rc < 0 && tracker_slot(e->t, i).calls == 0 && !e->refused++)
            e->first_refusal = rc;
        if (rc == 0 && !(flags & NVRAMTDB_ASYNC))
            e->wait_ok++;
    }
    return NULL;
}

static void run_eio_submitters(nvt_fault_mode mode, eio_ctx *e, guint n_threads,
                               nvt_backend **faultp, nvramtdb **dbp)
{
    static const char *const names[] = { BLOB_A, BLOB_B, BLOB_C };
    nvt_backend *fault = nvt_fault_backend_new(nvt_mem_backend_new(NULL, 0));
    nvramtdb *db = start_on(nvt_be_borrow(fault), 0);
    GThread *th[8];
    g_assert_cmpuint(n_threads, <=, 8);
    /* Armed before the threads start: the fault backend is not shared
     * with this thread once they run. */
    nvt_fault_arm(fault, mode, NVT_FAULT_ON_FLUSH, 4, EIO);
    for (guint i = 0; i < n_threads; i++) {
        e[i] = (eio_ctx){ .db = db, .name = names[i % 3], .writes = 400,
                          .t = tracker_new(400) };
        th[i] = g_thread_new("submitter", eio_main, &e[i]);
    }
    for (guint i = 0; i < n_threads; i++)
        g_thread_join(th[i]);
    *faultp = fault;
    *dbp = db;
}

static void test_transient_eio_under_load_refuses_nothing(const void *unused)
{
    (void)unused;
    eio_ctx e[4];
    nvt_backend *fault;
    nvramtdb *db;
    run_eio_submitters(NVT_FAULT_TRANSIENT, e, 4, &fault, &db);
    TU_OK(nvramtdb_flush(db));
    g_assert_true(nvt_fault_fired(fault));
    guint failed = 0;
    for (guint i = 0; i < 4; i++) {
        if (e[i].refused)
            g_error("thread %u: %u valid writes were refused at submission while a transient "
                    "EIO was being recovered, the first with %d (%s)", i, e[i].refused,
                    e[i].first_refusal, g_strerror(-e[i].first_refusal));
        for (guint k = 0; k < e[i].writes; k++) {
            slot s = tracker_slot(e[i].t, k);
            g_assert_cmpuint(s.calls, ==, 1);
            if (s.errcode != 0 && s.errcode != -EIO)
                g_error("write %u of thread %u: errcode %d", k, i, s.errcode);
            failed += s.errcode != 0;
        }
        tracker_free(e[i].t);
    }
    g_assert_cmpuint(failed, >, 0);
    tu_assert_healthy(db);
    TU_OK(nvramtdb_close(db));
    nvt_be_close(fault);
}

/* Under ThreadSanitizer this reports a LIBRARY RACE (most runs): the
 * writer sets the store's sticky failure (store_reset: st->failed,
 * st->failed_msg, under the handle's store_lock) while submitters read
 * them in nvramtdb_write -> nvt_store_validate -> store_usable without
 * that lock.  The contract checks themselves pass. */
static void test_persistent_eio_under_load_fails_fast(const void *unused)
{
    (void)unused;
    eio_ctx e[4];
    nvt_backend *fault;
    nvramtdb *db;
    run_eio_submitters(NVT_FAULT_PERSISTENT, e, 4, &fault, &db);
    g_assert_cmpint(nvramtdb_flush(db), <, 0);
    g_assert_true(nvt_fault_fired(fault));
    for (guint i = 0; i < 4; i++) {
        for (guint k = 0; k < e[i].writes; k++) {
            slot s = tracker_slot(e[i].t, k);
            g_assert_cmpuint(s.calls, <=, 1);
        }
        tracker_free(e[i].t);
    }
    g_assert_cmpint(nvramtdb_close(db), <, 0);
    nvt_be_close(fault);
}

/* ---- the index reloaded after a failed commit ---------------------------- */

/*
 * A failed commit reloads the store's index from the image while other
 * threads validate their submissions against it.  A validation must see
 * every blob all along: an oversized write of a registered blob is refused
 * as too large (-EFBIG), never as unknown (-ENOENT).  The test point where
 * the store publishes the reloaded index runs that validation.
 */
typedef struct reload_probe {
    nvramtdb *db;
    guint reloads;
    int rc;          /* the first validation's result that was not -EFBIG */
} reload_probe;

static void validate_on_reload(nvt_test_event ev, void *opaque)
{
    reload_probe *p = opaque;
    if (ev != NVT_TEST_INDEX_RELOADED || !p->db)
        return;
    uint8_t big[257] = { 0 };
    int rc = nvramtdb_write(p->db, BLOB_C, big, sizeof big, NVRAMTDB_ASYNC, NULL, NULL);
    if (rc != -EFBIG && p->rc == -EFBIG)
        p->rc = rc;
    p->reloads++;
}

static void test_reload_after_failed_commit_keeps_blobs_visible(const void *unused)
{
    (void)unused;
    nvt_backend *fault = nvt_fault_backend_new(nvt_mem_backend_new(NULL, 0));
    reload_probe probe = { .rc = -EFBIG };
    nvt_test_set_hook(validate_on_reload, &probe);
    nvramtdb *db = start_on(nvt_be_borrow(fault), 0);
    probe.db = db;
    nvt_fault_arm(fault, NVT_FAULT_TRANSIENT, NVT_FAULT_ON_FLUSH, 1, EIO);
    uint8_t v[8] = { 1 };
    TU_ASSERT_RC(nvramtdb_write(db, BLOB_A, v, sizeof v, 0, NULL, NULL), -EIO);
    g_assert_cmpuint(probe.reloads, ==, 1);
    if (probe.rc != -EFBIG)
        g_error("a validation during the index reload after a failed commit gave %d (%s), "
                "not -EFBIG: the registered blob was missing", probe.rc, g_strerror(-probe.rc));
    TU_OK(nvramtdb_close(db));
    nvt_test_set_hook(NULL, NULL);
    nvt_be_close(fault);
}

/* ---- a commit on the caller's thread ending while a group is in flight -- */

/*
 * The writer takes a group while a synchronous write is being committed on
 * its caller's thread, and waits for the store lock; that commit ends
 * first.  The group is still in flight: a synchronous read must wait for
 * it, and a synchronous write must queue behind it.  The queue's pause
 * points make the interleaving certain: the store lock is held while the
 * first write starts, the writer stops once it has taken its group, and
 * it goes on only when the request under test has either queued (right)
 * or returned without queueing (the defect).
 */
typedef struct interleave {
    GMutex lock;
    GCond cond;
    bool inline_started;
    bool took_group;
    bool queued_after;     /* a request queued behind the taken group */
    bool main_done;        /* the request under test returned */
    bool release;
    bool store_held;       /* a record walk holds the store lock */
    bool store_release;
} interleave;

static interleave il;

static void interleave_hook(nvt_test_event ev, void *opaque)
{
    interleave *x = opaque;
    g_mutex_lock(&x->lock);
    if (ev == NVT_TEST_INLINE)
        x->inline_started = true;
    if (ev == NVT_TEST_QUEUED && x->took_group)
        x->queued_after = true;
    if (ev == NVT_TEST_TOOK_GROUP && !x->took_group) {
        x->took_group = true;
        g_cond_broadcast(&x->cond);
        while (!x->release)
            g_cond_wait(&x->cond, &x->lock);
    }
    g_cond_broadcast(&x->cond);
    g_mutex_unlock(&x->lock);
}

static void interleave_wait(bool *flag)
{
    g_mutex_lock(&il.lock);
    while (!*flag)
        g_cond_wait(&il.cond, &il.lock);
    g_mutex_unlock(&il.lock);
}

static void interleave_set(bool *flag)
{
    g_mutex_lock(&il.lock);
    *flag = true;
    g_cond_broadcast(&il.cond);
    g_mutex_unlock(&il.lock);
}

static gpointer inline_writer_main(gpointer p)
{
    write_wait(p, BLOB_A, 2, 100);
    return NULL;
}

/* Releases the held writer once the request under test queued or returned. */
static gpointer interleave_releaser(gpointer unused)
{
    (void)unused;
    g_mutex_lock(&il.lock);
    while (!il.queued_after && !il.main_done)
        g_cond_wait(&il.cond, &il.lock);
    il.release = true;
    g_cond_broadcast(&il.cond);
    g_mutex_unlock(&il.lock);
    return NULL;
}

/* Holds the store lock: a walk of the records whose visitor waits. */
static int hold_store_visit(void *opaque, const char *name, uint8_t *record, size_t size)
{
    (void)opaque;
    (void)name;
    (void)size;
    free(record);
    interleave_set(&il.store_held);
    interleave_wait(&il.store_release);
    return 1;  /* one record is enough */
}

static gpointer store_holder_main(gpointer db)
{
    nvt_handle_export_records(db, hold_store_visit, NULL);
    return NULL;
}

/* Reach the state: value(1) in blob b, then an ASYNC write of value(3) to
 * b taken by the writer and held, while a synchronous write of blob a
 * committed on another thread has just ended.  Returns the releaser. */
static GThread *inline_commit_ends_during_group(nvramtdb *db)
{
    write_wait(db, BLOB_B, 1, 200);
    memset(&il, 0, sizeof il);
    g_mutex_init(&il.lock);
    g_cond_init(&il.cond);
    nvt_test_set_hook(interleave_hook, &il);

    GThread *holder = g_thread_new("store-holder", store_holder_main, db);
    interleave_wait(&il.store_held);
    GThread *t1 = g_thread_new("inline-writer", inline_writer_main, db);
    interleave_wait(&il.inline_started);       /* t1 commits on its thread... */
    write_async(db, BLOB_B, 3, 200, NULL, NULL);
    interleave_wait(&il.took_group);           /* ...the writer took b's write... */
    interleave_set(&il.store_release);
    g_thread_join(holder);
    g_thread_join(t1);                         /* ...and t1's commit has ended. */
    return g_thread_new("releaser", interleave_releaser, NULL);
}

/* The request under test has returned: let the held group go, and wait
 * until every request has completed. */
static void inline_interleave_drain(nvramtdb *db, GThread *releaser)
{
    interleave_set(&il.main_done);
    g_thread_join(releaser);
    TU_OK(nvramtdb_flush(db));
}

static void inline_interleave_end(nvramtdb *db)
{
    TU_OK(nvramtdb_close(db));
    nvt_test_set_hook(NULL, NULL);
    g_mutex_clear(&il.lock);
    g_cond_clear(&il.cond);
}

static void test_sync_read_waits_for_group_after_inline_commit(const void *unused)
{
    (void)unused;
    nvramtdb *db = start_mem();
    GThread *releaser = inline_commit_ends_during_group(db);
    uint8_t *got = NULL;
    size_t len = 0;
    int rc = nvramtdb_read(db, BLOB_B, &got, &len);
    inline_interleave_drain(db, releaser);
    uint8_t *want = value(3, 200);
    if (rc != 0 || len != 200 || memcmp(got, want, 200) != 0)
        g_error("a synchronous read missed the ASYNC write accepted before it: rc %d, "
                "%zu bytes", rc, len);
    g_free(want);
    free(got);
    inline_interleave_end(db);
}

static void test_sync_write_queues_behind_group_after_inline_commit(const void *unused)
{
    (void)unused;
    nvramtdb *db = start_mem();
    GThread *releaser = inline_commit_ends_during_group(db);
    write_wait(db, BLOB_B, 4, 200);
    inline_interleave_drain(db, releaser);
    assert_value(db, BLOB_B, 4, 200);   /* the later write wins */
    assert_value(db, BLOB_A, 2, 100);
    inline_interleave_end(db);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
#define ISOLATED(path, fn) tu_add_isolated(path, fn, NULL, TIMEOUT_S)
    ISOLATED("/queue/sync-read-sees-async-write/same-thread",
             test_sync_read_sees_async_write_same_thread);
    ISOLATED("/queue/sync-read-sees-async-write/other-thread",
             test_sync_read_sees_async_write_other_thread);
    ISOLATED("/queue/read-async-sees-earlier-async-writes",
             test_read_async_sees_earlier_async_writes);
    ISOLATED("/queue/flush-returns-after-earlier-callbacks",
             test_flush_returns_after_earlier_callbacks);
    ISOLATED("/queue/callback/runs-once-in-order-on-writer-thread",
             test_callbacks_run_once_in_order_on_writer_thread);
    ISOLATED("/queue/callback/can-submit-async-writes", test_callback_can_submit_async_writes);
    ISOLATED("/queue/callback/waiting-gets-edeadlk", test_callback_that_waits_gets_edeadlk);
    ISOLATED("/queue/callback/can-read-synchronously", test_callback_can_read_synchronously);
    ISOLATED("/queue/callback/last-error-is-its-requests",
             test_callback_last_error_is_its_requests);
    ISOLATED("/queue/callback/close-gets-edeadlk", test_callback_close_gets_edeadlk);
    ISOLATED("/queue/close-completes-every-accepted-request",
             test_close_completes_every_accepted_request);
    ISOLATED("/queue/group/invalid-request-fails-alone",
             test_invalid_request_fails_alone_in_its_group);
    ISOLATED("/queue/group/refused-request-gets-no-callback",
             test_refused_request_gets_no_callback);
    ISOLATED("/queue/group/writes-to-one-blob-each-complete",
             test_writes_to_one_blob_in_a_group_each_complete);
    ISOLATED("/queue/group/generation-counts-every-write", test_generation_counts_every_write);
    g_test_add_func("/queue/group/concurrent-writes-share-commits",
                    test_concurrent_writes_share_commits);
    ISOLATED("/queue/group/write-then-delete-leaves-no-value",
             test_write_then_delete_in_one_group_leaves_no_value);
    ISOLATED("/queue/group/delete-then-write-leaves-the-value",
             test_delete_then_write_in_one_group_leaves_the_value);
    ISOLATED("/queue/error/transient-eio-fails-its-group-only",
             test_transient_eio_fails_its_group_only);
    ISOLATED("/queue/error/persistent-eio-fails-fast", test_persistent_eio_fails_fast);
    ISOLATED("/queue/error/transient-eio-under-load-refuses-nothing",
             test_transient_eio_under_load_refuses_nothing);
    ISOLATED("/queue/error/persistent-eio-under-load-fails-fast",
             test_persistent_eio_under_load_fails_fast);
    ISOLATED("/queue/callback/sync-read-sees-committed-state",
             test_callback_sync_read_sees_committed_state);
    ISOLATED("/queue/delete-after-queued-first-write-is-accepted",
             test_delete_after_queued_first_write_is_accepted);
    ISOLATED("/queue/error/reload-after-failed-commit-keeps-blobs-visible",
             test_reload_after_failed_commit_keeps_blobs_visible);
    ISOLATED("/queue/order/sync-read-waits-for-group-after-inline-commit",
             test_sync_read_waits_for_group_after_inline_commit);
    ISOLATED("/queue/order/sync-write-queues-behind-group-after-inline-commit",
             test_sync_write_queues_behind_group_after_inline_commit);
#undef ISOLATED
    return g_test_run();
}
