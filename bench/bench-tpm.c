/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * bench-tpm.c — what an NV-changing TPM command costs through a TPM daemon:
 * nvram-tpmd (durable and atomic) against swtpm 0.7.1's dir backend (not
 * durable) and linear file backend (not atomic).
 *
 * What it measures.  For each server, over one persistent TCP connection
 * with raw TPM 2.0 commands (no framing, no TSS): NV_Increment of an NV
 * counter and NV_Write of 1 KiB to an ordinary index, the data different
 * every time.  Per command: latency from CLOCK_MONOTONIC (send to the last
 * byte of the response), median and 99th percentile; ops/s is commands
 * over the wall-clock time of their phases.  Flushes per command are not
 * visible from outside the server process, so they are counted with
 * strace (fsync, fdatasync, msync, sync_file_range, syncfs, and pwritev2:
 * nvram-tpmd's journal commits are one pwritev2 with RWF_DSYNC, a write
 * and a flush in one call) in separate, untimed runs after the
 * measurements; without strace the column says so.
 *
 * The servers, each started by the benchmark on state in a fresh
 * directory under --dir:
 *   ours        nvram-tpmd on an nvramtdb image (journal: one flush per
 *               state change);
 *   ours-stock  the same with --stock-commit (tdb's own transactions);
 *   swtpm-dir   swtpm socket --tpm2 --tpmstate dir=DIR (temp file and
 *               rename, no fsync);
 *   swtpm-file  swtpm socket --tpm2 --tpmstate backend-uri=file://PATH
 *               (overwrite in place through mmap and msync).
 * Each server and the client are pinned to one CPU (--cpu; the same CPU
 * for all, as a TPM's client and server share one in a VM), so that
 * scheduling noise does not differ between them.
 *
 * Warm-up.  The first commits to a new image or state file are slower
 * (the file system allocates fresh blocks, e.g. while nvramtdb's journal
 * ring is written for the first time): --warmup commands of each kind
 * (200) run unmeasured first, so the figures are the steady state.
 *
 * Why rounds.  Sync-write latency depends on the disk and on whatever
 * else the machine does.  All servers run side by side and are measured
 * in alternating rounds whose order rotates, so that noise hits them
 * alike; the figures that travel are the ratios printed at the end.
 * Use a directory on a real disk (--dir /var/tmp).
 *
 * Memory.  Right after the measured rounds, each server's peak and
 * current resident set (VmHWM, VmRSS of /proc/PID/status) is read.
 *
 * Start-up (--startups N, 5 by default; 0 skips it).  After the
 * measurements each server is stopped (SIGTERM) and started again on its
 * state N times; the figure is the time from fork() to the response of
 * the first command (an NV_Read of the counter, whose value is checked):
 * what a VM's boot waits for.  swtpm's state is the equivalent one (the
 * same commands ran on it).  "ours-replay" is nvram-tpmd killed with
 * SIGKILL after --replay-writes NV_Writes (no clean close: its journal
 * holds every frame since the last checkpoint), then started: an open
 * that replays the journal.
 *
 * At the end each counter is read back and must equal the number of
 * increments sent, and each 1 KiB index must read back as the last data
 * written (exit status 1 otherwise), so that a broken server cannot make
 * the benchmark measure nothing.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#include "tpm2-cmd.h"

#define NV_COUNTER  0x01500020u
#define NV_DATA     0x01500021u
#define DATA_SIZE   1024u           /* MAX_NV_BUFFER_SIZE of libtpms */
#define STRACE_OPS  100

/* TPM 2.0 constants besides those of tpm2-cmd.h (Part 2 of the specification). */
#define TPM_RC_INITIALIZE  0x00000100u
#define TPMA_NV_OWNERWRITE (1u << 1)
#define TPMA_NV_AUTHWRITE  (1u << 2)
#define TPMA_NV_COUNTER    (1u << 4)   /* TPM_NT_COUNTER in bits 4..7 */
#define TPMA_NV_OWNERREAD  (1u << 17)
#define TPMA_NV_AUTHREAD   (1u << 18)
#define TPMA_NV_NO_DA      (1u << 25)

typedef enum { OURS, OURS_STOCK, SWTPM_DIR, SWTPM_FILE, OURS_NBD, NKINDS } kind;
/* The default set: every kind before OURS_NBD (which needs qemu-nbd). */
#define NDEFAULT OURS_NBD
static const char *const kind_name[] = { "ours", "ours-stock", "swtpm-dir", "swtpm-file",
                                         "ours-nbd" };
static const char *const kind_desc[] = {
    "nvram-tpmd, journal commit (durable, atomic)",
    "nvram-tpmd --stock-commit (durable, atomic)",
    "swtpm 0.7.1, dir backend (no fsync)",
    "swtpm 0.7.1, linear file backend (msync, in place)",
    "nvram-tpmd on qemu-nbd over a file in --dir (UNIX socket; one FUA write per commit)",
};

enum { OP_INC, OP_WRITE, NOPS };
static const char *const op_name[] = { "NV_Increment", "NV_Write 1 KiB" };

typedef struct server {
    kind kind;
    pid_t pid;
    pid_t nbd_pid;           /* ours-nbd: qemu-nbd (flushes are counted there) */
    int port;
    int fd;
    char *log;
    uint64_t *ns[NOPS];      /* latencies of the measured commands */
    size_t count[NOPS];
    uint64_t wall[NOPS];
    clockid_t cpu_clock;     /* the server process's CPU clock (all its threads) */
    bool have_cpu;
    uint64_t cpu[NOPS];      /* server CPU time over the measured commands, ns */
    double flushes[NOPS];    /* < 0: unknown */
    uint64_t increments;     /* sent and acknowledged */
    uint64_t writes;
    uint8_t last[DATA_SIZE];
    long hwm_kib, rss_kib;   /* VmHWM, VmRSS under load; < 0: unknown */
    uint64_t *startup_ns;    /* --startups restarts; then the replay ones */
    size_t nstartup;
    uint64_t *replay_ns;
    size_t nreplay;
} server;

static char *opt_dir;
static int opt_rounds = 10;
static int opt_ops = 200;
static int opt_warmup = 200;
static int opt_cpu = -2;      /* -2: choose; -1: no pinning */
static char *opt_tpmd;
static char *opt_swtpm;
static char *opt_servers;
static gboolean opt_no_strace;
static gboolean opt_keep;
static int opt_connect;
static int opt_startups = 5;
static int opt_replay_writes = 2000;

static void G_GNUC_PRINTF(1, 2) G_GNUC_NORETURN die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("bench-tpm: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static int cmp_u64(const void *a, const void *b);

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- talking to a server ------------------------------------------------ */

static int connect_port(int port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        die("socket: %s", g_strerror(errno));
    struct sockaddr_in self;
    socklen_t len = sizeof(self);
    /* Polling a port of the ephemeral range that nothing listens on can
     * connect the socket to itself (TCP simultaneous open), which would
     * also keep the server from binding it. */
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        (getsockname(fd, (struct sockaddr *)&self, &len) == 0 && self.sin_port == sa.sin_port)) {
        close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void io_all(server *s, bool wr, uint8_t *buf, size_t len)
{
    while (len) {
        ssize_t n = wr ? write(s->fd, buf, len) : read(s->fd, buf, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("%s: connection %s: %s", kind_name[s->kind], wr ? "write" : "read",
                n ? g_strerror(errno) : "closed by the server");
        buf += n;
        len -= (size_t)n;
    }
}

/* Send @c, read the response into @resp; returns the response code. */
static uint32_t transact(server *s, tpm2_cmdbuf *c, uint8_t *resp, size_t cap, size_t *len)
{
    uint32_t size;

    io_all(s, true, c->b, c->n);
    io_all(s, false, resp, 10);
    size = tpm2_get32(resp + 2);
    if (size < 10 || size > cap)
        die("%s: bad response size %" PRIu32, kind_name[s->kind], size);
    io_all(s, false, resp + 10, size - 10);
    if (len)
        *len = size;
    return tpm2_get32(resp + 6);
}

static void expect_ok(server *s, tpm2_cmdbuf *c, const char *what)
{
    uint8_t resp[4096];
    uint32_t rc = transact(s, c, resp, sizeof(resp), NULL);

    if (rc != 0)
        die("%s: %s failed: TPM response code 0x%" PRIx32, kind_name[s->kind], what, rc);
}

static void next_data(server *s)
{
    uint64_t x = ++s->writes * 0x9e3779b97f4a7c15ull;

    for (size_t i = 0; i < DATA_SIZE; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(s->last + i, &x, 8);
    }
}

/* One command of @op; returns its latency. */
static uint64_t run_op(server *s, int op)
{
    tpm2_cmdbuf c;
    uint64_t t0;

    if (op == OP_INC) {
        tpm2_cmd_nv_increment(&c, TPM2_RH_OWNER, NV_COUNTER);
    } else {
        next_data(s);
        tpm2_cmd_nv_write(&c, TPM2_RH_OWNER, NV_DATA, s->last, DATA_SIZE, 0);
    }
    t0 = now_ns();
    expect_ok(s, &c, op_name[op]);
    if (op == OP_INC)
        s->increments++;
    return now_ns() - t0;
}

/* The server's CPU time so far (user + system, every thread), in ns: the
 * task-clock that perf stat reports, read through the process's CPU clock. */
static uint64_t server_cpu_ns(server *s)
{
    struct timespec ts;

    if (!s->have_cpu || clock_gettime(s->cpu_clock, &ts) < 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- starting and stopping servers -------------------------------------- */

static bool port_free(int port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;

    if (fd >= 0)
        close(fd);
    return ok;
}

/* A pair of free ports (data, control). */
static int pick_ports(void)
{
    static int next;

    if (!next)
        next = 20000 + (int)(getpid() % 4000) * 2;
    /* Below Linux's ephemeral range (32768-60999): a port there can be
     * taken as the source port of any outgoing connection, including the
     * benchmark's own polling, between the check and the server's bind. */
    for (int i = 0; i < 2000; i++) {
        int p = next;

        next += 2;
        if (next > 29990)
            next = 20000;
        if (port_free(p) && port_free(p + 1))
            return p;
    }
    die("no free pair of TCP ports in 30000..39999");
}

static void pin(int cpu)
{
    cpu_set_t set;

    if (cpu < 0)
        return;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) < 0)
        fprintf(stderr, "bench-tpm: cannot pin to CPU %d: %s\n", cpu, g_strerror(errno));
}

/* Find the daemon: --tpmd, else next to us in a build tree, else $PATH. */
/* In a build tree tools/nvram-tpmd is libtool's wrapper script, which
 * takes hundreds of milliseconds (a shell and several sed) before it runs
 * the program: run tools/.libs/nvram-tpmd with the library path that the
 * wrapper would set, so that start-up times the daemon, not the script. */
static char *unwrap_libtool(char *path)
{
    char head[2] = "", *dir = g_path_get_dirname(path);
    char *real = g_build_filename(dir, ".libs", "nvram-tpmd", NULL);
    char *libs = g_build_filename(dir, "..", "lib", ".libs", NULL);
    FILE *f = fopen(path, "rb");

    if (f) {
        if (fread(head, 1, 2, f) != 2)
            head[0] = 0;
        fclose(f);
    }
    if (head[0] == '#' && head[1] == '!' && access(real, X_OK) == 0 &&
        g_file_test(libs, G_FILE_TEST_IS_DIR)) {
        const char *old = g_getenv("LD_LIBRARY_PATH");
        char *val = old && *old ? g_strconcat(libs, ":", old, NULL) : g_strdup(libs);

        g_setenv("LD_LIBRARY_PATH", val, TRUE);
        g_free(val);
        g_free(path);
        path = real;
        real = NULL;
    }
    g_free(real);
    g_free(libs);
    g_free(dir);
    return path;
}

static char *find_tpmd(const char *argv0)
{
    char *dir, *path;

    if (opt_tpmd)
        return unwrap_libtool(g_strdup(opt_tpmd));
    dir = g_path_get_dirname(argv0);
    path = g_build_filename(dir, "..", "tools", "nvram-tpmd", NULL);
    g_free(dir);
    if (access(path, X_OK) == 0)
        return unwrap_libtool(path);
    g_free(path);
    path = g_find_program_in_path("nvram-tpmd");
    if (!path)
        die("nvram-tpmd not found (use --tpmd PATH)");
    return path;
}

static void start_server(server *s, const char *dir, const char *tpmd)
{
    GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);
    char *state = NULL;

    s->port = pick_ports();
    s->log = g_strdup_printf("%s/%s.log", dir, kind_name[s->kind]);
    if (s->kind == OURS_NBD) {
        /* qemu-nbd serves an 8 MiB file on a socket; nvram-tpmd formats it. */
        char *file = g_strdup_printf("%s/%s.raw", dir, kind_name[s->kind]);
        char *sock = g_strdup_printf("%s/%s.sock", dir, kind_name[s->kind]);
        int fd = open(file, O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || ftruncate(fd, 8 << 20) < 0)
            die("%s: %s", file, g_strerror(errno));
        close(fd);
        s->nbd_pid = fork();
        if (s->nbd_pid < 0)
            die("fork: %s", g_strerror(errno));
        if (s->nbd_pid == 0) {
            execlp("qemu-nbd", "qemu-nbd", "--persistent", "--format", "raw", "--socket", sock,
                   file, (char *)NULL);
            fprintf(stderr, "exec qemu-nbd: %s\n", g_strerror(errno));
            _exit(127);
        }
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        g_strlcpy(sa.sun_path, sock, sizeof sa.sun_path);
        for (int i = 0;; i++) {
            int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            bool up = probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0;
            if (probe >= 0)
                close(probe);
            if (up)
                break;
            if (i > 500 || waitpid(s->nbd_pid, NULL, WNOHANG) == s->nbd_pid)
                die("qemu-nbd did not start on %s", sock);
            g_usleep(10000);
        }
        state = g_strdup_printf("nbd+unix:///?socket=%s", sock);
        g_free(file);
        g_free(sock);
    } else if (s->kind == OURS || s->kind == OURS_STOCK) {
        state = g_strdup_printf("%s/%s.img", dir, kind_name[s->kind]);
    }
    if (s->kind == OURS || s->kind == OURS_STOCK || s->kind == OURS_NBD) {
        g_ptr_array_add(argv, g_strdup(tpmd));
        g_ptr_array_add(argv, g_strdup_printf("--image=%s", state));
        g_ptr_array_add(argv, g_strdup_printf("--tcp-port=%d", s->port));
        g_ptr_array_add(argv, g_strdup("--flags=startup-clear"));
        g_ptr_array_add(argv, g_strdup_printf("--log=file=%s,level=1", s->log));
        if (s->kind == OURS_STOCK)
            g_ptr_array_add(argv, g_strdup("--stock-commit"));
    } else {
        g_ptr_array_add(argv, g_strdup(opt_swtpm ? opt_swtpm : "swtpm"));
        g_ptr_array_add(argv, g_strdup("socket"));
        g_ptr_array_add(argv, g_strdup("--tpm2"));
        g_ptr_array_add(argv, g_strdup("--tpmstate"));
        if (s->kind == SWTPM_DIR) {
            state = g_strdup_printf("%s/swtpm-dir", dir);
            if (mkdir(state, 0700) < 0 && errno != EEXIST)
                die("mkdir %s: %s", state, g_strerror(errno));
            g_ptr_array_add(argv, g_strdup_printf("dir=%s", state));
        } else {
            state = g_strdup_printf("%s/swtpm-linear.img", dir);
            g_ptr_array_add(argv, g_strdup_printf("backend-uri=file://%s", state));
        }
        g_ptr_array_add(argv, g_strdup("--server"));
        g_ptr_array_add(argv, g_strdup_printf("type=tcp,port=%d", s->port));
        g_ptr_array_add(argv, g_strdup("--ctrl"));
        g_ptr_array_add(argv, g_strdup_printf("type=tcp,port=%d", s->port + 1));
        g_ptr_array_add(argv, g_strdup("--flags"));
        g_ptr_array_add(argv, g_strdup("not-need-init,startup-clear"));
        g_ptr_array_add(argv, g_strdup("--log"));
        g_ptr_array_add(argv, g_strdup_printf("file=%s", s->log));
    }
    g_ptr_array_add(argv, NULL);

    fflush(NULL);
    s->pid = fork();
    if (s->pid < 0)
        die("fork: %s", g_strerror(errno));
    if (s->pid == 0) {
        int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0644);

        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        pin(opt_cpu);
        execvp(argv->pdata[0], (char **)argv->pdata);
        fprintf(stderr, "exec %s: %s\n", (char *)argv->pdata[0], g_strerror(errno));
        _exit(127);
    }
    /* Poll often: the start-up figure is the time to the first response. */
    for (int i = 0; i < 40000; i++) {
        int st;

        if ((s->fd = connect_port(s->port)) >= 0)
            break;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            char *text = NULL;

            g_file_get_contents(s->log, &text, NULL, NULL);
            die("%s did not start:\n%s", kind_name[s->kind], text ? text : "(no log)");
        }
        g_usleep(250);
    }
    if (s->fd < 0)
        die("%s does not accept connections on port %d", kind_name[s->kind], s->port);
    s->have_cpu = clock_getcpuclockid(s->pid, &s->cpu_clock) == 0;
    g_free(state);
    g_ptr_array_unref(argv);
}

/* Define the two indices (the servers ran Startup already). */
static void prepare(server *s)
{
    tpm2_cmdbuf c;
    uint32_t auth = TPMA_NV_OWNERWRITE | TPMA_NV_AUTHWRITE | TPMA_NV_OWNERREAD |
                    TPMA_NV_AUTHREAD | TPMA_NV_NO_DA;
    uint8_t resp[64];
    uint32_t rc;

    tpm2_cmd_startup(&c);   /* harmless if already started */
    rc = transact(s, &c, resp, sizeof(resp), NULL);
    if (rc != 0 && rc != TPM_RC_INITIALIZE)
        die("%s: Startup failed: 0x%" PRIx32, kind_name[s->kind], rc);
    tpm2_cmd_nv_define(&c, NV_COUNTER, auth | TPMA_NV_COUNTER, 8);
    expect_ok(s, &c, "NV_DefineSpace (counter)");
    tpm2_cmd_nv_define(&c, NV_DATA, auth, DATA_SIZE);
    expect_ok(s, &c, "NV_DefineSpace (1 KiB)");
}

static void stop_server(server *s)
{
    int st = 0;

    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    if (s->pid <= 0)
        return;
    kill(s->pid, SIGTERM);
    while (waitpid(s->pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fprintf(stderr, "bench-tpm: %s exited with status 0x%x (log: %s)\n",
                kind_name[s->kind], st, s->log);
    s->pid = 0;
    if (s->nbd_pid > 0) {
        kill(s->nbd_pid, SIGTERM);
        while (waitpid(s->nbd_pid, &st, 0) < 0 && errno == EINTR)
            ;
        s->nbd_pid = 0;
    }
}

/* ---- memory and start-up -------------------------------------------------- */

/* A "Vm...:   N kB" field of /proc/PID/status, or -1. */
static long proc_status_kib(pid_t pid, const char *field)
{
    char *path = g_strdup_printf("/proc/%d/status", (int)pid), *text = NULL;
    long kib = -1;

    if (g_file_get_contents(path, &text, NULL, NULL)) {
        char *at = strstr(text, field);

        if (at)
            kib = strtol(at + strlen(field), NULL, 10);
    }
    g_free(path);
    g_free(text);
    return kib;
}

/* Read the counter: the first command after a start, and a check that
 * the state survived it. */
static bool counter_is(server *s, uint64_t want)
{
    tpm2_cmdbuf c;
    uint8_t resp[64];
    size_t len;
    uint64_t value = 0;

    tpm2_cmd_nv_read(&c, TPM2_RH_OWNER, NV_COUNTER, 8, 0);
    uint32_t rc = transact(s, &c, resp, sizeof(resp), &len);
    if (rc != 0 || len < 10 + 4 + 2 + 8) {
        fprintf(stderr, "bench-tpm: %s: NV_Read of the counter: 0x%" PRIx32 "\n",
                kind_name[s->kind], rc);
        return false;
    }
    for (int i = 0; i < 8; i++)
        value = value << 8 | resp[16 + i];
    if (value != want)
        fprintf(stderr, "bench-tpm: %s: the counter is %" PRIu64 "\n", kind_name[s->kind],
                value);
    return value == want;
}

/* Stop @s (SIGKILL with @crash: no clean close) and time a new start on
 * its state to the first response. */
static uint64_t time_restart(server *s, const char *dir, const char *tpmd, bool crash)
{
    if (crash && s->pid > 0) {
        kill(s->pid, SIGKILL);
        while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR)
            ;
        s->pid = 0;
    }
    stop_server(s);
    uint64_t t0 = now_ns();
    start_server(s, dir, tpmd);
    if (!counter_is(s, s->increments))
        die("%s: after a %s restart the counter is not %" PRIu64, kind_name[s->kind],
            crash ? "SIGKILL" : "clean", s->increments);
    return now_ns() - t0;
}

static double median_ms(uint64_t *ns, size_t n)
{
    if (!n)
        return 0;
    qsort(ns, n, sizeof *ns, cmp_u64);
    return (double)ns[(n - 1) / 2] / 1e6;
}

/* ---- flushes per command, with strace ------------------------------------ */

/* Sum of the "calls" column of an strace -c summary. */
static long strace_calls(const char *path)
{
    char *text = NULL;
    long total = -1;

    if (!g_file_get_contents(path, &text, NULL, NULL))
        return -1;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        double pct, secs;
        long usecs, calls;
        char name[64];

        /* "% time  seconds  usecs/call  calls  [errors]  syscall" rows */
        if (sscanf(line, "%lf %lf %ld %ld %*s %63s", &pct, &secs, &usecs, &calls, name) >= 4 &&
            !strstr(line, "total")) {
            total = (total < 0 ? 0 : total) + calls;
        }
    }
    g_free(text);
    return total < 0 ? 0 : total;
}

static double count_flushes(server *s, int op, const char *dir)
{
    char *out = g_strdup_printf("%s/strace-%s-%d.txt", dir, kind_name[s->kind], op);
    /* On NBD the flushes happen in the storage server. */
    char *pid = g_strdup_printf("%d", (int)(s->nbd_pid > 0 ? s->nbd_pid : s->pid));
    char *argv[] = { "strace", "-f", "-c", "-o", out, "-e",
                     "trace=fsync,fdatasync,msync,sync_file_range,syncfs,pwritev2", "-p", pid, NULL };
    double result = -1;
    int err[2], st = 0;
    pid_t tr;

    if (pipe(err) < 0)
        die("pipe: %s", g_strerror(errno));
    tr = fork();
    if (tr == 0) {
        dup2(err[1], STDERR_FILENO);
        close(err[0]);
        close(err[1]);
        execvp("strace", argv);
        fprintf(stderr, "exec strace: %s\n", g_strerror(errno));
        _exit(127);
    }
    close(err[1]);
    /* Wait until strace says it attached, then let it settle. */
    {
        FILE *f = fdopen(err[0], "r");
        char line[512];
        bool attached = false;

        while (f && !attached && fgets(line, sizeof(line), f))
            attached = strstr(line, "attached") != NULL;
        g_usleep(200000);
        if (attached) {
            for (int i = 0; i < STRACE_OPS; i++)
                run_op(s, op);
        }
        kill(tr, SIGINT);
        while (waitpid(tr, &st, 0) < 0 && errno == EINTR)
            ;
        if (attached) {
            long calls = strace_calls(out);

            if (calls >= 0)
                result = (double)calls / STRACE_OPS;
        } else {
            fprintf(stderr, "bench-tpm: strace could not attach to %s (pid %d)\n",
                    kind_name[s->kind], (int)s->pid);
        }
        if (f)
            fclose(f);
    }
    g_free(out);
    g_free(pid);
    return result;
}

/* ---- results -------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static double percentile_us(server *s, int op, double p)
{
    size_t n = s->count[op], i;

    if (!n)
        return 0;
    i = (size_t)(p * (double)(n - 1) + 0.5);
    return (double)s->ns[op][i] / 1000.0;
}

/* Server CPU time per measured command, in µs (0: not known). */
static double cpu_us(server *s, int op)
{
    return s->count[op] ? (double)s->cpu[op] / 1000.0 / (double)s->count[op] : 0;
}

static double ops_per_s(server *s, int op)
{
    return s->wall[op] ? (double)s->count[op] * 1e9 / (double)s->wall[op] : 0;
}

static bool verify(server *s)
{
    tpm2_cmdbuf c;
    uint8_t resp[2048];
    size_t len;
    uint32_t rc;
    uint64_t value = 0;
    bool ok = true;

    tpm2_cmd_nv_read(&c, TPM2_RH_OWNER, NV_COUNTER, 8, 0);
    rc = transact(s, &c, resp, sizeof(resp), &len);
    /* response: header, parameterSize, TPM2B (u16 size, data), session */
    if (rc != 0 || len < 10 + 4 + 2 + 8) {
        fprintf(stderr, "bench-tpm: %s: reading the counter failed: 0x%" PRIx32 "\n",
                kind_name[s->kind], rc);
        return false;
    }
    for (int i = 0; i < 8; i++)
        value = value << 8 | resp[16 + i];
    if (value != s->increments) {
        fprintf(stderr, "bench-tpm: %s: counter is %" PRIu64 ", %" PRIu64 " increments sent\n",
                kind_name[s->kind], value, s->increments);
        ok = false;
    }
    tpm2_cmd_nv_read(&c, TPM2_RH_OWNER, NV_DATA, DATA_SIZE, 0);
    rc = transact(s, &c, resp, sizeof(resp), &len);
    if (rc != 0 || len < 16 + DATA_SIZE || memcmp(resp + 16, s->last, DATA_SIZE) != 0) {
        fprintf(stderr, "bench-tpm: %s: the 1 KiB index does not hold the last data written\n",
                kind_name[s->kind]);
        ok = false;
    }
    return ok;
}

static const char *fs_name(const char *dir)
{
    struct statfs sf;

    if (statfs(dir, &sf) < 0)
        return "?";
    switch ((unsigned long)sf.f_type) {
    case 0xef53:
        return "ext4";
    case 0x58465342:
        return "xfs";
    case 0x9123683e:
        return "btrfs";
    case 0x01021994:
        return "tmpfs (no storage cost: figures meaningless)";
    case 0x794c7630:
        return "overlayfs";
    default:
        return "other";
    }
}

/* Remove @path and, if it is a directory, what it holds (our files only:
 * plain files and the swtpm state directory). */
static void rm_tree(const char *path)
{
    GDir *d = g_dir_open(path, 0, NULL);

    if (d) {
        const char *name;

        while ((name = g_dir_read_name(d))) {
            char *sub = g_build_filename(path, name, NULL);

            rm_tree(sub);
            g_free(sub);
        }
        g_dir_close(d);
        if (rmdir(path) < 0)
            fprintf(stderr, "bench-tpm: rmdir %s: %s\n", path, g_strerror(errno));
    } else if (unlink(path) < 0) {
        fprintf(stderr, "bench-tpm: unlink %s: %s\n", path, g_strerror(errno));
    }
}

static const GOptionEntry entries[] = {
    { "dir", 'd', 0, G_OPTION_ARG_FILENAME, &opt_dir,
      "Directory for the servers' state, on the disk to measure (default /var/tmp)", "DIR" },
    { "rounds", 'r', 0, G_OPTION_ARG_INT, &opt_rounds, "Measured rounds (default 10)", "N" },
    { "ops", 'n', 0, G_OPTION_ARG_INT, &opt_ops,
      "Commands of each kind per server and round (default 200)", "N" },
    { "warmup", 'w', 0, G_OPTION_ARG_INT, &opt_warmup,
      "Unmeasured commands of each kind per server first (default 200)", "N" },
    { "cpu", 0, 0, G_OPTION_ARG_INT, &opt_cpu,
      "CPU to pin the servers and the client to (default: the last; -1: no pinning)", "N" },
    { "servers", 's', 0, G_OPTION_ARG_STRING, &opt_servers,
      "Comma-separated subset of ours,ours-stock,swtpm-dir,swtpm-file,ours-nbd (default: all "
      "but ours-nbd, which needs qemu-nbd)", "LIST" },
    { "tpmd", 0, 0, G_OPTION_ARG_FILENAME, &opt_tpmd,
      "nvram-tpmd to run (default: ../tools/nvram-tpmd next to this program, or $PATH)",
      "PATH" },
    { "swtpm", 0, 0, G_OPTION_ARG_FILENAME, &opt_swtpm, "swtpm to run (default swtpm)", "PATH" },
    { "connect", 0, 0, G_OPTION_ARG_INT, &opt_connect,
      "Only measure a server already listening on 127.0.0.1:PORT (not pinned, no strace)",
      "PORT" },
    { "no-strace", 0, 0, G_OPTION_ARG_NONE, &opt_no_strace, "Do not count flushes", NULL },
    { "startups", 0, 0, G_OPTION_ARG_INT, &opt_startups,
      "Restarts per server timed to the first response (default 5; 0: none)", "N" },
    { "replay-writes", 0, 0, G_OPTION_ARG_INT, &opt_replay_writes,
      "NV_Writes before each SIGKILL of ours-replay (default 2000)", "N" },
    { "keep", 0, 0, G_OPTION_ARG_NONE, &opt_keep, "Keep the state directory", NULL },
    { NULL, 0, 0, G_OPTION_ARG_NONE, NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
    GOptionContext *ctx = g_option_context_new("- TPM NV command latency: nvram-tpmd vs swtpm");
    GError *err = NULL;
    server *srv[NKINDS];
    size_t nsrv = 0;
    char *dir, *tpmd = NULL;
    bool ok = true, have_strace;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

    g_option_context_add_main_entries(ctx, entries, NULL);
    g_option_context_set_description(
        ctx, "Starts nvram-tpmd (journal and stock commits) and swtpm (dir and linear file\n"
             "backends) on state in a new directory under --dir, pinned to one CPU with the\n"
             "client; sends NV_Increment and NV_Write(1 KiB) over one TCP connection each, in\n"
             "rotating rounds; prints median and p99 latency, ops/s, flushes per command\n"
             "(strace) and ratios; checks every counter and index read back at the end.\n");
    if (!g_option_context_parse(ctx, &argc, &argv, &err))
        die("%s", err->message);
    g_option_context_free(ctx);
    if (opt_rounds < 1 || opt_ops < 1 || opt_warmup < 0)
        die("--rounds and --ops must be positive, --warmup not negative");
    if (opt_cpu == -2)
        opt_cpu = ncpu > 1 ? (int)ncpu - 1 : 0;
    if (opt_connect)
        opt_cpu = -1;

    if (opt_connect) {
        server *s = g_new0(server, 1);

        s->kind = OURS;
        s->port = opt_connect;
        s->fd = connect_port(opt_connect);
        if (s->fd < 0)
            die("cannot connect to 127.0.0.1:%d: %s", opt_connect, g_strerror(errno));
        srv[nsrv++] = s;
        dir = NULL;
    } else {
        char *tmpl = g_build_filename(opt_dir ? opt_dir : "/var/tmp", "bench-tpm.XXXXXX", NULL);

        dir = g_mkdtemp(tmpl);
        if (!dir)
            die("cannot create a directory in %s: %s", opt_dir ? opt_dir : "/var/tmp",
                g_strerror(errno));
        for (int k = 0; k < NKINDS; k++) {
            gchar **want = opt_servers ? g_strsplit(opt_servers, ",", -1) : NULL;

            if (want ? g_strv_contains((const gchar *const *)want, kind_name[k])
                     : k < NDEFAULT) {
                server *s = g_new0(server, 1);

                s->kind = (kind)k;
                s->fd = -1;
                srv[nsrv++] = s;
            }
            g_strfreev(want);
        }
        if (!nsrv)
            die("--servers: nothing to run (ours, ours-stock, swtpm-dir, swtpm-file)");
        tpmd = find_tpmd(argv[0]);
        pin(opt_cpu);
        for (size_t i = 0; i < nsrv; i++)
            start_server(srv[i], dir, tpmd);
    }
    for (size_t i = 0; i < nsrv; i++) {
        prepare(srv[i]);
        for (int op = 0; op < NOPS; op++) {
            srv[i]->ns[op] = g_new(uint64_t, (size_t)opt_rounds * (size_t)opt_ops);
            srv[i]->flushes[op] = -1;
            for (int w = 0; w < opt_warmup; w++)
                run_op(srv[i], op);
        }
    }

    printf("bench-tpm: %zu server(s), %d rounds x %d commands of each kind after %d warm-up "
           "ones,\n  state in %s (%s), %s\n", nsrv, opt_rounds, opt_ops, opt_warmup,
           dir ? dir : "(running server)", dir ? fs_name(dir) : "?",
           opt_cpu >= 0 ? "all pinned to one CPU" : "not pinned");
    if (opt_cpu >= 0)
        printf("  CPU %d of %ld\n", opt_cpu, ncpu);
    for (int r = 0; r < opt_rounds; r++) {
        for (size_t k = 0; k < nsrv; k++) {
            server *s = srv[(k + (size_t)r) % nsrv];

            for (int op = 0; op < NOPS; op++) {
                uint64_t c0 = server_cpu_ns(s), t0 = now_ns();

                for (int i = 0; i < opt_ops; i++)
                    s->ns[op][s->count[op]++] = run_op(s, op);
                s->wall[op] += now_ns() - t0;
                s->cpu[op] += server_cpu_ns(s) - c0;
            }
        }
    }
    for (size_t i = 0; i < nsrv; i++) {
        pid_t pid = srv[i]->nbd_pid > 0 || opt_connect ? 0 : srv[i]->pid;

        srv[i]->hwm_kib = pid ? proc_status_kib(pid, "VmHWM:") : -1;
        srv[i]->rss_kib = pid ? proc_status_kib(pid, "VmRSS:") : -1;
    }

    have_strace = !opt_no_strace && !opt_connect && g_find_program_in_path("strace");
    if (have_strace) {
        for (size_t i = 0; i < nsrv; i++)
            for (int op = 0; op < NOPS; op++)
                srv[i]->flushes[op] = count_flushes(srv[i], op, dir);
    }
    for (size_t i = 0; i < nsrv; i++)
        ok &= verify(srv[i]);

    /* Start-up: clean restarts of every server, then (ours) crashes with a
     * journal to replay.  Rotated like the rounds. */
    bool startups = opt_startups > 0 && !opt_connect;
    for (int r = 0; startups && r < opt_startups; r++) {
        for (size_t k = 0; k < nsrv; k++) {
            server *s = srv[(k + (size_t)r) % nsrv];

            if (s->kind == OURS_NBD)
                continue;
            if (!s->startup_ns)
                s->startup_ns = g_new(uint64_t, (size_t)opt_startups);
            s->startup_ns[s->nstartup++] = time_restart(s, dir, tpmd, false);
            if (s->kind != OURS)
                continue;
            for (int w = 0; w < opt_replay_writes; w++)
                run_op(s, OP_WRITE);
            if (!s->replay_ns)
                s->replay_ns = g_new(uint64_t, (size_t)opt_startups);
            s->replay_ns[s->nreplay++] = time_restart(s, dir, tpmd, true);
        }
    }
    for (size_t i = 0; startups && i < nsrv; i++)
        ok &= verify(srv[i]);

    printf("\n%-11s %-15s %10s %10s %9s %11s %11s\n", "server", "command", "median us",
           "p99 us", "ops/s", "flushes/cmd", "cpu us/cmd");
    for (size_t i = 0; i < nsrv; i++) {
        server *s = srv[i];

        for (int op = 0; op < NOPS; op++) {
            char fl[32];

            qsort(s->ns[op], s->count[op], sizeof(uint64_t), cmp_u64);
            if (s->flushes[op] >= 0)
                snprintf(fl, sizeof(fl), "%.2f", s->flushes[op]);
            else
                snprintf(fl, sizeof(fl), "%s", have_strace ? "failed" : "n/a");
            printf("%-11s %-15s %10.1f %10.1f %9.0f %11s %11.2f\n",
                   opt_connect ? "server" : kind_name[s->kind], op_name[op],
                   percentile_us(s, op, 0.5), percentile_us(s, op, 0.99), ops_per_s(s, op), fl,
                   cpu_us(s, op));
        }
    }
    if (!opt_connect) {
        printf("\n");
        for (size_t i = 0; i < nsrv; i++)
            printf("  %-11s %s\n", kind_name[srv[i]->kind], kind_desc[srv[i]->kind]);
    }
    if (!have_strace)
        printf("  flushes/cmd: not counted (%s)\n",
               opt_connect ? "--connect" : opt_no_strace ? "--no-strace" : "strace not found");
    else
        printf("  flushes/cmd: fsync+fdatasync+msync+sync_file_range+syncfs+pwritev2 (RWF_DSYNC) "
               "calls of the server (strace -f -c), over %d commands\n", STRACE_OPS);
    printf("  cpu us/cmd: the server process's CPU time (user + system, all threads; perf's "
           "task-clock)\n    over the measured commands%s\n",
           opt_connect ? ": not known with --connect (0)" : "");

    bool mem = false;
    for (size_t i = 0; i < nsrv; i++)
        mem |= srv[i]->hwm_kib >= 0;
    if (mem) {
        printf("\nresident memory after the measured rounds (/proc/PID/status):\n");
        printf("%-11s %10s %10s\n", "server", "VmHWM KiB", "VmRSS KiB");
        for (size_t i = 0; i < nsrv; i++)
            if (srv[i]->hwm_kib >= 0)
                printf("%-11s %10ld %10ld\n", kind_name[srv[i]->kind], srv[i]->hwm_kib,
                       srv[i]->rss_kib);
    }
    if (startups) {
        printf("\nstart-up, fork to the first response (NV_Read), median of %d:\n",
               opt_startups);
        for (size_t i = 0; i < nsrv; i++) {
            server *s = srv[i];

            if (!s->nstartup)
                continue;
            double med = median_ms(s->startup_ns, s->nstartup);  /* sorts */
            double rmed = median_ms(s->replay_ns, s->nreplay);

            printf("  %-11s %8.1f ms (min %.1f, max %.1f)\n", kind_name[s->kind], med,
                   s->startup_ns[0] / 1e6,
                   s->startup_ns[s->nstartup - 1] / 1e6);
            if (s->nreplay)
                printf("  %-11s %8.1f ms (min %.1f, max %.1f) after SIGKILL following %d "
                       "NV_Writes: journal replay\n", "ours-replay", rmed, s->replay_ns[0] / 1e6,
                       s->replay_ns[s->nreplay - 1] / 1e6, opt_replay_writes);
        }
    }

    /* Ratios of medians: ours against each swtpm backend (< 1: ours faster). */
    if (nsrv > 1 && srv[0]->kind == OURS) {
        printf("\nratios of medians, ours / other (below 1: ours faster):\n");
        for (size_t i = 1; i < nsrv; i++) {
            printf("  ours / %-11s", kind_name[srv[i]->kind]);
            for (int op = 0; op < NOPS; op++)
                printf("  %s %.2f", op_name[op],
                       percentile_us(srv[0], op, 0.5) / percentile_us(srv[i], op, 0.5));
            if (srv[0]->nstartup && srv[i]->nstartup)
                printf("  start-up %.2f  replay start-up %.2f",
                       median_ms(srv[0]->startup_ns, srv[0]->nstartup) /
                           median_ms(srv[i]->startup_ns, srv[i]->nstartup),
                       srv[0]->nreplay ? median_ms(srv[0]->replay_ns, srv[0]->nreplay) /
                                             median_ms(srv[i]->startup_ns, srv[i]->nstartup)
                                       : 0.0);
            if (srv[0]->hwm_kib > 0 && srv[i]->hwm_kib > 0)
                printf("  VmHWM %+ld KiB", srv[0]->hwm_kib - srv[i]->hwm_kib);
            printf("\n");
        }
        printf("ratios of server CPU per command, ours / other:\n");
        for (size_t i = 1; i < nsrv; i++) {
            printf("  ours / %-11s", kind_name[srv[i]->kind]);
            for (int op = 0; op < NOPS; op++)
                printf("  %s %.2f", op_name[op], cpu_us(srv[0], op) / cpu_us(srv[i], op));
            printf("\n");
        }
    }

    for (size_t i = 0; i < nsrv; i++) {
        if (opt_connect)
            close(srv[i]->fd);
        else
            stop_server(srv[i]);
        for (int op = 0; op < NOPS; op++)
            g_free(srv[i]->ns[op]);
        g_free(srv[i]->startup_ns);
        g_free(srv[i]->replay_ns);
        g_free(srv[i]->log);
        g_free(srv[i]);
    }
    if (dir && !opt_keep) {
        rm_tree(dir);
    } else if (dir) {
        printf("state kept in %s\n", dir);
    }
    g_free(dir);
    g_free(tpmd);
    if (!ok) {
        fprintf(stderr, "bench-tpm: verification failed: the figures above are not valid\n");
        return 1;
    }
    return 0;
}
