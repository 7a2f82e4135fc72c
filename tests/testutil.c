/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* testutil.c — helpers shared by the GTest programs. */
#include "config.h"

#include <string.h>

#include <glib/gstdio.h>

#include "testutil.h"

char *tu_tmpdir(void)
{
    GError *err = NULL;
    char *dir = g_dir_make_tmp("nvramtdb-test-XXXXXX", &err);
    g_assert_no_error(err);
    return dir;
}

void tu_rmtree(const char *dir)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    if (d) {
        const char *name;
        while ((name = g_dir_read_name(d))) {
            char *path = g_build_filename(dir, name, NULL);
            if (g_file_test(path, G_FILE_TEST_IS_DIR))
                tu_rmtree(path);
            else
                g_unlink(path);
            g_free(path);
        }
        g_dir_close(d);
    }
    g_rmdir(dir);
}

void tu_fill(uint8_t *buf, size_t len, uint32_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (uint8_t)x;
    }
}

nvramtdb *tu_start(nvt_backend *be, unsigned flags, const tu_blob *blobs, size_t n, int *rc)
{
    nvramtdb *db;
    int r = nvt_open_backend(be, flags, &db);
    for (size_t i = 0; r == 0 && i < n; i++)
        r = nvramtdb_register_blob(db, blobs[i].name, blobs[i].max_size);
    if (r == 0)
        r = nvramtdb_start(db, 0);
    if (rc)
        *rc = r;
    if (r < 0) {
        nvramtdb_close(db);  /* leaves the failure's message in place */
        return NULL;
    }
    return db;
}

static void report_problem(void *opaque, const char *problem)
{
    g_test_message("check: %s", problem);
    (*(int *)opaque)++;
}

void tu_assert_healthy(nvramtdb *db)
{
    int seen = 0;
    int r = nvramtdb_check(db, report_problem, &seen);
    if (r != 0)
        g_error("image check found %d problems (%d reported): %s", r, seen,
                nvramtdb_last_error());
}

void tu_assert_blob(nvramtdb *db, const char *name, const void *data, long len)
{
    uint8_t *got = NULL;
    size_t got_len = 0;
    int r = nvramtdb_read(db, name, &got, &got_len);
    if (len < 0) {
        if (r != -ENOENT)
            g_error("%s: expected no value, read returned %d (%s)", name, r,
                    nvramtdb_last_error());
        return;
    }
    if (r != 0)
        g_error("%s: read failed: %d %s", name, r, nvramtdb_last_error());
    g_assert_cmpuint(got_len, ==, (size_t)len);
    if (len)
        g_assert_cmpmem(got, got_len, data, (size_t)len);
    free(got);
}

uint8_t *tu_mem_copy(nvt_backend *be, size_t *len)
{
    const uint8_t *p = nvt_mem_backend_data(be, len);
    return g_memdup2(p, *len);
}
