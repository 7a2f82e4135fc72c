/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * test-vfs: the file that tdb sees.  Calls the renamed entry points the
 * way tdb's objects do and checks what vfs.h promises: file semantics over
 * a backend region, unique identities, ENOSPC at the region's end, writes
 * that never return 0, syncs that flush, backend errors latched, and
 * everything else passed through to libc.
 */
#include "config.h"

#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utime.h>

#include "journal.h"
#include "testutil.h"
#include "vfs-calls.h"
#include "vfs.h"

typedef struct fixture {
    nvt_backend *be;
    nvt_pager *pg;
    nvt_vfile *vf;
    int fd;
    uint64_t persisted;   /* last length given to the resize callback */
    int resize_calls;
} fixture;

static int record_resize(void *opaque, uint64_t len)
{
    fixture *f = opaque;
    f->persisted = len;
    f->resize_calls++;
    return 0;
}

/* A 64 KiB backend whose region [4096, 4096 + 16384) is the file. */
static void setup(fixture *f, gconstpointer data)
{
    uint8_t zero[65536] = { 0 };
    f->be = nvt_fault_backend_new(nvt_mem_backend_new(zero, sizeof zero));
    f->pg = nvt_pager_new(f->be, 4096, 16384, 0, record_resize, f);
    f->vf = nvt_vfile_new(f->pg);
    f->fd = nvt_vfs_open(nvt_vfile_path(f->vf), O_RDWR);
    g_assert_cmpint(f->fd, >=, 0);
}

static void teardown(fixture *f, gconstpointer data)
{
    g_assert_cmpint(nvt_vfs_close(f->fd), ==, 0);
    nvt_vfile_free(f->vf);
    nvt_pager_free(f->pg);
    nvt_be_close(f->be);
}

static void test_file_semantics(fixture *f, gconstpointer data)
{
    char buf[16];
    g_assert_cmpint(nvt_vfs_write(f->fd, "hello", 5), ==, 5);
    g_assert_cmpint(nvt_vfs_write(f->fd, " world", 6), ==, 6);
    g_assert_cmpuint(nvt_pager_length(f->pg), ==, 11);
    g_assert_cmpuint(f->persisted, ==, 11);
    g_assert_cmpint(nvt_vfs_lseek(f->fd, 0, SEEK_SET), ==, 0);
    g_assert_cmpint(nvt_vfs_read(f->fd, buf, sizeof buf), ==, 11);
    g_assert_cmpmem(buf, 11, "hello world", 11);
    g_assert_cmpint(nvt_vfs_read(f->fd, buf, sizeof buf), ==, 0);  /* EOF */
    g_assert_cmpint(nvt_vfs_pread(f->fd, buf, 5, 6), ==, 5);
    g_assert_cmpmem(buf, 5, "world", 5);
    g_assert_cmpint(nvt_vfs_pread(f->fd, buf, 10, 8), ==, 3);      /* short at EOF */
    g_assert_cmpint(nvt_vfs_lseek(f->fd, -1, SEEK_END), ==, 10);
    g_assert_cmpint(nvt_vfs_lseek(f->fd, -100, SEEK_SET), ==, -1);
    g_assert_cmpint(errno, ==, EINVAL);
    /* An offset past what off_t holds is refused, not wrapped around. */
    g_assert_cmpint(nvt_vfs_lseek(f->fd, INT64_MAX, SEEK_END), ==, -1);
    g_assert_cmpint(errno, ==, EOVERFLOW);
    g_assert_cmpint(nvt_vfs_lseek(f->fd, 4, SEEK_SET), ==, 4);
    g_assert_cmpint(nvt_vfs_lseek(f->fd, INT64_MAX - 3, SEEK_CUR), ==, -1);
    g_assert_cmpint(errno, ==, EOVERFLOW);
    g_assert_cmpint(nvt_vfs_lseek(f->fd, 0, SEEK_CUR), ==, 4);  /* unchanged */

    /* The bytes land at the region's offset in the backend. */
    g_assert_cmpint(nvt_be_pread(f->be, buf, 11, 4096), ==, 0);
    g_assert_cmpmem(buf, 11, "hello world", 11);
}

static void test_identity_is_unique(fixture *f, gconstpointer data)
{
    struct stat a, b;
    nvt_pager *other_pg = nvt_pager_new(f->be, 32768, 4096, 0, NULL, NULL);
    nvt_vfile *other = nvt_vfile_new(other_pg);
    int fd2 = nvt_vfs_open(nvt_vfile_path(other), O_RDWR);
    g_assert_cmpint(fd2, >=, 0);
    g_assert_cmpint(nvt_vfs_fstat(f->fd, &a), ==, 0);
    g_assert_cmpint(nvt_vfs_fstat(fd2, &b), ==, 0);
    g_assert_true(S_ISREG(a.st_mode));
    g_assert_false(a.st_dev == b.st_dev && a.st_ino == b.st_ino);
    nvt_vfs_close(fd2);
    nvt_vfile_free(other);
    nvt_pager_free(other_pg);
}

static void test_growth_stops_at_capacity(fixture *f, gconstpointer data)
{
    struct stat st;
    g_assert_cmpint(nvt_vfs_ftruncate(f->fd, 16384), ==, 0);
    g_assert_cmpint(nvt_vfs_fstat(f->fd, &st), ==, 0);
    g_assert_cmpint(st.st_size, ==, 16384);
    g_assert_cmpint(nvt_vfs_ftruncate(f->fd, 16385), ==, -1);
    g_assert_cmpint(errno, ==, ENOSPC);
    g_assert_true(nvt_pager_take_enospc(f->pg));
    g_assert_false(nvt_pager_take_enospc(f->pg));
    g_assert_cmpint(nvt_vfs_pwrite(f->fd, "x", 1, 16384), ==, -1);
    g_assert_cmpint(errno, ==, ENOSPC);
    /* posix_fallocate returns the error number instead of setting errno. */
    g_assert_cmpint(nvt_vfs_posix_fallocate(f->fd, 16000, 1000), ==, ENOSPC);
    g_assert_cmpint(nvt_vfs_ftruncate(f->fd, 100), ==, 0);
    g_assert_cmpint(nvt_vfs_posix_fallocate(f->fd, 0, 8192), ==, 0);
    g_assert_cmpuint(nvt_pager_length(f->pg), ==, 8192);
    g_assert_cmpuint(f->persisted, ==, 8192);
    /* A refused growth is not an I/O error of the image. */
    g_assert_cmpint(nvt_pager_latched_error(f->pg), ==, 0);
}

static void test_write_never_returns_zero(fixture *f, gconstpointer data)
{
    g_assert_cmpint(nvt_vfs_lseek(f->fd, 16384, SEEK_SET), ==, 16384);
    errno = 0;
    g_assert_cmpint(nvt_vfs_write(f->fd, "abc", 3), ==, -1);
    g_assert_cmpint(errno, ==, ENOSPC);
    g_assert_cmpint(nvt_vfs_write(f->fd, "abc", 0), ==, 0);
}

static void test_sync_flushes_backend(fixture *f, gconstpointer data)
{
    g_assert_cmpint(nvt_vfs_pwrite(f->fd, "data", 4, 0), ==, 4);
    uint64_t ops = nvt_fault_op_count(f->be);
    g_assert_cmpint(nvt_vfs_fdatasync(f->fd), ==, 0);
    g_assert_cmpuint(nvt_fault_op_count(f->be), ==, ops + 1);
    g_assert_cmpuint(nvt_pager_flushes(f->pg), ==, 1);
    /* Durable now: a crash image holds the write whatever the seed. */
    size_t len;
    uint8_t *img = nvt_fault_crash_image(f->be, 7, &len);
    g_assert_cmpmem(img + 4096, 4, "data", 4);
    free(img);
}

static void test_backend_errors_are_latched(fixture *f, gconstpointer data)
{
    g_assert_cmpint(nvt_vfs_pwrite(f->fd, "data", 4, 0), ==, 4);
    nvt_fault_arm(f->be, NVT_FAULT_TRANSIENT, NVT_FAULT_ON_FLUSH, 1, EIO);
    g_assert_cmpint(nvt_vfs_fdatasync(f->fd), ==, -1);
    g_assert_cmpint(errno, ==, EIO);
    /* The next calls succeed, but the failure stays visible to the
     * commit that asks. */
    g_assert_cmpint(nvt_vfs_fdatasync(f->fd), ==, 0);
    g_assert_cmpint(nvt_pager_latched_error(f->pg), ==, -EIO);
    nvt_fault_arm(f->be, NVT_FAULT_TRANSIENT, NVT_FAULT_ON_WRITE, 1, ENOSPC);
    g_assert_cmpint(nvt_vfs_pwrite(f->fd, "more", 4, 4), ==, -1);
    g_assert_cmpint(nvt_pager_latched_error(f->pg), ==, -EIO);  /* the first one is kept */
    nvt_pager_clear_error(f->pg);
    g_assert_cmpint(nvt_pager_latched_error(f->pg), ==, 0);
}

static void test_locks_are_ours_and_mmap_refused(fixture *f, gconstpointer data)
{
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
    g_assert_cmpint(nvt_vfs_fcntl(f->fd, F_SETLKW, &fl), ==, 0);
    g_assert_cmpint(nvt_vfs_fcntl(f->fd, F_GETLK, &fl), ==, 0);
    g_assert_cmpint(fl.l_type, ==, F_UNLCK);
    g_assert_cmpint(nvt_vfs_fcntl(f->fd, F_SETFD, FD_CLOEXEC), ==, 0);
    g_assert_cmpint(nvt_vfs_fcntl(f->fd, F_GETFD) & FD_CLOEXEC, ==, FD_CLOEXEC);
    g_assert_true(nvt_vfs_mmap(NULL, 4096, PROT_READ, MAP_SHARED, f->fd, 0) == MAP_FAILED);
    g_assert_cmpint(nvt_vfs_utime(nvt_vfile_path(f->vf), NULL), ==, 0);
}

static void test_unknown_paths_pass_through(void)
{
    char *dir = tu_tmpdir();
    char *path = g_build_filename(dir, "real.tdb", NULL);
    int fd = nvt_vfs_open(path, O_RDWR | O_CREAT, 0600);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(nvt_vfs_write(fd, "real", 4), ==, 4);
    struct stat st;
    g_assert_cmpint(nvt_vfs_fstat(fd, &st), ==, 0);
    g_assert_cmpint(st.st_size, ==, 4);
    g_assert_cmpint(nvt_vfs_fdatasync(fd), ==, 0);
    /* fcntl passes each command's argument as it was given (or none). */
    g_assert_cmpint(nvt_vfs_fcntl(fd, F_SETFD, FD_CLOEXEC), ==, 0);
    g_assert_cmpint(nvt_vfs_fcntl(fd, F_GETFD), ==, FD_CLOEXEC);
    g_assert_cmpint(nvt_vfs_fcntl(fd, F_GETFL) & O_ACCMODE, ==, O_RDWR);
    int dup = nvt_vfs_fcntl(fd, F_DUPFD_CLOEXEC, 100);
    g_assert_cmpint(dup, >=, 100);
    g_assert_cmpint(nvt_vfs_close(dup), ==, 0);
    g_assert_cmpint(nvt_vfs_close(fd), ==, 0);
    g_assert_true(g_file_test(path, G_FILE_TEST_EXISTS));
    g_assert_cmpint(nvt_vfs_open("nvramtdb-vfs:999999", O_RDWR), ==, -1);
    g_assert_cmpint(errno, ==, ENOENT);
    tu_rmtree(dir);
    g_free(path);
    g_free(dir);
}

static void test_tdb_environment_is_ignored(void)
{
    g_setenv("TDB_NO_FSYNC", "1", TRUE);
    g_assert_null(nvt_vfs_getenv("TDB_NO_FSYNC"));
    g_setenv("NVT_SOMETHING", "x", TRUE);
    g_assert_cmpstr(nvt_vfs_getenv("NVT_SOMETHING"), ==, "x");
}

/*
 * Journal mode, as a model check: random groups of writes (single bytes,
 * scattered runs, whole pages, page-crossing spans) are committed through
 * the journal, with checkpoints as the ring fills.  After every commit the
 * bytes on the backend, replayed the way recovery does, must equal the
 * model of the file; so every frame, whole-page or partial, says exactly
 * what changed.
 */
#define J_REGION (16 * NVT_PAGE_SIZE)
#define J_BASE NVT_PAGE_SIZE
#define J_RING_OFF (J_BASE + J_REGION)
#define J_RING_LEN (64 * NVT_PAGE_SIZE)

static int replay_entry(void *opaque, uint64_t page, uint32_t offset, const uint8_t *data,
                       uint32_t length)
{
    uint8_t *region = opaque;
    g_assert_cmpuint(page, <, J_REGION / NVT_PAGE_SIZE);
    g_assert_cmpuint(offset + length, <=, NVT_PAGE_SIZE);
    memcpy(region + page * NVT_PAGE_SIZE + offset, data, length);
    return 0;
}

/* The region recovery would see from the backend's bytes now. */
static uint8_t *recovered_region(nvt_backend *be, const uint8_t uuid[16])
{
    size_t len;
    const uint8_t *disk = nvt_mem_backend_data(be, &len);
    nvt_backend *copy = nvt_mem_backend_new(disk, len);
    uint8_t *region = g_memdup2(disk + J_BASE, J_REGION);
    nvt_journal *j;
    g_assert_cmpint(nvt_journal_open(copy, J_RING_OFF, J_RING_LEN, uuid, &j), ==, 0);
    g_assert_cmpint(nvt_journal_replay(j, replay_entry, region), ==, 0);
    nvt_journal_free(j);
    nvt_be_close(copy);
    return region;
}

static void test_journal_replays_every_group(void)
{
    static const uint8_t uuid[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
    nvt_backend *be = nvt_mem_backend_new(NULL, 0);
    g_assert_cmpint(nvt_be_resize(be, J_RING_OFF + J_RING_LEN), ==, 0);
    nvt_journal *j;
    g_assert_cmpint(nvt_journal_open(be, J_RING_OFF, J_RING_LEN, uuid, &j), ==, 0);
    nvt_pager *pg = nvt_pager_new(be, J_BASE, J_REGION, J_REGION, NULL, NULL);
    nvt_pager_attach_journal(pg, j);  /* the pager frees it */
    nvt_vfile *vf = nvt_vfile_new(pg);
    int fd = nvt_vfs_open(nvt_vfile_path(vf), O_RDWR);
    g_assert_cmpint(fd, >=, 0);
    uint8_t *model = g_malloc0(J_REGION), buf[2 * NVT_PAGE_SIZE];
    GRand *rand = g_rand_new_with_seed(20261129);

    for (int group = 0; group < 400; group++) {
        nvt_pager_group_begin(pg);
        int writes = g_rand_int_range(rand, 1, 6);
        for (int w = 0; w < writes; w++) {
            uint32_t kind = g_rand_int_range(rand, 0, 4), len;
            switch (kind) {
            case 0: len = 1; break;                                      /* a byte */
            case 1: len = g_rand_int_range(rand, 2, 40); break;          /* a field */
            case 2: len = NVT_PAGE_SIZE; break;                          /* a page */
            default: len = g_rand_int_range(rand, 1, sizeof buf); break; /* a span */
            }
            uint32_t off = g_rand_int_range(rand, 0, J_REGION - len + 1);
            if (kind == 2)
                off -= off % NVT_PAGE_SIZE;
            for (uint32_t i = 0; i < len; i++)
                buf[i] = (uint8_t)g_rand_int(rand);
            /* Sometimes rewrite what is there but a few bytes. */
            if (kind == 3 && g_rand_boolean(rand)) {
                memcpy(buf, model + off, len);
                for (int k = 0; k < 3; k++)
                    buf[g_rand_int_range(rand, 0, len)] ^= 0x5a;
            }
            g_assert_cmpint(nvt_vfs_pwrite(fd, buf, len, off), ==, (ssize_t)len);
            memcpy(model + off, buf, len);
        }
        g_assert_cmpint(nvt_pager_group_commit(pg), ==, 0);
        uint8_t *seen = recovered_region(be, uuid);
        if (memcmp(seen, model, J_REGION) != 0) {
            size_t at = 0;
            while (seen[at] == model[at])
                at++;
            g_error("after group %d the replayed region differs from the model at byte %zu "
                    "(page %zu)", group, at, at / NVT_PAGE_SIZE);
        }
        g_free(seen);
    }
    /* The ring filled and restarted several times on the way. */
    g_assert_cmpuint(nvt_pager_checkpoints(pg), >=, 3);

    g_rand_free(rand);
    g_free(model);
    g_assert_cmpint(nvt_vfs_close(fd), ==, 0);
    nvt_vfile_free(vf);
    nvt_pager_free(pg);
    nvt_be_close(be);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
#define ADD(path, fn) g_test_add(path, fixture, NULL, setup, fn, teardown)
    ADD("/vfs/file-semantics", test_file_semantics);
    ADD("/vfs/identity-unique", test_identity_is_unique);
    ADD("/vfs/growth-stops-at-capacity", test_growth_stops_at_capacity);
    ADD("/vfs/write-never-returns-zero", test_write_never_returns_zero);
    ADD("/vfs/sync-flushes-backend", test_sync_flushes_backend);
    ADD("/vfs/backend-errors-latched", test_backend_errors_are_latched);
    ADD("/vfs/locks-ours-mmap-refused", test_locks_are_ours_and_mmap_refused);
    g_test_add_func("/vfs/unknown-paths-pass-through", test_unknown_paths_pass_through);
    g_test_add_func("/vfs/tdb-environment-ignored", test_tdb_environment_is_ignored);
    g_test_add_func("/vfs/journal-replays-every-group", test_journal_replays_every_group);
    return g_test_run();
}
