/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * backend-file.c — an image in a regular file or on a block device.
 *
 * Owns one file descriptor.  Promises, on top of the rules of backend.h:
 * - pread/pwrite move the whole range, retrying short counts and EINTR;
 * - flush is fdatasync: once it returns 0, every earlier write is durable;
 * - pwrite_durable of whole aligned pages, with no buffered write still
 *   unflushed, is one O_DIRECT write with RWF_DSYNC on a second descriptor
 *   of the same file: the kernel sends the data and the cache flush
 *   without a page-cache copy or a separate fdatasync call (about 8 us
 *   less per commit, measured).  Anything else, or a file system without
 *   O_DIRECT (tmpfs), falls back to pwrite + fdatasync;
 * - resize reserves the space (posix_fallocate, or zeros where the file
 *   system cannot) and fsyncs, so the new size is durable before any data
 *   is written into it and later writes below it cannot fail with ENOSPC;
 *   a block device cannot grow: asking for more than it holds is -ENOSPC;
 * - a file created by the open is durable in its directory (the directory
 *   is fsynced), so a formatted image cannot vanish in a power cut;
 * - lock is an OFD lock on the whole file: it belongs to this open file
 *   description, so it conflicts with any other open of the image, in
 *   another process or in this one, and is released by close.
 * Every failure returns a negative errno and a message naming the path.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>
#include <linux/fs.h>      /* BLKGETSIZE64 */

#include <glib.h>

#include "backend.h"
#include "error.h"

/* Offsets are 64-bit everywhere; the library is built for 64-bit off_t. */
_Static_assert(sizeof(off_t) == 8, "nvramtdb needs a 64-bit off_t");

#define FILE_OFF_MAX ((uint64_t)INT64_MAX)
#define ZERO_CHUNK   (64 * 1024)

#define DIRECT_ALIGN 4096
#define DIRECT_UNTRIED (-1)
#define DIRECT_UNUSABLE (-2)

typedef struct file_backend {
    nvt_backend base;
    int fd;
    int direct_fd;      /* O_DIRECT descriptor, or DIRECT_UNTRIED/UNUSABLE */
    bool is_blk;
    bool unflushed;     /* a buffered write has not been fdatasynced yet */
} file_backend;

static file_backend *to_file(nvt_backend *be)
{
    return (file_backend *)be;
}

/* The range [off, off + len) must be addressable with off_t. */
static int check_range(nvt_backend *be, const char *op, size_t len, uint64_t off)
{
    if (off > FILE_OFF_MAX || len > FILE_OFF_MAX - off)
        return nvt_error(EINVAL, "%s: %s of %zu bytes at offset %llu is out of range",
                         be->name, op, len, (unsigned long long)off);
    return 0;
}

static int file_pread(nvt_backend *be, void *buf, size_t len, uint64_t off)
{
    file_backend *f = to_file(be);
    uint8_t *p = buf;
    size_t done = 0;
    int r = check_range(be, "read", len, off);

    if (r < 0)
        return r;
    while (done < len) {
        ssize_t n = pread(f->fd, p + done, len - done, (off_t)(off + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return nvt_error(errno, "%s: read of %zu bytes at offset %llu failed: %s",
                             be->name, len, (unsigned long long)off, g_strerror(errno));
        }
        if (n == 0)
            return nvt_error(EIO, "%s: read of %zu bytes at offset %llu goes beyond "
                             "the end of the image (%llu bytes available)",
                             be->name, len, (unsigned long long)off,
                             (unsigned long long)(off + done));
        done += (size_t)n;
    }
    return 0;
}

static int file_pwrite(nvt_backend *be, const void *buf, size_t len, uint64_t off)
{
    file_backend *f = to_file(be);
    const uint8_t *p = buf;
    size_t done = 0;
    int r;

    if (be->read_only)
        return nvt_error(EROFS, "%s: write refused: image is open read-only", be->name);
    r = check_range(be, "write", len, off);
    if (r < 0)
        return r;
    while (done < len) {
        ssize_t n = pwrite(f->fd, p + done, len - done, (off_t)(off + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return nvt_error(errno, "%s: write of %zu bytes at offset %llu failed: %s",
                             be->name, len, (unsigned long long)off, g_strerror(errno));
        }
        /* Zero progress on a non-empty write would loop forever. */
        if (n == 0)
            return nvt_error(EIO, "%s: write of %zu bytes at offset %llu made no progress",
                             be->name, len, (unsigned long long)off);
        done += (size_t)n;
        f->unflushed = true;
    }
    return 0;
}

static int file_flush(nvt_backend *be)
{
    /* Nothing can be dirty through a read-only descriptor. */
    if (be->read_only)
        return 0;
    while (fdatasync(to_file(be)->fd) < 0) {
        if (errno == EINTR)
            continue;
        /* After a failed fdatasync the kernel may have dropped the dirty
         * pages: the caller must treat the image as suspect, not retry. */
        return nvt_error(errno, "%s: fdatasync failed: %s", be->name, g_strerror(errno));
    }
    to_file(be)->unflushed = false;
    return 0;
}

/* Open the O_DIRECT descriptor once, through /proc so that it is the same
 * file even if the path was renamed or replaced since; any failure just
 * means the buffered path is used. */
static int direct_fd(file_backend *f)
{
    if (f->direct_fd != DIRECT_UNTRIED)
        return f->direct_fd;
    f->direct_fd = DIRECT_UNUSABLE;
    char proc[64];
    struct stat a, b;
    g_snprintf(proc, sizeof proc, "/proc/self/fd/%d", f->fd);
    int fd = open(proc, O_RDWR | O_DIRECT | O_CLOEXEC);
    if (fd < 0)
        return f->direct_fd;
    if (fstat(fd, &a) < 0 || fstat(f->fd, &b) < 0 || a.st_dev != b.st_dev ||
        a.st_ino != b.st_ino) {
        close(fd);
        return f->direct_fd;
    }
    return f->direct_fd = fd;
}

static int file_pwrite_durable(nvt_backend *be, const void *buf, size_t len, uint64_t off)
{
    file_backend *f = to_file(be);

    if (be->read_only)
        return nvt_error(EROFS, "%s: write refused: image is open read-only", be->name);
    int r = check_range(be, "write", len, off);
    if (r < 0)
        return r;
    /* RWF_DSYNC makes only this range durable, so earlier buffered writes
     * need the fdatasync path; O_DIRECT needs aligned memory and range. */
    bool aligned = ((uintptr_t)buf | len | off) % DIRECT_ALIGN == 0 && len > 0;
    if (f->unflushed || !aligned || direct_fd(f) < 0)
        goto buffered;
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    ssize_t n;
    do
        n = pwritev2(f->direct_fd, &iov, 1, (off_t)off, RWF_DSYNC);
    while (n < 0 && errno == EINTR);
    if (n == (ssize_t)len)
        return 0;
    if (n < 0 && errno != EINVAL && errno != EOPNOTSUPP)
        return nvt_error(errno, "%s: durable write of %zu bytes at offset %llu failed: %s",
                         be->name, len, (unsigned long long)off, g_strerror(errno));
    /* Refused (no O_DIRECT or RWF_DSYNC here) or short: never again, and
     * redo the whole range the ordinary way. */
    close(f->direct_fd);
    f->direct_fd = DIRECT_UNUSABLE;
buffered:
    r = file_pwrite(be, buf, len, off);
    return r < 0 ? r : file_flush(be);
}

static int file_get_size(nvt_backend *be, uint64_t *size)
{
    file_backend *f = to_file(be);
    struct stat st;

    if (f->is_blk) {
        uint64_t bytes;
        if (ioctl(f->fd, BLKGETSIZE64, &bytes) < 0)
            return nvt_error(errno, "%s: cannot get the block device size: %s",
                             be->name, g_strerror(errno));
        *size = bytes;
        return 0;
    }
    if (fstat(f->fd, &st) < 0)
        return nvt_error(errno, "%s: fstat failed: %s", be->name, g_strerror(errno));
    *size = (uint64_t)st.st_size;
    return 0;
}

/* Fallback when the file system has no fallocate: extend with real zero
 * blocks.  Only [cur, size) is written — data below cur must not be
 * touched — so holes punched below cur by someone else stay holes; images
 * this library creates are grown from 0 by resize and have none. */
static int write_zeros(nvt_backend *be, uint64_t cur, uint64_t size)
{
    static const uint8_t zeros[ZERO_CHUNK];

    while (cur < size) {
        size_t n = size - cur < ZERO_CHUNK ? (size_t)(size - cur) : ZERO_CHUNK;
        int r = file_pwrite(be, zeros, n, cur);
        if (r < 0)
            return nvt_error_prefix(-r, "%s: reserving space by writing zeros", be->name);
        cur += n;
    }
    return 0;
}

static int file_resize(nvt_backend *be, uint64_t size)
{
    file_backend *f = to_file(be);
    uint64_t cur;
    int r;

    if (be->read_only)
        return nvt_error(EROFS, "%s: cannot grow to %llu bytes: image is open read-only",
                         be->name, (unsigned long long)size);
    r = file_get_size(be, &cur);
    if (r < 0)
        return r;
    if (f->is_blk) {
        if (size > cur)
            return nvt_error(ENOSPC, "%s: block device holds %llu bytes, %llu needed",
                             be->name, (unsigned long long)cur, (unsigned long long)size);
        return 0;
    }
    if (size <= cur)
        return 0;   /* never shrink */
    if (size > FILE_OFF_MAX)
        return nvt_error(EFBIG, "%s: cannot grow to %llu bytes",
                         be->name, (unsigned long long)size);

    /* From 0, not from cur: this also allocates any hole below cur, so no
     * later write anywhere in the image can meet ENOSPC. */
    do
        r = posix_fallocate(f->fd, 0, (off_t)size);
    while (r == EINTR);
    if (r == EOPNOTSUPP || r == EINVAL) {
        r = write_zeros(be, cur, size);
        if (r < 0)
            return r;
    } else if (r != 0) {
        return nvt_error(r, "%s: cannot reserve %llu bytes (posix_fallocate): %s",
                         be->name, (unsigned long long)size, g_strerror(r));
    }

    /* fsync, not fdatasync: the new size and the allocation must be
     * durable before data is written into them and flushed with
     * fdatasync alone. */
    while (fsync(f->fd) < 0) {
        if (errno == EINTR)
            continue;
        return nvt_error(errno, "%s: fsync after growing to %llu bytes failed: %s",
                         be->name, (unsigned long long)size, g_strerror(errno));
    }
    f->unflushed = false;
    return 0;
}

static int file_lock(nvt_backend *be, bool exclusive)
{
    struct flock fl = {
        .l_type = exclusive ? F_WRLCK : F_RDLCK,
        .l_whence = SEEK_SET,
        .l_start = 0,
        .l_len = 0,       /* the whole file, however it grows */
        .l_pid = 0,       /* required for OFD locks */
    };

    /* A write lock needs a descriptor open for writing. */
    if (exclusive && be->read_only)
        return nvt_error(EROFS, "%s: cannot lock exclusively: image is open read-only",
                         be->name);
    while (fcntl(to_file(be)->fd, F_OFD_SETLK, &fl) < 0) {
        int e = errno;
        if (e == EINTR)
            continue;
        if (e == EAGAIN || e == EACCES)
            return nvt_error(EBUSY, "image %s is in use by another process (locked)",
                             be->name);
        return nvt_error(e, "%s: cannot take the %s lock: %s", be->name,
                         exclusive ? "exclusive" : "shared", g_strerror(e));
    }
    return 0;
}

static void file_close(nvt_backend *be)
{
    file_backend *f = to_file(be);

    /* Durability is flush's business; close only releases fd and lock. */
    if (f->fd >= 0)
        close(f->fd);
    if (f->direct_fd >= 0)
        close(f->direct_fd);
    g_free(be->name);
    g_free(f);
}

static const nvt_backend_ops file_ops = {
    .kind = "file",
    .pread = file_pread,
    .pwrite = file_pwrite,
    .flush = file_flush,
    .get_size = file_get_size,
    .resize = file_resize,
    .lock = file_lock,
    .close = file_close,
    .pwrite_durable = file_pwrite_durable,
};

/* Make a newly created directory entry durable. */
static int sync_parent_dir(const char *path)
{
    char *dir = g_path_get_dirname(path);
    int fd, r = 0;

    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        r = nvt_error(errno, "%s: cannot open directory %s to make the new image "
                      "durable: %s", path, dir, g_strerror(errno));
    } else {
        while (fsync(fd) < 0) {
            if (errno == EINTR)
                continue;
            r = nvt_error(errno, "%s: fsync of directory %s failed: %s",
                          path, dir, g_strerror(errno));
            break;
        }
        close(fd);
    }
    g_free(dir);
    return r;
}

/* Open (or create) @path; *created tells whether this call created it. */
static int open_fd(const char *path, unsigned flags, bool *created)
{
    int mode = (flags & NVT_FILE_READONLY) ? O_RDONLY : O_RDWR;

    *created = false;
    if (!(flags & NVT_FILE_CREATE))
        return open(path, mode | O_CLOEXEC);
    /* Exclusive create first, so we know whether the directory needs a
     * sync; retry if the file appears or vanishes between the attempts. */
    for (int tries = 0; tries < 8; tries++) {
        int fd = open(path, mode | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0) {
            *created = true;
            return fd;
        }
        if (errno != EEXIST)
            return -1;
        fd = open(path, mode | O_CLOEXEC);
        if (fd >= 0 || errno != ENOENT)
            return fd;
    }
    errno = EAGAIN;
    return -1;
}

int nvt_file_backend_open(const char *path, unsigned flags, nvt_backend **out)
{
    const bool ro = flags & NVT_FILE_READONLY;
    file_backend *f;
    struct stat st;
    bool created;
    int fd, r;

    *out = NULL;
    if (!path || !*path)
        return nvt_error(EINVAL, "image path is empty");
    if (flags & ~(unsigned)(NVT_FILE_READONLY | NVT_FILE_CREATE))
        return nvt_error(EINVAL, "%s: unknown open flags 0x%x", path, flags);
    if (ro && (flags & NVT_FILE_CREATE))
        return nvt_error(EINVAL, "%s: cannot create an image read-only", path);

    fd = open_fd(path, flags, &created);
    if (fd < 0)
        return nvt_error(errno, "%s: cannot open%s: %s", path,
                         ro ? " read-only" : "", g_strerror(errno));
    if (fstat(fd, &st) < 0) {
        r = nvt_error(errno, "%s: fstat failed: %s", path, g_strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
        r = nvt_error(S_ISDIR(st.st_mode) ? EISDIR : EINVAL,
                      "%s: not a regular file or block device", path);
        goto fail;
    }
    if (created) {
        r = sync_parent_dir(path);
        if (r < 0)
            goto fail;
    }

    f = g_new0(file_backend, 1);
    f->base.ops = &file_ops;
    f->base.name = g_strdup(path);
    f->base.read_only = ro;
    f->fd = fd;
    f->direct_fd = DIRECT_UNTRIED;
    f->is_blk = S_ISBLK(st.st_mode);
    *out = &f->base;
    return 0;

fail:
    close(fd);
    return r;
}
