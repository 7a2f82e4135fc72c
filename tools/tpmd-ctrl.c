/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * tpmd-ctrl.c — nvram-tpmd's control request framing and state blob
 * container parser (see tpmd-ctrl.h).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <libtpms/tpm_error.h>

#include "swtpm-blob.h"
#include "tpmd-ctrl.h"

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Bytes of a complete request whose first bytes are @p (@len of them). */
size_t ctrl_request_size(const uint8_t *p, size_t len)
{
    if (len < 4)
        return 4;
    switch (get32(p)) {
    case CTRL_INIT:
    case CTRL_SET_BUFFERSIZE:
        return 8;
    case CTRL_SET_LOCALITY:
    case CTRL_RESET_TPMESTABLISHED:
        return 5;
    case CTRL_GET_STATEBLOB:
        return 16;                  /* state_flags, type, offset */
    case CTRL_SET_STATEBLOB:        /* state_flags, type, length, data */
        return len < 16 ? 16 : 16 + (size_t)get32(p + 12);
    case CTRL_HASH_DATA:            /* length, data */
        return len < 8 ? 8 : 8 + (size_t)get32(p + 4);
    case CTRL_GET_INFO:
        return 20;                  /* u64 flags, offset, pad */
    default:
        return 4;
    }
}

uint32_t blob_unwrap(const uint8_t *p, size_t len, const uint8_t **raw, size_t *raw_len)
{
    /* swtpm's answers to each refusal */
    switch (swtpm_blob_unwrap_lenient(p, len, raw, raw_len)) {
    case SWTPM_BLOB_OK:
        return TPM_SUCCESS;
    case SWTPM_BLOB_BAD_LENGTH:
        return TPM_BAD_PARAMETER;
    case SWTPM_BLOB_BAD_VERSION:
        return TPM_BAD_VERSION;
    case SWTPM_BLOB_BAD_HDRSIZE:
        return TPM_BAD_DATASIZE;
    case SWTPM_BLOB_ENCRYPTED:
        return TPM_KEYNOTFOUND;
    case SWTPM_BLOB_NO_DATA:
    default:
        return TPM_FAIL;
    }
}
