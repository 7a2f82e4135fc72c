/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * vfs.c — tdb's file calls, served by a pager (see vfs.h, pager.h).
 *
 * The nvt_vfs_* functions below replace libc's open, pread, fstat, ... in
 * tdb's objects only.  Each takes the same arguments and reports errors
 * the same way (-1 and errno) as the call it stands for.  A virtual
 * descriptor is a real descriptor number reserved with eventfd(), so it
 * can never collide with a file the process opens; the table maps it to
 * its vfile and its file position.  Bytes, length, syncs and their errors
 * are the pager's: here only file semantics (EOF, positions, stat).
 */
#include "config.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utime.h>

#include <glib.h>

#include "debug.h"
#include "vfs-calls.h"
#include "vfs.h"

#define VFS_PATH_PREFIX "nvramtdb-vfs:"
#define VFS_DEV 0x6e767274u  /* "nvrt": one device number for all vfiles */

struct nvt_vfile {
    nvt_pager *pg;
    uint64_t ino;
    char path[48];
};

typedef struct vfd {
    nvt_vfile *vf;
    uint64_t pos;
} vfd;

static GMutex table_lock;   /* NVT_LOCK_VFS_TABLE */
static GHashTable *paths;   /* path -> nvt_vfile* */
static GHashTable *fds;     /* GINT_TO_POINTER(fd) -> vfd* */
static uint64_t next_ino = 1;

static void tables_init_locked(void)
{
    if (!paths) {
        paths = g_hash_table_new(g_str_hash, g_str_equal);
        fds = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, g_free);
    }
}

nvt_vfile *nvt_vfile_new(nvt_pager *pg)
{
    nvt_vfile *vf = g_new0(nvt_vfile, 1);
    vf->pg = pg;
    nvt_lock(&table_lock, NVT_LOCK_VFS_TABLE);
    tables_init_locked();
    vf->ino = next_ino++;
    snprintf(vf->path, sizeof vf->path, VFS_PATH_PREFIX "%llu", (unsigned long long)vf->ino);
    g_hash_table_insert(paths, vf->path, vf);
    nvt_unlock(&table_lock, NVT_LOCK_VFS_TABLE);
    return vf;
}

void nvt_vfile_free(nvt_vfile *vf)
{
    if (!vf)
        return;
    nvt_lock(&table_lock, NVT_LOCK_VFS_TABLE);
    g_hash_table_remove(paths, vf->path);
    nvt_unlock(&table_lock, NVT_LOCK_VFS_TABLE);
    g_free(vf);
}

const char *nvt_vfile_path(const nvt_vfile *vf) { return vf->path; }

/* ---- helpers ------------------------------------------------------------ */

/* tdb makes a dozen calls per commit on one descriptor: each thread keeps
 * its last hit, valid while no virtual descriptor has been closed since
 * (close_gen).  A descriptor is used by one thread at a time (the store
 * lock), so a hit cannot be closed under its user; a number closed and
 * reused by open() is never a stale hit, as the close bumped close_gen. */
static gint close_gen;
static _Thread_local struct {
    int fd;
    gint gen;
    vfd *d;
} last;

static vfd *lookup_fd(int fd)
{
    gint gen = g_atomic_int_get(&close_gen);
    if (last.d && last.fd == fd && last.gen == gen)
        return last.d;
    vfd *d = NULL;
    nvt_lock(&table_lock, NVT_LOCK_VFS_TABLE);
    if (fds)
        d = g_hash_table_lookup(fds, GINT_TO_POINTER(fd));
    nvt_unlock(&table_lock, NVT_LOCK_VFS_TABLE);
    if (d) {
        last.fd = fd;
        last.gen = gen;
        last.d = d;
    }
    return d;
}

static bool is_vfs_path(const char *path)
{
    return strncmp(path, VFS_PATH_PREFIX, strlen(VFS_PATH_PREFIX)) == 0;
}

static nvt_vfile *lookup_path(const char *path)
{
    nvt_vfile *vf = NULL;
    nvt_lock(&table_lock, NVT_LOCK_VFS_TABLE);
    if (paths)
        vf = g_hash_table_lookup(paths, path);
    nvt_unlock(&table_lock, NVT_LOCK_VFS_TABLE);
    return vf;
}

static int fail(int err)
{
    errno = err;
    return -1;
}

static ssize_t vf_pread(nvt_vfile *vf, void *buf, size_t len, uint64_t off)
{
    uint64_t length = nvt_pager_length(vf->pg);
    if (off >= length || len == 0)
        return 0;
    if (len > length - off)
        len = (size_t)(length - off);
    int r = nvt_pager_read(vf->pg, buf, len, off);
    if (r < 0)
        return fail(-r);
    return (ssize_t)len;
}

static ssize_t vf_pwrite(nvt_vfile *vf, const void *buf, size_t len, uint64_t off)
{
    int r = nvt_pager_write(vf->pg, buf, len, off);
    if (r < 0)
        return fail(-r);
    return (ssize_t)len;
}

static int vf_flush(nvt_vfile *vf)
{
    int r = nvt_pager_flush(vf->pg);
    return r < 0 ? fail(-r) : 0;
}

static int vf_set_length(nvt_vfile *vf, uint64_t len)
{
    int r = nvt_pager_set_length(vf->pg, len);
    return r < 0 ? fail(-r) : 0;
}

/* ---- the calls tdb makes ----------------------------------------------- */

int nvt_vfs_open(const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    if (!is_vfs_path(path))
        return open(path, flags, mode);

    nvt_vfile *vf = lookup_path(path);
    if (!vf)
        return fail(ENOENT);
    if ((flags & O_TRUNC) && vf_set_length(vf, 0) < 0)
        return -1;
    int fd = eventfd(0, EFD_CLOEXEC);
    if (fd < 0)
        return -1;
    vfd *d = g_new0(vfd, 1);
    d->vf = vf;
    nvt_lock(&table_lock, NVT_LOCK_VFS_TABLE);
    g_hash_table_insert(fds, GINT_TO_POINTER(fd), d);
    nvt_unlock(&table_lock, NVT_LOCK_VFS_TABLE);
    return fd;
}

int nvt_vfs_close(int fd)
{
    nvt_lock(&table_lock, NVT_LOCK_VFS_TABLE);
    if (fds && g_hash_table_remove(fds, GINT_TO_POINTER(fd)))
        g_atomic_int_inc(&close_gen);   /* before the number can be reused */
    nvt_unlock(&table_lock, NVT_LOCK_VFS_TABLE);
    return close(fd);
}

ssize_t nvt_vfs_read(int fd, void *buf, size_t len)
{
    vfd *d = lookup_fd(fd);
    if (!d)
        return read(fd, buf, len);
    ssize_t n = vf_pread(d->vf, buf, len, d->pos);
    if (n > 0)
        d->pos += (uint64_t)n;
    return n;
}

ssize_t nvt_vfs_write(int fd, const void *buf, size_t len)
{
    vfd *d = lookup_fd(fd);
    if (!d)
        return write(fd, buf, len);
    ssize_t n = vf_pwrite(d->vf, buf, len, d->pos);
    if (n > 0)
        d->pos += (uint64_t)n;
    return n;
}

ssize_t nvt_vfs_pread(int fd, void *buf, size_t len, off_t off)
{
    vfd *d = lookup_fd(fd);
    if (!d)
        return pread(fd, buf, len, off);
    if (off < 0)
        return fail(EINVAL);
    return vf_pread(d->vf, buf, len, (uint64_t)off);
}

ssize_t nvt_vfs_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    vfd *d = lookup_fd(fd);
    if (!d)
        return pwrite(fd, buf, len, off);
    if (off < 0)
        return fail(EINVAL);
    return vf_pwrite(d->vf, buf, len, (uint64_t)off);
}

off_t nvt_vfs_lseek(int fd, off_t off, int whence)
{
    vfd *d = lookup_fd(fd);
    if (!d)
        return lseek(fd, off, whence);
    int64_t base;
    switch (whence) {
    case SEEK_SET: base = 0; break;
    case SEEK_CUR: base = (int64_t)d->pos; break;
    case SEEK_END: base = (int64_t)nvt_pager_length(d->vf->pg); break;
    default: return fail(EINVAL);
    }
    /* base is at most the region's size: only a huge @off can overflow. */
    if (off > 0 && base > INT64_MAX - off)
        return fail(EOVERFLOW);
    if (base + off < 0)
        return fail(EINVAL);
    d->pos = (uint64_t)(base + off);
    return (off_t)d->pos;
}

int nvt_vfs_fstat(int fd, struct stat *st)
{
    vfd *d = lookup_fd(fd);
    if (!d)
        return fstat(fd, st);
    memset(st, 0, sizeof *st);
    st->st_dev = VFS_DEV;
    st->st_ino = d->vf->ino;
    st->st_mode = S_IFREG | 0600;
    st->st_nlink = 1;
    st->st_uid = getuid();
    st->st_gid = getgid();
    uint64_t length = nvt_pager_length(d->vf->pg);
    st->st_size = (off_t)length;
    st->st_blksize = 4096;
    st->st_blocks = (blkcnt_t)((length + 511) / 512);
    return 0;
}

int nvt_vfs_ftruncate(int fd, off_t len)
{
    vfd *d = lookup_fd(fd);
    if (!d)
        return ftruncate(fd, len);
    if (len < 0)
        return fail(EINVAL);
    return vf_set_length(d->vf, (uint64_t)len);
}

/* fcntl's third argument exists only for some commands, and is an int or
 * a pointer: read exactly what the caller passed. */
static bool fcntl_takes_lock(int cmd)
{
    return cmd == F_SETLK || cmd == F_SETLKW || cmd == F_GETLK || cmd == F_OFD_SETLK ||
           cmd == F_OFD_SETLKW || cmd == F_OFD_GETLK;
}

static bool fcntl_takes_nothing(int cmd)
{
    return cmd == F_GETFD || cmd == F_GETFL || cmd == F_GETOWN || cmd == F_GETSIG ||
           cmd == F_GETLEASE || cmd == F_GETPIPE_SZ;
}

int nvt_vfs_fcntl(int fd, int cmd, ...)
{
    struct flock *lock = NULL;
    int iarg = 0;
    if (fcntl_takes_lock(cmd) || !fcntl_takes_nothing(cmd)) {
        va_list ap;
        va_start(ap, cmd);
        if (fcntl_takes_lock(cmd))
            lock = va_arg(ap, struct flock *);
        else
            iarg = va_arg(ap, int);
        va_end(ap);
    }

    vfd *d = lookup_fd(fd);
    if (!d) {
        if (lock)
            return fcntl(fd, cmd, lock);
        return fcntl_takes_nothing(cmd) ? fcntl(fd, cmd) : fcntl(fd, cmd, iarg);
    }
    switch (cmd) {
    case F_GETFD:
    case F_GETFL:
        return fcntl(fd, cmd);
    case F_SETFD:
        return fcntl(fd, cmd, iarg);
    case F_SETLK:
    case F_SETLKW:
        /* We serialise access ourselves (one writer per image). */
        return 0;
    case F_GETLK:
        lock->l_type = F_UNLCK;
        return 0;
    default:
        return fail(EINVAL);
    }
}

int nvt_vfs_fdatasync(int fd)
{
    vfd *d = lookup_fd(fd);
    if (!d)
        return fdatasync(fd);
    return vf_flush(d->vf);
}

int nvt_vfs_fsync(int fd)
{
    vfd *d = lookup_fd(fd);
    if (!d)
        return fsync(fd);
    return vf_flush(d->vf);
}

int nvt_vfs_posix_fallocate(int fd, off_t off, off_t len)
{
    vfd *d = lookup_fd(fd);
    if (!d)
        return posix_fallocate(fd, off, len);
    /* Like posix_fallocate: returns an error number, not -1. */
    if (off < 0 || len <= 0)
        return EINVAL;
    uint64_t end = (uint64_t)off + (uint64_t)len;
    if (end <= nvt_pager_length(d->vf->pg))
        return 0;
    return -nvt_pager_set_length(d->vf->pg, end);  /* -ENOSPC beyond the capacity */
}

void *nvt_vfs_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if (!lookup_fd(fd))
        return mmap(addr, len, prot, flags, fd, off);
    /* Never map a vfile: tdb falls back to pread/pwrite. */
    errno = ENODEV;
    return MAP_FAILED;
}

int nvt_vfs_munmap(void *addr, size_t len)
{
    return munmap(addr, len);
}

int nvt_vfs_msync(void *addr, size_t len, int flags)
{
    return msync(addr, len, flags);
}

int nvt_vfs_utime(const char *path, const struct utimbuf *times)
{
    if (!is_vfs_path(path))
        return utime(path, times);
    return lookup_path(path) ? 0 : fail(ENOENT);
}

char *nvt_vfs_getenv(const char *name)
{
    /* tdb reads TDB_NO_FSYNC to skip its syncs: durability is not an
     * environment setting here. */
    if (strncmp(name, "TDB_", 4) == 0)
        return NULL;
    return getenv(name);
}
