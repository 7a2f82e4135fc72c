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
    const char *kind;     /* "file", "mem", "fault" */
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

/* A backend that forwards every call to @inner but does not close it:
 * lets a test keep an image after the handle that used it is closed. */
nvt_backend *nvt_be_borrow(nvt_backend *inner);

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
/* Number of flushes so far (for tests and size computation). */
uint64_t nvt_mem_backend_flushes(nvt_backend *be);

/* ---- fault-injecting backend (backend-fault.c) ------------------------ *
 * Wraps another backend (which it owns) and implements the crash model of
 * DESIGN.md section 7: every write since the last flush is pending; a
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

#endif /* NVT_BACKEND_H */
