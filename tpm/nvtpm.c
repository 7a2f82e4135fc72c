/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * nvtpm.c — a libtpms TPM 2.0 on a device thread, its NVRAM in an
 * nvramtdb image.
 *
 * What this module owns:
 * - libtpms's global state.  libtpms keeps one TPM per process in globals,
 *   so there is at most one nvtpm per process (a second open is -EBUSY),
 *   and every TPMLIB_* / TPM_IO_* call is made by the device thread — the
 *   only exception is TPMLIB_CancelCommand(), which libtpms allows from
 *   any thread (it sets a flag that the running command polls).
 * - The image handle it was given (closed by nvtpm_close()) and the two
 *   blobs "<device>/permall" and "<device>/volatilestate" in it.
 *
 * What it promises:
 * - A command's response is handed out only once every NV change the
 *   command made is durable: libtpms's storedata callback queues the blob
 *   to the image's writer with NVRAMTDB_ASYNC | NVRAMTDB_WAIT_COMPLETION
 *   and returns when the commit is on stable storage.  Each blob is
 *   replaced atomically (old value or new value, never a mix).
 * - A storage failure is never silent: the storedata callback fails, which
 *   puts libtpms into failure mode; the command's caller gets -EIO and a
 *   message naming the blob and the cause, the same text is logged with
 *   g_warning() (log domain "nvtpm"), and the response handed out is a
 *   TPM_RC_FAILURE response, never the success libtpms may have built
 *   before its state was stored.  Every later command answers
 *   TPM_RC_FAILURE until the TPM is powered on again; nvtpm_close() works.
 * - State blobs set for an incoming migration change the image all at
 *   once: they are staged in memory and committed as one batch by the next
 *   power-on, before libtpms loads them ("staged state blobs" below).
 * - Saved volatile state is used once: after a power-on that succeeded,
 *   the "volatilestate" blob is deleted (durably), as swtpm does with
 *   PTM_INIT_FLAG_DELETE_VOLATILE, so that a later power-on cannot bring
 *   stale sessions, PCRs or loaded objects back.
 *
 * Threads: callers submit jobs to the device thread through a queue (a
 * GQueue under a GMutex, with GConds: only primitives that the tests'
 * ThreadSanitizer build can see) and wait for them (or, for nvtpm_execute_async(), get a callback on the
 * device thread).  A call made on the device thread itself (from a
 * response callback) runs inline, between libtpms calls, so callbacks may
 * chain commands; only nvtpm_close() is refused there (-EDEADLK).
 * Messages produced on the device thread travel back with the job and are
 * re-recorded for the calling thread (nvtpm_last_error()).
 *
 * A client of the public API only: it includes nvramtdb.h and no private
 * header of the library, so nvram-tpmd links libnvramtdb.so.  Its messages
 * are its own (nvtpm_last_error()); when an nvramtdb call fails, the
 * library's message (nvramtdb_last_error(), which for a waited request is
 * that request's) is copied into nvtpm's.
 */
#define G_LOG_DOMAIN "nvtpm"
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <libtpms/tpm_error.h>
#include <libtpms/tpm_library.h>
#include <libtpms/tpm_nvfilename.h>
#include <libtpms/tpm_tis.h>

#include "nvramtdb.h"
#include "nvtpm.h"

/* ---- blob maxima -------------------------------------------------------- *
 *
 * permall: libtpms serialises its whole permanent state
 * (PERSISTENT_ALL_Marshal: PERSISTENT_DATA, ORDERLY_DATA, STATE_CLEAR_DATA,
 * STATE_RESET_DATA, the RAM-backed index space, and every user NV entry:
 * NV indices with their data, persistent objects).  The user entries live
 * in the NV area of NV_MEMORY_SIZE = 176,832 bytes, and their marshalled
 * form is smaller than their in-NV form (NV holds fixed-size C structures
 * with full-size digest and key buffers; marshalling writes the bytes in
 * use plus a 6-byte header), so the user part of permall stays below
 * NV_MEMORY_SIZE.  The rest (the fixed structures) measured 1,299 bytes:
 * the permall of a freshly manufactured libtpms 0.9.2 TPM.  libtpms itself
 * sizes its buffer for this state as NV_MEMORY_SIZE + 32 KiB
 * (TPM2_PersistentAllStore); we take that bound, which leaves 31 KiB of
 * margin above the fixed part (room for more PCR banks or a libtpms whose
 * structures grow): 176,832 + 32,768 = 209,600, rounded up to 4 KiB:
 * 212,992 bytes (208 KiB).  Measured by test-tpm with NV filled until
 * TPM_RC_NV_SPACE: 68 indices of 2 KiB give a 143,215-byte permall (67 %
 * of the maximum); 991 indices of 1 byte give 40,939 bytes.
 *
 * volatilestate: TPMLIB_VolatileAll_Store() in libtpms 0.9 receives the
 * length of VolatileSave() through a UINT16, so libtpms cannot produce a
 * volatile state above 65,535 bytes.  TPMLIB_GetTPMProperty() does not
 * help for TPM 2: TPMPROP_TPM_MAX_VOLATILESTATE_SPACE and
 * TPMPROP_TPM_MAX_NV_SPACE answer TPM_FAIL in 0.9.2.  Measured: 8,970
 * bytes after Startup; 12,549 bytes with every object slot
 * (MAX_LOADED_OBJECTS = 3, RSA 2048 keys) and every session slot
 * (MAX_LOADED_SESSIONS = 3) in use.  Maximum: 64 KiB = 65,536 bytes.
 */
#define NVTPM_PERMALL_MAX       (208u * 1024)
#define NVTPM_VOLATILESTATE_MAX (64u * 1024)

uint32_t nvtpm_permall_max(void)
{
    return NVTPM_PERMALL_MAX;
}

uint32_t nvtpm_volatilestate_max(void)
{
    return NVTPM_VOLATILESTATE_MAX;
}

/* ---- messages ------------------------------------------------------------- */

#define NVTPM_MSG_MAX 768       /* a libtpms callback's failure */

/* The calling thread's latest failure message (nvtpm_last_error()): room
 * for a callback's failure or the library's message (1024), with context. */
static _Thread_local char errmsg[1280];

/* Record a message for the calling thread and return -err (err > 0). */
static int set_error(int err, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static int set_error(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    va_end(ap);
    return err > 0 ? -err : err;
}

static void clear_error(void)
{
    errmsg[0] = '\0';
}

const char *nvtpm_last_error(void)
{
    return errmsg;
}

/* ---- the device and its jobs -------------------------------------------- */

#define NVTPM_WRITE_FLAGS (NVRAMTDB_ASYNC | NVRAMTDB_WAIT_COMPLETION)

typedef enum job_op {
    OP_INIT,
    OP_POWER_ON,
    OP_POWER_OFF,
    OP_EXECUTE,
    OP_STORE_VOLATILE,
    OP_GET_ESTABLISHED,
    OP_RESET_ESTABLISHED,
    OP_GET_STATE,
    OP_SET_STATE,
    OP_BUFFER_SIZE,
    OP_DISCARD,
    OP_RUN,
    OP_SYNC,
    OP_QUIT,
} job_op;

typedef struct job {
    job_op op;
    /* inputs */
    const uint8_t *in;      /* command (owned copy when async) or state blob */
    size_t in_len;
    unsigned type;          /* state blob type */
    uint8_t locality;       /* locality of the command / of the reset */
    uint32_t wanted;        /* buffer size */
    bool unsynced;          /* nvtpm_execute_unsynced() */
    nvtpm_response_fn *cb;  /* async execute */
    void *opaque;
    int (*fn)(void *);      /* OP_RUN */
    /* outputs */
    int rc;
    char *msg;              /* g_strdup of the device thread's message */
    uint8_t *out;
    size_t out_len;
    bool flag;
    uint32_t size, min, max;
    /* completion, under nvtpm.lock */
    bool done;
} job;

struct nvtpm {
    nvramtdb *db;
    char *device_id;
    char *permall_name;
    char *volatile_name;

    GThread *thread;
    GMutex lock;            /* protects jobs and every job's done */
    GQueue jobs;            /* of job *, in submission order */
    GCond work_cond;        /* jobs is not empty */
    GCond done_cond;        /* a job is done */

    gint powered;           /* atomic; written by the device thread */
    gint locality;          /* atomic; the locality of later commands */

    /* Device thread only. */
    uint32_t cur_locality;  /* what tpm_io_getlocality reports */
    int cb_rc;              /* first callback failure of the current call */
    char cb_msg[NVTPM_MSG_MAX];
    bool defer_writes;      /* in nvtpm_execute_unsynced(): queue, do not wait */
    bool unsynced;          /* writes queued and not yet waited for */

    /* The first failure among the unsynced writes, recorded by their
     * completion callback on the library's writer thread; under lock. */
    int deferred_rc;
    char deferred_msg[NVTPM_MSG_MAX];

    /* State blobs accepted by nvtpm_set_state_blob() and not yet
     * committed (see "Staged state blobs" below).  libtpms holds the same
     * blobs in its cache (TPMLIB_SetState), which MainInit reads. */
    uint8_t *staged_perm;   /* NULL: no permanent state staged */
    size_t staged_perm_len;
    enum { VOL_UNSTAGED, VOL_NONE, VOL_DATA } staged_vol;
    uint8_t *staged_vol_data;
    size_t staged_vol_len;
};

/* libtpms's callbacks have no user pointer: they find the device here.
 * @claimed reserves the slot while a device is being set up. */
G_LOCK_DEFINE_STATIC(instance);
static bool claimed;
static nvtpm *instance;

static bool on_device_thread(nvtpm *t)
{
    return t->thread && g_thread_self() == t->thread;
}

/* ---- libtpms callbacks (device thread, inside a TPMLIB call) ------------- */

static void cb_reset(nvtpm *t)
{
    t->cb_rc = 0;
    t->cb_msg[0] = '\0';
}

/* Record the first storage failure of the current libtpms call, and log
 * it: libtpms will only say "failure mode", the cause is ours to tell. */
static void cb_fail(nvtpm *t, int rc, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
static void cb_fail(nvtpm *t, int rc, const char *fmt, ...)
{
    char msg[NVTPM_MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    g_vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    g_warning("TPM %s: %s", t->device_id, msg);
    if (t->cb_rc == 0) {
        t->cb_rc = rc < 0 ? rc : -EIO;
        g_strlcpy(t->cb_msg, msg, sizeof t->cb_msg);
    }
}

/* The blob behind a libtpms state name; NULL for "savestate" (TPM 1.2
 * only: never stored) and for names we do not know. */
static const char *blob_of(nvtpm *t, const char *name)
{
    if (strcmp(name, TPM_PERMANENT_ALL_NAME) == 0)
        return t->permall_name;
    if (strcmp(name, TPM_VOLATILESTATE_NAME) == 0)
        return t->volatile_name;
    return NULL;
}

static TPM_RESULT cb_nvram_init(void)
{
    return TPM_SUCCESS;
}

static TPM_RESULT cb_loaddata(unsigned char **data, uint32_t *length, uint32_t tpm_number,
                              const char *name)
{
    nvtpm *t = instance;
    uint8_t *buf = NULL;
    size_t len = 0;

    *data = NULL;
    *length = 0;
    if (!t)
        return TPM_FAIL;
    const char *blob = blob_of(t, name);
    if (!blob) {
        if (strcmp(name, TPM_SAVESTATE_NAME) == 0)
            return TPM_RETRY;   /* TPM 1.2 only: there is none */
        cb_fail(t, -EINVAL, "libtpms asked for unknown state '%s'", name);
        return TPM_FAIL;
    }
    int rc = nvramtdb_read(t->db, blob, &buf, &len);
    if (rc == -ENOENT)
        return TPM_RETRY;       /* none yet: libtpms manufactures / starts clean */
    if (rc < 0) {
        cb_fail(t, rc, "loading %s failed: %s: %s", blob, g_strerror(-rc),
                nvramtdb_last_error());
        return TPM_FAIL;
    }
    if (len == 0) {
        /* libtpms never stores an empty state; do not re-manufacture
         * silently over something that is not a TPM state. */
        free(buf);
        cb_fail(t, -EBADMSG, "loading %s failed: the blob is empty", blob);
        return TPM_FAIL;
    }
    *data = buf;                /* malloc()ed: libtpms free()s it */
    *length = (uint32_t)len;    /* len <= the blob's maximum */
    return TPM_SUCCESS;
}

/* ---- unsynced writes ------------------------------------------------------ *
 *
 * nvtpm_execute_unsynced() runs a command whose response nobody outside
 * sees (a daemon's own TPM2_Startup): its writes are queued without
 * waiting, so that the flush overlaps with what the caller does next
 * (opening its sockets, accepting the first client).  Every later job
 * that reaches the TPM first waits for them (sync_writes()): no response
 * leaves the device before the state it was computed from is durable.  If
 * they failed, the TPM's state is ahead of the image's: the device is
 * powered off, so that it never answers from that state, and the job fails
 * with the writes' error. */

static void do_power_off(nvtpm *t);

/* Completion of an unsynced write (library writer thread); @opaque is the
 * blob's name, which lives as long as the device. */
static void unsynced_done(void *opaque, int errcode, bool is_write, uint8_t *data, size_t len)
{
    nvtpm *t = instance;

    (void)is_write;
    (void)len;
    free(data);
    if (errcode >= 0 || !t)
        return;
    g_mutex_lock(&t->lock);
    if (t->deferred_rc == 0) {
        t->deferred_rc = errcode;
        g_snprintf(t->deferred_msg, sizeof t->deferred_msg, "storing %s failed: %s: %s",
                   (const char *)opaque, g_strerror(-errcode), nvramtdb_last_error());
    }
    g_mutex_unlock(&t->lock);
}

static int queue_unsynced(nvtpm *t, int rc)
{
    if (rc == 0)
        t->unsynced = true;
    return rc;
}

/* Wait for the unsynced writes, if any (device thread). */
static int sync_writes(nvtpm *t)
{
    if (!t->unsynced)
        return 0;
    t->unsynced = false;
    int rc = nvramtdb_flush(t->db);  /* their callbacks have run when it returns */
    char lib_msg[NVTPM_MSG_MAX], msg[NVTPM_MSG_MAX];
    g_strlcpy(lib_msg, nvramtdb_last_error(), sizeof lib_msg);
    g_mutex_lock(&t->lock);
    int deferred = t->deferred_rc;
    g_strlcpy(msg, t->deferred_msg, sizeof msg);
    t->deferred_rc = 0;
    g_mutex_unlock(&t->lock);
    if (deferred == 0 && rc == 0)
        return 0;
    if (deferred == 0) {
        deferred = rc;
        g_snprintf(msg, sizeof msg, "waiting for its state to be stored failed: %s", lib_msg);
    }
    do_power_off(t);
    g_warning("TPM %s: %s; the TPM is powered off", t->device_id, msg);
    return set_error(-deferred, "TPM %s: %s; the TPM is powered off", t->device_id, msg);
}

static TPM_RESULT cb_storedata(const unsigned char *data, uint32_t length, uint32_t tpm_number,
                               const char *name)
{
    nvtpm *t = instance;

    if (!t)
        return TPM_FAIL;
    const char *blob = blob_of(t, name);
    if (!blob) {
        cb_fail(t, -EINVAL, "libtpms stored unknown state '%s' (%u bytes)", name, length);
        return TPM_FAIL;
    }
    /* Durable before we return, so before the response is released; or,
     * unsynced, before the next call reaches the TPM (sync_writes()). */
    int rc = t->defer_writes
                 ? queue_unsynced(t, nvramtdb_write(t->db, blob, data, length,
                                                          NVRAMTDB_ASYNC, unsynced_done,
                                                          (void *)blob))
                 : nvramtdb_write(t->db, blob, data, length, NVTPM_WRITE_FLAGS, NULL, NULL);
    if (rc < 0) {
        cb_fail(t, rc, "storing %s (%u bytes) failed: %s: %s", blob, length, g_strerror(-rc),
                nvramtdb_last_error());
        return TPM_FAIL;
    }
    return TPM_SUCCESS;
}

static TPM_RESULT cb_deletename(uint32_t tpm_number, const char *name, TPM_BOOL must_exist)
{
    nvtpm *t = instance;

    if (!t)
        return TPM_FAIL;
    const char *blob = blob_of(t, name);
    if (!blob)
        return must_exist ? TPM_FAIL : TPM_SUCCESS;
    int rc = t->defer_writes
                 ? queue_unsynced(t, nvramtdb_delete(t->db, blob, NVRAMTDB_ASYNC,
                                                           unsynced_done, (void *)blob))
                 : nvramtdb_delete(t->db, blob, NVTPM_WRITE_FLAGS, NULL, NULL);
    if (rc == -ENOENT)
        return must_exist ? TPM_FAIL : TPM_SUCCESS;
    if (rc < 0) {
        cb_fail(t, rc, "deleting %s failed: %s: %s", blob, g_strerror(-rc),
                nvramtdb_last_error());
        return TPM_FAIL;
    }
    return TPM_SUCCESS;
}

static TPM_RESULT cb_io_init(void)
{
    return TPM_SUCCESS;
}

static TPM_RESULT cb_io_getlocality(TPM_MODIFIER_INDICATOR *locality, uint32_t tpm_number)
{
    nvtpm *t = instance;
    *locality = t ? t->cur_locality : 0;
    return TPM_SUCCESS;
}

static TPM_RESULT cb_io_getphysicalpresence(TPM_BOOL *present, uint32_t tpm_number)
{
    *present = FALSE;           /* as swtpm */
    return TPM_SUCCESS;
}

static struct libtpms_callbacks callbacks = {
    .sizeOfStruct = sizeof(struct libtpms_callbacks),
    .tpm_nvram_init = cb_nvram_init,
    .tpm_nvram_loaddata = cb_loaddata,
    .tpm_nvram_storedata = cb_storedata,
    .tpm_nvram_deletename = cb_deletename,
    .tpm_io_init = cb_io_init,
    .tpm_io_getlocality = cb_io_getlocality,
    .tpm_io_getphysicalpresence = cb_io_getphysicalpresence,
};

/* ---- jobs, on the device thread ------------------------------------------ */

static bool is_powered(nvtpm *t)
{
    return g_atomic_int_get(&t->powered) != 0;
}

static void set_powered(nvtpm *t, bool on)
{
    g_atomic_int_set(&t->powered, on ? 1 : 0);
}

static int not_powered(nvtpm *t)
{
    return set_error(ENODEV, "TPM %s is not powered on", t->device_id);
}

/* Register libtpms's callbacks and choose TPM 2 (also needed for the
 * state blob calls made while the TPM is off). */
static int do_init(nvtpm *t)
{
    TPM_RESULT res = TPMLIB_ChooseTPMVersion(TPMLIB_TPM_VERSION_2);
    if (res != TPM_SUCCESS)
        return set_error(EIO, "TPM %s: TPMLIB_ChooseTPMVersion(TPM 2) failed: 0x%x",
                         t->device_id, (unsigned)res);
    res = TPMLIB_RegisterCallbacks(&callbacks);
    if (res != TPM_SUCCESS)
        return set_error(EIO, "TPM %s: TPMLIB_RegisterCallbacks failed: 0x%x", t->device_id,
                         (unsigned)res);
    return 0;
}

static int commit_staged(nvtpm *t);
static int discard_staged(nvtpm *t);
static void clear_libtpms_cache(nvtpm *t);

static void do_power_off(nvtpm *t)
{
    if (is_powered(t)) {
        TPMLIB_Terminate();
        set_powered(t, false);
    }
}

static int do_power_on(nvtpm *t)
{
    do_power_off(t);            /* powered already: this is a reset */
    int rc = do_init(t);
    if (rc < 0)
        return rc;

    /* State blobs set for this power-on: one atomic commit, before
     * libtpms loads them (from its cache; the image now holds the same). */
    rc = commit_staged(t);
    if (rc < 0)
        return rc;

    cb_reset(t);
    t->cur_locality = 0;
    TPM_RESULT res = TPMLIB_MainInit();
    if (res != TPM_SUCCESS || t->cb_rc) {
        TPMLIB_Terminate();
        clear_libtpms_cache(t);     /* a retry loads the image */
        if (t->cb_rc)
            return set_error(EIO, "TPM %s: power-on failed (TPMLIB_MainInit: 0x%x): %s",
                             t->device_id, (unsigned)res, t->cb_msg);
        return set_error(EIO, "TPM %s: power-on failed: TPMLIB_MainInit returned 0x%x",
                         t->device_id, (unsigned)res);
    }
    set_powered(t, true);

    /* The volatile state, if there was one, was loaded by MainInit: it is
     * single use. */
    rc = nvramtdb_delete(t->db, t->volatile_name, NVTPM_WRITE_FLAGS, NULL, NULL);
    if (rc < 0 && rc != -ENOENT) {
        set_error(EIO, "TPM %s: power-on failed: cannot delete the used volatile state %s: %s",
                  t->device_id, t->volatile_name, nvramtdb_last_error());
        g_warning("%s", nvtpm_last_error());
        do_power_off(t);
        return -EIO;
    }
    return 0;
}

/* The response handed out when storing the state failed: TPM_RC_FAILURE,
 * what libtpms answers in failure mode. */
static uint8_t *failure_response(size_t *len)
{
    static const uint8_t rsp[10] = { 0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x01 };
    uint8_t *buf = malloc(sizeof rsp);
    *len = buf ? sizeof rsp : 0;
    if (buf)
        memcpy(buf, rsp, sizeof rsp);
    return buf;
}

static uint32_t command_code(const uint8_t *cmd, size_t len)
{
    if (len < 10)
        return 0;
    return (uint32_t)cmd[6] << 24 | (uint32_t)cmd[7] << 16 | (uint32_t)cmd[8] << 8 | cmd[9];
}

static int do_execute(nvtpm *t, job *j)
{
    if (!is_powered(t))
        return not_powered(t);

    /* libtpms's Process may write to the command buffer: give it a copy. */
    unsigned char cmd[NVTPM_BUFFER_MAX];
    memcpy(cmd, j->in, j->in_len);

    unsigned char *resp = NULL;
    uint32_t resp_len = 0, resp_bufsize = 0;
    t->cur_locality = j->locality;
    cb_reset(t);
    t->defer_writes = j->unsynced;
    TPM_RESULT res = TPMLIB_Process(&resp, &resp_len, &resp_bufsize, cmd, (uint32_t)j->in_len);
    t->defer_writes = false;
    if (t->cb_rc) {
        /* libtpms is in failure mode now.  Whatever it answered, the
         * command's effect may not be durable: answer TPM_RC_FAILURE. */
        free(resp);
        j->out = failure_response(&j->out_len);
        return set_error(EIO,
                         "TPM %s: command 0x%08x failed, the TPM is now in failure mode: %s",
                         t->device_id, command_code(j->in, j->in_len), t->cb_msg);
    }
    if (res != TPM_SUCCESS) {
        free(resp);
        return set_error(EIO, "TPM %s: TPMLIB_Process failed: 0x%x", t->device_id,
                         (unsigned)res);
    }
    j->out = resp;              /* realloc()ed by libtpms: free() it */
    j->out_len = resp_len;
    return 0;
}

static int write_blob(nvtpm *t, const char *blob, const void *data, size_t len,
                      const char *what)
{
    int rc = nvramtdb_write(t->db, blob, data, len, NVTPM_WRITE_FLAGS, NULL, NULL);
    if (rc < 0)
        return set_error(-rc, "TPM %s: storing %s (%zu bytes) in %s failed: %s: %s",
                         t->device_id, what, len, blob, g_strerror(-rc),
                         nvramtdb_last_error());
    return 0;
}

static int do_store_volatile(nvtpm *t)
{
    if (!is_powered(t))
        return not_powered(t);
    unsigned char *buf = NULL;
    uint32_t len = 0;
    TPM_RESULT res = TPMLIB_VolatileAll_Store(&buf, &len);
    if (res != TPM_SUCCESS) {
        free(buf);
        return set_error(EIO, "TPM %s: TPMLIB_VolatileAll_Store failed: 0x%x", t->device_id,
                         (unsigned)res);
    }
    int rc = write_blob(t, t->volatile_name, buf, len, "the volatile state");
    free(buf);
    return rc;
}

static int do_get_established(nvtpm *t, job *j)
{
    if (!is_powered(t))
        return not_powered(t);
    TPM_BOOL established = FALSE;
    TPM_RESULT res = TPM_IO_TpmEstablished_Get(&established);
    if (res != TPM_SUCCESS)
        return set_error(EIO, "TPM %s: TPM_IO_TpmEstablished_Get failed: 0x%x", t->device_id,
                         (unsigned)res);
    j->flag = established != 0;
    return 0;
}

static int do_reset_established(nvtpm *t, job *j)
{
    if (!is_powered(t))
        return not_powered(t);
    /* libtpms checks the locality through tpm_io_getlocality. */
    t->cur_locality = j->locality;
    TPM_RESULT res = TPM_IO_TpmEstablished_Reset();
    t->cur_locality = (uint32_t)g_atomic_int_get(&t->locality);
    if (res == TPM_BAD_LOCALITY)
        return set_error(EPERM,
                         "TPM %s: resetting the established flag needs locality 3 or 4, not %u",
                         t->device_id, j->locality);
    if (res != TPM_SUCCESS)
        return set_error(EIO, "TPM %s: TPM_IO_TpmEstablished_Reset failed: 0x%x",
                         t->device_id, (unsigned)res);
    return 0;
}

/* nvtpm.h keeps libtpms's types from its callers; its state blob types
 * have libtpms's values, so that a type converts with a cast. */
_Static_assert(NVTPM_STATE_PERMANENT == TPMLIB_STATE_PERMANENT, "state type");
_Static_assert(NVTPM_STATE_VOLATILE == TPMLIB_STATE_VOLATILE, "state type");
_Static_assert(NVTPM_STATE_SAVE_STATE == TPMLIB_STATE_SAVE_STATE, "state type");

static enum TPMLIB_StateType libtpms_state(unsigned type)
{
    return (enum TPMLIB_StateType)type;
}

static const char *state_name(unsigned type)
{
    switch (type) {
    case NVTPM_STATE_PERMANENT:
        return "permanent";
    case NVTPM_STATE_VOLATILE:
        return "volatile";
    case NVTPM_STATE_SAVE_STATE:
        return "save";
    default:
        return "unknown";
    }
}

static int do_get_state(nvtpm *t, job *j)
{
    if (j->type == NVTPM_STATE_SAVE_STATE)
        return 0;               /* TPM 2 has no save state: empty */
    unsigned char *buf = NULL;
    uint32_t len = 0;
    cb_reset(t);
    TPM_RESULT res = TPMLIB_GetState(libtpms_state(j->type), &buf, &len);
    if (t->cb_rc) {
        free(buf);
        return set_error(-t->cb_rc, "TPM %s: reading the %s state failed: %s", t->device_id,
                         state_name(j->type), t->cb_msg);
    }
    if (res == TPM_RETRY || (res == TPM_SUCCESS && !buf)) {
        free(buf);
        return set_error(ENOENT, "TPM %s has no %s state", t->device_id, state_name(j->type));
    }
    if (res != TPM_SUCCESS) {
        free(buf);
        return set_error(EIO, "TPM %s: TPMLIB_GetState(%s) failed: 0x%x", t->device_id,
                         state_name(j->type), (unsigned)res);
    }
    j->out = buf;               /* malloc()ed by libtpms or by cb_loaddata */
    j->out_len = len;
    return 0;
}

/* ---- staged state blobs ---------------------------------------------------- *
 *
 * An incoming migration sets the permanent and the volatile state one
 * blob at a time (swtpm's SET_STATEBLOB, once per blob, then INIT).
 * Writing each blob as it arrives would leave the image holding one
 * TPM's permanent state beside another's volatile state if the sender
 * stopped between two blobs.  So a blob that libtpms accepts
 * (TPMLIB_SetState validates it and caches it for TPMLIB_MainInit) is
 * only staged here, in memory; the next power-on writes every staged blob
 * as one nvramtdb_write_batch() before TPMLIB_MainInit runs.  Until that
 * batch commits, the image holds the old state whole; after it, the new
 * state whole.
 *
 * - A later blob of the same type replaces the staged one (libtpms does
 *   the same with its cache).
 * - Staging a permanent state stages "no volatile state" with it: a saved
 *   volatile state belongs to the permanent state it was taken with, so
 *   the old one must not survive beside a new permanent state.  A
 *   volatile blob set after the permanent one (libtpms's required order,
 *   which QEMU follows) replaces that.  An empty volatile blob stages the
 *   deletion of the saved volatile state.
 * - A refused blob discards every staged one, as libtpms empties its cache
 *   when it rejects a blob: a half-received state is never started.
 * - Power-off, nvtpm_discard_state_blobs() and close discard them too, and
 *   empty libtpms's cache, so that the next power-on reads the image.
 * - nvtpm_get_state_blob() while powered off returns the staged blob
 *   (libtpms answers from its cache): what the next power-on will load.
 */

static void wipe_free(uint8_t *p, size_t len)
{
    if (p)
        explicit_bzero(p, len);
    free(p);
}

static bool have_staged(nvtpm *t)
{
    return t->staged_perm || t->staged_vol != VOL_UNSTAGED;
}

static void drop_staged_vol(nvtpm *t)
{
    wipe_free(t->staged_vol_data, t->staged_vol_len);
    t->staged_vol_data = NULL;
    t->staged_vol_len = 0;
    t->staged_vol = VOL_UNSTAGED;
}

/* Forget our copies (after they were committed, or to discard them). */
static void drop_staged(nvtpm *t)
{
    wipe_free(t->staged_perm, t->staged_perm_len);
    t->staged_perm = NULL;
    t->staged_perm_len = 0;
    drop_staged_vol(t);
}

/* Empty libtpms's cache of set state blobs, so that TPMLIB_MainInit and
 * TPMLIB_GetState read the image again.  libtpms has no call for this;
 * its documented equivalent (TPMLIB_SetState(3): "all state blobs are
 * cleared ... when a call to TPMLIB_SetState() fails because a state blob
 * could not be accepted") is a blob it always refuses: a TPM 2 save state
 * (TPM_BAD_TYPE).  Only while powered off (while on, the cache is empty:
 * TPMLIB_MainInit consumed it). */
static void clear_libtpms_cache(nvtpm *t)
{
    static const unsigned char no_save_state = 0;

    if (!is_powered(t))
        (void)TPMLIB_SetState(TPMLIB_STATE_SAVE_STATE, &no_save_state, 1);
}

/* Discard every staged blob; returns how many there were. */
static int discard_staged(nvtpm *t)
{
    int n = (t->staged_perm != NULL) + (t->staged_vol != VOL_UNSTAGED);

    drop_staged(t);
    clear_libtpms_cache(t);
    return n;
}

/* Commit the staged blobs as one batch (device thread, powered off, before
 * TPMLIB_MainInit).  On failure nothing changed in the image and the blobs
 * stay staged. */
static int commit_staged(nvtpm *t)
{
    nvramtdb_change ch[2];
    size_t n = 0;

    if (!have_staged(t))
        return 0;
    memset(ch, 0, sizeof ch);
    if (t->staged_perm)
        ch[n++] = (nvramtdb_change){ .struct_size = sizeof ch[0], .name = t->permall_name,
                                     .data = t->staged_perm, .len = t->staged_perm_len };
    if (t->staged_vol == VOL_DATA) {
        ch[n++] = (nvramtdb_change){ .struct_size = sizeof ch[0], .name = t->volatile_name,
                                     .data = t->staged_vol_data, .len = t->staged_vol_len };
    } else if (t->staged_vol == VOL_NONE) {
        /* A batch's delete of a blob without value fails the batch: delete
         * only a saved volatile state that exists (only this thread
         * writes it, so it cannot appear in between). */
        uint8_t *old = NULL;
        size_t old_len = 0;
        int rc = nvramtdb_read(t->db, t->volatile_name, &old, &old_len);
        wipe_free(old, old_len);
        if (rc < 0 && rc != -ENOENT)
            return set_error(-rc, "TPM %s: power-on failed: reading %s: %s", t->device_id,
                             t->volatile_name, nvramtdb_last_error());
        if (rc == 0)
            ch[n++] = (nvramtdb_change){ .struct_size = sizeof ch[0],
                                         .name = t->volatile_name, .is_delete = true };
    }
    if (n) {
        int rc = nvramtdb_write_batch(t->db, ch, n, NVTPM_WRITE_FLAGS, NULL, NULL);
        if (rc < 0)
            return set_error(-rc, "TPM %s: power-on failed: storing the state blobs set "
                             "for it (%s%s%s) failed, the image keeps the old state: %s: %s",
                             t->device_id, t->staged_perm ? t->permall_name : "",
                             t->staged_perm && t->staged_vol != VOL_UNSTAGED ? ", " : "",
                             t->staged_vol != VOL_UNSTAGED ? t->volatile_name : "",
                             g_strerror(-rc), nvramtdb_last_error());
    }
    drop_staged(t);     /* libtpms keeps its cached copies for MainInit */
    return 0;
}

static int stage_state(nvtpm *t, job *j)
{
    if (j->type == NVTPM_STATE_SAVE_STATE) {
        if (j->in_len == 0)
            return 0;
        return set_error(EINVAL, "TPM %s: a TPM 2 has no save state (got %zu bytes)",
                         t->device_id, j->in_len);
    }
    const char *blob = j->type == NVTPM_STATE_PERMANENT ? t->permall_name : t->volatile_name;
    if (j->in_len == 0) {
        if (j->type == NVTPM_STATE_PERMANENT)
            return set_error(EINVAL, "TPM %s: an empty permanent state is not a TPM state",
                             t->device_id);
        /* No volatile state: the next power-on deletes any. */
        TPMLIB_SetState(TPMLIB_STATE_VOLATILE, NULL, 0);
        drop_staged_vol(t);
        t->staged_vol = VOL_NONE;
        return 0;
    }
    if (j->in_len > (j->type == NVTPM_STATE_PERMANENT ? NVTPM_PERMALL_MAX
                                                       : NVTPM_VOLATILESTATE_MAX))
        return set_error(EFBIG, "TPM %s: the %s state blob (%zu bytes) exceeds %s's maximum",
                         t->device_id, state_name(j->type), j->in_len, blob);

    cb_reset(t);
    TPM_RESULT res = TPMLIB_SetState(libtpms_state(j->type), j->in, (uint32_t)j->in_len);
    if (res != TPM_SUCCESS) {
        if (t->cb_rc)
            return set_error(-t->cb_rc, "TPM %s: setting the %s state failed: %s",
                             t->device_id, state_name(j->type), t->cb_msg);
        return set_error(EINVAL, "TPM %s: libtpms rejected the %s state blob (%zu bytes): 0x%x",
                         t->device_id, state_name(j->type), j->in_len, (unsigned)res);
    }
    uint8_t *copy = malloc(j->in_len);
    if (!copy) {
        return set_error(ENOMEM, "TPM %s: no memory to stage the %s state (%zu bytes)",
                         t->device_id, state_name(j->type), j->in_len);
    }
    memcpy(copy, j->in, j->in_len);
    if (j->type == NVTPM_STATE_PERMANENT) {
        wipe_free(t->staged_perm, t->staged_perm_len);
        t->staged_perm = copy;
        t->staged_perm_len = j->in_len;
        /* The old saved volatile state is not this permanent state's. */
        TPMLIB_SetState(TPMLIB_STATE_VOLATILE, NULL, 0);
        drop_staged_vol(t);
        t->staged_vol = VOL_NONE;
    } else {
        drop_staged_vol(t);
        t->staged_vol = VOL_DATA;
        t->staged_vol_data = copy;
        t->staged_vol_len = j->in_len;
    }
    return 0;
}

static int do_set_state(nvtpm *t, job *j)
{
    if (is_powered(t))
        return set_error(EBUSY, "TPM %s: a state blob can only be set while it is powered off",
                         t->device_id);
    int rc = stage_state(t, j);
    if (rc < 0 && have_staged(t)) {
        char *msg = g_strdup(nvtpm_last_error());
        discard_staged(t);
        set_error(-rc, "%s (the state blobs set before it are discarded)", msg);
        g_free(msg);
    } else if (rc < 0) {
        clear_libtpms_cache(t);     /* libtpms emptied it already, if it refused */
    }
    return rc;
}

static void run_job(nvtpm *t, job *j)
{
    int rc = 0, sync_rc = 0;

    clear_error();
    /* OP_RUN's function reaches the TPM through jobs of its own. */
    if (j->op != OP_RUN && j->op != OP_INIT) {
        sync_rc = sync_writes(t);
        if (sync_rc < 0 && j->op != OP_POWER_OFF && j->op != OP_QUIT) {
            if (j->op == OP_EXECUTE)
                j->out = failure_response(&j->out_len);
            rc = sync_rc;
            goto out;
        }
    }
    switch (j->op) {
    case OP_INIT:
        rc = do_init(t);
        if (rc == 0)
            clear_libtpms_cache(t); /* nothing left by an earlier device */
        break;
    case OP_POWER_ON:
        rc = do_power_on(t);
        break;
    case OP_POWER_OFF:
    case OP_QUIT:
        do_power_off(t);
        j->size = (uint32_t)discard_staged(t);
        break;
    case OP_DISCARD:
        j->size = (uint32_t)discard_staged(t);
        break;
    case OP_EXECUTE:
        rc = do_execute(t, j);
        break;
    case OP_STORE_VOLATILE:
        rc = do_store_volatile(t);
        break;
    case OP_GET_ESTABLISHED:
        rc = do_get_established(t, j);
        break;
    case OP_RESET_ESTABLISHED:
        rc = do_reset_established(t, j);
        break;
    case OP_GET_STATE:
        rc = do_get_state(t, j);
        break;
    case OP_SET_STATE:
        rc = do_set_state(t, j);
        break;
    case OP_BUFFER_SIZE:
        j->size = TPMLIB_SetBufferSize(j->wanted, &j->min, &j->max);
        break;
    case OP_RUN:
        rc = j->fn(j->opaque);
        break;
    case OP_SYNC:
        break;                  /* sync_writes() above */
    }
    if (rc == 0 && sync_rc < 0)
        rc = sync_rc;           /* powered off all the same; the message stands */
out:
    j->rc = rc;
    j->msg = rc < 0 ? g_strdup(nvtpm_last_error()) : NULL;
}

static void push_job(nvtpm *t, job *j)
{
    g_mutex_lock(&t->lock);
    g_queue_push_tail(&t->jobs, j);
    g_cond_signal(&t->work_cond);
    g_mutex_unlock(&t->lock);
}

static job *pop_job(nvtpm *t)
{
    g_mutex_lock(&t->lock);
    while (g_queue_is_empty(&t->jobs))
        g_cond_wait(&t->work_cond, &t->lock);
    job *j = g_queue_pop_head(&t->jobs);
    g_mutex_unlock(&t->lock);
    return j;
}

static gpointer device_main(gpointer data)
{
    nvtpm *t = data;

    for (;;) {
        job *j = pop_job(t);
        bool quit = j->op == OP_QUIT;

        run_job(t, j);
        if (j->op == OP_EXECUTE && j->cb) {
            /* Async: the callback owns the response; the message stays
             * this thread's (nvtpm_last_error() in the callback). */
            if (j->msg)
                set_error(-j->rc, "%s", j->msg);
            j->cb(j->opaque, j->rc, j->out, j->out_len);
            g_free((void *)j->in);
            g_free(j->msg);
            g_free(j);
        } else {
            g_mutex_lock(&t->lock);
            j->done = true;
            g_cond_broadcast(&t->done_cond);
            g_mutex_unlock(&t->lock);
        }
        if (quit)
            break;
    }
    return NULL;
}

/* Run @j on the device thread and wait for it; its message, if it failed,
 * becomes the calling thread's.  On the device thread (a response
 * callback), run it inline. */
static int run_sync(nvtpm *t, job *j)
{
    j->done = false;
    if (on_device_thread(t)) {
        run_job(t, j);
    } else {
        push_job(t, j);
        g_mutex_lock(&t->lock);
        while (!j->done)
            g_cond_wait(&t->done_cond, &t->lock);
        g_mutex_unlock(&t->lock);
    }
    if (j->rc < 0)
        set_error(-j->rc, "%s", j->msg ? j->msg : "");
    g_free(j->msg);
    j->msg = NULL;
    return j->rc;
}

int nvtpm_run_on_device(nvtpm *t, int (*fn)(void *opaque), void *opaque)
{
    if (on_device_thread(t))
        return fn(opaque);
    job j = { .op = OP_RUN, .fn = fn, .opaque = opaque };
    return run_sync(t, &j);
}

/* ---- open and close ------------------------------------------------------ */

static int claim_instance(const char *device_id)
{
    int rc = 0;
    G_LOCK(instance);
    if (claimed)
        rc = set_error(EBUSY,
                       "cannot open TPM %s: TPM %s is already open in this process "
                       "(libtpms supports one TPM per process)",
                       device_id ? device_id : "(null)",
                       instance ? instance->device_id : "(being opened)");
    else
        claimed = true;
    G_UNLOCK(instance);
    return rc;
}

/* Publish @t as the device of the claimed slot, or (NULL) release it. */
static void set_instance(nvtpm *t)
{
    G_LOCK(instance);
    instance = t;
    claimed = t != NULL;
    G_UNLOCK(instance);
}

static void free_device(nvtpm *t)
{
    g_mutex_clear(&t->lock);
    g_cond_clear(&t->work_cond);
    g_cond_clear(&t->done_cond);
    g_free(t->device_id);
    g_free(t->permall_name);
    g_free(t->volatile_name);
    g_free(t);
}

/* Set up the device on @db, with the instance slot claimed.  Takes @db. */
static int open_claimed(nvramtdb *db, const char *device_id, nvtpm **out)
{
    int rc;
    nvtpm *t = g_new0(nvtpm, 1);

    g_mutex_init(&t->lock);
    g_queue_init(&t->jobs);
    g_cond_init(&t->work_cond);
    g_cond_init(&t->done_cond);
    t->db = db;
    t->device_id = g_strdup(device_id);
    t->permall_name = g_strdup_printf("%s/%s", device_id, TPM_PERMANENT_ALL_NAME);
    t->volatile_name = g_strdup_printf("%s/%s", device_id, TPM_VOLATILESTATE_NAME);

    rc = nvramtdb_register_blob(db, t->permall_name, NVTPM_PERMALL_MAX);
    if (rc == 0)
        rc = nvramtdb_register_blob(db, t->volatile_name, NVTPM_VOLATILESTATE_MAX);
    if (rc < 0) {
        set_error(-rc, "TPM %s: %s", device_id, nvramtdb_last_error());
        goto fail;
    }
    /* A TPM needs its values: an encrypted image without a key fails
     * here, clearly, not at the first read of its state. */
    rc = nvramtdb_start(db, NVRAMTDB_START_FAIL_ON_ENCRYPTED);
    if (rc < 0) {
        set_error(-rc, "TPM %s: cannot start its image: %s", device_id, nvramtdb_last_error());
        goto fail;
    }

    set_instance(t);
    t->thread = g_thread_try_new("nvtpm", device_main, t, NULL);
    if (!t->thread) {
        rc = set_error(EAGAIN, "TPM %s: cannot start the device thread", device_id);
        goto fail;
    }
    job j = { .op = OP_INIT };
    rc = run_sync(t, &j);
    if (rc < 0) {
        job q = { .op = OP_QUIT };
        run_sync(t, &q);        /* succeeds: leaves the message alone */
        g_thread_join(t->thread);
        t->thread = NULL;
        goto fail;
    }
    *out = t;
    return 0;

fail:
    nvramtdb_close(db);         /* its messages are the library's, not ours */
    set_instance(NULL);
    free_device(t);
    return rc;
}

/* ---- crypto warm-up ------------------------------------------------------ *
 *
 * OpenSSL's first use in a process (reading its configuration, building
 * its algorithm tables, instantiating and seeding the DRBG) costs about
 * 4 ms, which libtpms would pay inside the first power-on and
 * TPM2_Startup, after the image is open.  A VM's boot waits for the TPM's
 * first response, so the first open pays it on a short-lived thread, in
 * parallel with opening the image, and joins it before returning: with one
 * CPU nothing is gained, but nothing is lost beyond creating the thread.
 * It is the initialisation libtpms would trigger anyway (the default
 * configuration file, the default DRBG), only earlier. */
static gpointer warm_crypto(gpointer unused)
{
    unsigned char b[16];

    (void)unused;
    if (OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, NULL) == 1 && RAND_bytes(b, sizeof b) == 1)
        OPENSSL_cleanse(b, sizeof b);
    return NULL;
}

static GThread *start_crypto_warmup(void)
{
    static gint started;

    if (!g_atomic_int_compare_and_exchange(&started, 0, 1))
        return NULL;            /* warm already, or warming */
    return g_thread_try_new("nvtpm-warmup", warm_crypto, NULL, NULL);  /* NULL: no harm */
}

static void finish_crypto_warmup(GThread *warm)
{
    if (warm)
        g_thread_join(warm);
}

int nvtpm_open_handle(nvramtdb *db, const char *device_id, nvtpm **out)
{
    if (out)
        *out = NULL;
    if (!db || !device_id || !out) {
        nvramtdb_close(db);
        return set_error(EINVAL, "nvtpm_open_handle: NULL argument");
    }
    int rc = claim_instance(device_id);
    if (rc < 0) {
        nvramtdb_close(db);
        return rc;
    }
    GThread *warm = start_crypto_warmup();
    rc = open_claimed(db, device_id, out);
    finish_crypto_warmup(warm);
    return rc;
}

int nvtpm_open(const char *uri, const char *device_id, unsigned flags, nvtpm **out)
{
    nvramtdb *db = NULL;

    if (out)
        *out = NULL;
    if (!uri || !device_id || !out)
        return set_error(EINVAL, "nvtpm_open: NULL argument");
    if (flags & ~(NVTPM_OPEN_CREATE | NVTPM_OPEN_STOCK_COMMIT))
        return set_error(EINVAL, "nvtpm_open: unknown flags 0x%x", flags);

    int rc = claim_instance(device_id);
    if (rc < 0)
        return rc;
    unsigned dbflags = 0;
    if (flags & NVTPM_OPEN_CREATE)
        dbflags |= NVRAMTDB_OPEN_CREATE;
    if (flags & NVTPM_OPEN_STOCK_COMMIT)
        dbflags |= NVRAMTDB_OPEN_STOCK_COMMIT;
    GThread *warm = start_crypto_warmup();
    rc = nvramtdb_open(uri, dbflags, &db);
    if (rc < 0) {
        set_instance(NULL);
        rc = set_error(-rc, "TPM %s: %s", device_id, nvramtdb_last_error());
    } else {
        rc = open_claimed(db, device_id, out);
    }
    finish_crypto_warmup(warm);
    return rc;
}

int nvtpm_close(nvtpm *t)
{
    if (!t)
        return 0;
    if (on_device_thread(t))
        return set_error(EDEADLK, "TPM %s: nvtpm_close() called from a response callback",
                         t->device_id);
    job q = { .op = OP_QUIT };
    run_sync(t, &q);            /* powers off; jobs queued before it ran */
    g_thread_join(t->thread);
    t->thread = NULL;

    int rc = nvramtdb_close(t->db);  /* drains and checkpoints */
    if (rc < 0)
        set_error(-rc, "TPM %s: closing the image: %s", t->device_id, nvramtdb_last_error());
    set_instance(NULL);
    free_device(t);
    return rc;
}

nvramtdb *nvtpm_image(nvtpm *t)
{
    return t ? t->db : NULL;
}

/* ---- the device's operations --------------------------------------------- */

int nvtpm_power_on(nvtpm *t)
{
    if (!t)
        return set_error(EINVAL, "nvtpm_power_on: NULL device");
    job j = { .op = OP_POWER_ON };
    return run_sync(t, &j);
}

int nvtpm_power_off(nvtpm *t)
{
    if (!t)
        return set_error(EINVAL, "nvtpm_power_off: NULL device");
    job j = { .op = OP_POWER_OFF };
    return run_sync(t, &j);
}

bool nvtpm_is_powered(nvtpm *t)
{
    return t && is_powered(t);
}

static int check_command(nvtpm *t, const uint8_t *cmd, size_t len)
{
    if (!t)
        return set_error(EINVAL, "nvtpm_execute: NULL device");
    if (!cmd || len == 0 || len > NVTPM_BUFFER_MAX)
        return set_error(EINVAL, "TPM %s: command of %zu bytes refused (1 to %u bytes)",
                         t->device_id, cmd ? len : 0, NVTPM_BUFFER_MAX);
    return 0;
}

static int execute(nvtpm *t, const uint8_t *cmd, size_t len, bool unsynced, uint8_t **resp,
                   size_t *resp_len)
{
    if (resp)
        *resp = NULL;
    if (resp_len)
        *resp_len = 0;
    int rc = check_command(t, cmd, len);
    if (rc < 0)
        return rc;
    if (!resp || !resp_len)
        return set_error(EINVAL, "nvtpm_execute: NULL response pointer");
    job j = {
        .op = OP_EXECUTE,
        .in = cmd,
        .in_len = len,
        .locality = (uint8_t)g_atomic_int_get(&t->locality),
        .unsynced = unsynced,
    };
    rc = run_sync(t, &j);
    *resp = j.out;
    *resp_len = j.out_len;
    return rc;
}

int nvtpm_execute(nvtpm *t, const uint8_t *cmd, size_t len, uint8_t **resp, size_t *resp_len)
{
    return execute(t, cmd, len, false, resp, resp_len);
}

int nvtpm_execute_unsynced(nvtpm *t, const uint8_t *cmd, size_t len, uint8_t **resp,
                           size_t *resp_len)
{
    return execute(t, cmd, len, true, resp, resp_len);
}

int nvtpm_sync(nvtpm *t)
{
    if (!t)
        return set_error(EINVAL, "nvtpm_sync: NULL device");
    job j = { .op = OP_SYNC };
    return run_sync(t, &j);
}

int nvtpm_execute_async(nvtpm *t, const uint8_t *cmd, size_t len, nvtpm_response_fn *cb,
                        void *opaque)
{
    int rc = check_command(t, cmd, len);
    if (rc < 0)
        return rc;
    if (!cb)
        return set_error(EINVAL, "nvtpm_execute_async: NULL callback");
    job *j = g_new0(job, 1);
    j->op = OP_EXECUTE;
    j->in = g_memdup2(cmd, len);
    j->in_len = len;
    j->locality = (uint8_t)g_atomic_int_get(&t->locality);
    j->cb = cb;
    j->opaque = opaque;
    push_job(t, j);
    return 0;
}

int nvtpm_set_locality(nvtpm *t, uint8_t locality)
{
    if (!t)
        return set_error(EINVAL, "nvtpm_set_locality: NULL device");
    if (locality > 4)
        return set_error(EINVAL, "TPM %s: locality %u out of range 0..4", t->device_id,
                         locality);
    g_atomic_int_set(&t->locality, locality);
    return 0;
}

int nvtpm_cancel(nvtpm *t)
{
    if (!t)
        return set_error(EINVAL, "nvtpm_cancel: NULL device");
    /* libtpms allows this from any thread: it raises a flag that the
     * running command polls; with no command running it is harmless (the
     * next command clears the flag when it starts). */
    if (is_powered(t))
        TPMLIB_CancelCommand();
    return 0;
}

int nvtpm_store_volatile(nvtpm *t)
{
    if (!t)
        return set_error(EINVAL, "nvtpm_store_volatile: NULL device");
    job j = { .op = OP_STORE_VOLATILE };
    return run_sync(t, &j);
}

int nvtpm_get_established(nvtpm *t, bool *established)
{
    if (!t || !established)
        return set_error(EINVAL, "nvtpm_get_established: NULL argument");
    job j = { .op = OP_GET_ESTABLISHED };
    int rc = run_sync(t, &j);
    *established = rc == 0 && j.flag;
    return rc;
}

int nvtpm_reset_established(nvtpm *t, uint8_t locality)
{
    if (!t)
        return set_error(EINVAL, "nvtpm_reset_established: NULL device");
    if (locality > 4)
        return set_error(EINVAL, "TPM %s: locality %u out of range 0..4", t->device_id,
                         locality);
    job j = { .op = OP_RESET_ESTABLISHED, .locality = locality };
    return run_sync(t, &j);
}

static int check_state_type(nvtpm *t, unsigned type)
{
    if (!t)
        return set_error(EINVAL, "nvtpm state blob: NULL device");
    if (type != NVTPM_STATE_PERMANENT && type != NVTPM_STATE_VOLATILE &&
        type != NVTPM_STATE_SAVE_STATE)
        return set_error(EINVAL, "TPM %s: unknown state blob type %u", t->device_id, type);
    return 0;
}

int nvtpm_get_state_blob(nvtpm *t, unsigned type, uint8_t **data, size_t *len)
{
    if (data)
        *data = NULL;
    if (len)
        *len = 0;
    int rc = check_state_type(t, type);
    if (rc < 0)
        return rc;
    if (!data || !len)
        return set_error(EINVAL, "nvtpm_get_state_blob: NULL argument");
    job j = { .op = OP_GET_STATE, .type = type };
    rc = run_sync(t, &j);
    if (rc == 0) {
        *data = j.out;
        *len = j.out_len;
    }
    return rc;
}

int nvtpm_set_state_blob(nvtpm *t, unsigned type, const uint8_t *data, size_t len)
{
    int rc = check_state_type(t, type);
    if (rc < 0)
        return rc;
    if (!data && len)
        return set_error(EINVAL, "nvtpm_set_state_blob: NULL data");
    job j = { .op = OP_SET_STATE, .type = type, .in = data, .in_len = len };
    return run_sync(t, &j);
}

int nvtpm_discard_state_blobs(nvtpm *t)
{
    if (!t)
        return set_error(EINVAL, "nvtpm_discard_state_blobs: NULL device");
    job j = { .op = OP_DISCARD };
    run_sync(t, &j);
    return (int)j.size;
}

uint32_t nvtpm_set_buffer_size(nvtpm *t, uint32_t wanted, uint32_t *min, uint32_t *max)
{
    if (!t)
        return 0;
    job j = { .op = OP_BUFFER_SIZE, .wanted = wanted };
    run_sync(t, &j);
    if (min)
        *min = j.min;
    if (max)
        *max = j.max;
    return j.size;
}
