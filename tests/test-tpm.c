/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * test-tpm.c — the libtpms device of tpm/nvtpm.h, driven with raw TPM 2.0
 * command bytes (marshalled with tpm/tpm2-cmd.h and the helpers below,
 * with the empty password session TPM_RS_PW where a command needs
 * authorisation).
 *
 * Checked: Startup and GetRandom on a new (manufactured) TPM; NV indices
 * defined, written, read and incremented; everything still there after
 * Shutdown, power off, close and reopen of the same image file; saved
 * volatile state restored once and then deleted; a storage failure (fault
 * backend, EIO at each write and each flush of the failing command's
 * commit, journal and stock tdb commits) fails that command with -EIO, a
 * TPM_RC_FAILURE response and a message and log line naming the cause,
 * leaves libtpms in failure mode, and leaves a healthy image holding the
 * old value or the new one, never a mix; an unloadable permanent state
 * fails the power-on instead of manufacturing a new TPM over it; NV filled
 * until TPM_RC_NV_SPACE still fits in nvtpm_permall_max() and the volatile
 * state with every object and session slot in use in
 * nvtpm_volatilestate_max() (the sizes are printed with g_test_message);
 * state blobs move a TPM to another image; state blobs set on a device
 * holding another TPM are only staged (the image keeps the old state whole,
 * no commit, until the power-on commits them in one batch; discarded by
 * close, power-off, a refused blob; a failed batch changes nothing);
 * errors when not powered; the
 * callback form; the established flag and localities; one TPM per process;
 * nvtpm_execute_unsynced() does not wait for its flush (a flush fault does
 * not fail it), the next call waits and then the value is durable, or
 * fails with the fault (TPM_RC_FAILURE, the blob named, the TPM powered
 * off) and the image is healthy.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "nvtpm.h"
/* nvtpm's calls leave their messages in nvtpm_last_error(). */
#define TU_LAST_ERROR() nvtpm_last_error()
#include "testutil.h"
#include "tpm2-cmd.h"

/* ---- TPM 2.0 constants used here (besides those of tpm2-cmd.h) ---------- */
#define CC_CreatePrimary     0x00000131
#define CC_Shutdown          0x00000145
#define CC_NV_ReadPublic     0x00000169
#define CC_StartAuthSession  0x00000176
#define CC_GetRandom         0x0000017b

#define RC_SUCCESS          0x000
#define RC_FAILURE          0x101
#define RC_INITIALIZE       0x100
#define RC_NV_SPACE         0x14b
#define RC_NV_UNINITIALIZED 0x14a
#define RC_RETRY            0x922

#define RH_NULL  0x40000007

#define ALG_NULL   0x0010
#define ALG_ECDSA  0x0018
#define ALG_RSA    0x0001
#define ALG_RSASSA 0x0014
#define ALG_ECC    0x0023
#define ECC_NIST_P256 0x0003

#define NV_AUTHWRITE 0x00000004u
#define NV_AUTHREAD  0x00040000u
#define NT_COUNTER   0x00000010u

#define NV_INDEX_BASE 0x01500000u

/* ---- marshalling (the commands tpm2-cmd.h does not build) ----------------- */

/* Commands up to the largest the device takes. */
G_STATIC_ASSERT(TPM2_CMD_MAX == NVTPM_BUFFER_MAX);

static void cmd_shutdown(tpm2_cmdbuf *c)
{
    tpm2_cmd_begin(c, TPM2_ST_NO_SESSIONS, CC_Shutdown);
    tpm2_put16(c, TPM2_SU_CLEAR);
    tpm2_cmd_end(c);
}

static void cmd_get_random(tpm2_cmdbuf *c, uint16_t n)
{
    tpm2_cmd_begin(c, TPM2_ST_NO_SESSIONS, CC_GetRandom);
    tpm2_put16(c, n);
    tpm2_cmd_end(c);
}

static void cmd_nv_read_public(tpm2_cmdbuf *c, uint32_t index)
{
    tpm2_cmd_begin(c, TPM2_ST_NO_SESSIONS, CC_NV_ReadPublic);
    tpm2_put32(c, index);
    tpm2_cmd_end(c);
}

/* An unsalted, unbound HMAC session. */
static void cmd_start_auth_session(tpm2_cmdbuf *c)
{
    static const uint8_t nonce[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
    tpm2_cmd_begin(c, TPM2_ST_NO_SESSIONS, CC_StartAuthSession);
    tpm2_put32(c, RH_NULL);         /* tpmKey */
    tpm2_put32(c, RH_NULL);         /* bind */
    tpm2_put16(c, sizeof nonce);
    tpm2_put_bytes(c, nonce, sizeof nonce);
    tpm2_put16(c, 0);               /* encryptedSalt */
    tpm2_put8(c, 0);                /* TPM_SE_HMAC */
    tpm2_put16(c, ALG_NULL);        /* symmetric */
    tpm2_put16(c, TPM2_ALG_SHA256); /* authHash */
    tpm2_cmd_end(c);
}

/* A signing primary key in the null hierarchy: RSA 2048 (the largest
 * objects, for the volatile state's size) or ECC P-256. */
static void cmd_create_primary(tpm2_cmdbuf *c, bool rsa)
{
    tpm2_cmd_begin(c, TPM2_ST_SESSIONS, CC_CreatePrimary);
    tpm2_put32(c, RH_NULL);
    tpm2_put_pw_session(c);
    tpm2_put16(c, 4);               /* inSensitive: */
    tpm2_put16(c, 0);               /*   userAuth */
    tpm2_put16(c, 0);               /*   data */
    size_t at = c->n;
    tpm2_put16(c, 0);               /* inPublic.size, patched below */
    tpm2_put16(c, rsa ? ALG_RSA : ALG_ECC);
    tpm2_put16(c, TPM2_ALG_SHA256);
    tpm2_put32(c, 0x00040072);      /* fixedTPM fixedParent sensitiveDataOrigin userWithAuth sign */
    tpm2_put16(c, 0);               /* authPolicy */
    tpm2_put16(c, ALG_NULL);        /* symmetric */
    if (rsa) {
        tpm2_put16(c, ALG_RSASSA);  /* scheme */
        tpm2_put16(c, TPM2_ALG_SHA256);
        tpm2_put16(c, 2048);        /* keyBits */
        tpm2_put32(c, 0);           /* exponent: default */
        tpm2_put16(c, 0);           /* unique */
    } else {
        tpm2_put16(c, ALG_ECDSA);   /* scheme */
        tpm2_put16(c, TPM2_ALG_SHA256);
        tpm2_put16(c, ECC_NIST_P256);
        tpm2_put16(c, ALG_NULL);    /* kdf */
        tpm2_put16(c, 0);           /* unique.x */
        tpm2_put16(c, 0);           /* unique.y */
    }
    uint16_t size = (uint16_t)(c->n - at - 2);
    c->b[at] = (uint8_t)(size >> 8);
    c->b[at + 1] = (uint8_t)size;
    tpm2_put16(c, 0);               /* outsideInfo */
    tpm2_put32(c, 0);               /* creationPCR: no selection */
    tpm2_cmd_end(c);
}

/* ---- running commands ---------------------------------------------------- */

typedef struct rsp {
    uint8_t *buf;
    size_t len;
} rsp;

/* Execute @c; the call must succeed storage-wise.  Returns the TPM's
 * response code; the response stays in *r (freed by the next call).
 * TPM_RC_RETRY is retried, as a TSS does: the first DA-protected
 * authorisation after Startup answers it once, after recording in NV that
 * DA protection is in use (libtpms's USE_DA_USED). */
static uint32_t xfer(nvtpm *t, const tpm2_cmdbuf *c, rsp *r)
{
    uint32_t rc;
    int tries = 0;

    do {
        free(r->buf);
        r->buf = NULL;
        TU_OK(nvtpm_execute(t, c->b, c->n, &r->buf, &r->len));
        g_assert_nonnull(r->buf);
        g_assert_cmpuint(r->len, >=, 10);
        g_assert_cmpuint(tpm2_get32(r->buf + 2), ==, r->len);
        rc = tpm2_get32(r->buf + 6);
    } while (rc == RC_RETRY && ++tries < 3);
    return rc;
}

/* Execute @c and require TPM_RC_SUCCESS. */
#define XFER_OK(t, c, r)                                                              \
    do {                                                                              \
        uint32_t rc_ = xfer((t), (c), (r));                                           \
        if (rc_ != RC_SUCCESS)                                                        \
            g_error("command 0x%08x answered 0x%03x, expected success",               \
                    tpm2_get32((c)->b + 6), rc_);                                     \
    } while (0)

static void startup(nvtpm *t, rsp *r)
{
    tpm2_cmdbuf c;
    tpm2_cmd_startup(&c);
    XFER_OK(t, &c, r);
}

static void shutdown_clear(nvtpm *t, rsp *r)
{
    tpm2_cmdbuf c;
    cmd_shutdown(&c);
    XFER_OK(t, &c, r);
}

static void nv_define(nvtpm *t, rsp *r, uint32_t index, uint32_t attributes, uint16_t size)
{
    tpm2_cmdbuf c;
    tpm2_cmd_nv_define(&c, index, attributes, size);
    XFER_OK(t, &c, r);
}

static void nv_write(nvtpm *t, rsp *r, uint32_t index, const void *data, uint16_t len)
{
    tpm2_cmdbuf c;
    tpm2_cmd_nv_write(&c, index, index, data, len, 0);
    XFER_OK(t, &c, r);
}

/* Read @len bytes of @index and compare them with @expect. */
static void nv_assert(nvtpm *t, rsp *r, uint32_t index, const void *expect, uint16_t len)
{
    tpm2_cmdbuf c;
    tpm2_cmd_nv_read(&c, index, index, len, 0);
    XFER_OK(t, &c, r);
    g_assert_cmpuint(r->len, >=, 16u + len);
    g_assert_cmpuint(tpm2_get16(r->buf + 14), ==, len);
    g_assert_cmpmem(r->buf + 16, len, expect, len);
}

static uint64_t nv_counter(nvtpm *t, rsp *r, uint32_t index)
{
    tpm2_cmdbuf c;
    tpm2_cmd_nv_read(&c, index, index, 8, 0);
    XFER_OK(t, &c, r);
    g_assert_cmpuint(tpm2_get16(r->buf + 14), ==, 8);
    return (uint64_t)tpm2_get32(r->buf + 16) << 32 | tpm2_get32(r->buf + 20);
}

static void nv_increment(nvtpm *t, rsp *r, uint32_t index)
{
    tpm2_cmdbuf c;
    tpm2_cmd_nv_increment(&c, index, index);
    XFER_OK(t, &c, r);
}

/* ---- warnings ------------------------------------------------------------ *
 * nvtpm logs storage failures with g_warning() in the log domain "nvtpm",
 * on the device thread.  They are captured here so that the tests can
 * check them; main() keeps warnings fatal in every other domain. */

G_LOCK_DEFINE_STATIC(warnings);
static GString *warnings;

static void capture_warning(const gchar *domain, GLogLevelFlags level, const gchar *msg,
                            gpointer data)
{
    G_LOCK(warnings);
    if (!warnings)
        warnings = g_string_new(NULL);
    g_string_append_printf(warnings, "%s\n", msg);
    G_UNLOCK(warnings);
}

/* The warnings logged since the last call ("" if none); g_free() it. */
static char *take_warnings(void)
{
    G_LOCK(warnings);
    char *text = warnings ? g_string_free(warnings, FALSE) : g_strdup("");
    warnings = NULL;
    G_UNLOCK(warnings);
    return text;
}

/* ---- images -------------------------------------------------------------- */

typedef struct fixture {
    char *dir;
    char *uri;
    nvtpm *t;
    rsp r;
} fixture;

static void fixture_open(fixture *f)
{
    TU_OK(nvtpm_open(f->uri, "tpm0", NVTPM_OPEN_CREATE, &f->t));
}

static void fixture_set_up(fixture *f, gconstpointer data)
{
    f->dir = tu_tmpdir();
    f->uri = g_strdup_printf("file:%s/nvram.img", f->dir);
    fixture_open(f);
}

static void fixture_close(fixture *f)
{
    TU_OK(nvtpm_close(f->t));
    f->t = NULL;
}

static void fixture_tear_down(fixture *f, gconstpointer data)
{
    if (f->t)
        fixture_close(f);
    free(f->r.buf);
    tu_rmtree(f->dir);
    g_free(f->dir);
    g_free(f->uri);
}

/* Power on and Startup(CLEAR): a usable TPM. */
static void power_up(fixture *f)
{
    TU_OK(nvtpm_power_on(f->t));
    g_assert_true(nvtpm_is_powered(f->t));
    startup(f->t, &f->r);
}

/* Shutdown(CLEAR), power off, close, reopen the same image, power on and
 * Startup(CLEAR). */
static void restart(fixture *f)
{
    shutdown_clear(f->t, &f->r);
    TU_OK(nvtpm_power_off(f->t));
    g_assert_false(nvtpm_is_powered(f->t));
    fixture_close(f);
    TU_OK(nvtpm_open(f->uri, "tpm0", 0, &f->t));
    power_up(f);
}

static uint32_t blob_size(nvtpm *t, const char *name, bool *present)
{
    nvramtdb_entry e = tu_entry(nvtpm_image(t), name);
    if (present)
        *present = e.present;
    return e.size;
}

/* ---- tests --------------------------------------------------------------- */

static void test_startup_get_random(fixture *f, gconstpointer data)
{
    tpm2_cmdbuf c;
    bool present;

    /* The TPM was manufactured at power-on: its state is in the image. */
    TU_OK(nvtpm_power_on(f->t));
    blob_size(f->t, "tpm0/permall", &present);
    g_assert_true(present);

    /* Before Startup, commands are refused. */
    cmd_get_random(&c, 8);
    g_assert_cmphex(xfer(f->t, &c, &f->r), ==, RC_INITIALIZE);

    startup(f->t, &f->r);
    g_assert_cmphex(xfer(f->t, &c, &f->r), ==, RC_SUCCESS);
    g_assert_cmpuint(f->r.len, ==, 10 + 2 + 8);
    g_assert_cmpuint(tpm2_get16(f->r.buf + 10), ==, 8);
    g_test_message("fresh TPM: permall %u bytes", blob_size(f->t, "tpm0/permall", NULL));
}

static void test_nv_round_trip(fixture *f, gconstpointer data)
{
    uint8_t value[64];
    tpm2_cmdbuf c;

    power_up(f);
    nv_define(f->t, &f->r, NV_INDEX_BASE, NV_AUTHWRITE | NV_AUTHREAD, sizeof value);
    cmd_nv_read_public(&c, NV_INDEX_BASE);
    XFER_OK(f->t, &c, &f->r);
    g_assert_cmphex(tpm2_get32(f->r.buf + 12), ==, NV_INDEX_BASE);
    g_assert_cmpuint(tpm2_get16(f->r.buf + 24), ==, sizeof value);

    tu_fill(value, sizeof value, 1);
    nv_write(f->t, &f->r, NV_INDEX_BASE, value, sizeof value);
    nv_assert(f->t, &f->r, NV_INDEX_BASE, value, sizeof value);

    tu_fill(value, sizeof value, 2);
    nv_write(f->t, &f->r, NV_INDEX_BASE, value, sizeof value);
    nv_assert(f->t, &f->r, NV_INDEX_BASE, value, sizeof value);
}

static void test_nv_increment(fixture *f, gconstpointer data)
{
    const uint32_t index = NV_INDEX_BASE + 1;
    tpm2_cmdbuf c;

    power_up(f);
    nv_define(f->t, &f->r, index, NT_COUNTER | NV_AUTHWRITE | NV_AUTHREAD, 8);
    tpm2_cmd_nv_read(&c, index, index, 8, 0);
    g_assert_cmphex(xfer(f->t, &c, &f->r), ==, RC_NV_UNINITIALIZED);

    nv_increment(f->t, &f->r, index);
    uint64_t first = nv_counter(f->t, &f->r, index);
    for (uint64_t i = 1; i <= 5; i++) {
        nv_increment(f->t, &f->r, index);
        g_assert_cmpuint(nv_counter(f->t, &f->r, index), ==, first + i);
    }
}

static void test_restart_keeps_nv(fixture *f, gconstpointer data)
{
    const uint32_t counter = NV_INDEX_BASE + 1;
    uint8_t value[100];
    tpm2_cmdbuf c;

    power_up(f);
    tu_fill(value, sizeof value, 7);
    nv_define(f->t, &f->r, NV_INDEX_BASE, NV_AUTHWRITE | NV_AUTHREAD, sizeof value);
    nv_write(f->t, &f->r, NV_INDEX_BASE, value, sizeof value);
    nv_define(f->t, &f->r, counter, NT_COUNTER | NV_AUTHWRITE | NV_AUTHREAD, 8);
    nv_increment(f->t, &f->r, counter);
    nv_increment(f->t, &f->r, counter);
    uint64_t count = nv_counter(f->t, &f->r, counter);

    restart(f);
    nv_assert(f->t, &f->r, NV_INDEX_BASE, value, sizeof value);
    g_assert_cmpuint(nv_counter(f->t, &f->r, counter), ==, count);
    cmd_nv_read_public(&c, counter);
    XFER_OK(f->t, &c, &f->r);
    nv_increment(f->t, &f->r, counter);
    g_assert_cmpuint(nv_counter(f->t, &f->r, counter), ==, count + 1);

    /* Once more, with the increment made after the first restart. */
    restart(f);
    g_assert_cmpuint(nv_counter(f->t, &f->r, counter), ==, count + 1);
    tu_assert_healthy(nvtpm_image(f->t));
}

static void test_volatile_state_single_use(fixture *f, gconstpointer data)
{
    tpm2_cmdbuf c;
    bool present;

    power_up(f);
    cmd_get_random(&c, 8);
    XFER_OK(f->t, &c, &f->r);
    TU_OK(nvtpm_store_volatile(f->t));
    uint32_t size = blob_size(f->t, "tpm0/volatilestate", &present);
    g_assert_true(present);
    g_test_message("volatile state after Startup: %u bytes", size);

    /* Power lost without Shutdown; the device comes back on the image. */
    TU_OK(nvtpm_power_off(f->t));
    fixture_close(f);
    TU_OK(nvtpm_open(f->uri, "tpm0", 0, &f->t));
    TU_OK(nvtpm_power_on(f->t));
    /* Restored: the TPM is started already, without Startup ... */
    g_assert_cmphex(xfer(f->t, &c, &f->r), ==, RC_SUCCESS);
    tpm2_cmd_startup(&c);
    g_assert_cmphex(xfer(f->t, &c, &f->r), ==, RC_INITIALIZE);
    /* ... and the saved state is gone from the image. */
    blob_size(f->t, "tpm0/volatilestate", &present);
    g_assert_false(present);
    uint8_t *buf = NULL;
    size_t len = 0;
    g_assert_cmpint(nvramtdb_read(nvtpm_image(f->t), "tpm0/volatilestate", &buf, &len), ==,
                    -ENOENT);

    /* The next power-on starts from scratch: Startup is needed again. */
    TU_OK(nvtpm_power_off(f->t));
    TU_OK(nvtpm_power_on(f->t));
    cmd_get_random(&c, 8);
    g_assert_cmphex(xfer(f->t, &c, &f->r), ==, RC_INITIALIZE);
    startup(f->t, &f->r);
    g_assert_cmphex(xfer(f->t, &c, &f->r), ==, RC_SUCCESS);
}

/* A TPM on @fault (open with @open_flags, powered on, started) whose
 * index NV_INDEX_BASE holds @old_value (@len bytes). */
static nvtpm *tpm_with_old_value(nvt_backend *fault, unsigned open_flags, rsp *r,
                                 const uint8_t *old_value, uint16_t len)
{
    nvramtdb *db = NULL;
    nvtpm *t = NULL;
    TU_OK(nvt_open_backend(fault, open_flags, &db));
    TU_OK(nvtpm_open_handle(db, "tpm0", &t));
    TU_OK(nvtpm_power_on(t));
    startup(t, r);
    nv_define(t, r, NV_INDEX_BASE, NV_AUTHWRITE | NV_AUTHREAD, len);
    nv_write(t, r, NV_INDEX_BASE, old_value, len);
    return t;
}

/* Reopen the bytes @inner holds (@open_flags): a healthy image whose index
 * holds @new_value (returns true) or else @old_value, never a mix. */
static bool reopened_holds_new_value(nvt_backend *inner, unsigned open_flags, rsp *r,
                                     const uint8_t *old_value, const uint8_t *new_value,
                                     uint16_t len)
{
    nvramtdb *db = NULL;
    nvtpm *t = NULL;
    tpm2_cmdbuf c;
    TU_OK(nvt_open_backend(nvt_be_borrow(inner), open_flags, &db));
    TU_OK(nvtpm_open_handle(db, "tpm0", &t));
    tu_assert_healthy(nvtpm_image(t));
    TU_OK(nvtpm_power_on(t));
    startup(t, r);
    tpm2_cmd_nv_read(&c, NV_INDEX_BASE, NV_INDEX_BASE, len, 0);
    XFER_OK(t, &c, r);
    g_assert_cmpuint(tpm2_get16(r->buf + 14), ==, len);
    bool kept = memcmp(r->buf + 16, new_value, len) == 0;
    if (!kept)
        g_assert_cmpmem(r->buf + 16, len, old_value, len);
    TU_OK(nvtpm_close(t));
    return kept;
}

/* A storage failure while an NV-changing command stores the state: an
 * EIO injected once at the @n-th pwrite or flush (@on) from the start of
 * NV_Write's commit.  Returns false once the command completes before
 * reaching that operation.  *new_value_kept tells which value the image
 * holds afterwards. */
static bool storage_fault_run(unsigned open_flags, nvt_fault_ops on, uint64_t n,
                              bool *new_value_kept)
{
    nvt_backend *inner = nvt_mem_backend_new(NULL, 0);
    nvt_backend *fault = nvt_fault_backend_new(nvt_be_borrow(inner));
    rsp r = { 0 };
    uint8_t old_value[32], new_value[32];
    tpm2_cmdbuf c;

    tu_fill(old_value, sizeof old_value, 11);
    tu_fill(new_value, sizeof new_value, 12);
    nvtpm *t = tpm_with_old_value(fault, open_flags, &r, old_value, sizeof old_value);

    nvt_fault_arm(fault, NVT_FAULT_TRANSIENT, on, n, EIO);
    tpm2_cmd_nv_write(&c, NV_INDEX_BASE, NV_INDEX_BASE, new_value, sizeof new_value, 0);
    uint8_t *resp = NULL;
    size_t resp_len = 0;
    g_free(take_warnings());
    int rc = nvtpm_execute(t, c.b, c.n, &resp, &resp_len);
    char *logged = take_warnings();
    bool fired = nvt_fault_fired(fault);
    if (!fired) {
        /* Past the commit's last operation: the command succeeded. */
        nvt_fault_arm(fault, NVT_FAULT_NONE, 0, 0, 0);
        g_assert_cmpstr(logged, ==, "");
        g_free(logged);
        TU_OK(rc);
        g_assert_cmphex(tpm2_get32(resp + 6), ==, RC_SUCCESS);
        free(resp);
        TU_OK(nvtpm_close(t));
        nvt_be_close(inner);
        free(r.buf);
        return false;
    }
    TU_ASSERT_ERROR(rc, -EIO, "tpm0/permall", "input/output error", "failure mode");
    /* The cause is logged too (libtpms itself only says "failure mode"). */
    g_assert_nonnull(strstr(logged, "tpm0/permall"));
    g_assert_nonnull(strstr(logged, "Input/output error"));
    g_free(logged);
    /* The client is told the command failed, not that it succeeded. */
    g_assert_cmpuint(resp_len, ==, 10);
    g_assert_cmphex(tpm2_get32(resp + 6), ==, RC_FAILURE);
    free(resp);

    /* libtpms is in failure mode now: every command answers 0x101. */
    cmd_get_random(&c, 8);
    g_assert_cmphex(xfer(t, &c, &r), ==, RC_FAILURE);
    TU_OK(nvtpm_close(t));

    /* The bytes left behind: a healthy image holding the old value or,
     * if the fault hit the end of the commit (nvramtdb_write()'s
     * contract), the new one — never a mix. */
    *new_value_kept = reopened_holds_new_value(inner, open_flags, &r, old_value, new_value,
                                               sizeof old_value);
    nvt_be_close(inner);
    free(r.buf);
    return true;
}

/* EIO at the next flush: the commit's one flush (journal mode). */
static void test_storage_fault_at_flush(void)
{
    bool kept = false;
    g_assert_true(storage_fault_run(0, NVT_FAULT_ON_FLUSH, 1, &kept));
    /* The record was written whole before the flush failed; recovery
     * keeps it, like a power cut after the write: the command was
     * reported failed although its effect survived. */
    g_test_message("EIO at the commit's flush: the image holds the %s value",
                   kept ? "new" : "old");
}

/* EIO at each write of the commit, and at each flush, with @open_flags
 * (journal or stock tdb commits): always -EIO, a healthy image, the old
 * value or the new one; the old one when the very first write of the
 * commit failed (nothing of it reached the image). */
static void storage_fault_sweep(unsigned open_flags, const char *mode)
{
    GString *summary = g_string_new(NULL);
    for (int pass = 0; pass < 2; pass++) {
        nvt_fault_ops on = pass == 0 ? NVT_FAULT_ON_WRITE : NVT_FAULT_ON_FLUSH;
        uint64_t n;
        for (n = 1;; n++) {
            bool kept = false;
            g_assert_cmpuint(n, <, 200);
            if (!storage_fault_run(open_flags, on, n, &kept))
                break;
            if (on == NVT_FAULT_ON_WRITE && n == 1)
                g_assert_false(kept);
            g_string_append_printf(summary, " %s%" G_GUINT64_FORMAT ":%s",
                                   pass == 0 ? "write" : "flush", n, kept ? "new" : "old");
        }
        g_assert_cmpuint(n, >, 1);
    }
    g_test_message("%s: value after an EIO at each operation of the commit:%s", mode,
                   summary->str);
    g_string_free(summary, TRUE);
}

static void test_storage_fault_sweep(void)
{
    storage_fault_sweep(0, "journal");
}

static void test_storage_fault_sweep_stock(void)
{
    storage_fault_sweep(NVRAMTDB_OPEN_STOCK_COMMIT, "stock tdb commits");
}

/* nvtpm_execute_unsynced(): NV_Write's state is queued, not waited for.
 * A flush fault armed before it proves it: the call still succeeds (it
 * did not wait for the failing flush), and the failure surfaces at the
 * next call (@explicit_sync: nvtpm_sync(); else the next command, which
 * answers TPM_RC_FAILURE), with a message and a log line naming the blob,
 * and the TPM powered off.  Without a fault, the next call waits and the
 * value is durable.  Either way the image is healthy, holding the old
 * value or the new one. */
static void unsynced_run(bool fail, bool explicit_sync)
{
    nvt_backend *inner = nvt_mem_backend_new(NULL, 0);
    nvt_backend *fault = nvt_fault_backend_new(nvt_be_borrow(inner));
    rsp r = { 0 };
    uint8_t old_value[32], new_value[32], *resp = NULL;
    size_t resp_len = 0;
    tpm2_cmdbuf c;

    tu_fill(old_value, sizeof old_value, 21);
    tu_fill(new_value, sizeof new_value, 22);
    nvtpm *t = tpm_with_old_value(fault, 0, &r, old_value, sizeof old_value);

    if (fail)
        nvt_fault_arm(fault, NVT_FAULT_TRANSIENT, NVT_FAULT_ON_FLUSH, 1, EIO);
    g_free(take_warnings());
    tpm2_cmd_nv_write(&c, NV_INDEX_BASE, NV_INDEX_BASE, new_value, sizeof new_value, 0);
    TU_OK(nvtpm_execute_unsynced(t, c.b, c.n, &resp, &resp_len));
    g_assert_cmpuint(resp_len, ==, 10 + 4 + 5);  /* header, parameterSize, session area */
    g_assert_cmphex(tpm2_get32(resp + 6), ==, RC_SUCCESS);
    free(resp);

    int rc;
    if (explicit_sync) {
        rc = nvtpm_sync(t);
    } else {
        cmd_get_random(&c, 8);
        rc = nvtpm_execute(t, c.b, c.n, &resp, &resp_len);
        g_assert_cmpuint(resp_len, >=, 10);
        g_assert_cmphex(tpm2_get32(resp + 6), ==, fail ? RC_FAILURE : RC_SUCCESS);
        free(resp);
    }
    char *logged = take_warnings();
    if (fail) {
        g_assert_true(nvt_fault_fired(fault));
        TU_ASSERT_ERROR(rc, -EIO, "tpm0/permall", "input/output error", "powered off");
        g_assert_nonnull(strstr(logged, "tpm0/permall"));
        g_assert_false(nvtpm_is_powered(t));
        cmd_get_random(&c, 8);
        TU_ASSERT_ERROR(nvtpm_execute(t, c.b, c.n, &resp, &resp_len), -ENODEV,
                        "not powered");
        free(resp);
    } else {
        TU_OK(rc);
        g_assert_cmpstr(logged, ==, "");
        nv_assert(t, &r, NV_INDEX_BASE, new_value, sizeof new_value);
        TU_OK(nvtpm_sync(t));   /* nothing left to wait for */
    }
    g_free(logged);
    TU_OK(nvtpm_close(t));

    bool kept = reopened_holds_new_value(inner, 0, &r, old_value, new_value, sizeof old_value);
    if (!fail)
        g_assert_true(kept);
    nvt_be_close(inner);
    free(r.buf);
}

static void test_unsynced_durable_at_next_call(void)
{
    unsynced_run(false, false);
    unsynced_run(false, true);
}

static void test_unsynced_failure_powers_off(void)
{
    unsynced_run(true, false);
    unsynced_run(true, true);
}

/* Define @size-byte indices (and fill each) until the TPM reports
 * TPM_RC_NV_SPACE; every state store must succeed. */
static void fill_nv(uint16_t size, bool write)
{
    nvtpm *t = NULL;
    rsp r = { 0 };
    uint8_t data[1024];
    tpm2_cmdbuf c;
    uint32_t n = 0, max_permall = 0;

    TU_OK(nvtpm_open("mem:", "tpm0", 0, &t));
    TU_OK(nvtpm_power_on(t));
    startup(t, &r);
    for (;;) {
        uint32_t index = NV_INDEX_BASE + n;
        tpm2_cmd_nv_define(&c, index, NV_AUTHWRITE | NV_AUTHREAD, size);
        uint32_t rc = xfer(t, &c, &r);  /* asserts the store succeeded */
        if (rc == RC_NV_SPACE)
            break;
        g_assert_cmphex(rc, ==, RC_SUCCESS);
        n++;
        for (uint16_t off = 0; write && off < size; off += sizeof data) {
            uint16_t len = (uint16_t)MIN(sizeof data, (size_t)(size - off));
            tu_fill(data, len, index + off);
            tpm2_cmd_nv_write(&c, index, index, data, len, off);
            XFER_OK(t, &c, &r);
        }
        max_permall = MAX(max_permall, blob_size(t, "tpm0/permall", NULL));
        g_assert_cmpuint(n, <, 5000);
    }
    uint32_t permall = blob_size(t, "tpm0/permall", NULL);
    g_test_message("NV full with %u indices of %u bytes: permall %u bytes (maximum %u, %.0f%%)",
                   n, size, permall, nvtpm_permall_max(), 100.0 * permall / nvtpm_permall_max());
    g_assert_cmpuint(n, >, 0);
    g_assert_cmpuint(max_permall, <=, nvtpm_permall_max());
    g_assert_cmpuint(permall, <=, nvtpm_permall_max());

    /* The full TPM still works and keeps its values across a restart. */
    shutdown_clear(t, &r);
    TU_OK(nvtpm_power_off(t));
    TU_OK(nvtpm_power_on(t));
    startup(t, &r);
    if (write) {
        tu_fill(data, MIN(size, sizeof data), NV_INDEX_BASE + n - 1);
        nv_assert(t, &r, NV_INDEX_BASE + n - 1, data, (uint16_t)MIN(size, sizeof data));
    }
    tu_assert_healthy(nvtpm_image(t));
    TU_OK(nvtpm_close(t));
    free(r.buf);
}

static void test_nv_full_fits(void)
{
    fill_nv(2048, true);
}

static void test_nv_full_small_indices_fits(void)
{
    fill_nv(1, false);
}

/* Every object and session slot in use: the largest volatile state. */
static void test_volatile_state_fits(void)
{
    nvtpm *t = NULL;
    rsp r = { 0 };
    tpm2_cmdbuf c;
    unsigned objects = 0, sessions = 0;
    uint32_t rc;

    TU_OK(nvtpm_open("mem:", "tpm0", 0, &t));
    TU_OK(nvtpm_power_on(t));
    startup(t, &r);
    cmd_create_primary(&c, true);
    while ((rc = xfer(t, &c, &r)) == RC_SUCCESS)
        objects++;
    g_assert_cmphex(rc & 0xfff, ==, 0x902);     /* TPM_RC_OBJECT_MEMORY */
    cmd_start_auth_session(&c);
    while ((rc = xfer(t, &c, &r)) == RC_SUCCESS)
        sessions++;
    g_assert_cmphex(rc & 0xfff, ==, 0x903);     /* TPM_RC_SESSION_MEMORY */
    g_assert_cmpuint(objects, >, 0);
    g_assert_cmpuint(sessions, >, 0);

    TU_OK(nvtpm_store_volatile(t));
    uint32_t size = blob_size(t, "tpm0/volatilestate", NULL);
    g_test_message("volatile state with %u objects and %u sessions loaded: %u bytes "
                   "(maximum %u)", objects, sessions, size, nvtpm_volatilestate_max());
    g_assert_cmpuint(size, <=, nvtpm_volatilestate_max());
    TU_OK(nvtpm_close(t));
    free(r.buf);
}

/* State blobs taken from one TPM make another image the same TPM. */
static void test_state_blobs_move_a_tpm(void)
{
    nvtpm *t = NULL;
    rsp r = { 0 };
    uint8_t value[48];
    uint8_t *perm = NULL, *vol = NULL, *save = NULL;
    size_t perm_len = 0, vol_len = 0, save_len = 99;
    tpm2_cmdbuf c;

    TU_OK(nvtpm_open("mem:", "tpm0", 0, &t));
    TU_OK(nvtpm_power_on(t));
    startup(t, &r);
    tu_fill(value, sizeof value, 21);
    nv_define(t, &r, NV_INDEX_BASE, NV_AUTHWRITE | NV_AUTHREAD, sizeof value);
    nv_write(t, &r, NV_INDEX_BASE, value, sizeof value);
    TU_OK(nvtpm_get_state_blob(t, NVTPM_STATE_PERMANENT, &perm, &perm_len));
    TU_OK(nvtpm_get_state_blob(t, NVTPM_STATE_VOLATILE, &vol, &vol_len));
    TU_OK(nvtpm_get_state_blob(t, NVTPM_STATE_SAVE_STATE, &save, &save_len));
    g_assert_null(save);
    g_assert_cmpuint(save_len, ==, 0);
    g_assert_cmpuint(perm_len, >, 0);
    g_assert_cmpuint(vol_len, >, 0);
    TU_OK(nvtpm_power_off(t));
    /* Powered off, the permanent state comes from the image. */
    uint8_t *again = NULL;
    size_t again_len = 0;
    TU_OK(nvtpm_get_state_blob(t, NVTPM_STATE_PERMANENT, &again, &again_len));
    g_assert_cmpmem(again, again_len, perm, perm_len);
    free(again);
    TU_OK(nvtpm_close(t));

    TU_OK(nvtpm_open("mem:", "tpm1", 0, &t));
    TU_OK(nvtpm_set_state_blob(t, NVTPM_STATE_PERMANENT, perm, perm_len));
    TU_OK(nvtpm_set_state_blob(t, NVTPM_STATE_VOLATILE, vol, vol_len));
    TU_OK(nvtpm_set_state_blob(t, NVTPM_STATE_SAVE_STATE, NULL, 0));
    bool present;
    /* Staged until the power-on commits them. */
    blob_size(t, "tpm1/permall", &present);
    g_assert_false(present);
    TU_OK(nvtpm_power_on(t));
    g_assert_cmpuint(blob_size(t, "tpm1/permall", &present), ==, perm_len);
    g_assert_true(present);
    /* Running already (volatile state), with the NV index of the first. */
    cmd_get_random(&c, 8);
    g_assert_cmphex(xfer(t, &c, &r), ==, RC_SUCCESS);
    nv_assert(t, &r, NV_INDEX_BASE, value, sizeof value);
    /* Setting state while powered is refused. */
    TU_ASSERT_ERROR(nvtpm_set_state_blob(t, NVTPM_STATE_PERMANENT, perm, perm_len), -EBUSY,
                    "powered off");
    TU_OK(nvtpm_close(t));
    free(perm);
    free(vol);
    free(r.buf);
}

/* The value of @name in @t's image (NULL if it has none); g_free() it. */
static uint8_t *image_blob(nvtpm *t, const char *name, size_t *len)
{
    uint8_t *buf = NULL;
    *len = 0;
    int rc = nvramtdb_read(nvtpm_image(t), name, &buf, len);
    if (rc == -ENOENT)
        return NULL;
    TU_OK(rc);
    uint8_t *copy = g_memdup2(buf, *len);
    free(buf);
    return copy;
}

static uint64_t image_commits(nvtpm *t)
{
    nvramtdb_info info = { .struct_size = sizeof info };
    TU_OK(nvramtdb_get_info(nvtpm_image(t), &info));
    return info.commits;
}

/* The image holds exactly @perm and @vol (NULL: no volatile state). */
static void assert_image_state(nvtpm *t, const GBytes *perm, const GBytes *vol)
{
    size_t len;
    uint8_t *p = image_blob(t, "tpm0/permall", &len);
    g_assert_nonnull(p);
    g_assert_cmpmem(p, len, g_bytes_get_data((GBytes *)perm, NULL), g_bytes_get_size((GBytes *)perm));
    g_free(p);
    p = image_blob(t, "tpm0/volatilestate", &len);
    if (!vol) {
        g_assert_null(p);
        return;
    }
    g_assert_nonnull(p);
    g_assert_cmpmem(p, len, g_bytes_get_data((GBytes *)vol, NULL), g_bytes_get_size((GBytes *)vol));
    g_free(p);
}

/* Incoming migration (swtpm's SET_STATEBLOB per blob, then INIT): the
 * blobs set on a device holding TPM A are staged, not written, so a
 * migration that never reaches the power-on leaves A whole in the image;
 * the power-on commits them in one batch and serves TPM B. */
static void test_state_blobs_staged_until_power_on(fixture *f, gconstpointer data)
{
    uint8_t value_a[32], value_b[32];
    uint8_t *perm_b = NULL, *vol_b = NULL, *buf = NULL;
    size_t perm_b_len = 0, vol_b_len = 0, len = 0;
    tpm2_cmdbuf c;
    nvtpm *t = NULL;
    rsp r = { 0 };

    tu_fill(value_a, sizeof value_a, 31);
    tu_fill(value_b, sizeof value_b, 32);
    /* TPM B, running, with its value in the index: its migration blobs. */
    fixture_close(f);
    TU_OK(nvtpm_open("mem:", "tpm0", 0, &t));
    TU_OK(nvtpm_power_on(t));
    startup(t, &r);
    nv_define(t, &r, NV_INDEX_BASE, NV_AUTHWRITE | NV_AUTHREAD, sizeof value_b);
    nv_write(t, &r, NV_INDEX_BASE, value_b, sizeof value_b);
    TU_OK(nvtpm_get_state_blob(t, NVTPM_STATE_PERMANENT, &perm_b, &perm_b_len));
    TU_OK(nvtpm_get_state_blob(t, NVTPM_STATE_VOLATILE, &vol_b, &vol_b_len));
    TU_OK(nvtpm_close(t));
    free(r.buf);

    /* TPM A in the fixture's image, with a saved volatile state. */
    fixture_open(f);
    power_up(f);
    nv_define(f->t, &f->r, NV_INDEX_BASE, NV_AUTHWRITE | NV_AUTHREAD, sizeof value_a);
    nv_write(f->t, &f->r, NV_INDEX_BASE, value_a, sizeof value_a);
    TU_OK(nvtpm_store_volatile(f->t));
    TU_OK(nvtpm_power_off(f->t));
    GBytes *perm_a, *vol_a;
    buf = image_blob(f->t, "tpm0/permall", &len);
    perm_a = g_bytes_new_take(buf, len);
    buf = image_blob(f->t, "tpm0/volatilestate", &len);
    g_assert_nonnull(buf);
    vol_a = g_bytes_new_take(buf, len);

    /* (1) B's blobs set, then the device goes away before the power-on
     * (a daemon killed, a client gone): nothing of B reached the image. */
    uint64_t commits = image_commits(f->t);
    TU_OK(nvtpm_set_state_blob(f->t, NVTPM_STATE_PERMANENT, perm_b, perm_b_len));
    TU_OK(nvtpm_set_state_blob(f->t, NVTPM_STATE_VOLATILE, vol_b, vol_b_len));
    TU_OK(nvtpm_set_state_blob(f->t, NVTPM_STATE_SAVE_STATE, NULL, 0));
    g_assert_cmpuint(image_commits(f->t), ==, commits);
    assert_image_state(f->t, perm_a, vol_a);
    /* Read back while off: the staged blob, what a power-on would load. */
    TU_OK(nvtpm_get_state_blob(f->t, NVTPM_STATE_PERMANENT, &buf, &len));
    g_assert_cmpmem(buf, len, perm_b, perm_b_len);
    free(buf);
    fixture_close(f);
    fixture_open(f);
    assert_image_state(f->t, perm_a, vol_a);

    /* Discarded by power-off and by nvtpm_discard_state_blobs(): A again. */
    TU_OK(nvtpm_set_state_blob(f->t, NVTPM_STATE_PERMANENT, perm_b, perm_b_len));
    g_assert_cmpint(nvtpm_discard_state_blobs(f->t), ==, 2);   /* permanent + "no volatile" */
    g_assert_cmpint(nvtpm_discard_state_blobs(f->t), ==, 0);
    TU_OK(nvtpm_set_state_blob(f->t, NVTPM_STATE_PERMANENT, perm_b, perm_b_len));
    TU_OK(nvtpm_power_off(f->t));
    TU_OK(nvtpm_get_state_blob(f->t, NVTPM_STATE_PERMANENT, &buf, &len));
    g_assert_cmpmem(buf, len, g_bytes_get_data(perm_a, NULL), g_bytes_get_size(perm_a));
    free(buf);
    assert_image_state(f->t, perm_a, vol_a);

    /* A refused blob discards the ones staged before it. */
    TU_OK(nvtpm_set_state_blob(f->t, NVTPM_STATE_PERMANENT, perm_b, perm_b_len));
    TU_ASSERT_ERROR(nvtpm_set_state_blob(f->t, NVTPM_STATE_VOLATILE, vol_b, 5), -EINVAL,
                    "rejected", "discarded");
    g_assert_cmpint(nvtpm_discard_state_blobs(f->t), ==, 0);

    /* (2) Set again, a later blob replacing an earlier one, then the
     * power-on: B whole, served without Startup (B's volatile state). */
    TU_OK(nvtpm_set_state_blob(f->t, NVTPM_STATE_VOLATILE, NULL, 0));
    TU_OK(nvtpm_set_state_blob(f->t, NVTPM_STATE_PERMANENT, perm_b, perm_b_len));
    TU_OK(nvtpm_set_state_blob(f->t, NVTPM_STATE_VOLATILE, vol_b, vol_b_len));
    TU_OK(nvtpm_get_state_blob(f->t, NVTPM_STATE_VOLATILE, &buf, &len));
    g_assert_cmpmem(buf, len, vol_b, vol_b_len);
    free(buf);
    assert_image_state(f->t, perm_a, vol_a);
    commits = image_commits(f->t);
    TU_OK(nvtpm_power_on(f->t));
    /* (3) Commits of the power-on: one batch (B's two blobs), then
     * libtpms's own store of the permanent state it loaded (NvCommit) and
     * the deletion of the used volatile state, as at every power-on. */
    g_assert_cmpuint(image_commits(f->t) - commits, ==, 3);
    cmd_get_random(&c, 8);
    g_assert_cmphex(xfer(f->t, &c, &f->r), ==, RC_SUCCESS);
    nv_assert(f->t, &f->r, NV_INDEX_BASE, value_b, sizeof value_b);
    buf = image_blob(f->t, "tpm0/volatilestate", &len);
    g_assert_null(buf);
    /* B survives a restart: its permanent state is in the image. */
    restart(f);
    nv_assert(f->t, &f->r, NV_INDEX_BASE, value_b, sizeof value_b);

    g_bytes_unref(perm_a);
    g_bytes_unref(vol_a);
    free(perm_b);
    free(vol_b);
}

/* The batch fails: the power-on fails, the image keeps the old state whole
 * and the blobs stay staged. */
static void test_state_blobs_commit_fails(void)
{
    nvt_backend *inner = nvt_mem_backend_new(NULL, 0);
    nvt_backend *fault = nvt_fault_backend_new(nvt_be_borrow(inner));
    uint8_t value_a[16], value_b[16];
    uint8_t *perm_b = NULL, *vol_b = NULL;
    size_t perm_b_len = 0, vol_b_len = 0;
    nvramtdb *db = NULL;
    nvtpm *t = NULL;
    rsp r = { 0 };

    tu_fill(value_a, sizeof value_a, 41);
    tu_fill(value_b, sizeof value_b, 42);
    TU_OK(nvtpm_open("mem:", "tpm0", 0, &t));
    TU_OK(nvtpm_power_on(t));
    startup(t, &r);
    nv_define(t, &r, NV_INDEX_BASE, NV_AUTHWRITE | NV_AUTHREAD, sizeof value_b);
    nv_write(t, &r, NV_INDEX_BASE, value_b, sizeof value_b);
    TU_OK(nvtpm_get_state_blob(t, NVTPM_STATE_PERMANENT, &perm_b, &perm_b_len));
    TU_OK(nvtpm_get_state_blob(t, NVTPM_STATE_VOLATILE, &vol_b, &vol_b_len));
    TU_OK(nvtpm_close(t));

    TU_OK(nvt_open_backend(fault, 0, &db));
    TU_OK(nvtpm_open_handle(db, "tpm0", &t));
    TU_OK(nvtpm_power_on(t));
    startup(t, &r);
    nv_define(t, &r, NV_INDEX_BASE, NV_AUTHWRITE | NV_AUTHREAD, sizeof value_a);
    nv_write(t, &r, NV_INDEX_BASE, value_a, sizeof value_a);
    TU_OK(nvtpm_power_off(t));
    size_t len;
    uint8_t *a = image_blob(t, "tpm0/permall", &len);
    GBytes *perm_a = g_bytes_new_take(a, len);

    TU_OK(nvtpm_set_state_blob(t, NVTPM_STATE_PERMANENT, perm_b, perm_b_len));
    TU_OK(nvtpm_set_state_blob(t, NVTPM_STATE_VOLATILE, vol_b, vol_b_len));
    nvt_fault_arm(fault, NVT_FAULT_TRANSIENT, NVT_FAULT_ON_WRITE, 1, EIO);
    TU_ASSERT_ERROR(nvtpm_power_on(t), -EIO, "keeps the old state", "tpm0/permall",
                    "tpm0/volatilestate");
    g_assert_true(nvt_fault_fired(fault));
    g_assert_false(nvtpm_is_powered(t));
    uint8_t *buf = NULL;
    TU_OK(nvtpm_get_state_blob(t, NVTPM_STATE_PERMANENT, &buf, &len));
    g_assert_cmpmem(buf, len, perm_b, perm_b_len);
    free(buf);
    TU_OK(nvtpm_close(t));      /* the image reopens through recovery */
    TU_OK(nvt_open_backend(nvt_be_borrow(inner), 0, &db));
    TU_OK(nvtpm_open_handle(db, "tpm0", &t));
    assert_image_state(t, perm_a, NULL);
    tu_assert_healthy(nvtpm_image(t));
    TU_OK(nvtpm_power_on(t));
    startup(t, &r);
    nv_assert(t, &r, NV_INDEX_BASE, value_a, sizeof value_a);
    TU_OK(nvtpm_close(t));
    nvt_be_close(inner);
    g_bytes_unref(perm_a);
    free(perm_b);
    free(vol_b);
    free(r.buf);
}

/* A permanent state that cannot be loaded fails the power-on with the
 * cause; the TPM is not silently manufactured anew over it. */
static void test_unloadable_permall_fails_power_on(void)
{
    nvtpm *t = NULL;
    rsp r = { 0 };

    TU_OK(nvtpm_open("mem:", "tpm0", 0, &t));
    TU_OK(nvtpm_power_on(t));
    startup(t, &r);
    TU_OK(nvtpm_power_off(t));
    /* Not a TPM state: an empty value. */
    TU_OK(nvramtdb_write(nvtpm_image(t), "tpm0/permall", NULL, 0, 0, NULL, NULL));
    g_free(take_warnings());
    TU_ASSERT_ERROR(nvtpm_power_on(t), -EIO, "power-on failed", "tpm0/permall", "empty");
    g_assert_false(nvtpm_is_powered(t));
    char *logged = take_warnings();
    g_assert_nonnull(strstr(logged, "tpm0/permall"));
    g_free(logged);
    g_assert_cmpuint(blob_size(t, "tpm0/permall", NULL), ==, 0);  /* untouched */
    TU_OK(nvtpm_close(t));
    free(r.buf);
}

static void test_not_powered(void)
{
    nvtpm *t = NULL;
    tpm2_cmdbuf c;
    uint8_t *resp = (uint8_t *)"x";
    size_t len = 1;
    bool established;

    TU_OK(nvtpm_open("mem:", "tpm0", 0, &t));
    cmd_get_random(&c, 8);
    TU_ASSERT_ERROR(nvtpm_execute(t, c.b, c.n, &resp, &len), -ENODEV, "tpm0", "not powered");
    g_assert_null(resp);
    g_assert_cmpuint(len, ==, 0);
    TU_ASSERT_ERROR(nvtpm_store_volatile(t), -ENODEV, "not powered");
    TU_ASSERT_ERROR(nvtpm_get_established(t, &established), -ENODEV, "not powered");
    TU_ASSERT_ERROR(nvtpm_execute(t, c.b, 0, &resp, &len), -EINVAL, "0 bytes");
    TU_OK(nvtpm_power_off(t));  /* idempotent */
    TU_OK(nvtpm_close(t));
}

typedef struct async_result {
    GMutex lock;
    GCond cond;
    bool done;
    int errcode;
    uint8_t *resp;
    size_t len;
    GThread *thread;
} async_result;

static void on_response(void *opaque, int errcode, uint8_t *resp, size_t len)
{
    async_result *a = opaque;
    g_mutex_lock(&a->lock);
    a->errcode = errcode;
    a->resp = resp;
    a->len = len;
    a->thread = g_thread_self();
    a->done = true;
    g_cond_signal(&a->cond);
    g_mutex_unlock(&a->lock);
}

static void test_execute_async(void)
{
    nvtpm *t = NULL;
    rsp r = { 0 };
    tpm2_cmdbuf c;
    async_result a = { 0 };

    g_mutex_init(&a.lock);
    g_cond_init(&a.cond);
    TU_OK(nvtpm_open("mem:", "tpm0", 0, &t));
    TU_OK(nvtpm_power_on(t));
    startup(t, &r);
    cmd_get_random(&c, 16);
    TU_OK(nvtpm_execute_async(t, c.b, c.n, on_response, &a));
    g_mutex_lock(&a.lock);
    while (!a.done)
        g_cond_wait(&a.cond, &a.lock);
    g_mutex_unlock(&a.lock);
    g_assert_cmpint(a.errcode, ==, 0);
    g_assert_true(a.thread != g_thread_self());     /* the device thread */
    g_assert_cmpuint(a.len, ==, 10 + 2 + 16);
    g_assert_cmphex(tpm2_get32(a.resp + 6), ==, RC_SUCCESS);
    free(a.resp);
    TU_OK(nvtpm_close(t));
    g_mutex_clear(&a.lock);
    g_cond_clear(&a.cond);
    free(r.buf);
}

static void test_established_and_locality(void)
{
    nvtpm *t = NULL;
    rsp r = { 0 };
    bool established = true;
    uint32_t min = 0, max = 0;
    tpm2_cmdbuf c;

    TU_OK(nvtpm_open("mem:", "tpm0", 0, &t));
    TU_OK(nvtpm_power_on(t));
    startup(t, &r);
    TU_OK(nvtpm_get_established(t, &established));
    g_test_message("established after manufacture: %d", established);
    TU_ASSERT_ERROR(nvtpm_set_locality(t, 5), -EINVAL, "locality");
    TU_ASSERT_ERROR(nvtpm_reset_established(t, 0), -EPERM, "locality 3 or 4");
    TU_OK(nvtpm_reset_established(t, 3));
    TU_OK(nvtpm_get_established(t, &established));
    g_assert_false(established);
    TU_OK(nvtpm_set_locality(t, 3));
    cmd_get_random(&c, 8);
    XFER_OK(t, &c, &r);
    TU_OK(nvtpm_set_locality(t, 0));
    TU_OK(nvtpm_cancel(t));
    g_assert_cmpuint(nvtpm_set_buffer_size(t, 0, &min, &max), ==, NVTPM_BUFFER_MAX);
    g_assert_cmpuint(max, ==, NVTPM_BUFFER_MAX);
    g_assert_cmpuint(min, >, 0);
    g_assert_cmpuint(min, <, max);
    TU_OK(nvtpm_close(t));
    free(r.buf);
}

static void test_one_tpm_per_process(void)
{
    nvtpm *t = NULL, *u = NULL;
    nvramtdb *db = NULL;

    TU_OK(nvtpm_open("mem:", "tpm0", 0, &t));
    TU_ASSERT_ERROR(nvtpm_open("mem:", "tpm1", 0, &u), -EBUSY, "tpm1", "tpm0", "one TPM");
    g_assert_null(u);
    TU_OK(nvramtdb_open("mem:", 0, &db));
    TU_ASSERT_ERROR(nvtpm_open_handle(db, "tpm1", &u), -EBUSY, "already open");
    g_assert_null(u);
    TU_OK(nvtpm_close(t));
    /* Free again once closed. */
    TU_OK(nvtpm_open("mem:", "tpm1", 0, &u));
    TU_OK(nvtpm_close(u));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    /* g_test_init() makes warnings fatal everywhere; keep that for every
     * domain but "nvtpm", whose warnings are captured and checked. */
    g_log_set_always_fatal(G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
    g_log_set_fatal_mask(NULL, G_LOG_LEVEL_WARNING | G_LOG_LEVEL_CRITICAL);
    g_log_set_fatal_mask("GLib", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_CRITICAL);
    g_log_set_handler("nvtpm", G_LOG_LEVEL_WARNING, capture_warning, NULL);
#define ADD_F(path, fn) \
    g_test_add(path, fixture, NULL, fixture_set_up, fn, fixture_tear_down)
    ADD_F("/tpm/startup-get-random", test_startup_get_random);
    ADD_F("/tpm/nv-round-trip", test_nv_round_trip);
    ADD_F("/tpm/nv-increment", test_nv_increment);
    ADD_F("/tpm/restart-keeps-nv", test_restart_keeps_nv);
    ADD_F("/tpm/volatile-state-single-use", test_volatile_state_single_use);
    g_test_add_func("/tpm/storage-fault-at-flush", test_storage_fault_at_flush);
    g_test_add_func("/tpm/storage-fault-sweep", test_storage_fault_sweep);
    g_test_add_func("/tpm/storage-fault-sweep-stock", test_storage_fault_sweep_stock);
    g_test_add_func("/tpm/unsynced-durable-at-next-call", test_unsynced_durable_at_next_call);
    g_test_add_func("/tpm/unsynced-failure-powers-off", test_unsynced_failure_powers_off);
    g_test_add_func("/tpm/nv-full-fits", test_nv_full_fits);
    g_test_add_func("/tpm/nv-full-small-indices-fits", test_nv_full_small_indices_fits);
    g_test_add_func("/tpm/volatile-state-fits", test_volatile_state_fits);
    g_test_add_func("/tpm/state-blobs-move-a-tpm", test_state_blobs_move_a_tpm);
    ADD_F("/tpm/state-blobs-staged-until-power-on", test_state_blobs_staged_until_power_on);
    g_test_add_func("/tpm/state-blobs-commit-fails", test_state_blobs_commit_fails);
    g_test_add_func("/tpm/unloadable-permall-fails-power-on",
                    test_unloadable_permall_fails_power_on);
    g_test_add_func("/tpm/not-powered", test_not_powered);
    g_test_add_func("/tpm/execute-async", test_execute_async);
    g_test_add_func("/tpm/established-and-locality", test_established_and_locality);
    g_test_add_func("/tpm/one-tpm-per-process", test_one_tpm_per_process);
    return g_test_run();
}
