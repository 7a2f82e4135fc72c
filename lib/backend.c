/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* backend.c — dispatch of the optional backend operations. */
#include "config.h"

#include <glib.h>

#include "backend.h"
#include "error.h"

int nvt_be_resize(nvt_backend *be, uint64_t size)
{
    uint64_t cur;
    int r;

    if (be->ops->resize)
        return be->ops->resize(be, size);
    r = nvt_be_get_size(be, &cur);
    if (r < 0)
        return r;
    if (size > cur)
        return nvt_error(ENOSPC, "%s: image is %llu bytes and cannot grow to %llu",
                         be->name, (unsigned long long)cur, (unsigned long long)size);
    return 0;
}

int nvt_be_pwrite_durable(nvt_backend *be, const void *buf, size_t len, uint64_t off)
{
    if (be->ops->pwrite_durable)
        return be->ops->pwrite_durable(be, buf, len, off);
    int r = nvt_be_pwrite(be, buf, len, off);
    return r < 0 ? r : nvt_be_flush(be);
}

int nvt_be_lock(nvt_backend *be, bool exclusive)
{
    return be->ops->lock ? be->ops->lock(be, exclusive) : 0;
}

void nvt_be_close(nvt_backend *be)
{
    if (be)
        be->ops->close(be);
}

/* ---- borrowed backends -------------------------------------------------- */

typedef struct borrowed {
    nvt_backend base;
    nvt_backend *inner;
} borrowed;

static nvt_backend *inner_of(nvt_backend *be)
{
    return ((borrowed *)be)->inner;
}

static int borrow_pread(nvt_backend *be, void *buf, size_t len, uint64_t off)
{
    return nvt_be_pread(inner_of(be), buf, len, off);
}

static int borrow_pwrite(nvt_backend *be, const void *buf, size_t len, uint64_t off)
{
    return nvt_be_pwrite(inner_of(be), buf, len, off);
}

static int borrow_pwrite_durable(nvt_backend *be, const void *buf, size_t len, uint64_t off)
{
    return nvt_be_pwrite_durable(inner_of(be), buf, len, off);
}

static int borrow_flush(nvt_backend *be)
{
    return nvt_be_flush(inner_of(be));
}

static int borrow_get_size(nvt_backend *be, uint64_t *size)
{
    return nvt_be_get_size(inner_of(be), size);
}

static int borrow_resize(nvt_backend *be, uint64_t size)
{
    return nvt_be_resize(inner_of(be), size);
}

static int borrow_lock(nvt_backend *be, bool exclusive)
{
    return nvt_be_lock(inner_of(be), exclusive);
}

static void borrow_close(nvt_backend *be)
{
    g_free(be->name);
    g_free(be);
}

static const nvt_backend_ops borrow_ops = {
    .kind = "borrowed",
    .pread = borrow_pread,
    .pwrite = borrow_pwrite,
    .flush = borrow_flush,
    .get_size = borrow_get_size,
    .resize = borrow_resize,
    .lock = borrow_lock,
    .close = borrow_close,
    .pwrite_durable = borrow_pwrite_durable,
};

nvt_backend *nvt_be_borrow(nvt_backend *inner)
{
    borrowed *b = g_new0(borrowed, 1);
    b->base.ops = &borrow_ops;
    b->base.name = g_strdup(inner->name);
    b->base.read_only = inner->read_only;
    b->inner = inner;
    return &b->base;
}
