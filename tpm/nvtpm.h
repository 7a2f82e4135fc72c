/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * nvtpm.h — a libtpms TPM 2.0 whose NVRAM lives in an nvramtdb image.
 *
 * The TPM runs on a dedicated device thread: every TPMLIB_* call happens
 * there (libtpms holds global state, so there is one nvtpm per process).
 * libtpms's NVRAM callbacks read and write the blobs "<device>/permall"
 * and "<device>/volatilestate" of the image; a store is queued to the
 * image's writer with NVRAMTDB_ASYNC | NVRAMTDB_WAIT_COMPLETION, so the
 * response of a command that changed NV state is only released once that
 * state is durable.  Other threads submit commands and get responses, by
 * blocking call or callback.
 *
 * Every function returns 0 or a negative errno and leaves a message for
 * the calling thread (nvtpm_last_error(); when the image failed, it
 * includes the library's message).  Storage failures met by
 * libtpms's callbacks are also logged with g_warning() in the log domain
 * "nvtpm" (on the device thread): install a handler for that domain to
 * route them to a log file.
 *
 * Calls made from a response callback (on the device thread) run inline;
 * only nvtpm_close() is refused there (-EDEADLK).
 *
 * Only nvramtdb.h is needed with this header: libtpms stays an
 * implementation detail (its constants have NVTPM_ equivalents here).
 */
#ifndef NVTPM_H
#define NVTPM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nvramtdb.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nvtpm nvtpm;

/* Largest command or response (libtpms TPM 2.0). */
#define NVTPM_BUFFER_MAX 4096u

/* ---- open flags ---- */
/** Create the image (file: URI) if it does not exist, sized for the TPM. */
#define NVTPM_OPEN_CREATE        (1u << 0)
/** Commit with tdb's own four-flush transactions (see nvramtdb.h). */
#define NVTPM_OPEN_STOCK_COMMIT  (1u << 1)

/** Message describing the most recent failure of an nvtpm call in the
 *  calling thread ("" if none).  Inside a response callback: the message
 *  of the command completed. */
const char *nvtpm_last_error(void);

/**
 * Open (or create) the image @uri, register the TPM's blobs under
 * @device_id (e.g. "tpm0") with their maximum sizes, start the image and
 * the device thread.  The TPM is powered off until nvtpm_power_on().
 * Errors: as nvramtdb_open/start; -EBUSY another nvtpm exists in this
 * process or the image is in use.
 */
int nvtpm_open(const char *uri, const char *device_id, unsigned flags, nvtpm **out);

/**
 * The same on a handle already opened (nvramtdb_open, or the tests'
 * nvt_open_backend) but not started; the device takes ownership of @db,
 * also on failure.
 */
int nvtpm_open_handle(nvramtdb *db, const char *device_id, nvtpm **out);

/** Maximum sizes registered for the blobs (see nvtpm.c for why). */
uint32_t nvtpm_permall_max(void);
uint32_t nvtpm_volatilestate_max(void);

/**
 * Power the TPM on: TPMLIB_MainInit on the device thread.  First the state
 * blobs staged by nvtpm_set_state_blob() are written as one atomic batch
 * (if that fails, the power-on fails, the image keeps its old state and
 * the blobs stay staged).  A TPM without
 * permanent state is manufactured.  Saved volatile state, if any, is
 * loaded and then deleted (single use, as swtpm does with
 * PTM_INIT_FLAG_DELETE_VOLATILE — always, here); the TPM then runs
 * without TPM2_Startup.  Without it, the TPM expects TPM2_Startup.  On a
 * powered TPM this is a reset (power off, then on), like swtpm's INIT.
 * Errors: -EIO libtpms failed to initialise (message gives its code, or
 * the storage error that made it fail).
 */
int nvtpm_power_on(nvtpm *t);

/** Power off (TPMLIB_Terminate).  Idempotent.  Discards staged state
 *  blobs (nvtpm_set_state_blob()). */
int nvtpm_power_off(nvtpm *t);

bool nvtpm_is_powered(nvtpm *t);

/**
 * Execute one TPM command.  @cmd (@len bytes, at most NVTPM_BUFFER_MAX) is
 * copied.  *resp receives a malloc()ed response of *resp_len bytes.
 * Returns 0 when a response was produced (it may carry a TPM error code),
 * or a negative errno: -ENODEV not powered on, -EINVAL bad length, -EIO a
 * storage failure made the command fail (libtpms then answers 0x101:
 * failure mode; the message names the cause).
 *
 * On -EIO, *resp still receives a response to forward to the client: a
 * 10-byte TPM_RC_FAILURE (0x101) response, whatever libtpms had answered
 * (the command's effect may or may not be on disk, as after a power cut:
 * the image holds the old state or the new one, never a mix).  Every
 * later command answers 0x101 (return 0) until the next power-on.  On
 * other errors *resp is NULL.
 *
 * The command runs at the locality set by nvtpm_set_locality() before
 * this call.  TPM_RC_RETRY (0x922) responses are the client's to retry,
 * as with any TPM.
 */
int nvtpm_execute(nvtpm *t, const uint8_t *cmd, size_t len, uint8_t **resp, size_t *resp_len);

/**
 * nvtpm_execute() for a command whose response stays with the caller (a
 * daemon's own TPM2_Startup): the state it changed is queued for the
 * image but not waited for, so that the flush overlaps with what the
 * caller does next.  Every later call that reaches the TPM (nvtpm_sync()
 * included) first waits for those writes; if they failed, that call fails
 * with their error (and, from nvtpm_execute(), a TPM_RC_FAILURE response),
 * and the TPM is powered off: it never answers from a state the image
 * does not hold.  Errors: those of nvtpm_execute() for the command itself.
 */
int nvtpm_execute_unsynced(nvtpm *t, const uint8_t *cmd, size_t len, uint8_t **resp,
                           size_t *resp_len);

/** Wait until every state change made so far is durable (see
 *  nvtpm_execute_unsynced(); other calls wait before returning).  Errors:
 *  the unsynced writes' failure, the device then being powered off. */
int nvtpm_sync(nvtpm *t);

/** Completion of nvtpm_execute_async: @errcode and @resp as
 *  nvtpm_execute() returns them; @resp is owned by the callback (free()).
 *  nvtpm_last_error() in the callback gives the message. */
typedef void nvtpm_response_fn(void *opaque, int errcode, uint8_t *resp, size_t resp_len);

/** Queue a command; @cb (not NULL) runs on the device thread with the
 *  response, in submission order with the other requests.  Returns 0 once
 *  queued, or -EINVAL at once (bad length, NULL callback). */
int nvtpm_execute_async(nvtpm *t, const uint8_t *cmd, size_t len, nvtpm_response_fn *cb,
                        void *opaque);

/** Locality of the following commands (0..4); used by the io callbacks.
 *  Each command takes the locality in effect when it is submitted.
 *  Errors: -EINVAL above 4. */
int nvtpm_set_locality(nvtpm *t, uint8_t locality);

/** Cancel the command in progress, if any (TPMLIB_CancelCommand).  May be
 *  called from any thread; a no-op when nothing runs. */
int nvtpm_cancel(nvtpm *t);

/**
 * Store the volatile state now (TPMLIB_VolatileAll_Store) into
 * "<device>/volatilestate", durably; the next power-on restores it once.
 * Errors: -ENODEV not powered; the storage errors of nvramtdb_write().
 */
int nvtpm_store_volatile(nvtpm *t);

/** The TPM's "established" flag, and its reset (control channel), through
 *  libtpms's TPM_IO_TpmEstablished_Get/Reset.  The reset runs at
 *  @locality (for that call only); libtpms allows it at locality 3 or 4.
 *  Errors: -ENODEV not powered; -EINVAL locality above 4; -EPERM the
 *  reset at locality 0..2 (libtpms's TPM_BAD_LOCALITY). */
int nvtpm_get_established(nvtpm *t, bool *established);
int nvtpm_reset_established(nvtpm *t, uint8_t locality);

/* ---- state blob types ---- */
/** The permanent state ("<device>/permall"). */
#define NVTPM_STATE_PERMANENT   (1u << 0)
/** The volatile state ("<device>/volatilestate"). */
#define NVTPM_STATE_VOLATILE    (1u << 1)
/** The save state of a TPM 1.2 (always empty: a TPM 2 has none). */
#define NVTPM_STATE_SAVE_STATE  (1u << 2)

/**
 * State blobs for migration (swtpm's GET/SET_STATEBLOB): @type is one of
 * NVTPM_STATE_PERMANENT / _VOLATILE / _SAVE_STATE.  get returns a
 * malloc()ed copy; set requires the TPM powered off and only stages.
 *
 * get: from the running TPM when powered (the volatile state is then
 * produced afresh, as TPMLIB_VolatileAll_Store does); powered off, the
 * staged blob if one is staged (what the next power-on loads; a volatile
 * state staged as none is -ENOENT), else the blob in the image (-ENOENT
 * if there is none).  _SAVE_STATE is always empty (NULL, 0): a TPM 2 has
 * none.
 *
 * set: libtpms validates the blob (-EINVAL if it refuses it; a volatile
 * state is checked against the staged permanent state, or the image's,
 * so set the permanent state first) and the blob is *staged*: nothing is
 * written.  The next nvtpm_power_on() commits every staged blob as one
 * atomic nvramtdb_write_batch() before libtpms starts on them, so a
 * migration interrupted between two blobs (or never started) leaves the
 * image holding the old state whole.  A later blob of a type replaces the
 * staged one.  Staging a permanent state also stages "no volatile state"
 * (the old saved volatile state is deleted by the commit) until a
 * volatile blob is set after it; an empty _VOLATILE blob stages that
 * deletion; _SAVE_STATE accepts only an empty blob (nothing staged).  A
 * refused blob discards every staged one (libtpms forgets them too).
 * Staged blobs are discarded by nvtpm_power_off(),
 * nvtpm_discard_state_blobs() and nvtpm_close().  Errors: -EBUSY while
 * powered on; -EFBIG above the blob's maximum.
 */
int nvtpm_get_state_blob(nvtpm *t, unsigned type, uint8_t **data, size_t *len);
int nvtpm_set_state_blob(nvtpm *t, unsigned type, const uint8_t *data, size_t len);

/** Discard the staged state blobs, if any (the next power-on loads the
 *  image).  Returns how many were staged (0..2), or -EINVAL for NULL. */
int nvtpm_discard_state_blobs(nvtpm *t);

/** Buffer size negotiation (SET_BUFFERSIZE); returns the size in effect
 *  (@wanted 0 only queries; others are clamped to [*min, *max]).  Not
 *  refused while powered: swtpm sets a size only while the TPM is
 *  stopped, a daemon should do the same.  0 for a NULL device. */
uint32_t nvtpm_set_buffer_size(nvtpm *t, uint32_t wanted, uint32_t *min, uint32_t *max);

/**
 * Run @fn(@opaque) on the device thread and return its result.  Inside
 * @fn every nvtpm call runs inline, without a hand-off to the device
 * thread and back: a server whose whole event loop runs this way
 * (nvram-tpmd) saves two thread wake-ups per command.  Other threads'
 * requests wait until @fn returns; @fn must not call nvtpm_close().
 * When @fn fails, its message is what nvtpm_last_error() holds when it
 * returns.
 */
int nvtpm_run_on_device(nvtpm *t, int (*fn)(void *opaque), void *opaque);

/** The image handle (for info and flushes); owned by @t. */
nvramtdb *nvtpm_image(nvtpm *t);

/** Power off if needed, drain the image's queue, stop the thread, close.
 *  Requests queued before it are completed first.  Returns the image's
 *  close error, if any (the device is freed anyway); -EDEADLK from a
 *  response callback (nothing is closed).  NULL is accepted. */
int nvtpm_close(nvtpm *t);

#ifdef __cplusplus
}
#endif
#endif /* NVTPM_H */
