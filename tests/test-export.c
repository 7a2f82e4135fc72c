/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * test-export: standalone tdb files — nvramtdb_export_tdb() writes every
 * blob record to a new tdb file, nvramtdb_import_tdb() brings them back
 * into another image identical, refuses damaged files before writing
 * anything, and export never replaces an existing file.
 */
#include "config.h"

#include <string.h>
#include <sys/stat.h>

#include "image.h"
#include "store.h"
#include "testutil.h"

/* The start of every nvramtdb_change: its size (nvramtdb.h). */
#define SIZED .struct_size = sizeof(nvramtdb_change),

static const tu_blob blobs[] = {
    { "tpm0/permall", 8192 },
    { "tpm0/volatilestate", 4096 },
    { "efi0/vars", 2048 },
    { "efi0/empty", 512 },
};
#define NBLOBS (sizeof blobs / sizeof blobs[0])

static nvramtdb *start_mem(const tu_blob *b, size_t n)
{
    int rc;
    nvramtdb *db = tu_start(nvt_mem_backend_new(NULL, 0), 0, b, n, &rc);
    if (!db)
        g_error("start failed: %d %s", rc, nvramtdb_last_error());
    return db;
}

/* permall full, volatilestate 1000 bytes, vars empty value, empty: none. */
static nvramtdb *source_image(uint8_t *permall, uint8_t *vol)
{
    nvramtdb *db = start_mem(blobs, NBLOBS);
    tu_fill(permall, 8192, 1);
    tu_fill(vol, 1000, 2);
    TU_OK(nvramtdb_write(db, "tpm0/permall", permall, 8192, 0, NULL, NULL));
    TU_OK(nvramtdb_write(db, "tpm0/volatilestate", vol, 1000, NVRAMTDB_ASYNC, NULL, NULL));
    TU_OK(nvramtdb_write(db, "efi0/vars", NULL, 0, NVRAMTDB_ASYNC, NULL, NULL));
    return db;
}

/* A memory handle, opened but not started (nothing registered). */
static nvramtdb *open_unstarted(void)
{
    nvramtdb *db;
    TU_OK(nvramtdb_open("mem:", 0, &db));
    return db;
}

/* A temporary directory and the tdb file exported there from
 * source_image(). */
typedef struct exported {
    char *dir;
    char *path;                         /* DIR/export.tdb */
    uint8_t permall[8192], vol[1000];   /* the values source_image() wrote */
} exported;

/* Export source_image() to DIR/export.tdb; returns the source, open. */
static nvramtdb *export_source(exported *e)
{
    e->dir = tu_tmpdir();
    e->path = g_build_filename(e->dir, "export.tdb", NULL);
    nvramtdb *src = source_image(e->permall, e->vol);
    TU_OK(nvramtdb_export_tdb(src, e->path));
    return src;
}

static void exported_free(exported *e)
{
    g_free(e->path);
    tu_rmtree(e->dir);
    g_free(e->dir);
}

static void assert_same_list(nvramtdb *a, nvramtdb *b)
{
    nvramtdb_entry *ea, *eb;
    size_t na, nb;
    TU_OK(nvramtdb_list(a, sizeof(nvramtdb_entry), &ea, &na));
    TU_OK(nvramtdb_list(b, sizeof(nvramtdb_entry), &eb, &nb));
    g_assert_cmpuint(na, ==, nb);
    for (size_t i = 0; i < na; i++) {
        g_assert_cmpstr(ea[i].name, ==, eb[i].name);
        g_assert_cmpuint(ea[i].present, ==, eb[i].present);
        g_assert_cmpuint(ea[i].size, ==, eb[i].size);
        g_assert_cmpuint(ea[i].max_size, ==, eb[i].max_size);
        g_assert_cmpuint(ea[i].crc32c, ==, eb[i].crc32c);
    }
    free(ea);
    free(eb);
}

static void test_round_trip(void)
{
    exported e;
    nvramtdb *src = export_source(&e);
    const char *path = e.path;

    size_t len;
    uint8_t *file = tu_read_file(path, &len);
    g_assert_cmpuint(len, >, 8192);
    g_assert_cmpmem(file, 9, "TDB file\n", 9);
    for (size_t i = 0; i < NBLOBS; i++)
        g_assert_cmpint(tu_memfind(file, len, blobs[i].name, strlen(blobs[i].name), NULL),
                        >=, 0);
    g_assert_cmpint(tu_memfind(file, len, e.permall, sizeof e.permall, NULL), >=, 0);
    g_free(file);
    struct stat sb;
    g_assert_cmpint(stat(path, &sb), ==, 0);
    g_assert_cmpuint(sb.st_mode & 0777, ==, 0600);

    /* A fresh image: register from the file, start, import. */
    nvramtdb *dst = open_unstarted();
    TU_ASSERT_RC(nvramtdb_import_tdb(dst, path, NVRAMTDB_IMPORT_REGISTER), (int)NBLOBS);
    TU_OK(nvramtdb_start(dst, 0));
    TU_ASSERT_RC(nvramtdb_import_tdb(dst, path, 0), 3);
    tu_assert_blob(dst, "tpm0/permall", e.permall, sizeof e.permall);
    tu_assert_blob(dst, "tpm0/volatilestate", e.vol, sizeof e.vol);
    tu_assert_blob(dst, "efi0/vars", NULL, 0);
    tu_assert_blob(dst, "efi0/empty", NULL, -1);
    assert_same_list(src, dst);
    tu_assert_healthy(dst);

    /* Importing again rewrites the same values. */
    TU_ASSERT_RC(nvramtdb_import_tdb(dst, path, 0), 3);
    tu_assert_blob(dst, "tpm0/permall", e.permall, sizeof e.permall);
    /* Registering after start is refused. */
    TU_ASSERT_ERROR(nvramtdb_import_tdb(dst, path, NVRAMTDB_IMPORT_REGISTER), -EALREADY,
                    "already started");
    nvramtdb_close(dst);
    nvramtdb_close(src);
    exported_free(&e);
}

static void test_export_refuses_existing_path(void)
{
    uint8_t permall[8192], vol[1000];
    char *dir = tu_tmpdir();
    char *path = tu_write_file(dir, "taken.tdb", "precious", 8);
    nvramtdb *src = source_image(permall, vol);
    TU_ASSERT_ERROR(nvramtdb_export_tdb(src, path), -EEXIST, "taken.tdb", "exists");
    TU_ASSERT_FILE_UNCHANGED(path, "precious", 8);
    /* Not started: refused, nothing created. */
    char *other = g_build_filename(dir, "other.tdb", NULL);
    nvramtdb *idle = open_unstarted();
    TU_ASSERT_ERROR(nvramtdb_export_tdb(idle, other), -EINVAL, "not started");
    g_assert_false(g_file_test(other, G_FILE_TEST_EXISTS));
    nvramtdb_close(idle);
    nvramtdb_close(src);
    g_free(other);
    g_free(path);
    tu_rmtree(dir);
    g_free(dir);
}

static void test_corrupt_record_changes_nothing(void)
{
    exported e;
    nvramtdb_close(export_source(&e));
    const char *path = e.path;

    /* Flip one byte inside volatilestate's payload. */
    size_t len;
    uint8_t *file = tu_read_file(path, &len);
    long at = tu_memfind(file, len, e.vol, sizeof e.vol, NULL);
    g_assert_cmpint(at, >=, 0);
    file[at + 500] ^= 0x40;
    g_free(tu_write_file(e.dir, "export.tdb", file, len));
    g_free(file);

    /* The target already has other values: they must survive. */
    nvramtdb *dst = start_mem(blobs, NBLOBS);
    uint8_t old[100];
    tu_fill(old, sizeof old, 7);
    TU_OK(nvramtdb_write(dst, "tpm0/permall", old, sizeof old, 0, NULL, NULL));
    TU_ASSERT_ERROR(nvramtdb_import_tdb(dst, path, 0), -EBADMSG, "tpm0/volatilestate",
                    "checksum");
    tu_assert_blob(dst, "tpm0/permall", old, sizeof old);
    tu_assert_blob(dst, "tpm0/volatilestate", NULL, -1);
    tu_assert_blob(dst, "efi0/vars", NULL, -1);
    nvramtdb *fresh = open_unstarted();
    TU_ASSERT_ERROR(nvramtdb_import_tdb(fresh, path, NVRAMTDB_IMPORT_REGISTER), -EBADMSG,
                    "checksum");
    nvramtdb_close(fresh);

    /* Not a tdb at all. */
    char *junk = tu_write_file(e.dir, "junk.tdb", "hello, world\n", 13);
    TU_ASSERT_ERROR(nvramtdb_import_tdb(dst, junk, 0), -EBADMSG, "junk.tdb");
    tu_assert_blob(dst, "tpm0/permall", old, sizeof old);
    nvramtdb_close(dst);
    g_free(junk);
    exported_free(&e);
}

static void test_import_needs_room(void)
{
    exported e;
    nvramtdb_close(export_source(&e));
    const char *path = e.path;

    /* permall registered too small, volatilestate not at all: nothing
     * is written. */
    static const tu_blob small[] = { { "tpm0/permall", 100 }, { "tpm0/volatilestate", 4096 },
                                     { "efi0/vars", 2048 } };
    nvramtdb *dst = start_mem(small, 3);
    TU_ASSERT_ERROR(nvramtdb_import_tdb(dst, path, 0), -EFBIG, "tpm0/permall");
    tu_assert_blob(dst, "efi0/vars", NULL, -1);
    nvramtdb_close(dst);

    static const tu_blob some[] = { { "tpm0/permall", 8192 }, { "efi0/vars", 2048 } };
    dst = start_mem(some, 2);
    TU_ASSERT_ERROR(nvramtdb_import_tdb(dst, path, 0), -ENOENT, "tpm0/volatilestate");
    tu_assert_blob(dst, "tpm0/permall", NULL, -1);
    nvramtdb_close(dst);

    char *missing = g_build_filename(e.dir, "missing.tdb", NULL);
    nvramtdb *fresh = open_unstarted();
    TU_ASSERT_ERROR(nvramtdb_import_tdb(fresh, missing, NVRAMTDB_IMPORT_REGISTER), -ENOENT,
                    "missing.tdb");
    TU_ASSERT_ERROR(nvramtdb_import_tdb(fresh, path, 0), -EINVAL, "not started");
    nvramtdb_close(fresh);
    g_free(missing);
    exported_free(&e);
}

/*
 * An import too large for one journal frame (blobs registered after the
 * image was formatted can make it so) commits blob by blob.  The image is
 * formatted by hand with a journal of 16 pages: dev/x and dev/y each fit
 * a frame, together they do not.
 */
static void test_import_larger_than_journal(void)
{
    static const tu_blob set[] = { { "dev/x", 40 * 1024 }, { "dev/y", 28 * 1024 } };
    nvt_blob_spec specs[] = { { "dev/x", 40 * 1024 }, { "dev/y", 28 * 1024 } };
    uint8_t *tdb;
    uint64_t len;
    TU_OK(nvt_store_build_fresh(specs, 2, &tdb, &len));
    nvt_backend *be = nvt_mem_backend_new(NULL, 0);
    uint64_t size = 8 * 1024 * 1024;
    TU_OK(nvt_be_resize(be, size));
    nvt_image *img;
    TU_OK(nvt_image_format(be, size, tdb, len, 16 * 4096, &img));
    nvt_image_free(img);
    g_free(tdb);
    int rc;
    nvramtdb *dst = tu_start(be, 0, set, 2, &rc);
    TU_OK(rc);

    /* The source: both blobs at their maxima, exported. */
    uint8_t *x = g_malloc(set[0].max_size), *y = g_malloc(set[1].max_size);
    tu_fill(x, set[0].max_size, 3);
    tu_fill(y, set[1].max_size, 4);
    nvramtdb *src = start_mem(set, 2);
    TU_OK(nvramtdb_write(src, "dev/x", x, set[0].max_size, 0, NULL, NULL));
    TU_OK(nvramtdb_write(src, "dev/y", y, set[1].max_size, 0, NULL, NULL));
    char *dir = tu_tmpdir();
    char *path = g_build_filename(dir, "big.tdb", NULL);
    TU_OK(nvramtdb_export_tdb(src, path));
    nvramtdb_close(src);

    /* As one batch the values do not fit: the import must not stop there. */
    nvramtdb_change both[] = {
        { SIZED .name = "dev/x", .data = x, .len = set[0].max_size },
        { SIZED .name = "dev/y", .data = y, .len = set[1].max_size },
    };
    TU_ASSERT_ERROR(nvramtdb_write_batch(dst, both, 2, 0, NULL, NULL), -E2BIG, "journal");
    TU_ASSERT_RC(nvramtdb_import_tdb(dst, path, 0), 2);
    tu_assert_blob(dst, "dev/x", x, set[0].max_size);
    tu_assert_blob(dst, "dev/y", y, set[1].max_size);
    tu_assert_healthy(dst);
    nvramtdb_close(dst);
    g_free(x);
    g_free(y);
    g_free(path);
    tu_rmtree(dir);
    g_free(dir);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/export/round-trip", test_round_trip);
    g_test_add_func("/export/refuses-existing-path", test_export_refuses_existing_path);
    g_test_add_func("/export/corrupt-record-changes-nothing", test_corrupt_record_changes_nothing);
    g_test_add_func("/export/import-needs-room", test_import_needs_room);
    g_test_add_func("/export/import-larger-than-journal", test_import_larger_than_journal);
    return g_test_run();
}
