/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * test-backend.c — the backend contract of backend.h, one behaviour per
 * test: the memory backend, the file backend (I/O, space reservation,
 * read-only opens, OFD locking), and the test library's backends: the
 * borrowed and counting wrappers and the fault backend's crash model
 * (nvttest.h).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "backend.h"
#include "error.h"
#include "nvttest.h"

/* ---- helpers ------------------------------------------------------------ */

typedef struct tmpdir {
    char *dir;
    char *path;   /* dir/image */
} tmpdir;

static void tmpdir_init(tmpdir *t)
{
    GError *error = NULL;
    t->dir = g_dir_make_tmp("nvt-backend-XXXXXX", &error);
    g_assert_no_error(error);
    t->path = g_build_filename(t->dir, "image", NULL);
}

static void tmpdir_clear(tmpdir *t)
{
    g_unlink(t->path);
    g_assert_cmpint(g_rmdir(t->dir), ==, 0);
    g_free(t->path);
    g_free(t->dir);
}

static nvt_backend *open_file(const char *path, unsigned flags)
{
    nvt_backend *be = NULL;
    int r = nvt_file_backend_open(path, flags, &be);
    if (r < 0)
        g_error("open %s: %s", path, nvt_last_error());
    g_assert_nonnull(be);
    return be;
}

static void fill(uint8_t *buf, size_t len, uint8_t seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(seed + i * 7);
}

static bool all_equal(const uint8_t *p, size_t len, uint8_t v)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != v)
            return false;
    return true;
}

/* A fault backend over a memory image of @len bytes of 0xAA. */
static nvt_backend *new_fault(size_t len)
{
    uint8_t *init = g_malloc(len);
    memset(init, 0xAA, len);
    nvt_backend *be = nvt_fault_backend_new(nvt_mem_backend_new(init, len));
    g_free(init);
    g_assert_nonnull(be);
    return be;
}

/* A stub backend whose reads or flushes fail for real (not injected), to
 * check how the fault backend handles errors from below. */
typedef struct stub_backend {
    nvt_backend base;
    bool fail_read, fail_flush;
    int *closed;
} stub_backend;

static int stub_pread(nvt_backend *be, void *buf, size_t len, uint64_t off)
{
    if (((stub_backend *)be)->fail_read)
        return nvt_error(EIO, "stub: read fails");
    memset(buf, 0xAA, len);
    return 0;
}

static int stub_pwrite(nvt_backend *be, const void *buf, size_t len, uint64_t off)
{
    return 0;
}

static int stub_flush(nvt_backend *be)
{
    return ((stub_backend *)be)->fail_flush ? nvt_error(EIO, "stub: flush fails") : 0;
}

static int stub_get_size(nvt_backend *be, uint64_t *size)
{
    *size = 64;
    return 0;
}

static void stub_close(nvt_backend *be)
{
    (*((stub_backend *)be)->closed)++;
    g_free(be);
}

static const nvt_backend_ops stub_ops = {
    .kind = "stub",
    .pread = stub_pread,
    .pwrite = stub_pwrite,
    .flush = stub_flush,
    .get_size = stub_get_size,
    .close = stub_close,
};

static nvt_backend *new_stub(bool fail_read, bool fail_flush, int *closed)
{
    stub_backend *s = g_new0(stub_backend, 1);
    s->base.ops = &stub_ops;
    s->base.name = (char *)"stub";
    s->fail_read = fail_read;
    s->fail_flush = fail_flush;
    s->closed = closed;
    return &s->base;
}

/* ---- memory backend ----------------------------------------------------- */

static void test_mem_round_trip(void)
{
    nvt_backend *be = nvt_mem_backend_new("hello world", 11);
    uint8_t buf[5];
    uint64_t size;

    g_assert_cmpint(nvt_be_pwrite(be, "WORLD", 5, 6), ==, 0);
    g_assert_cmpint(nvt_be_pread(be, buf, 5, 6), ==, 0);
    g_assert_cmpmem(buf, 5, "WORLD", 5);
    g_assert_cmpint(nvt_be_pread(be, buf, 5, 0), ==, 0);
    g_assert_cmpmem(buf, 5, "hello", 5);
    g_assert_cmpint(nvt_be_get_size(be, &size), ==, 0);
    g_assert_cmpuint(size, ==, 11);
    g_assert_cmpint(nvt_be_flush(be), ==, 0);
    nvt_be_close(be);
}

static void test_mem_grow(void)
{
    nvt_backend *be = nvt_mem_backend_new(NULL, 0);
    uint8_t buf[8];
    uint64_t size;

    /* A write past the end grows the image with zeros before it. */
    g_assert_cmpint(nvt_be_pwrite(be, "xy", 2, 6), ==, 0);
    g_assert_cmpint(nvt_be_get_size(be, &size), ==, 0);
    g_assert_cmpuint(size, ==, 8);
    g_assert_cmpint(nvt_be_pread(be, buf, 8, 0), ==, 0);
    g_assert_cmpmem(buf, 8, "\0\0\0\0\0\0xy", 8);

    /* resize grows, never shrinks. */
    g_assert_cmpint(nvt_be_resize(be, 100), ==, 0);
    g_assert_cmpint(nvt_be_get_size(be, &size), ==, 0);
    g_assert_cmpuint(size, ==, 100);
    g_assert_cmpint(nvt_be_resize(be, 10), ==, 0);
    g_assert_cmpint(nvt_be_get_size(be, &size), ==, 0);
    g_assert_cmpuint(size, ==, 100);
    nvt_be_close(be);
}

static void test_mem_cap(void)
{
    nvt_backend *be = nvt_mem_backend_new_capped(64);

    g_assert_cmpint(nvt_be_resize(be, 64), ==, 0);
    g_assert_cmpint(nvt_be_resize(be, 65), ==, -ENOSPC);
    g_assert_cmpint(nvt_be_pwrite(be, "z", 1, 64), ==, -ENOSPC);
    g_assert_nonnull(strstr(nvt_last_error(), "mem:"));
    g_assert_cmpint(nvt_be_pwrite(be, "z", 1, 63), ==, 0);
    nvt_be_close(be);
}

static void test_mem_read_past_end(void)
{
    nvt_backend *be = nvt_mem_backend_new("abcd", 4);
    uint8_t buf[4];

    g_assert_cmpint(nvt_be_pread(be, buf, 4, 1), ==, -EIO);
    g_assert_cmpint(nvt_be_pread(be, buf, 1, 5), ==, -EIO);
    g_assert_cmpint(nvt_be_pread(be, buf, 0, 4), ==, 0);
    nvt_be_close(be);
}

/* ---- file backend ------------------------------------------------------- */

static void test_file_create(void)
{
    tmpdir t;
    nvt_backend *be = NULL;
    struct stat st;
    uint64_t size;

    tmpdir_init(&t);
    g_assert_cmpint(nvt_file_backend_open(t.path, 0, &be), ==, -ENOENT);
    g_assert_null(be);
    g_assert_nonnull(strstr(nvt_last_error(), t.path));

    be = open_file(t.path, NVT_FILE_CREATE);
    g_assert_cmpstr(be->name, ==, t.path);
    g_assert_cmpstr(be->ops->kind, ==, "file");
    g_assert_false(be->read_only);
    g_assert_cmpint(nvt_be_get_size(be, &size), ==, 0);
    g_assert_cmpuint(size, ==, 0);
    g_assert_cmpint(g_stat(t.path, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 0777, ==, 0600);
    nvt_be_close(be);

    /* CREATE on an existing file opens it. */
    be = open_file(t.path, NVT_FILE_CREATE);
    nvt_be_close(be);
    tmpdir_clear(&t);
}

static void test_file_bad_open(void)
{
    tmpdir t;
    nvt_backend *be = NULL;

    tmpdir_init(&t);
    g_assert_cmpint(nvt_file_backend_open(t.path, NVT_FILE_READONLY | NVT_FILE_CREATE, &be),
                    ==, -EINVAL);
    g_assert_null(be);
    g_assert_false(g_file_test(t.path, G_FILE_TEST_EXISTS));
    g_assert_cmpint(nvt_file_backend_open(t.dir, NVT_FILE_READONLY, &be), ==, -EISDIR);
    g_assert_null(be);
    g_assert_nonnull(strstr(nvt_last_error(), t.dir));
    tmpdir_clear(&t);
}

static void test_file_round_trip(void)
{
    tmpdir t;
    nvt_backend *be;
    uint8_t data[10000], back[10000];

    tmpdir_init(&t);
    fill(data, sizeof data, 3);
    be = open_file(t.path, NVT_FILE_CREATE);
    g_assert_cmpint(nvt_be_pwrite(be, data, sizeof data, 100), ==, 0);
    g_assert_cmpint(nvt_be_flush(be), ==, 0);
    nvt_be_close(be);

    be = open_file(t.path, NVT_FILE_READONLY);
    g_assert_true(be->read_only);
    g_assert_cmpint(nvt_be_pread(be, back, sizeof back, 100), ==, 0);
    g_assert_cmpmem(back, sizeof back, data, sizeof data);
    g_assert_cmpint(nvt_be_pread(be, back, 100, 0), ==, 0);
    g_assert_true(all_equal(back, 100, 0));
    nvt_be_close(be);
    tmpdir_clear(&t);
}

static void test_file_read_past_end(void)
{
    tmpdir t;
    nvt_backend *be;
    uint8_t buf[64] = { 0 };

    tmpdir_init(&t);
    be = open_file(t.path, NVT_FILE_CREATE);
    g_assert_cmpint(nvt_be_pwrite(be, buf, 32, 0), ==, 0);
    g_assert_cmpint(nvt_be_pread(be, buf, 64, 0), ==, -EIO);
    g_assert_nonnull(strstr(nvt_last_error(), t.path));
    g_assert_cmpint(nvt_be_pread(be, buf, 1, 32), ==, -EIO);
    g_assert_cmpint(nvt_be_pread(be, buf, 32, 0), ==, 0);
    nvt_be_close(be);
    tmpdir_clear(&t);
}

static void test_file_resize_reserves(void)
{
    const uint64_t size = 1024 * 1024;
    tmpdir t;
    nvt_backend *be;
    struct stat st;
    uint64_t got;

    tmpdir_init(&t);
    be = open_file(t.path, NVT_FILE_CREATE);
    g_assert_cmpint(nvt_be_resize(be, size), ==, 0);
    g_assert_cmpint(nvt_be_get_size(be, &got), ==, 0);
    g_assert_cmpuint(got, ==, size);
    /* Reserved, not sparse: the blocks are allocated. */
    g_assert_cmpint(g_stat(t.path, &st), ==, 0);
    g_assert_cmpuint((uint64_t)st.st_blocks * 512, >=, size);
    nvt_be_close(be);
    tmpdir_clear(&t);
}

static void test_file_resize_never_shrinks(void)
{
    tmpdir t;
    nvt_backend *be;
    uint8_t data[4096], back[4096];
    uint64_t got;

    tmpdir_init(&t);
    fill(data, sizeof data, 9);
    be = open_file(t.path, NVT_FILE_CREATE);
    g_assert_cmpint(nvt_be_pwrite(be, data, sizeof data, 0), ==, 0);
    g_assert_cmpint(nvt_be_resize(be, 1000), ==, 0);
    g_assert_cmpint(nvt_be_get_size(be, &got), ==, 0);
    g_assert_cmpuint(got, ==, sizeof data);
    /* Growing keeps the existing bytes. */
    g_assert_cmpint(nvt_be_resize(be, 3 * sizeof data), ==, 0);
    g_assert_cmpint(nvt_be_get_size(be, &got), ==, 0);
    g_assert_cmpuint(got, ==, 3 * sizeof data);
    g_assert_cmpint(nvt_be_pread(be, back, sizeof back, 0), ==, 0);
    g_assert_cmpmem(back, sizeof back, data, sizeof data);
    g_assert_cmpint(nvt_be_pread(be, back, sizeof back, 2 * sizeof data), ==, 0);
    g_assert_true(all_equal(back, sizeof back, 0));
    nvt_be_close(be);
    tmpdir_clear(&t);
}

static void test_file_readonly(void)
{
    tmpdir t;
    nvt_backend *be;
    uint8_t buf[16] = "0123456789abcdef", back[16];

    tmpdir_init(&t);
    be = open_file(t.path, NVT_FILE_CREATE);
    g_assert_cmpint(nvt_be_pwrite(be, buf, sizeof buf, 0), ==, 0);
    nvt_be_close(be);

    be = open_file(t.path, NVT_FILE_READONLY);
    g_assert_cmpint(nvt_be_pwrite(be, "XX", 2, 0), ==, -EROFS);
    g_assert_nonnull(strstr(nvt_last_error(), t.path));
    g_assert_cmpint(nvt_be_resize(be, 1 << 20), ==, -EROFS);
    g_assert_cmpint(nvt_be_lock(be, true), ==, -EROFS);
    g_assert_cmpint(nvt_be_lock(be, false), ==, 0);
    g_assert_cmpint(nvt_be_flush(be), ==, 0);
    g_assert_cmpint(nvt_be_pread(be, back, sizeof back, 0), ==, 0);
    g_assert_cmpmem(back, sizeof back, buf, sizeof buf);
    nvt_be_close(be);
    tmpdir_clear(&t);
}

/* pwrite_durable: whole aligned pages go through a second (O_DIRECT)
 * descriptor when nothing buffered is unflushed; anything else takes the
 * pwrite + fdatasync path.  Either way the bytes read back at once through
 * the ordinary descriptor (including pages it had cached), survive a
 * reopen, and the image's lock is kept.  Run on the temporary directory
 * and on /dev/shm (tmpfs, with O_DIRECT only since Linux 6.6). */
static void durable_writes_in(const char *parent)
{
    char *tmpl = g_build_filename(parent, "nvt-durable-XXXXXX", NULL);
    char *dir = g_mkdtemp(tmpl);
    g_assert_nonnull(dir);
    char *path = g_build_filename(dir, "image", NULL);
    uint8_t *page = g_aligned_alloc(2, 4096, 4096), *back = g_malloc(3 * 4096);
    uint8_t odd[100];

    nvt_backend *be = open_file(path, NVT_FILE_CREATE);
    g_assert_cmpint(nvt_be_lock(be, true), ==, 0);
    g_assert_cmpint(nvt_be_resize(be, 64 * 1024), ==, 0);
    /* Cache page 1 through the ordinary descriptor first. */
    g_assert_cmpint(nvt_be_pread(be, back, 4096, 4096), ==, 0);
    fill(page, 8192, 11);
    g_assert_cmpint(nvt_be_pwrite_durable(be, page, 8192, 4096), ==, 0);   /* aligned */
    g_assert_cmpint(nvt_be_pread(be, back, 8192, 4096), ==, 0);
    g_assert_cmpmem(back, 8192, page, 8192);
    /* A buffered write left unflushed, then an aligned durable write. */
    fill(odd, sizeof odd, 5);
    g_assert_cmpint(nvt_be_pwrite(be, odd, sizeof odd, 20000), ==, 0);
    fill(page, 4096, 23);
    g_assert_cmpint(nvt_be_pwrite_durable(be, page, 4096, 12288), ==, 0);
    /* Unaligned range and unaligned memory. */
    g_assert_cmpint(nvt_be_pwrite_durable(be, page + 1, 4096, 32769), ==, 0);
    nvt_backend *other = open_file(path, 0);
    g_assert_cmpint(nvt_be_lock(other, false), ==, -EBUSY);
    nvt_be_close(other);
    nvt_be_close(be);

    be = open_file(path, NVT_FILE_READONLY);
    g_assert_cmpint(nvt_be_pwrite_durable(be, page, 4096, 0), ==, -EROFS);
    fill(page, 8192, 11);
    g_assert_cmpint(nvt_be_pread(be, back, 8192, 4096), ==, 0);
    g_assert_cmpmem(back, 8192, page, 8192);
    g_assert_cmpint(nvt_be_pread(be, back, sizeof odd, 20000), ==, 0);
    g_assert_cmpmem(back, sizeof odd, odd, sizeof odd);
    fill(page, 4096, 23);
    g_assert_cmpint(nvt_be_pread(be, back, 4096, 12288), ==, 0);
    g_assert_cmpmem(back, 4096, page, 4096);
    g_assert_cmpint(nvt_be_pread(be, back, 4096, 32769), ==, 0);
    g_assert_cmpmem(back, 4096, page + 1, 4096);
    nvt_be_close(be);

    g_aligned_free(page);
    g_free(back);
    g_unlink(path);
    g_assert_cmpint(g_rmdir(dir), ==, 0);
    g_free(path);
    g_free(tmpl);
}

static void test_file_durable_writes(void)
{
    durable_writes_in(g_get_tmp_dir());
    if (g_file_test("/dev/shm", G_FILE_TEST_IS_DIR))
        durable_writes_in("/dev/shm");
}

/* Backends without their own pwrite_durable get pwrite + flush. */
static void test_durable_write_default(void)
{
    nvt_backend *be = nvt_fault_backend_new(nvt_mem_backend_new(NULL, 0));
    uint8_t buf[64];
    fill(buf, sizeof buf, 9);
    g_assert_cmpint(nvt_be_resize(be, 4096), ==, 0);
    uint64_t ops = nvt_fault_op_count(be);
    g_assert_cmpint(nvt_be_pwrite_durable(be, buf, sizeof buf, 10), ==, 0);
    g_assert_cmpuint(nvt_fault_op_count(be), ==, ops + 2);  /* one write, one flush */
    /* A cut at that flush fails the durable write. */
    nvt_fault_arm(be, NVT_FAULT_POWER_CUT, NVT_FAULT_ON_FLUSH, 1, 0);
    g_assert_cmpint(nvt_be_pwrite_durable(be, buf, sizeof buf, 10), ==, -EIO);
    nvt_be_close(be);
}

/* OFD locks belong to the open file description, so two opens in one
 * process conflict just as two processes would. */
static void test_file_lock_conflict(void)
{
    tmpdir t;
    nvt_backend *a, *b;

    tmpdir_init(&t);
    a = open_file(t.path, NVT_FILE_CREATE);
    b = open_file(t.path, 0);
    g_assert_cmpint(nvt_be_lock(a, true), ==, 0);
    nvt_error_clear();
    g_assert_cmpint(nvt_be_lock(b, true), ==, -EBUSY);
    g_assert_nonnull(strstr(nvt_last_error(), t.path));
    g_assert_nonnull(strstr(nvt_last_error(), "in use"));
    /* Taking it again through the same open is fine. */
    g_assert_cmpint(nvt_be_lock(a, true), ==, 0);
    nvt_be_close(b);
    nvt_be_close(a);
    tmpdir_clear(&t);
}

static void test_file_lock_shared(void)
{
    tmpdir t;
    nvt_backend *a, *b, *c;

    tmpdir_init(&t);
    a = open_file(t.path, NVT_FILE_CREATE);
    b = open_file(t.path, NVT_FILE_READONLY);
    c = open_file(t.path, NVT_FILE_READONLY);
    g_assert_cmpint(nvt_be_lock(a, false), ==, 0);
    g_assert_cmpint(nvt_be_lock(b, false), ==, 0);
    g_assert_cmpint(nvt_be_lock(c, false), ==, 0);
    nvt_be_close(c);
    nvt_be_close(b);
    nvt_be_close(a);
    tmpdir_clear(&t);
}

static void test_file_lock_shared_exclusive(void)
{
    tmpdir t;
    nvt_backend *a, *b;

    tmpdir_init(&t);
    a = open_file(t.path, NVT_FILE_CREATE);
    b = open_file(t.path, NVT_FILE_READONLY);

    /* A reader blocks a writer... */
    g_assert_cmpint(nvt_be_lock(b, false), ==, 0);
    g_assert_cmpint(nvt_be_lock(a, true), ==, -EBUSY);
    g_assert_nonnull(strstr(nvt_last_error(), t.path));
    nvt_be_close(b);

    /* ...and a writer blocks a reader. */
    g_assert_cmpint(nvt_be_lock(a, true), ==, 0);
    b = open_file(t.path, NVT_FILE_READONLY);
    g_assert_cmpint(nvt_be_lock(b, false), ==, -EBUSY);
    nvt_be_close(b);
    nvt_be_close(a);
    tmpdir_clear(&t);
}

static void test_file_lock_released_on_close(void)
{
    tmpdir t;
    nvt_backend *a, *b;

    tmpdir_init(&t);
    a = open_file(t.path, NVT_FILE_CREATE);
    g_assert_cmpint(nvt_be_lock(a, true), ==, 0);
    nvt_be_close(a);
    b = open_file(t.path, 0);
    g_assert_cmpint(nvt_be_lock(b, true), ==, 0);
    nvt_be_close(b);
    tmpdir_clear(&t);
}

/* ---- fault backend ------------------------------------------------------ */

static void test_fault_passthrough(void)
{
    nvt_backend *be = new_fault(1024);
    uint8_t buf[4];
    uint64_t size;

    g_assert_cmpstr(be->ops->kind, ==, "fault");
    g_assert_cmpint(nvt_be_pwrite(be, "abcd", 4, 10), ==, 0);
    g_assert_cmpint(nvt_be_pread(be, buf, 4, 10), ==, 0);
    g_assert_cmpmem(buf, 4, "abcd", 4);
    g_assert_cmpint(nvt_be_resize(be, 4096), ==, 0);
    g_assert_cmpint(nvt_be_get_size(be, &size), ==, 0);
    g_assert_cmpuint(size, ==, 4096);
    g_assert_cmpint(nvt_be_lock(be, true), ==, 0);
    g_assert_cmpint(nvt_be_pread(be, buf, 4, 4094), ==, -EIO);
    nvt_be_close(be);
}

static void test_fault_op_count(void)
{
    nvt_backend *be = new_fault(64);
    uint8_t buf[4];

    g_assert_cmpuint(nvt_fault_op_count(be), ==, 0);
    g_assert_cmpint(nvt_be_pwrite(be, "a", 1, 0), ==, 0);
    g_assert_cmpint(nvt_be_pwrite(be, "b", 1, 1), ==, 0);
    g_assert_cmpint(nvt_be_flush(be), ==, 0);
    /* Reads, sizes and resizes are not counted. */
    g_assert_cmpint(nvt_be_pread(be, buf, 4, 0), ==, 0);
    g_assert_cmpint(nvt_be_resize(be, 128), ==, 0);
    g_assert_cmpint(nvt_be_get_size(be, &(uint64_t){0}), ==, 0);
    g_assert_cmpuint(nvt_fault_op_count(be), ==, 3);
    g_assert_false(nvt_fault_fired(be));
    nvt_be_close(be);
}

static void test_fault_transient(void)
{
    nvt_backend *be = new_fault(64);
    uint8_t buf[1];

    nvt_fault_arm(be, NVT_FAULT_TRANSIENT, NVT_FAULT_ON_WRITE, 2, ENOSPC);
    g_assert_cmpint(nvt_be_pwrite(be, "1", 1, 0), ==, 0);
    g_assert_false(nvt_fault_fired(be));
    g_assert_cmpint(nvt_be_pwrite(be, "2", 1, 1), ==, -ENOSPC);
    g_assert_true(nvt_fault_fired(be));
    g_assert_nonnull(strstr(nvt_last_error(), "injected"));
    g_assert_nonnull(strstr(nvt_last_error(), "pwrite"));
    /* The failed write had no effect... */
    g_assert_cmpint(nvt_be_pread(be, buf, 1, 1), ==, 0);
    g_assert_cmpuint(buf[0], ==, 0xAA);
    /* ...and later operations succeed. */
    g_assert_cmpint(nvt_be_pwrite(be, "3", 1, 1), ==, 0);
    g_assert_cmpint(nvt_be_flush(be), ==, 0);
    g_assert_cmpint(nvt_be_pread(be, buf, 1, 1), ==, 0);
    g_assert_cmpuint(buf[0], ==, '3');
    nvt_be_close(be);
}

static void test_fault_transient_flush(void)
{
    nvt_backend *be = new_fault(64);
    uint8_t *img;
    size_t len;

    nvt_fault_arm(be, NVT_FAULT_TRANSIENT, NVT_FAULT_ON_FLUSH, 1, EIO);
    g_assert_cmpint(nvt_be_pwrite(be, "x", 1, 5), ==, 0);
    g_assert_cmpint(nvt_be_flush(be), ==, -EIO);
    g_assert_nonnull(strstr(nvt_last_error(), "flush"));
    /* The write is still only pending: some crash image drops it. */
    bool dropped = false;
    for (uint32_t seed = 0; seed < 64 && !dropped; seed++) {
        img = nvt_fault_crash_image(be, seed, &len);
        dropped = img[5] == 0xAA;
        free(img);
    }
    g_assert_true(dropped);
    nvt_be_close(be);
}

static void test_fault_persistent(void)
{
    nvt_backend *be = new_fault(64);

    nvt_fault_arm(be, NVT_FAULT_PERSISTENT, NVT_FAULT_ON_FLUSH, 1, EIO);
    g_assert_cmpint(nvt_be_pwrite(be, "a", 1, 0), ==, 0);
    g_assert_cmpint(nvt_be_flush(be), ==, -EIO);
    g_assert_true(nvt_fault_fired(be));
    g_assert_nonnull(strstr(nvt_last_error(), "injected"));
    for (int i = 0; i < 5; i++) {
        g_assert_cmpint(nvt_be_pwrite(be, "b", 1, 1), ==, -EIO);
        g_assert_cmpint(nvt_be_flush(be), ==, -EIO);
    }
    g_assert_cmpuint(nvt_fault_op_count(be), ==, 12);
    /* Re-arming replaces the failure. */
    nvt_fault_arm(be, NVT_FAULT_NONE, 0, 0, 0);
    g_assert_cmpint(nvt_be_pwrite(be, "b", 1, 1), ==, 0);
    g_assert_cmpint(nvt_be_flush(be), ==, 0);
    nvt_be_close(be);
}

static void test_fault_power_cut(void)
{
    nvt_backend *be = new_fault(64);
    uint8_t buf[2], *img;
    size_t len;

    nvt_fault_arm(be, NVT_FAULT_POWER_CUT, NVT_FAULT_ON_ANY, 3, 0);
    g_assert_cmpint(nvt_be_pwrite(be, "a", 1, 0), ==, 0);
    g_assert_cmpint(nvt_be_flush(be), ==, 0);
    g_assert_cmpint(nvt_be_pwrite(be, "b", 1, 1), ==, -EIO);
    g_assert_true(nvt_fault_fired(be));
    g_assert_nonnull(strstr(nvt_last_error(), "injected"));
    g_assert_nonnull(strstr(nvt_last_error(), "3"));
    /* Dead: everything that changes the image fails. */
    g_assert_cmpint(nvt_be_pwrite(be, "c", 1, 2), ==, -EIO);
    g_assert_cmpint(nvt_be_flush(be), ==, -EIO);
    g_assert_cmpint(nvt_be_resize(be, 1024), ==, -EIO);
    /* Reads are still served from the process view. */
    g_assert_cmpint(nvt_be_pread(be, buf, 2, 0), ==, 0);
    g_assert_cmpuint(buf[0], ==, 'a');
    g_assert_cmpuint(buf[1], ==, 0xAA);
    /* The cut write never happened: every crash image has only "a". */
    for (uint32_t seed = 0; seed < 16; seed++) {
        img = nvt_fault_crash_image(be, seed, &len);
        g_assert_cmpuint(len, ==, 64);
        g_assert_cmpuint(img[0], ==, 'a');
        g_assert_true(all_equal(img + 1, 63, 0xAA));
        free(img);
    }
    nvt_be_close(be);
}

static void test_fault_mask(void)
{
    nvt_backend *be = new_fault(64);

    /* Only flushes count towards N: the 2nd flush fails, not the 2nd op. */
    nvt_fault_arm(be, NVT_FAULT_TRANSIENT, NVT_FAULT_ON_FLUSH, 2, EIO);
    g_assert_cmpint(nvt_be_pwrite(be, "a", 1, 0), ==, 0);
    g_assert_cmpint(nvt_be_pwrite(be, "a", 1, 0), ==, 0);
    g_assert_cmpint(nvt_be_flush(be), ==, 0);
    g_assert_cmpint(nvt_be_pwrite(be, "a", 1, 0), ==, 0);
    g_assert_false(nvt_fault_fired(be));
    g_assert_cmpint(nvt_be_flush(be), ==, -EIO);
    g_assert_true(nvt_fault_fired(be));
    g_assert_cmpuint(nvt_fault_op_count(be), ==, 5);
    nvt_be_close(be);
}

static void test_fault_crash_no_pending(void)
{
    nvt_backend *be = new_fault(4096);
    uint8_t *img;
    size_t len;

    img = nvt_fault_crash_image(be, 1, &len);
    g_assert_cmpuint(len, ==, 4096);
    g_assert_true(all_equal(img, len, 0xAA));
    free(img);

    g_assert_cmpint(nvt_be_pwrite(be, "hello", 5, 1000), ==, 0);
    g_assert_cmpint(nvt_be_flush(be), ==, 0);
    for (uint32_t seed = 0; seed < 8; seed++) {
        img = nvt_fault_crash_image(be, seed, &len);
        g_assert_cmpuint(len, ==, 4096);
        g_assert_true(all_equal(img, 1000, 0xAA));
        g_assert_cmpmem(img + 1000, 5, "hello", 5);
        g_assert_true(all_equal(img + 1005, len - 1005, 0xAA));
        free(img);
    }
    nvt_be_close(be);
}

static void test_fault_flush_durable(void)
{
    nvt_backend *be = new_fault(8192);
    uint8_t data[3000], *img;
    size_t len;

    fill(data, sizeof data, 1);
    g_assert_cmpint(nvt_be_pwrite(be, data, sizeof data, 700), ==, 0);
    g_assert_cmpint(nvt_be_pwrite(be, "tail", 4, 8190), ==, 0);   /* grows */
    g_assert_cmpint(nvt_be_flush(be), ==, 0);
    /* Pending writes after the flush do not hide the durable ones. */
    g_assert_cmpint(nvt_be_pwrite(be, "zz", 2, 0), ==, 0);
    for (uint32_t seed = 0; seed < 200; seed++) {
        img = nvt_fault_crash_image(be, seed, &len);
        g_assert_cmpuint(len, ==, 8194);
        g_assert_cmpmem(img + 700, sizeof data, data, sizeof data);
        g_assert_cmpmem(img + 8190, 4, "tail", 4);
        free(img);
    }
    nvt_be_close(be);
}

/* Over many seeds, one 4-sector pending write is seen kept whole, dropped
 * and torn (some sectors new, some old or garbage). */
static void test_fault_crash_outcomes(void)
{
    nvt_backend *be = new_fault(8192);
    uint8_t data[2048], *img;
    size_t len;
    int kept = 0, dropped = 0, torn = 0, garbage = 0;

    memset(data, 0x55, sizeof data);
    g_assert_cmpint(nvt_be_pwrite(be, data, sizeof data, 1024), ==, 0);
    for (uint32_t seed = 0; seed < 300; seed++) {
        img = nvt_fault_crash_image(be, seed, &len);
        g_assert_cmpuint(len, ==, 8192);
        if (all_equal(img + 1024, sizeof data, 0x55)) {
            kept++;
        } else if (all_equal(img + 1024, sizeof data, 0xAA)) {
            dropped++;
        } else {
            torn++;
            for (size_t s = 0; s < 4; s++) {
                const uint8_t *sec = img + 1024 + s * 512;
                if (!all_equal(sec, 512, 0x55) && !all_equal(sec, 512, 0xAA))
                    garbage++;
            }
        }
        free(img);
    }
    g_test_message("kept %d dropped %d torn %d (garbage sectors %d)",
                   kept, dropped, torn, garbage);
    g_assert_cmpint(kept, >, 0);
    g_assert_cmpint(dropped, >, 0);
    g_assert_cmpint(torn, >, 0);
    g_assert_cmpint(garbage, >, 0);
    nvt_be_close(be);
}

/* Garbage and kept pieces stay inside each write's byte range, even when
 * a write starts and ends mid-sector. */
static void test_fault_crash_outside_untouched(void)
{
    static const struct { uint64_t off; size_t len; } w[] = {
        { 100, 50 }, { 500, 30 }, { 1000, 1500 }, { 3000, 1 }, { 3583, 2 },
    };
    nvt_backend *be = new_fault(4096);
    uint8_t inside[4096] = { 0 }, data[1500], *img;
    size_t len;

    fill(data, sizeof data, 77);
    for (size_t i = 0; i < G_N_ELEMENTS(w); i++) {
        g_assert_cmpint(nvt_be_pwrite(be, data, w[i].len, w[i].off), ==, 0);
        memset(inside + w[i].off, 1, w[i].len);
    }
    for (uint32_t seed = 0; seed < 500; seed++) {
        img = nvt_fault_crash_image(be, seed, &len);
        g_assert_cmpuint(len, ==, 4096);
        for (size_t i = 0; i < len; i++)
            if (!inside[i] && img[i] != 0xAA)
                g_error("seed %u: byte %zu outside every pending write changed", seed, i);
        free(img);
    }
    nvt_be_close(be);
}

static void test_fault_crash_deterministic(void)
{
    nvt_backend *be = new_fault(8192);
    uint8_t data[4096], *a, *b;
    size_t alen, blen;
    bool differ = false;

    for (int i = 0; i < 8; i++) {
        fill(data, sizeof data, (uint8_t)i);
        g_assert_cmpint(nvt_be_pwrite(be, data, sizeof data, (uint64_t)i * 512), ==, 0);
    }
    for (uint32_t seed = 0; seed < 50; seed++) {
        a = nvt_fault_crash_image(be, seed, &alen);
        b = nvt_fault_crash_image(be, seed, &blen);
        g_assert_cmpmem(a, alen, b, blen);
        free(b);
        b = nvt_fault_crash_image(be, seed + 1, &blen);
        differ |= alen != blen || memcmp(a, b, alen) != 0;
        free(b);
        free(a);
    }
    g_assert_true(differ);
    nvt_be_close(be);
}

static void test_fault_crash_extends(void)
{
    nvt_backend *be = new_fault(1000);
    uint8_t *img;
    size_t len;
    bool longer = false, same = false;

    g_assert_cmpint(nvt_be_pwrite(be, "end", 3, 1200), ==, 0);
    for (uint32_t seed = 0; seed < 100; seed++) {
        img = nvt_fault_crash_image(be, seed, &len);
        if (len == 1000) {
            same = true;
        } else {
            g_assert_cmpuint(len, >, 1000);
            g_assert_cmpuint(len, <=, 1203);
            /* The gap up to a kept write beyond the end reads as zeros. */
            g_assert_true(all_equal(img + 1000, 200, 0));
            if (len == 1203 && memcmp(img + 1200, "end", 3) == 0)
                longer = true;
        }
        free(img);
    }
    g_assert_true(longer);
    g_assert_true(same);
    nvt_be_close(be);
}

static void test_fault_resize_durable(void)
{
    nvt_backend *be = new_fault(512);
    uint8_t *img;
    size_t len;

    g_assert_cmpint(nvt_be_resize(be, 4096), ==, 0);
    img = nvt_fault_crash_image(be, 7, &len);
    g_assert_cmpuint(len, ==, 4096);
    g_assert_true(all_equal(img, 512, 0xAA));
    g_assert_true(all_equal(img + 512, 4096 - 512, 0));
    free(img);
    /* Never shrinks. */
    g_assert_cmpint(nvt_be_resize(be, 100), ==, 0);
    img = nvt_fault_crash_image(be, 7, &len);
    g_assert_cmpuint(len, ==, 4096);
    free(img);
    nvt_be_close(be);
}

/* Over a file, the durable image starts as the file's content. */
static void test_fault_over_file(void)
{
    tmpdir t;
    nvt_backend *be;
    uint8_t data[2000], *img;
    size_t len;

    tmpdir_init(&t);
    fill(data, sizeof data, 5);
    be = open_file(t.path, NVT_FILE_CREATE);
    g_assert_cmpint(nvt_be_pwrite(be, data, sizeof data, 0), ==, 0);
    g_assert_cmpint(nvt_be_flush(be), ==, 0);
    be = nvt_fault_backend_new(be);
    g_assert_nonnull(be);
    g_assert_nonnull(strstr(be->name, t.path));
    g_assert_cmpint(nvt_be_lock(be, true), ==, 0);
    g_assert_cmpint(nvt_be_resize(be, 4096), ==, 0);
    img = nvt_fault_crash_image(be, 0, &len);
    g_assert_cmpuint(len, ==, 4096);
    g_assert_cmpmem(img, sizeof data, data, sizeof data);
    g_assert_true(all_equal(img + sizeof data, 4096 - sizeof data, 0));
    free(img);
    nvt_be_close(be);
    tmpdir_clear(&t);
}

/* If the inner image cannot be snapshotted there is no fault backend, the
 * inner backend is closed (it was handed over) and the message says why. */
static void test_fault_new_fails(void)
{
    int closed = 0;

    nvt_error_clear();
    g_assert_null(nvt_fault_backend_new(new_stub(true, false, &closed)));
    g_assert_cmpint(closed, ==, 1);
    g_assert_nonnull(strstr(nvt_last_error(), "stub: read fails"));
}

/* A flush that really fails below leaves the writes pending. */
static void test_fault_inner_flush_fails(void)
{
    int closed = 0;
    nvt_backend *be = nvt_fault_backend_new(new_stub(false, true, &closed));
    uint8_t *img;
    size_t len;
    bool dropped = false;

    g_assert_nonnull(be);
    g_assert_cmpint(nvt_be_pwrite(be, "x", 1, 3), ==, 0);
    g_assert_cmpint(nvt_be_flush(be), ==, -EIO);
    g_assert_false(nvt_fault_fired(be));
    for (uint32_t seed = 0; seed < 64 && !dropped; seed++) {
        img = nvt_fault_crash_image(be, seed, &len);
        dropped = img[3] == 0xAA;
        free(img);
    }
    g_assert_true(dropped);
    nvt_be_close(be);
    g_assert_cmpint(closed, ==, 1);
}

/* ---- wrapping backends --------------------------------------------------- */

/* A counting backend forwards everything, counts flushes (a durable write
 * as one), and closes its inner backend. */
static void test_counting(void)
{
    nvt_backend *be = nvt_counting_backend_new(nvt_mem_backend_new("hello", 5));
    uint8_t buf[5];
    uint64_t size;
    int closed = 0;

    g_assert_cmpuint(nvt_counting_backend_flushes(be), ==, 0);
    g_assert_cmpint(nvt_be_pwrite(be, "J", 1, 0), ==, 0);
    g_assert_cmpint(nvt_be_pread(be, buf, 5, 0), ==, 0);
    g_assert_cmpmem(buf, 5, "Jello", 5);
    g_assert_cmpint(nvt_be_resize(be, 8), ==, 0);
    g_assert_cmpint(nvt_be_get_size(be, &size), ==, 0);
    g_assert_cmpuint(size, ==, 8);
    g_assert_cmpint(nvt_be_flush(be), ==, 0);
    g_assert_cmpuint(nvt_counting_backend_flushes(be), ==, 1);
    g_assert_cmpint(nvt_be_pwrite_durable(be, "Y", 1, 0), ==, 0);
    g_assert_cmpuint(nvt_counting_backend_flushes(be), ==, 2);
    nvt_be_close(be);

    be = nvt_counting_backend_new(new_stub(false, true, &closed));
    g_assert_cmpint(nvt_be_flush(be), ==, -EIO);
    g_assert_cmpuint(nvt_counting_backend_flushes(be), ==, 1);
    nvt_be_close(be);
    g_assert_cmpint(closed, ==, 1);
}

/* A borrowed backend forwards everything but leaves its inner backend
 * open. */
static void test_borrow(void)
{
    nvt_backend *inner = nvt_mem_backend_new("hello", 5);
    nvt_backend *be = nvt_be_borrow(inner);
    uint8_t buf[5];
    int closed = 0;

    g_assert_cmpint(nvt_be_pwrite(be, "J", 1, 0), ==, 0);
    g_assert_cmpint(nvt_be_pwrite_durable(be, "e", 1, 1), ==, 0);
    g_assert_cmpint(nvt_be_flush(be), ==, 0);
    nvt_be_close(be);
    g_assert_cmpint(nvt_be_pread(inner, buf, 5, 0), ==, 0);
    g_assert_cmpmem(buf, 5, "Jello", 5);
    nvt_be_close(inner);

    inner = new_stub(false, false, &closed);
    nvt_be_close(nvt_be_borrow(inner));
    g_assert_cmpint(closed, ==, 0);
    nvt_be_close(inner);
    g_assert_cmpint(closed, ==, 1);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/backend/mem/round-trip", test_mem_round_trip);
    g_test_add_func("/backend/mem/grow", test_mem_grow);
    g_test_add_func("/backend/mem/cap", test_mem_cap);
    g_test_add_func("/backend/mem/read-past-end", test_mem_read_past_end);

    g_test_add_func("/backend/file/create", test_file_create);
    g_test_add_func("/backend/file/bad-open", test_file_bad_open);
    g_test_add_func("/backend/file/round-trip", test_file_round_trip);
    g_test_add_func("/backend/file/read-past-end", test_file_read_past_end);
    g_test_add_func("/backend/file/resize-reserves", test_file_resize_reserves);
    g_test_add_func("/backend/file/resize-never-shrinks", test_file_resize_never_shrinks);
    g_test_add_func("/backend/file/read-only", test_file_readonly);
    g_test_add_func("/backend/file/lock-conflict", test_file_lock_conflict);
    g_test_add_func("/backend/file/lock-shared", test_file_lock_shared);
    g_test_add_func("/backend/file/lock-shared-exclusive", test_file_lock_shared_exclusive);
    g_test_add_func("/backend/file/lock-released-on-close", test_file_lock_released_on_close);

    g_test_add_func("/backend/counting", test_counting);
    g_test_add_func("/backend/borrow", test_borrow);
    g_test_add_func("/backend/fault/pass-through", test_fault_passthrough);
    g_test_add_func("/backend/fault/op-count", test_fault_op_count);
    g_test_add_func("/backend/fault/transient", test_fault_transient);
    g_test_add_func("/backend/fault/transient-flush", test_fault_transient_flush);
    g_test_add_func("/backend/fault/persistent", test_fault_persistent);
    g_test_add_func("/backend/fault/power-cut", test_fault_power_cut);
    g_test_add_func("/backend/fault/mask", test_fault_mask);
    g_test_add_func("/backend/fault/crash-no-pending", test_fault_crash_no_pending);
    g_test_add_func("/backend/fault/flush-durable", test_fault_flush_durable);
    g_test_add_func("/backend/fault/crash-outcomes", test_fault_crash_outcomes);
    g_test_add_func("/backend/fault/crash-outside-untouched",
                    test_fault_crash_outside_untouched);
    g_test_add_func("/backend/fault/crash-deterministic", test_fault_crash_deterministic);
    g_test_add_func("/backend/fault/crash-extends", test_fault_crash_extends);
    g_test_add_func("/backend/fault/resize-durable", test_fault_resize_durable);
    g_test_add_func("/backend/fault/over-file", test_fault_over_file);
    g_test_add_func("/backend/fault/new-fails", test_fault_new_fails);
    g_test_add_func("/backend/fault/inner-flush-fails", test_fault_inner_flush_fails);
    g_test_add_func("/backend/file/durable-writes", test_file_durable_writes);
    g_test_add_func("/backend/durable-write-default", test_durable_write_default);

    return g_test_run();
}
