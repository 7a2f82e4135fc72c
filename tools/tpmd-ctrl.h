/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * tpmd-ctrl.h — nvram-tpmd's control channel protocol: one table of the
 * commands of swtpm's control channel (code, name, request layout,
 * capability bit, log level, handler), the framing of a request and the
 * execution of one.  Kept apart from the daemon so that it is tested
 * (tests/test-tpmd-ctrl.c) and fuzzed (fuzz/) without sockets or a TPM.
 *
 * What it owns: the bytes.  A handler reads its request's fields, applies
 * the protocol's rules (which commands need the TPM running or stopped,
 * the locality range, the state blob container, swtpm's result codes) and
 * lays out the response; what happens to the TPM is the daemon's, through
 * the tpmd_ctrl_ops it supplies.
 *
 * Promises: tpmd_ctrl_request_size() reads only the @len bytes it is
 * given and never allocates; tpmd_ctrl_execute() reads only the request's
 * bytes (a request shorter than its size is refused), answers every
 * command, unknown ones with TPM_BAD_ORDINAL, and appends exactly one
 * response; GET_CAPABILITY offers exactly the commands that have a handler.
 */
#ifndef NVRAM_TPMD_CTRL_H
#define NVRAM_TPMD_CTRL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

/* Control commands (swtpm's tpm_ioctl.h, "commands used by the non-CUSE
 * TPMs"). */
enum {
    CTRL_GET_CAPABILITY = 1,
    CTRL_INIT = 2,
    CTRL_SHUTDOWN = 3,
    CTRL_GET_TPMESTABLISHED = 4,
    CTRL_SET_LOCALITY = 5,
    CTRL_HASH_START = 6,
    CTRL_HASH_DATA = 7,
    CTRL_HASH_END = 8,
    CTRL_CANCEL_TPM_CMD = 9,
    CTRL_STORE_VOLATILE = 10,
    CTRL_RESET_TPMESTABLISHED = 11,
    CTRL_GET_STATEBLOB = 12,
    CTRL_SET_STATEBLOB = 13,
    CTRL_STOP = 14,
    CTRL_GET_CONFIG = 15,
    CTRL_SET_DATAFD = 16,
    CTRL_SET_BUFFERSIZE = 17,
    CTRL_GET_INFO = 18,
};

/* State blob types of GET/SET_STATEBLOB. */
enum { CTRL_BLOB_PERMANENT = 1, CTRL_BLOB_VOLATILE = 2, CTRL_BLOB_SAVESTATE = 3 };

/* Largest control request accepted (SET_STATEBLOB of a full permall is
 * about 180 KiB). */
#define TPMD_CTRL_REQUEST_MAX (8u * 1024 * 1024)

/* nvram-tpmd's log levels (--log level=N): 0 errors; 1 life cycle (the
 * default); 2 connections and every control command; 3 every TPM command
 * with its result and duration. */
enum { TPMD_LOG_ERR = 0, TPMD_LOG_INFO = 1, TPMD_LOG_CONN = 2, TPMD_LOG_CMD = 3 };

/*
 * What the daemon does for the commands.  @opaque is tpmd_ctrl_execute()'s.
 * Functions returning int give 0 or a negative errno (mapped to swtpm's
 * result codes here); they log their own failures.  The handlers call
 * them only in the state the protocol allows (see tpmd-ctrl.c).
 */
typedef struct tpmd_ctrl_ops {
    bool (*powered)(void *opaque);
    /* INIT, after power_off if it was running. */
    int (*power_on)(void *opaque, bool delete_volatile);
    void (*power_off)(void *opaque);
    /* SHUTDOWN: stop serving once the response is out (after power_off). */
    void (*terminate)(void *opaque);
    int (*get_established)(void *opaque, bool *established);
    int (*reset_established)(void *opaque, uint8_t locality);   /* locality 0..4 */
    int (*set_locality)(void *opaque, uint8_t locality);        /* 0..4 */
    int (*cancel)(void *opaque);
    int (*store_volatile)(void *opaque);
    /* @type is CTRL_BLOB_*.  GET: *blob is malloc()ed (NULL, 0: no such
     * blob); the caller wipes and frees it.  SET: @raw NULL, 0 deletes. */
    int (*get_state_blob)(void *opaque, uint32_t type, uint8_t **blob, size_t *len);
    int (*set_state_blob)(void *opaque, uint32_t type, const uint8_t *raw, size_t len);
    /* Serve the descriptor that came with the request as a data
     * connection: -EBADF if none came, -EBUSY if one is served already. */
    int (*set_datafd)(void *opaque);
    /* Set (0: only query) the largest TPM command; the size in effect. */
    uint32_t (*set_buffer_size)(void *opaque, uint32_t wanted, uint32_t *min, uint32_t *max);
    /* GET_INFO: libtpms's TPMLIB_GetInfo(@flags), a malloc()ed JSON string
     * (NULL: out of memory).  NULL op: GET_INFO is refused. */
    char *(*get_info)(void *opaque, uint64_t flags);
    void (*log)(void *opaque, int level, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
} tpmd_ctrl_ops;

/* A handler: @req is a complete request (tpmd_ctrl_request_size()). */
typedef void tpmd_ctrl_handler(const tpmd_ctrl_ops *ops, void *opaque, const uint8_t *req,
                               GByteArray *out);

/* One command of the table. */
typedef struct tpmd_ctrl_command {
    uint32_t code;
    const char *name;
    size_t size;          /* bytes of the request (of its fixed part if variable) */
    size_t length_at;     /* variable requests: offset of the u32 count of data
                           * bytes that follow the fixed part; 0 if fixed */
    uint32_t capability;  /* GET_CAPABILITY bit, offered only with a handler */
    int log_level;        /* of the "control command" line */
    tpmd_ctrl_handler *handler;   /* NULL: answered TPM_BAD_ORDINAL */
} tpmd_ctrl_command;

/* The table's entry for @code, or NULL. */
const tpmd_ctrl_command *tpmd_ctrl_lookup(uint32_t code);

/* GET_CAPABILITY's mask: the bits of the commands that have a handler. */
uint64_t tpmd_ctrl_capabilities(void);

/* Bytes of a complete control request whose first bytes are @p (@len of
 * them); may be more than @len (wait for more) or huge (refuse it above
 * TPMD_CTRL_REQUEST_MAX). */
size_t tpmd_ctrl_request_size(const uint8_t *p, size_t len);

/* Execute the request @req of @len bytes (at least its
 * tpmd_ctrl_request_size(); bytes beyond it are padding) and append its
 * response to @out; logs "control command" at the command's level. */
void tpmd_ctrl_execute(const tpmd_ctrl_ops *ops, void *opaque, const uint8_t *req, size_t len,
                       GByteArray *out);

/* Unwrap swtpm's container @p/@len as swtpm's SET_STATEBLOB does
 * (swtpm_blob_unwrap_lenient()): *raw and *raw_len point into @p at the
 * libtpms state.  Returns a TPM result code (TPM_SUCCESS, or why not). */
uint32_t tpmd_ctrl_blob_unwrap(const uint8_t *p, size_t len, const uint8_t **raw,
                               size_t *raw_len);

#endif /* NVRAM_TPMD_CTRL_H */
