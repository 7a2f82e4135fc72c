/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* queue.c — the commit queue and its writer thread (see queue.h). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "debug.h"
#include "error.h"
#include "queue.h"
#include "testhook.h"

/* How long the writer waits for submitters it just woke to come back, so
 * that concurrent synchronous writers share a group instead of
 * alternating between two half-full ones.  Far below a flush. */
#define LINGER_US 40
/* After a synchronous submitter found the queue busy, that many idle
 * submissions go through the writer before commits on the caller's
 * thread resume: under contention the writer's groups grow larger. */
#define CONTENTION_MEMORY 16u
/* Bound of one group: what the writer takes at once. */
#define GROUP_MAX_BYTES (16u * 1024 * 1024)
#define GROUP_MAX_REQUESTS 4096u

typedef enum req_kind { REQ_WRITE, REQ_DELETE, REQ_READ, REQ_FLUSH, REQ_BATCH } req_kind;

typedef struct request {
    req_kind kind;
    char *name;
    uint8_t *data;            /* write: our copy; read: the value read */
    size_t len;
    nvt_completion_fn *cb;
    void *opaque;
    bool wait;                /* a submitter waits */
    bool done;
    gint refs;                /* the writer's and, with wait, the submitter's */
    GCond done_cond;          /* wakes just that submitter */
    int result;
    char *message;
    nvt_store_op *batch;      /* REQ_BATCH: its changes (names and data ours) */
    size_t batch_n;
} request;

struct nvt_queue {
    nvt_store *st;
    GMutex *store_lock;
    GThread *thread;
    GMutex lock;              /* NVT_LOCK_QUEUE: pending, inflight, stopping, done flags */
    GCond work;               /* the writer waits for requests */
    GQueue pending;
    /* Requests taken but not completed: the writer's group and a commit on
     * a caller's thread may overlap (the group waiting for the store lock),
     * so each adds and removes its own count. */
    unsigned inflight;
    unsigned contention;      /* see CONTENTION_MEMORY */
    /* Pending requests at which the writer wants to be woken: 1 while
     * idle, the group it expects while lingering, 0 while it commits
     * (it looks at the queue afterwards anyway).  Fewer futex wake-ups. */
    guint want;
    bool stopping;
};

static void free_batch(request *r)
{
    for (size_t i = 0; i < r->batch_n; i++) {
        g_free((char *)r->batch[i].name);
        free((uint8_t *)r->batch[i].data);
        g_free(r->batch[i].message);
    }
    g_free(r->batch);
    r->batch = NULL;
    r->batch_n = 0;
}

static void request_free(request *r)
{
    free_batch(r);
    if (r->wait)
        g_cond_clear(&r->done_cond);
    g_free(r->name);
    free(r->data);
    g_free(r->message);
    g_free(r);
}

static void request_unref(request *r)
{
    if (g_atomic_int_dec_and_test(&r->refs))
        request_free(r);
}

static void fail_request(request *r, int err)
{
    r->result = err;
    g_free(r->message);
    r->message = g_strdup(nvt_last_error());
}

/* Commit the writes and deletes reqs[0..n) as one group. */
static void commit_writes(nvt_queue *q, request **reqs, size_t n)
{
    nvt_assert_held(NVT_LOCK_STORE);
    nvt_store_op *ops = g_new0(nvt_store_op, n);
    for (size_t i = 0; i < n; i++) {
        ops[i].name = reqs[i]->name;
        ops[i].data = reqs[i]->data;
        ops[i].len = reqs[i]->len;
        ops[i].is_delete = reqs[i]->kind == REQ_DELETE;
    }
    nvt_store_commit_group(q->st, ops, n);
    for (size_t i = 0; i < n; i++) {
        reqs[i]->result = ops[i].result;
        reqs[i]->message = ops[i].message;
        /* The value was copied into the record; free it early. */
        free(reqs[i]->data);
        reqs[i]->data = NULL;
    }
    g_free(ops);
}

/* A batch commits alone, all or nothing; its result is its first error. */
static void commit_batch(nvt_queue *q, request *r)
{
    nvt_assert_held(NVT_LOCK_STORE);
    r->result = nvt_store_commit_batch(q->st, r->batch, r->batch_n);
    if (r->result < 0)
        r->message = g_strdup(nvt_last_error());
    free_batch(r);  /* the values were copied into the records */
}

static void process(nvt_queue *q, GPtrArray *group)
{
    request **reqs = (request **)group->pdata;
    guint i = 0;

    nvt_lock(q->store_lock, NVT_LOCK_STORE);
    while (i < group->len) {
        guint j = i;
        while (j < group->len && (reqs[j]->kind == REQ_WRITE || reqs[j]->kind == REQ_DELETE))
            j++;
        if (j > i)
            commit_writes(q, reqs + i, j - i);
        if (j < group->len) {
            request *r = reqs[j];
            if (r->kind == REQ_BATCH) {
                commit_batch(q, r);
            } else {
                int res = r->kind == REQ_READ
                              ? nvt_store_read(q->st, r->name, &r->data, &r->len)
                              : nvt_store_failure(q->st);
                if (res < 0)
                    fail_request(r, res);
            }
            j++;
        }
        i = j;
    }
    nvt_unlock(q->store_lock, NVT_LOCK_STORE);
}

/* Run the callbacks in submission order, then wake the waiting
 * submitters, each on its own condition (no thundering herd).  The
 * signals go out after the queue lock is released, so that a woken
 * submitter does not block on it at once (a second hand-off); the
 * writer's reference keeps the request alive until its signal is sent. */
static void complete(nvt_queue *q, GPtrArray *group)
{
    for (guint i = 0; i < group->len; i++) {
        request *r = group->pdata[i];
        if (r->cb) {
            /* The callback's nvramtdb_last_error() is its request's. */
            if (r->result < 0)
                nvt_error(-r->result, "%s", r->message ? r->message : g_strerror(-r->result));
            else
                nvt_error_clear();
            bool is_write = r->kind != REQ_READ && r->kind != REQ_FLUSH;
            uint8_t *data = r->kind == REQ_READ ? r->data : NULL;
            if (r->kind == REQ_READ)
                r->data = NULL;  /* the callback owns it now */
            r->cb(r->opaque, r->result, is_write, data, r->len);
        }
    }
    nvt_lock(&q->lock, NVT_LOCK_QUEUE);
    for (guint i = 0; i < group->len; i++) {
        request *r = group->pdata[i];
        if (r->wait)
            r->done = true;
    }
    nvt_unlock(&q->lock, NVT_LOCK_QUEUE);
    for (guint i = 0; i < group->len; i++) {
        request *r = group->pdata[i];
        if (r->wait)
            g_cond_signal(&r->done_cond);
        request_unref(r);
    }
}

static gpointer writer_main(gpointer opaque)
{
    nvt_queue *q = opaque;
    guint expect = 0;   /* requests likely pending soon: see LINGER_US */

    nvt_lock(&q->lock, NVT_LOCK_QUEUE);
    for (;;) {
        q->want = 1;
        while (g_queue_is_empty(&q->pending) && !q->stopping)
            g_cond_wait(&q->work, &q->lock);
        if (g_queue_is_empty(&q->pending))
            break;  /* stopping, and everything accepted is done */
        if (expect > 1 && !q->stopping) {
            gint64 deadline = g_get_monotonic_time() + LINGER_US;
            q->want = expect;
            while (g_queue_get_length(&q->pending) < expect && !q->stopping)
                if (!g_cond_wait_until(&q->work, &q->lock, deadline))
                    break;
        }
        q->want = 0;
        GPtrArray *group = g_ptr_array_new();
        size_t bytes = 0;
        while (!g_queue_is_empty(&q->pending) && group->len < GROUP_MAX_REQUESTS) {
            request *r = g_queue_peek_head(&q->pending);
            if (group->len && bytes + r->len > GROUP_MAX_BYTES)
                break;
            g_queue_pop_head(&q->pending);
            g_ptr_array_add(group, r);
            bytes += r->len;
        }
        q->inflight += group->len;
        nvt_unlock(&q->lock, NVT_LOCK_QUEUE);
        nvt_test_point(NVT_TEST_TOOK_GROUP);

        guint waited = 0;
        for (guint i = 0; i < group->len; i++)
            waited += ((request *)group->pdata[i])->wait;
        guint taken = group->len;
        process(q, group);
        complete(q, group);
        g_ptr_array_free(group, TRUE);

        nvt_lock(&q->lock, NVT_LOCK_QUEUE);
        q->inflight -= taken;
        /* The submitters just woken will probably submit again. */
        expect = g_queue_get_length(&q->pending) + waited;
    }
    nvt_unlock(&q->lock, NVT_LOCK_QUEUE);
    return NULL;
}

nvt_queue *nvt_queue_new(nvt_store *st, GMutex *store_lock)
{
    nvt_queue *q = g_new0(nvt_queue, 1);
    q->st = st;
    q->store_lock = store_lock;
    g_mutex_init(&q->lock);
    g_cond_init(&q->work);
    g_queue_init(&q->pending);
    q->thread = g_thread_new("nvramtdb-writer", writer_main, q);
    return q;
}

void nvt_queue_free(nvt_queue *q)
{
    if (!q)
        return;
    nvt_lock(&q->lock, NVT_LOCK_QUEUE);
    q->stopping = true;
    g_cond_broadcast(&q->work);
    nvt_unlock(&q->lock, NVT_LOCK_QUEUE);
    g_thread_join(q->thread);
    g_mutex_clear(&q->lock);
    g_cond_clear(&q->work);
    g_free(q);
}

bool nvt_queue_on_writer(nvt_queue *q)
{
    return g_thread_self() == q->thread;
}

bool nvt_queue_idle(nvt_queue *q)
{
    nvt_lock(&q->lock, NVT_LOCK_QUEUE);
    bool idle = g_queue_is_empty(&q->pending) && q->inflight == 0;
    nvt_unlock(&q->lock, NVT_LOCK_QUEUE);
    return idle;
}

/* Hand @r to the writer; with r->wait, wait for it and return its result
 * (its message becomes the calling thread's). */
static int enqueue(nvt_queue *q, request *r)
{
    if (r->wait)
        g_cond_init(&r->done_cond);
    if (r->wait && nvt_queue_on_writer(q)) {
        request_free(r);
        return nvt_error(EDEADLK, "a completion callback may not wait for a request");
    }
    nvt_lock(&q->lock, NVT_LOCK_QUEUE);
    if (q->stopping) {
        nvt_unlock(&q->lock, NVT_LOCK_QUEUE);
        request_free(r);
        return nvt_error(ESHUTDOWN, "the image is closing");
    }
    r->refs = r->wait ? 2 : 1;  /* from here on the writer holds one */
    g_queue_push_tail(&q->pending, r);
    nvt_test_point(NVT_TEST_QUEUED);
    if (q->want && g_queue_get_length(&q->pending) >= q->want)
        g_cond_signal(&q->work);
    if (!r->wait) {
        nvt_unlock(&q->lock, NVT_LOCK_QUEUE);
        return 0;
    }
    while (!r->done)
        g_cond_wait(&r->done_cond, &q->lock);
    nvt_unlock(&q->lock, NVT_LOCK_QUEUE);
    return 0;
}

static int finish_waited(request *r)
{
    int res = r->result;
    if (res < 0)
        nvt_error(-res, "%s", r->message ? r->message : g_strerror(-res));
    return res;
}

/* A synchronous request without a callback, submitted while nothing is
 * queued or in flight, is committed on the calling thread: no hand-off to
 * the writer and back (each a cross-CPU wake-up).  Every request accepted
 * before it has completed then.  Requests submitted meanwhile are
 * concurrent with it and may commit on either side of it; while it is in
 * flight no other request runs inline and no read is served directly. */
static bool run_inline(nvt_queue *q, nvt_store_op *ops, size_t n, bool atomic, int *result)
{
    nvt_lock(&q->lock, NVT_LOCK_QUEUE);
    bool idle = g_queue_is_empty(&q->pending) && q->inflight == 0 && !q->stopping;
    bool inline_ok = idle && q->contention == 0;
    if (!idle)
        q->contention = CONTENTION_MEMORY;
    else if (q->contention)
        q->contention--;
    if (inline_ok) {
        q->inflight++;
        nvt_test_point(NVT_TEST_INLINE);
    }
    nvt_unlock(&q->lock, NVT_LOCK_QUEUE);
    if (!inline_ok)
        return false;

    nvt_lock(q->store_lock, NVT_LOCK_STORE);
    int r = atomic ? nvt_store_commit_batch(q->st, ops, n)
                   : nvt_store_commit_group(q->st, ops, n);
    nvt_unlock(q->store_lock, NVT_LOCK_STORE);
    if (!atomic) {
        r = ops[0].result;
        if (r < 0)
            nvt_error(-r, "%s", ops[0].message ? ops[0].message : g_strerror(-r));
    }
    /* Atomic: the store left the batch's error as this thread's. */
    for (size_t i = 0; i < n; i++)
        g_free(ops[i].message);
    *result = r;

    nvt_lock(&q->lock, NVT_LOCK_QUEUE);
    q->inflight--;
    nvt_unlock(&q->lock, NVT_LOCK_QUEUE);
    return true;
}

/* Our copy of a value to queue (NULL when empty). */
static int copy_value(const void *data, size_t len, const char *name, uint8_t **out)
{
    *out = NULL;
    if (!len)
        return 0;
    *out = malloc(len);
    if (!*out)
        return nvt_error(ENOMEM, "out of memory queueing %zu bytes for blob %s", len, name);
    memcpy(*out, data, len);
    return 0;
}

/* Submit a write-like request; with r->wait, return its result.  An
 * unwaited request belongs to the writer once submitted: not touched. */
static int enqueue_and_finish(nvt_queue *q, request *r)
{
    bool wait = r->wait;
    int res = enqueue(q, r);
    if (res < 0 || !wait)
        return res;
    res = finish_waited(r);
    request_unref(r);
    return res;
}

static request *request_new(req_kind kind, const char *name, bool wait,
                            nvt_completion_fn *cb, void *opaque)
{
    request *r = g_new0(request, 1);
    r->kind = kind;
    r->name = g_strdup(name);
    r->wait = wait;
    r->cb = cb;
    r->opaque = opaque;
    return r;
}

int nvt_queue_write(nvt_queue *q, const char *name, const void *data, size_t len,
                    bool is_delete, bool wait, nvt_completion_fn *cb, void *opaque)
{
    int result;
    nvt_store_op op = { .name = name, .data = data, .len = len, .is_delete = is_delete };
    if (wait && !cb && !nvt_queue_on_writer(q) && run_inline(q, &op, 1, false, &result))
        return result;

    request *r = request_new(is_delete ? REQ_DELETE : REQ_WRITE, name, wait, cb, opaque);
    int res = copy_value(data, len, name, &r->data);
    if (res < 0) {
        request_free(r);
        return res;
    }
    r->len = len;
    return enqueue_and_finish(q, r);
}

int nvt_queue_batch(nvt_queue *q, nvt_store_op *ops, size_t n, bool wait,
                    nvt_completion_fn *cb, void *opaque)
{
    int result;
    if (wait && !cb && !nvt_queue_on_writer(q) && run_inline(q, ops, n, true, &result))
        return result;

    request *r = request_new(REQ_BATCH, NULL, wait, cb, opaque);
    r->batch = g_new0(nvt_store_op, n);
    r->batch_n = n;
    for (size_t i = 0; i < n; i++) {
        uint8_t *copy;
        r->batch[i].name = g_strdup(ops[i].name);
        r->batch[i].is_delete = ops[i].is_delete;
        r->batch[i].len = ops[i].len;
        int res = copy_value(ops[i].data, ops[i].len, ops[i].name, &copy);
        if (res < 0) {
            request_free(r);
            return res;
        }
        r->batch[i].data = copy;
        r->len += ops[i].len;
    }
    return enqueue_and_finish(q, r);
}

int nvt_queue_read(nvt_queue *q, const char *name, bool wait, nvt_completion_fn *cb,
                   void *opaque, uint8_t **data, size_t *len)
{
    request *r = request_new(REQ_READ, name, wait, cb, opaque);
    int res = enqueue(q, r);
    if (res < 0 || !wait)
        return res;
    res = finish_waited(r);
    if (res == 0 && !cb) {
        *data = r->data;
        *len = r->len;
        r->data = NULL;
    }
    request_unref(r);
    return res;
}

int nvt_queue_flush(nvt_queue *q)
{
    request *r = request_new(REQ_FLUSH, NULL, true, NULL, NULL);
    int res = enqueue(q, r);
    if (res < 0)
        return res;
    res = finish_waited(r);
    request_unref(r);
    return res;
}
