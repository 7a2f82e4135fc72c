/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * tdbfile.c — opening and closing a tdb database (see tdbfile.h).
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include <glib.h>

#include "debug.h"
#include "tdbfile.h"

/* tdb's process-wide list of open databases. */
static GMutex tdb_open_lock;

/* Keeps tdb's latest error line in the buffer given as log_private. */
static void keep_log_line(struct tdb_context *tdb, enum tdb_debug_level level,
                          const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void keep_log_line(struct tdb_context *tdb, enum tdb_debug_level level,
                          const char *fmt, ...)
{
    char *buf = tdb_get_logging_private(tdb);
    if (level > TDB_DEBUG_ERROR || !buf)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, NVT_TDBFILE_MSG_SIZE, fmt, ap);
    va_end(ap);
    g_strchomp(buf);
}

struct tdb_context *nvt_tdbfile_open(const char *path, int hash_size, int tdb_flags,
                                     int open_flags, mode_t mode, char *msg)
{
    /* tdb copies the logging context: a local one is enough. */
    struct tdb_logging_context log = { .log_fn = keep_log_line, .log_private = msg };
    msg[0] = '\0';
    nvt_lock(&tdb_open_lock, NVT_LOCK_TDB_OPEN);
    struct tdb_context *tdb = tdb_open_ex(path, hash_size, tdb_flags, open_flags, mode, &log,
                                          NULL);
    int saved = errno;
    nvt_unlock(&tdb_open_lock, NVT_LOCK_TDB_OPEN);
    errno = saved;
    return tdb;
}

int nvt_tdbfile_close(struct tdb_context *tdb)
{
    if (!tdb)
        return 0;
    nvt_lock(&tdb_open_lock, NVT_LOCK_TDB_OPEN);
    int r = tdb_close(tdb);
    nvt_unlock(&tdb_open_lock, NVT_LOCK_TDB_OPEN);
    return r;
}

const char *nvt_tdbfile_why(struct tdb_context *tdb, const char *msg)
{
    if (msg && msg[0])
        return msg;
    return tdb ? tdb_errorstr(tdb) : "unknown error";
}
