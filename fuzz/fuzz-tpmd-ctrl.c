/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * fuzz-tpmd-ctrl.c — nvram-tpmd's control channel request parser: the
 * framing (tpmd_ctrl_request_size) of what a client writes, and for
 * SET_STATEBLOB the state blob container (tpmd_ctrl_blob_unwrap), exactly
 * as ctrl_process() and the SET_STATEBLOB handler call them (requests
 * above TPMD_CTRL_REQUEST_MAX are refused before parsing).
 * Input: control byte, then the bytes received.  Unless the control byte
 * says not to, a SET_STATEBLOB request gets its length field and its
 * blob's totlen set to what the input holds (the fields a mutation breaks).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <libtpms/tpm_error.h>

#include "fuzz-util.h"
#include "swtpm-blob.h"
#include "tpmd-ctrl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void set32(uint8_t *p, size_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t ctl;
    size_t len;
    uint8_t *req = fz_body(data, size, &ctl, &len);
    if (!req)
        return 0;
    if (!(ctl & FZ_KEEP_CHECKSUMS) && len >= 16 && get32(req) == CTRL_SET_STATEBLOB) {
        set32(req + 12, len - 16);
        if (len >= 16 + SWTPM_BLOB_HDR_SIZE)
            set32(req + 16 + 6, len - 16);
    }
    size_t need = tpmd_ctrl_request_size(req, len);
    if (need < 4)
        abort();
    if (len >= 4 && need <= len && need <= TPMD_CTRL_REQUEST_MAX &&
        get32(req) == CTRL_SET_STATEBLOB) {
        uint32_t blob_len = get32(req + 12);
        const uint8_t *raw = NULL;
        size_t raw_len = 0;
        if (blob_len && tpmd_ctrl_blob_unwrap(req + 16, blob_len, &raw, &raw_len) == TPM_SUCCESS &&
            (raw < req + 16 || raw_len > blob_len || raw + raw_len > req + 16 + blob_len))
            abort();                      /* the state must lie inside the blob */
    }
    g_free(req);
    return 0;
}
