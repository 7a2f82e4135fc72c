/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * test-nbd.c — the library on NBD exports (backend-nbd.c), each served by
 * a server this program starts on a UNIX socket in a temporary directory:
 * qemu-nbd over a raw file and over a qcow2 file, nbdkit's memory and
 * file plugins.  On each: the scripted workload (writes at several sizes,
 * deletes, re-creates) and a batch, reopen (writable and read-only), and
 * recovery after kill -9 of a writer in the middle of a stream of commits.
 * Then, on qemu-nbd: a qcow2 snapshot taken and reverted to under the
 * image; with nbdkit's filters: write errors (the commit fails naming the
 * export, later commits fail until reopen, nothing acknowledged is lost,
 * the image recovers and passes check), a server killed in the middle of
 * a commit and restarted, a read-only export, an export too small, and an
 * unreachable server.  A test whose server is not installed is skipped,
 * saying which; with neither installed the program exits 77.
 */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crc32c.h"
#include "owner.h"
#include "testutil.h"
#include "workload.h"

#define EXPORT_SIZE (8u * 1024 * 1024)

typedef enum server_kind {
    QEMU_RAW,
    QEMU_QCOW2,
    NBDKIT_MEMORY,
    NBDKIT_FILE,
    N_KINDS,
} server_kind;

static const char *const kind_names[N_KINDS] = {
    "qemu-nbd-raw", "qemu-nbd-qcow2", "nbdkit-memory", "nbdkit-file",
};

typedef struct server {
    server_kind kind;
    char *dir;           /* temporary directory: socket, image, triggers */
    char *sock;
    char *img;           /* the file behind the export (NULL: memory) */
    char *uri;
    GPid pid;
    char **extra;        /* nbdkit filters and their parameters */
} server;

static const char *program_for(server_kind kind)
{
    return kind == QEMU_RAW || kind == QEMU_QCOW2 ? "qemu-nbd" : "nbdkit";
}

/* Skip the running test if @prog is not installed. */
static bool have(const char *prog)
{
    char *path = g_find_program_in_path(prog);
    bool found = path != NULL;
    g_free(path);
    if (!found)
        g_test_skip_printf("%s is not installed", prog);
    return found;
}

static void run_sync(const char *const *argv)
{
    char *out = NULL, *err = NULL;
    int status;
    GError *e = NULL;
    if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, &err,
                      &status, &e))
        g_error("%s: %s", argv[0], e->message);
    if (!g_spawn_check_wait_status(status, &e))
        g_error("%s %s: %s\n%s%s", argv[0], argv[1], e->message, out, err);
    g_free(out);
    g_free(err);
}

/* A server must not outlive a test that dies. */
static void die_with_parent(gpointer unused)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
}

static bool socket_accepts(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    g_strlcpy(sa.sun_path, path, sizeof sa.sun_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* Start (or restart) @s's server; returns once it accepts connections. */
static void server_run(server *s)
{
    GPtrArray *argv = g_ptr_array_new();
    unlink(s->sock);
    if (s->kind == QEMU_RAW || s->kind == QEMU_QCOW2) {
        g_ptr_array_add(argv, "qemu-nbd");
        g_ptr_array_add(argv, "--persistent");
        g_ptr_array_add(argv, "--format");
        g_ptr_array_add(argv, s->kind == QEMU_RAW ? "raw" : "qcow2");
        g_ptr_array_add(argv, "--socket");
        g_ptr_array_add(argv, s->sock);
        g_ptr_array_add(argv, s->img);
    } else {
        g_ptr_array_add(argv, "nbdkit");
        g_ptr_array_add(argv, "--foreground");
        g_ptr_array_add(argv, "--unix");
        g_ptr_array_add(argv, s->sock);
        for (char **f = s->extra; f && *f && g_str_has_prefix(*f, "--"); f++)
            g_ptr_array_add(argv, *f);
        if (s->kind == NBDKIT_MEMORY) {
            g_ptr_array_add(argv, "memory");
            g_ptr_array_add(argv, "8M");
        } else {
            g_ptr_array_add(argv, "file");
            g_ptr_array_add(argv, s->img);
        }
        for (char **f = s->extra; f && *f; f++)
            if (!g_str_has_prefix(*f, "--"))
                g_ptr_array_add(argv, *f);
    }
    g_ptr_array_add(argv, NULL);
    GError *e = NULL;
    if (!g_spawn_async(s->dir, (char **)argv->pdata, NULL,
                       G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD, die_with_parent, NULL,
                       &s->pid, &e))
        g_error("cannot start %s: %s", program_for(s->kind), e->message);
    g_ptr_array_free(argv, TRUE);
    for (int i = 0; !socket_accepts(s->sock); i++) {
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid || i > 1000)
            g_error("%s did not start serving %s", program_for(s->kind), s->sock);
        g_usleep(10000);
    }
}

static void server_stop(server *s, int sig)
{
    if (!s->pid)
        return;
    kill(s->pid, sig);
    int status;
    waitpid(s->pid, &status, 0);
    g_spawn_close_pid(s->pid);
    s->pid = 0;
}

/* A server of @kind on a fresh export (all zeros, EXPORT_SIZE bytes);
 * @extra: nbdkit options ("--filter=...") and parameters, or NULL. */
static server *server_new(server_kind kind, const char *const *extra)
{
    server *s = g_new0(server, 1);
    s->kind = kind;
    s->dir = tu_tmpdir();
    s->sock = g_build_filename(s->dir, "nbd.sock", NULL);
    s->uri = g_strdup_printf("nbd+unix:///?socket=%s", s->sock);
    s->extra = g_strdupv((char **)extra);
    if (kind == QEMU_QCOW2) {
        s->img = g_build_filename(s->dir, "image.qcow2", NULL);
        const char *argv[] = { "qemu-img", "create", "-q", "-f", "qcow2", s->img, "8M", NULL };
        run_sync(argv);
    } else if (kind != NBDKIT_MEMORY) {
        s->img = g_build_filename(s->dir, "image.raw", NULL);
        FILE *f = fopen(s->img, "w");
        g_assert_nonnull(f);
        g_assert_cmpint(ftruncate(fileno(f), EXPORT_SIZE), ==, 0);
        fclose(f);
    }
    server_run(s);
    return s;
}

static void server_free(server *s)
{
    server_stop(s, SIGTERM);
    tu_rmtree(s->dir);
    g_free(s->dir);
    g_free(s->sock);
    g_free(s->img);
    g_free(s->uri);
    g_strfreev(s->extra);
    g_free(s);
}

/* ---- the workload, a batch, reopen -------------------------------------- */

static void assert_value(nvramtdb *db, int blob, const value *v, const char *ctx)
{
    seen s;
    seen_read(db, blob, &s);
    if (!seen_is(&s, v)) {
        char *want = value_describe(v);
        g_error("%s: blob %s: read returned %d, %zu bytes; expected %s (%s)", ctx,
                blobs[blob].name, s.rc, s.len, want, nvramtdb_last_error());
    }
    free(s.data);
}

static void test_workload(const void *data)
{
    server_kind kind = (server_kind)GPOINTER_TO_INT(data);
    if (!have(program_for(kind)) || (kind == QEMU_QCOW2 && !have("qemu-img")))
        return;
    server *s = server_new(kind, NULL);
    value final[N_BLOBS] = { { 0 } };
    int rc;

    nvramtdb *db = tu_start_uri(s->uri, NVRAMTDB_OPEN_CREATE, blobs, N_BLOBS, &rc);
    if (!db)
        g_error("start on %s: %d (%s)", s->uri, rc, nvramtdb_last_error());
    for (size_t i = 0; i < N_STEPS; i++) {
        const step *st = &workload[i];
        value v = step_value(st);
        if (st->is_delete)
            TU_OK(nvramtdb_delete(db, blobs[st->blob].name, NVRAMTDB_WAIT_COMPLETION, NULL,
                                  NULL));
        else
            TU_OK(nvramtdb_write(db, blobs[st->blob].name, value_bytes(&v), v.len,
                                 NVRAMTDB_WAIT_COMPLETION, NULL, NULL));
        final[st->blob] = v;
        assert_value(db, st->blob, &v, st->slug);
    }
    /* One atomic batch: a write and a delete (values are the workload's:
     * value_bytes() knows one length per pattern). */
    value vb = { true, 20000, 11 };
    nvramtdb_change changes[2] = {
        { .struct_size = sizeof changes[0], .name = blobs[BLOB_B].name,
          .data = value_bytes(&vb), .len = vb.len },
        { .struct_size = sizeof changes[0], .name = blobs[BLOB_C].name, .is_delete = true },
    };
    TU_OK(nvramtdb_write_batch(db, changes, 2, NVRAMTDB_WAIT_COMPLETION, NULL, NULL));
    final[BLOB_B] = vb;
    final[BLOB_C] = (value){ false, 0, 0 };
    tu_assert_healthy(db);
    TU_OK(nvramtdb_close(db));

    /* Reopen, writable then read-only: the same values. */
    for (int ro = 0; ro < 2; ro++) {
        db = tu_start_uri(s->uri, ro ? NVRAMTDB_OPEN_READONLY : 0, blobs, N_BLOBS, &rc);
        if (!db)
            g_error("reopen of %s: %d (%s)", s->uri, rc, nvramtdb_last_error());
        for (int b = 0; b < N_BLOBS; b++)
            assert_value(db, b, &final[b], ro ? "read-only reopen" : "reopen");
        tu_assert_healthy(db);
        TU_OK(nvramtdb_close(db));
    }
    server_free(s);
}

/* ---- kill -9 of the writer ---------------------------------------------- */

static const tu_blob counter_blobs[] = { { "dev0/counter", 8 }, { "dev0/pad", 20000 } };

/* The writer: commits 1, 2, 3, ... to dev0/counter (with a changing
 * second blob, so that frames carry several pages), and reports each
 * acknowledged value on @fd.  Never returns: it is killed. */
static G_GNUC_NORETURN void writer(const char *uri, int fd, uint64_t from)
{
    nvramtdb *db = tu_start_uri(uri, 0, counter_blobs, 2, NULL);
    if (!db) {
        g_printerr("writer: %s\n", nvramtdb_last_error());
        _exit(1);
    }
    uint8_t pad[20000];
    for (uint64_t i = from;; i++) {
        memset(pad, (int)i, sizeof pad);
        nvramtdb_change c[2] = {
            { .struct_size = sizeof c[0], .name = counter_blobs[0].name, .data = &i, .len = 8 },
            { .struct_size = sizeof c[0], .name = counter_blobs[1].name, .data = pad,
              .len = 1000 + i % 19000 },
        };
        if (nvramtdb_write_batch(db, c, 2, NVRAMTDB_WAIT_COMPLETION, NULL, NULL) < 0) {
            g_printerr("writer: %s\n", nvramtdb_last_error());
            _exit(1);
        }
        if (write(fd, &i, sizeof i) != sizeof i)
            _exit(1);
    }
}

static uint64_t read_counter(nvramtdb *db)
{
    uint8_t *data = NULL;
    size_t len = 0;
    uint64_t v = 0;
    int r = nvramtdb_read(db, counter_blobs[0].name, &data, &len);
    if (r == -ENOENT)
        return 0;
    TU_OK(r);
    g_assert_cmpuint(len, ==, 8);
    memcpy(&v, data, 8);
    free(data);
    return v;
}

static void test_kill9(const void *data)
{
    server_kind kind = (server_kind)GPOINTER_TO_INT(data);
    if (!have(program_for(kind)) || (kind == QEMU_QCOW2 && !have("qemu-img")))
        return;
    server *s = server_new(kind, NULL);
    nvramtdb *db = tu_start_uri(s->uri, NVRAMTDB_OPEN_CREATE, counter_blobs, 2, NULL);
    g_assert_nonnull(db);
    TU_OK(nvramtdb_close(db));

    uint64_t acked = 0;
    for (int round = 0; round < 3; round++) {
        int p[2];
        g_assert_cmpint(pipe(p), ==, 0);
        pid_t pid = fork();
        g_assert_cmpint(pid, >=, 0);
        if (pid == 0) {
            close(p[0]);
            writer(s->uri, p[1], acked + 1);
        }
        close(p[1]);
        /* Let it acknowledge a few commits (a different number each
         * round), then kill it wherever it is. */
        uint64_t v;
        for (int n = 0; n < 5 + round * 7; n++) {
            if (read(p[0], &v, sizeof v) != sizeof v)
                g_error("round %d: the writer died before its commit %d", round, n + 1);
            acked = v;
        }
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        while (read(p[0], &v, sizeof v) == sizeof v)
            acked = v;
        close(p[0]);

        db = tu_start_uri(s->uri, 0, counter_blobs, 2, NULL);
        if (!db)
            g_error("round %d: reopen after kill -9: %s", round, nvramtdb_last_error());
        uint64_t got = read_counter(db);
        g_test_message("round %d: %" G_GUINT64_FORMAT " acknowledged, %" G_GUINT64_FORMAT
                       " on the image", round, acked, got);
        /* Every acknowledged commit, and at most the one in flight. */
        g_assert_cmpuint(got, >=, acked);
        g_assert_cmpuint(got, <=, acked + 1);
        acked = got;
        tu_assert_healthy(db);
        TU_OK(nvramtdb_close(db));
    }
    server_free(s);
}

/* ---- qcow2 snapshots ---------------------------------------------------- */

static void test_qcow2_snapshot(void)
{
    if (!have("qemu-nbd") || !have("qemu-img"))
        return;
    server *s = server_new(QEMU_QCOW2, NULL);
    value v1 = { true, 100, 1 }, v2 = { true, 4096, 4 }, v3 = { true, 20000, 2 };

    nvramtdb *db = tu_start_uri(s->uri, NVRAMTDB_OPEN_CREATE, blobs, N_BLOBS, NULL);
    g_assert_nonnull(db);
    TU_OK(nvramtdb_write(db, blobs[BLOB_A].name, value_bytes(&v1), v1.len, 0, NULL, NULL));
    TU_OK(nvramtdb_close(db));
    server_stop(s, SIGTERM);
    const char *snap[] = { "qemu-img", "snapshot", "-c", "before", s->img, NULL };
    run_sync(snap);

    server_run(s);
    db = tu_start_uri(s->uri, 0, blobs, N_BLOBS, NULL);
    g_assert_nonnull(db);
    TU_OK(nvramtdb_write(db, blobs[BLOB_A].name, value_bytes(&v2), v2.len, 0, NULL, NULL));
    TU_OK(nvramtdb_write(db, blobs[BLOB_B].name, value_bytes(&v3), v3.len, 0, NULL, NULL));
    TU_OK(nvramtdb_close(db));
    server_stop(s, SIGTERM);

    const char *apply[] = { "qemu-img", "snapshot", "-a", "before", s->img, NULL };
    run_sync(apply);
    server_run(s);
    db = tu_start_uri(s->uri, 0, blobs, N_BLOBS, NULL);
    g_assert_nonnull(db);
    value absent = { false, 0, 0 };
    assert_value(db, BLOB_A, &v1, "after snapshot -a");
    assert_value(db, BLOB_B, &absent, "after snapshot -a");
    tu_assert_healthy(db);
    TU_OK(nvramtdb_close(db));
    server_free(s);
}

/* ---- faults ------------------------------------------------------------- */

/* nbdkit's error filter fails every write while the trigger file exists. */
static void test_write_errors(void)
{
    if (!have("nbdkit"))
        return;
    char *dir = tu_tmpdir();
    char *trigger = g_build_filename(dir, "fail-writes", NULL);
    char *file_param = g_strdup_printf("error-pwrite-file=%s", trigger);
    const char *extra[] = { "--filter=error", "error-pwrite=EIO", "error-pwrite-rate=100%",
                            file_param, NULL };
    server *s = server_new(NBDKIT_FILE, extra);
    value v1 = { true, 100, 1 }, v2 = { true, 20000, 2 }, v3 = { true, 100, 6 };

    nvramtdb *db = tu_start_uri(s->uri, NVRAMTDB_OPEN_CREATE, blobs, N_BLOBS, NULL);
    g_assert_nonnull(db);
    TU_OK(nvramtdb_write(db, blobs[BLOB_A].name, value_bytes(&v1), v1.len,
                         NVRAMTDB_WAIT_COMPLETION, NULL, NULL));
    g_assert_true(g_file_set_contents(trigger, "", 0, NULL));
    int r = nvramtdb_write(db, blobs[BLOB_B].name, value_bytes(&v2), v2.len,
                           NVRAMTDB_WAIT_COMPLETION, NULL, NULL);
    g_test_message("failed commit: %s", nvramtdb_last_error());
    TU_ASSERT_ERROR(r, -EIO, s->uri, "write");
    /* The server is fine again; the handle is not (latched). */
    g_assert_cmpint(unlink(trigger), ==, 0);
    r = nvramtdb_write(db, blobs[BLOB_C].name, value_bytes(&v3), v3.len,
                       NVRAMTDB_WAIT_COMPLETION, NULL, NULL);
    g_test_message("next commit: %s", nvramtdb_last_error());
    g_assert_cmpint(r, <, 0);
    /* Close reports the failure too: the writes may be lost. */
    g_assert_cmpint(nvramtdb_close(db), <, 0);

    db = tu_start_uri(s->uri, 0, blobs, N_BLOBS, NULL);
    if (!db)
        g_error("reopen after write errors: %s", nvramtdb_last_error());
    value absent = { false, 0, 0 };
    assert_value(db, BLOB_A, &v1, "acknowledged before the errors");
    assert_value(db, BLOB_B, &absent, "the failed commit");
    assert_value(db, BLOB_C, &absent, "the refused commit");
    tu_assert_healthy(db);
    TU_OK(nvramtdb_write(db, blobs[BLOB_C].name, value_bytes(&v3), v3.len,
                         NVRAMTDB_WAIT_COMPLETION, NULL, NULL));
    TU_OK(nvramtdb_close(db));
    server_free(s);
    tu_rmtree(dir);
    g_free(dir);
    g_free(trigger);
    g_free(file_param);
}

static void on_done(void *opaque, int errcode, bool is_write, uint8_t *data, size_t len)
{
    tu_on_complete(opaque, errcode, is_write, data, len);
}

/* The server dies while a commit waits in its delay filter (each write
 * takes 1 s there); it is restarted on the same file.  The outcome does
 * not depend on the timing: a kill before the write reaches the server
 * fails the commit just the same. */
static void test_server_dies(void)
{
    if (!have("nbdkit"))
        return;
    /* Formatted by a plain server, then served again through the delay
     * filter on the same file. */
    server *s = server_new(NBDKIT_FILE, NULL);
    value v1 = { true, 100, 1 }, v2 = { true, 20000, 2 }, v3 = { true, 100, 6 };

    nvramtdb *db = tu_start_uri(s->uri, NVRAMTDB_OPEN_CREATE, blobs, N_BLOBS, NULL);
    g_assert_nonnull(db);
    TU_OK(nvramtdb_write(db, blobs[BLOB_A].name, value_bytes(&v1), v1.len,
                         NVRAMTDB_WAIT_COMPLETION, NULL, NULL));
    TU_OK(nvramtdb_close(db));
    server_stop(s, SIGTERM);
    const char *slow[] = { "--filter=delay", "delay-write=1", NULL };
    g_strfreev(s->extra);
    s->extra = g_strdupv((char **)slow);
    server_run(s);

    db = tu_start_uri(s->uri, 0, blobs, N_BLOBS, NULL);
    g_assert_nonnull(db);
    tu_completion done = { 0 };
    TU_OK(nvramtdb_write(db, blobs[BLOB_B].name, value_bytes(&v2), v2.len, NVRAMTDB_ASYNC,
                         on_done, &done));
    g_usleep(300000);         /* the commit's write is in the server now */
    server_stop(s, SIGKILL);
    int r = nvramtdb_flush(db);
    g_test_message("commit cut by the server's death: %d, %s", r, nvramtdb_last_error());
    g_assert_cmpint(r, <, 0);
    g_assert_cmpint(done.calls, ==, 1);
    g_assert_cmpint(done.errcode, <, 0);

    g_strfreev(s->extra);
    s->extra = NULL;
    server_run(s);
    /* The old handle stays failed (latched), with a server again. */
    g_assert_cmpint(nvramtdb_write(db, blobs[BLOB_C].name, value_bytes(&v3), v3.len,
                                   NVRAMTDB_WAIT_COMPLETION, NULL, NULL), <, 0);
    /* Its close cannot release the claim (no connection): the record
     * still names this process, whose handles no longer hold it, so the
     * next open takes it over. */
    nvramtdb_close(db);
    db = tu_start_uri(s->uri, 0, blobs, N_BLOBS, NULL);
    if (!db)
        g_error("reopen after the server's restart: %s", nvramtdb_last_error());
    assert_value(db, BLOB_A, &v1, "acknowledged before the server died");
    tu_assert_healthy(db);
    TU_OK(nvramtdb_close(db));
    server_free(s);
}

/* Rewrite the host in the ownership record of the file behind an export
 * (CRC fixed), as if the holder ran on another machine. */
static void move_owner_to(const char *img, const char *host)
{
    uint8_t *bytes;
    size_t len;
    char *text;
    g_assert_true(g_file_get_contents(img, &text, &len, NULL));
    bytes = (uint8_t *)text;
    g_assert_cmpuint(len, >=, NVT_OWNER_OFFSET + NVT_OWNER_SIZE);
    uint8_t *rec = bytes + NVT_OWNER_OFFSET;
    g_assert_cmpmem(rec, 8, "NVTOWNR1", 8);
    memset(rec + 96, 0, 128);                  /* host (docs/FORMAT.md) */
    memcpy(rec + 96, host, strlen(host));
    uint32_t crc = nvt_crc32c(0, rec, 508);
    for (int i = 0; i < 4; i++)
        rec[508 + i] = (uint8_t)(crc >> (8 * i));
    FILE *f = fopen(img, "r+");
    g_assert_nonnull(f);
    g_assert_cmpint(fseek(f, NVT_OWNER_OFFSET, SEEK_SET), ==, 0);
    g_assert_cmpuint(fwrite(rec, 1, NVT_OWNER_SIZE, f), ==, NVT_OWNER_SIZE);
    g_assert_cmpint(fclose(f), ==, 0);
    g_free(text);
}

/* Two clients of one export (nbdkit serves both at once): the second
 * writer is refused naming the first, a reader too (unless it forces),
 * a takeover wins, and the writer that lost the image stops at its next
 * checkpoint; a holder on another host needs the takeover. */
static void test_two_clients(void)
{
    if (!have("nbdkit"))
        return;
    server *s = server_new(NBDKIT_FILE, NULL);
    value v1 = { true, 100, 1 }, v2 = { true, 20000, 2 }, v3 = { true, 100, 6 };
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    char *pid = g_strdup_printf("pid %d", (int)getpid());
    int rc;

    nvramtdb *db1 = tu_start_uri(s->uri, NVRAMTDB_OPEN_CREATE, blobs, N_BLOBS, NULL);
    g_assert_nonnull(db1);
    TU_OK(nvramtdb_write(db1, blobs[BLOB_A].name, value_bytes(&v1), v1.len,
                         NVRAMTDB_WAIT_COMPLETION, NULL, NULL));
    g_assert_null(tu_start_uri(s->uri, 0, blobs, N_BLOBS, &rc));
    g_test_message("second writer: %s", nvramtdb_last_error());
    TU_ASSERT_ERROR(rc, -EBUSY, s->uri, "in use by", pid, host, "takeover");
    g_assert_null(tu_start_uri(s->uri, NVRAMTDB_OPEN_READONLY, blobs, N_BLOBS, &rc));
    TU_ASSERT_ERROR(rc, -EBUSY, s->uri, "in use by", pid);
    nvramtdb *ro = tu_start_uri(s->uri, NVRAMTDB_OPEN_READONLY | NVRAMTDB_OPEN_FORCE_SHARE,
                                blobs, N_BLOBS, &rc);
    g_assert_nonnull(ro);
    TU_OK(nvramtdb_close(ro));

    /* The first writer commits more (frames in the ring), then loses the
     * image to a takeover: the new owner replays its frames. */
    TU_OK(nvramtdb_write(db1, blobs[BLOB_B].name, value_bytes(&v2), v2.len,
                         NVRAMTDB_WAIT_COMPLETION, NULL, NULL));
    nvramtdb *db2 = tu_start_uri(s->uri, NVRAMTDB_OPEN_TAKEOVER, blobs, N_BLOBS, &rc);
    if (!db2)
        g_error("takeover: %s", nvramtdb_last_error());
    assert_value(db2, BLOB_A, &v1, "after the takeover");
    assert_value(db2, BLOB_B, &v2, "after the takeover");
    /* The old writer's close checkpoints: the guard stops it. */
    rc = nvramtdb_close(db1);
    g_test_message("the writer that lost the image, at close: %s", nvramtdb_last_error());
    TU_ASSERT_ERROR(rc, -EBUSY, s->uri, "taken over by", pid);
    TU_OK(nvramtdb_write(db2, blobs[BLOB_C].name, value_bytes(&v3), v3.len,
                         NVRAMTDB_WAIT_COMPLETION, NULL, NULL));
    tu_assert_healthy(db2);

    /* Held by "another host" (the record rewritten under db2): refused
     * naming it, until a takeover. */
    move_owner_to(s->img, "elsewhere.example");
    g_assert_null(tu_start_uri(s->uri, 0, blobs, N_BLOBS, &rc));
    TU_ASSERT_ERROR(rc, -EBUSY, s->uri, "elsewhere.example", "takeover");
    nvramtdb *db3 = tu_start_uri(s->uri, NVRAMTDB_OPEN_TAKEOVER, blobs, N_BLOBS, &rc);
    g_assert_nonnull(db3);
    assert_value(db3, BLOB_C, &v3, "after the second takeover");
    TU_OK(nvramtdb_close(db3));
    /* db2 lost the image; its close has nothing to put in place. */
    nvramtdb_close(db2);
    /* Released: anyone may open it now. */
    nvramtdb *db4 = tu_start_uri(s->uri, 0, blobs, N_BLOBS, &rc);
    g_assert_nonnull(db4);
    TU_OK(nvramtdb_close(db4));
    g_free(pid);
    server_free(s);
}

/* The crash tests (test-crash*.c) model a commit as pwrite + flush on the
 * fault backend.  The NBD backend replaces that pair by one FUA write only
 * when nothing else it wrote is unflushed, which is the same durable
 * state: check it on the requests the server saw (nbdkit's log filter),
 * and that each commit is then one round trip. */
static void test_fua_ordering(void)
{
    if (!have("nbdkit"))
        return;
    char *dir = tu_tmpdir();
    char *log = g_build_filename(dir, "requests.log", NULL);
    char *log_param = g_strdup_printf("logfile=%s", log);
    const char *extra[] = { "--filter=log", log_param, NULL };
    server *s = server_new(NBDKIT_FILE, extra);

    nvramtdb *db = tu_start_uri(s->uri, NVRAMTDB_OPEN_CREATE, blobs, N_BLOBS, NULL);
    g_assert_nonnull(db);
    TU_OK(nvramtdb_close(db));
    db = tu_start_uri(s->uri, 0, blobs, N_BLOBS, NULL);
    g_assert_nonnull(db);
    size_t commits = 0;
    for (size_t i = 0; i < N_STEPS; i++) {
        const step *st = &workload[i];
        value v = step_value(st);
        if (st->is_delete)
            TU_OK(nvramtdb_delete(db, blobs[st->blob].name, NVRAMTDB_WAIT_COMPLETION, NULL,
                                  NULL));
        else
            TU_OK(nvramtdb_write(db, blobs[st->blob].name, value_bytes(&v), v.len,
                                 NVRAMTDB_WAIT_COMPLETION, NULL, NULL));
        commits++;
    }
    TU_OK(nvramtdb_close(db));
    server_stop(s, SIGTERM);

    char *text = NULL;
    g_assert_true(g_file_get_contents(log, &text, NULL, NULL));
    char **lines = g_strsplit(text, "\n", -1);
    GHashTable *unflushed = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    unsigned fua = 0, writes = 0, flushes = 0;
    for (char **l = lines; *l; l++) {
        const char *conn = strstr(*l, "connection=");
        if (!conn || strstr(*l, " ...W") || strstr(*l, " ...F"))  /* replies */
            continue;
        char *key = g_strndup(conn, strcspn(conn, " "));
        if (strstr(*l, " Write ")) {
            writes++;
            if (strstr(*l, "fua=1")) {
                fua++;
                if (g_hash_table_contains(unflushed, key))
                    g_error("a FUA write while an earlier write is unflushed: %s", *l);
            } else {
                g_hash_table_add(unflushed, g_strdup(key));
            }
        } else if (strstr(*l, " Flush ")) {
            flushes++;
            g_hash_table_remove(unflushed, key);
        }
        g_free(key);
    }
    g_test_message("%zu commits: %u FUA writes, %u writes in all, %u flushes (with the "
                   "opens, the closes' checkpoints and the formatting)", commits, fua, writes,
                   flushes);
    /* Every commit was one FUA write (nbdkit's file plugin offers FUA). */
    g_assert_cmpuint(fua, ==, commits);
    g_hash_table_destroy(unflushed);
    g_strfreev(lines);
    g_free(text);
    server_free(s);
    tu_rmtree(dir);
    g_free(dir);
    g_free(log);
    g_free(log_param);
}

/* A read-only export opens read-only only, an export too small is
 * refused with both sizes, an unreachable server names the URI. */
static void test_refusals(void)
{
    if (!have("nbdkit"))
        return;
    server *s = server_new(NBDKIT_FILE, NULL);
    nvramtdb *db = tu_start_uri(s->uri, NVRAMTDB_OPEN_CREATE, blobs, N_BLOBS, NULL);
    g_assert_nonnull(db);
    TU_OK(nvramtdb_close(db));
    server_stop(s, SIGTERM);
    const char *ro[] = { "--readonly", NULL };
    g_strfreev(s->extra);
    s->extra = g_strdupv((char **)ro);
    server_run(s);
    TU_ASSERT_ERROR(nvramtdb_open(s->uri, 0, &db), -EROFS, s->uri, "read-only");
    db = tu_start_uri(s->uri, NVRAMTDB_OPEN_READONLY, blobs, N_BLOBS, NULL);
    g_assert_nonnull(db);
    tu_assert_healthy(db);
    TU_OK(nvramtdb_close(db));
    server_stop(s, SIGTERM);

    /* 64 KiB of memory: far too small for the workload's blobs. */
    s->kind = NBDKIT_MEMORY;
    const char *small[] = { "--filter=truncate", "truncate=65536", NULL };
    g_strfreev(s->extra);
    s->extra = g_strdupv((char **)small);
    server_run(s);
    int rc;
    g_assert_null(tu_start_uri(s->uri, NVRAMTDB_OPEN_CREATE, blobs, N_BLOBS, &rc));
    TU_ASSERT_ERROR(rc, -ENOSPC, s->uri, "65536", "need");
    server_stop(s, SIGTERM);

    /* Nobody listens any more. */
    g_assert_cmpint(nvramtdb_open(s->uri, 0, &db), <, 0);
    g_assert_nonnull(strstr(nvramtdb_last_error(), s->uri));
    g_assert_nonnull(strstr(nvramtdb_last_error(), "cannot connect"));
    server_free(s);
}

int main(int argc, char **argv)
{
    test_init_keep_going(&argc, argv);
    char *q = g_find_program_in_path("qemu-nbd"), *k = g_find_program_in_path("nbdkit");
    bool none = !q && !k;
    g_free(q);
    g_free(k);
    if (none) {
        g_print("1..0 # SKIP neither qemu-nbd nor nbdkit is installed "
                "(install qemu-utils or nbdkit)\n");
        return 77;
    }
    for (int kind = 0; kind < N_KINDS; kind++) {
        add_test(GINT_TO_POINTER(kind), test_workload, "/nbd/%s/workload", kind_names[kind]);
        add_test(GINT_TO_POINTER(kind), test_kill9, "/nbd/%s/kill9-writer", kind_names[kind]);
    }
    g_test_add_func("/nbd/qemu-nbd-qcow2/snapshot", test_qcow2_snapshot);
    g_test_add_func("/nbd/nbdkit/write-errors", test_write_errors);
    g_test_add_func("/nbd/nbdkit/server-dies-mid-commit", test_server_dies);
    g_test_add_func("/nbd/nbdkit/refusals", test_refusals);
    g_test_add_func("/nbd/nbdkit/fua-ordering", test_fua_ordering);
    g_test_add_func("/nbd/nbdkit/two-clients", test_two_clients);
    return run_tests();
}
