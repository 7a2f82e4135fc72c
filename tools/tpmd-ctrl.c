/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * tpmd-ctrl.c — nvram-tpmd's control request framing and state blob
 * container parser (see tpmd-ctrl.h).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdbool.h>

#include <libtpms/tpm_error.h>

#include "tpmd-ctrl.h"

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

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

/* Find TLV @tag in @p/@len; false if absent or the TLVs are malformed. */
static bool tlv_find(const uint8_t *p, size_t len, uint16_t tag, const uint8_t **val,
                     size_t *val_len)
{
    size_t off = 0;

    while (len - off >= TLV_HDR_SIZE) {
        uint16_t t = get16(p + off);
        uint32_t l = get32(p + off + 2);

        if (l > len - off - TLV_HDR_SIZE)
            return false;
        if (t == tag) {
            *val = p + off + TLV_HDR_SIZE;
            *val_len = l;
            return true;
        }
        off += TLV_HDR_SIZE + l;
    }
    return false;
}

uint32_t blob_unwrap(const uint8_t *p, size_t len, const uint8_t **raw, size_t *raw_len)
{
    uint16_t hdrsize, flags;
    uint8_t version;
    const uint8_t *mig;
    size_t mig_len;

    if (len < BLOB_HDR_SIZE || get32(p + 6) != len)
        return TPM_BAD_PARAMETER;
    if (p[1] > BLOB_VERSION)
        return TPM_BAD_VERSION;
    version = p[0];
    hdrsize = get16(p + 2);
    flags = get16(p + 4);
    if (hdrsize != BLOB_HDR_SIZE)
        return TPM_BAD_DATASIZE;
    if (flags & (BLOB_FLAG_ENCRYPTED | BLOB_FLAG_MIGRATION_ENCRYPTED))
        return TPM_KEYNOTFOUND;
    p += hdrsize;
    len -= hdrsize;
    if (len == 0 || version < 2) {                  /* empty, or version 1: no TLVs */
        *raw = p;
        *raw_len = len;
        return TPM_SUCCESS;
    }
    if (tlv_find(p, len, TLV_TAG_MIGRATION_DATA, &mig, &mig_len)) {
        p = mig;
        len = mig_len;
    }
    if (!tlv_find(p, len, TLV_TAG_DATA, raw, raw_len))
        return TPM_FAIL;
    return TPM_SUCCESS;
}
