/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * backend.h — where the bytes of an image live.
 *
 * A backend stores bytes at offsets and makes them durable on flush.  It
 * knows nothing of tdb or records: policy (what to write, when to flush,
 * retries, capacity) lives in the layers above, as in QEMU's block layer.
 * The vtable is internal (backends are compiled into the library), so it
 * carries no version: adding an operation updates every backend.
 *
 * Rules every backend follows:
 * - pread/pwrite transfer the whole range or fail; they return 0 or a
 *   negative errno, never a short count.  Reading past the end is -EIO.
 * - A write is durable only once a later flush has returned 0, or once
 *   pwrite_durable of it has returned 0.
 * - No mmap: everything goes through these calls.
 * - A backend is used by one thread at a time (callers serialise).
 */
#ifndef NVT_BACKEND_H
#define NVT_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct nvt_backend nvt_backend;

typedef struct nvt_backend_ops {
    const char *kind;     /* "file", "mem", "nbd"; the test library adds others */
    int (*pread)(nvt_backend *be, void *buf, size_t len, uint64_t off);
    int (*pwrite)(nvt_backend *be, const void *buf, size_t len, uint64_t off);
    int (*flush)(nvt_backend *be);
    int (*get_size)(nvt_backend *be, uint64_t *size);
    /* Grow (never shrink) the backing store to @size bytes, reserving the
     * space so that later writes below @size cannot fail with ENOSPC.
     * Optional: NULL means the size is fixed. */
    int (*resize)(nvt_backend *be, uint64_t size);
    /* Optional: take (exclusive) or share the image's lock; -EBUSY if
     * another holder conflicts.  NULL means no locking is needed. */
    int (*lock)(nvt_backend *be, bool exclusive);
    void (*close)(nvt_backend *be);
    /* Optional: pwrite followed by flush, as one operation the backend may
     * do faster (one device request).  Same promise: on 0, this write and
     * every earlier one are durable.  NULL means pwrite then flush. */
    int (*pwrite_durable)(nvt_backend *be, const void *buf, size_t len, uint64_t off);
} nvt_backend_ops;

struct nvt_backend {
    const nvt_backend_ops *ops;
    char *name;          /* for messages: the path or "mem:" */
    bool read_only;
};

/* Dispatchers (keep callers free of ops-> chains). */
static inline int nvt_be_pread(nvt_backend *be, void *buf, size_t len, uint64_t off)
{ return be->ops->pread(be, buf, len, off); }
static inline int nvt_be_pwrite(nvt_backend *be, const void *buf, size_t len, uint64_t off)
{ return be->ops->pwrite(be, buf, len, off); }
static inline int nvt_be_flush(nvt_backend *be) { return be->ops->flush(be); }
/* Write and make durable (with every earlier write): see pwrite_durable. */
int nvt_be_pwrite_durable(nvt_backend *be, const void *buf, size_t len, uint64_t off);
static inline int nvt_be_get_size(nvt_backend *be, uint64_t *size)
{ return be->ops->get_size(be, size); }
int nvt_be_resize(nvt_backend *be, uint64_t size);
int nvt_be_lock(nvt_backend *be, bool exclusive);
/* Close and free; NULL is accepted. */
void nvt_be_close(nvt_backend *be);

/* ---- file backend (backend-file.c) ------------------------------------ */
#define NVT_FILE_READONLY (1u << 0)
#define NVT_FILE_CREATE   (1u << 1)  /* create if absent (O_CREAT, mode 0600) */
/* Open a regular file or block device.  flush = fdatasync; pwrite_durable
 * of page-aligned data when nothing else is unflushed is one O_DIRECT
 * write with RWF_DSYNC (no page-cache copy, no separate flush call);
 * resize uses
 * posix_fallocate so that the space is really reserved; lock uses an OFD
 * lock (F_OFD_SETLK) on the whole file, so it works between threads too. */
int nvt_file_backend_open(const char *path, unsigned flags, nvt_backend **out);

/* ---- memory backend (backend-mem.c) ----------------------------------- */
/* A growable in-memory image.  @initial may be NULL (empty image). */
nvt_backend *nvt_mem_backend_new(const void *initial, size_t len);
/* Memory image capped at @max_size bytes: resize beyond it is -ENOSPC. */
nvt_backend *nvt_mem_backend_new_capped(size_t max_size);
/* Borrow the current contents (valid until the next write/resize). */
const uint8_t *nvt_mem_backend_data(nvt_backend *be, size_t *len);

/* ---- NBD backend (backend-nbd.c) ------------------------------------- */
#define NVT_NBD_READONLY (1u << 0)
/* Whether @uri names an NBD export (nbd:, nbds:, nbd+unix:, ...). */
bool nvt_nbd_uri(const char *uri);
/* Connect to the export @uri names (libnbd's URI syntax).  Without libnbd
 * at build time: -ENOTSUP with a message saying so. */
int nvt_nbd_backend_open(const char *uri, unsigned flags, nvt_backend **out);

/* Backends for tests only (borrowed, flush-counting, fault-injecting)
 * are in the test library: lib/test/nvttest.h. */

#endif /* NVT_BACKEND_H */
