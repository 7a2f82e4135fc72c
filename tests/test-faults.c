/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * test-faults.c — I/O errors injected at every write and every flush: the
 * error contract of nvramtdb_write() and nvramtdb_delete() (nvramtdb.h)
 * and the Durable and Atomic contracts of docs/ARCHITECTURE.md when the
 * storage fails with EIO or ENOSPC.
 *
 * A scripted workload (creates, replaces at sizes 0, small, in-between and
 * maximum, deletes, re-creates after delete) runs on a formatted memory
 * image wrapped in the fault backend.  For every counted pwrite and every
 * flush N of the workload, EIO or ENOSPC is injected at N, once
 * (transient) or from N on (persistent).  Checked:
 *
 *   - the call during which the fault fired fails with a negative errno
 *     (the injected one, or EIO) and a message — never 0, also when the
 *     fault hits the last write or flush of the commit (a latched error is
 *     never reported as success); its completion callback runs once with
 *     the same status;
 *   - values acknowledged before stay intact and readable; the blob of the
 *     failed request holds its old value or the new one, never a mix;
 *   - after a transient fault the handle keeps working: every later
 *     request succeeds and reads back, and the handle's image is healthy;
 *   - after a persistent fault every later request fails with an error,
 *     without crash or hang; reads give the right bytes or an error;
 *   - the bytes left on the backing store start (after any repair: journal
 *     replay or tdb recovery), pass nvramtdb_check() and hold exactly the
 *     values above.
 *
 * Plus: -EFBIG does no I/O and changes nothing; ENOSPC at any flush of a
 * commit is reported as ENOSPC or EIO; an error at the last write or the
 * last flush of a commit fails the call.
 *
 * Everything runs for both commit modes: the journal (default) and tdb's
 * own transactions (NVRAMTDB_OPEN_STOCK_COMMIT).  A sweep stops at its
 * first violation and prints it with the mode, errno, operation index,
 * step, blob and values.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "testutil.h"
#include "workload.h"

/* ---- the workload (the same script as test-crash.c) --------------------- */


/* ---- reporting ---------------------------------------------------------- */

/*
 * A sweep stops at its first violation: the message (mode, errno, the
 * operation index, step, blob, expected and observed values) goes to the
 * test log, the test is marked failed, and the other tests still run.
 */

/* ---- requests with their completions ------------------------------------ */

static int do_step(nvramtdb *db, const step *s, tu_completion *c)
{
    const char *name = blobs[s->blob].name;
    *c = (tu_completion){ 0 };
    if (s->is_delete)
        return nvramtdb_delete(db, name, NVRAMTDB_WAIT_COMPLETION, tu_on_complete, c);
    value v = step_value(s);
    return nvramtdb_write(db, name, value_bytes(&v), v.len, NVRAMTDB_WAIT_COMPLETION,
                          tu_on_complete, c);
}

/* ---- reading back ------------------------------------------------------- */




static char *seen_describe(const seen *s)
{
    if (s->rc == -ENOENT)
        return g_strdup("no value (-ENOENT)");
    if (s->rc < 0)
        return g_strdup_printf("a read error %d (%s)", s->rc, g_strerror(-s->rc));
    return g_strdup_printf("%zu bytes%s", s->len, s->len ? " (not a value ever written)" : "");
}

/*
 * What each blob may hold: its acknowledged value, or (for the blob of a
 * failed request whose outcome is not known) also the failed request's.
 */
typedef struct expect {
    value acked[N_BLOBS];
    bool either[N_BLOBS];      /* acked or alt */
    value alt[N_BLOBS];
} expect;

enum { OLD = 0, NEW = 1, READ_ERROR = 2 };

/* Read blob @b and match it against @e: OLD, NEW, READ_ERROR (only when
 * @error_ok), or -1 after reporting a violation. */
static int match_blob(nvramtdb *db, const expect *e, int b, bool error_ok, const char *ctx,
                      const char *where)
{
    seen s;
    int which = -1;

    seen_read(db, b, &s);
    if (seen_is(&s, &e->acked[b]))
        which = OLD;
    else if (e->either[b] && seen_is(&s, &e->alt[b]))
        which = NEW;
    else if (error_ok && s.rc < 0 && s.rc != -ENOENT)
        which = READ_ERROR;
    if (which < 0) {
        char *got = seen_describe(&s), *old = value_describe(&e->acked[b]);
        char *alt = e->either[b] ? value_describe(&e->alt[b]) : NULL;
        violation("%s, %s: blob %s holds %s; expected %s%s%s%s", ctx, where, blobs[b].name,
                  got, old, alt ? " or the failed request's " : "", alt ? alt : "",
                  error_ok ? " (or a read error)" : "");
        g_free(got);
        g_free(old);
        g_free(alt);
    }
    free(s.data);
    return which;
}



/* Start a copy of @img read-write (in commit mode @commit), check it and
 * match every blob. */
static bool reopen_and_verify(commit_mode commit, const uint8_t *img, size_t len,
                              const expect *e, const char *ctx, unsigned long *new_count)
{
    int rc;
    bool ok;
    nvramtdb *db = tu_start(nvt_mem_backend_new(img, len), commit_flags[commit], blobs,
                            N_BLOBS, &rc);

    if (!db)
        return violation("%s, reopening the backing bytes: start failed: %d (%s): %s", ctx,
                         rc, g_strerror(-rc), nvramtdb_last_error());
    ok = healthy(db, ctx, "reopened");
    for (int b = 0; b < N_BLOBS && ok; b++) {
        int which = match_blob(db, e, b, false, ctx, "reopened");
        ok = which >= 0;
        if (which == NEW && new_count)
            (*new_count)++;
    }
    nvramtdb_close(db);
    return ok;
}

/* ---- fixture: the formatted image and where the workload's ops fall ----- */

typedef struct fixture {
    const uint8_t *formatted;
    size_t formatted_len;
    /* Counted from the end of start: writes and flushes before step i. */
    uint64_t writes_before[N_STEPS + 1];
    uint64_t flushes_before[N_STEPS + 1];
} fixture;

static fixture fixtures[N_COMMITS];

/* A handle in commit mode @commit on a copy of @img through a fault
 * backend over a flush-counting backend over a memory backend; *fault and
 * *inner (the counting one) receive both (close *fault after the handle:
 * it owns *inner). */
static nvramtdb *start_on_fault(commit_mode commit, const uint8_t *img, size_t len,
                                nvt_backend **fault, nvt_backend **inner)
{
    int rc;
    *inner = nvt_counting_backend_new(nvt_mem_backend_new(img, len));
    *fault = nvt_fault_backend_new(*inner);
    g_assert_nonnull(*fault);
    nvramtdb *db = tu_start(nvt_be_borrow(*fault), commit_flags[commit], blobs, N_BLOBS,
                            &rc);
    if (!db)
        g_error("start on a fault backend: %d (%s)", rc, nvramtdb_last_error());
    return db;
}

static uint64_t writes_of(nvt_backend *fault, nvt_backend *inner)
{
    return nvt_fault_op_count(fault) - nvt_counting_backend_flushes(inner);
}

static const fixture *get_fixture(commit_mode commit)
{
    fixture *fx = &fixtures[commit];
    if (fx->formatted)
        return fx;

    fx->formatted = formatted_image(commit, &fx->formatted_len);
    nvt_backend *fault, *inner;
    tu_completion c;
    nvramtdb *db = start_on_fault(commit, fx->formatted, fx->formatted_len, &fault, &inner);
    uint64_t w0 = writes_of(fault, inner), f0 = nvt_counting_backend_flushes(inner);
    for (size_t i = 0; i <= N_STEPS; i++) {
        fx->writes_before[i] = writes_of(fault, inner) - w0;
        fx->flushes_before[i] = nvt_counting_backend_flushes(inner) - f0;
        if (i < N_STEPS)
            TU_OK(do_step(db, &workload[i], &c));
    }
    nvramtdb_close(db);
    nvt_be_close(fault);
    return fx;
}

/* The step during which the @n-th write (or flush) of the workload runs. */
static size_t step_of(const uint64_t before[N_STEPS + 1], uint64_t n)
{
    size_t i = 0;
    while (i < N_STEPS && before[i + 1] < n)
        i++;
    return i;
}

/* ---- the injection sweeps ----------------------------------------------- */

typedef struct fault_case {
    commit_mode commit;
    nvt_fault_mode mode;      /* TRANSIENT or PERSISTENT */
    int err;                  /* EIO or ENOSPC */
    nvt_fault_ops on;         /* count writes or flushes */
} fault_case;

static const char *mode_name(nvt_fault_mode mode)
{
    return mode == NVT_FAULT_TRANSIENT ? "transient" : "persistent";
}

static const char *err_name(int err)
{
    return err == EIO ? "EIO" : err == ENOSPC ? "ENOSPC" : "errno";
}

static const char *kind_name(nvt_fault_ops on)
{
    return on == NVT_FAULT_ON_WRITE ? "write" : "flush";
}

typedef struct sweep_stats {
    unsigned long runs;
    unsigned long kept_old;    /* failed request's blob kept its old value */
    unsigned long took_new;    /* ... holds the failed request's value */
    unsigned long as_eio;      /* an injected ENOSPC reported as EIO */
} sweep_stats;

/*
 * One run: inject @fc at the @n-th counted operation of its kind, run the
 * whole workload, and check everything the header comment promises.
 */
static bool inject_and_run(const fixture *f, const fault_case *fc, uint64_t n,
                           sweep_stats *st)
{
    const uint64_t *before = fc->on == NVT_FAULT_ON_WRITE ? f->writes_before
                                                          : f->flushes_before;
    size_t fail_step = step_of(before, n);
    nvt_backend *fault, *inner;
    nvramtdb *db = start_on_fault(fc->commit, f->formatted, f->formatted_len, &fault, &inner);
    expect e = { 0 };
    int failed = -1;
    char ctx[256];
    bool ok = true;

    snprintf(ctx, sizeof ctx, "%s: %s %s at %s %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT
             " (step %zu, %s, blob %s)", commit_names[fc->commit], mode_name(fc->mode),
             err_name(fc->err), kind_name(fc->on), n, before[N_STEPS], fail_step + 1,
             workload[fail_step].slug, blobs[workload[fail_step].blob].name);
    nvt_fault_arm(fault, fc->mode, fc->on, n, fc->err);

    for (size_t i = 0; i < N_STEPS && ok; i++) {
        const step *s = &workload[i];
        tu_completion c;
        bool fired_before = nvt_fault_fired(fault);
        int rc = do_step(db, s, &c);
        bool fired_now = !fired_before && nvt_fault_fired(fault);

        if (c.calls > 1 || (c.calls == 1 && (c.errcode != rc || !c.is_write)) ||
            (rc == 0 && c.calls != 1))
            ok = violation("%s: step %zu (%s) returned %d but its callback ran %d times, "
                           "last with %d", ctx, i + 1, s->slug, rc, c.calls, c.errcode);
        else if (fired_now) {
            /* The request during which the fault fired. */
            if (rc == 0)
                ok = violation("%s: step %zu (%s) returned 0 although its %s failed", ctx,
                               i + 1, s->slug, kind_name(fc->on));
            else if (rc != -fc->err && rc != -EIO)
                ok = violation("%s: step %zu (%s) returned %d (%s), expected -%s or -EIO",
                               ctx, i + 1, s->slug, rc, g_strerror(-rc), err_name(fc->err));
            else if (!nvramtdb_last_error()[0])
                ok = violation("%s: step %zu (%s) failed without a message", ctx, i + 1,
                               s->slug);
            else if (c.calls != 1)
                ok = violation("%s: step %zu (%s) failed with %d but its callback was not "
                               "called", ctx, i + 1, s->slug, rc);
            else if (i != fail_step)
                ok = violation("%s: the fault fired during step %zu (%s), expected step %zu",
                               ctx, i + 1, s->slug, fail_step + 1);
            if (!ok)
                break;
            if (rc == -EIO && fc->err != EIO)
                st->as_eio++;
            failed = (int)i;
            e.either[s->blob] = true;
            e.alt[s->blob] = step_value(s);
            /* Everything acknowledged before is intact and readable (or,
             * with the storage gone for good, at worst unreadable). */
            bool error_ok = fc->mode == NVT_FAULT_PERSISTENT;
            for (int b = 0; b < N_BLOBS && ok; b++) {
                int which = match_blob(db, &e, b, error_ok, ctx, "right after the failure");
                ok = which >= 0;
                if (which == OLD && e.either[b] && fc->mode == NVT_FAULT_TRANSIENT) {
                    e.either[b] = false;           /* settled: old */
                    st->kept_old++;
                } else if (which == NEW && fc->mode == NVT_FAULT_TRANSIENT) {
                    e.acked[b] = e.alt[b];         /* settled: new */
                    e.either[b] = false;
                    st->took_new++;
                }
            }
        } else if (rc == 0) {
            if (failed >= 0 && fc->mode == NVT_FAULT_PERSISTENT)
                ok = violation("%s: step %zu (%s) succeeded after a persistent error", ctx,
                               i + 1, s->slug);
            e.acked[s->blob] = step_value(s);
            e.either[s->blob] = false;
            if (ok && fc->mode == NVT_FAULT_TRANSIENT)
                ok = match_blob(db, &e, s->blob, false, ctx, "read back after writing") >= 0;
        } else if (failed < 0 || fc->mode == NVT_FAULT_TRANSIENT) {
            ok = violation("%s: step %zu (%s) failed with %d (%s) %s: %s", ctx, i + 1,
                           s->slug, rc, g_strerror(-rc),
                           failed < 0 ? "before the fault fired" : "after a transient fault",
                           nvramtdb_last_error());
        } else if (rc > 0 || !nvramtdb_last_error()[0]) {
            ok = violation("%s: step %zu (%s) after the persistent fault returned %d with "
                           "message '%s'", ctx, i + 1, s->slug, rc, nvramtdb_last_error());
        }
    }
    if (ok && failed < 0)
        ok = violation("%s: the fault never fired (op count %" G_GUINT64_FORMAT ")", ctx,
                       nvt_fault_op_count(fault));
    if (ok && fc->mode == NVT_FAULT_TRANSIENT) {
        for (int b = 0; b < N_BLOBS && ok; b++)
            ok = match_blob(db, &e, b, false, ctx, "at the end of the workload") >= 0;
        ok = ok && healthy(db, ctx, "at the end of the workload");
    }
    if (ok && fc->mode == NVT_FAULT_PERSISTENT) {
        /* Inspection calls must return, whatever they say. */
        nvramtdb_entry *entries = NULL;
        size_t count = 0;
        if (nvramtdb_list(db, sizeof(nvramtdb_entry), &entries, &count) == 0)
            free(entries);
        (void)nvramtdb_check(db, NULL, NULL);
        (void)nvramtdb_flush(db);
    }
    nvramtdb_close(db);

    if (ok) {
        size_t len;
        uint8_t *bytes = tu_mem_copy(inner, &len);
        unsigned long took_new = 0;
        ok = reopen_and_verify(fc->commit, bytes, len, &e, ctx, &took_new);
        g_free(bytes);
        if (fc->mode == NVT_FAULT_PERSISTENT) {
            st->took_new += took_new;
            st->kept_old += ok && !took_new;
        }
    }
    nvt_be_close(fault);
    st->runs++;
    return ok;
}

/* An injected error at any write (or flush) of the workload fails exactly
 * the request it hit, with an error and a message; nothing acknowledged
 * is lost; a transient error leaves a working handle, a persistent one a
 * handle that fails cleanly; the bytes on the store start and are
 * healthy. */
static void test_fault_at_each_op(gconstpointer data)
{
    const fault_case *fc = data;
    const fixture *f = get_fixture(fc->commit);
    const uint64_t *before = fc->on == NVT_FAULT_ON_WRITE ? f->writes_before
                                                          : f->flushes_before;
    uint64_t count = before[N_STEPS];
    sweep_stats st = { 0 };
    bool ok = true;

    g_assert_cmpuint(count, >, 0);
    for (uint64_t n = 1; n <= count && ok; n++)
        ok = inject_and_run(f, fc, n, &st);

    /* One past the last operation: the fault never fires. */
    if (ok) {
        nvt_backend *fault, *inner;
        nvramtdb *db = start_on_fault(fc->commit, f->formatted, f->formatted_len, &fault,
                                      &inner);
        tu_completion c;
        nvt_fault_arm(fault, fc->mode, fc->on, count + 1, fc->err);
        for (size_t i = 0; i < N_STEPS; i++)
            TU_OK(do_step(db, &workload[i], &c));
        g_assert_false(nvt_fault_fired(fault));
        nvramtdb_close(db);
        nvt_be_close(fault);
    }
    g_test_message("%s: %s %s at each of %" G_GUINT64_FORMAT " %s: %lu runs; the failed "
                   "request's blob kept its old value in %lu, holds the new one in %lu; "
                   "%lu reported as EIO", commit_names[fc->commit], mode_name(fc->mode),
                   err_name(fc->err), count,
                   fc->on == NVT_FAULT_ON_WRITE ? "writes" : "flushes", st.runs, st.kept_old, st.took_new, st.as_eio);
}

/* ---- specific behaviours ------------------------------------------------ */

/* Writes and flushes that one write request makes (on the fixture image). */
static void ops_of_one_write(commit_mode commit, uint64_t *writes, uint64_t *flushes)
{
    const fixture *f = get_fixture(commit);
    nvt_backend *fault, *inner;
    nvramtdb *db = start_on_fault(commit, f->formatted, f->formatted_len, &fault, &inner);
    tu_completion c;
    uint64_t w0 = writes_of(fault, inner), f0 = nvt_counting_backend_flushes(inner);

    TU_OK(do_step(db, &workload[0], &c));
    *writes = writes_of(fault, inner) - w0;
    *flushes = nvt_counting_backend_flushes(inner) - f0;
    nvramtdb_close(db);
    nvt_be_close(fault);
    g_assert_cmpuint(*writes, >, 0);
    g_assert_cmpuint(*flushes, >, 0);
}

/* Write "dev0/a" (100 bytes) with a fault armed on the @n-th op of kind
 * @on; the call must fail with -@err or -EIO; the blob then holds nothing
 * or the value; a transient error leaves the handle working. */
static void fail_one_write(commit_mode commit, nvt_fault_mode mode, nvt_fault_ops on,
                           uint64_t n, int err, const char *what)
{
    const fixture *f = get_fixture(commit);
    nvt_backend *fault, *inner;
    nvramtdb *db = start_on_fault(commit, f->formatted, f->formatted_len, &fault, &inner);
    tu_completion c;
    expect e = { 0 };
    char ctx[192];

    snprintf(ctx, sizeof ctx, "%s: %s %s at %s", commit_names[commit], mode_name(mode),
             err_name(err), what);
    nvt_fault_arm(fault, mode, on, n, err);
    int rc = do_step(db, &workload[0], &c);
    g_assert_true(nvt_fault_fired(fault));
    if (rc == 0) {
        violation("%s: the write returned 0", ctx);
    } else if (rc != -err && rc != -EIO) {
        violation("%s: the write returned %d (%s), expected -%s or -EIO", ctx, rc,
                  g_strerror(-rc), err_name(err));
    } else {
        g_assert_cmpstr(nvramtdb_last_error(), !=, "");
        g_assert_cmpint(c.calls, ==, 1);
        g_assert_cmpint(c.errcode, ==, rc);
        e.either[BLOB_A] = true;
        e.alt[BLOB_A] = step_value(&workload[0]);
        if (match_blob(db, &e, BLOB_A, mode == NVT_FAULT_PERSISTENT, ctx, "after") >= 0 &&
            mode == NVT_FAULT_TRANSIENT) {
            TU_OK(do_step(db, &workload[3], &c));
            e.acked[BLOB_A] = step_value(&workload[3]);
            e.either[BLOB_A] = false;
            match_blob(db, &e, BLOB_A, false, ctx, "after the next write");
        }
    }
    nvramtdb_close(db);
    size_t len;
    uint8_t *bytes = tu_mem_copy(inner, &len);
    reopen_and_verify(commit, bytes, len, &e, ctx, NULL);
    g_free(bytes);
    nvt_be_close(fault);
}

/* A write above the blob's maximum fails with -EFBIG and a message before
 * any I/O: no operation reaches the backend, the callback is not called
 * and the old value stays. */
static void test_efbig_does_no_io(gconstpointer data)
{
    commit_mode commit = GPOINTER_TO_INT(data);
    const fixture *f = get_fixture(commit);
    nvt_backend *fault, *inner;
    nvramtdb *db = start_on_fault(commit, f->formatted, f->formatted_len, &fault, &inner);
    tu_completion c;
    expect e = { 0 };

    TU_OK(do_step(db, &workload[0], &c));
    e.acked[BLOB_A] = step_value(&workload[0]);
    uint64_t ops = nvt_fault_op_count(fault);
    uint8_t *big = g_malloc0(blobs[BLOB_A].max_size + 1);
    c = (tu_completion){ 0 };
    int rc = nvramtdb_write(db, blobs[BLOB_A].name, big, blobs[BLOB_A].max_size + 1,
                            NVRAMTDB_WAIT_COMPLETION, tu_on_complete, &c);
    g_free(big);
    g_assert_cmpint(rc, ==, -EFBIG);
    g_assert_cmpstr(nvramtdb_last_error(), !=, "");
    g_assert_cmpint(c.calls, ==, 0);
    g_assert_cmpuint(nvt_fault_op_count(fault), ==, ops);
    g_assert_cmpint(match_blob(db, &e, BLOB_A, false, "EFBIG", "after"), ==, OLD);
    nvramtdb_close(db);

    size_t len;
    uint8_t *bytes = tu_mem_copy(inner, &len);
    reopen_and_verify(commit, bytes, len, &e, "EFBIG", NULL);
    g_free(bytes);
    nvt_be_close(fault);
}

/* fail_one_write() with the fault transient, then persistent. */
static void fail_one_write_both_modes(commit_mode commit, nvt_fault_ops on, uint64_t n, int err,
                                      const char *what)
{
    fail_one_write(commit, NVT_FAULT_TRANSIENT, on, n, err, what);
    fail_one_write(commit, NVT_FAULT_PERSISTENT, on, n, err, what);
}

/* ENOSPC injected at any flush of a commit (transient or persistent) is
 * reported as -ENOSPC or -EIO, never as success. */
static void test_enospc_at_each_flush_of_a_commit(gconstpointer data)
{
    commit_mode commit = GPOINTER_TO_INT(data);
    uint64_t writes, flushes;
    char what[64];

    ops_of_one_write(commit, &writes, &flushes);
    for (uint64_t k = 1; k <= flushes; k++) {
        snprintf(what, sizeof what, "flush %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT
                 " of a commit", k, flushes);
        fail_one_write_both_modes(commit, NVT_FAULT_ON_FLUSH, k, ENOSPC, what);
    }
}

/* EIO at the last operation of kind @on (write or flush) of a commit,
 * transient and persistent. */
static void error_at_last_op_of_commit(commit_mode commit, nvt_fault_ops on)
{
    uint64_t writes, flushes;
    char what[64];

    ops_of_one_write(commit, &writes, &flushes);
    snprintf(what, sizeof what, "the last %s of a commit", kind_name(on));
    fail_one_write_both_modes(commit, on, on == NVT_FAULT_ON_WRITE ? writes : flushes, EIO,
                              what);
}

/* An error at the last write of a commit (with stock commits, tdb's
 * "clear the recovery magic", whose failure tdb_transaction_commit()
 * ignores; with the journal, the last in-place page write) fails the call:
 * a latched error is never reported as success. */
static void test_error_at_last_write_of_commit(gconstpointer data)
{
    error_at_last_op_of_commit(GPOINTER_TO_INT(data), NVT_FAULT_ON_WRITE);
}

/* An error at the last flush of a commit fails the call. */
static void test_error_at_last_flush_of_commit(gconstpointer data)
{
    error_at_last_op_of_commit(GPOINTER_TO_INT(data), NVT_FAULT_ON_FLUSH);
}

/*
 * REGRESSION (fixed by 1c7ad06; journal): a device ENOSPC on a journal
 * record write was taken for "journal ring full".  The journal's append
 * returned -ENOSPC as its "ring full, checkpoint first" sentinel, and
 * nvt_vfile_group_commit() checkpointed and retried on -ENOSPC, but the
 * same value also comes back from nvt_be_pwrite() when the storage itself
 * fails with ENOSPC.  That device error was never latched nor reported:
 * the group checkpointed, rewrote its record at the start of the ring
 * and, if that write worked, the request returned 0.  (Sweep
 * /faults/journal/transient/ENOSPC/at-each-write, write 1 of 16.)  Now the
 * group checks nvt_journal_fits() first, and a failed append is a storage
 * error that fails the request like EIO does.
 */
static void test_device_enospc_is_not_ring_full(void)
{
    const fixture *f = get_fixture(COMMIT_JOURNAL);
    nvt_backend *fault, *inner;
    nvramtdb *db = start_on_fault(COMMIT_JOURNAL, f->formatted, f->formatted_len, &fault,
                                  &inner);
    tu_completion c;

    nvt_fault_arm(fault, NVT_FAULT_TRANSIENT, NVT_FAULT_ON_WRITE, 1, ENOSPC);
    int rc = do_step(db, &workload[0], &c);
    g_assert_true(nvt_fault_fired(fault));
    if (rc == 0)
        violation("journal: transient ENOSPC at the first write of a commit: the write "
                  "returned 0");
    else if (rc != -ENOSPC && rc != -EIO)
        violation("journal: transient ENOSPC at the first write of a commit: the write "
                  "returned %d (%s)", rc, g_strerror(-rc));
    nvramtdb_close(db);
    nvt_be_close(fault);
}



int main(int argc, char **argv)
{
    static const nvt_fault_mode modes[] = { NVT_FAULT_TRANSIENT, NVT_FAULT_PERSISTENT };
    static const int errs[] = { EIO, ENOSPC };
    static const nvt_fault_ops kinds[] = { NVT_FAULT_ON_WRITE, NVT_FAULT_ON_FLUSH };
    static fault_case cases[N_COMMITS][2][2][2];

    test_init_keep_going(&argc, argv);
    for (int c = 0; c < N_COMMITS; c++) {
        const char *cn = commit_names[c];
        gconstpointer cd = GINT_TO_POINTER(c);
        for (int m = 0; m < 2; m++)
            for (int e = 0; e < 2; e++)
                for (int k = 0; k < 2; k++) {
                    cases[c][m][e][k] = (fault_case){ (commit_mode)c, modes[m], errs[e],
                                                      kinds[k] };
                    add_test(&cases[c][m][e][k], test_fault_at_each_op,
                             "/faults/%s/%s/%s/at-each-%s", cn, mode_name(modes[m]),
                             err_name(errs[e]), kind_name(kinds[k]));
                }
        add_test(cd, test_efbig_does_no_io, "/faults/%s/efbig-does-no-io", cn);
        add_test(cd, test_enospc_at_each_flush_of_a_commit,
                 "/faults/%s/enospc-at-each-flush-of-a-commit-is-reported", cn);
        add_test(cd, test_error_at_last_write_of_commit,
                 "/faults/%s/error-at-last-write-of-commit-fails-the-call", cn);
        add_test(cd, test_error_at_last_flush_of_commit,
                 "/faults/%s/error-at-last-flush-of-commit-fails-the-call", cn);
    }
    g_test_add_func("/faults/journal/device-enospc-is-not-ring-full",
                    test_device_enospc_is_not_ring_full);
    return run_tests();
}
