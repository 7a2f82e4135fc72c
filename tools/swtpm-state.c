/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * swtpm-state.c — swtpm's state blob container, its key files and its
 * linear file backend (see swtpm-state.h for what this module promises).
 *
 * Written from the format as swtpm documents and produces it; the
 * cryptography is libcrypto's EVP interface (AES-CBC without OpenSSL's
 * padding: swtpm pads itself, to a multiple of the key size, with bytes
 * holding the pad length), HMAC through EVP_DigestSign with an HMAC key,
 * PKCS5_PBKDF2_HMAC and RAND_bytes.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "swtpm-state.h"

G_DEFINE_QUARK(swtpm-state-error-quark, swtpm_state_error)

/* ---- the blob container ------------------------------------------------- */

#define HDR_SIZE 10u
#define TLV_HDR 6u
#define BLOB_VERSION 2u

#define FLAG_ENCRYPTED           0x01u
#define FLAG_MIGRATION_ENCRYPTED 0x02u
#define FLAG_MIGRATION_DATA      0x04u
#define FLAG_ENCRYPTED_256       0x08u
#define FLAG_MIGRATION_256       0x10u
#define FLAGS_KNOWN 0x1fu

enum {
    TAG_DATA = 1,
    TAG_ENCRYPTED_DATA = 2,
    TAG_HMAC = 3,
    TAG_MIGRATION_DATA = 4,
    TAG_ENCRYPTED_MIGRATION_DATA = 5,
    TAG_IVEC_ENCRYPTED_DATA = 6,
    TAG_IVEC_ENCRYPTED_MIGRATION_DATA = 7,
    TAG_MAX = 7,
};

#define HMAC_SIZE 32u

static const char *const state_names[SWTPM_NSTATES] = { "permall", "volatilestate", "savestate" };

const char *swtpm_state_name(unsigned which)
{
    return which < SWTPM_NSTATES ? state_names[which] : "?";
}

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put16(GByteArray *a, uint16_t v)
{
    uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };

    g_byte_array_append(a, b, 2);
}

static void put32(GByteArray *a, uint32_t v)
{
    uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };

    g_byte_array_append(a, b, 4);
}

static void put_tlv(GByteArray *a, uint16_t tag, const uint8_t *v, size_t len)
{
    put16(a, tag);
    put32(a, (uint32_t)len);
    if (len)
        g_byte_array_append(a, v, (guint)len);
}

static bool G_GNUC_PRINTF(3, 4) fail(GError **error, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_propagate_error(error, g_error_new_valist(SWTPM_STATE_ERROR, code, fmt, ap));
    va_end(ap);
    return false;
}

/* The values of the TLVs in @p/@len, by tag (NULL if absent).  The TLVs
 * must exactly fill @len; a tag seen twice is an error. */
typedef struct tlvs {
    const uint8_t *val[TAG_MAX + 1];
    size_t len[TAG_MAX + 1];
} tlvs;

static bool tlv_split(const uint8_t *p, size_t len, const char *what, tlvs *t, GError **error)
{
    size_t off = 0;

    memset(t, 0, sizeof *t);
    while (off < len) {
        uint16_t tag;
        uint32_t l;

        if (len - off < TLV_HDR)
            return fail(error, SWTPM_STATE_ERROR_FORMAT,
                        "%s: truncated TLV header at offset %zu (%zu bytes left, 6 needed)",
                        what, off, len - off);
        tag = be16(p + off);
        l = be32(p + off + 2);
        if (l > len - off - TLV_HDR)
            return fail(error, SWTPM_STATE_ERROR_FORMAT,
                        "%s: TLV tag %u at offset %zu has length %" G_GUINT32_FORMAT
                        ", more than the %zu bytes that follow",
                        what, tag, off, l, len - off - TLV_HDR);
        if (tag <= TAG_MAX) {
            if (t->val[tag])
                return fail(error, SWTPM_STATE_ERROR_FORMAT,
                            "%s: TLV tag %u appears twice", what, tag);
            t->val[tag] = p + off + TLV_HDR;
            t->len[tag] = l;
        }
        off += TLV_HDR + l;
    }
    return true;
}

size_t swtpm_blob_keylen(const uint8_t *p, size_t len)
{
    uint16_t flags;

    if (len < HDR_SIZE || be16(p + 2) != HDR_SIZE)
        return 0;
    flags = be16(p + 4);
    if (!(flags & FLAG_ENCRYPTED))
        return 0;
    return flags & FLAG_ENCRYPTED_256 ? 32 : 16;
}

static const EVP_CIPHER *aes_cbc(size_t keylen)
{
    return keylen == 32 ? EVP_aes_256_cbc() : EVP_aes_128_cbc();
}

/* HMAC-SHA256 with @key over @a then @b (@b may be NULL). */
static bool hmac_sha256(const swtpm_key *key, const uint8_t *a, size_t alen, const uint8_t *b,
                        size_t blen, uint8_t out[HMAC_SIZE], GError **error)
{
    EVP_PKEY *pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_HMAC, NULL, key->bytes, key->len);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t outlen = HMAC_SIZE;
    bool ok = pkey && ctx &&
              EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1 &&
              EVP_DigestSignUpdate(ctx, a, alen) == 1 &&
              (!b || EVP_DigestSignUpdate(ctx, b, blen) == 1) &&
              EVP_DigestSignFinal(ctx, out, &outlen) == 1 && outlen == HMAC_SIZE;

    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    if (!ok)
        return fail(error, SWTPM_STATE_ERROR_CRYPTO, "HMAC-SHA256 computation failed (libcrypto)");
    return true;
}

/* AES-CBC over whole blocks, no OpenSSL padding. */
static bool aes_cbc_run(bool encrypt, const swtpm_key *key, const uint8_t iv[16],
                        const uint8_t *in, size_t len, uint8_t *out, GError **error)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n1 = 0, n2 = 0;
    bool ok = ctx && len <= INT_MAX &&
              EVP_CipherInit_ex(ctx, aes_cbc(key->len), NULL, key->bytes, iv, encrypt) == 1 &&
              EVP_CIPHER_CTX_set_padding(ctx, 0) == 1 &&
              EVP_CipherUpdate(ctx, out, &n1, in, (int)len) == 1 &&
              EVP_CipherFinal_ex(ctx, out + n1, &n2) == 1 && (size_t)n1 + (size_t)n2 == len;

    EVP_CIPHER_CTX_free(ctx);
    if (!ok)
        return fail(error, SWTPM_STATE_ERROR_CRYPTO, "AES-%zu-CBC %s failed (libcrypto)",
                    key->len * 8, encrypt ? "encryption" : "decryption");
    return true;
}

/* Check the HMAC of an encrypted TLV set and decrypt it. */
static bool decrypt_tlvs(const tlvs *t, uint16_t data_tag, uint16_t iv_tag, size_t keylen,
                         const swtpm_key *key, GByteArray **plain, GError **error)
{
    uint8_t mac[HMAC_SIZE], iv[32] = { 0 };
    const uint8_t *ct = t->val[data_tag], *ivp = t->val[iv_tag];
    size_t ctlen = t->len[data_tag], ivlen = t->len[iv_tag];
    GByteArray *out;
    unsigned pad;

    if (!key)
        return fail(error, SWTPM_STATE_ERROR_KEY,
                    "the state is encrypted (AES-%zu-CBC): give its key with --key or --pwdfile",
                    keylen * 8);
    if (key->len != keylen)
        return fail(error, SWTPM_STATE_ERROR_KEY,
                    "wrong key: the state is encrypted with a %zu-bit key, the key given has "
                    "%zu bits", keylen * 8, key->len * 8);
    if (!ct || !t->val[TAG_HMAC])
        return fail(error, SWTPM_STATE_ERROR_FORMAT,
                    "the encrypted state lacks its %s TLV", ct ? "HMAC" : "encrypted data");
    if (t->len[TAG_HMAC] != HMAC_SIZE)
        return fail(error, SWTPM_STATE_ERROR_FORMAT,
                    "the HMAC TLV has %zu bytes, HMAC-SHA256 has 32", t->len[TAG_HMAC]);
    if (ivp && ivlen != keylen)
        return fail(error, SWTPM_STATE_ERROR_FORMAT,
                    "the IV TLV has %zu bytes, %zu expected for this key size", ivlen, keylen);
    /* encrypt-then-MAC: the HMAC covers ciphertext and IV, checked first */
    if (!hmac_sha256(key, ct, ctlen, ivp, ivp ? ivlen : 0, mac, error))
        return false;
    if (CRYPTO_memcmp(mac, t->val[TAG_HMAC], HMAC_SIZE) != 0)
        return fail(error, SWTPM_STATE_ERROR_KEY,
                    "HMAC check failed: wrong key, or the file is corrupted");
    if (ctlen == 0 || ctlen % keylen != 0)
        return fail(error, SWTPM_STATE_ERROR_FORMAT,
                    "encrypted data of %zu bytes is not a whole number of %zu-byte blocks",
                    ctlen, keylen);
    if (ivp)
        memcpy(iv, ivp, 16);   /* AES-CBC takes the first block of the IV */
    out = g_byte_array_sized_new((guint)ctlen);
    g_byte_array_set_size(out, (guint)ctlen);
    if (!aes_cbc_run(false, key, iv, ct, ctlen, out->data, error))
        goto bad;
    pad = out->data[ctlen - 1];
    if (pad == 0 || pad > keylen)
        goto bad_pad;
    for (size_t i = ctlen - pad; i < ctlen; i++)
        if (out->data[i] != pad)
            goto bad_pad;
    g_byte_array_set_size(out, (guint)(ctlen - pad));
    *plain = out;
    return true;
bad_pad:
    fail(error, SWTPM_STATE_ERROR_FORMAT, "bad padding after decryption (corrupted state)");
bad:
    swtpm_state_free(out);          /* decrypted, or partly so */
    return false;
}

void swtpm_state_free(GByteArray *state)
{
    if (!state)
        return;
    OPENSSL_cleanse(state->data, state->len);
    g_byte_array_free(state, TRUE);
}

bool swtpm_blob_decode(const uint8_t *p, size_t len, const swtpm_key *key, GByteArray **plain,
                       swtpm_blob_info *info, GError **error)
{
    uint8_t version, min_version;
    uint16_t hdrsize, flags;
    uint32_t totlen;
    size_t keylen;
    tlvs outer, inner;
    const tlvs *t = &outer;

    *plain = NULL;
    if (len < HDR_SIZE)
        return fail(error, SWTPM_STATE_ERROR_FORMAT,
                    "truncated header: %zu bytes, a swtpm state blob starts with a %u-byte "
                    "header", len, HDR_SIZE);
    version = p[0];
    min_version = p[1];
    hdrsize = be16(p + 2);
    flags = be16(p + 4);
    totlen = be32(p + 6);
    if (totlen != len)
        return fail(error, SWTPM_STATE_ERROR_FORMAT,
                    "length mismatch: the header says %" G_GUINT32_FORMAT " bytes (totlen), "
                    "the blob has %zu", totlen, len);
    if (version == 0 || min_version > BLOB_VERSION || min_version > version)
        return fail(error, SWTPM_STATE_ERROR_FORMAT,
                    "unsupported blob version %u (minimum version %u); version 2 is supported",
                    version, min_version);
    if (hdrsize != HDR_SIZE)
        return fail(error, SWTPM_STATE_ERROR_FORMAT,
                    "bad header size %u (expected %u)", hdrsize, HDR_SIZE);
    if (flags & ~FLAGS_KNOWN)
        return fail(error, SWTPM_STATE_ERROR_FORMAT, "unknown header flags 0x%04x", flags);
    if (flags & FLAG_MIGRATION_ENCRYPTED)
        return fail(error, SWTPM_STATE_ERROR_KEY,
                    "the blob is encrypted with a migration key, which is not supported");
    keylen = flags & FLAG_ENCRYPTED_256 ? 32 : 16;
    if (info) {
        info->version = version;
        info->flags = flags;
        info->encrypted = flags & FLAG_ENCRYPTED;
        info->keylen = info->encrypted ? keylen : 0;
    }
    p += HDR_SIZE;
    len -= HDR_SIZE;
    if (version == 1) {
        /* version 1: the state follows the header, no TLVs */
        if (flags & FLAG_ENCRYPTED)
            return fail(error, SWTPM_STATE_ERROR_FORMAT,
                        "encrypted version-1 blobs are not supported");
        *plain = g_byte_array_sized_new((guint)len);
        g_byte_array_append(*plain, p, (guint)len);
        return true;
    }
    if (len == 0) {                     /* an empty state */
        /* Unless encrypted: nothing would authenticate it. */
        if (flags & FLAG_ENCRYPTED)
            return fail(error, SWTPM_STATE_ERROR_FORMAT,
                        "the blob is marked encrypted but holds no encrypted data "
                        "(and no HMAC)");
        *plain = g_byte_array_new();
        return true;
    }
    if (!tlv_split(p, len, "blob", &outer, error))
        return false;
    if (flags & FLAG_MIGRATION_DATA) {
        if (!outer.val[TAG_MIGRATION_DATA])
            return fail(error, SWTPM_STATE_ERROR_FORMAT,
                        "the header announces migration data, there is no such TLV");
        if (!tlv_split(outer.val[TAG_MIGRATION_DATA], outer.len[TAG_MIGRATION_DATA],
                       "migration data", &inner, error))
            return false;
        t = &inner;
    }
    if (flags & FLAG_ENCRYPTED)
        return decrypt_tlvs(t, TAG_ENCRYPTED_DATA, TAG_IVEC_ENCRYPTED_DATA, keylen, key, plain,
                            error);
    if (!t->val[TAG_DATA])
        return fail(error, SWTPM_STATE_ERROR_FORMAT,
                    t->val[TAG_ENCRYPTED_DATA]
                        ? "encrypted data but the header's encrypted flag is clear"
                        : "no DATA TLV in the blob");
    *plain = g_byte_array_sized_new((guint)t->len[TAG_DATA]);
    g_byte_array_append(*plain, t->val[TAG_DATA], (guint)t->len[TAG_DATA]);
    return true;
}

GByteArray *swtpm_blob_encode(const uint8_t *data, size_t len, const swtpm_key *key,
                              GError **error)
{
    /* Sized for the plain form, so that the state is never left behind in
     * a buffer that g_byte_array_append() outgrew and freed. */
    GByteArray *out = g_byte_array_sized_new((guint)MIN((uint64_t)HDR_SIZE + TLV_HDR + len,
                                                        UINT32_MAX));
    uint16_t flags = 0;

    if ((uint64_t)len + 3 * TLV_HDR + HDR_SIZE + 2 * 32 + HMAC_SIZE > UINT32_MAX) {
        fail(error, SWTPM_STATE_ERROR_FORMAT, "state of %zu bytes is too large", len);
        swtpm_state_free(out);
        return NULL;
    }
    g_byte_array_set_size(out, HDR_SIZE);
    if (!key) {
        put_tlv(out, TAG_DATA, data, len);
    } else {
        size_t pad = key->len - len % key->len, clen = len + pad;
        uint8_t *buf = g_malloc(clen), *ct = g_malloc(clen);
        uint8_t iv[32], mac[HMAC_SIZE];
        bool ok;

        if (len)
            memcpy(buf, data, len);
        memset(buf + len, (int)pad, pad);
        ok = RAND_bytes(iv, (int)key->len) == 1;
        if (!ok)
            fail(error, SWTPM_STATE_ERROR_CRYPTO, "no random IV (RAND_bytes failed)");
        ok = ok && aes_cbc_run(true, key, iv, buf, clen, ct, error) &&
             hmac_sha256(key, ct, clen, iv, key->len, mac, error);
        if (ok) {
            put_tlv(out, TAG_ENCRYPTED_DATA, ct, clen);
            put_tlv(out, TAG_HMAC, mac, HMAC_SIZE);
            put_tlv(out, TAG_IVEC_ENCRYPTED_DATA, iv, key->len);
            flags = FLAG_ENCRYPTED | (key->len == 32 ? FLAG_ENCRYPTED_256 : 0);
        }
        OPENSSL_cleanse(buf, clen);
        g_free(buf);
        g_free(ct);
        if (!ok) {
            swtpm_state_free(out);
            return NULL;
        }
    }
    out->data[0] = BLOB_VERSION;
    out->data[1] = 1;                               /* min_version */
    out->data[2] = 0;
    out->data[3] = HDR_SIZE;
    out->data[4] = (uint8_t)(flags >> 8);
    out->data[5] = (uint8_t)flags;
    out->data[6] = (uint8_t)(out->len >> 24);
    out->data[7] = (uint8_t)(out->len >> 16);
    out->data[8] = (uint8_t)(out->len >> 8);
    out->data[9] = (uint8_t)out->len;
    return out;
}

/* ---- keys --------------------------------------------------------------- */

bool swtpm_key_format_parse(const char *text, swtpm_key_format *fmt)
{
    if (strcmp(text, "hex") == 0)
        *fmt = SWTPM_KEY_HEX;
    else if (strcmp(text, "binary") == 0)
        *fmt = SWTPM_KEY_BINARY;
    else
        return false;
    return true;
}

bool swtpm_cipher_parse(const char *text, size_t *keylen)
{
    if (strcmp(text, "aes-cbc") == 0 || strcmp(text, "aes-128-cbc") == 0)
        *keylen = 16;
    else if (strcmp(text, "aes-256-cbc") == 0)
        *keylen = 32;
    else
        return false;
    return true;
}

bool swtpm_kdf_parse(const char *text, swtpm_kdf *kdf)
{
    if (strcmp(text, "pbkdf2") == 0)
        *kdf = SWTPM_KDF_PBKDF2;
    else if (strcmp(text, "sha512") == 0)
        *kdf = SWTPM_KDF_SHA512;
    else
        return false;
    return true;
}

/* Read a small file whole (at most @max bytes). */
static bool read_small(const char *path, size_t max, gchar **data, gsize *len, GError **error)
{
    GError *e = NULL;

    if (!g_file_get_contents(path, data, len, &e)) {
        fail(error, SWTPM_STATE_ERROR_IO, "%s", e->message);
        g_error_free(e);
        return false;
    }
    if (*len > max) {
        OPENSSL_cleanse(*data, *len);   /* a key or passphrase after all, perhaps */
        g_free(*data);
        *data = NULL;
        return fail(error, SWTPM_STATE_ERROR_KEY, "%s: %zu bytes, too large for a %s", path,
                    (size_t)*len, max == 4096 ? "passphrase file (4 KiB at most)" : "key file");
    }
    return true;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

bool swtpm_key_load(const char *path, swtpm_key_format fmt, size_t keylen, swtpm_key *key,
                    GError **error)
{
    gchar *buf = NULL;
    gsize len = 0;
    bool ok = false;

    memset(key, 0, sizeof *key);
    if (!read_small(path, 256, &buf, &len, error))
        return false;
    if (fmt == SWTPM_KEY_BINARY) {
        if (len != 16 && len != 32) {
            fail(error, SWTPM_STATE_ERROR_KEY,
                 "%s: a binary key file holds 16 or 32 bytes, this one has %zu", path,
                 (size_t)len);
            goto out;
        }
        memcpy(key->bytes, buf, len);
        key->len = len;
    } else {
        size_t i = 0, digits = 0;

        if (len >= 2 && buf[0] == '0' && (buf[1] == 'x' || buf[1] == 'X'))
            i = 2;
        while (i + 1 < len && hexval(buf[i]) >= 0 && hexval(buf[i + 1]) >= 0 && digits < 64) {
            key->bytes[digits / 2] = (uint8_t)(hexval(buf[i]) << 4 | hexval(buf[i + 1]));
            digits += 2;
            i += 2;
        }
        for (; i < len; i++)
            if (!isspace((unsigned char)buf[i]))
                break;
        if (i < len || (digits != 32 && digits != 64)) {
            fail(error, SWTPM_STATE_ERROR_KEY,
                 "%s: not a hex key (32 or 64 hex digits, optional leading 0x)", path);
            goto out;
        }
        key->len = digits / 2;
    }
    if (keylen && key->len != keylen) {
        fail(error, SWTPM_STATE_ERROR_KEY, "%s: a %zu-bit key, the cipher needs %zu bits", path,
             key->len * 8, keylen * 8);
        goto out;
    }
    ok = true;
out:
    if (!ok)
        OPENSSL_cleanse(key, sizeof *key);
    if (buf) {
        OPENSSL_cleanse(buf, len);
        g_free(buf);
    }
    return ok;
}

bool swtpm_key_from_pwdfile(const char *path, swtpm_kdf kdf, size_t keylen, swtpm_key *key,
                            GError **error)
{
    static const unsigned char salt[] = { 's', 'w', 't', 'p', 'm' };
    gchar *buf = NULL;
    gsize len = 0;
    bool ok;

    memset(key, 0, sizeof *key);
    if (keylen != 16 && keylen != 32)
        return fail(error, SWTPM_STATE_ERROR_KEY, "key size %zu is neither 16 nor 32", keylen);
    if (!read_small(path, 4096, &buf, &len, error))
        return false;
    if (kdf == SWTPM_KDF_PBKDF2) {
        ok = PKCS5_PBKDF2_HMAC(buf, (int)len, salt, sizeof salt, 1000, EVP_sha512(),
                               (int)keylen, key->bytes) == 1;
    } else {
        uint8_t md[64];
        unsigned mdlen = 0;

        ok = EVP_Digest(buf, len, md, &mdlen, EVP_sha512(), NULL) == 1 && mdlen == 64;
        if (ok)
            memcpy(key->bytes, md, keylen);
        OPENSSL_cleanse(md, sizeof md);
    }
    OPENSSL_cleanse(buf, len);
    g_free(buf);
    if (!ok) {
        OPENSSL_cleanse(key, sizeof *key);
        return fail(error, SWTPM_STATE_ERROR_CRYPTO, "%s: key derivation failed (libcrypto)",
                    path);
    }
    key->len = keylen;
    return true;
}

/* ---- the linear file backend ------------------------------------------- */

#define LINEAR_MAGIC UINT64_C(0x737774706d6c696e)    /* "swtpmlin" */
#define LINEAR_VERSION 1u
#define LINEAR_FIXED 12u                              /* magic, version, pad, hdrsize */
#define LINEAR_ENTRY 12u

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

bool swtpm_linear_parse(const uint8_t *p, size_t len, swtpm_linear_entry entries[SWTPM_NSTATES],
                        GError **error)
{
    size_t hdrsize;

    memset(entries, 0, sizeof(swtpm_linear_entry) * SWTPM_NSTATES);
    if (len < LINEAR_FIXED)
        return fail(error, SWTPM_STATE_ERROR_FORMAT,
                    "truncated linear file header: %zu bytes", len);
    if (le64(p) != LINEAR_MAGIC)
        return fail(error, SWTPM_STATE_ERROR_FORMAT,
                    "not a swtpm linear state file (no \"swtpmlin\" magic)");
    if (p[8] == 0 || p[8] > LINEAR_VERSION)
        return fail(error, SWTPM_STATE_ERROR_FORMAT,
                    "unsupported linear file version %u (version 1 is supported)", p[8]);
    hdrsize = (size_t)p[10] | (size_t)p[11] << 8;
    if (hdrsize < LINEAR_FIXED + SWTPM_NSTATES * LINEAR_ENTRY || hdrsize > len ||
        (hdrsize - LINEAR_FIXED) % LINEAR_ENTRY != 0)
        return fail(error, SWTPM_STATE_ERROR_FORMAT,
                    "bad linear file header size %zu (file of %zu bytes)", hdrsize, len);
    for (unsigned i = 0; i < SWTPM_NSTATES; i++) {
        const uint8_t *e = p + LINEAR_FIXED + i * LINEAR_ENTRY;
        uint32_t off = le32(e), dlen = le32(e + 4), slen = le32(e + 8);

        if (off == 0)
            continue;
        if (off < hdrsize || dlen > slen || off > len || dlen > len - off)
            return fail(error, SWTPM_STATE_ERROR_FORMAT,
                        "linear file: the %s section (offset %" G_GUINT32_FORMAT ", %"
                        G_GUINT32_FORMAT " bytes of %" G_GUINT32_FORMAT ") does not lie "
                        "inside the %zu-byte file after its header",
                        state_names[i], off, dlen, slen, len);
        entries[i].present = true;
        entries[i].offset = off;
        entries[i].length = dlen;
    }
    return true;
}
