/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * queue.h — the commit queue: one writer thread per open image.
 *
 * Every write, delete, queued read and flush barrier of an image goes
 * through its queue, in submission order.  The writer thread takes
 * everything pending (bounded in bytes), commits the writes and deletes
 * as one atomic group (nvt_store_commit_group: one journal frame and one
 * flush, or one tdb transaction), serves reads and barriers after the
 * writes before them, and then completes each request: its callback runs
 * on the writer thread, and a waiting submitter is woken.
 *
 * When nothing is queued or in flight, a synchronous request without a
 * callback is committed on the calling thread instead (same semantics,
 * no thread hand-off).
 *
 * Callbacks run on the writer thread, outside every lock.  A callback may
 * submit new requests that do not wait (NVRAMTDB_ASYNC) and may read
 * synchronously; it must not wait for a request nor close the image
 * (both are -EDEADLK).  Each callback finds its request's message as the
 * thread's last error.
 */
#ifndef NVT_QUEUE_H
#define NVT_QUEUE_H

#include <glib.h>

#include "store.h"

typedef struct nvt_queue nvt_queue;

/* Completion of a request: the same signature as the public
 * nvramtdb_completion_fn, so nvramtdb.c passes the caller's callback on. */
typedef void nvt_completion_fn(void *opaque, int errcode, bool is_write, uint8_t *data,
                               size_t len);

/* Start the writer thread of @st; @store_lock serialises store access
 * with the caller's direct reads. */
nvt_queue *nvt_queue_new(nvt_store *st, GMutex *store_lock);

/* Finish every accepted request, then stop the thread and free. */
void nvt_queue_free(nvt_queue *q);

/* Queue a write (@data is copied) or a delete.  With @wait, return the
 * request's result once it completed; otherwise 0 once accepted. */
int nvt_queue_write(nvt_queue *q, const char *name, const void *data, size_t len,
                    bool is_delete, bool wait, nvt_completion_fn *cb, void *opaque);

/* Queue @ops (data copied) as one all-or-nothing commit of their own
 * (nvt_store_commit_batch); one completion for all.  With @wait, return
 * the batch's result once it completed; otherwise 0 once accepted.  The
 * ops are the caller's scratch: a batch committed on the calling thread
 * leaves its results in them. */
int nvt_queue_batch(nvt_queue *q, nvt_store_op *ops, size_t n, bool wait,
                    nvt_completion_fn *cb, void *opaque);

/* Queue a read.  With @cb the value goes to the callback; otherwise
 * (@wait required) to data and len. */
int nvt_queue_read(nvt_queue *q, const char *name, bool wait, nvt_completion_fn *cb,
                   void *opaque, uint8_t **data, size_t *len);

/* Wait until every request accepted before is complete.  Returns the
 * store's failure, if it has one. */
int nvt_queue_flush(nvt_queue *q);

/* True when nothing is queued or being processed: a direct read then
 * sees every write submitted before it. */
bool nvt_queue_idle(nvt_queue *q);
/* True on the writer thread (inside a callback). */
bool nvt_queue_on_writer(nvt_queue *q);

#endif /* NVT_QUEUE_H */
