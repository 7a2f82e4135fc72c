/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* testhook.c — the process-wide test hook (see testhook.h, nvttest.h). */
#include "config.h"

#include "nvttest.h"

nvt_test_hook_fn *nvt_test_hook;
void *nvt_test_hook_opaque;

void nvt_test_set_hook(nvt_test_hook_fn *fn, void *opaque)
{
    nvt_test_hook = fn;
    nvt_test_hook_opaque = opaque;
}
