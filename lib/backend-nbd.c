/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * backend-nbd.c — an image on a network block device, through libnbd.
 *
 * One libnbd handle connected to one export (nbd_connect_uri: nbd://,
 * nbds://, nbd+unix://, nbds+unix://, nbd+vsock://).  Promises, on top of
 * the rules of backend.h:
 * - the image's size is the export's size: resize cannot grow it (a
 *   request beyond it is -ENOSPC with both numbers, backend.c);
 * - pread/pwrite are NBD_CMD_READ/WRITE, split at the server's maximum
 *   request size; a server with a minimum block size above 1 gets only
 *   aligned requests (read-modify-write of the partial blocks: safe,
 *   since callers serialise and one client writes an image);
 * - flush is NBD_CMD_FLUSH (nothing when the server does not offer
 *   flush: its writes are then as durable as it makes them);
 * - pwrite_durable is one write with NBD_CMD_FLAG_FUA when the server
 *   offers FUA and no earlier write is still unflushed: FUA covers only
 *   its own write, so otherwise it is write + flush, keeping the promise
 *   "this write and every earlier one".  The journal's commit is then
 *   one round trip, and it is ordered exactly like the pwrite + flush
 *   that the crash tests model (nothing else is pending at that point);
 * - a read-only export can only be opened read-only (-EROFS otherwise);
 * - lock is NULL: no lock crosses the network (docs/NBD.md).
 * After any failed request the handle may be dead (the server went
 * away): every later request fails too, and the pager above latches the
 * first failure, so a commit is never half-reported.
 * Every failure returns a negative errno and a message naming the URI.
 */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include <glib.h>

#include "backend.h"
#include "error.h"

bool nvt_nbd_uri(const char *uri)
{
    return g_str_has_prefix(uri, "nbd:") || g_str_has_prefix(uri, "nbds:") ||
           g_str_has_prefix(uri, "nbd+") || g_str_has_prefix(uri, "nbds+");
}

#ifndef HAVE_LIBNBD

int nvt_nbd_backend_open(const char *uri, unsigned flags, nvt_backend **out)
{
    *out = NULL;
    return nvt_error(ENOTSUP, "URI '%s': this nvramtdb was built without libnbd, so network "
                     "block devices are not supported (rebuild with libnbd-dev installed)",
                     uri);
}

#else

#include <dlfcn.h>
#include <libnbd.h>

/* libnbd is loaded when the first NBD image is opened, not linked: it
 * brings GnuTLS, libxml2, ICU and libstdc++ (about 20 libraries, some
 * 4.5 MiB resident and milliseconds of relocation at every start of a
 * process that opens only files, such as nvram-tpmd).  The calls below
 * go through this table (the prototypes come from libnbd.h). */
#define NBD_FUNCTIONS(X) \
    X(nbd_aio_is_closed) \
    X(nbd_aio_is_dead) \
    X(nbd_can_flush) \
    X(nbd_can_fua) \
    X(nbd_close) \
    X(nbd_connect_uri) \
    X(nbd_create) \
    X(nbd_flush) \
    X(nbd_get_block_size) \
    X(nbd_get_errno) \
    X(nbd_get_error) \
    X(nbd_get_size) \
    X(nbd_is_read_only) \
    X(nbd_pread) \
    X(nbd_pwrite) \
    X(nbd_set_handle_name) \
    X(nbd_shutdown)

static struct {
#define NBD_POINTER(f) __typeof__(f) *f;
    NBD_FUNCTIONS(NBD_POINTER)
#undef NBD_POINTER
} nbd_lib;

/* Load libnbd once; false with the reason in *why. */
static bool nbd_load(const char **why)
{
    static GMutex lock;
    static bool loaded;
    static char *failure;

    g_mutex_lock(&lock);
    if (!loaded && !failure) {
        void *dl = dlopen("libnbd.so.0", RTLD_NOW | RTLD_LOCAL);
        const char *missing = NULL;
        if (dl) {
#define NBD_RESOLVE(f)                                  \
            if (!(*(void **)&nbd_lib.f = dlsym(dl, #f)) && !missing) \
                missing = #f;
            NBD_FUNCTIONS(NBD_RESOLVE)
#undef NBD_RESOLVE
        }
        if (!dl)
            failure = g_strdup(dlerror());
        else if (missing)
            failure = g_strdup_printf("libnbd.so.0 has no %s", missing);
        else
            loaded = true;
    }
    *why = failure;
    g_mutex_unlock(&lock);
    return loaded;
}

#define nbd_aio_is_closed (*nbd_lib.nbd_aio_is_closed)
#define nbd_aio_is_dead (*nbd_lib.nbd_aio_is_dead)
#define nbd_can_flush (*nbd_lib.nbd_can_flush)
#define nbd_can_fua (*nbd_lib.nbd_can_fua)
#define nbd_close (*nbd_lib.nbd_close)
#define nbd_connect_uri (*nbd_lib.nbd_connect_uri)
#define nbd_create (*nbd_lib.nbd_create)
#define nbd_flush (*nbd_lib.nbd_flush)
#define nbd_get_block_size (*nbd_lib.nbd_get_block_size)
#define nbd_get_errno (*nbd_lib.nbd_get_errno)
#define nbd_get_error (*nbd_lib.nbd_get_error)
#define nbd_get_size (*nbd_lib.nbd_get_size)
#define nbd_is_read_only (*nbd_lib.nbd_is_read_only)
#define nbd_pread (*nbd_lib.nbd_pread)
#define nbd_pwrite (*nbd_lib.nbd_pwrite)
#define nbd_set_handle_name (*nbd_lib.nbd_set_handle_name)
#define nbd_shutdown (*nbd_lib.nbd_shutdown)

/* Requests are split at this size unless the server asks for less: the
 * NBD protocol lets servers refuse anything above 32 MiB. */
#define NBD_REQUEST_MAX (32u * 1024 * 1024)

typedef struct nbd_backend {
    nvt_backend base;
    struct nbd_handle *h;
    uint64_t size;
    uint32_t block;       /* minimum block size: 1 = any offset and length */
    uint32_t request_max; /* largest request, a multiple of block */
    bool can_flush;
    bool can_fua;
    bool unflushed;       /* a write has not been flushed yet */
} nbd_backend;

static nbd_backend *to_nbd(nvt_backend *be)
{
    return (nbd_backend *)be;
}

/* libnbd's errno for the failed call, never 0. */
static int nbd_err(void)
{
    int e = nbd_get_errno();
    return e > 0 ? e : EIO;
}

/* The errno for a failed request: a lost connection (libnbd then says
 * EINVAL, "invalid state") is ENOTCONN, so callers see what happened. */
static int request_err(nbd_backend *n)
{
    int e = nbd_err();
    if (nbd_aio_is_dead(n->h) > 0 || nbd_aio_is_closed(n->h) > 0)
        return ENOTCONN;
    return e;
}

static int check_range(nvt_backend *be, const char *op, size_t len, uint64_t off)
{
    uint64_t size = to_nbd(be)->size;
    if (off > size || len > size - off)
        return nvt_error(EIO, "%s: %s of %zu bytes at offset %llu goes beyond the end of "
                         "the export (%llu bytes)", be->name, op, len,
                         (unsigned long long)off, (unsigned long long)size);
    return 0;
}

/* Aligned requests, split at request_max. */
static int raw_read(nbd_backend *n, uint8_t *buf, size_t len, uint64_t off)
{
    while (len) {
        size_t chunk = MIN(len, (size_t)n->request_max);
        if (nbd_pread(n->h, buf, chunk, off, 0) < 0) {
            int e = request_err(n);
            return nvt_error(e, "%s: read of %zu bytes at offset %llu failed: %s",
                             n->base.name, chunk, (unsigned long long)off, nbd_get_error());
        }
        buf += chunk;
        off += chunk;
        len -= chunk;
    }
    return 0;
}

static int raw_write(nbd_backend *n, const uint8_t *buf, size_t len, uint64_t off, bool fua)
{
    while (len) {
        size_t chunk = MIN(len, (size_t)n->request_max);
        /* Marked before the request: a failed write may have landed. */
        if (!fua)
            n->unflushed = true;
        if (nbd_pwrite(n->h, buf, chunk, off, fua ? LIBNBD_CMD_FLAG_FUA : 0) < 0) {
            int e = request_err(n);
            n->unflushed = true;
            return nvt_error(e, "%s: %swrite of %zu bytes at offset %llu failed: %s",
                             n->base.name, fua ? "durable (FUA) " : "", chunk,
                             (unsigned long long)off, nbd_get_error());
        }
        buf += chunk;
        off += chunk;
        len -= chunk;
    }
    return 0;
}

static int nbd_be_pread(nvt_backend *be, void *buf, size_t len, uint64_t off)
{
    nbd_backend *n = to_nbd(be);
    int r = check_range(be, "read", len, off);
    if (r < 0 || len == 0)
        return r;
    if (n->block == 1)
        return raw_read(n, buf, len, off);
    /* Widen to whole blocks (the export's size is a multiple of them). */
    uint64_t start = off / n->block * n->block;
    uint64_t end = (off + len + n->block - 1) / n->block * n->block;
    if (start == off && end == off + len)
        return raw_read(n, buf, len, off);
    uint8_t *tmp = g_malloc(end - start);
    r = raw_read(n, tmp, end - start, start);
    if (r == 0)
        memcpy(buf, tmp + (off - start), len);
    g_free(tmp);
    return r;
}

static int do_write(nvt_backend *be, const void *buf, size_t len, uint64_t off, bool fua)
{
    nbd_backend *n = to_nbd(be);
    if (be->read_only)
        return nvt_error(EROFS, "%s: write refused: image is open read-only", be->name);
    int r = check_range(be, "write", len, off);
    if (r < 0 || len == 0)
        return r;
    uint64_t start = off / n->block * n->block;
    uint64_t end = (off + len + n->block - 1) / n->block * n->block;
    if (start == off && end == off + len)
        return raw_write(n, buf, len, off, fua);
    /* Read-modify-write of the partial first and last blocks. */
    size_t span = (size_t)(end - start);
    uint8_t *tmp = g_malloc(span);
    r = raw_read(n, tmp, n->block, start);
    if (r == 0 && end - n->block > start)
        r = raw_read(n, tmp + span - n->block, n->block, end - n->block);
    if (r == 0) {
        memcpy(tmp + (off - start), buf, len);
        r = raw_write(n, tmp, span, start, fua);
    }
    g_free(tmp);
    return r;
}

static int nbd_be_pwrite(nvt_backend *be, const void *buf, size_t len, uint64_t off)
{
    return do_write(be, buf, len, off, false);
}

static int nbd_be_flush(nvt_backend *be)
{
    nbd_backend *n = to_nbd(be);
    if (be->read_only || !n->can_flush) {
        n->unflushed = false;
        return 0;
    }
    if (nbd_flush(n->h, 0) < 0) {
        int e = request_err(n);
        return nvt_error(e, "%s: flush failed: %s", be->name, nbd_get_error());
    }
    n->unflushed = false;
    return 0;
}

static int nbd_be_pwrite_durable(nvt_backend *be, const void *buf, size_t len, uint64_t off)
{
    nbd_backend *n = to_nbd(be);
    if (n->can_fua && !n->unflushed)
        return do_write(be, buf, len, off, true);
    int r = do_write(be, buf, len, off, false);
    return r < 0 ? r : nbd_be_flush(be);
}

static int nbd_be_get_size(nvt_backend *be, uint64_t *size)
{
    *size = to_nbd(be)->size;
    return 0;
}

static void nbd_be_close(nvt_backend *be)
{
    nbd_backend *n = to_nbd(be);
    /* Durability is flush's business: shut down politely, then drop. */
    if (n->h) {
        nbd_shutdown(n->h, 0);
        nbd_close(n->h);
    }
    g_free(be->name);
    g_free(n);
}

static const nvt_backend_ops nbd_ops = {
    .kind = "nbd",
    .pread = nbd_be_pread,
    .pwrite = nbd_be_pwrite,
    .flush = nbd_be_flush,
    .get_size = nbd_be_get_size,
    .resize = NULL,
    .lock = NULL,
    .close = nbd_be_close,
    .pwrite_durable = nbd_be_pwrite_durable,
};

int nvt_nbd_backend_open(const char *uri, unsigned flags, nvt_backend **out)
{
    const bool ro = flags & NVT_NBD_READONLY;
    int r;

    *out = NULL;
    if (flags & ~(unsigned)NVT_NBD_READONLY)
        return nvt_error(EINVAL, "%s: unknown open flags 0x%x", uri, flags);
    const char *why;
    if (!nbd_load(&why))
        return nvt_error(ENOTSUP, "URI '%s': cannot load libnbd (%s)", uri, why);
    struct nbd_handle *h = nbd_create();
    if (!h)
        return nvt_error(nbd_err(), "%s: cannot create an NBD handle: %s", uri,
                         nbd_get_error());
    nbd_set_handle_name(h, "nvramtdb");
    if (nbd_connect_uri(h, uri) < 0) {
        int e = nbd_err();
        r = nvt_error(e, "%s: cannot connect to the NBD server: %s", uri, nbd_get_error());
        nbd_close(h);
        return r;
    }
    int64_t size = nbd_get_size(h);
    int export_ro = nbd_is_read_only(h);
    int can_flush = nbd_can_flush(h);
    int can_fua = nbd_can_fua(h);
    int64_t minb = nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM);
    int64_t maxb = nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM);
    if (size < 0 || export_ro < 0 || can_flush < 0 || can_fua < 0 || minb < 0 || maxb < 0) {
        r = nvt_error(nbd_err(), "%s: cannot query the export: %s", uri, nbd_get_error());
        goto fail;
    }
    if (export_ro && !ro) {
        r = nvt_error(EROFS, "%s: the NBD export is read-only; open the image read-only",
                      uri);
        goto fail;
    }
    uint32_t block = minb > 1 ? (uint32_t)minb : 1;
    if (block > 65536 || (block & (block - 1))) {
        r = nvt_error(ENOTSUP, "%s: the NBD server's minimum block size %u is not a power "
                      "of two up to 64 KiB", uri, block);
        goto fail;
    }
    uint64_t rmax = maxb > 0 && (uint64_t)maxb < NBD_REQUEST_MAX ? (uint64_t)maxb
                                                                  : NBD_REQUEST_MAX;
    rmax = rmax / block * block;
    if (rmax < block)
        rmax = block;

    nbd_backend *n = g_new0(nbd_backend, 1);
    n->base.ops = &nbd_ops;
    n->base.name = g_strdup(uri);
    n->base.read_only = ro;
    n->h = h;
    /* Only whole blocks of the export are addressable. */
    n->size = (uint64_t)size / block * block;
    n->block = block;
    n->request_max = (uint32_t)rmax;
    n->can_flush = can_flush;
    n->can_fua = can_fua;
    *out = &n->base;
    return 0;

fail:
    nbd_close(h);
    return r;
}

#endif /* HAVE_LIBNBD */
