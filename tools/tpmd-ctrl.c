/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * tpmd-ctrl.c — nvram-tpmd's control channel: the command table, request
 * framing and the handlers (see tpmd-ctrl.h).
 *
 * Request and response layouts are swtpm's include/swtpm/tpm_ioctl.h;
 * every response starts with a u32 result (a TPM 1.2 style code), except
 * GET_CAPABILITY's big-endian u64 mask.  The results for the states a
 * command is refused in are swtpm's: TPM_BAD_ORDINAL for "not in this
 * state", TPM_BAD_LOCALITY, TPM_KEYNOTFOUND for encrypted state.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <libtpms/tpm_error.h>

#include "byteorder.h"
#include "swtpm-blob.h"
#include "tpmd-ctrl.h"

/* GET_CAPABILITY bits. */
#define CAP_INIT                 (1u << 0)
#define CAP_SHUTDOWN             (1u << 1)
#define CAP_GET_TPMESTABLISHED   (1u << 2)
#define CAP_SET_LOCALITY         (1u << 3)
#define CAP_HASHING              (1u << 4)   /* TPM 1.2 TIS hashing */
#define CAP_CANCEL_TPM_CMD       (1u << 5)
#define CAP_STORE_VOLATILE       (1u << 6)
#define CAP_RESET_TPMESTABLISHED (1u << 7)
#define CAP_GET_STATEBLOB        (1u << 8)
#define CAP_SET_STATEBLOB        (1u << 9)
#define CAP_STOP                 (1u << 10)
#define CAP_GET_CONFIG           (1u << 11)
#define CAP_SET_DATAFD           (1u << 12)
#define CAP_SET_BUFFERSIZE       (1u << 13)
#define CAP_GET_INFO             (1u << 14)

#define INIT_FLAG_DELETE_VOLATILE 1u      /* INIT's flag; volatile state is always single use here */
#define STATE_FLAG_ENCRYPTED      2u      /* SET_STATEBLOB: blob encrypted with a state key */

static void put32(GByteArray *b, uint32_t v)
{
    uint8_t x[4];

    store_be32(x, v);
    g_byte_array_append(b, x, 4);
}

/* A daemon's -errno as swtpm's result. */
static uint32_t errno_to_result(int r)
{
    if (r >= 0)
        return TPM_SUCCESS;
    switch (-r) {
    case EINVAL:
        return TPM_BAD_PARAMETER;
    case ENODEV:
    case EBUSY:
    case EALREADY:
        return TPM_BAD_ORDINAL;     /* swtpm's answer for "not in this state" */
    case ENOENT:
        return TPM_RETRY;           /* no such state: libtpms's "not found" */
    case EFBIG:
    case ENOSPC:
        return TPM_SIZE;
    case EIO:
        return TPM_IOERROR;
    case EPERM:
        return TPM_BAD_LOCALITY;    /* e.g. resetting "established" needs locality 3 or 4 */
    default:
        return TPM_FAIL;
    }
}

static bool blob_type_valid(uint32_t type)
{
    return type == CTRL_BLOB_PERMANENT || type == CTRL_BLOB_VOLATILE ||
           type == CTRL_BLOB_SAVESTATE;
}

uint32_t tpmd_ctrl_blob_unwrap(const uint8_t *p, size_t len, const uint8_t **raw,
                               size_t *raw_len)
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

/* ---- handlers ----------------------------------------------------------- */

static void do_get_capability(const tpmd_ctrl_ops *ops, void *opaque, const uint8_t *req,
                              GByteArray *out)
{
    uint64_t caps = tpmd_ctrl_capabilities();

    (void)ops, (void)opaque, (void)req;
    put32(out, (uint32_t)(caps >> 32));      /* reads as result 0 */
    put32(out, (uint32_t)caps);
}

static void do_init(const tpmd_ctrl_ops *ops, void *opaque, const uint8_t *req, GByteArray *out)
{
    if (ops->powered(opaque))
        ops->power_off(opaque);
    put32(out, ops->power_on(opaque, load_be32(req + 4) & INIT_FLAG_DELETE_VOLATILE) < 0
                   ? TPM_FAIL : TPM_SUCCESS);
}

static void do_shutdown(const tpmd_ctrl_ops *ops, void *opaque, const uint8_t *req,
                        GByteArray *out)
{
    (void)req;
    ops->power_off(opaque);
    ops->log(opaque, TPMD_LOG_INFO, "SHUTDOWN: TPM powered off, exiting");
    ops->terminate(opaque);
    put32(out, TPM_SUCCESS);
}

static void do_stop(const tpmd_ctrl_ops *ops, void *opaque, const uint8_t *req, GByteArray *out)
{
    (void)req;
    ops->power_off(opaque);
    ops->log(opaque, TPMD_LOG_INFO, "STOP: TPM powered off");
    put32(out, TPM_SUCCESS);
}

static void do_get_tpmestablished(const tpmd_ctrl_ops *ops, void *opaque, const uint8_t *req,
                                  GByteArray *out)
{
    bool est = false;

    (void)req;
    if (!ops->powered(opaque)) {
        put32(out, TPM_BAD_ORDINAL);
        return;
    }
    /* ptm_est's response: u32 result, u8 bit, padded to 8 bytes. */
    put32(out, errno_to_result(ops->get_established(opaque, &est)));
    put32(out, 0);
    out->data[out->len - 4] = est ? 1 : 0;
}

static void do_set_locality(const tpmd_ctrl_ops *ops, void *opaque, const uint8_t *req,
                            GByteArray *out)
{
    put32(out, req[4] > 4 ? TPM_BAD_LOCALITY
                          : errno_to_result(ops->set_locality(opaque, req[4])));
}

static void do_reset_tpmestablished(const tpmd_ctrl_ops *ops, void *opaque, const uint8_t *req,
                                    GByteArray *out)
{
    uint32_t res;

    if (!ops->powered(opaque))
        res = TPM_BAD_ORDINAL;
    else if (req[4] > 4)
        res = TPM_BAD_LOCALITY;
    else
        res = errno_to_result(ops->reset_established(opaque, req[4]));
    put32(out, res);
}

/* Commands run to completion before the daemon reads the control channel
 * again, so there is rarely anything to cancel; the call is made anyway,
 * as swtpm does. */
static void do_cancel_tpm_cmd(const tpmd_ctrl_ops *ops, void *opaque, const uint8_t *req,
                              GByteArray *out)
{
    (void)req;
    put32(out, !ops->powered(opaque) ? TPM_BAD_ORDINAL : errno_to_result(ops->cancel(opaque)));
}

static void do_store_volatile(const tpmd_ctrl_ops *ops, void *opaque, const uint8_t *req,
                              GByteArray *out)
{
    (void)req;
    put32(out, !ops->powered(opaque) ? TPM_BAD_ORDINAL
                                     : errno_to_result(ops->store_volatile(opaque)));
}

/* Request: u32 state_flags, u32 type, u32 offset.  Response: result,
 * state_flags, totlength and length of what follows from @offset, then
 * the blob in swtpm's migration container. */
static void do_get_stateblob(const tpmd_ctrl_ops *ops, void *opaque, const uint8_t *req,
                             GByteArray *out)
{
    uint32_t type = load_be32(req + 8), offset = load_be32(req + 12);
    uint32_t res = TPM_SUCCESS;
    GByteArray *wrapped = NULL;
    uint8_t *blob = NULL;
    size_t blob_len = 0, n = 0;

    if (!blob_type_valid(type)) {
        res = TPM_BAD_PARAMETER;
    } else if (!ops->powered(opaque)) {
        res = TPM_BAD_ORDINAL;
    } else {
        int r = ops->get_state_blob(opaque, type, &blob, &blob_len);

        if (r < 0) {
            res = errno_to_result(r);
        } else if (blob_len == 0) {
            /* No such blob (a TPM 2's save state): swtpm answers TPM_RETRY
             * and no data, and refuses an empty container on SET (0x34),
             * so an empty container here would break the way to swtpm. */
            res = TPM_RETRY;
        } else {
            wrapped = swtpm_blob_wrap(blob, blob_len, true);
            n = offset < wrapped->len ? wrapped->len - offset : 0;
        }
    }
    put32(out, res);
    put32(out, 0);                   /* state_flags: never encrypted */
    put32(out, (uint32_t)n);         /* totlength: what follows from @offset */
    put32(out, (uint32_t)n);         /* length */
    if (n)
        g_byte_array_append(out, wrapped->data + offset, (guint)n);
    ops->log(opaque, TPMD_LOG_INFO, "GET_STATEBLOB type %" PRIu32 ": result 0x%" PRIx32
             ", %zu bytes", type, res, n);
    /* The TPM's state holds its seeds: leave no copy behind in the heap. */
    if (wrapped) {
        explicit_bzero(wrapped->data, wrapped->len);
        g_byte_array_unref(wrapped);
    }
    if (blob)
        explicit_bzero(blob, blob_len);
    free(blob);
}

/* Request: u32 state_flags, u32 type, u32 length, then the container.
 * Setting needs the TPM stopped (as swtpm: STOP first); an empty request
 * and an empty container both mean "no such blob". */
static uint32_t set_stateblob(const tpmd_ctrl_ops *ops, void *opaque, const uint8_t *req)
{
    uint32_t flags = load_be32(req + 4), type = load_be32(req + 8), blob_len = load_be32(req + 12);
    const uint8_t *raw = NULL;
    size_t raw_len = 0;
    uint32_t res;
    int r;

    if (!blob_type_valid(type))
        return TPM_BAD_PARAMETER;
    if (ops->powered(opaque))
        return TPM_BAD_ORDINAL;
    if (flags & STATE_FLAG_ENCRYPTED)
        return TPM_KEYNOTFOUND;      /* no keys here */
    if (blob_len) {
        res = tpmd_ctrl_blob_unwrap(req + 16, blob_len, &raw, &raw_len);
        if (res != TPM_SUCCESS)
            return res;
    }
    r = ops->set_state_blob(opaque, type, raw_len ? raw : NULL, raw_len);
    if (r < 0)
        return errno_to_result(r);
    ops->log(opaque, TPMD_LOG_INFO, "SET_STATEBLOB type %" PRIu32 ": %zu bytes staged for INIT",
             type, raw_len);
    return TPM_SUCCESS;
}

static void do_set_stateblob(const tpmd_ctrl_ops *ops, void *opaque, const uint8_t *req,
                             GByteArray *out)
{
    put32(out, set_stateblob(ops, opaque, req));
}

static void do_get_config(const tpmd_ctrl_ops *ops, void *opaque, const uint8_t *req,
                          GByteArray *out)
{
    (void)ops, (void)opaque, (void)req;
    put32(out, TPM_SUCCESS);
    put32(out, 0);                   /* no file key, no migration key */
}

static void do_set_datafd(const tpmd_ctrl_ops *ops, void *opaque, const uint8_t *req,
                          GByteArray *out)
{
    int r = ops->set_datafd(opaque);

    (void)req;
    /* swtpm: no descriptor is a bad parameter, a second one an I/O error */
    put32(out, r == 0 ? TPM_SUCCESS : r == -EBADF ? TPM_BAD_PARAMETER
               : r == -EBUSY ? TPM_IOERROR : TPM_FAIL);
}

static void do_set_buffersize(const tpmd_ctrl_ops *ops, void *opaque, const uint8_t *req,
                              GByteArray *out)
{
    uint32_t wanted = load_be32(req + 4), min = 0, max = 0, size;

    if (wanted && ops->powered(opaque)) {
        put32(out, TPM_BAD_ORDINAL);     /* only while stopped (swtpm) */
        return;
    }
    size = ops->set_buffer_size(opaque, wanted, &min, &max);
    put32(out, TPM_SUCCESS);
    put32(out, size);
    put32(out, min);
    put32(out, max);
}

/* swtpm's ptm_getinfo: u64 flags, u32 offset, u32 pad; the answer is the
 * result, the string's total length and this piece's length (both counting
 * the NUL), then up to 3072 bytes of the string from offset. */
#define GET_INFO_PIECE 3072u

static void do_get_info(const tpmd_ctrl_ops *ops, void *opaque, const uint8_t *req,
                        GByteArray *out)
{
    uint64_t flags = (uint64_t)load_be32(req + 4) << 32 | load_be32(req + 8);
    uint32_t offset = load_be32(req + 12);
    char *info;
    size_t total, len;

    if (!ops->get_info) {
        put32(out, TPM_BAD_ORDINAL);
        return;
    }
    info = ops->get_info(opaque, flags);
    if (!info) {
        put32(out, TPM_FAIL);
        return;
    }
    total = strlen(info) + 1;
    if (offset >= total - 1) {
        put32(out, TPM_BAD_PARAMETER);      /* swtpm: offset past the string */
        free(info);
        return;
    }
    len = MIN(total - offset, GET_INFO_PIECE);
    put32(out, TPM_SUCCESS);
    put32(out, (uint32_t)total);
    put32(out, (uint32_t)len);
    g_byte_array_append(out, (const guint8 *)info + offset, (guint)len);
    free(info);
}

/* ---- the table ---------------------------------------------------------- */

#define CMD(c) CTRL_##c, #c

/* Sizes count the u32 code.  HASH_* have no handler: they are framed (so
 * that the stream stays in step) and refused. */
static const tpmd_ctrl_command commands[] = {
    { CMD(GET_CAPABILITY),        4,  0, 0,                        TPMD_LOG_CMD,  do_get_capability },
    { CMD(INIT),                  8,  0, CAP_INIT,                 TPMD_LOG_CONN, do_init },
    { CMD(SHUTDOWN),              4,  0, CAP_SHUTDOWN,             TPMD_LOG_CONN, do_shutdown },
    { CMD(GET_TPMESTABLISHED),    4,  0, CAP_GET_TPMESTABLISHED,   TPMD_LOG_CONN, do_get_tpmestablished },
    { CMD(SET_LOCALITY),          5,  0, CAP_SET_LOCALITY,         TPMD_LOG_CMD,  do_set_locality },
    { CMD(HASH_START),            4,  0, CAP_HASHING,              TPMD_LOG_CONN, NULL },
    { CMD(HASH_DATA),             8,  4, CAP_HASHING,              TPMD_LOG_CONN, NULL },
    { CMD(HASH_END),              4,  0, CAP_HASHING,              TPMD_LOG_CONN, NULL },
    { CMD(CANCEL_TPM_CMD),        4,  0, CAP_CANCEL_TPM_CMD,       TPMD_LOG_CONN, do_cancel_tpm_cmd },
    { CMD(STORE_VOLATILE),        4,  0, CAP_STORE_VOLATILE,       TPMD_LOG_CONN, do_store_volatile },
    { CMD(RESET_TPMESTABLISHED),  5,  0, CAP_RESET_TPMESTABLISHED, TPMD_LOG_CONN, do_reset_tpmestablished },
    { CMD(GET_STATEBLOB),         16, 0, CAP_GET_STATEBLOB,        TPMD_LOG_CONN, do_get_stateblob },
    { CMD(SET_STATEBLOB),         16, 12, CAP_SET_STATEBLOB,       TPMD_LOG_CONN, do_set_stateblob },
    { CMD(STOP),                  4,  0, CAP_STOP,                 TPMD_LOG_CONN, do_stop },
    { CMD(GET_CONFIG),            4,  0, CAP_GET_CONFIG,           TPMD_LOG_CONN, do_get_config },
    { CMD(SET_DATAFD),            4,  0, CAP_SET_DATAFD,           TPMD_LOG_CONN, do_set_datafd },
    { CMD(SET_BUFFERSIZE),        8,  0, CAP_SET_BUFFERSIZE,       TPMD_LOG_CONN, do_set_buffersize },
    { CMD(GET_INFO),              20, 0, CAP_GET_INFO,             TPMD_LOG_CONN, do_get_info },
};

const tpmd_ctrl_command *tpmd_ctrl_lookup(uint32_t code)
{
    for (size_t i = 0; i < G_N_ELEMENTS(commands); i++)
        if (commands[i].code == code)
            return &commands[i];
    return NULL;
}

uint64_t tpmd_ctrl_capabilities(void)
{
    uint64_t caps = 0;

    for (size_t i = 0; i < G_N_ELEMENTS(commands); i++)
        if (commands[i].handler)
            caps |= commands[i].capability;
    return caps;
}

size_t tpmd_ctrl_request_size(const uint8_t *p, size_t len)
{
    const tpmd_ctrl_command *c;

    if (len < 4)
        return 4;
    c = tpmd_ctrl_lookup(load_be32(p));
    if (!c)
        return 4;
    if (!c->length_at || len < c->size)
        return c->size;
    return c->size + (size_t)load_be32(p + c->length_at);
}

void tpmd_ctrl_execute(const tpmd_ctrl_ops *ops, void *opaque, const uint8_t *req, size_t len,
                       GByteArray *out)
{
    guint start = out->len;
    uint32_t code = len >= 4 ? load_be32(req) : 0;
    const tpmd_ctrl_command *c = tpmd_ctrl_lookup(code);

    if (len < tpmd_ctrl_request_size(req, len))
        put32(out, TPM_BAD_PARAMETER);   /* cut short: never read past it */
    else if (c && c->handler)
        c->handler(ops, opaque, req, out);
    else
        put32(out, TPM_BAD_ORDINAL);     /* HASH_*, unknown */
    ops->log(opaque, c ? c->log_level : TPMD_LOG_CONN,
             "control command %" PRIu32 "%s%s -> 0x%" PRIx32, code, c ? " " : "",
             c ? c->name : "", load_be32(out->data + start));
}
