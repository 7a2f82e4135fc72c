/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * test-api: the public API's contracts — life cycle, URIs, round trips,
 * completions, listing, persistence across reopen, reconciliation of
 * registered blobs with those on disk.
 */
#include "config.h"

#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "testutil.h"

/* The start of every nvramtdb_change: its size (nvramtdb.h). */
#define SIZED .struct_size = sizeof(nvramtdb_change),

static const tu_blob tpm_blobs[] = {
    { "tpm0/permall", 8192 },
    { "tpm0/volatilestate", 4096 },
};

static nvramtdb *start_mem(void)
{
    int rc;
    nvramtdb *db = tu_start(nvt_mem_backend_new(NULL, 0), 0, tpm_blobs, 2, &rc);
    if (!db)
        g_error("start failed: %d %s", rc, nvramtdb_last_error());
    return db;
}

static void test_write_read_round_trip(void)
{
    nvramtdb *db = start_mem();
    uint8_t buf[8192];
    for (size_t len = 0; len <= sizeof buf; len += 1021) {
        tu_fill(buf, len, (uint32_t)len);
        TU_OK(nvramtdb_write(db, "tpm0/permall", buf, len, NVRAMTDB_WAIT_COMPLETION, NULL, NULL));
        tu_assert_blob(db, "tpm0/permall", buf, (long)len);
    }
    tu_fill(buf, sizeof buf, 99);
    TU_OK(nvramtdb_write(db, "tpm0/permall", buf, sizeof buf, 0, NULL, NULL));
    tu_assert_blob(db, "tpm0/permall", buf, sizeof buf);
    tu_assert_healthy(db);
    nvramtdb_close(db);
}

static void test_unwritten_blob_has_no_value(void)
{
    nvramtdb *db = start_mem();
    tu_assert_blob(db, "tpm0/volatilestate", NULL, -1);
    nvramtdb_close(db);
}

static void test_empty_value_is_a_value(void)
{
    nvramtdb *db = start_mem();
    uint8_t *data = (uint8_t *)"x";
    size_t len = 99;
    TU_OK(nvramtdb_write(db, "tpm0/permall", NULL, 0, 0, NULL, NULL));
    TU_OK(nvramtdb_read(db, "tpm0/permall", &data, &len));
    g_assert_null(data);
    g_assert_cmpuint(len, ==, 0);
    nvramtdb_close(db);
}

static void test_generation_counts_writes(void)
{
    nvramtdb *db = start_mem();
    uint8_t b = 1;
    for (int i = 0; i < 5; i++)
        TU_OK(nvramtdb_write(db, "tpm0/permall", &b, 1, 0, NULL, NULL));
    nvramtdb_entry *e;
    size_t n;
    TU_OK(nvramtdb_list(db, sizeof(nvramtdb_entry), &e, &n));
    g_assert_cmpuint(n, ==, 2);
    g_assert_cmpstr(e[0].name, ==, "tpm0/permall");
    g_assert_cmpuint(e[0].generation, ==, 5);
    g_assert_true(e[0].present);
    g_assert_true(e[0].registered);
    g_assert_cmpuint(e[0].size, ==, 1);
    g_assert_cmpuint(e[0].max_size, ==, 8192);
    g_assert_cmpstr(e[1].name, ==, "tpm0/volatilestate");
    g_assert_false(e[1].present);
    free(e);
    nvramtdb_close(db);
}

static void test_oversized_write_is_refused_and_changes_nothing(void)
{
    nvramtdb *db = start_mem();
    uint8_t small[10] = "0123456789", big[8193];
    memset(big, 7, sizeof big);
    TU_OK(nvramtdb_write(db, "tpm0/permall", small, sizeof small, 0, NULL, NULL));
    g_assert_cmpint(nvramtdb_write(db, "tpm0/permall", big, sizeof big, 0, NULL, NULL), ==,
                    -EFBIG);
    g_assert_nonnull(strstr(nvramtdb_last_error(), "tpm0/permall"));
    g_assert_nonnull(strstr(nvramtdb_last_error(), "8192"));
    tu_assert_blob(db, "tpm0/permall", small, sizeof small);
    nvramtdb_close(db);
}

static void test_completion_called_once_when_durable(void)
{
    nvramtdb *db = start_mem();
    tu_completion c = { 0 };
    uint8_t buf[100] = { 1 };
    TU_OK(nvramtdb_write(db, "tpm0/permall", buf, sizeof buf,
                         NVRAMTDB_ASYNC | NVRAMTDB_WAIT_COMPLETION, tu_on_complete, &c));
    g_assert_cmpint(c.calls, ==, 1);
    g_assert_cmpint(c.errcode, ==, 0);
    g_assert_true(c.is_write);
    g_assert_cmpuint(c.len, ==, sizeof buf);
    TU_OK(nvramtdb_delete(db, "tpm0/permall", NVRAMTDB_ASYNC, tu_on_complete, &c));
    TU_OK(nvramtdb_flush(db));  /* the barrier completes after the delete */
    g_assert_cmpint(c.calls, ==, 2);
    g_assert_cmpint(c.errcode, ==, 0);
    nvramtdb_close(db);
}

static void test_refused_request_gets_no_completion(void)
{
    nvramtdb *db = start_mem();
    tu_completion c = { 0 };
    uint8_t big[9000] = { 0 };
    g_assert_cmpint(nvramtdb_write(db, "tpm0/permall", big, sizeof big, NVRAMTDB_ASYNC,
                                   tu_on_complete, &c), ==, -EFBIG);
    g_assert_cmpint(nvramtdb_write(db, "nosuch/blob", big, 1, NVRAMTDB_ASYNC, tu_on_complete, &c),
                    ==, -ENOENT);
    g_assert_cmpint(nvramtdb_write(db, "bad name", big, 1, 0, tu_on_complete, &c), ==, -EINVAL);
    g_assert_cmpint(nvramtdb_write(db, "tpm0/permall", big, 1, 0x80, tu_on_complete, &c), ==,
                    -EINVAL);
    g_assert_cmpint(c.calls, ==, 0);
    nvramtdb_close(db);
}

/* ---- atomic batches ------------------------------------------------------ */

static void test_batch_writes_every_blob(void)
{
    nvramtdb *db = start_mem();
    uint8_t perm[3000], vol[100];
    tu_fill(perm, sizeof perm, 1);
    tu_fill(vol, sizeof vol, 2);
    nvramtdb_change changes[] = {
        { SIZED .name = "tpm0/permall", .data = perm, .len = sizeof perm },
        { SIZED .name = "tpm0/volatilestate", .data = vol, .len = sizeof vol },
    };
    tu_completion c = { 0 };
    TU_OK(nvramtdb_write_batch(db, changes, 2, NVRAMTDB_ASYNC | NVRAMTDB_WAIT_COMPLETION,
                               tu_on_complete, &c));
    g_assert_cmpint(c.calls, ==, 1);
    g_assert_cmpint(c.errcode, ==, 0);
    g_assert_true(c.is_write);
    g_assert_cmpuint(c.len, ==, sizeof perm + sizeof vol);
    tu_assert_blob(db, "tpm0/permall", perm, sizeof perm);
    tu_assert_blob(db, "tpm0/volatilestate", vol, sizeof vol);

    /* In order, the last change to a blob wins; deletes take part. */
    uint8_t again[10] = "0123456789";
    nvramtdb_change mixed[] = {
        { SIZED .name = "tpm0/permall", .data = again, .len = 4 },
        { SIZED .name = "tpm0/volatilestate", .is_delete = true },
        { SIZED .name = "tpm0/permall", .is_delete = true },
        { SIZED .name = "tpm0/permall", .data = again, .len = sizeof again },
    };
    TU_OK(nvramtdb_write_batch(db, mixed, G_N_ELEMENTS(mixed), 0, NULL, NULL));
    tu_assert_blob(db, "tpm0/permall", again, sizeof again);
    tu_assert_blob(db, "tpm0/volatilestate", NULL, -1);
    tu_assert_healthy(db);
    nvramtdb_close(db);
}

/* One bad change and nothing of the batch happens, whether it is refused
 * at once (no completion) or when the writer applies it. */
static void test_batch_is_all_or_nothing(void)
{
    nvramtdb *db = start_mem();
    uint8_t old[50], fresh[60], big[9000] = { 0 };
    tu_fill(old, sizeof old, 3);
    tu_fill(fresh, sizeof fresh, 4);
    TU_OK(nvramtdb_write(db, "tpm0/permall", old, sizeof old, 0, NULL, NULL));
    tu_completion c = { 0 };

    nvramtdb_change too_big[] = {
        { SIZED .name = "tpm0/permall", .data = fresh, .len = sizeof fresh },
        { SIZED .name = "tpm0/volatilestate", .data = big, .len = sizeof big },
    };
    g_assert_cmpint(nvramtdb_write_batch(db, too_big, 2, NVRAMTDB_ASYNC, tu_on_complete, &c),
                    ==, -EFBIG);
    g_assert_nonnull(strstr(nvramtdb_last_error(), "change 2 of the batch"));
    nvramtdb_change unknown[] = {
        { SIZED .name = "tpm0/permall", .data = fresh, .len = sizeof fresh },
        { SIZED .name = "nosuch/blob", .data = fresh, .len = 1 },
    };
    g_assert_cmpint(nvramtdb_write_batch(db, unknown, 2, 0, tu_on_complete, &c), ==, -ENOENT);
    g_assert_cmpint(c.calls, ==, 0);

    /* volatilestate has no value: its delete fails when applied. */
    nvramtdb_change late[] = {
        { SIZED .name = "tpm0/permall", .data = fresh, .len = sizeof fresh },
        { SIZED .name = "tpm0/volatilestate", .is_delete = true },
    };
    g_assert_cmpint(nvramtdb_write_batch(db, late, 2, NVRAMTDB_ASYNC | NVRAMTDB_WAIT_COMPLETION,
                                         tu_on_complete, &c), ==, -ENOENT);
    g_assert_cmpint(c.calls, ==, 1);
    g_assert_cmpint(c.errcode, ==, -ENOENT);
    g_assert_nonnull(strstr(nvramtdb_last_error(), "tpm0/volatilestate"));
    /* The same through the caller's thread (nothing else queued). */
    g_assert_cmpint(nvramtdb_write_batch(db, late, 2, 0, NULL, NULL), ==, -ENOENT);
    tu_assert_blob(db, "tpm0/permall", old, sizeof old);
    tu_assert_blob(db, "tpm0/volatilestate", NULL, -1);

    g_assert_cmpint(nvramtdb_write_batch(db, late, 0, 0, NULL, NULL), ==, -EINVAL);
    nvramtdb_change nameless[] = { { SIZED .name = NULL, .data = fresh, .len = 1 } };
    g_assert_cmpint(nvramtdb_write_batch(db, nameless, 1, 0, NULL, NULL), ==, -EINVAL);
    g_assert_cmpint(nvramtdb_write_batch(db, late, 2, 0x80, NULL, NULL), ==, -EINVAL);
    tu_assert_healthy(db);
    nvramtdb_close(db);
}

/* A batch queued behind other requests runs in submission order. */
static void test_batch_keeps_submission_order(void)
{
    nvramtdb *db = start_mem();
    uint8_t a[20], b[30];
    tu_fill(a, sizeof a, 5);
    tu_fill(b, sizeof b, 6);
    tu_completion c = { 0 };
    TU_OK(nvramtdb_write(db, "tpm0/permall", a, sizeof a, NVRAMTDB_ASYNC, tu_on_complete, &c));
    nvramtdb_change one[] = { { SIZED .name = "tpm0/permall", .data = b, .len = sizeof b } };
    TU_OK(nvramtdb_write_batch(db, one, 1, NVRAMTDB_ASYNC, tu_on_complete, &c));
    TU_OK(nvramtdb_write(db, "tpm0/volatilestate", a, sizeof a, NVRAMTDB_ASYNC,
                         tu_on_complete, &c));
    TU_OK(nvramtdb_flush(db));
    g_assert_cmpint(c.calls, ==, 3);
    g_assert_cmpint(c.errcode, ==, 0);
    tu_assert_blob(db, "tpm0/permall", b, sizeof b);
    tu_assert_blob(db, "tpm0/volatilestate", a, sizeof a);
    nvramtdb_close(db);
}

static void test_delete_registered_keeps_its_space(void)
{
    nvramtdb *db = start_mem();
    uint8_t buf[8192];
    tu_fill(buf, sizeof buf, 3);
    TU_OK(nvramtdb_write(db, "tpm0/permall", buf, sizeof buf, 0, NULL, NULL));
    nvramtdb_info before = { .struct_size = sizeof before };
    nvramtdb_info after = { .struct_size = sizeof after };
    TU_OK(nvramtdb_get_info(db, &before));
    TU_OK(nvramtdb_delete(db, "tpm0/permall", 0, NULL, NULL));
    tu_assert_blob(db, "tpm0/permall", NULL, -1);
    g_assert_cmpint(nvramtdb_delete(db, "tpm0/permall", 0, NULL, NULL), ==, -ENOENT);
    TU_OK(nvramtdb_get_info(db, &after));
    g_assert_cmpuint(after.slots, ==, before.slots);
    g_assert_cmpuint(after.reserved_bytes, ==, before.reserved_bytes);
    g_assert_cmpuint(after.entries, ==, before.entries - 1);
    g_assert_cmpuint(after.data_used, ==, before.data_used);
    TU_OK(nvramtdb_write(db, "tpm0/permall", buf, sizeof buf, 0, NULL, NULL));
    tu_assert_blob(db, "tpm0/permall", buf, sizeof buf);
    nvramtdb_close(db);
}

static void test_lifecycle_errors(void)
{
    nvramtdb *db;
    uint8_t *data;
    size_t len;
    TU_OK(nvramtdb_open("mem:", 0, &db));
    g_assert_cmpint(nvramtdb_read(db, "tpm0/permall", &data, &len), ==, -EINVAL);
    g_assert_cmpint(nvramtdb_write(db, "tpm0/permall", "x", 1, 0, NULL, NULL), ==, -EINVAL);
    g_assert_cmpint(nvramtdb_start(db, 0x100), ==, -EINVAL);
    TU_OK(nvramtdb_register_blob(db, "tpm0/permall", 100));
    TU_OK(nvramtdb_start(db, 0));
    g_assert_cmpint(nvramtdb_start(db, 0), ==, -EALREADY);
    g_assert_cmpint(nvramtdb_register_blob(db, "tpm0/other", 100), ==, -EALREADY);
    g_assert_cmpint(nvramtdb_set_image_size(db, 1 << 20), ==, -EALREADY);
    TU_OK(nvramtdb_flush(db));
    TU_OK(nvramtdb_close(db));
    TU_OK(nvramtdb_close(NULL));
}

static void test_uri_and_flag_errors(void)
{
    nvramtdb *db;
    g_assert_cmpint(nvramtdb_open("mem:x", 0, &db), ==, -EINVAL);
    g_assert_cmpint(nvramtdb_open("file:", 0, &db), ==, -EINVAL);
    /* No server behind the socket: a clear error naming the URI (or,
     * built without libnbd, -ENOTSUP saying so). */
    const char *nbd = "nbd+unix:///x?socket=/nonexistent/dir/nbd.sock";
    int r = nvramtdb_open(nbd, 0, &db);
#ifdef HAVE_LIBNBD
    g_assert_cmpint(r, <, 0);
    g_assert_cmpint(r, !=, -ENOTSUP);
    g_assert_nonnull(strstr(nvramtdb_last_error(), "cannot connect"));
#else
    g_assert_cmpint(r, ==, -ENOTSUP);
    g_assert_nonnull(strstr(nvramtdb_last_error(), "libnbd"));
#endif
    g_assert_nonnull(strstr(nvramtdb_last_error(), nbd));
    g_assert_cmpint(nvramtdb_open("/nonexistent/dir/img", 0, &db), ==, -ENOENT);
    g_assert_nonnull(strstr(nvramtdb_last_error(), "/nonexistent/dir/img"));
    g_assert_cmpint(nvramtdb_open("mem:", NVRAMTDB_OPEN_FORCE_SHARE, &db), ==, -EINVAL);
    g_assert_cmpint(nvramtdb_open("mem:", NVRAMTDB_OPEN_READONLY | NVRAMTDB_OPEN_CREATE, &db),
                    ==, -EINVAL);
    g_assert_cmpint(nvramtdb_open("mem:", 0x40, &db), ==, -EINVAL);
    g_assert_cmpint(nvramtdb_open(NULL, 0, &db), ==, -EINVAL);
    g_assert_null(db);
}

static void test_file_image_persists_across_reopen(void)
{
    char *dir = tu_tmpdir();
    char *path = g_build_filename(dir, "nvram.img", NULL);
    char *uri = g_strconcat("file:", path, NULL);
    nvramtdb *db;
    uint8_t buf[5000];
    tu_fill(buf, sizeof buf, 42);

    TU_OK(nvramtdb_open(uri, NVRAMTDB_OPEN_CREATE, &db));
    TU_OK(nvramtdb_register_blob(db, "tpm0/permall", 8192));
    uint64_t need = 0, kib = 0;
    TU_OK(nvramtdb_get_totalsize(db, &need));
    g_assert_cmpuint(need, >, 8192);
    TU_OK(nvramtdb_get_totalsize_kb(db, &kib));
    g_assert_cmpuint(kib, ==, (need + 1023) / 1024);
    TU_OK(nvramtdb_start(db, 0));
    TU_OK(nvramtdb_write(db, "tpm0/permall", buf, sizeof buf, NVRAMTDB_WAIT_COMPLETION, NULL,
                         NULL));
    TU_OK(nvramtdb_close(db));

    struct stat st;
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpuint((uint64_t)st.st_size, ==, need);
    /* Space is really reserved (posix_fallocate), not sparse. */
    g_assert_cmpuint((uint64_t)st.st_blocks * 512, >=, need);

    TU_OK(nvramtdb_open(path, 0, &db));
    TU_OK(nvramtdb_register_blob(db, "tpm0/permall", 8192));
    TU_OK(nvramtdb_start(db, 0));
    tu_assert_blob(db, "tpm0/permall", buf, sizeof buf);
    nvramtdb_info info = { .struct_size = sizeof info };
    TU_OK(nvramtdb_get_info(db, &info));
    g_assert_cmpuint(info.image_size, ==, need);
    g_assert_cmpuint(info.format_version, ==, 1);
    g_assert_cmpuint(info.entries, ==, 1);
    g_assert_cmpuint(info.value_bytes, ==, sizeof buf);
    TU_OK(nvramtdb_close(db));

    /* Read-only opens see the data too and refuse writes. */
    TU_OK(nvramtdb_open(path, NVRAMTDB_OPEN_READONLY, &db));
    TU_OK(nvramtdb_start(db, 0));
    tu_assert_blob(db, "tpm0/permall", buf, sizeof buf);
    g_assert_cmpint(nvramtdb_write(db, "tpm0/permall", buf, 1, 0, NULL, NULL), ==, -EROFS);
    TU_OK(nvramtdb_close(db));

    tu_rmtree(dir);
    g_free(uri);
    g_free(path);
    g_free(dir);
}

static void test_unregistered_blobs_on_disk_are_kept(void)
{
    int rc;
    nvt_backend *be = nvt_mem_backend_new(NULL, 0);
    nvramtdb *db = tu_start(be, 0, tpm_blobs, 2, &rc);
    uint8_t buf[300];
    tu_fill(buf, sizeof buf, 5);
    TU_OK(nvramtdb_write(db, "tpm0/volatilestate", buf, sizeof buf, 0, NULL, NULL));
    size_t len;
    uint8_t *image = tu_mem_copy(be, &len);
    nvramtdb_close(db);

    /* Start with only permall registered: volatilestate stays readable. */
    static const tu_blob only_perm[] = { { "tpm0/permall", 8192 } };
    db = tu_start(nvt_mem_backend_new(image, len), 0, only_perm, 1, &rc);
    g_assert_nonnull(db);
    tu_assert_blob(db, "tpm0/volatilestate", buf, sizeof buf);
    nvramtdb_entry *e;
    size_t n;
    TU_OK(nvramtdb_list(db, sizeof(nvramtdb_entry), &e, &n));
    g_assert_cmpuint(n, ==, 2);
    g_assert_false(e[1].registered);
    g_assert_true(e[1].present);
    free(e);
    /* Unregistered but on disk: still writable within its stored maximum,
     * and deleting it removes it entirely. */
    TU_OK(nvramtdb_write(db, "tpm0/volatilestate", buf, 10, 0, NULL, NULL));
    TU_OK(nvramtdb_delete(db, "tpm0/volatilestate", 0, NULL, NULL));
    TU_OK(nvramtdb_list(db, sizeof(nvramtdb_entry), &e, &n));
    g_assert_cmpuint(n, ==, 1);
    free(e);
    tu_assert_healthy(db);
    nvramtdb_close(db);
    g_free(image);
}

static void test_grown_maximum_keeps_value(void)
{
    int rc;
    nvt_backend *be = nvt_mem_backend_new(NULL, 0);
    nvramtdb *db;
    TU_OK(nvt_open_backend(be, 0, &db));
    TU_OK(nvramtdb_register_blob(db, "dev/x", 100));
    TU_OK(nvramtdb_set_image_size(db, 4 << 20));  /* room to grow */
    TU_OK(nvramtdb_start(db, 0));
    uint8_t buf[100000];
    tu_fill(buf, sizeof buf, 8);
    TU_OK(nvramtdb_write(db, "dev/x", buf, 100, 0, NULL, NULL));
    g_assert_cmpint(nvramtdb_write(db, "dev/x", buf, 101, 0, NULL, NULL), ==, -EFBIG);
    size_t len;
    uint8_t *image = tu_mem_copy(be, &len);
    nvramtdb_close(db);

    static const tu_blob bigger[] = { { "dev/x", 100000 }, { "dev/new", 5000 } };
    db = tu_start(nvt_mem_backend_new(image, len), 0, bigger, 2, &rc);
    if (!db)
        g_error("restart with larger maxima failed: %s", nvramtdb_last_error());
    tu_assert_blob(db, "dev/x", buf, 100);
    TU_OK(nvramtdb_write(db, "dev/x", buf, sizeof buf, 0, NULL, NULL));
    tu_assert_blob(db, "dev/x", buf, sizeof buf);
    TU_OK(nvramtdb_write(db, "dev/new", buf, 5000, 0, NULL, NULL));
    tu_assert_healthy(db);
    nvramtdb_entry *e;
    size_t n;
    TU_OK(nvramtdb_list(db, sizeof(nvramtdb_entry), &e, &n));
    g_assert_cmpuint(n, ==, 2);
    g_assert_cmpuint(e[1].max_size, ==, 100000);
    g_assert_cmpuint(e[1].generation, ==, 2);
    free(e);
    nvramtdb_close(db);
    g_free(image);
}

static void test_parse_size(void)
{
    uint64_t v;
    TU_OK(nvramtdb_parse_size("4096", &v));
    g_assert_cmpuint(v, ==, 4096);
    TU_OK(nvramtdb_parse_size("256K", &v));
    g_assert_cmpuint(v, ==, 256 * 1024);
    TU_OK(nvramtdb_parse_size("1m", &v));
    g_assert_cmpuint(v, ==, 1 << 20);
    TU_OK(nvramtdb_parse_size("2GiB", &v));
    g_assert_cmpuint(v, ==, 2ull << 30);
    TU_OK(nvramtdb_parse_size("64KB", &v));
    g_assert_cmpuint(v, ==, 64 * 1024);
    g_assert_cmpint(nvramtdb_parse_size("", &v), ==, -EINVAL);
    g_assert_cmpint(nvramtdb_parse_size("-1", &v), ==, -EINVAL);
    g_assert_cmpint(nvramtdb_parse_size("12Q", &v), ==, -EINVAL);
    g_assert_cmpint(nvramtdb_parse_size("1K2", &v), ==, -EINVAL);
    g_assert_cmpint(nvramtdb_parse_size("99999999999999999999", &v), ==, -ERANGE);
    g_assert_cmpint(nvramtdb_parse_size("17179869184G", &v), ==, -ERANGE);
}

static void test_version(void)
{
    g_assert_cmpstr(nvramtdb_version(), ==, PACKAGE_VERSION);
}

/* An image file that cannot grow to the size the blobs need (here a file
 * size limit makes posix_fallocate fail with EFBIG) is refused as too
 * small: -ENOSPC with both sizes, and nothing is formatted. */
static void test_image_that_cannot_grow_is_enospc(void)
{
    if (!g_test_subprocess()) {
        g_test_trap_subprocess(NULL, 0, 0);
        g_test_trap_assert_passed();
        return;
    }
    char *dir = tu_tmpdir();
    char *path = g_build_filename(dir, "small.img", NULL);
    char *uri = g_strconcat("file:", path, NULL);
    struct rlimit lim = { .rlim_cur = 64 * 1024, .rlim_max = RLIM_INFINITY };
    signal(SIGXFSZ, SIG_IGN);
    g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &lim), ==, 0);
    const tu_blob one[] = { { "dev/a", 4096 } };
    int rc = 0;
    nvramtdb *db = tu_start_uri(uri, NVRAMTDB_OPEN_CREATE, one, 1, &rc);
    g_assert_null(db);
    TU_ASSERT_ERROR(rc, -ENOSPC, path, "bytes", "need");
    struct stat st;
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_size, <=, 64 * 1024);
    g_free(uri);
    g_free(path);
    tu_rmtree(dir);
    g_free(dir);
}

/* ---- extensible structures (nvramtdb.h) ------------------------------ */

/* A struct_size below version 1's fields is refused with a message, and
 * nothing is read or written. */
static void test_struct_size_too_small_is_refused(void)
{
    nvramtdb *db = start_mem();
    uint8_t v[16];
    tu_fill(v, sizeof v, 9);
    TU_OK(nvramtdb_write(db, "tpm0/permall", v, sizeof v, 0, NULL, NULL));

    nvramtdb_info info;
    memset(&info, 0x5a, sizeof info);
    info.struct_size = 0;
    TU_ASSERT_ERROR(nvramtdb_get_info(db, &info), -EINVAL, "nvramtdb_info size 0");
    info.struct_size = (uint32_t)NVRAMTDB_INFO_SIZE_V1 - 1;
    TU_ASSERT_ERROR(nvramtdb_get_info(db, &info), -EINVAL, "nvramtdb_info size");
    g_assert_cmpuint(info.format_version, ==, 0x5a5a5a5a);  /* untouched */

    nvramtdb_entry *e = NULL;
    size_t n = 99;
    TU_ASSERT_ERROR(nvramtdb_list(db, NVRAMTDB_ENTRY_SIZE_V1 - 1, &e, &n), -EINVAL,
                    "nvramtdb_entry size");
    g_assert_null(e);
    g_assert_cmpuint(n, ==, 99);

    uint8_t w[8] = "abcdefgh";
    nvramtdb_change zero[] = { { .name = "tpm0/permall", .data = w, .len = sizeof w } };
    TU_ASSERT_ERROR(nvramtdb_write_batch(db, zero, 1, 0, NULL, NULL), -EINVAL,
                    "nvramtdb_change size 0");
    /* Every change has the first one's size: it is the array's stride. */
    nvramtdb_change mixed[] = {
        { SIZED .name = "tpm0/permall", .data = w, .len = sizeof w },
        { .name = "tpm0/volatilestate", .data = w, .len = sizeof w },
    };
    TU_ASSERT_ERROR(nvramtdb_write_batch(db, mixed, 2, 0, NULL, NULL), -EINVAL,
                    "change 2 of the batch has struct_size 0");
    tu_assert_blob(db, "tpm0/permall", v, sizeof v);
    tu_assert_blob(db, "tpm0/volatilestate", NULL, -1);
    nvramtdb_close(db);
}

/* A later version of the structures (larger, with fields this library
 * does not know) is accepted: outputs fill what the library knows and
 * zero the rest, inputs use the caller's size as the stride and ignore
 * the unknown bytes. */
typedef struct future_info {
    nvramtdb_info v1;
    uint64_t later[3];
} future_info;

typedef struct future_change {
    nvramtdb_change v1;
    uint64_t later;
} future_change;

static void test_larger_struct_size_is_accepted(void)
{
    nvramtdb *db = start_mem();
    uint8_t perm[300], vol[70];
    tu_fill(perm, sizeof perm, 1);
    tu_fill(vol, sizeof vol, 2);
    future_change changes[2];
    memset(changes, 0xee, sizeof changes);  /* the unknown field is not zero */
    changes[0].v1 = (nvramtdb_change){ .struct_size = sizeof(future_change),
                                       .name = "tpm0/permall", .data = perm,
                                       .len = sizeof perm };
    changes[1].v1 = (nvramtdb_change){ .struct_size = sizeof(future_change),
                                       .name = "tpm0/volatilestate", .data = vol,
                                       .len = sizeof vol };
    TU_OK(nvramtdb_write_batch(db, &changes[0].v1, 2, 0, NULL, NULL));
    tu_assert_blob(db, "tpm0/permall", perm, sizeof perm);
    tu_assert_blob(db, "tpm0/volatilestate", vol, sizeof vol);

    nvramtdb_info now = { .struct_size = sizeof now };
    TU_OK(nvramtdb_get_info(db, &now));
    future_info later;
    memset(&later, 0xee, sizeof later);
    later.v1.struct_size = sizeof later;
    TU_OK(nvramtdb_get_info(db, &later.v1));
    g_assert_cmpuint(later.v1.struct_size, ==, sizeof later);
    for (size_t i = 0; i < G_N_ELEMENTS(later.later); i++)
        g_assert_cmpuint(later.later[i], ==, 0);
    g_assert_cmpuint(later.v1.entries, ==, 2);
    g_assert_cmpuint(later.v1.value_bytes, ==, sizeof perm + sizeof vol);
    g_assert_cmpuint(later.v1.image_size, ==, now.image_size);
    g_assert_cmpmem(later.v1.uuid, 16, now.uuid, 16);
    g_assert_true(later.v1.journaled);
    nvramtdb_close(db);
}

/* nvramtdb_list() spaces the entries by the caller's entry size, fills
 * each with what the library knows and zeroes the rest. */
static void test_list_takes_the_entry_size(void)
{
    nvramtdb *db = start_mem();
    uint8_t v[40];
    tu_fill(v, sizeof v, 3);
    TU_OK(nvramtdb_write(db, "tpm0/volatilestate", v, sizeof v, 0, NULL, NULL));
    const size_t sizes[] = { sizeof(nvramtdb_entry), NVRAMTDB_ENTRY_SIZE_V1,
                             sizeof(nvramtdb_entry) + 24 };
    for (size_t k = 0; k < G_N_ELEMENTS(sizes); k++) {
        size_t size = sizes[k], n = 0;
        nvramtdb_entry *list = NULL;
        TU_OK(nvramtdb_list(db, size, &list, &n));
        g_assert_cmpuint(n, ==, 2);
        for (size_t i = 0; i < n; i++) {
            nvramtdb_entry e = { 0 };
            const uint8_t *at = (const uint8_t *)list + i * size;
            memcpy(&e, at, MIN(size, sizeof e));
            g_assert_cmpuint(e.struct_size, ==, size);
            g_assert_cmpstr(e.name, ==, i ? "tpm0/volatilestate" : "tpm0/permall");
            g_assert_cmpuint(e.max_size, ==, tpm_blobs[i].max_size);
            g_assert_true(e.registered);
            g_assert_cmpuint(e.present, ==, i == 1);
            g_assert_cmpuint(e.size, ==, i ? sizeof v : 0);
            for (size_t b = sizeof e; b < size; b++)
                g_assert_cmpuint(at[b], ==, 0);
        }
        free(list);
    }
    nvramtdb_close(db);
}

/* A failed size computation is an error, not a size of 0. */
static void test_totalsize_failure_is_an_error(void)
{
    nvramtdb *db;
    TU_OK(nvramtdb_open("mem:", 0, &db));
    /* 260 blobs at the largest maximum: more than a tdb can address. */
    for (int i = 0; i < 260; i++) {
        char name[32];
        g_snprintf(name, sizeof name, "dev/b%03d", i);
        TU_OK(nvramtdb_register_blob(db, name, NVRAMTDB_BLOB_MAX));
    }
    uint64_t bytes = 12345, kib = 12345;
    TU_ASSERT_ERROR(nvramtdb_get_totalsize(db, &bytes), -ENOSPC, "260 blobs need",
                    "a tdb holds at most");
    g_assert_cmpuint(bytes, ==, 12345);
    TU_ASSERT_ERROR(nvramtdb_get_totalsize_kb(db, &kib), -ENOSPC, "260 blobs need");
    g_assert_cmpuint(kib, ==, 12345);
    nvramtdb_close(db);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/api/write-read-round-trip", test_write_read_round_trip);
    g_test_add_func("/api/unwritten-blob-has-no-value", test_unwritten_blob_has_no_value);
    g_test_add_func("/api/empty-value-is-a-value", test_empty_value_is_a_value);
    g_test_add_func("/api/generation-counts-writes", test_generation_counts_writes);
    g_test_add_func("/api/oversized-write-refused", test_oversized_write_is_refused_and_changes_nothing);
    g_test_add_func("/api/completion-called-once", test_completion_called_once_when_durable);
    g_test_add_func("/api/refused-request-no-completion", test_refused_request_gets_no_completion);
    g_test_add_func("/api/delete-registered-keeps-space", test_delete_registered_keeps_its_space);
    g_test_add_func("/api/batch/writes-every-blob", test_batch_writes_every_blob);
    g_test_add_func("/api/batch/all-or-nothing", test_batch_is_all_or_nothing);
    g_test_add_func("/api/batch/submission-order", test_batch_keeps_submission_order);
    g_test_add_func("/api/lifecycle-errors", test_lifecycle_errors);
    g_test_add_func("/api/uri-and-flag-errors", test_uri_and_flag_errors);
    g_test_add_func("/api/image-that-cannot-grow-is-enospc",
                    test_image_that_cannot_grow_is_enospc);
    g_test_add_func("/api/file-image-persists", test_file_image_persists_across_reopen);
    g_test_add_func("/api/unregistered-blobs-kept", test_unregistered_blobs_on_disk_are_kept);
    g_test_add_func("/api/grown-maximum-keeps-value", test_grown_maximum_keeps_value);
    g_test_add_func("/api/parse-size", test_parse_size);
    g_test_add_func("/api/version", test_version);
    g_test_add_func("/api/struct-size/too-small", test_struct_size_too_small_is_refused);
    g_test_add_func("/api/struct-size/larger-accepted", test_larger_struct_size_is_accepted);
    g_test_add_func("/api/struct-size/list-entry-size", test_list_takes_the_entry_size);
    g_test_add_func("/api/totalsize-failure-is-an-error", test_totalsize_failure_is_an_error);
    return g_test_run();
}
