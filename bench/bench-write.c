/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * bench-write.c — what one durable blob write costs, against the floor,
 * for one writer and for concurrent writers.
 *
 * What it measures.  For each blob size S, in the same process and run,
 * six ways of durably replacing S bytes:
 *
 *   floor    pwrite(S bytes) + fdatasync() on a preallocated, already
 *            written file: one device flush, no atomicity, no checksum;
 *   journal  nvramtdb_write(..., NVRAMTDB_WAIT_COMPLETION) on a file:
 *            image with the default commit path (one journal frame and
 *            one flush per group);
 *   stock    the same with NVRAMTDB_OPEN_STOCK_COMMIT (tdb's own
 *            transactions, four flushes per commit);
 *   aes      journal on an encrypted image (AES-256-GCM per value, a
 *            fixed test key): the ratio aes/journal is the cost of
 *            encryption at rest;
 *
 *   nbd      (--nbd) the journal on the same kind of file, served by
 *            qemu-nbd on a UNIX socket: one FUA write per commit;
 *   nbd-delay (--nbd) the same served by nbdkit's file plugin behind its
 *            delay filter (--nbd-delay, 1 ms on every write, a network-
 *            like latency): what group commit buys when a round trip is
 *            expensive;
 *
 * each with 1 writer thread and with --writers threads (8 by default),
 * every thread replacing its own blob (floor: its own S-byte slot of one
 * file).  Every operation writes different content, so nothing can be
 * skipped.  Per-operation latency comes from CLOCK_MONOTONIC; ops/s is
 * operations over the wall-clock time of the phase, so it shows what
 * group commit buys concurrent writers; flushes and commits per write come
 * from nvramtdb_get_info().
 *
 * Why ratios of the same run.  Sync-write latency depends on the disk, the
 * hypervisor and whatever else the machine does; figures of two runs are
 * not comparable.  So all methods run in rounds whose order rotates, so
 * that noise hits them alike, and the results that travel are the ratios
 * printed at the end.  Use a directory on a real disk (--dir /var/tmp).
 *
 * At the end every image is reopened read-only, checked, and each blob
 * must read back as the last value written to it (exit status 1
 * otherwise), so a broken library cannot make the benchmark measure
 * nothing.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/vfs.h>
#endif

#include <glib.h>

#include "nvramtdb.h"

#define ROUNDS 10
#define WARMUP 5
#define MAX_WRITERS 64

typedef enum { FLOOR, JOURNAL, STOCK, AES, NBD, NBD_DELAY } kind;
static const char *const kind_name[] = { "floor", "journal", "stock", "aes", "nbd",
                                         "nbd-dly" };
static int opt_nbd_delay_ms = 1;

typedef struct method {
    kind kind;
    unsigned writers;
    size_t size;
    char *path;
    int fd;                 /* floor */
    nvramtdb *db;           /* journal, stock, aes, nbd */
    GPid server;            /* nbd: qemu-nbd or nbdkit */
    char *uri;              /* the image's URI */
    uint64_t *ns;           /* latencies of every measured operation */
    size_t count;
    uint64_t wall_ns;       /* wall-clock time of the measured phases */
    uint64_t flushes, commits;
    uint64_t last_seq[MAX_WRITERS];
} method;

typedef struct worker {
    method *m;
    unsigned id;
    size_t ops;
    uint64_t first_seq;
    uint64_t *ns;           /* this worker's latencies */
    int error;
} worker;

static gboolean opt_keep;
static GPtrArray *created;  /* paths to remove at exit */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static G_GNUC_NORETURN G_GNUC_PRINTF(1, 2) void die(const char *fmt, ...)
{
    va_list ap;
    fputs("bench-write: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void die_db(const char *what, int rc)
{
    die("%s: %s (%s)", what, strerror(-rc), nvramtdb_last_error());
}

/* Content unique to (writer, seq); stamping the same pair again rebuilds
 * it, which the final read-back check uses. */
static void stamp(uint8_t *buf, size_t size, unsigned writer, uint64_t seq)
{
    uint64_t v = seq << 8 | writer;
    memset(buf, (int)(writer * 37 + 1), size);
    for (size_t i = 0; i + sizeof v <= size; i += 512)
        memcpy(buf + i, &v, sizeof v);
    buf[size - 1] = (uint8_t)seq;
}

/* The key of the aes images (a benchmark, not a secret). */
static int give_key(nvramtdb *db)
{
    static const uint8_t key[32] = "bench-write fixed key, not real";
    nvramtdb_key k = { .struct_size = sizeof k, .type = NVRAMTDB_KEY_RAW, .data = key,
                       .len = sizeof key, .fd = -1 };
    return nvramtdb_set_key(db, &k);
}

static char *blob_name(unsigned writer)
{
    return g_strdup_printf("bench/w%u", writer);
}

/* A server must not outlive the benchmark (die() exits). */
static void die_with_parent(gpointer unused)
{
    (void)unused;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
}

/* Start a server for m->path on a UNIX socket next to it; m->uri names
 * it once it accepts connections. */
static void serve(method *m)
{
    char *sock = g_strdup_printf("%s.sock", m->path);
    char *delay = g_strdup_printf("delay-write=%dms", opt_nbd_delay_ms);
    char *file = g_strdup_printf("file=%s", m->path);
    const char *qemu[] = { "qemu-nbd", "--persistent", "--format", "raw", "--socket", sock,
                           m->path, NULL };
    const char *kit[] = { "nbdkit", "--foreground", "--exit-with-parent", "--unix", sock,
                          "--filter=delay", "file", file, delay, NULL };
    GError *err = NULL;
    unlink(sock);
    g_ptr_array_add(created, g_strdup(sock));
    if (!g_spawn_async(NULL, (char **)(m->kind == NBD ? qemu : kit), NULL,
                       G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD, die_with_parent, NULL,
                       &m->server,
                       &err))
        die("--nbd: cannot start %s: %s", m->kind == NBD ? "qemu-nbd" : "nbdkit",
            err->message);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    g_strlcpy(sa.sun_path, sock, sizeof sa.sun_path);
    for (int i = 0;; i++) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool up = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
        if (fd >= 0)
            close(fd);
        if (up)
            break;
        if (i > 1000 || waitpid(m->server, NULL, WNOHANG) == m->server)
            die("--nbd: the server for %s did not start", m->path);
        g_usleep(10000);
    }
    g_free(m->uri);
    m->uri = g_strdup_printf("nbd+unix:///?socket=%s", sock);
    g_free(sock);
    g_free(delay);
    g_free(file);
}

static void method_open(method *m, const char *dir)
{
    m->path = g_strdup_printf("%s/bench-write-%s-%u-%zu.%s", dir, kind_name[m->kind],
                              m->writers, m->size, m->kind == FLOOR ? "dat" : "img");
    unlink(m->path);
    g_ptr_array_add(created, g_strdup(m->path));
    if (m->kind == FLOOR) {
        size_t total = m->size * m->writers;
        uint8_t *buf = g_malloc(total);
        memset(buf, 0xa5, total);
        m->fd = open(m->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (m->fd < 0)
            die("%s: %s", m->path, strerror(errno));
        int rc = posix_fallocate(m->fd, 0, (off_t)total);
        if (rc != 0)
            die("%s: posix_fallocate: %s", m->path, strerror(rc));
        if (pwrite(m->fd, buf, total, 0) != (ssize_t)total || fsync(m->fd) != 0)
            die("%s: initial write failed", m->path);
        g_free(buf);
        return;
    }
    m->uri = g_strdup_printf("file:%s", m->path);
    unsigned flags = NVRAMTDB_OPEN_CREATE | (m->kind == STOCK ? NVRAMTDB_OPEN_STOCK_COMMIT : 0);
    for (int pass = 0; pass < 2; pass++) {
        int rc = nvramtdb_open(m->uri, flags, &m->db);
        if (rc < 0)
            die_db("nvramtdb_open", rc);
        if (m->kind == AES && (rc = give_key(m->db)) < 0)
            die_db("nvramtdb_set_key", rc);
        for (unsigned w = 0; w < m->writers; w++) {
            char *name = blob_name(w);
            rc = nvramtdb_register_blob(m->db, name, (uint32_t)m->size);
            g_free(name);
            if (rc < 0)
                die_db("nvramtdb_register_blob", rc);
        }
        rc = nvramtdb_start(m->db, 0);
        if (rc < 0)
            die_db("nvramtdb_start", rc);
        if (pass == 1 || (m->kind != NBD && m->kind != NBD_DELAY))
            return;
        /* NBD: the file is formatted; now serve it and open it there. */
        nvramtdb_close(m->db);
        serve(m);
        flags = 0;
    }
}

static int one_write(method *m, unsigned writer, const uint8_t *buf)
{
    if (m->kind == FLOOR) {
        off_t off = (off_t)m->size * writer;
        if (pwrite(m->fd, buf, m->size, off) != (ssize_t)m->size || fdatasync(m->fd) != 0)
            return -errno;
        return 0;
    }
    char *name = blob_name(writer);
    int rc = nvramtdb_write(m->db, name, buf, m->size, NVRAMTDB_WAIT_COMPLETION, NULL, NULL);
    g_free(name);
    return rc;
}

static gpointer worker_main(gpointer opaque)
{
    worker *w = opaque;
    uint8_t *buf = g_malloc(w->m->size);
    for (size_t i = 0; i < w->ops && !w->error; i++) {
        uint64_t seq = w->first_seq + i;
        stamp(buf, w->m->size, w->id, seq);
        uint64_t t0 = now_ns();
        w->error = one_write(w->m, w->id, buf);
        if (w->ns)
            w->ns[i] = now_ns() - t0;
    }
    g_free(buf);
    return NULL;
}

/* Run @ops writes spread over the method's writers; record them unless
 * this is the warm-up. */
static void method_phase(method *m, size_t ops, bool measure)
{
    unsigned n = m->writers;
    worker w[MAX_WRITERS];
    GThread *t[MAX_WRITERS];
    nvramtdb_info before = { .struct_size = sizeof before };
    nvramtdb_info after = { .struct_size = sizeof after };

    if (m->db && measure && nvramtdb_get_info(m->db, &before) < 0)
        die_db("nvramtdb_get_info", -EIO);
    uint64_t t0 = now_ns();
    for (unsigned i = 0; i < n; i++) {
        w[i] = (worker){ .m = m, .id = i, .ops = ops / n + (i < ops % n),
                         .first_seq = m->last_seq[i] + 1 };
        w[i].ns = measure ? g_new(uint64_t, w[i].ops ? w[i].ops : 1) : NULL;
        t[i] = n == 1 ? NULL : g_thread_new("bench-writer", worker_main, &w[i]);
        if (n == 1)
            worker_main(&w[i]);
    }
    for (unsigned i = 0; i < n; i++) {
        if (t[i])
            g_thread_join(t[i]);
        if (w[i].error)
            die("%s with %u writer(s): write failed: %s (%s)", kind_name[m->kind], n,
                strerror(-w[i].error), nvramtdb_last_error());
        if (w[i].ops)
            m->last_seq[i] = w[i].first_seq + w[i].ops - 1;
    }
    uint64_t wall = now_ns() - t0;
    if (!measure)
        return;
    m->wall_ns += wall;
    for (unsigned i = 0; i < n; i++) {
        memcpy(m->ns + m->count, w[i].ns, w[i].ops * sizeof *w[i].ns);
        m->count += w[i].ops;
        g_free(w[i].ns);
    }
    if (m->db) {
        if (nvramtdb_get_info(m->db, &after) < 0)
            die_db("nvramtdb_get_info", -EIO);
        m->flushes += after.flushes - before.flushes;
        m->commits += after.commits - before.commits;
    }
}

/* Reopen read-only: healthy, and every blob holds its last value. */
static void method_verify(method *m)
{
    if (m->kind == FLOOR) {
        close(m->fd);
        return;
    }
    int rc = nvramtdb_close(m->db);
    if (rc < 0)
        die_db("nvramtdb_close", rc);
    rc = nvramtdb_open(m->uri, NVRAMTDB_OPEN_READONLY, &m->db);
    if (rc == 0 && m->kind == AES)
        rc = give_key(m->db);
    if (rc == 0)
        rc = nvramtdb_start(m->db, 0);
    if (rc < 0)
        die_db("reopening the image read-only", rc);
    rc = nvramtdb_check(m->db, NULL, NULL);
    if (rc != 0)
        die("%s: check after the benchmark returned %d", m->path, rc);
    uint8_t *want = g_malloc(m->size);
    for (unsigned w = 0; w < m->writers; w++) {
        char *name = blob_name(w);
        uint8_t *got = NULL;
        size_t len = 0;
        stamp(want, m->size, w, m->last_seq[w]);
        rc = nvramtdb_read(m->db, name, &got, &len);
        if (rc < 0)
            die_db(name, rc);
        if (len != m->size || memcmp(got, want, len) != 0)
            die("%s: %s does not hold the last value written: the benchmark measured "
                "nothing useful", m->path, name);
        free(got);
        g_free(name);
    }
    g_free(want);
    nvramtdb_close(m->db);
    if (m->server) {
        kill(m->server, SIGTERM);
        waitpid(m->server, NULL, 0);
        g_spawn_close_pid(m->server);
        m->server = 0;
    }
}

static double pct_us(const method *m, unsigned pct)
{
    if (m->count == 0)
        return 0;
    size_t rank = (m->count * pct + 99) / 100;
    return m->ns[(rank ? rank : 1) - 1] / 1e3;
}

static double ops_per_s(const method *m)
{
    return m->wall_ns ? m->count * 1e9 / (double)m->wall_ns : 0;
}

static method *find(method *ms, size_t n, size_t size, kind k, unsigned writers)
{
    for (size_t i = 0; i < n; i++)
        if (ms[i].size == size && ms[i].kind == k && ms[i].writers == writers)
            return &ms[i];
    return NULL;
}

static void print_results(method *ms, size_t n, unsigned writers)
{
    printf("\n%-7s %-8s %7s %7s %10s %10s %9s %13s %13s\n", "size", "method", "writers",
           "ops", "median_us", "p99_us", "ops/s", "flushes/write", "commits/write");
    for (size_t i = 0; i < n; i++) {
        method *m = &ms[i];
        double c = m->count ? (double)m->count : 1;
        char fl[16] = "1.00", cm[16] = "-";
        if (m->kind != FLOOR) {
            snprintf(fl, sizeof fl, "%.2f", m->flushes / c);
            snprintf(cm, sizeof cm, "%.2f", m->commits / c);
        }
        printf("%-7zu %-8s %7u %7zu %10.1f %10.1f %9.0f %13s %13s\n", m->size,
               kind_name[m->kind], m->writers, m->count, pct_us(m, 50), pct_us(m, 99),
               ops_per_s(m), fl, cm);
    }
    /* The time between flushes: the phase's wall time over its flushes.
     * With one writer that is a lone flush and what surrounds it; with
     * concurrent writers it shows what a saturated group costs (the
     * linger, the hand-offs, the larger write) against it. */
    printf("\ntime between flushes (wall time / flushes; writers saturate the queue)\n");
    printf("%-7s %-8s %7s %12s %17s %16s\n", "size", "method", "writers", "us/flush",
           "vs 1 writer's", "writes/flush");
    for (size_t i = 0; i < n; i++) {
        method *m = &ms[i];
        method *one = find(ms, n, m->size, m->kind, 1);
        if (m->kind == FLOOR || !m->flushes || !one || !one->flushes)
            continue;
        double gap = m->wall_ns / 1e3 / (double)m->flushes;
        double lone = one->wall_ns / 1e3 / (double)one->flushes;
        printf("%-7zu %-8s %7u %12.1f %16.2fx %16.2f\n", m->size, kind_name[m->kind],
               m->writers, gap, gap / lone, (double)m->count / (double)m->flushes);
    }
    printf("\nratios measured in this run (latency: lower is better; 1.00x = the floor)\n");
    printf("%-7s %-8s %7s %14s %14s %22s\n", "size", "method", "writers", "median/floor",
           "p99/floor", "ops/s vs 1 writer");
    for (size_t i = 0; i < n; i++) {
        method *m = &ms[i];
        method *fl = find(ms, n, m->size, FLOOR, m->writers);
        method *one = find(ms, n, m->size, m->kind, 1);
        if (m->kind == FLOOR && m->writers == 1)
            continue;
        printf("%-7zu %-8s %7u %13.2fx %13.2fx %21.2fx\n", m->size, kind_name[m->kind],
               m->writers, pct_us(m, 50) / pct_us(fl, 50), pct_us(m, 99) / pct_us(fl, 99),
               m->writers > 1 ? ops_per_s(m) / ops_per_s(one) : 1.0);
    }
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        method *m = &ms[i];
        method *plain = find(ms, n, m->size, JOURNAL, m->writers);
        if (m->kind != AES || !plain)
            continue;
        if (!any)
            printf("\nencryption at rest: aes (encrypted) / journal (plain), same run\n"
                   "%-7s %7s %14s %14s %16s\n", "size", "writers", "median ratio", "p99 ratio",
                   "ops/s ratio");
        any = true;
        printf("%-7zu %7u %13.3fx %13.3fx %15.3fx\n", m->size, m->writers,
               pct_us(m, 50) / pct_us(plain, 50), pct_us(m, 99) / pct_us(plain, 99),
               ops_per_s(m) / ops_per_s(plain));
    }
    (void)writers;
}

static bool parse_sizes(const char *text, GArray *sizes)
{
    char **parts = g_strsplit(text, ",", -1);
    bool ok = true;
    for (char **p = parts; *p && ok; p++) {
        uint64_t v;
        if (nvramtdb_parse_size(g_strstrip(*p), &v) < 0 || v == 0 || v > NVRAMTDB_BLOB_MAX) {
            fprintf(stderr, "bench-write: --sizes: bad size '%s'\n", *p);
            ok = false;
        } else {
            size_t s = (size_t)v;
            g_array_append_val(sizes, s);
        }
    }
    g_strfreev(parts);
    return ok && sizes->len;
}

static void warn_if_memory_fs(const char *dir)
{
#ifdef __linux__
    struct statfs sf;
    if (statfs(dir, &sf) == 0 && ((unsigned long)sf.f_type == 0x01021994ul ||
                                  (unsigned long)sf.f_type == 0x858458f6ul))
        fprintf(stderr, "bench-write: warning: %s is in memory: fdatasync costs nothing "
                "there and the figures mean nothing; use --dir /var/tmp\n", dir);
#else
    (void)dir;
#endif
}

int main(int argc, char **argv)
{
    char *opt_dir = NULL, *opt_sizes = NULL;
    gint opt_iterations = 400, opt_writers = 8;
    gboolean opt_no_stock = FALSE, opt_no_aes = FALSE, opt_nbd = FALSE;
    GOptionEntry entries[] = {
        { "dir", 'd', 0, G_OPTION_ARG_FILENAME, &opt_dir,
          "Directory for the files, on a real disk (default: .)", "DIR" },
        { "iterations", 'n', 0, G_OPTION_ARG_INT, &opt_iterations,
          "Measured writes per method and size (default: 400)", "N" },
        { "sizes", 's', 0, G_OPTION_ARG_STRING, &opt_sizes,
          "Comma-separated blob sizes (default: 4096,65536)", "LIST" },
        { "writers", 'w', 0, G_OPTION_ARG_INT, &opt_writers,
          "Concurrent writers of the second set of phases (default: 8)", "N" },
        { "no-stock", 0, 0, G_OPTION_ARG_NONE, &opt_no_stock,
          "Skip the stock four-flush mode", NULL },
        { "no-aes", 0, 0, G_OPTION_ARG_NONE, &opt_no_aes,
          "Skip the encrypted (AES-256-GCM) journal mode", NULL },
        { "nbd", 0, 0, G_OPTION_ARG_NONE, &opt_nbd,
          "Also the journal on NBD: qemu-nbd, and nbdkit with a delay filter", NULL },
        { "nbd-delay", 0, 0, G_OPTION_ARG_INT, &opt_nbd_delay_ms,
          "Milliseconds nbdkit's delay filter adds to every write (default: 1)", "MS" },
        { "keep", 'k', 0, G_OPTION_ARG_NONE, &opt_keep, "Keep the files", NULL },
        { NULL, 0, 0, 0, NULL, NULL, NULL }
    };
    GError *err = NULL;
    GOptionContext *ctx = g_option_context_new("- time durable blob writes against the floor");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_option_context_set_description(ctx,
        "For each size: pwrite+fdatasync (the floor), nvramtdb with the journal, with\n"
        "stock tdb commits and with the journal on an encrypted image, each with 1 and\n"
        "with --writers threads, in rotating rounds; prints latency percentiles, ops/s,\n"
        "flushes per write and ratios (encrypted/plain too).\n"
        "--nbd adds the journal on NBD exports of files in DIR: qemu-nbd, and nbdkit\n"
        "with its delay filter (--nbd-delay ms per write).\n");
    if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
        fprintf(stderr, "bench-write: %s (try --help)\n", err->message);
        return 2;
    }
    g_option_context_free(ctx);
    if (argc > 1 || opt_iterations <= 0 || opt_writers < 1 || opt_writers > MAX_WRITERS) {
        fprintf(stderr, "bench-write: bad arguments (try --help)\n");
        return 2;
    }
    GArray *sizes = g_array_new(FALSE, FALSE, sizeof(size_t));
    if (!parse_sizes(opt_sizes ? opt_sizes : "4096,65536", sizes))
        return 2;
    const char *dir = opt_dir ? opt_dir : ".";
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "bench-write: --dir %s: not a directory\n", dir);
        return 2;
    }
    warn_if_memory_fs(dir);
    created = g_ptr_array_new_with_free_func(g_free);

    unsigned writer_sets[2] = { 1, (unsigned)opt_writers };
    unsigned nsets = opt_writers > 1 ? 2 : 1;
    kind kinds[6];
    unsigned nkinds = 0;
    kinds[nkinds++] = FLOOR;
    kinds[nkinds++] = JOURNAL;
    if (!opt_no_stock)
        kinds[nkinds++] = STOCK;
    if (!opt_no_aes)
        kinds[nkinds++] = AES;
    if (opt_nbd) {
        kinds[nkinds++] = NBD;
        kinds[nkinds++] = NBD_DELAY;
    }
    size_t n = sizes->len * nsets * nkinds;
    method *ms = g_new0(method, n);
    size_t k = 0;
    for (guint s = 0; s < sizes->len; s++)
        for (unsigned ws = 0; ws < nsets; ws++)
            for (unsigned kk = 0; kk < nkinds; kk++) {
                method *m = &ms[k++];
                m->kind = kinds[kk];
                m->writers = writer_sets[ws];
                m->size = g_array_index(sizes, size_t, s);
                m->ns = g_new0(uint64_t, opt_iterations);
            }

    printf("bench-write: nvramtdb %s, dir %s, %d writes per method, %d-writer phases, "
           "%d rotating rounds (+%d warm-up writes per writer)\n", nvramtdb_version(), dir,
           opt_iterations, opt_writers, ROUNDS, WARMUP);
    fflush(stdout);
    for (size_t i = 0; i < n; i++) {
        method_open(&ms[i], dir);
        method_phase(&ms[i], (size_t)WARMUP * ms[i].writers, false);
    }
    for (unsigned round = 0; round < ROUNDS; round++) {
        size_t ops = (size_t)opt_iterations * (round + 1) / ROUNDS -
                     (size_t)opt_iterations * round / ROUNDS;
        for (size_t i = 0; i < n; i++)
            method_phase(&ms[(i + round) % n], ops, true);
    }
    for (size_t i = 0; i < n; i++) {
        method_verify(&ms[i]);
        qsort(ms[i].ns, ms[i].count, sizeof *ms[i].ns, cmp_u64);
    }
    print_results(ms, n, (unsigned)opt_writers);

    if (!opt_keep)
        for (guint i = 0; i < created->len; i++)
            unlink(created->pdata[i]);
    for (size_t i = 0; i < n; i++) {
        g_free(ms[i].ns);
        g_free(ms[i].path);
        g_free(ms[i].uri);
    }
    g_free(ms);
    g_ptr_array_free(created, TRUE);
    g_array_free(sizes, TRUE);
    g_free(opt_dir);
    g_free(opt_sizes);
    return 0;
}
