/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* backend.c — dispatch of the optional backend operations. */
#include "config.h"

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
