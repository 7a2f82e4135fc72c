/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * test-tpmd-ctrl: nvram-tpmd's control channel table (tools/tpmd-ctrl.c)
 * without sockets or a TPM.  Requests are built as swtpm's tpm_ioctl.h
 * lays them out and run against fake operations that record each call:
 * request sizes, unknown and short requests, every handler with the
 * state rules and result codes swtpm gives, and the capability mask.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <libtpms/tpm_error.h>

#include "swtpm-blob.h"
#include "tpmd-ctrl.h"

/* ---- fake operations ---------------------------------------------------- */

typedef struct fake {
    bool powered;
    int result;              /* what the int operations return */
    bool established;
    const char *blob;        /* what get_state_blob returns (NULL: none) */
    GString *calls;          /* "op(args) op(args) " */
    GByteArray *set_data;    /* set_state_blob's bytes (NULL: none given) */
    int last_level;
    GString *last_log;
} fake;

static void G_GNUC_PRINTF(2, 3) record(fake *f, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_string_append_vprintf(f->calls, fmt, ap);
    va_end(ap);
    g_string_append_c(f->calls, ' ');
}

static bool f_powered(void *o)
{
    return ((fake *)o)->powered;
}

static int f_power_on(void *o, bool delete_volatile)
{
    fake *f = o;

    record(f, "power_on(%d)", delete_volatile);
    if (f->result == 0)
        f->powered = true;
    return f->result;
}

static void f_power_off(void *o)
{
    fake *f = o;

    record(f, "power_off");
    f->powered = false;
}

static void f_terminate(void *o)
{
    record(o, "terminate");
}

static int f_get_established(void *o, bool *est)
{
    fake *f = o;

    record(f, "get_established");
    *est = f->established;
    return f->result;
}

static int f_reset_established(void *o, uint8_t locality)
{
    record(o, "reset_established(%u)", locality);
    return ((fake *)o)->result;
}

static int f_set_locality(void *o, uint8_t locality)
{
    record(o, "set_locality(%u)", locality);
    return ((fake *)o)->result;
}

static int f_cancel(void *o)
{
    record(o, "cancel");
    return ((fake *)o)->result;
}

static int f_store_volatile(void *o)
{
    record(o, "store_volatile");
    return ((fake *)o)->result;
}

static int f_get_state_blob(void *o, uint32_t type, uint8_t **blob, size_t *len)
{
    fake *f = o;

    record(f, "get_state_blob(%u)", type);
    *blob = NULL;
    *len = 0;
    if (f->result == 0 && f->blob) {
        *len = strlen(f->blob);
        *blob = (uint8_t *)strdup(f->blob);
    }
    return f->result;
}

static int f_set_state_blob(void *o, uint32_t type, const uint8_t *raw, size_t len)
{
    fake *f = o;

    record(f, "set_state_blob(%u,%zu)", type, len);
    g_assert_true((raw == NULL) == (len == 0));
    if (raw) {
        f->set_data = g_byte_array_new();
        g_byte_array_append(f->set_data, raw, (guint)len);
    }
    return f->result;
}

static int f_set_datafd(void *o)
{
    record(o, "set_datafd");
    return ((fake *)o)->result;
}

static uint32_t f_set_buffer_size(void *o, uint32_t wanted, uint32_t *min, uint32_t *max)
{
    record(o, "set_buffer_size(%u)", wanted);
    *min = 128;
    *max = 4096;
    return wanted ? wanted : 4096;
}

static void G_GNUC_PRINTF(3, 4) f_log(void *o, int level, const char *fmt, ...)
{
    fake *f = o;
    va_list ap;

    f->last_level = level;
    va_start(ap, fmt);
    g_string_vprintf(f->last_log, fmt, ap);
    va_end(ap);
}

static const tpmd_ctrl_ops fake_ops = {
    .powered = f_powered,
    .power_on = f_power_on,
    .power_off = f_power_off,
    .terminate = f_terminate,
    .get_established = f_get_established,
    .reset_established = f_reset_established,
    .set_locality = f_set_locality,
    .cancel = f_cancel,
    .store_volatile = f_store_volatile,
    .get_state_blob = f_get_state_blob,
    .set_state_blob = f_set_state_blob,
    .set_datafd = f_set_datafd,
    .set_buffer_size = f_set_buffer_size,
    .log = f_log,
};

static void fake_init(fake *f, bool powered)
{
    memset(f, 0, sizeof *f);
    f->powered = powered;
    f->calls = g_string_new(NULL);
    f->last_level = -1;
    f->last_log = g_string_new(NULL);
}

static void fake_clear(fake *f)
{
    g_string_free(f->calls, TRUE);
    g_string_free(f->last_log, TRUE);
    if (f->set_data)
        g_byte_array_unref(f->set_data);
}

/* ---- requests and responses --------------------------------------------- */

static void put32(GByteArray *b, uint32_t v)
{
    uint8_t x[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };

    g_byte_array_append(b, x, 4);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A request: @code, then @n u32 fields. */
static GByteArray *req_u32(uint32_t code, int n, ...)
{
    GByteArray *r = g_byte_array_new();
    va_list ap;

    put32(r, code);
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        put32(r, va_arg(ap, uint32_t));
    va_end(ap);
    return r;
}

/* A request: @code, then one byte (SET_LOCALITY, RESET_TPMESTABLISHED). */
static GByteArray *req_u8(uint32_t code, uint8_t v)
{
    GByteArray *r = req_u32(code, 0);

    g_byte_array_append(r, &v, 1);
    return r;
}

/* Run @req (freed) on @f; the response. */
static GByteArray *run(fake *f, GByteArray *req)
{
    GByteArray *out = g_byte_array_new();

    g_string_truncate(f->calls, 0);
    tpmd_ctrl_execute(&fake_ops, f, req->data, req->len, out);
    g_byte_array_unref(req);
    g_assert_cmpuint(out->len, >=, 4);
    return out;
}

/* Run @req and check a response of one u32 @result and the calls made. */
static void expect(fake *f, GByteArray *req, uint32_t result, const char *calls)
{
    GByteArray *out = run(f, req);

    g_assert_cmphex(get32(out->data), ==, result);
    g_assert_cmpuint(out->len, ==, 4);
    g_assert_cmpstr(f->calls->str, ==, calls);
    g_byte_array_unref(out);
}

/* ---- tests -------------------------------------------------------------- */

/* Request sizes as swtpm's tpm_ioctl.h lays them out (u32 code first). */
static const struct {
    uint32_t code;
    size_t size;
} fixed_sizes[] = {
    { CTRL_GET_CAPABILITY, 4 }, { CTRL_INIT, 8 },           { CTRL_SHUTDOWN, 4 },
    { CTRL_GET_TPMESTABLISHED, 4 }, { CTRL_SET_LOCALITY, 5 }, { CTRL_HASH_START, 4 },
    { CTRL_HASH_END, 4 },       { CTRL_CANCEL_TPM_CMD, 4 }, { CTRL_STORE_VOLATILE, 4 },
    { CTRL_RESET_TPMESTABLISHED, 5 }, { CTRL_GET_STATEBLOB, 16 }, { CTRL_STOP, 4 },
    { CTRL_GET_CONFIG, 4 },     { CTRL_SET_DATAFD, 4 },     { CTRL_SET_BUFFERSIZE, 8 },
    { CTRL_GET_INFO, 20 },
};

static void test_request_size_fixed(void)
{
    uint8_t buf[64] = { 0 };

    for (size_t i = 0; i < G_N_ELEMENTS(fixed_sizes); i++) {
        buf[3] = (uint8_t)fixed_sizes[i].code;
        /* the size does not depend on how much has arrived */
        for (size_t len = 4; len <= sizeof buf; len += 12)
            g_assert_cmpuint(tpmd_ctrl_request_size(buf, len), ==, fixed_sizes[i].size);
    }
}

static void test_request_size_variable(void)
{
    GByteArray *r = req_u32(CTRL_SET_STATEBLOB, 3, 0, 1, 300);

    /* the fixed part first, then the length field counts */
    for (size_t len = 4; len < 16; len++)
        g_assert_cmpuint(tpmd_ctrl_request_size(r->data, len), ==, 16);
    g_assert_cmpuint(tpmd_ctrl_request_size(r->data, 16), ==, 316);
    g_byte_array_unref(r);

    r = req_u32(CTRL_HASH_DATA, 1, 3);
    for (size_t len = 4; len < 8; len++)
        g_assert_cmpuint(tpmd_ctrl_request_size(r->data, len), ==, 8);
    g_assert_cmpuint(tpmd_ctrl_request_size(r->data, 8), ==, 11);
    g_byte_array_unref(r);

    /* a huge length is reported, for the daemon to refuse */
    r = req_u32(CTRL_SET_STATEBLOB, 3, 0, 1, 0xffffffffu);
    g_assert_cmpuint(tpmd_ctrl_request_size(r->data, 16), >, TPMD_CTRL_REQUEST_MAX);
    g_byte_array_unref(r);
}

static void test_request_size_unknown(void)
{
    static const uint32_t unknown[] = { 0, 19, 20, 0x99, 0x01000001u, 0xffffffffu };
    uint8_t buf[8] = { 0 };

    /* fewer than 4 bytes: the code itself is awaited */
    for (size_t len = 0; len < 4; len++)
        g_assert_cmpuint(tpmd_ctrl_request_size(buf, len), ==, 4);
    for (size_t i = 0; i < G_N_ELEMENTS(unknown); i++) {
        GByteArray *r = req_u32(unknown[i], 1, 0xffffffffu);

        g_assert_null(tpmd_ctrl_lookup(unknown[i]));
        g_assert_cmpuint(tpmd_ctrl_request_size(r->data, r->len), ==, 4);
        g_byte_array_unref(r);
    }
}

/* Unknown and unimplemented commands: TPM_BAD_ORDINAL, no operation. */
static void test_unknown_and_unimplemented(void)
{
    static const uint32_t codes[] = { 0, 19, 0x99, 0xffffffffu, CTRL_HASH_START, CTRL_HASH_END };
    fake f;

    fake_init(&f, true);
    for (size_t i = 0; i < G_N_ELEMENTS(codes); i++) {
        expect(&f, req_u32(codes[i], 0), TPM_BAD_ORDINAL, "");
        g_assert_cmpint(f.last_level, ==, TPMD_LOG_CONN);
    }
    expect(&f, req_u32(CTRL_HASH_DATA, 1, 0), TPM_BAD_ORDINAL, "");
    expect(&f, req_u32(CTRL_GET_INFO, 4, 0, 0, 0, 0), TPM_BAD_ORDINAL, "");
    fake_clear(&f);
}

/* A request cut short is refused without being read past its end. */
static void test_short_requests(void)
{
    fake f;

    fake_init(&f, true);
    for (uint32_t code = 1; code <= CTRL_GET_INFO; code++) {
        const tpmd_ctrl_command *c = tpmd_ctrl_lookup(code);
        GByteArray *r;

        g_assert_nonnull(c);
        if (c->size <= 4)
            continue;
        r = req_u32(code, 0);
        g_byte_array_set_size(r, (guint)c->size - 1);
        memset(r->data + 4, 0, c->size - 5);
        expect(&f, r, TPM_BAD_PARAMETER, "");
    }
    /* the data of a variable request is missing */
    expect(&f, req_u32(CTRL_SET_STATEBLOB, 3, 0, 1, 10), TPM_BAD_PARAMETER, "");
    /* not even a code */
    {
        GByteArray *r = g_byte_array_new(), *out = g_byte_array_new();

        g_byte_array_append(r, (const uint8_t *)"\0\0", 2);
        tpmd_ctrl_execute(&fake_ops, &f, r->data, r->len, out);
        g_assert_cmpuint(out->len, ==, 4);
        g_assert_cmphex(get32(out->data), ==, TPM_BAD_PARAMETER);
        g_byte_array_unref(r);
        g_byte_array_unref(out);
    }
    fake_clear(&f);
}

/* GET_INFO: the string in pieces of up to 3072 bytes, from an offset. */
static char *f_get_info(void *opaque, uint64_t flags)
{
    char *s = malloc(5001);

    (void)opaque;
    g_assert_cmphex(flags, ==, 0x100000002ull);
    memset(s, 'x', 5000);
    s[0] = '{';
    s[5000] = '\0';
    return s;
}

static void test_get_info(void)
{
    tpmd_ctrl_ops ops = fake_ops;
    GByteArray *out = g_byte_array_new();
    GByteArray *req = req_u32(CTRL_GET_INFO, 4, 1, 2, 0, 0);
    fake f;

    fake_init(&f, true);
    ops.get_info = f_get_info;
    tpmd_ctrl_execute(&ops, &f, req->data, req->len, out);
    g_assert_cmpuint(out->len, ==, 12 + 3072);
    g_assert_cmphex(get32(out->data), ==, TPM_SUCCESS);
    g_assert_cmpuint(get32(out->data + 4), ==, 5001);
    g_assert_cmpuint(get32(out->data + 8), ==, 3072);
    g_assert_cmpint(out->data[12], ==, '{');
    g_byte_array_unref(req);
    g_byte_array_set_size(out, 0);
    req = req_u32(CTRL_GET_INFO, 4, 1, 2, 3072, 0);
    tpmd_ctrl_execute(&ops, &f, req->data, req->len, out);
    g_assert_cmpuint(out->len, ==, 12 + 5001 - 3072);
    g_assert_cmpuint(get32(out->data + 8), ==, 5001 - 3072);
    g_assert_cmpint(out->data[out->len - 1], ==, '\0');
    g_byte_array_unref(req);
    g_byte_array_set_size(out, 0);
    req = req_u32(CTRL_GET_INFO, 4, 1, 2, 5000, 0);     /* at the NUL: past the string */
    tpmd_ctrl_execute(&ops, &f, req->data, req->len, out);
    g_assert_cmpuint(out->len, ==, 4);
    g_assert_cmphex(get32(out->data), ==, TPM_BAD_PARAMETER);
    g_byte_array_unref(req);
    g_byte_array_unref(out);
    fake_clear(&f);
}

static void test_capabilities(void)
{
    GByteArray *out;
    fake f;

    /* what nvram-tpmd offers: all but hashing */
    g_assert_cmphex(tpmd_ctrl_capabilities(), ==, 0x7fefu);
    for (uint32_t code = 1; code <= CTRL_GET_INFO; code++) {
        const tpmd_ctrl_command *c = tpmd_ctrl_lookup(code);

        g_assert_nonnull(c);
        g_assert_cmpuint(c->code, ==, code);
        if (c->handler && c->capability)
            g_assert_true(tpmd_ctrl_capabilities() & c->capability);
        if (!c->handler)
            g_assert_false(tpmd_ctrl_capabilities() & c->capability);
    }
    fake_init(&f, false);
    out = run(&f, req_u32(CTRL_GET_CAPABILITY, 0));
    /* a big-endian u64: reads as result 0, then the mask */
    g_assert_cmpuint(out->len, ==, 8);
    g_assert_cmphex(get32(out->data), ==, 0);
    g_assert_cmphex(get32(out->data + 4), ==, 0x7fefu);
    g_assert_cmpstr(f.calls->str, ==, "");
    g_assert_cmpint(f.last_level, ==, TPMD_LOG_CMD);
    g_byte_array_unref(out);
    fake_clear(&f);
}

static void test_names_and_log_levels(void)
{
    static const char *const names[] = {
        NULL, "GET_CAPABILITY", "INIT", "SHUTDOWN", "GET_TPMESTABLISHED", "SET_LOCALITY",
        "HASH_START", "HASH_DATA", "HASH_END", "CANCEL_TPM_CMD", "STORE_VOLATILE",
        "RESET_TPMESTABLISHED", "GET_STATEBLOB", "SET_STATEBLOB", "STOP", "GET_CONFIG",
        "SET_DATAFD", "SET_BUFFERSIZE", "GET_INFO",
    };
    fake f;

    for (uint32_t code = 1; code <= CTRL_GET_INFO; code++) {
        const tpmd_ctrl_command *c = tpmd_ctrl_lookup(code);

        g_assert_cmpstr(c->name, ==, names[code]);
        /* the frequent ones (QEMU sets the locality often) only at level 3 */
        g_assert_cmpint(c->log_level, ==,
                        code == CTRL_GET_CAPABILITY || code == CTRL_SET_LOCALITY
                            ? TPMD_LOG_CMD : TPMD_LOG_CONN);
    }
    fake_init(&f, true);
    expect(&f, req_u8(CTRL_SET_LOCALITY, 2), TPM_SUCCESS, "set_locality(2) ");
    g_assert_cmpint(f.last_level, ==, TPMD_LOG_CMD);
    g_assert_nonnull(strstr(f.last_log->str, "SET_LOCALITY"));
    expect(&f, req_u32(CTRL_STOP, 0), TPM_SUCCESS, "power_off ");
    g_assert_cmpint(f.last_level, ==, TPMD_LOG_CONN);
    g_assert_nonnull(strstr(f.last_log->str, "control command 14 STOP -> 0x0"));
    fake_clear(&f);
}

static void test_init_shutdown_stop(void)
{
    fake f;

    fake_init(&f, true);
    expect(&f, req_u32(CTRL_INIT, 1, 1), TPM_SUCCESS, "power_off power_on(1) ");
    g_assert_true(f.powered);
    f.powered = false;
    expect(&f, req_u32(CTRL_INIT, 1, 0), TPM_SUCCESS, "power_on(0) ");
    f.result = -ENOMEM;
    f.powered = false;
    expect(&f, req_u32(CTRL_INIT, 1, 0), TPM_FAIL, "power_on(0) ");
    f.result = 0;
    f.powered = true;
    expect(&f, req_u32(CTRL_STOP, 0), TPM_SUCCESS, "power_off ");
    g_assert_false(f.powered);
    expect(&f, req_u32(CTRL_SHUTDOWN, 0), TPM_SUCCESS, "power_off terminate ");
    fake_clear(&f);
}

static void test_locality_and_established(void)
{
    GByteArray *out;
    fake f;

    fake_init(&f, false);
    /* SET_LOCALITY works powered off; 0..4 only */
    expect(&f, req_u8(CTRL_SET_LOCALITY, 4), TPM_SUCCESS, "set_locality(4) ");
    expect(&f, req_u8(CTRL_SET_LOCALITY, 5), TPM_BAD_LOCALITY, "");
    f.result = -EINVAL;
    expect(&f, req_u8(CTRL_SET_LOCALITY, 0), TPM_BAD_PARAMETER, "set_locality(0) ");
    f.result = 0;
    /* the established bit needs a running TPM */
    expect(&f, req_u32(CTRL_GET_TPMESTABLISHED, 0), TPM_BAD_ORDINAL, "");
    expect(&f, req_u8(CTRL_RESET_TPMESTABLISHED, 3), TPM_BAD_ORDINAL, "");
    expect(&f, req_u8(CTRL_RESET_TPMESTABLISHED, 9), TPM_BAD_ORDINAL, "");
    f.powered = true;
    f.established = true;
    out = run(&f, req_u32(CTRL_GET_TPMESTABLISHED, 0));
    g_assert_cmpuint(out->len, ==, 8);
    g_assert_cmphex(get32(out->data), ==, TPM_SUCCESS);
    g_assert_cmphex(get32(out->data + 4), ==, 0x01000000u);
    g_assert_cmpstr(f.calls->str, ==, "get_established ");
    g_byte_array_unref(out);
    expect(&f, req_u8(CTRL_RESET_TPMESTABLISHED, 9), TPM_BAD_LOCALITY, "");
    expect(&f, req_u8(CTRL_RESET_TPMESTABLISHED, 3), TPM_SUCCESS, "reset_established(3) ");
    f.result = -EPERM;
    expect(&f, req_u8(CTRL_RESET_TPMESTABLISHED, 0), TPM_BAD_LOCALITY, "reset_established(0) ");
    fake_clear(&f);
}

static void test_cancel_store_volatile(void)
{
    fake f;

    fake_init(&f, false);
    expect(&f, req_u32(CTRL_CANCEL_TPM_CMD, 0), TPM_BAD_ORDINAL, "");
    expect(&f, req_u32(CTRL_STORE_VOLATILE, 0), TPM_BAD_ORDINAL, "");
    f.powered = true;
    expect(&f, req_u32(CTRL_CANCEL_TPM_CMD, 0), TPM_SUCCESS, "cancel ");
    expect(&f, req_u32(CTRL_STORE_VOLATILE, 0), TPM_SUCCESS, "store_volatile ");
    /* the daemon's errors as swtpm's results */
    f.result = -ENOSPC;
    expect(&f, req_u32(CTRL_STORE_VOLATILE, 0), TPM_SIZE, "store_volatile ");
    f.result = -EIO;
    expect(&f, req_u32(CTRL_STORE_VOLATILE, 0), TPM_IOERROR, "store_volatile ");
    f.result = -EBUSY;
    expect(&f, req_u32(CTRL_CANCEL_TPM_CMD, 0), TPM_BAD_ORDINAL, "cancel ");
    fake_clear(&f);
}

/* GET_STATEBLOB's answer: result, flags, totlength, length, data. */
static void check_get_answer(GByteArray *out, uint32_t result, const GByteArray *blob,
                             size_t offset)
{
    size_t n = blob && offset < blob->len ? blob->len - offset : 0;

    g_assert_cmphex(get32(out->data), ==, result);
    g_assert_cmpuint(out->len, ==, 16 + n);
    g_assert_cmphex(get32(out->data + 4), ==, 0);
    g_assert_cmpuint(get32(out->data + 8), ==, n);
    g_assert_cmpuint(get32(out->data + 12), ==, n);
    if (n)
        g_assert_cmpmem(out->data + 16, n, blob->data + offset, n);
}

static void test_get_stateblob(void)
{
    GByteArray *out, *wrapped = swtpm_blob_wrap((const uint8_t *)"state", 5, true);
    fake f;

    fake_init(&f, false);
    out = run(&f, req_u32(CTRL_GET_STATEBLOB, 3, 0, 4, 0));
    check_get_answer(out, TPM_BAD_PARAMETER, NULL, 0);
    g_assert_cmpstr(f.calls->str, ==, "");
    g_byte_array_unref(out);
    out = run(&f, req_u32(CTRL_GET_STATEBLOB, 3, 0, 1, 0));
    check_get_answer(out, TPM_BAD_ORDINAL, NULL, 0);
    g_assert_cmpstr(f.calls->str, ==, "");
    g_byte_array_unref(out);

    f.powered = true;
    f.blob = "state";
    out = run(&f, req_u32(CTRL_GET_STATEBLOB, 3, 0, 2, 0));
    /* swtpm's migration container: MIGRATION_DATA { DATA } */
    check_get_answer(out, TPM_SUCCESS, wrapped, 0);
    g_assert_cmpuint(wrapped->len, ==, 10 + 6 + 6 + 5);
    g_assert_cmphex(out->data[16 + 5], ==, SWTPM_BLOB_FLAG_MIGRATION_DATA);
    g_assert_cmpstr(f.calls->str, ==, "get_state_blob(2) ");
    g_byte_array_unref(out);
    out = run(&f, req_u32(CTRL_GET_STATEBLOB, 3, 0, 1, 7));
    check_get_answer(out, TPM_SUCCESS, wrapped, 7);
    g_byte_array_unref(out);
    out = run(&f, req_u32(CTRL_GET_STATEBLOB, 3, 0, 1, 1000));
    check_get_answer(out, TPM_SUCCESS, wrapped, 1000);
    g_byte_array_unref(out);

    f.blob = NULL;                  /* no such blob: as swtpm, TPM_RETRY */
    out = run(&f, req_u32(CTRL_GET_STATEBLOB, 3, 0, 3, 0));
    check_get_answer(out, TPM_RETRY, NULL, 0);
    g_assert_cmpstr(f.calls->str, ==, "get_state_blob(3) ");
    g_byte_array_unref(out);
    f.result = -EIO;
    out = run(&f, req_u32(CTRL_GET_STATEBLOB, 3, 0, 1, 0));
    check_get_answer(out, TPM_IOERROR, NULL, 0);
    g_byte_array_unref(out);
    g_byte_array_unref(wrapped);
    fake_clear(&f);
}

/* A SET_STATEBLOB request of @type carrying @blob (may be NULL). */
static GByteArray *set_req(uint32_t flags, uint32_t type, const GByteArray *blob)
{
    GByteArray *r = req_u32(CTRL_SET_STATEBLOB, 3, flags, type, blob ? blob->len : 0);

    if (blob)
        g_byte_array_append(r, blob->data, blob->len);
    return r;
}

static void test_set_stateblob(void)
{
    GByteArray *mig = swtpm_blob_wrap((const uint8_t *)"abc", 3, true);
    GByteArray *plain = swtpm_blob_wrap((const uint8_t *)"abcd", 4, false);
    GByteArray *empty = swtpm_blob_wrap(NULL, 0, false);
    fake f;

    fake_init(&f, true);
    expect(&f, set_req(0, 1, mig), TPM_BAD_ORDINAL, "");        /* STOP first */
    f.powered = false;
    expect(&f, set_req(0, 7, mig), TPM_BAD_PARAMETER, "");
    expect(&f, set_req(2, 1, mig), TPM_KEYNOTFOUND, "");        /* encrypted: no keys */
    expect(&f, set_req(0, 1, mig), TPM_SUCCESS, "set_state_blob(1,3) ");
    g_assert_cmpmem(f.set_data->data, f.set_data->len, "abc", 3);
    g_clear_pointer(&f.set_data, g_byte_array_unref);
    expect(&f, set_req(0, 2, plain), TPM_SUCCESS, "set_state_blob(2,4) ");
    g_assert_cmpmem(f.set_data->data, f.set_data->len, "abcd", 4);
    g_clear_pointer(&f.set_data, g_byte_array_unref);
    /* no request data, or an empty container: "no such blob" */
    expect(&f, set_req(0, 3, NULL), TPM_SUCCESS, "set_state_blob(3,0) ");
    expect(&f, set_req(0, 3, empty), TPM_SUCCESS, "set_state_blob(3,0) ");
    g_assert_null(f.set_data);
    /* the container's refusals, as swtpm answers them */
    mig->data[9]++;                                              /* totlen */
    expect(&f, set_req(0, 1, mig), TPM_BAD_PARAMETER, "");
    mig->data[9]--;
    mig->data[1] = 3;                                            /* min_version */
    expect(&f, set_req(0, 1, mig), TPM_BAD_VERSION, "");
    mig->data[1] = 1;
    mig->data[3] = 12;                                           /* hdrsize */
    expect(&f, set_req(0, 1, mig), TPM_BAD_DATASIZE, "");
    mig->data[3] = 10;
    mig->data[5] |= SWTPM_BLOB_FLAG_ENCRYPTED;
    expect(&f, set_req(0, 1, mig), TPM_KEYNOTFOUND, "");
    mig->data[5] &= (uint8_t)~SWTPM_BLOB_FLAG_ENCRYPTED;
    mig->data[17] = 9;                                           /* DATA -> tag 9 */
    expect(&f, set_req(0, 1, mig), TPM_FAIL, "");
    mig->data[17] = SWTPM_TAG_DATA;
    f.result = -EFBIG;
    expect(&f, set_req(0, 1, mig), TPM_SIZE, "set_state_blob(1,3) ");
    g_byte_array_unref(mig);
    g_byte_array_unref(plain);
    g_byte_array_unref(empty);
    fake_clear(&f);
}

static void test_config_datafd_buffersize(void)
{
    GByteArray *out;
    fake f;

    fake_init(&f, true);
    out = run(&f, req_u32(CTRL_GET_CONFIG, 0));
    g_assert_cmpuint(out->len, ==, 8);
    g_assert_cmphex(get32(out->data), ==, TPM_SUCCESS);
    g_assert_cmphex(get32(out->data + 4), ==, 0);               /* no keys */
    g_byte_array_unref(out);

    expect(&f, req_u32(CTRL_SET_DATAFD, 0), TPM_SUCCESS, "set_datafd ");
    f.result = -EBADF;
    expect(&f, req_u32(CTRL_SET_DATAFD, 0), TPM_BAD_PARAMETER, "set_datafd ");
    f.result = -EBUSY;
    expect(&f, req_u32(CTRL_SET_DATAFD, 0), TPM_IOERROR, "set_datafd ");
    f.result = 0;

    /* setting needs the TPM stopped; querying does not */
    expect(&f, req_u32(CTRL_SET_BUFFERSIZE, 1, 2048), TPM_BAD_ORDINAL, "");
    out = run(&f, req_u32(CTRL_SET_BUFFERSIZE, 1, 0));
    g_assert_cmpuint(out->len, ==, 16);
    g_assert_cmphex(get32(out->data), ==, TPM_SUCCESS);
    g_assert_cmpuint(get32(out->data + 4), ==, 4096);
    g_assert_cmpuint(get32(out->data + 8), ==, 128);
    g_assert_cmpuint(get32(out->data + 12), ==, 4096);
    g_assert_cmpstr(f.calls->str, ==, "set_buffer_size(0) ");
    g_byte_array_unref(out);
    f.powered = false;
    out = run(&f, req_u32(CTRL_SET_BUFFERSIZE, 1, 2048));
    g_assert_cmpuint(get32(out->data + 4), ==, 2048);
    g_assert_cmpstr(f.calls->str, ==, "set_buffer_size(2048) ");
    g_byte_array_unref(out);
    fake_clear(&f);
}

/* Bytes beyond a request's layout are padding (QEMU sends SET_LOCALITY's
 * byte in a 4-byte union). */
static void test_padding_ignored(void)
{
    GByteArray *r = req_u8(CTRL_SET_LOCALITY, 1);
    fake f;

    g_byte_array_append(r, (const uint8_t *)"\x07\x07\x07", 3);
    fake_init(&f, false);
    expect(&f, r, TPM_SUCCESS, "set_locality(1) ");
    fake_clear(&f);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/tpmd-ctrl/request-size/fixed", test_request_size_fixed);
    g_test_add_func("/tpmd-ctrl/request-size/variable", test_request_size_variable);
    g_test_add_func("/tpmd-ctrl/request-size/unknown", test_request_size_unknown);
    g_test_add_func("/tpmd-ctrl/unknown-and-unimplemented", test_unknown_and_unimplemented);
    g_test_add_func("/tpmd-ctrl/short-requests", test_short_requests);
    g_test_add_func("/tpmd-ctrl/capabilities", test_capabilities);
    g_test_add_func("/tpmd-ctrl/get-info", test_get_info);
    g_test_add_func("/tpmd-ctrl/names-and-log-levels", test_names_and_log_levels);
    g_test_add_func("/tpmd-ctrl/init-shutdown-stop", test_init_shutdown_stop);
    g_test_add_func("/tpmd-ctrl/locality-and-established", test_locality_and_established);
    g_test_add_func("/tpmd-ctrl/cancel-store-volatile", test_cancel_store_volatile);
    g_test_add_func("/tpmd-ctrl/get-stateblob", test_get_stateblob);
    g_test_add_func("/tpmd-ctrl/set-stateblob", test_set_stateblob);
    g_test_add_func("/tpmd-ctrl/config-datafd-buffersize", test_config_datafd_buffersize);
    g_test_add_func("/tpmd-ctrl/padding-ignored", test_padding_ignored);
    return g_test_run();
}
