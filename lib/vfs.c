/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * vfs.c — tdb's file calls, served from a backend region (see vfs.h).
 *
 * The nvt_vfs_* functions below replace libc's open, pread, fstat, ... in
 * tdb's objects only.  Each takes the same arguments and reports errors
 * the same way (-1 and errno) as the call it stands for.  A virtual
 * descriptor is a real descriptor number reserved with eventfd(), so it
 * can never collide with a file the process opens; the table maps it to
 * its vfile and its file position.
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

#include "error.h"
#include "journal.h"
#include "vfs-calls.h"
#include "vfs.h"

#define VFS_PATH_PREFIX "nvramtdb-vfs:"
#define VFS_DEV 0x6e767274u  /* "nvrt": one device number for all vfiles */
/* Journal mode keeps pages read from the image in memory, so that tdb's
 * lookups in a commit cost no system call: up to this many pages. */
#define CLEAN_CACHE_MAX_PAGES 4096u
/* Changed runs of a page closer than this are logged as one extent: an
 * extent's table entry costs 16 bytes. */
#define DELTA_MERGE_GAP 32u
/* A page with more changed runs than this is logged whole. */
#define DELTA_MAX_RUNS 16u

struct nvt_vfile {
    nvt_backend *be;
    uint64_t base;
    uint64_t capacity;
    uint64_t length;
    nvt_vfile_resize_fn *resize;
    void *opaque;
    uint64_t ino;
    char path[48];
    int latched;
    bool refused_growth;
    uint64_t flushes;
    uint64_t writes;
    /* journal mode */
    nvt_journal *journal;
    GHashTable *wal;           /* page -> newest journaled copy, not yet in place */
    GHashTable *clean;         /* page -> copy equal to what is in place (a cache) */
    GHashTable *staged;        /* page -> copy written by the current group */
    uint64_t group_length;     /* length when the group began */
    uint64_t persisted_length; /* length the superblock holds */
    uint64_t checkpoints;
};

typedef struct vfd {
    nvt_vfile *vf;
    uint64_t pos;
} vfd;

static GMutex table_lock;
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

nvt_vfile *nvt_vfile_new(nvt_backend *be, uint64_t base, uint64_t capacity, uint64_t length,
                         nvt_vfile_resize_fn *resize, void *opaque)
{
    nvt_vfile *vf = g_new0(nvt_vfile, 1);
    vf->be = be;
    vf->base = base;
    vf->capacity = capacity;
    vf->length = length;
    vf->resize = resize;
    vf->opaque = opaque;
    g_mutex_lock(&table_lock);
    tables_init_locked();
    vf->ino = next_ino++;
    snprintf(vf->path, sizeof vf->path, VFS_PATH_PREFIX "%llu", (unsigned long long)vf->ino);
    g_hash_table_insert(paths, vf->path, vf);
    g_mutex_unlock(&table_lock);
    return vf;
}

void nvt_vfile_free(nvt_vfile *vf)
{
    if (!vf)
        return;
    g_mutex_lock(&table_lock);
    g_hash_table_remove(paths, vf->path);
    g_mutex_unlock(&table_lock);
    if (vf->staged)
        g_hash_table_destroy(vf->staged);
    if (vf->wal)
        g_hash_table_destroy(vf->wal);
    if (vf->clean)
        g_hash_table_destroy(vf->clean);
    g_free(vf);
}

const char *nvt_vfile_path(const nvt_vfile *vf) { return vf->path; }
uint64_t nvt_vfile_length(const nvt_vfile *vf) { return vf->length; }
uint64_t nvt_vfile_capacity(const nvt_vfile *vf) { return vf->capacity; }
int nvt_vfile_latched_error(const nvt_vfile *vf) { return vf->latched; }
void nvt_vfile_clear_error(nvt_vfile *vf) { vf->latched = 0; }

bool nvt_vfile_take_enospc(nvt_vfile *vf)
{
    bool was = vf->refused_growth;
    vf->refused_growth = false;
    return was;
}
uint64_t nvt_vfile_flushes(const nvt_vfile *vf) { return vf->flushes; }
uint64_t nvt_vfile_writes(const nvt_vfile *vf) { return vf->writes; }

/* ---- helpers ------------------------------------------------------------ */

static vfd *lookup_fd(int fd)
{
    vfd *d = NULL;
    g_mutex_lock(&table_lock);
    if (fds)
        d = g_hash_table_lookup(fds, GINT_TO_POINTER(fd));
    g_mutex_unlock(&table_lock);
    return d;
}

static bool is_vfs_path(const char *path)
{
    return strncmp(path, VFS_PATH_PREFIX, strlen(VFS_PATH_PREFIX)) == 0;
}

static nvt_vfile *lookup_path(const char *path)
{
    nvt_vfile *vf = NULL;
    g_mutex_lock(&table_lock);
    if (paths)
        vf = g_hash_table_lookup(paths, path);
    g_mutex_unlock(&table_lock);
    return vf;
}

/* Remember the first backend error; the caller's commit will see it. */
static void latch(nvt_vfile *vf, int neg_errno)
{
    if (!vf->latched)
        vf->latched = neg_errno;
}

static int fail(int err)
{
    errno = err;
    return -1;
}

/* Set the logical length, persisting it first when it grows. */
static int set_length(nvt_vfile *vf, uint64_t len)
{
    if (len == vf->length)
        return 0;
    if (len > vf->capacity) {
        vf->refused_growth = true;
        return -ENOSPC;
    }
    if (vf->staged) {
        vf->length = len;  /* persisted by the group's commit */
        return 0;
    }
    if (len > vf->length) {
        /* Backends sized for the whole image need nothing; a growable one
         * (memory) must really hold the new bytes, as a file would. */
        uint64_t have;
        int r = nvt_be_get_size(vf->be, &have);
        if (r == 0 && have < vf->base + len)
            r = nvt_be_resize(vf->be, vf->base + len);
        if (r < 0) {
            latch(vf, r);
            return r;
        }
    }
    if (vf->resize) {
        int r = vf->resize(vf->opaque, len);
        if (r < 0) {
            latch(vf, r);
            return r;
        }
        vf->persisted_length = len;
    }
    vf->length = len;
    return 0;
}

/* Read [off, off + len) of the region, staged pages first. */
/* The clean copy of @page, read from the image into the cache if there
 * is room; NULL if it cannot be cached. */
static const uint8_t *cached_page(nvt_vfile *vf, uint64_t page)
{
    uint8_t *p = g_hash_table_lookup(vf->clean, &page);
    if (p || g_hash_table_size(vf->clean) >= CLEAN_CACHE_MAX_PAGES ||
        (page + 1) * NVT_PAGE_SIZE > vf->capacity)
        return p;
    p = g_malloc(NVT_PAGE_SIZE);
    if (nvt_be_pread(vf->be, p, NVT_PAGE_SIZE, vf->base + page * NVT_PAGE_SIZE) < 0) {
        g_free(p);
        return NULL;
    }
    g_hash_table_insert(vf->clean, g_memdup2(&page, sizeof page), p);
    return p;
}

/* Writes that go straight to the image make cached copies stale. */
static void forget_pages(nvt_vfile *vf, uint64_t off, size_t len)
{
    if (!vf->clean || !len)
        return;
    for (uint64_t page = off / NVT_PAGE_SIZE; page <= (off + len - 1) / NVT_PAGE_SIZE; page++)
        g_hash_table_remove(vf->clean, &page);
}

static int region_read(nvt_vfile *vf, uint8_t *buf, size_t len, uint64_t off)
{
    if (!vf->journal)
        return nvt_be_pread(vf->be, buf, len, vf->base + off);
    while (len) {
        uint64_t page = off / NVT_PAGE_SIZE, in = off % NVT_PAGE_SIZE;
        size_t n = (size_t)MIN((uint64_t)len, NVT_PAGE_SIZE - in);
        const uint8_t *p = vf->staged ? g_hash_table_lookup(vf->staged, &page) : NULL;
        if (!p && vf->wal)
            p = g_hash_table_lookup(vf->wal, &page);
        if (!p && vf->clean)
            p = cached_page(vf, page);
        if (p) {
            memcpy(buf, p + in, n);
        } else {
            int r = nvt_be_pread(vf->be, buf, n, vf->base + off);
            if (r < 0)
                return r;
        }
        buf += n;
        off += n;
        len -= n;
    }
    return 0;
}

static ssize_t vf_pread(nvt_vfile *vf, void *buf, size_t len, uint64_t off)
{
    if (off >= vf->length || len == 0)
        return 0;
    if (len > vf->length - off)
        len = (size_t)(vf->length - off);
    int r = region_read(vf, buf, len, off);
    if (r < 0)
        return fail(-r);
    return (ssize_t)len;
}

/* A staged page carries, after its NVT_PAGE_SIZE bytes, the span of it
 * the group wrote: the only bytes that can differ from the version it was
 * copied from, so the only ones group_commit compares. */
typedef struct written_span {
    uint32_t lo, hi;
} written_span;

static written_span *span_of(uint8_t *staged_page)
{
    return (written_span *)(void *)(staged_page + NVT_PAGE_SIZE);
}

/* Copy a write into the staged pages of the current group. */
static int stage_write(nvt_vfile *vf, const uint8_t *buf, size_t len, uint64_t off)
{
    while (len) {
        uint64_t page = off / NVT_PAGE_SIZE, in = off % NVT_PAGE_SIZE;
        size_t n = (size_t)MIN((uint64_t)len, NVT_PAGE_SIZE - in);
        uint8_t *p = g_hash_table_lookup(vf->staged, &page);
        if (!p) {
            const uint8_t *cur = vf->wal ? g_hash_table_lookup(vf->wal, &page) : NULL;
            if (!cur && vf->clean)
                cur = cached_page(vf, page);
            p = g_malloc(NVT_PAGE_SIZE + sizeof(written_span));
            if (cur) {
                memcpy(p, cur, NVT_PAGE_SIZE);
            } else {
                int r = nvt_be_pread(vf->be, p, NVT_PAGE_SIZE, vf->base + page * NVT_PAGE_SIZE);
                if (r < 0) {
                    g_free(p);
                    return r;
                }
            }
            *span_of(p) = (written_span){ .lo = NVT_PAGE_SIZE, .hi = 0 };
            g_hash_table_insert(vf->staged, g_memdup2(&page, sizeof page), p);
        }
        written_span *w = span_of(p);
        w->lo = MIN(w->lo, (uint32_t)in);
        w->hi = MAX(w->hi, (uint32_t)(in + n));
        memcpy(p + in, buf, n);
        buf += n;
        off += n;
        len -= n;
    }
    return 0;
}

static ssize_t vf_pwrite(nvt_vfile *vf, const void *buf, size_t len, uint64_t off)
{
    if (len == 0)
        return 0;
    if (off > vf->capacity || len > vf->capacity - off) {
        vf->refused_growth = true;
        return fail(ENOSPC);
    }
    if (off + len > vf->length) {
        int r = set_length(vf, off + len);
        if (r < 0)
            return fail(-r);
    }
    if (!vf->staged)
        forget_pages(vf, off, len);
    int r = vf->staged ? stage_write(vf, buf, len, off)
                       : nvt_be_pwrite(vf->be, buf, len, vf->base + off);
    if (r < 0) {
        latch(vf, r);
        return fail(-r);
    }
    vf->writes++;
    return (ssize_t)len;
}

static int vf_flush(nvt_vfile *vf)
{
    if (vf->staged)
        return 0;  /* the group's commit flushes */
    int r = nvt_be_flush(vf->be);
    if (r < 0) {
        latch(vf, r);
        return fail(-r);
    }
    vf->flushes++;
    return 0;
}

/* ---- write groups ------------------------------------------------------- */

static int page_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static GHashTable *page_table(void)
{
    return g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, g_free);
}

/* The pages of @table, sorted, and their data. */
static uint32_t sorted_pages(GHashTable *table, uint64_t **pages, const uint8_t ***data)
{
    uint32_t n = g_hash_table_size(table), i = 0;
    GHashTableIter it;
    gpointer k, v;
    *pages = g_new(uint64_t, n ? n : 1);
    *data = g_new(const uint8_t *, n ? n : 1);
    g_hash_table_iter_init(&it, table);
    while (g_hash_table_iter_next(&it, &k, &v))
        (*pages)[i++] = *(uint64_t *)k;
    qsort(*pages, n, sizeof **pages, page_cmp);
    for (i = 0; i < n; i++)
        (*data)[i] = g_hash_table_lookup(table, &(*pages)[i]);
    return n;
}

void nvt_vfile_set_journal(nvt_vfile *vf, nvt_journal *j)
{
    vf->journal = j;
    vf->wal = page_table();
    vf->clean = page_table();
    vf->persisted_length = vf->length;
}

void nvt_vfile_group_begin(nvt_vfile *vf)
{
    g_assert(vf->journal && !vf->staged);
    vf->staged = page_table();
    vf->group_length = vf->length;
}

uint32_t nvt_vfile_group_pages(const nvt_vfile *vf)
{
    return vf->staged ? g_hash_table_size(vf->staged) : 0;
}

void nvt_vfile_group_abort(nvt_vfile *vf)
{
    if (!vf->staged)
        return;
    g_hash_table_destroy(vf->staged);
    vf->staged = NULL;
    vf->length = vf->group_length;
}

int nvt_vfile_checkpoint(nvt_vfile *vf)
{
    if (!vf->journal || vf->staged)
        return 0;
    uint64_t *pages;
    const uint8_t **data;
    uint32_t n = sorted_pages(vf->wal, &pages, &data);
    uint8_t *run = NULL;
    int r = 0;

    /* Each run of consecutive pages in one write. */
    for (uint32_t i = 0; r == 0 && i < n;) {
        uint32_t span = 1;
        while (i + span < n && pages[i + span] == pages[i] + span)
            span++;
        const uint8_t *src = data[i];
        if (span > 1) {
            run = g_realloc(run, (size_t)span * NVT_PAGE_SIZE);
            for (uint32_t m = 0; m < span; m++)
                memcpy(run + (size_t)m * NVT_PAGE_SIZE, data[i + m], NVT_PAGE_SIZE);
            src = run;
        }
        r = nvt_be_pwrite(vf->be, src, (size_t)span * NVT_PAGE_SIZE,
                          vf->base + pages[i] * NVT_PAGE_SIZE);
        vf->writes++;
        i += span;
    }
    g_free(run);
    g_free(pages);
    g_free(data);
    /* The superblock's length follows (its own write is flushed), then
     * the pages are made durable: only then may the ring be reused. */
    if (r == 0 && vf->persisted_length != vf->length && vf->resize) {
        r = vf->resize(vf->opaque, vf->length);
        if (r == 0)
            vf->persisted_length = vf->length;
    }
    if (r == 0 && n) {
        r = nvt_be_flush(vf->be);
        vf->flushes++;
    }
    /* In place and durable: only now may the ring's records be retired
     * (one more flush), so that none of them can start a replay once the
     * new epoch writes over them.  Nothing journaled: nothing to retire. */
    if (r == 0 && n) {
        r = nvt_journal_retire(vf->journal);
        vf->flushes++;
    }
    if (r < 0) {
        latch(vf, r);
        return r;
    }
    /* In place now: the journaled copies become the clean cache. */
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, vf->wal);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        g_hash_table_iter_steal(&it);
        if (g_hash_table_size(vf->clean) < CLEAN_CACHE_MAX_PAGES) {
            g_hash_table_replace(vf->clean, k, v);
        } else {
            g_free(k);
            g_free(v);
        }
    }
    vf->checkpoints++;
    return 0;
}

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t w;
    memcpy(&w, p, sizeof w);
    return w;
}

/* Append to @out the extents in which page @now differs from @before
 * (both NVT_PAGE_SIZE bytes, equal outside @w); false if it is better
 * logged whole.  Skips equal 64-byte blocks, then scans 8-byte words;
 * byte precision only at a run's two ends. */
static bool page_delta(uint64_t page, const uint8_t *now, const uint8_t *before,
                       written_span w, GArray *out)
{
    guint first = out->len;
    uint32_t i = w.lo / 64 * 64, stop = MIN((w.hi + 63) / 64 * 64, NVT_PAGE_SIZE), bytes = 0;
    while (i < stop) {
        if (i % 64 == 0 && memcmp(now + i, before + i, 64) == 0) {
            i += 64;
            continue;
        }
        if (load64(now + i) == load64(before + i)) {
            i += 8;
            continue;
        }
        uint32_t start = i, last = i;  /* words holding the run's ends */
        uint32_t k = i + 8, same = 0;
        for (; k < NVT_PAGE_SIZE && same < DELTA_MERGE_GAP; k += 8) {
            if (load64(now + k) == load64(before + k)) {
                same += 8;
            } else {
                same = 0;
                last = k;
                if (bytes + (k - start) > NVT_PAGE_SIZE / 2)
                    break;  /* rewritten wholesale: no need to find the end */
            }
        }
        while (now[start] == before[start])
            start++;
        uint32_t end = last + 8;
        while (now[end - 1] == before[end - 1])
            end--;
        nvt_journal_extent e = { .page = page, .offset = start, .length = end - start,
                                 .data = now + start };
        g_array_append_val(out, e);
        bytes += e.length;
        if (out->len - first > DELTA_MAX_RUNS || bytes > NVT_PAGE_SIZE / 2) {
            g_array_set_size(out, first);
            return false;
        }
        i = k;
    }
    return true;
}

/* The extents of a group: whole pages for pages not journaled since the
 * last checkpoint (replay starts from the page in place, which a torn
 * checkpoint may have damaged), only the changed bytes for the others. */
static GArray *group_extents(nvt_vfile *vf, const uint64_t *pages, const uint8_t **data,
                             uint32_t n)
{
    GArray *ext = g_array_sized_new(FALSE, FALSE, sizeof(nvt_journal_extent), n);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *before = g_hash_table_lookup(vf->wal, &pages[i]);
        if (before && page_delta(pages[i], data[i], before, *span_of((uint8_t *)data[i]), ext))
            continue;
        nvt_journal_extent whole = { .page = pages[i], .offset = 0, .length = NVT_PAGE_SIZE,
                                     .data = data[i] };
        g_array_append_val(ext, whole);
    }
    return ext;
}

int nvt_vfile_group_commit(nvt_vfile *vf)
{
    GHashTable *staged = vf->staged;
    uint64_t *pages;
    const uint8_t **data;
    uint32_t n = sorted_pages(staged, &pages, &data);
    int r = 0;

    /* Leave group mode first: a checkpoint writes through. */
    vf->staged = NULL;
    uint64_t length = vf->length;
    bool appended = false;
    if (n) {
        if (n > nvt_journal_max_pages(vf->journal))
            r = nvt_error(E2BIG, "commit of %u pages exceeds the journal's %u", n,
                          nvt_journal_max_pages(vf->journal));
        else if (!nvt_journal_fits(vf->journal, n))
            r = nvt_vfile_checkpoint(vf);
        if (r == 0) {
            /* After the checkpoint: it empties the set of journaled pages. */
            GArray *ext = group_extents(vf, pages, data, n);
            appended = ext->len > 0;  /* pages rewritten unchanged: no I/O */
            if (appended)
                r = nvt_journal_append_extents(vf->journal, (nvt_journal_extent *)ext->data,
                                               ext->len, length);
            g_array_free(ext, TRUE);
        }
        if (r == 0 && appended)
            vf->flushes++;
        else if (r != -E2BIG)
            latch(vf, r);
    }
    g_free(pages);
    g_free(data);
    if (r < 0) {
        g_hash_table_destroy(staged);
        vf->length = vf->group_length;
        return r;
    }
    /* Durable: the group's pages become the newest journaled versions. */
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, staged);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        g_hash_table_iter_steal(&it);
        g_hash_table_remove(vf->clean, k);
        g_hash_table_replace(vf->wal, k, v);
    }
    g_hash_table_destroy(staged);
    return 0;
}

uint64_t nvt_vfile_checkpoints(const nvt_vfile *vf)
{
    return vf->checkpoints;
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
    if (flags & O_TRUNC) {
        int r = set_length(vf, 0);
        if (r < 0)
            return fail(-r);
    }
    int fd = eventfd(0, EFD_CLOEXEC);
    if (fd < 0)
        return -1;
    vfd *d = g_new0(vfd, 1);
    d->vf = vf;
    g_mutex_lock(&table_lock);
    g_hash_table_insert(fds, GINT_TO_POINTER(fd), d);
    g_mutex_unlock(&table_lock);
    return fd;
}

int nvt_vfs_close(int fd)
{
    g_mutex_lock(&table_lock);
    if (fds)
        g_hash_table_remove(fds, GINT_TO_POINTER(fd));
    g_mutex_unlock(&table_lock);
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
    case SEEK_END: base = (int64_t)d->vf->length; break;
    default: return fail(EINVAL);
    }
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
    st->st_size = (off_t)d->vf->length;
    st->st_blksize = 4096;
    st->st_blocks = (blkcnt_t)((d->vf->length + 511) / 512);
    return 0;
}

int nvt_vfs_ftruncate(int fd, off_t len)
{
    vfd *d = lookup_fd(fd);
    if (!d)
        return ftruncate(fd, len);
    if (len < 0)
        return fail(EINVAL);
    int r = set_length(d->vf, (uint64_t)len);
    return r < 0 ? fail(-r) : 0;
}

int nvt_vfs_fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);

    vfd *d = lookup_fd(fd);
    if (!d)
        return fcntl(fd, cmd, arg);
    switch (cmd) {
    case F_GETFD:
    case F_SETFD:
    case F_GETFL:
        return fcntl(fd, cmd, arg);
    case F_SETLK:
    case F_SETLKW:
        /* We serialise access ourselves (one writer per image). */
        return 0;
    case F_GETLK:
        ((struct flock *)arg)->l_type = F_UNLCK;
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
    if (end > d->vf->capacity) {
        d->vf->refused_growth = true;
        return ENOSPC;
    }
    if (end > d->vf->length) {
        int r = set_length(d->vf, end);
        if (r < 0)
            return -r;
    }
    return 0;
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
