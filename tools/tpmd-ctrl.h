/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * tpmd-ctrl.h — the parsers of nvram-tpmd's control channel that read
 * untrusted bytes: the framing of a request (how many bytes it has) and
 * swtpm's state blob container of SET_STATEBLOB.  Kept apart from the
 * daemon so that fuzz/ can drive them without sockets or a TPM.
 *
 * Promises: both read only the @len bytes they are given (every length
 * field is checked against them) and never allocate.
 */
#ifndef NVRAM_TPMD_CTRL_H
#define NVRAM_TPMD_CTRL_H

#include <stddef.h>
#include <stdint.h>

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

/* Bytes of a complete control request whose first bytes are @p (@len of
 * them); may be more than @len (wait for more) or huge (refuse it). */
size_t ctrl_request_size(const uint8_t *p, size_t len);

/* Unwrap swtpm's container @p/@len as swtpm's SET_STATEBLOB does
 * (swtpm_blob_unwrap_lenient()): *raw and *raw_len point into @p at the
 * libtpms state.  Returns a TPM result code (TPM_SUCCESS, or why not). */
uint32_t blob_unwrap(const uint8_t *p, size_t len, const uint8_t **raw, size_t *raw_len);

#endif /* NVRAM_TPMD_CTRL_H */
