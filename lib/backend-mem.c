/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * backend-mem.c — an image in memory.
 *
 * Used by the tests, by read-only opens (a private copy on which tdb may
 * replay an interrupted commit without touching the real image), and to
 * compute image sizes by running the formatting recipe.  Writes past the
 * end grow the image (up to an optional cap), like a sparse file.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "backend.h"
#include "error.h"

typedef struct mem_backend {
    nvt_backend base;
    GByteArray *bytes;
    size_t cap;           /* 0 = unlimited */
} mem_backend;

static mem_backend *to_mem(nvt_backend *be)
{
    return (mem_backend *)be;
}

static int mem_grow(mem_backend *m, uint64_t size)
{
    if (size <= m->bytes->len)
        return 0;
    if ((m->cap && size > m->cap) || size > G_MAXUINT)
        return nvt_error(ENOSPC, "%s: memory image capped at %zu bytes, %llu needed",
                         m->base.name, m->cap, (unsigned long long)size);
    guint old = m->bytes->len;
    g_byte_array_set_size(m->bytes, (guint)size);
    memset(m->bytes->data + old, 0, size - old);
    return 0;
}

static int mem_pread(nvt_backend *be, void *buf, size_t len, uint64_t off)
{
    mem_backend *m = to_mem(be);
    if (off > m->bytes->len || len > m->bytes->len - off)
        return nvt_error(EIO, "%s: read of %zu bytes at %llu beyond the end (%u)",
                         be->name, len, (unsigned long long)off, m->bytes->len);
    if (len)
        memcpy(buf, m->bytes->data + off, len);
    return 0;
}

static int mem_pwrite(nvt_backend *be, const void *buf, size_t len, uint64_t off)
{
    mem_backend *m = to_mem(be);
    if (be->read_only)
        return nvt_error(EROFS, "%s: read-only", be->name);
    if (off + len < off)
        return nvt_error(EINVAL, "%s: write offset overflows", be->name);
    int r = mem_grow(m, off + len);
    if (r < 0)
        return r;
    memcpy(m->bytes->data + off, buf, len);
    return 0;
}

static int mem_flush(nvt_backend *be)
{
    return 0;                   /* nothing is volatile */
}

static int mem_get_size(nvt_backend *be, uint64_t *size)
{
    *size = to_mem(be)->bytes->len;
    return 0;
}

static int mem_resize(nvt_backend *be, uint64_t size)
{
    if (be->read_only)
        return nvt_error(EROFS, "%s: read-only", be->name);
    return mem_grow(to_mem(be), size);
}

static void mem_close(nvt_backend *be)
{
    mem_backend *m = to_mem(be);
    g_byte_array_unref(m->bytes);
    g_free(be->name);
    g_free(m);
}

static const nvt_backend_ops mem_ops = {
    .kind = "mem",
    .pread = mem_pread,
    .pwrite = mem_pwrite,
    .flush = mem_flush,
    .get_size = mem_get_size,
    .resize = mem_resize,
    .lock = NULL,
    .close = mem_close,
};

nvt_backend *nvt_mem_backend_new(const void *initial, size_t len)
{
    mem_backend *m = g_new0(mem_backend, 1);
    m->base.ops = &mem_ops;
    m->base.name = g_strdup("mem:");
    m->bytes = g_byte_array_sized_new((guint)len);
    if (initial && len)
        g_byte_array_append(m->bytes, initial, (guint)len);
    return &m->base;
}

nvt_backend *nvt_mem_backend_new_capped(size_t max_size)
{
    nvt_backend *be = nvt_mem_backend_new(NULL, 0);
    to_mem(be)->cap = max_size;
    return be;
}

const uint8_t *nvt_mem_backend_data(nvt_backend *be, size_t *len)
{
    mem_backend *m = to_mem(be);
    *len = m->bytes->len;
    return m->bytes->data;
}
