/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* testutil.c — helpers shared by the GTest programs. */
#include "config.h"

#include <stdarg.h>
#include <stdlib.h>
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

/* The rest of tu_start() and tu_start_uri(), once @db is opened (@r: the
 * open's result; @db is NULL if it failed). */
static nvramtdb *register_and_start(nvramtdb *db, int r, const tu_blob *blobs, size_t n,
                                    int *rc)
{
    if (r == 0)
        r = nvt_test_give_key(db);
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

nvramtdb *tu_start(nvt_backend *be, unsigned flags, const tu_blob *blobs, size_t n, int *rc)
{
    nvramtdb *db = NULL;
    int r = nvt_open_backend(be, flags, &db);
    return register_and_start(db, r, blobs, n, rc);
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
    uint64_t size;
    TU_OK(nvt_be_get_size(be, &size));
    g_assert_cmpuint(size, <=, G_MAXSIZE);
    uint8_t *p = g_malloc(size ? (size_t)size : 1);
    TU_OK(nvt_be_pread(be, p, (size_t)size, 0));
    *len = (size_t)size;
    return p;
}


/* ---- files, errors, isolation -------------------------------------------- */

char *tu_write_file(const char *dir, const char *name, const void *data, size_t len)
{
    GError *err = NULL;
    char *path = g_build_filename(dir, name, NULL);
    g_unlink(path);
    if (!g_file_set_contents(path, data, (gssize)len, &err))
        g_error("cannot write %s: %s", path, err->message);
    g_chmod(path, 0600);
    return path;
}

uint8_t *tu_read_file(const char *path, size_t *len)
{
    GError *err = NULL;
    char *data;
    gsize n;
    if (!g_file_get_contents(path, &data, &n, &err))
        g_error("cannot read %s: %s", path, err->message);
    *len = n;
    return (uint8_t *)data;
}

void tu_assert_file_unchanged_at(const char *file, int line, const char *path,
                                 const void *data, size_t len)
{
    size_t now_len;
    uint8_t *now = tu_read_file(path, &now_len);
    if (now_len != len)
        g_error("%s:%d: %s changed size: %zu bytes, expected %zu", file, line, path, now_len,
                len);
    for (size_t i = 0; i < len; i++)
        if (now[i] != ((const uint8_t *)data)[i])
            g_error("%s:%d: %s was modified: first difference at offset %zu", file, line,
                    path, i);
    g_free(now);
}

nvramtdb *tu_start_uri(const char *uri, unsigned flags, const tu_blob *blobs, size_t n, int *rc)
{
    nvramtdb *db = NULL;
    int r = nvramtdb_open(uri, flags, &db);
    return register_and_start(db, r, blobs, n, rc);
}

long tu_memfind(const uint8_t *hay, size_t len, const void *needle, size_t nlen, size_t *count)
{
    long first = -1;
    size_t n = 0;
    for (size_t i = 0; nlen && i + nlen <= len; i++) {
        if (hay[i] == *(const uint8_t *)needle && memcmp(hay + i, needle, nlen) == 0) {
            if (first < 0)
                first = (long)i;
            n++;
        }
    }
    if (count)
        *count = n;
    return first;
}

void tu_assert_error_at(const char *file, int line, const char *expr, int rc, int expect,
                        const char *msg, ...)
{
    if (rc != expect)
        g_error("%s:%d: %s = %d (%s), expected %d (%s); last error: %s", file, line, expr, rc,
                rc < 0 ? g_strerror(-rc) : "success", expect, g_strerror(-expect), msg);
    if (!msg || !*msg)
        g_error("%s:%d: %s failed with %d but left no error message", file, line, expr, rc);
    char *lower = g_ascii_strdown(msg, -1);
    va_list ap;
    va_start(ap, msg);
    const char *needle;
    while ((needle = va_arg(ap, const char *))) {
        char *n = g_ascii_strdown(needle, -1);
        if (!strstr(lower, n))
            g_error("%s:%d: the message of %s does not mention '%s': %s", file, line, expr,
                    needle, msg);
        g_free(n);
    }
    va_end(ap);
    g_free(lower);
}

typedef struct tu_isolated_case {
    void (*body)(const void *data);
    const void *data;
    unsigned timeout_s;
} tu_isolated_case;

/* valgrind preloads its own libraries into the programs it runs. */
static bool under_valgrind(void)
{
    const char *preload = g_getenv("LD_PRELOAD");
    return preload && strstr(preload, "vgpreload");
}

static void tu_run_isolated(gconstpointer p)
{
    const tu_isolated_case *c = p;
    /* In-process under valgrind: the bodies are what it must check, and a
     * subprocess would run natively (and GLib's child-watch thread shows
     * up as "possibly lost"). */
    if (g_test_subprocess() || g_getenv("TU_NO_FORK") || under_valgrind()) {
        c->body(c->data);
        return;
    }
    g_test_trap_subprocess(NULL, (guint64)c->timeout_s * G_USEC_PER_SEC,
                           G_TEST_SUBPROCESS_INHERIT_STDERR);
    if (!g_test_trap_has_passed()) {
        /* Not an assertion: reported as this test's failure. */
        g_test_message("%s: the test body failed, crashed or ran longer than %u s in its "
                       "subprocess (its messages are above)", g_test_get_path(),
                       c->timeout_s);
        g_test_fail();
    }
}

void tu_add_isolated(const char *path, void (*body)(const void *data), const void *data,
                     unsigned timeout_s)
{
    /* Kept for the life of the program (GTest does not free the data of
     * tests skipped with -s or -x). */
    static GPtrArray *cases;
    if (!cases)
        cases = g_ptr_array_new_with_free_func(g_free);
    tu_isolated_case *c = g_new0(tu_isolated_case, 1);
    c->body = body;
    c->data = data;
    c->timeout_s = timeout_s;
    g_ptr_array_add(cases, c);
    g_test_add_data_func(path, c, tu_run_isolated);
}

/* ---- completion callbacks ----------------------------------------------- */

void tu_on_complete(void *opaque, int errcode, bool is_write, uint8_t *data, size_t len)
{
    tu_completion *c = opaque;
    c->calls++;
    c->errcode = errcode;
    c->is_write = is_write;
    c->len = len;
    free(data);
}

/* ---- the writer thread --------------------------------------------------- */

struct tu_writer_hold {
    GMutex lock;
    GCond cond;
    bool entered;
    bool released;
    int errcode;
    gint refs;       /* the holder and the callback */
};

static void tu_writer_hold_unref(tu_writer_hold *h)
{
    if (g_atomic_int_dec_and_test(&h->refs)) {
        g_mutex_clear(&h->lock);
        g_cond_clear(&h->cond);
        g_free(h);
    }
}

static void tu_writer_hold_cb(void *opaque, int errcode, bool is_write, uint8_t *data,
                              size_t len)
{
    tu_writer_hold *h = opaque;
    (void)is_write;
    (void)len;
    free(data);
    g_mutex_lock(&h->lock);
    h->errcode = errcode;
    h->entered = true;
    g_cond_broadcast(&h->cond);
    while (!h->released)
        g_cond_wait(&h->cond, &h->lock);
    g_mutex_unlock(&h->lock);
    tu_writer_hold_unref(h);
}

tu_writer_hold *tu_writer_hold_new(nvramtdb *db, const char *blob)
{
    tu_writer_hold *h = g_new0(tu_writer_hold, 1);
    g_mutex_init(&h->lock);
    g_cond_init(&h->cond);
    h->refs = 2;
    TU_OK(nvramtdb_write(db, blob, NULL, 0, NVRAMTDB_ASYNC, tu_writer_hold_cb, h));
    g_mutex_lock(&h->lock);
    while (!h->entered)
        g_cond_wait(&h->cond, &h->lock);
    g_mutex_unlock(&h->lock);
    return h;
}

int tu_writer_release(tu_writer_hold *h)
{
    g_mutex_lock(&h->lock);
    int errcode = h->errcode;
    h->released = true;
    g_cond_broadcast(&h->cond);
    g_mutex_unlock(&h->lock);
    tu_writer_hold_unref(h);
    return errcode;
}

nvramtdb_entry tu_entry(nvramtdb *db, const char *name)
{
    nvramtdb_entry *entries = NULL, found;
    size_t count = 0, i;
    TU_OK(nvramtdb_list(db, sizeof(nvramtdb_entry), &entries, &count));
    for (i = 0; i < count; i++)
        if (strcmp(entries[i].name, name) == 0)
            break;
    if (i == count)
        g_error("blob %s is not listed (%zu entries)", name, count);
    found = entries[i];
    free(entries);
    return found;
}

uint64_t tu_commits(nvramtdb *db)
{
    nvramtdb_info info = { .struct_size = sizeof info };
    TU_OK(nvramtdb_get_info(db, &info));
    return info.commits;
}

/* ---- ThreadSanitizer builds (--enable-tsan) ------------------------------ *
 * GLib's GMutex and GCond are built on raw futexes on Linux, which TSan
 * does not see: every access guarded by them would be reported as a race
 * (and real races drowned among those).  In a TSan build the test programs
 * therefore carry their own GMutex and GCond, on pthreads, which TSan
 * understands.  They take precedence over libglib's for every call made
 * from the program (tests and the library linked into it); GLib's calls to
 * itself keep its own implementation, on its own objects (GAsyncQueue,
 * GThreadPool...), whose synchronisation TSan then still cannot see: tests
 * built for TSan hand data between threads with GMutex and GCond only.
 * Nothing here is compiled in other builds. */
#if defined(__SANITIZE_THREAD__)
#include <pthread.h>
#include <time.h>

/* The pthread object behind a GMutex or GCond (@slot: its p), made on
 * first use, as a static one is zeroed and never initialised.  Threads
 * racing to make it publish one; the others destroy theirs. */
static void *tsan_impl(gpointer *slot, size_t size, void (*init)(void *),
                       void (*destroy)(void *))
{
    void *impl = g_atomic_pointer_get(slot);
    if (G_UNLIKELY(!impl)) {
        void *fresh = malloc(size);
        g_assert(fresh);
        init(fresh);
        if (!g_atomic_pointer_compare_and_exchange(slot, NULL, fresh)) {
            destroy(fresh);
            free(fresh);
        }
        impl = g_atomic_pointer_get(slot);
    }
    return impl;
}

/* Destroy and free the object of @slot, if it was ever made. */
static void tsan_clear(gpointer *slot, void (*destroy)(void *))
{
    void *impl = *slot;
    if (impl) {
        destroy(impl);
        free(impl);
        *slot = NULL;
    }
}

static void tsan_mutex_init(void *impl)
{
    pthread_mutex_init(impl, NULL);
}

static void tsan_mutex_destroy(void *impl)
{
    pthread_mutex_destroy(impl);
}

static pthread_mutex_t *tsan_mutex(GMutex *mutex)
{
    return tsan_impl(&mutex->p, sizeof(pthread_mutex_t), tsan_mutex_init, tsan_mutex_destroy);
}

void g_mutex_init(GMutex *mutex)
{
    mutex->p = NULL;
    (void)tsan_mutex(mutex);
}

void g_mutex_clear(GMutex *mutex)
{
    tsan_clear(&mutex->p, tsan_mutex_destroy);
}

void g_mutex_lock(GMutex *mutex)
{
    int r = pthread_mutex_lock(tsan_mutex(mutex));
    if (r)
        g_error("pthread_mutex_lock: %s", g_strerror(r));
}

void g_mutex_unlock(GMutex *mutex)
{
    int r = pthread_mutex_unlock(tsan_mutex(mutex));
    if (r)
        g_error("pthread_mutex_unlock: %s", g_strerror(r));
}

gboolean g_mutex_trylock(GMutex *mutex)
{
    return pthread_mutex_trylock(tsan_mutex(mutex)) == 0;
}

static void tsan_cond_init(void *impl)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);  /* g_get_monotonic_time() */
    pthread_cond_init(impl, &attr);
    pthread_condattr_destroy(&attr);
}

static void tsan_cond_destroy(void *impl)
{
    pthread_cond_destroy(impl);
}

static pthread_cond_t *tsan_cond(GCond *cond)
{
    return tsan_impl(&cond->p, sizeof(pthread_cond_t), tsan_cond_init, tsan_cond_destroy);
}

void g_cond_init(GCond *cond)
{
    cond->p = NULL;
    (void)tsan_cond(cond);
}

void g_cond_clear(GCond *cond)
{
    tsan_clear(&cond->p, tsan_cond_destroy);
}

void g_cond_wait(GCond *cond, GMutex *mutex)
{
    int r = pthread_cond_wait(tsan_cond(cond), tsan_mutex(mutex));
    if (r)
        g_error("pthread_cond_wait: %s", g_strerror(r));
}

gboolean g_cond_wait_until(GCond *cond, GMutex *mutex, gint64 end_time)
{
    struct timespec ts = { .tv_sec = end_time / G_USEC_PER_SEC,
                           .tv_nsec = (end_time % G_USEC_PER_SEC) * 1000 };
    int r = pthread_cond_timedwait(tsan_cond(cond), tsan_mutex(mutex), &ts);
    if (r && r != ETIMEDOUT)
        g_error("pthread_cond_timedwait: %s", g_strerror(r));
    return r == 0;
}

void g_cond_signal(GCond *cond)
{
    pthread_cond_signal(tsan_cond(cond));
}

void g_cond_broadcast(GCond *cond)
{
    pthread_cond_broadcast(tsan_cond(cond));
}
#endif /* __SANITIZE_THREAD__ */
