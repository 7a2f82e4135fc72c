/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * vfs-calls.h — the libc calls of tdb's objects, as renamed by
 * lib/tdb-redefine.syms, and served by vfs.c.  Each takes the arguments
 * and reports errors (-1 and errno, or an error number for
 * posix_fallocate) like the call it stands for.  Declared here once for
 * vfs.c and for the tests that call them as tdb does.
 */
#ifndef NVT_VFS_CALLS_H
#define NVT_VFS_CALLS_H

#include <sys/stat.h>
#include <sys/types.h>
#include <utime.h>

int nvt_vfs_open(const char *path, int flags, ...);
int nvt_vfs_close(int fd);
ssize_t nvt_vfs_read(int fd, void *buf, size_t len);
ssize_t nvt_vfs_write(int fd, const void *buf, size_t len);
ssize_t nvt_vfs_pread(int fd, void *buf, size_t len, off_t off);
ssize_t nvt_vfs_pwrite(int fd, const void *buf, size_t len, off_t off);
off_t nvt_vfs_lseek(int fd, off_t off, int whence);
int nvt_vfs_fstat(int fd, struct stat *st);
int nvt_vfs_ftruncate(int fd, off_t len);
int nvt_vfs_fcntl(int fd, int cmd, ...);
int nvt_vfs_fdatasync(int fd);
int nvt_vfs_fsync(int fd);
int nvt_vfs_posix_fallocate(int fd, off_t off, off_t len);
void *nvt_vfs_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int nvt_vfs_munmap(void *addr, size_t len);
int nvt_vfs_msync(void *addr, size_t len, int flags);
int nvt_vfs_utime(const char *path, const struct utimbuf *times);
char *nvt_vfs_getenv(const char *name);

#endif /* NVT_VFS_CALLS_H */
