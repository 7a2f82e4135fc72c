/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * bench-write.c — what one durable blob write costs, against the floor.
 *
 * What it measures.  For each blob size S it times, in the same process
 * and the same run, two ways of durably replacing S bytes:
 *
 *   baseline  pwrite(S bytes at offset 0) + fdatasync() on a preallocated,
 *             already-written file: one device flush, no atomicity.  This
 *             is the floor for "the new value is on disk".
 *   nvramtdb  nvramtdb_write(db, "bench/blob", buf, S,
 *             NVRAMTDB_WAIT_COMPLETION, NULL, NULL) on a freshly created
 *             file: image: durable, atomic and checksummed.
 *
 * Every operation writes different content (a counter is stamped into the
 * buffer, outside the timed region), so nothing can be skipped as a no-op.
 * Per-operation latency is taken with clock_gettime(CLOCK_MONOTONIC); the
 * table gives median, 99th percentile, operations per second of time spent
 * inside the operations, and, for nvramtdb, backend flushes and commits
 * per write (from nvramtdb_get_info(), read before and after).
 *
 * Why ratios of the same run matter.  Absolute latencies of a sync write
 * depend on the disk, the hypervisor, the filesystem and whatever else the
 * machine is doing; figures from two runs (or two machines) are not
 * comparable.  So the two methods run side by side, in alternating rounds
 * (the order flips every round), so that noise hits both alike, and the
 * result that travels is the ratio nvramtdb / baseline measured here.
 * Use a directory on a real disk (--dir /var/tmp): on tmpfs fdatasync is
 * free and the figures mean nothing.
 *
 * At the end the image is closed, reopened read-only and checked
 * (nvramtdb_check), and the blob read back with nvramtdb_read() must equal
 * the last value written (exit status 1 otherwise), so a broken library
 * cannot make the benchmark silently measure nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/vfs.h>
#endif

#include <glib.h>

#include "nvramtdb.h"

#define BLOB_NAME "bench/blob"
#define ROUNDS 10
#define WARMUP 5

/* Files created by this run, removed at exit unless --keep. */
static char *baseline_path;
static char *image_path;
static gboolean opt_keep;

typedef struct {
    uint64_t *ns;          /* one latency per operation */
    size_t count;
    uint64_t total_ns;
} samples;

typedef struct {
    size_t size;
    samples base;
    samples db;
    uint64_t flushes;      /* nvramtdb backend flushes during measured writes */
    uint64_t commits;      /* nvramtdb commits during measured writes */
} result;

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void record(samples *s, uint64_t ns)
{
    s->ns[s->count++] = ns;
    s->total_ns += ns;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

/* Median in µs of sorted samples. */
static double median_us(const samples *s)
{
    size_t n = s->count;

    if (n == 0)
        return 0;
    if (n % 2)
        return s->ns[n / 2] / 1e3;
    return (s->ns[n / 2 - 1] + s->ns[n / 2]) / 2e3;
}

/* 99th percentile (nearest rank) in µs of sorted samples. */
static double p99_us(const samples *s)
{
    size_t n = s->count, rank;

    if (n == 0)
        return 0;
    rank = (n * 99 + 99) / 100;     /* ceil(0.99 n), at least 1 */
    return s->ns[rank - 1] / 1e3;
}

static double ops_per_s(const samples *s)
{
    return s->total_ns ? s->count * 1e9 / (double)s->total_ns : 0;
}

/* Make the buffer's content unique to operation @seq.  Only fixed
 * positions change, so stamping the same @seq again rebuilds the same
 * content (used to verify the last write). */
static void stamp(uint8_t *buf, size_t size, uint64_t seq)
{
    size_t i;

    for (i = 0; i + sizeof seq <= size; i += 512)
        memcpy(buf + i, &seq, sizeof seq);
    buf[size - 1] = (uint8_t)seq;
}

static void cleanup_files(void)
{
    if (!opt_keep) {
        if (baseline_path)
            unlink(baseline_path);
        if (image_path)
            unlink(image_path);
    }
    g_free(baseline_path);
    g_free(image_path);
    baseline_path = image_path = NULL;
}

static G_GNUC_NORETURN G_GNUC_PRINTF(1, 2) void die(const char *fmt, ...)
{
    va_list ap;

    fputs("bench-write: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    cleanup_files();
    exit(1);
}

static G_GNUC_NORETURN void die_db(const char *what, int rc)
{
    const char *msg = nvramtdb_last_error();

    die("%s: %s%s%s", what, strerror(-rc), msg && *msg ? ": " : "",
        msg ? msg : "");
}

/* The baseline file: preallocated and fully written once, so that the
 * measured fdatasync() never has to convert unwritten extents. */
static int open_baseline(const char *path, uint8_t *buf, size_t size)
{
    int fd, rc;

    unlink(path);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        die("%s: %s", path, strerror(errno));
    rc = posix_fallocate(fd, 0, (off_t)size);
    if (rc != 0)
        die("%s: posix_fallocate: %s", path, strerror(rc));
    stamp(buf, size, 0);
    if (pwrite(fd, buf, size, 0) != (ssize_t)size)
        die("%s: initial write failed", path);
    if (fsync(fd) != 0)
        die("%s: fsync: %s", path, strerror(errno));
    return fd;
}

static nvramtdb *open_image(const char *path, size_t size)
{
    nvramtdb *db = NULL;
    char *uri = g_strdup_printf("file:%s", path);
    int rc;

    unlink(path);
    rc = nvramtdb_open(uri, NVRAMTDB_OPEN_CREATE, &db);
    g_free(uri);
    if (rc < 0)
        die_db("nvramtdb_open", rc);
    rc = nvramtdb_register_blob(db, BLOB_NAME, (uint32_t)size);
    if (rc < 0)
        die_db("nvramtdb_register_blob", rc);
    rc = nvramtdb_start(db, 0);
    if (rc < 0)
        die_db("nvramtdb_start", rc);
    return db;
}

static nvramtdb *reopen_image(const char *path)
{
    nvramtdb *db = NULL;
    char *uri = g_strdup_printf("file:%s", path);
    int rc;

    rc = nvramtdb_open(uri, NVRAMTDB_OPEN_READONLY, &db);
    g_free(uri);
    if (rc < 0)
        die_db("nvramtdb_open (read-only)", rc);
    rc = nvramtdb_start(db, 0);
    if (rc < 0)
        die_db("nvramtdb_start (read-only)", rc);
    return db;
}

static void baseline_op(int fd, const uint8_t *buf, size_t size, samples *s)
{
    uint64_t t0, t1;
    ssize_t n;

    t0 = now_ns();
    n = pwrite(fd, buf, size, 0);
    if (n != (ssize_t)size)
        die("baseline pwrite: %s", n < 0 ? strerror(errno) : "short write");
    if (fdatasync(fd) != 0)
        die("baseline fdatasync: %s", strerror(errno));
    t1 = now_ns();
    if (s)
        record(s, t1 - t0);
}

static void db_op(nvramtdb *db, const uint8_t *buf, size_t size, samples *s)
{
    uint64_t t0, t1;
    int rc;

    t0 = now_ns();
    rc = nvramtdb_write(db, BLOB_NAME, buf, size, NVRAMTDB_WAIT_COMPLETION,
                        NULL, NULL);
    t1 = now_ns();
    if (rc < 0)
        die_db("nvramtdb_write", rc);
    if (s)
        record(s, t1 - t0);
}

static void get_info(nvramtdb *db, nvramtdb_info *info)
{
    int rc = nvramtdb_get_info(db, info);

    if (rc < 0)
        die_db("nvramtdb_get_info", rc);
}

static void run_size(const char *dir, size_t size, size_t iterations, result *r)
{
    uint8_t *buf = g_malloc(size);
    nvramtdb_info before, after;
    uint8_t *back = NULL;
    size_t back_len = 0;
    uint64_t seq = 1, last_db_seq = 0;
    nvramtdb *db;
    size_t round, rounds = iterations < ROUNDS ? iterations : ROUNDS;
    int fd, rc;

    baseline_path = g_strdup_printf("%s/bench-write-%zu.baseline", dir, size);
    image_path = g_strdup_printf("%s/bench-write-%zu.img", dir, size);
    memset(buf, 0xa5, size);
    fd = open_baseline(baseline_path, buf, size);
    db = open_image(image_path, size);

    r->size = size;
    r->base.ns = g_new0(uint64_t, iterations);
    r->db.ns = g_new0(uint64_t, iterations);

    /* Warm-up, not recorded: first touches of the file and of the image. */
    for (size_t i = 0; i < WARMUP; i++) {
        stamp(buf, size, seq++);
        baseline_op(fd, buf, size, NULL);
        stamp(buf, size, seq++);
        db_op(db, buf, size, NULL);
    }

    get_info(db, &before);
    for (round = 0; round < rounds; round++) {
        size_t n = iterations * (round + 1) / rounds - iterations * round / rounds;

        for (int half = 0; half < 2; half++) {
            /* Even rounds: baseline first; odd rounds: nvramtdb first. */
            bool base_now = (half == 0) == (round % 2 == 0);

            for (size_t i = 0; i < n; i++) {
                stamp(buf, size, seq++);
                if (base_now) {
                    baseline_op(fd, buf, size, &r->base);
                } else {
                    db_op(db, buf, size, &r->db);
                    last_db_seq = seq - 1;
                }
            }
        }
    }
    get_info(db, &after);
    r->flushes = after.flushes - before.flushes;
    r->commits = after.commits - before.commits;

    rc = nvramtdb_close(db);
    if (rc < 0)
        die_db("nvramtdb_close", rc);

    /* Reopened from disk, the image must be healthy and the blob must hold
     * the value of the last measured write. */
    db = reopen_image(image_path);
    rc = nvramtdb_check(db, NULL, NULL);
    if (rc < 0)
        die_db("nvramtdb_check", rc);
    if (rc > 0)
        die("nvramtdb_check found %d problem(s) in the image after the benchmark", rc);
    stamp(buf, size, last_db_seq);
    rc = nvramtdb_read(db, BLOB_NAME, &back, &back_len);
    if (rc < 0)
        die_db("nvramtdb_read", rc);
    if (back_len != size || memcmp(back, buf, size) != 0)
        die("nvramtdb_read returned %zu bytes that differ from the last "
            "value written (%zu bytes): the benchmark measured nothing useful",
            back_len, size);
    free(back);
    rc = nvramtdb_close(db);
    if (rc < 0)
        die_db("nvramtdb_close", rc);
    if (close(fd) != 0)
        die("%s: close: %s", baseline_path, strerror(errno));
    cleanup_files();
    g_free(buf);

    qsort(r->base.ns, r->base.count, sizeof *r->base.ns, cmp_u64);
    qsort(r->db.ns, r->db.count, sizeof *r->db.ns, cmp_u64);
}

/* Parse "4096,64K" into sizes; false with a message on error. */
static bool parse_sizes(const char *text, GArray *sizes)
{
    char **parts = g_strsplit(text, ",", -1);
    bool ok = true;

    for (char **p = parts; *p; p++) {
        char *t = g_strstrip(*p);
        uint64_t v;

        if (nvramtdb_parse_size(t, &v) < 0 || v == 0 || v > NVRAMTDB_BLOB_MAX) {
            fprintf(stderr, "bench-write: --sizes: bad size '%s' "
                    "(1 byte to %u bytes, e.g. 4096 or 64K)\n", t,
                    NVRAMTDB_BLOB_MAX);
            ok = false;
            break;
        }
        size_t s = (size_t)v;
        g_array_append_val(sizes, s);
    }
    g_strfreev(parts);
    if (ok && sizes->len == 0) {
        fprintf(stderr, "bench-write: --sizes: empty list\n");
        ok = false;
    }
    return ok;
}

static void warn_if_memory_fs(const char *dir)
{
#ifdef __linux__
    struct statfs sf;

    if (statfs(dir, &sf) == 0 &&
        ((unsigned long)sf.f_type == 0x01021994ul ||     /* tmpfs */
         (unsigned long)sf.f_type == 0x858458f6ul))      /* ramfs */
        fprintf(stderr, "bench-write: warning: %s is in memory (tmpfs/ramfs): "
                "fdatasync costs nothing there and the figures are not "
                "meaningful; use a directory on a disk (--dir /var/tmp)\n", dir);
#else
    (void)dir;
#endif
}

static void print_results(const result *res, size_t n)
{
    printf("\n%-9s %-9s %7s %11s %11s %10s %14s %14s\n", "size", "method",
           "ops", "median_us", "p99_us", "ops/s", "flushes/write",
           "commits/write");
    for (size_t i = 0; i < n; i++) {
        const result *r = &res[i];
        double cnt = r->db.count ? (double)r->db.count : 1;

        printf("%-9zu %-9s %7zu %11.1f %11.1f %10.0f %14.2f %14s\n", r->size,
               "baseline", r->base.count, median_us(&r->base), p99_us(&r->base),
               ops_per_s(&r->base), 1.0, "-");
        printf("%-9zu %-9s %7zu %11.1f %11.1f %10.0f %14.2f %14.2f\n", r->size,
               "nvramtdb", r->db.count, median_us(&r->db), p99_us(&r->db),
               ops_per_s(&r->db), r->flushes / cnt, r->commits / cnt);
    }
    printf("\nratio nvramtdb / baseline (same run; lower is better, 1.00 = the floor)\n");
    printf("%-9s %12s %12s\n", "size", "median", "p99");
    for (size_t i = 0; i < n; i++) {
        const result *r = &res[i];
        double bm = median_us(&r->base), bp = p99_us(&r->base);

        printf("%-9zu %11.2fx %11.2fx\n", r->size,
               bm > 0 ? median_us(&r->db) / bm : 0,
               bp > 0 ? p99_us(&r->db) / bp : 0);
    }
}

int main(int argc, char **argv)
{
    char *opt_dir = NULL, *opt_sizes = NULL;
    gint opt_iterations = 500;
    GOptionEntry entries[] = {
        { "dir", 'd', 0, G_OPTION_ARG_FILENAME, &opt_dir,
          "Directory for the test files, on a real disk (default: .)", "DIR" },
        { "iterations", 'n', 0, G_OPTION_ARG_INT, &opt_iterations,
          "Measured writes per method and size (default: 500)", "N" },
        { "sizes", 's', 0, G_OPTION_ARG_STRING, &opt_sizes,
          "Comma-separated blob sizes (default: 4096,65536)", "LIST" },
        { "keep", 'k', 0, G_OPTION_ARG_NONE, &opt_keep,
          "Keep the files instead of removing them", NULL },
        { NULL, 0, 0, 0, NULL, NULL, NULL }
    };
    GOptionContext *ctx;
    GError *err = NULL;
    GArray *sizes;
    result *res;
    struct stat st;
    const char *dir;

    ctx = g_option_context_new("- time durable blob writes against pwrite+fdatasync");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_option_context_set_description(ctx,
        "For each size, times pwrite+fdatasync on a preallocated file (the floor)\n"
        "and nvramtdb_write(..., NVRAMTDB_WAIT_COMPLETION) on a new file: image,\n"
        "side by side in alternating rounds, and prints median and p99 latency,\n"
        "ops/s, flushes per write and the ratio nvramtdb / baseline.\n");
    if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
        fprintf(stderr, "bench-write: %s (try --help)\n", err->message);
        g_error_free(err);
        g_option_context_free(ctx);
        return 2;
    }
    g_option_context_free(ctx);
    if (argc > 1) {
        fprintf(stderr, "bench-write: unexpected argument '%s' (try --help)\n", argv[1]);
        return 2;
    }
    if (opt_iterations <= 0) {
        fprintf(stderr, "bench-write: --iterations must be positive\n");
        return 2;
    }
    sizes = g_array_new(FALSE, FALSE, sizeof(size_t));
    if (!parse_sizes(opt_sizes ? opt_sizes : "4096,65536", sizes))
        return 2;
    dir = opt_dir ? opt_dir : ".";
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "bench-write: --dir %s: not a directory\n", dir);
        return 2;
    }
    warn_if_memory_fs(dir);

    printf("bench-write: nvramtdb %s, dir %s, %d writes per method and size "
           "in %d alternating rounds (+%d warm-up)\n", nvramtdb_version(), dir,
           opt_iterations, opt_iterations < ROUNDS ? opt_iterations : ROUNDS,
           WARMUP);
    fflush(stdout);

    res = g_new0(result, sizes->len);
    for (guint i = 0; i < sizes->len; i++)
        run_size(dir, g_array_index(sizes, size_t, i), (size_t)opt_iterations,
                 &res[i]);
    print_results(res, sizes->len);

    for (guint i = 0; i < sizes->len; i++) {
        g_free(res[i].base.ns);
        g_free(res[i].db.ns);
    }
    g_free(res);
    g_array_free(sizes, TRUE);
    g_free(opt_dir);
    g_free(opt_sizes);
    return 0;
}
