/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* error.c — the calling thread's latest error message. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "debug.h"
#include "error.h"

#define NVT_ERRMSG_MAX 1024

static _Thread_local char errmsg[NVT_ERRMSG_MAX];

int nvt_error(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    va_end(ap);
    nvt_assert(err > 0);
    return err > 0 ? -err : err;
}

int nvt_error_prefix(int err, const char *fmt, ...)
{
    char old[NVT_ERRMSG_MAX];
    va_list ap;

    memcpy(old, errmsg, sizeof old);
    va_start(ap, fmt);
    int n = vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    va_end(ap);
    /* Append ": <old message>", truncating quietly if it is too long. */
    if (n >= 0 && (size_t)n < sizeof errmsg - 2) {
        size_t used = (size_t)n;
        errmsg[used++] = ':';
        errmsg[used++] = ' ';
        size_t room = sizeof errmsg - used - 1;
        size_t len = strnlen(old, room);
        memcpy(errmsg + used, old, len);
        errmsg[used + len] = '\0';
    }
    nvt_assert(err > 0);
    return err > 0 ? -err : err;
}

const char *nvt_last_error(void)
{
    return errmsg;
}

void nvt_error_clear(void)
{
    errmsg[0] = '\0';
}
