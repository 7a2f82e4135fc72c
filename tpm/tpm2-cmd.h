/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * tpm2-cmd.h — raw TPM 2.0 command bytes, for the programs here that talk
 * to a TPM without a TSS (tests/test-tpm.c, bench/bench-tpm.c): a command
 * buffer, big-endian marshalling, and the commands both of them send.
 * Commands that need authorisation carry one password session with the
 * empty password (TPM_RS_PW).  Header only, and not installed.
 */
#ifndef TPM2_CMD_H
#define TPM2_CMD_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <glib.h>

/* TPM 2.0 constants (Part 2 of the specification). */
#define TPM2_ST_NO_SESSIONS      0x8001u
#define TPM2_ST_SESSIONS         0x8002u
#define TPM2_CC_NV_DEFINE_SPACE  0x0000012au
#define TPM2_CC_NV_INCREMENT     0x00000134u
#define TPM2_CC_NV_WRITE         0x00000137u
#define TPM2_CC_STARTUP          0x00000144u
#define TPM2_CC_NV_READ          0x0000014eu
#define TPM2_RH_OWNER            0x40000001u
#define TPM2_RS_PW               0x40000009u
#define TPM2_ALG_SHA256          0x000bu
#define TPM2_SU_CLEAR            0x0000u

/* Largest command: libtpms's buffer size (NVTPM_BUFFER_MAX). */
#define TPM2_CMD_MAX 4096u

typedef struct tpm2_cmdbuf {
    uint8_t b[TPM2_CMD_MAX];
    size_t n;
} tpm2_cmdbuf;

static inline void tpm2_put8(tpm2_cmdbuf *c, uint8_t v)
{
    g_assert_cmpuint(c->n + 1, <=, sizeof c->b);
    c->b[c->n++] = v;
}

static inline void tpm2_put16(tpm2_cmdbuf *c, uint16_t v)
{
    tpm2_put8(c, (uint8_t)(v >> 8));
    tpm2_put8(c, (uint8_t)v);
}

static inline void tpm2_put32(tpm2_cmdbuf *c, uint32_t v)
{
    tpm2_put16(c, (uint16_t)(v >> 16));
    tpm2_put16(c, (uint16_t)v);
}

static inline void tpm2_put_bytes(tpm2_cmdbuf *c, const void *p, size_t n)
{
    g_assert_cmpuint(c->n + n, <=, sizeof c->b);
    memcpy(c->b + c->n, p, n);
    c->n += n;
}

static inline uint16_t tpm2_get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t tpm2_get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The header; its size is only known at tpm2_cmd_end(). */
static inline void tpm2_cmd_begin(tpm2_cmdbuf *c, uint16_t tag, uint32_t cc)
{
    c->n = 0;
    tpm2_put16(c, tag);
    tpm2_put32(c, 0);
    tpm2_put32(c, cc);
}

static inline void tpm2_cmd_end(tpm2_cmdbuf *c)
{
    c->b[2] = (uint8_t)(c->n >> 24);
    c->b[3] = (uint8_t)(c->n >> 16);
    c->b[4] = (uint8_t)(c->n >> 8);
    c->b[5] = (uint8_t)c->n;
}

/* Authorisation area with one password session and an empty password. */
static inline void tpm2_put_pw_session(tpm2_cmdbuf *c)
{
    tpm2_put32(c, 9);           /* authorizationSize */
    tpm2_put32(c, TPM2_RS_PW);
    tpm2_put16(c, 0);           /* nonce */
    tpm2_put8(c, 0);            /* sessionAttributes */
    tpm2_put16(c, 0);           /* hmac = password */
}

/* The header of a command on an NV index, authorised by @auth (the owner
 * or the index itself), up to the authorisation area. */
static inline void tpm2_cmd_begin_nv(tpm2_cmdbuf *c, uint32_t cc, uint32_t auth, uint32_t index)
{
    tpm2_cmd_begin(c, TPM2_ST_SESSIONS, cc);
    tpm2_put32(c, auth);
    tpm2_put32(c, index);
    tpm2_put_pw_session(c);
}

/* TPM2_Startup(CLEAR). */
static inline void tpm2_cmd_startup(tpm2_cmdbuf *c)
{
    tpm2_cmd_begin(c, TPM2_ST_NO_SESSIONS, TPM2_CC_STARTUP);
    tpm2_put16(c, TPM2_SU_CLEAR);
    tpm2_cmd_end(c);
}

/* An NV index of @size bytes, without auth value or policy, defined by
 * the owner. */
static inline void tpm2_cmd_nv_define(tpm2_cmdbuf *c, uint32_t index, uint32_t attributes,
                                      uint16_t size)
{
    tpm2_cmd_begin(c, TPM2_ST_SESSIONS, TPM2_CC_NV_DEFINE_SPACE);
    tpm2_put32(c, TPM2_RH_OWNER);
    tpm2_put_pw_session(c);
    tpm2_put16(c, 0);           /* auth: empty */
    tpm2_put16(c, 14);          /* TPM2B_NV_PUBLIC.size */
    tpm2_put32(c, index);
    tpm2_put16(c, TPM2_ALG_SHA256);
    tpm2_put32(c, attributes);
    tpm2_put16(c, 0);           /* authPolicy: empty */
    tpm2_put16(c, size);
    tpm2_cmd_end(c);
}

static inline void tpm2_cmd_nv_write(tpm2_cmdbuf *c, uint32_t auth, uint32_t index,
                                     const void *data, uint16_t len, uint16_t offset)
{
    tpm2_cmd_begin_nv(c, TPM2_CC_NV_WRITE, auth, index);
    tpm2_put16(c, len);
    tpm2_put_bytes(c, data, len);
    tpm2_put16(c, offset);
    tpm2_cmd_end(c);
}

static inline void tpm2_cmd_nv_read(tpm2_cmdbuf *c, uint32_t auth, uint32_t index,
                                    uint16_t len, uint16_t offset)
{
    tpm2_cmd_begin_nv(c, TPM2_CC_NV_READ, auth, index);
    tpm2_put16(c, len);
    tpm2_put16(c, offset);
    tpm2_cmd_end(c);
}

static inline void tpm2_cmd_nv_increment(tpm2_cmdbuf *c, uint32_t auth, uint32_t index)
{
    tpm2_cmd_begin_nv(c, TPM2_CC_NV_INCREMENT, auth, index);
    tpm2_cmd_end(c);
}

#endif /* TPM2_CMD_H */
