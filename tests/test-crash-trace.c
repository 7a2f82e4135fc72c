/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * test-crash-trace.c — crash states enumerated from the recorded I/O of
 * the real file backend: a second method for the Durable and Atomic
 * contracts (docs/ARCHITECTURE.md: Contracts, Crash model), in the manner
 * of ALICE and CrashMonkey, and independent of the fault backend.
 *
 * Recording.  This program defines the libc write, flush and resize calls
 * (pwrite, pwritev2, write, fdatasync, fsync, ftruncate, posix_fallocate,
 * fallocate and their 64-bit names) and forwards them with
 * dlsym(RTLD_NEXT); the library is linked in statically, so its calls come
 * here.  A call on a descriptor of the image file (same st_dev and st_ino:
 * the buffered one and the O_DIRECT one alike) is appended to the trace
 * with its offset, bytes and whether it is durable by itself (RWF_DSYNC,
 * O_DSYNC, O_SYNC).  The workload appends markers to the same trace, in
 * order: "request R submitted" (before the call that queues it, under a
 * lock that also covers the queueing, so that marker order is queue order)
 * and "request R acknowledged" (when the waited call returns 0, or in the
 * completion callback).
 *
 * Crash model (docs/ARCHITECTURE.md).  A write is durable once it returned
 * if it was durable by itself, or once a flush that began after it
 * returned has returned.  At a cut after any event of the trace, every
 * write not durable yet (the one in flight included) may have reached the
 * disk whole, not at all, or as any subset of its 512-byte sectors, each
 * possibly garbage (within the write's own bytes, as the fault backend
 * assumes too); writes apply in their order.  Stock tdb commits trust
 * sectors to be written whole, so their sessions use atomic sectors (no
 * garbage), as test-crash does.
 *
 * Enumeration.  For each run of cuts with the same I/O state: each pending
 * write kept or dropped whole (every combination up to 6 pending writes);
 * for the newest pending write, and for every pending write at the last
 * cut before a barrier: each single sector dropped, prefix and suffix
 * tears, one garbage sector (with the rest kept, and with the rest
 * dropped); and random subsets with garbage over several seeds.  Equal
 * images of one I/O state are checked once.  NVT_CRASH_TRACE_LONG=1 tries
 * every sector position and 25 times the random seeds; under valgrind
 * (NVT_VALGRIND set, make check-valgrind) or with NVT_CRASH_TRACE_QUICK=1
 * a smaller sample runs.
 *
 * Checking.  Each crash image must start read-write (on a memory copy, as
 * a restart would), pass nvramtdb_check(), and hold the state after some
 * prefix of the submitted requests that contains every acknowledged one:
 * each blob the exact value of the last request of that prefix that
 * changed it (values are distinct per write and carry their request's
 * number), a batch all or nothing.  The commit queue commits requests in
 * the order it took them, so any other state is a violation: an
 * acknowledged request lost (Durable), or a state no prefix gives — a mixed
 * blob or half a batch (Atomic).
 *
 * A negative control proves the checker can fail: the same enumeration,
 * but with the writes made durable by the latest barrier still treated
 * as pending, must report lost acknowledged requests.
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <glib.h>

#include "crc32c.h"
#include "image.h"
#include "journal.h"
#include "testutil.h"
#include "workload.h"

#define SECTOR 512u

/* ---- the recorder ------------------------------------------------------- */

typedef enum ev_kind {
    EV_WRITE,       /* a write began: pending from now on */
    EV_WRITE_DONE,  /* a write durable by itself returned: durable now */
    EV_FLUSH,       /* a flush returned: writes before .ref are durable */
    EV_RESIZE,      /* the file's size changed (followed by an fsync) */
    EV_SUBMIT,      /* request .req was submitted */
    EV_ACK,         /* request .req was acknowledged */
} ev_kind;

typedef struct event {
    ev_kind kind;
    bool durable;   /* EV_WRITE: durable once it returns */
    bool direct;    /* EV_WRITE: through an O_DIRECT descriptor */
    uint64_t off;   /* EV_WRITE: image offset; EV_RESIZE: the new size */
    size_t len;     /* EV_WRITE: bytes moved (shortened after a short write) */
    uint8_t *data;
    size_t ref;     /* EV_WRITE_DONE: its EV_WRITE; EV_FLUSH: first event not covered */
    uint32_t req;   /* EV_SUBMIT, EV_ACK */
} event;

static struct recorder {
    GMutex lock;
    gint active;
    dev_t dev;
    ino_t ino;
    GArray *events;
    unsigned in_flight;       /* writes begun, not returned */
    unsigned flush_overlaps;  /* flushes begun while a write was in flight */
    unsigned mapped;          /* shared writable mappings of the image */
    unsigned failed_calls;    /* traced calls that failed */
} rec;

static void *real(const char *name)
{
    void *fn = dlsym(RTLD_NEXT, name);
    if (!fn)
        abort();
    return fn;
}

/* The libc function @name, looked up once. */
#define REAL(name) \
    static __typeof__(&name) real_##name; \
    if (!real_##name) \
        real_##name = (__typeof__(&name))real(#name)

static bool traced(int fd)
{
    struct stat st;
    return g_atomic_int_get(&rec.active) && fd >= 0 && fstat(fd, &st) == 0 &&
           st.st_dev == rec.dev && st.st_ino == rec.ino;
}

static size_t append(event e)
{
    g_array_append_val(rec.events, e);
    return rec.events->len - 1;
}

static size_t write_begin(int fd, const struct iovec *iov, int n, off_t off, bool dsync)
{
    int fl = fcntl(fd, F_GETFL);
    event e = { .kind = EV_WRITE, .off = (uint64_t)off,
                .durable = dsync || (fl >= 0 && (fl & (O_DSYNC | O_SYNC))),
                .direct = fl >= 0 && (fl & O_DIRECT) };
    for (int i = 0; i < n; i++)
        e.len += iov[i].iov_len;
    e.data = g_malloc(e.len ? e.len : 1);
    for (size_t i = 0, at = 0; i < (size_t)n; at += iov[i].iov_len, i++)
        memcpy(e.data + at, iov[i].iov_base, iov[i].iov_len);
    g_mutex_lock(&rec.lock);
    size_t idx = append(e);
    rec.in_flight++;
    g_mutex_unlock(&rec.lock);
    return idx;
}

static void write_end(size_t idx, ssize_t r)
{
    g_mutex_lock(&rec.lock);
    event *e = &g_array_index(rec.events, event, idx);
    if (r < 0) {
        e->len = 0;
        rec.failed_calls++;
    } else if ((size_t)r < e->len) {
        e->len = (size_t)r;
    }
    if (e->durable && r > 0)
        append((event){ .kind = EV_WRITE_DONE, .ref = idx });
    rec.in_flight--;
    g_mutex_unlock(&rec.lock);
}

static ssize_t traced_pwritev(ssize_t (*fn)(int, const struct iovec *, int, off_t, int), int fd,
                              const struct iovec *iov, int n, off_t off, int flags)
{
    if (!traced(fd))
        return fn(fd, iov, n, off, flags);
    int saved;
    size_t idx = write_begin(fd, iov, n, off, flags & (RWF_DSYNC | RWF_SYNC));
    ssize_t r = fn(fd, iov, n, off, flags);
    saved = errno;
    write_end(idx, r);
    errno = saved;
    return r;
}

/* The plain calls, expressed as pwritev2 of the same libc. */
static ssize_t via_pwrite(int fd, const struct iovec *iov, int n, off_t off, int flags)
{
    REAL(pwrite64);
    (void)n, (void)flags;
    return real_pwrite64(fd, iov[0].iov_base, iov[0].iov_len, off);
}

static ssize_t via_pwritev(int fd, const struct iovec *iov, int n, off_t off, int flags)
{
    REAL(pwritev64);
    (void)flags;
    return real_pwritev64(fd, iov, n, off);
}

static ssize_t via_pwritev2(int fd, const struct iovec *iov, int n, off_t off, int flags)
{
    REAL(pwritev64v2);
    return real_pwritev64v2(fd, iov, n, off, flags);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
    struct iovec iov = { (void *)buf, len };
    return traced_pwritev(via_pwrite, fd, &iov, 1, off, 0);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off)
{
    return pwrite(fd, buf, len, off);
}

ssize_t pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
    return traced_pwritev(via_pwritev, fd, iov, n, off, 0);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int n, off_t off)
{
    return pwritev(fd, iov, n, off);
}

ssize_t pwritev2(int fd, const struct iovec *iov, int n, off_t off, int flags)
{
    /* Offset -1 means "at the file position": not used on images. */
    if (off == -1 && traced(fd))
        g_atomic_int_inc(&rec.mapped);
    return traced_pwritev(via_pwritev2, fd, iov, n, off, flags);
}

ssize_t pwritev64v2(int fd, const struct iovec *iov, int n, off_t off, int flags)
{
    return pwritev2(fd, iov, n, off, flags);
}

ssize_t write(int fd, const void *buf, size_t len)
{
    REAL(write);
    if (!traced(fd))
        return real_write(fd, buf, len);
    off_t off = lseek(fd, 0, SEEK_CUR);
    struct iovec iov = { (void *)buf, len };
    size_t idx = write_begin(fd, &iov, 1, off, false);
    ssize_t r = real_write(fd, buf, len);
    int saved = errno;
    write_end(idx, r);
    errno = saved;
    return r;
}

static int traced_flush(int (*fn)(int), int fd)
{
    if (!traced(fd))
        return fn(fd);
    g_mutex_lock(&rec.lock);
    size_t begin = rec.events->len;
    rec.flush_overlaps += rec.in_flight > 0;
    g_mutex_unlock(&rec.lock);
    int r = fn(fd), saved = errno;
    g_mutex_lock(&rec.lock);
    if (r == 0)
        append((event){ .kind = EV_FLUSH, .ref = begin });
    else
        rec.failed_calls++;
    g_mutex_unlock(&rec.lock);
    errno = saved;
    return r;
}

int fdatasync(int fd)
{
    REAL(fdatasync);
    return traced_flush(real_fdatasync, fd);
}

int fsync(int fd)
{
    REAL(fsync);
    return traced_flush(real_fsync, fd);
}

/* After a size change: record the new size (made durable by the fsync
 * that follows in the file backend, like the fault backend assumes). */
static void note_size(int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return;
    g_mutex_lock(&rec.lock);
    append((event){ .kind = EV_RESIZE, .off = (uint64_t)st.st_size });
    g_mutex_unlock(&rec.lock);
}

int ftruncate(int fd, off_t len)
{
    REAL(ftruncate64);
    int r = real_ftruncate64(fd, len), saved = errno;
    if (r == 0 && traced(fd))
        note_size(fd);
    errno = saved;
    return r;
}

int ftruncate64(int fd, off_t len)
{
    return ftruncate(fd, len);
}

int posix_fallocate(int fd, off_t off, off_t len)
{
    REAL(posix_fallocate64);
    int r = real_posix_fallocate64(fd, off, len);
    if (r == 0 && traced(fd))
        note_size(fd);
    return r;
}

int posix_fallocate64(int fd, off_t off, off_t len)
{
    return posix_fallocate(fd, off, len);
}

int fallocate(int fd, int mode, off_t off, off_t len)
{
    REAL(fallocate64);
    int r = real_fallocate64(fd, mode, off, len), saved = errno;
    if (r == 0 && traced(fd))
        note_size(fd);
    errno = saved;
    return r;
}

int fallocate64(int fd, int mode, off_t off, off_t len)
{
    return fallocate(fd, mode, off, len);
}

/* A shared writable mapping of the image would write behind the trace's
 * back: count it, and the test fails. */
void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    REAL(mmap64);
    if ((prot & PROT_WRITE) && (flags & MAP_SHARED) && traced(fd))
        g_atomic_int_inc(&rec.mapped);
    return real_mmap64(addr, len, prot, flags, fd, off);
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    return mmap(addr, len, prot, flags, fd, off);
}

static void mark(ev_kind kind, uint32_t req)
{
    g_mutex_lock(&rec.lock);
    append((event){ .kind = kind, .req = req });
    g_mutex_unlock(&rec.lock);
}

/* ---- requests and values ------------------------------------------------ */

#define MAX_CHANGES 4

/* One change of a request: blob @blob gets value @bytes (or none). */
typedef struct change {
    int blob;
    bool present;
    size_t len;
    uint8_t *bytes;
} change;

/* Request 0 is the state before the session: one change per blob. */
typedef struct request {
    char *what;
    uint32_t n;
    change *ch;
} request;

typedef struct session {
    const char *name;
    const tu_blob *blobs;
    size_t n_blobs;
    unsigned flags;         /* open flags: commit mode */
    bool garbage;           /* torn sectors may hold garbage */
    char *dir, *path;
    uint8_t *initial;       /* the image before the session */
    size_t initial_len;
    GPtrArray *requests;    /* request *, by number */
    GMutex submit_lock;     /* marker order = queue order */
    GArray *events;         /* the trace */
    nvramtdb *db;
    gint async_failures;
    gint acks;
} session;

/* A value no other write has: the request's number in its first bytes. */
static uint8_t *value_new(uint32_t req, uint32_t salt, size_t len)
{
    uint8_t *v = g_malloc(len ? len : 1);
    tu_fill(v, len, req * 7919u + salt);
    for (size_t i = 0; i < 4 && i < len; i++)
        v[i] = (uint8_t)(req >> (8 * i));
    return v;
}

static request *request_new(session *s, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static request *request_new(session *s, const char *fmt, ...)
{
    va_list ap;
    request *r = g_new0(request, 1);
    va_start(ap, fmt);
    r->what = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    r->ch = g_new0(change, MAX_CHANGES);
    g_ptr_array_add(s->requests, r);
    return r;
}

static uint32_t request_no(session *s, const request *r)
{
    for (guint i = s->requests->len; i-- > 0;)
        if (g_ptr_array_index(s->requests, i) == r)
            return i;
    g_assert_not_reached();
}

static void request_free(gpointer p)
{
    request *r = p;
    for (uint32_t i = 0; i < r->n; i++)
        g_free(r->ch[i].bytes);
    g_free(r->ch);
    g_free(r->what);
    g_free(r);
}

static const change *add_change(session *s, request *r, int blob, bool present, size_t len)
{
    g_assert_cmpuint(r->n, <, MAX_CHANGES);
    change *c = &r->ch[r->n];
    *c = (change){ .blob = blob, .present = present, .len = present ? len : 0 };
    c->bytes = present ? value_new(request_no(s, r), r->n, len) : NULL;
    r->n++;
    return c;
}

static int blob_index(const session *s, const char *name)
{
    for (size_t b = 0; b < s->n_blobs; b++)
        if (strcmp(s->blobs[b].name, name) == 0)
            return (int)b;
    g_assert_not_reached();
}

/* A waited write (len >= 0) or delete (len < 0) of one blob. */
static void waited(session *s, const char *name, long len)
{
    int b = blob_index(s, name), rc;
    g_mutex_lock(&s->submit_lock);
    request *r = len < 0 ? request_new(s, "delete %s", name)
                         : request_new(s, "write %ld bytes to %s", len, name);
    const change *c = add_change(s, r, b, len >= 0, len < 0 ? 0 : (size_t)len);
    uint32_t no = request_no(s, r);
    g_mutex_unlock(&s->submit_lock);
    mark(EV_SUBMIT, no);
    if (len < 0)
        rc = nvramtdb_delete(s->db, name, NVRAMTDB_WAIT_COMPLETION, NULL, NULL);
    else
        rc = nvramtdb_write(s->db, name, c->bytes, c->len, NVRAMTDB_WAIT_COMPLETION, NULL,
                            NULL);
    if (rc != 0)
        g_error("%s: request %u (%s) failed: %d (%s)", s->name, no, r->what, rc,
                nvramtdb_last_error());
    mark(EV_ACK, no);
}

/* One change of a batch: a write of @len bytes, or a delete (len < 0). */
typedef struct batch_item {
    const char *name;
    long len;
} batch_item;

static void waited_batch(session *s, const batch_item *items, size_t n)
{
    nvramtdb_change changes[MAX_CHANGES];
    GString *what = g_string_new("batch:");
    g_mutex_lock(&s->submit_lock);
    request *r = request_new(s, "batch");
    for (size_t i = 0; i < n; i++) {
        const change *c = add_change(s, r, blob_index(s, items[i].name), items[i].len >= 0,
                                     items[i].len < 0 ? 0 : (size_t)items[i].len);
        changes[i] = (nvramtdb_change){ .struct_size = sizeof(nvramtdb_change),
                                        .name = items[i].name, .data = c->bytes,
                                        .len = c->len, .is_delete = items[i].len < 0 };
        if (items[i].len < 0)
            g_string_append_printf(what, " delete %s;", items[i].name);
        else
            g_string_append_printf(what, " %ld bytes to %s;", items[i].len, items[i].name);
    }
    g_free(r->what);
    r->what = g_string_free(what, FALSE);
    uint32_t no = request_no(s, r);
    g_mutex_unlock(&s->submit_lock);
    mark(EV_SUBMIT, no);
    int rc = nvramtdb_write_batch(s->db, changes, n, NVRAMTDB_WAIT_COMPLETION, NULL, NULL);
    if (rc != 0)
        g_error("%s: request %u (%s) failed: %d (%s)", s->name, no, r->what, rc,
                nvramtdb_last_error());
    mark(EV_ACK, no);
}

typedef struct async_ctx {
    session *s;
    uint32_t req;
} async_ctx;

static void on_async_done(void *opaque, int errcode, bool is_write, uint8_t *data, size_t len)
{
    async_ctx *a = opaque;
    (void)is_write, (void)len;
    free(data);
    if (errcode != 0)
        g_atomic_int_inc(&a->s->async_failures);
    else
        mark(EV_ACK, a->req);
    g_atomic_int_inc(&a->s->acks);
    g_free(a);
}

/* An NVRAMTDB_ASYNC write: queued under the submit lock, so that marker
 * order is the order the writer takes requests in. */
static void async_write(session *s, const char *name, size_t len)
{
    async_ctx *a = g_new0(async_ctx, 1);
    a->s = s;
    g_mutex_lock(&s->submit_lock);
    request *r = request_new(s, "async write of %zu bytes to %s", len, name);
    const change *c = add_change(s, r, blob_index(s, name), true, len);
    a->req = request_no(s, r);
    mark(EV_SUBMIT, a->req);
    int rc = nvramtdb_write(s->db, name, c->bytes, c->len, NVRAMTDB_ASYNC, on_async_done, a);
    g_mutex_unlock(&s->submit_lock);
    if (rc != 0)
        g_error("%s: async request %u refused: %d (%s)", s->name, a->req, rc,
                nvramtdb_last_error());
}

/* ---- sessions ----------------------------------------------------------- */

/* Make the session's image: formatted afresh, or the bytes @initial. */
static void session_begin(session *s, const uint8_t *initial, size_t initial_len)
{
    int rc;
    s->dir = tu_tmpdir();
    s->path = g_build_filename(s->dir, "image", NULL);
    if (initial) {
        g_free(tu_write_file(s->dir, "image", initial, initial_len));
    } else {
        nvramtdb *db = tu_start_uri(s->path, NVRAMTDB_OPEN_CREATE | s->flags, s->blobs,
                                    s->n_blobs, &rc);
        if (!db)
            g_error("formatting %s failed: %d: %s", s->path, rc, nvramtdb_last_error());
        TU_OK(nvramtdb_close(db));
    }
    s->initial = tu_read_file(s->path, &s->initial_len);

    /* Request 0: what each blob holds before (after any journal replay). */
    s->requests = g_ptr_array_new_with_free_func(request_free);
    g_mutex_init(&s->submit_lock);
    request *r0 = request_new(s, "the image before the session");
    r0->ch = g_renew(change, r0->ch, s->n_blobs);
    nvramtdb *db = tu_start(nvt_mem_backend_new(s->initial, s->initial_len), s->flags,
                            s->blobs, s->n_blobs, &rc);
    if (!db)
        g_error("%s: the initial image does not start: %d: %s", s->name, rc,
                nvramtdb_last_error());
    for (size_t b = 0; b < s->n_blobs; b++) {
        uint8_t *data = NULL;
        size_t len = 0;
        rc = nvramtdb_read(db, s->blobs[b].name, &data, &len);
        g_assert_true(rc == 0 || rc == -ENOENT);
        r0->ch[b] = (change){ .blob = (int)b, .present = rc == 0, .len = len,
                              .bytes = g_memdup2(data ? data : (uint8_t *)"", len ? len : 1) };
        free(data);
    }
    r0->n = (uint32_t)s->n_blobs;
    nvramtdb_close(db);

    /* From here on every write to the image is in the trace. */
    struct stat st;
    g_assert_cmpint(stat(s->path, &st), ==, 0);
    g_mutex_lock(&rec.lock);
    rec.dev = st.st_dev;
    rec.ino = st.st_ino;
    rec.events = g_array_new(FALSE, FALSE, sizeof(event));
    rec.in_flight = rec.flush_overlaps = rec.mapped = rec.failed_calls = 0;
    g_mutex_unlock(&rec.lock);
    g_atomic_int_set(&rec.active, 1);
    s->db = tu_start_uri(s->path, s->flags, s->blobs, s->n_blobs, &rc);
    if (!s->db)
        g_error("%s: open failed: %d: %s", s->name, rc, nvramtdb_last_error());
}

/* Close the handle (traced too: its checkpoint), stop recording. */
static void session_end(session *s)
{
    TU_OK(nvramtdb_close(s->db));
    s->db = NULL;
    g_atomic_int_set(&rec.active, 0);
    g_mutex_lock(&rec.lock);
    s->events = rec.events;
    rec.events = NULL;
    g_mutex_unlock(&rec.lock);
    g_assert_cmpint(g_atomic_int_get(&s->async_failures), ==, 0);
    g_assert_cmpuint(rec.failed_calls, ==, 0);
    /* The model needs writes and flushes on the image not to overlap,
     * and no writes it cannot see. */
    g_assert_cmpuint(rec.flush_overlaps, ==, 0);
    g_assert_cmpuint(rec.mapped, ==, 0);
}

static void session_free(session *s)
{
    if (s->events) {
        for (guint i = 0; i < s->events->len; i++)
            g_free(g_array_index(s->events, event, i).data);
        g_array_free(s->events, TRUE);
    }
    g_ptr_array_free(s->requests, TRUE);
    g_mutex_clear(&s->submit_lock);
    tu_rmtree(s->dir);
    g_free(s->dir);
    g_free(s->path);
    g_free(s->initial);
}

/* ---- enumeration -------------------------------------------------------- */

typedef enum category {
    CAT_WHOLE,        /* pending writes kept or dropped whole */
    CAT_SECTOR_DROP,  /* one sector of a write dropped, the rest kept */
    CAT_TEAR_PREFIX,  /* a write's first sectors kept, the rest dropped */
    CAT_TEAR_SUFFIX,  /* a write's first sectors dropped, the rest kept */
    CAT_GARBAGE,      /* one sector of a write garbage, the rest kept or dropped */
    CAT_RANDOM,       /* random sectors of every pending write kept, dropped, garbage */
    N_CATS,
} category;

static const char *const cat_names[N_CATS] = {
    "whole-writes", "sector-dropped", "prefix-tear", "suffix-tear", "garbage-sector", "random",
};

enum { KEEP, DROP, GARBAGE };

typedef enum violation_kind {
    V_OPEN,        /* the image does not start */
    V_CHECK,       /* nvramtdb_check() finds problems */
    V_READ,        /* a blob read fails */
    V_DURABLE,     /* an acknowledged request is lost */
    V_ATOMIC,      /* no prefix of the requests gives this state */
    N_VKINDS,
} violation_kind;

static const char *const vkind_names[N_VKINDS] = {
    "does not start", "check fails", "read fails", "acknowledged request lost",
    "not the state after any prefix (mixed value or half a group)",
};

/* One cut: the requests it allows, [lo, hi] (P = number of requests applied). */
typedef struct cut {
    size_t after;     /* the event it follows (SIZE_MAX: before the first) */
    uint32_t lo, hi;
} cut;

typedef struct checker {
    session *s;
    bool garbage;
    bool long_mode;
    bool quick;                 /* under valgrind: fewer states */
    bool forget_last_barrier;   /* the negative control */
    unsigned seeds;
    uint64_t ring_off, ring_len, tdb_off, tdb_cap;
    GByteArray *base;           /* the durable image */
    GByteArray *work;           /* a crash image being built */
    GArray *pending;            /* event indices of writes not durable yet */
    GArray *recent;             /* control: writes the latest barrier made durable */
    GArray *cuts;               /* the cuts of the current I/O state */
    GHashTable *seen;           /* images of the current I/O state already checked */
    GRand *rand;
    /* figures */
    unsigned long cut_points, io_states, states[N_CATS], distinct[N_CATS];
    unsigned long violations[N_CATS], vkinds[N_VKINDS];
    unsigned long ring_reuse, ring_reuse_states, ring_reuse_violations;
    unsigned reported, show;   /* violations found, and how many to describe */
    GString *report;
    bool in_ring_reuse;         /* the current state has a first record over older ones */
} checker;

static const event *ev(const checker *c, size_t i)
{
    return &g_array_index(c->s->events, event, i);
}

static size_t n_pending(const checker *c)
{
    return c->pending->len;
}

static const event *pending_write(const checker *c, size_t i)
{
    return ev(c, g_array_index(c->pending, size_t, i));
}

/* Sector pieces of a write: its bytes split at 512-byte image boundaries. */
static size_t pieces(const event *e)
{
    if (e->len == 0)
        return 0;
    return (size_t)((e->off + e->len - 1) / SECTOR - e->off / SECTOR + 1);
}

static void piece_range(const event *e, size_t k, uint64_t *from, uint64_t *to)
{
    uint64_t start = e->off / SECTOR * SECTOR + (uint64_t)k * SECTOR;
    *from = MAX(start, e->off);
    *to = MIN(start + SECTOR, e->off + e->len);
}

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void fill_garbage(uint8_t *p, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++) {
        if (i % 8 == 0)
            seed = splitmix(&seed);
        p[i] = (uint8_t)(seed >> (8 * (i % 8)));
    }
}

static void grow(GByteArray *a, uint64_t size)
{
    if (a->len < size) {
        guint old = a->len;
        g_byte_array_set_size(a, (guint)size);
        memset(a->data + old, 0, size - old);
    }
}

static void write_whole(GByteArray *img, const event *e)
{
    grow(img, e->off + e->len);
    memcpy(img->data + e->off, e->data, e->len);
}

/* A choice per piece of each pending write, concatenated. */
typedef struct plan {
    GByteArray *choice;
    size_t *first;   /* index of each pending write's first piece */
    size_t total;
} plan;

static void plan_init(checker *c, plan *p)
{
    p->first = g_new(size_t, n_pending(c) + 1);
    p->total = 0;
    for (size_t i = 0; i < n_pending(c); i++) {
        p->first[i] = p->total;
        p->total += pieces(pending_write(c, i));
    }
    p->first[n_pending(c)] = p->total;
    p->choice = g_byte_array_sized_new((guint)p->total + 1);
    g_byte_array_set_size(p->choice, (guint)p->total);
}

static void plan_set(plan *p, size_t w, uint8_t what)
{
    memset(p->choice->data + p->first[w], what, p->first[w + 1] - p->first[w]);
}

static void plan_fill(checker *c, plan *p, uint8_t what)
{
    for (size_t w = 0; w < n_pending(c); w++)
        plan_set(p, w, what);
}

static void plan_clear(plan *p)
{
    g_byte_array_free(p->choice, TRUE);
    g_free(p->first);
}

/* Where @off lies, for messages. */
static char *where(const checker *c, uint64_t off)
{
    if (c->ring_len && off >= c->ring_off && off < c->ring_off + c->ring_len)
        return g_strdup_printf("journal ring + %" G_GUINT64_FORMAT, off - c->ring_off);
    if (off >= c->tdb_off && off < c->tdb_off + c->tdb_cap)
        return g_strdup_printf("tdb region + %" G_GUINT64_FORMAT, off - c->tdb_off);
    return g_strdup_printf("offset %" G_GUINT64_FORMAT " (superblock area)", off);
}

static char *describe_plan(const checker *c, const plan *p)
{
    GString *g = g_string_new(NULL);
    for (size_t w = 0; w < n_pending(c); w++) {
        const event *e = pending_write(c, w);
        char *at = where(c, e->off);
        g_string_append_printf(g, "\n    write #%zu (%zu bytes at %s%s%s, %zu sectors): ",
                               g_array_index(c->pending, size_t, w), e->len, at,
                               e->direct ? ", O_DIRECT" : "", e->durable ? ", durable" : "",
                               pieces(e));
        g_free(at);
        const uint8_t *ch = p->choice->data + p->first[w];
        size_t n = p->first[w + 1] - p->first[w];
        static const char *const names[] = { "kept", "dropped", "garbage" };
        size_t k = 0;
        while (k < n) {
            size_t j = k;
            while (j < n && ch[j] == ch[k])
                j++;
            if (k == 0 && j == n)
                g_string_append_printf(g, "all %s", names[ch[k]]);
            else
                g_string_append_printf(g, "%s%zu-%zu %s", k ? ", " : "sectors ", k, j - 1,
                                       names[ch[k]]);
            k = j;
        }
    }
    if (!n_pending(c))
        g_string_append(g, " no write pending (the durable image)");
    return g_string_free(g, FALSE);
}

/* Build the crash image of @p in c->work (from c->base); its hash over
 * the pending writes' ranges (elsewhere it equals the durable image). */
static uint64_t build(checker *c, const plan *p, uint64_t seed)
{
    uint32_t h1 = 0, h2 = 0x12345678;
    g_byte_array_set_size(c->work, c->base->len);
    memcpy(c->work->data, c->base->data, c->base->len);
    for (size_t w = 0; w < n_pending(c); w++) {
        const event *e = pending_write(c, w);
        grow(c->work, e->off + e->len);
        for (size_t k = 0; k < pieces(e); k++) {
            uint64_t from, to;
            piece_range(e, k, &from, &to);
            uint8_t ch = p->choice->data[p->first[w] + k];
            if (ch == KEEP)
                memcpy(c->work->data + from, e->data + (from - e->off), to - from);
            else if (ch == GARBAGE)
                fill_garbage(c->work->data + from, to - from,
                             seed * 1000003u + from * 31u + w);
        }
    }
    for (size_t w = 0; w < n_pending(c); w++) {
        const event *e = pending_write(c, w);
        h1 = nvt_crc32c(h1, c->work->data + e->off, e->len);
        h2 = nvt_crc32c(h2 ^ (uint32_t)w, c->work->data + e->off, e->len);
    }
    return (uint64_t)h1 << 32 ^ h2 ^ (uint64_t)c->work->len << 40;
}

/* What one crash image holds. */
typedef struct outcome {
    violation_kind failure;   /* N_VKINDS: it started and read */
    char *message;
    GArray *consistent;       /* gboolean per P in 0..requests: state after P */
    char *held;               /* each blob's value, described */
} outcome;

static void problem(void *opaque, const char *what)
{
    g_string_append_printf(opaque, "\n      - %s", what);
}

static char *describe_held(const session *s, int b, int rc, const uint8_t *data, size_t len)
{
    if (rc < 0 && rc != -ENOENT)
        return g_strdup_printf("read error %d", rc);
    for (guint r = s->requests->len; r-- > 0;) {
        const request *q = g_ptr_array_index(s->requests, r);
        for (uint32_t i = q->n; i-- > 0;) {
            const change *ch = &q->ch[i];
            if (ch->blob == b && ch->present == (rc == 0) &&
                (rc != 0 || (ch->len == len && (len == 0 || memcmp(ch->bytes, data, len) == 0))))
                return g_strdup_printf("%s of request %u", rc == 0 ? "value" : "no value", r);
        }
    }
    return rc == 0 ? g_strdup_printf("%zu bytes that no request wrote", len)
                   : g_strdup("no value");
}

static void verify(checker *c, outcome *o)
{
    session *s = c->s;
    int rc;
    memset(o, 0, sizeof *o);
    o->failure = N_VKINDS;
    nvramtdb *db = tu_start(nvt_mem_backend_new(c->work->data, c->work->len), s->flags,
                            s->blobs, s->n_blobs, &rc);
    if (!db) {
        o->failure = V_OPEN;
        o->message = g_strdup_printf("start failed: %d (%s): %s", rc, g_strerror(-rc),
                                     nvramtdb_last_error());
        return;
    }
    GString *problems = g_string_new(NULL);
    rc = nvramtdb_check(db, problem, problems);
    if (rc != 0) {
        o->failure = V_CHECK;
        o->message = g_strdup_printf("check returned %d:%s", rc, problems->str);
    }
    g_string_free(problems, TRUE);

    size_t nb = s->n_blobs, nreq = s->requests->len;
    /* match[b * nreq + r]: blob b holds what request r gave it. */
    bool *match = g_new0(bool, nb * nreq);
    GString *held = g_string_new(NULL);
    for (size_t b = 0; b < nb && o->failure == N_VKINDS; b++) {
        uint8_t *data = NULL;
        size_t len = 0;
        rc = nvramtdb_read(db, s->blobs[b].name, &data, &len);
        if (rc != 0 && rc != -ENOENT) {
            o->failure = V_READ;
            o->message = g_strdup_printf("read of %s failed: %d (%s): %s", s->blobs[b].name,
                                         rc, g_strerror(-rc), nvramtdb_last_error());
        }
        for (size_t r = 0; r < nreq; r++) {
            const request *q = g_ptr_array_index(s->requests, r);
            for (uint32_t i = 0; i < q->n; i++) {
                const change *ch = &q->ch[i];
                if (ch->blob == (int)b)  /* the last change of b in q counts */
                    match[b * nreq + r] =
                        ch->present ? rc == 0 && len == ch->len &&
                                      (len == 0 || memcmp(ch->bytes, data, len) == 0)
                                    : rc == -ENOENT;
            }
        }
        char *d = describe_held(s, (int)b, rc, data, len);
        g_string_append_printf(held, "%s%s: %s", b ? "; " : "", s->blobs[b].name, d);
        g_free(d);
        free(data);
    }
    nvramtdb_close(db);
    o->held = g_string_free(held, FALSE);
    o->consistent = g_array_sized_new(FALSE, TRUE, sizeof(gboolean), (guint)nreq);
    g_array_set_size(o->consistent, (guint)nreq);
    if (o->failure == N_VKINDS) {
        size_t *cur = g_new0(size_t, nb);   /* all from request 0 */
        for (size_t r = 0; r < nreq; r++) {
            const request *q = g_ptr_array_index(s->requests, r);
            for (uint32_t i = 0; i < q->n; i++)
                cur[q->ch[i].blob] = r;
            gboolean all = TRUE;
            for (size_t b = 0; b < nb && all; b++)
                all = match[b * nreq + cur[b]];
            g_array_index(o->consistent, gboolean, r) = all;
        }
        g_free(cur);
    }
    g_free(match);
}

static void outcome_clear(outcome *o)
{
    g_free(o->message);
    g_free(o->held);
    if (o->consistent)
        g_array_free(o->consistent, TRUE);
}

static char *cut_text(const checker *c, const cut *k)
{
    if (k->after == SIZE_MAX)
        return g_strdup("before the first event");
    const event *e = ev(c, k->after);
    switch (e->kind) {
    case EV_WRITE:
        return g_strdup_printf("after event #%zu (a write began)", k->after);
    case EV_WRITE_DONE:
        return g_strdup_printf("after event #%zu (durable write #%zu returned)", k->after,
                               e->ref);
    case EV_FLUSH:
        return g_strdup_printf("after event #%zu (a flush returned)", k->after);
    case EV_RESIZE:
        return g_strdup_printf("after event #%zu (resize)", k->after);
    case EV_SUBMIT:
        return g_strdup_printf("after event #%zu (request %u submitted)", k->after, e->req);
    default:
        return g_strdup_printf("after event #%zu (request %u acknowledged)", k->after, e->req);
    }
}

static void report(checker *c, category cat, const plan *p, const cut *k, violation_kind vk,
                   const char *detail, const outcome *o)
{
    c->violations[cat]++;
    c->vkinds[vk]++;
    c->ring_reuse_violations += c->in_ring_reuse;
    if (c->reported++ >= c->show)
        return;
    char *ct = cut_text(c, k), *pd = describe_plan(c, p);
    g_string_append_printf(c->report,
                           "\nVIOLATION (%s) in %s, cut %s, state %s: %s: %s\n"
                           "  requests acknowledged up to %u, submitted up to %u; blobs: %s\n"
                           "  pending writes:%s",
                           c->s->name, c->forget_last_barrier ? "control" : "session",
                           ct, cat_names[cat], vkind_names[vk], detail, k->lo, k->hi,
                           o->held ? o->held : "-", pd);
    g_free(ct);
    g_free(pd);
}

/* Check the crash image of @p against every cut of the current I/O state. */
static void try_plan(checker *c, category cat, const plan *p, uint64_t seed)
{
    c->states[cat]++;
    uint64_t h = build(c, p, seed);
    if (!g_hash_table_add(c->seen, g_memdup2(&h, sizeof h)))
        return;
    c->distinct[cat]++;
    outcome o;
    verify(c, &o);
    /* One violation per image: the first cut it breaks. */
    for (guint i = 0; i < c->cuts->len; i++) {
        const cut *k = &g_array_index(c->cuts, cut, i);
        if (o.failure != N_VKINDS) {
            report(c, cat, p, k, o.failure, o.message, &o);
            break;
        }
        bool ok = false, older = false;
        for (uint32_t r = 0; r <= k->hi && !ok; r++) {
            bool cons = g_array_index(o.consistent, gboolean, r);
            ok = cons && r >= k->lo;
            older |= cons && r < k->lo;
        }
        if (!ok) {
            char *d = older ? g_strdup_printf("request %u (%s) was acknowledged but the image "
                                              "holds an older state", k->lo,
                                              ((request *)g_ptr_array_index(
                                                  c->s->requests, k->lo))->what)
                            : g_strdup("no prefix of the submitted requests gives it");
            report(c, cat, p, k, older ? V_DURABLE : V_ATOMIC, d, &o);
            g_free(d);
            break;
        }
    }
    outcome_clear(&o);
}

/* Sector positions to try in a write of @n pieces. */
static GArray *positions(checker *c, size_t n, size_t from)
{
    GArray *a = g_array_new(FALSE, FALSE, sizeof(size_t));
    for (size_t k = from; k < n; k++) {
        /* around each 4096-byte boundary (records and pages start there) */
        size_t in_page = k % (NVT_PAGE_SIZE / SECTOR);
        bool take = c->long_mode || n <= 24 || k < 2 || k + 2 >= n || in_page == 0 ||
                    (!c->quick && (in_page == 1 || in_page == NVT_PAGE_SIZE / SECTOR - 1));
        if (take)
            g_array_append_val(a, k);
    }
    /* and a few others at random */
    for (int i = 0; i < 2 && n > 24 && !c->long_mode && !c->quick; i++) {
        size_t k = from + (size_t)g_rand_int_range(c->rand, 0, (gint32)(n - from));
        g_array_append_val(a, k);
    }
    return a;
}

/* The sector-level cases of pending write @w, the others kept. */
static void sector_cases(checker *c, size_t w)
{
    size_t n = pieces(pending_write(c, w));
    plan p;
    plan_init(c, &p);
    uint8_t *ch = p.choice->data + p.first[w];
    GArray *pos = positions(c, n, 0);
    for (guint i = 0; i < pos->len; i++) {
        size_t k = g_array_index(pos, size_t, i);
        plan_fill(c, &p, KEEP);
        if (n > 1) {
            ch[k] = DROP;
            try_plan(c, CAT_SECTOR_DROP, &p, 0);
        }
        if (k > 0) {
            memset(ch, DROP, n);
            memset(ch, KEEP, k);
            try_plan(c, CAT_TEAR_PREFIX, &p, 0);
            memset(ch, KEEP, n);
            memset(ch, DROP, k);
            try_plan(c, CAT_TEAR_SUFFIX, &p, 0);
        }
        if (c->garbage) {
            memset(ch, KEEP, n);
            ch[k] = GARBAGE;
            try_plan(c, CAT_GARBAGE, &p, k + 1);
            if (n > 1) {
                memset(ch, DROP, n);
                ch[k] = GARBAGE;
                try_plan(c, CAT_GARBAGE, &p, k + 1);
            }
        }
    }
    g_array_free(pos, TRUE);
    plan_clear(&p);
}

/* Whether the durable image holds a journal frame header in the ring at
 * or beyond @from (an older record that a new first record does not cover). */
static bool ring_holds_record_beyond(const checker *c, uint64_t from)
{
    for (uint64_t at = (from + NVT_PAGE_SIZE - 1) / NVT_PAGE_SIZE * NVT_PAGE_SIZE;
         at + NVT_JOURNAL_HEADER_SIZE <= c->ring_len; at += NVT_PAGE_SIZE) {
        const uint8_t *h = c->base->data + c->ring_off + at;
        uint32_t crc = (uint32_t)h[60] | (uint32_t)h[61] << 8 | (uint32_t)h[62] << 16 |
                       (uint32_t)h[63] << 24;
        if (memcmp(h, NVT_JOURNAL_MAGIC, 8) == 0 && nvt_crc32c(0, h, 60) == crc)
            return true;
    }
    return false;
}

/* Every crash image of the current I/O state; @barrier_next: the next
 * I/O event makes pending writes durable (or there is none). */
static void enumerate(checker *c, bool barrier_next)
{
    size_t np = n_pending(c);
    c->io_states++;
    c->in_ring_reuse = false;
    for (size_t w = 0; w < np && c->ring_len; w++) {
        const event *e = pending_write(c, w);
        if (e->durable && e->off == c->ring_off && ring_holds_record_beyond(c, e->len))
            c->in_ring_reuse = true;
    }
    unsigned long before = c->states[CAT_WHOLE] + c->states[CAT_SECTOR_DROP] +
                           c->states[CAT_TEAR_PREFIX] + c->states[CAT_TEAR_SUFFIX] +
                           c->states[CAT_GARBAGE] + c->states[CAT_RANDOM];
    plan p;
    plan_init(c, &p);
    if (np <= 6) {
        for (unsigned m = 0; m < 1u << np; m++) {
            for (size_t w = 0; w < np; w++)
                plan_set(&p, w, (m >> w) & 1 ? DROP : KEEP);
            try_plan(c, CAT_WHOLE, &p, 0);
        }
    } else {
        for (size_t j = 0; j <= np; j++) {        /* the first j kept */
            for (size_t w = 0; w < np; w++)
                plan_set(&p, w, w < j ? KEEP : DROP);
            try_plan(c, CAT_WHOLE, &p, 0);
        }
        for (size_t j = 0; j < np; j++) {         /* one dropped, one kept */
            plan_fill(c, &p, KEEP);
            plan_set(&p, j, DROP);
            try_plan(c, CAT_WHOLE, &p, 0);
            plan_fill(c, &p, DROP);
            plan_set(&p, j, KEEP);
            try_plan(c, CAT_WHOLE, &p, 0);
        }
    }
    if (np) {
        if (barrier_next)
            for (size_t w = 0; w < np; w++)
                sector_cases(c, w);
        else
            sector_cases(c, np - 1);
        for (unsigned seed = 1; seed <= c->seeds; seed++) {
            for (size_t w = 0; w < np; w++) {
                int how = g_rand_int_range(c->rand, 0, 3);
                uint8_t *ch = p.choice->data + p.first[w];
                for (size_t k = 0; k < p.first[w + 1] - p.first[w]; k++)
                    ch[k] = how == 0 ? KEEP : how == 1 ? DROP
                            : (uint8_t)g_rand_int_range(c->rand, 0, c->garbage ? 3 : 2);
            }
            try_plan(c, CAT_RANDOM, &p, 1000 + seed);
        }
    }
    plan_clear(&p);
    if (c->in_ring_reuse)
        c->ring_reuse_states += c->states[CAT_WHOLE] + c->states[CAT_SECTOR_DROP] +
                                c->states[CAT_TEAR_PREFIX] + c->states[CAT_TEAR_SUFFIX] +
                                c->states[CAT_GARBAGE] + c->states[CAT_RANDOM] - before;
    g_hash_table_remove_all(c->seen);
}

/* Move the writes that a barrier covers from pending to durable. */
static void make_durable(checker *c, bool (*covered)(const checker *, size_t, size_t),
                         size_t arg)
{
    if (c->forget_last_barrier) {
        /* The previous barrier's writes become durable only now; this
         * one's stay pending (but are dropped from "recent" next time). */
        for (guint i = 0; i < c->recent->len; i++) {
            size_t idx = g_array_index(c->recent, size_t, i);
            write_whole(c->base, ev(c, idx));
            for (guint j = 0; j < c->pending->len; j++)
                if (g_array_index(c->pending, size_t, j) == idx) {
                    g_array_remove_index(c->pending, j);
                    break;
                }
        }
        g_array_set_size(c->recent, 0);
        for (guint j = 0; j < c->pending->len; j++) {
            size_t idx = g_array_index(c->pending, size_t, j);
            if (covered(c, idx, arg))
                g_array_append_val(c->recent, idx);
        }
        return;
    }
    for (guint j = 0; j < c->pending->len;) {
        size_t idx = g_array_index(c->pending, size_t, j);
        if (covered(c, idx, arg)) {
            write_whole(c->base, ev(c, idx));
            g_array_remove_index(c->pending, j);
        } else {
            j++;
        }
    }
}

static bool covered_by_flush(const checker *c, size_t idx, size_t flush_begin)
{
    (void)c;
    return idx < flush_begin;
}

static bool is_write(const checker *c, size_t idx, size_t write)
{
    (void)c;
    return idx == write;
}

static void checker_init(checker *c, session *s)
{
    memset(c, 0, sizeof *c);
    c->s = s;
    c->garbage = s->garbage;
    c->long_mode = g_getenv("NVT_CRASH_TRACE_LONG") && atoi(g_getenv("NVT_CRASH_TRACE_LONG"));
    /* Under valgrind (make check-valgrind), or in the sanitizers' build
     * (NVT_CRASH_TRACE_QUICK=1), a sample: page boundaries only. */
    const char *quick = g_getenv("NVT_CRASH_TRACE_QUICK");
    c->quick = !c->long_mode && ((g_getenv("NVT_VALGRIND") && *g_getenv("NVT_VALGRIND")) ||
                                 (quick && atoi(quick)));
    c->seeds = c->long_mode ? 400 : c->quick ? 2 : 16;
    const char *shown = g_getenv("NVT_CRASH_TRACE_SHOW");
    c->show = shown ? (unsigned)atoi(shown) : 6;
    c->base = g_byte_array_new();
    g_byte_array_append(c->base, s->initial, (guint)s->initial_len);
    c->work = g_byte_array_new();
    c->pending = g_array_new(FALSE, FALSE, sizeof(size_t));
    c->recent = g_array_new(FALSE, FALSE, sizeof(size_t));
    c->cuts = g_array_new(FALSE, FALSE, sizeof(cut));
    c->seen = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    c->rand = g_rand_new_with_seed(20240909);
    c->report = g_string_new(NULL);
    nvt_superblock sb;
    char why[160];
    g_assert_cmpint(nvt_sb_decode(s->initial, s->initial_len, &sb, why, sizeof why), ==, 0);
    c->ring_off = sb.journal_offset;
    c->ring_len = sb.journal_length;
    c->tdb_off = sb.tdb_offset;
    c->tdb_cap = sb.tdb_capacity;
}

static void checker_clear(checker *c)
{
    g_byte_array_free(c->base, TRUE);
    g_byte_array_free(c->work, TRUE);
    g_array_free(c->pending, TRUE);
    g_array_free(c->recent, TRUE);
    g_array_free(c->cuts, TRUE);
    g_hash_table_destroy(c->seen);
    g_rand_free(c->rand);
    g_string_free(c->report, TRUE);
}

/* Walk the trace: every cut, grouped by I/O state, enumerated and checked. */
static void run_checker(checker *c)
{
    GArray *evs = c->s->events;
    uint32_t lo = 0, hi = 0;
    cut k0 = { SIZE_MAX, 0, 0 };
    g_array_append_val(c->cuts, k0);
    c->cut_points = 1;
    for (size_t i = 0; i < evs->len; i++) {
        const event *e = ev(c, i);
        if (e->kind <= EV_RESIZE) {
            enumerate(c, e->kind == EV_WRITE_DONE || e->kind == EV_FLUSH);
            g_array_set_size(c->cuts, 0);
            switch (e->kind) {
            case EV_WRITE:
                if (e->len)
                    g_array_append_val(c->pending, i);
                break;
            case EV_WRITE_DONE:
                make_durable(c, is_write, e->ref);
                break;
            case EV_FLUSH:
                make_durable(c, covered_by_flush, e->ref);
                break;
            case EV_RESIZE:
                grow(c->base, e->off);
                break;
            default:
                break;
            }
        } else if (e->kind == EV_SUBMIT) {
            hi = MAX(hi, e->req);
        } else {
            lo = MAX(lo, e->req);
        }
        cut k = { i, lo, hi };
        g_array_append_val(c->cuts, k);
        c->cut_points++;
    }
    enumerate(c, true);
    if (!c->forget_last_barrier)
        g_assert_cmpuint(n_pending(c), ==, 0);
}

static unsigned long total(const unsigned long *a, size_t n)
{
    unsigned long t = 0;
    for (size_t i = 0; i < n; i++)
        t += a[i];
    return t;
}

static void print_figures(const checker *c)
{
    GString *g = g_string_new(NULL);
    size_t writes = 0, direct = 0, flushes = 0;
    for (guint i = 0; i < c->s->events->len; i++) {
        const event *e = ev(c, i);
        writes += e->kind == EV_WRITE;
        direct += e->kind == EV_WRITE && e->direct;
        flushes += e->kind == EV_FLUSH;
    }
    g_string_append_printf(g, "%s%s%s: %u events (%zu writes, %zu of them O_DIRECT; %zu flushes; "
                           "%u requests), %lu cut points in %lu I/O states; crash states:",
                           c->s->name, c->forget_last_barrier ? " [control]" : "",
                           c->long_mode ? " [long]" : c->quick ? " [sample]" : "",
                           c->s->events->len, writes, direct, flushes,
                           c->s->requests->len - 1, c->cut_points, c->io_states);
    for (int k = 0; k < N_CATS; k++)
        g_string_append_printf(g, " %s %lu (%lu distinct)%s", cat_names[k], c->states[k],
                               c->distinct[k], k + 1 < N_CATS ? "," : ";");
    g_string_append_printf(g, " total %lu, %lu distinct images checked; %lu violations",
                           total(c->states, N_CATS), total(c->distinct, N_CATS),
                           total(c->violations, N_CATS));
    for (int k = 0; k < N_VKINDS; k++)
        if (c->vkinds[k])
            g_string_append_printf(g, " [%s: %lu]", vkind_names[k], c->vkinds[k]);
    if (c->ring_reuse_states)
        g_string_append_printf(g, "; %lu states (%lu violations) with a first journal frame "
                               "in flight over older records beyond it",
                               c->ring_reuse_states, c->ring_reuse_violations);
    g_test_message("%s", g->str);
    g_string_free(g, TRUE);
}

/* NVT_CRASH_TRACE_DUMP=1: the trace, one event a line, for debugging. */
static void dump_trace(const checker *c)
{
    static const char *const kinds[] = { "write", "durable-write-returned", "flush", "resize",
                                         "submit", "ack" };
    for (guint i = 0; i < c->s->events->len; i++) {
        const event *e = ev(c, i);
        char *at = e->kind == EV_WRITE ? where(c, e->off) : NULL;
        g_test_message("%s #%u %s%s%s%s %zu %s%s", c->s->name, i, kinds[e->kind],
                       e->kind == EV_WRITE ? " of" : "",
                       e->kind == EV_WRITE && e->direct ? " O_DIRECT" : "",
                       e->kind == EV_WRITE && e->durable ? " durable" : "",
                       e->kind == EV_WRITE ? e->len : e->kind >= EV_SUBMIT ? e->req : e->ref,
                       e->kind == EV_WRITE ? "bytes at " : "", at ? at : "");
        g_free(at);
    }
}

/* Enumerate and check a finished session; fail the test on violations. */
static void check_session(session *s, bool expect_ring_reuse)
{
    checker c;
    checker_init(&c, s);
    if (g_getenv("NVT_CRASH_TRACE_DUMP"))
        dump_trace(&c);
    run_checker(&c);
    print_figures(&c);
    if (c.reported) {
        g_test_message("%s%s", c.report->str,
                       c.reported > c.show ? "\n(further violations counted, not shown; "
                                             "NVT_CRASH_TRACE_SHOW=n shows n)" : "");
        g_test_fail();
    }
    if (expect_ring_reuse && !c.ring_reuse_states)
        g_test_fail_printf("%s: the workload never wrote a first journal frame over a "
                           "ring holding older records beyond it", s->name);
    checker_clear(&c);
}

/* ---- workloads ---------------------------------------------------------- */

static const tu_blob journal_blobs[] = {
    { "vm0/big", 60000 },
    { "vm0/mid", 4096 },
    { "vm0/small", 100 },
    { "vm1/t0", 3000 },
    { "vm1/t1", 3000 },
    { "vm1/t2", 3000 },
};
#define N_JOURNAL_BLOBS G_N_ELEMENTS(journal_blobs)

static void session_setup(session *s, const char *name, unsigned flags, bool garbage)
{
    memset(s, 0, sizeof *s);
    s->name = name;
    s->blobs = journal_blobs;
    s->n_blobs = N_JOURNAL_BLOBS;
    s->flags = flags;
    s->garbage = garbage;
}

static void single_writes(session *s)
{
    waited(s, "vm0/small", 5);
    waited(s, "vm0/mid", 4096);
    waited(s, "vm0/big", 59000);
    waited(s, "vm0/big", 12);
    waited(s, "vm0/mid", 2000);
    waited(s, "vm0/small", -1);
    waited(s, "vm0/small", 100);
    waited(s, "vm0/big", -1);
    waited(s, "vm0/big", 30000);
    waited(s, "vm0/mid", 0);
    waited(s, "vm0/mid", -1);
    waited(s, "vm0/big", 60000);
}

static void batches(session *s)
{
    waited(s, "vm0/small", 40);
    const batch_item b1[] = { { "vm0/big", 20000 }, { "vm0/mid", 3000 }, { "vm0/small", 50 } };
    waited_batch(s, b1, G_N_ELEMENTS(b1));
    const batch_item b2[] = { { "vm0/mid", 10 }, { "vm0/small", -1 }, { "vm1/t0", 2500 } };
    waited_batch(s, b2, G_N_ELEMENTS(b2));
    const batch_item b3[] = { { "vm0/big", 59999 }, { "vm0/big", 100 }, { "vm0/mid", 4096 },
                              { "vm1/t0", -1 } };
    waited_batch(s, b3, G_N_ELEMENTS(b3));
    waited(s, "vm0/mid", 7);
}

/* Waited writes, deletes and re-creates at sizes from a few bytes to the
 * maximum, through the journal. */
static void test_single_writes(void)
{
    session s;
    session_setup(&s, "journal/single-writes", 0, true);
    session_begin(&s, NULL, 0);
    single_writes(&s);
    session_end(&s);
    check_session(&s, false);
    session_free(&s);
}

/* Batches changing several blobs (a delete among them, a blob twice) are
 * all or nothing at every cut. */
static void test_batches(void)
{
    session s;
    session_setup(&s, "journal/batches", 0, true);
    session_begin(&s, NULL, 0);
    batches(&s);
    session_end(&s);
    check_session(&s, false);
    session_free(&s);
}

#define ASYNC_THREADS 3
#define ASYNC_WRITES 12

typedef struct writer_arg {
    session *s;
    int t;
} writer_arg;

static gpointer async_writer(gpointer p)
{
    writer_arg *w = p;
    char name[16];
    g_snprintf(name, sizeof name, "vm1/t%d", w->t);
    for (int i = 0; i < ASYNC_WRITES; i++) {
        async_write(w->s, name, (size_t)(100 + (i * 977 + w->t * 331) % 2900));
        /* pauses of about a commit, so that groups of several sizes form */
        g_usleep((gulong)(100 * ((i + w->t) % 4)));
    }
    return NULL;
}

/* Asynchronous writes from several threads, committed in groups, each
 * acknowledged in its completion callback. */
static void test_async_groups(void)
{
    session s;
    session_setup(&s, "journal/async-groups", 0, true);
    session_begin(&s, NULL, 0);
    GThread *th[ASYNC_THREADS];
    writer_arg args[ASYNC_THREADS];
    for (int t = 0; t < ASYNC_THREADS; t++) {
        args[t] = (writer_arg){ &s, t };
        th[t] = g_thread_new("writer", async_writer, &args[t]);
    }
    for (int t = 0; t < ASYNC_THREADS; t++)
        g_thread_join(th[t]);
    TU_OK(nvramtdb_flush(s.db));
    g_assert_cmpint(g_atomic_int_get(&s.acks), ==, ASYNC_THREADS * ASYNC_WRITES);
    uint64_t commits = tu_commits(s.db);
    session_end(&s);
    g_test_message("%s: %d requests in %" G_GUINT64_FORMAT " group commits", s.name,
                   ASYNC_THREADS * ASYNC_WRITES, commits);
    check_session(&s, false);
    session_free(&s);
}

/* Enough large commits to fill the ring twice: checkpoints, then first
 * records of a new epoch larger than the old epoch's first record, over a
 * ring still holding that epoch's later records. */
static void test_checkpoints(void)
{
    session s;
    session_setup(&s, "journal/checkpoints", 0, true);
    session_begin(&s, NULL, 0);
    waited(&s, "vm0/small", 7);   /* the epoch's first record is small */
    for (int i = 0; i < 36; i++) {
        waited(&s, "vm0/big", (long)(40000 + (i * 6841) % 20001));
        if (i % 7 == 3)
            waited(&s, "vm0/mid", (long)(50 + i * 100));
    }
    nvramtdb_info info = { .struct_size = sizeof info };
    TU_OK(nvramtdb_get_info(s.db, &info));
    session_end(&s);
    g_test_message("%s: %" G_GUINT64_FORMAT " commits, %" G_GUINT64_FORMAT " flushes "
                   "(checkpoints included)", s.name, info.commits, info.flushes);
    check_session(&s, true);
    session_free(&s);
}

/* An open that replays a pending journal (the image a crash left after
 * acknowledged commits), then more commits. */
static void test_replay_at_open(void)
{
    session prep;
    int rc;
    session_setup(&prep, "prep", 0, true);
    prep.dir = tu_tmpdir();
    prep.path = g_build_filename(prep.dir, "image", NULL);
    nvramtdb *db = tu_start_uri(prep.path, NVRAMTDB_OPEN_CREATE, journal_blobs,
                                N_JOURNAL_BLOBS, &rc);
    g_assert_nonnull(db);
    uint8_t v[3000];
    static const char *const prep_blobs[] = { "vm0/big", "vm0/mid", "vm1/t0" };
    for (int i = 0; i < 5; i++) {
        tu_fill(v, sizeof v, 900 + (uint32_t)i);
        TU_OK(nvramtdb_write(db, prep_blobs[i % 3], v, 1000 + (size_t)i * 400,
                             NVRAMTDB_WAIT_COMPLETION, NULL, NULL));
    }
    /* What the disk holds now: the records durable, no page in place. */
    size_t len;
    uint8_t *crashed = tu_read_file(prep.path, &len);
    nvramtdb_close(db);
    tu_rmtree(prep.dir);
    g_free(prep.dir);
    g_free(prep.path);

    session s;
    session_setup(&s, "journal/replay-at-open", 0, true);
    session_begin(&s, crashed, len);
    g_free(crashed);
    waited(&s, "vm0/mid", 333);
    const batch_item b[] = { { "vm0/big", 5000 }, { "vm1/t0", -1 } };
    waited_batch(&s, b, G_N_ELEMENTS(b));
    waited(&s, "vm0/big", 100);
    session_end(&s);
    /* The open replayed: writes into the tdb region before the first request. */
    size_t replayed = 0;
    nvt_superblock sb;
    char why[160];
    g_assert_cmpint(nvt_sb_decode(s.initial, s.initial_len, &sb, why, sizeof why), ==, 0);
    for (guint i = 0; i < s.events->len; i++) {
        const event *e = &g_array_index(s.events, event, i);
        if (e->kind == EV_SUBMIT)
            break;
        replayed += e->kind == EV_WRITE && e->off >= sb.tdb_offset &&
                    e->off < sb.tdb_offset + sb.tdb_capacity;
    }
    g_test_message("%s: the open wrote %zu page ranges in place before the first request",
                   s.name, replayed);
    g_assert_cmpuint(replayed, >, 0);
    check_session(&s, false);
    session_free(&s);
}

/* tdb's own transactions (NVRAMTDB_OPEN_STOCK_COMMIT), with atomic
 * sectors: the model stock tdb needs. */
static void test_stock_commit(void)
{
    session s;
    session_setup(&s, "stock-commit/writes-and-batches", NVRAMTDB_OPEN_STOCK_COMMIT, false);
    session_begin(&s, NULL, 0);
    waited(&s, "vm0/small", 5);
    waited(&s, "vm0/big", 59000);
    waited(&s, "vm0/mid", 2000);
    waited(&s, "vm0/small", -1);
    const batch_item b[] = { { "vm0/big", 300 }, { "vm0/mid", 4096 }, { "vm0/small", 77 } };
    waited_batch(&s, b, G_N_ELEMENTS(b));
    waited(&s, "vm0/big", 60000);
    session_end(&s);
    check_session(&s, false);
    session_free(&s);
}

/* The negative control: treating the writes the latest barrier made
 * durable as still pending must make the checker report lost
 * acknowledged requests; the same trace checked correctly passes. */
static void test_control_detects_lost_durability(void)
{
    session s;
    session_setup(&s, "journal/control", 0, true);
    session_begin(&s, NULL, 0);
    waited(&s, "vm0/small", 5);
    waited(&s, "vm0/mid", 4096);
    waited(&s, "vm0/big", 20000);
    session_end(&s);

    checker c;
    checker_init(&c, &s);
    run_checker(&c);
    print_figures(&c);
    g_assert_cmpuint(total(c.violations, N_CATS), ==, 0);
    checker_clear(&c);

    checker_init(&c, &s);
    c.forget_last_barrier = true;
    run_checker(&c);
    print_figures(&c);
    g_test_message("control, first violations found:%s", c.report->str);
    g_assert_cmpuint(c.vkinds[V_DURABLE], >, 0);
    checker_clear(&c);
    session_free(&s);
}

int main(int argc, char **argv)
{
    test_init_keep_going(&argc, argv);
    g_mutex_init(&rec.lock);
    g_test_add_func("/crash-trace/journal/single-writes-and-deletes", test_single_writes);
    g_test_add_func("/crash-trace/journal/batches-all-or-nothing", test_batches);
    g_test_add_func("/crash-trace/journal/async-group-commits-from-threads",
                    test_async_groups);
    g_test_add_func("/crash-trace/journal/checkpoints-reuse-the-ring", test_checkpoints);
    g_test_add_func("/crash-trace/journal/open-replays-a-pending-journal",
                    test_replay_at_open);
    g_test_add_func("/crash-trace/stock-commit/writes-deletes-and-batches", test_stock_commit);
    g_test_add_func("/crash-trace/control/checker-reports-a-lost-acknowledged-write",
                    test_control_detects_lost_durability);
    return run_tests();
}
