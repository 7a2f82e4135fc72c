/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * backend-wrap.c — backends that forward every call to another one.
 *
 * A borrowed backend does not close its inner backend, so a test keeps an
 * image after the handle that used it is closed.  A counting backend owns
 * its inner backend and counts the flushes that reach it, so a test can
 * say what a commit costs whatever backend holds the bytes.
 */
#include "config.h"

#include <glib.h>

#include "nvttest.h"

typedef struct wrapped {
    nvt_backend base;
    nvt_backend *inner;
    bool owns_inner;
    uint64_t flushes;
} wrapped;

static wrapped *to_wrapped(nvt_backend *be)
{
    return (wrapped *)be;
}

static nvt_backend *inner_of(nvt_backend *be)
{
    return to_wrapped(be)->inner;
}

static int wrap_pread(nvt_backend *be, void *buf, size_t len, uint64_t off)
{
    return nvt_be_pread(inner_of(be), buf, len, off);
}

static int wrap_pwrite(nvt_backend *be, const void *buf, size_t len, uint64_t off)
{
    return nvt_be_pwrite(inner_of(be), buf, len, off);
}

static int wrap_pwrite_durable(nvt_backend *be, const void *buf, size_t len, uint64_t off)
{
    return nvt_be_pwrite_durable(inner_of(be), buf, len, off);
}

static int wrap_flush(nvt_backend *be)
{
    to_wrapped(be)->flushes++;
    return nvt_be_flush(inner_of(be));
}

static int wrap_get_size(nvt_backend *be, uint64_t *size)
{
    return nvt_be_get_size(inner_of(be), size);
}

static int wrap_resize(nvt_backend *be, uint64_t size)
{
    return nvt_be_resize(inner_of(be), size);
}

static int wrap_lock(nvt_backend *be, bool exclusive)
{
    return nvt_be_lock(inner_of(be), exclusive);
}

static void wrap_close(nvt_backend *be)
{
    wrapped *w = to_wrapped(be);
    if (w->owns_inner)
        nvt_be_close(w->inner);
    g_free(be->name);
    g_free(w);
}

static const nvt_backend_ops borrow_ops = {
    .kind = "borrowed",
    .pread = wrap_pread,
    .pwrite = wrap_pwrite,
    .flush = wrap_flush,
    .get_size = wrap_get_size,
    .resize = wrap_resize,
    .lock = wrap_lock,
    .close = wrap_close,
    .pwrite_durable = wrap_pwrite_durable,
};

/* No pwrite_durable: a durable write then comes as a pwrite and a flush,
 * and the flush is counted. */
static const nvt_backend_ops counting_ops = {
    .kind = "counting",
    .pread = wrap_pread,
    .pwrite = wrap_pwrite,
    .flush = wrap_flush,
    .get_size = wrap_get_size,
    .resize = wrap_resize,
    .lock = wrap_lock,
    .close = wrap_close,
};

static nvt_backend *wrap(const nvt_backend_ops *ops, nvt_backend *inner, bool owns_inner)
{
    wrapped *w = g_new0(wrapped, 1);
    w->base.ops = ops;
    w->base.name = g_strdup(inner->name);
    w->base.read_only = inner->read_only;
    w->inner = inner;
    w->owns_inner = owns_inner;
    return &w->base;
}

nvt_backend *nvt_be_borrow(nvt_backend *inner)
{
    return wrap(&borrow_ops, inner, false);
}

nvt_backend *nvt_counting_backend_new(nvt_backend *inner)
{
    return wrap(&counting_ops, inner, true);
}

uint64_t nvt_counting_backend_flushes(nvt_backend *be)
{
    g_return_val_if_fail(be && be->ops == &counting_ops, 0);
    return to_wrapped(be)->flushes;
}
