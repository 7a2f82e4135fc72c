/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * backend-fault.c — a backend that loses power and fails on request.
 *
 * The crash model of the tests, in the manner of SQLite's crash VFS.  The
 * fault backend owns an inner backend and two views of it:
 *
 * - the process view is the inner backend itself: every accepted pwrite
 *   goes there at once, so reads see it, as they would see the page cache;
 * - the durable view is a private copy of what the disk is known to hold:
 *   the inner content snapshotted at creation, plus every write made
 *   durable by a later successful flush.
 *
 * Between the two sits the pending list: each accepted pwrite since the
 * last successful flush, in order, with a copy of its bytes.  A flush
 * first flushes the inner backend; only if that succeeds are the pending
 * writes applied, in order, to the durable copy and forgotten.
 *
 * resize passes through and grows the durable copy (with zeros) at once:
 * the file backend makes growth durable with an fsync inside resize, so a
 * successful resize is not something a power cut can undo.
 *
 * Counted operations are pwrite and flush.  An armed fault fires at the
 * Nth counted operation among the kinds selected (write, flush or both):
 * - POWER_CUT: that operation fails with -EIO and does not happen; the
 *   process is dead from then on: every pwrite, flush and resize fails
 *   with -EIO (preads are still served from the inner backend, so a dying
 *   process may read what it had written).  Re-arming does not revive it.
 * - TRANSIENT: that operation fails with -err and has no effect (a failed
 *   flush leaves the pending writes pending); later operations succeed.
 * - PERSISTENT: that operation and every later pwrite and flush fail with
 *   -err, with no effect, until the backend is re-armed.
 * Every injected failure leaves a message naming the fault, the operation
 * number and kind.
 *
 * nvt_fault_crash_image() answers "what would the disk hold if power were
 * cut now?": the durable copy plus a random subset of the pending writes,
 * applied in order.  Each pending write is kept whole, dropped, or torn;
 * a torn write is split at 512-byte sector boundaries of the image and
 * each piece is kept, dropped or replaced with garbage.  Garbage never
 * reaches outside the write's own byte range (the "powersafe overwrite"
 * assumption SQLite also makes).  nvt_fault_set_sector_atomic() models a
 * disk whose sectors are written atomically instead: a torn write's pieces
 * are then each old or new, never garbage.  The choice is a deterministic function
 * of the seed, so a failing seed can be replayed.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "error.h"
#include "nvttest.h"

#define SECTOR 512

typedef struct pending_write {
    uint64_t off;
    size_t len;
    uint8_t data[];
} pending_write;

typedef struct fault_backend {
    nvt_backend base;
    nvt_backend *inner;

    uint8_t *durable;        /* what the disk is known to hold */
    size_t durable_len;
    GPtrArray *pending;      /* pending_write *, in issue order */

    uint64_t ops;            /* every pwrite and flush call so far */

    nvt_fault_mode mode;     /* the armed fault */
    nvt_fault_ops on;
    uint64_t countdown;      /* counted operations until it fires */
    int err;
    bool fired;
    uint64_t fired_at;       /* value of ops when it fired */
    bool dead;               /* power was cut */
    bool failing;            /* a persistent error has fired */
    bool sector_atomic;      /* torn sectors are old or new, never garbage */
} fault_backend;

static const nvt_backend_ops fault_ops;

static fault_backend *to_fault(nvt_backend *be)
{
    return (fault_backend *)be;
}

static bool is_fault(nvt_backend *be)
{
    return be && be->ops == &fault_ops;
}

static const char *op_name(nvt_fault_ops kind)
{
    return kind == NVT_FAULT_ON_FLUSH ? "flush" : "pwrite";
}

/* Grow a malloc()ed buffer to @want bytes, zero-filling the new part. */
static int grow_buf(uint8_t **buf, size_t *len, uint64_t want)
{
    uint8_t *p;

    if (want <= *len)
        return 0;
    if (want > SIZE_MAX)
        return -ENOMEM;
    p = realloc(*buf, (size_t)want);
    if (!p)
        return -ENOMEM;
    memset(p + *len, 0, (size_t)want - *len);
    *buf = p;
    *len = (size_t)want;
    return 0;
}

/*
 * Decide the fate of one pwrite or flush before it reaches the inner
 * backend.  Returns 0 to let it through, or the injected negative errno
 * (with its message) if it must fail without effect.
 */
static int fault_gate(fault_backend *fb, nvt_fault_ops kind)
{
    uint64_t op = ++fb->ops;

    if (fb->dead)
        return nvt_error(EIO, "%s: injected power cut at operation %llu: %s %llu "
                         "fails, the device is gone", fb->base.name,
                         (unsigned long long)fb->fired_at, op_name(kind),
                         (unsigned long long)op);
    if (fb->failing)
        return nvt_error(fb->err, "%s: injected persistent error (%s) since operation "
                         "%llu: %s %llu fails", fb->base.name, g_strerror(fb->err),
                         (unsigned long long)fb->fired_at, op_name(kind),
                         (unsigned long long)op);
    if (fb->mode == NVT_FAULT_NONE || fb->fired || !(fb->on & kind))
        return 0;
    if (--fb->countdown > 0)
        return 0;

    fb->fired = true;
    fb->fired_at = op;
    switch (fb->mode) {
    case NVT_FAULT_POWER_CUT:
        fb->dead = true;
        return nvt_error(EIO, "%s: injected power cut at operation %llu (%s)",
                         fb->base.name, (unsigned long long)op, op_name(kind));
    case NVT_FAULT_PERSISTENT:
        fb->failing = true;
        return nvt_error(fb->err, "%s: injected persistent error (%s) at operation "
                         "%llu (%s)", fb->base.name, g_strerror(fb->err),
                         (unsigned long long)op, op_name(kind));
    case NVT_FAULT_TRANSIENT:
    default:
        return nvt_error(fb->err, "%s: injected transient error (%s) at operation "
                         "%llu (%s)", fb->base.name, g_strerror(fb->err),
                         (unsigned long long)op, op_name(kind));
    }
}

static int fault_pread(nvt_backend *be, void *buf, size_t len, uint64_t off)
{
    return nvt_be_pread(to_fault(be)->inner, buf, len, off);
}

static int fault_pwrite(nvt_backend *be, const void *buf, size_t len, uint64_t off)
{
    fault_backend *fb = to_fault(be);
    pending_write *w;
    int r;

    r = fault_gate(fb, NVT_FAULT_ON_WRITE);
    if (r < 0)
        return r;
    if (off + len < off)
        return nvt_error(EINVAL, "%s: write offset overflows", be->name);
    if (len > SIZE_MAX - sizeof *w)
        return nvt_error(ENOMEM, "%s: write of %zu bytes is too large", be->name, len);
    r = nvt_be_pwrite(fb->inner, buf, len, off);
    if (r < 0)
        return r;
    if (len == 0)
        return 0;
    w = g_malloc(sizeof *w + len);
    w->off = off;
    w->len = len;
    memcpy(w->data, buf, len);
    g_ptr_array_add(fb->pending, w);
    return 0;
}

static int make_pending_durable(fault_backend *fb)
{
    for (guint i = 0; i < fb->pending->len; i++) {
        const pending_write *w = g_ptr_array_index(fb->pending, i);
        if (grow_buf(&fb->durable, &fb->durable_len, w->off + w->len) < 0)
            return nvt_error(ENOMEM, "%s: out of memory growing the durable image",
                             fb->base.name);
        memcpy(fb->durable + w->off, w->data, w->len);
    }
    g_ptr_array_set_size(fb->pending, 0);
    return 0;
}

static int fault_flush(nvt_backend *be)
{
    fault_backend *fb = to_fault(be);
    int r;

    r = fault_gate(fb, NVT_FAULT_ON_FLUSH);
    if (r < 0)
        return r;
    r = nvt_be_flush(fb->inner);
    if (r < 0)
        return r;
    return make_pending_durable(fb);
}

static int fault_get_size(nvt_backend *be, uint64_t *size)
{
    return nvt_be_get_size(to_fault(be)->inner, size);
}

static int fault_resize(nvt_backend *be, uint64_t size)
{
    fault_backend *fb = to_fault(be);
    int r;

    if (fb->dead)
        return nvt_error(EIO, "%s: injected power cut at operation %llu: resize "
                         "fails, the device is gone", be->name,
                         (unsigned long long)fb->fired_at);
    r = nvt_be_resize(fb->inner, size);
    if (r < 0)
        return r;
    /* Growth is durable at once (see the top of this file). */
    if (grow_buf(&fb->durable, &fb->durable_len, size) < 0)
        return nvt_error(ENOMEM, "%s: out of memory growing the durable image to %llu "
                         "bytes", be->name, (unsigned long long)size);
    return 0;
}

static int fault_lock(nvt_backend *be, bool exclusive)
{
    return nvt_be_lock(to_fault(be)->inner, exclusive);
}

static void fault_close(nvt_backend *be)
{
    fault_backend *fb = to_fault(be);

    nvt_be_close(fb->inner);
    g_ptr_array_unref(fb->pending);
    free(fb->durable);
    g_free(be->name);
    g_free(fb);
}

static const nvt_backend_ops fault_ops = {
    .kind = "fault",
    .pread = fault_pread,
    .pwrite = fault_pwrite,
    .flush = fault_flush,
    .get_size = fault_get_size,
    .resize = fault_resize,
    .lock = fault_lock,
    .close = fault_close,
};

/* On failure (the inner content cannot be read) the inner backend is
 * closed, NULL is returned and the message says why. */
nvt_backend *nvt_fault_backend_new(nvt_backend *inner)
{
    fault_backend *fb;
    uint64_t size;
    int r;

    g_return_val_if_fail(inner != NULL, NULL);
    r = nvt_be_get_size(inner, &size);
    if (r < 0)
        goto fail;
    if (size > SIZE_MAX) {
        nvt_error(EFBIG, "%s: %llu bytes is too large to snapshot for fault injection",
                  inner->name, (unsigned long long)size);
        goto fail;
    }

    fb = g_new0(fault_backend, 1);
    fb->base.ops = &fault_ops;
    fb->base.name = g_strdup_printf("fault:%s", inner->name);
    fb->base.read_only = inner->read_only;
    fb->inner = inner;
    fb->pending = g_ptr_array_new_with_free_func(g_free);
    fb->durable_len = (size_t)size;
    /* malloc, so that crash images and the durable copy share one allocator. */
    fb->durable = malloc(size ? (size_t)size : 1);
    if (!fb->durable) {
        nvt_error(ENOMEM, "%s: out of memory snapshotting %llu bytes",
                  inner->name, (unsigned long long)size);
        fb->inner = NULL;
        fault_close(&fb->base);
        goto fail;
    }
    r = nvt_be_pread(inner, fb->durable, (size_t)size, 0);
    if (r < 0) {
        nvt_error_prefix(-r, "%s: snapshotting the initial image", inner->name);
        fb->inner = NULL;
        fault_close(&fb->base);
        goto fail;
    }
    return &fb->base;

fail:
    nvt_be_close(inner);
    return NULL;
}

void nvt_fault_arm(nvt_backend *be, nvt_fault_mode mode, nvt_fault_ops on,
                   uint64_t n, int err)
{
    fault_backend *fb;

    g_return_if_fail(is_fault(be));
    g_return_if_fail(mode == NVT_FAULT_NONE || n >= 1);
    fb = to_fault(be);
    fb->mode = mode;
    fb->on = on & NVT_FAULT_ON_ANY;
    fb->countdown = n;
    fb->err = err > 0 ? err : EIO;
    fb->fired = false;
    fb->failing = false;     /* a new plan replaces a persistent error */
}

uint64_t nvt_fault_op_count(nvt_backend *be)
{
    g_return_val_if_fail(is_fault(be), 0);
    return to_fault(be)->ops;
}

void nvt_fault_set_sector_atomic(nvt_backend *be, bool atomic)
{
    g_return_if_fail(is_fault(be));
    to_fault(be)->sector_atomic = atomic;
}

bool nvt_fault_fired(nvt_backend *be)
{
    g_return_val_if_fail(is_fault(be), false);
    return to_fault(be)->fired;
}

/* splitmix64: small, fast, and the same on every platform and libc. */
static uint64_t next_rand(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

enum fate { KEEP, DROP, TEAR };

/* Put bytes [off, off + len) into the image, growing it if needed; with
 * @src NULL the bytes are garbage. */
static int put_bytes(uint8_t **img, size_t *img_len, uint64_t off,
                     const uint8_t *src, size_t len, uint64_t *rng)
{
    if (grow_buf(img, img_len, off + len) < 0)
        return -ENOMEM;
    if (src) {
        memcpy(*img + off, src, len);
    } else {
        for (size_t i = 0; i < len; i++)
            (*img)[off + i] = (uint8_t)next_rand(rng);
    }
    return 0;
}

uint8_t *nvt_fault_crash_image(nvt_backend *be, uint32_t seed, size_t *len)
{
    fault_backend *fb;
    uint64_t rng = seed;
    uint8_t *img;
    size_t img_len;

    g_return_val_if_fail(is_fault(be) && len != NULL, NULL);
    fb = to_fault(be);
    img_len = fb->durable_len;
    img = malloc(img_len ? img_len : 1);
    if (!img)
        goto oom;
    memcpy(img, fb->durable, img_len);

    for (guint i = 0; i < fb->pending->len; i++) {
        const pending_write *w = g_ptr_array_index(fb->pending, i);
        enum fate fate = (enum fate)(next_rand(&rng) % 3);
        uint64_t pos = w->off, end = w->off + w->len;

        if (fate == DROP)
            continue;
        if (fate == KEEP) {
            if (put_bytes(&img, &img_len, w->off, w->data, w->len, &rng) < 0)
                goto oom;
            continue;
        }
        /* Torn: each piece of the write within one image sector has its
         * own fate. */
        while (pos < end) {
            uint64_t piece_end = MIN((pos / SECTOR + 1) * SECTOR, end);
            size_t n = (size_t)(piece_end - pos);
            enum fate pf = (enum fate)(next_rand(&rng) % 3);
            int r = 0;

            if (pf == TEAR && fb->sector_atomic)
                pf = (next_rand(&rng) & 1) ? KEEP : DROP;
            if (pf == KEEP)
                r = put_bytes(&img, &img_len, pos, w->data + (pos - w->off), n, &rng);
            else if (pf == TEAR)
                r = put_bytes(&img, &img_len, pos, NULL, n, &rng);
            if (r < 0)
                goto oom;
            pos = piece_end;
        }
    }
    *len = img_len;
    return img;

oom:
    free(img);
    *len = 0;
    nvt_error(ENOMEM, "%s: out of memory building a crash image", be->name);
    return NULL;
}
