/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* open.c — a handle on a backend a test built (see nvttest.h). */
#include "config.h"

#include "internal.h"
#include "nvttest.h"

int nvt_open_backend(nvt_backend *be, unsigned flags, nvramtdb **dbp)
{
    return nvt_handle_open(be->name, be, flags, dbp);
}
