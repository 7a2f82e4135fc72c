/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * swtpm-crypt.c — swtpm's state encryption and its key files (see
 * swtpm-crypt.h for what this module promises).
 *
 * The cryptography is libcrypto's EVP interface (AES-CBC without
 * OpenSSL's padding: swtpm pads itself, to a multiple of the key size,
 * with bytes holding the pad length), HMAC through EVP_DigestSign with an
 * HMAC key, PKCS5_PBKDF2_HMAC and RAND_bytes.  The container around it is
 * read and written by swtpm-blob.c.
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

#include "swtpm-crypt.h"

#define HMAC_SIZE 32u

static bool G_GNUC_PRINTF(3, 4) fail(GError **error, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_propagate_error(error, g_error_new_valist(SWTPM_STATE_ERROR, code, fmt, ap));
    va_end(ap);
    return false;
}

/* ---- encrypted state ---------------------------------------------------- */

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
static bool decrypt_tlvs(const swtpm_tlvs *t, uint16_t data_tag, uint16_t iv_tag, size_t keylen,
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
    if (!ct || !t->val[SWTPM_TAG_HMAC])
        return fail(error, SWTPM_STATE_ERROR_FORMAT,
                    "the encrypted state lacks its %s TLV", ct ? "HMAC" : "encrypted data");
    if (t->len[SWTPM_TAG_HMAC] != HMAC_SIZE)
        return fail(error, SWTPM_STATE_ERROR_FORMAT,
                    "the HMAC TLV has %zu bytes, HMAC-SHA256 has 32", t->len[SWTPM_TAG_HMAC]);
    if (ivp && ivlen != keylen)
        return fail(error, SWTPM_STATE_ERROR_FORMAT,
                    "the IV TLV has %zu bytes, %zu expected for this key size", ivlen, keylen);
    /* encrypt-then-MAC: the HMAC covers ciphertext and IV, checked first */
    if (!hmac_sha256(key, ct, ctlen, ivp, ivp ? ivlen : 0, mac, error))
        return false;
    if (CRYPTO_memcmp(mac, t->val[SWTPM_TAG_HMAC], HMAC_SIZE) != 0)
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
    swtpm_blob_view v;
    bool ok;

    *plain = NULL;
    ok = swtpm_blob_unwrap(p, len, &v, error);
    if (info)
        *info = v.info;
    if (!ok)
        return false;
    if (v.info.encrypted)
        return decrypt_tlvs(&v.tlvs, SWTPM_TAG_ENCRYPTED_DATA, SWTPM_TAG_IVEC_ENCRYPTED_DATA,
                            v.info.keylen, key, plain, error);
    *plain = g_byte_array_sized_new((guint)v.state_len);
    if (v.state_len)
        g_byte_array_append(*plain, v.state, (guint)v.state_len);
    return true;
}

GByteArray *swtpm_blob_encode(const uint8_t *data, size_t len, const swtpm_key *key,
                              GError **error)
{
    size_t pad, clen;
    uint8_t *buf, *ct, iv[32], mac[HMAC_SIZE];
    GByteArray *out;
    bool ok;

    if ((uint64_t)len + 3 * SWTPM_TLV_HDR_SIZE + SWTPM_BLOB_HDR_SIZE + 2 * 32 + HMAC_SIZE >
        UINT32_MAX) {
        fail(error, SWTPM_STATE_ERROR_FORMAT, "state of %zu bytes is too large", len);
        return NULL;
    }
    if (!key)
        return swtpm_blob_wrap(data, len, false);

    /* Sized for the plain form, so that the state is never left behind in
     * a buffer that g_byte_array_append() outgrew and freed. */
    out = g_byte_array_sized_new((guint)(SWTPM_BLOB_HDR_SIZE + SWTPM_TLV_HDR_SIZE + len));
    g_byte_array_set_size(out, SWTPM_BLOB_HDR_SIZE);
    pad = key->len - len % key->len;
    clen = len + pad;
    buf = g_malloc(clen);
    ct = g_malloc(clen);
    if (len)
        memcpy(buf, data, len);
    memset(buf + len, (int)pad, pad);
    ok = RAND_bytes(iv, (int)key->len) == 1;
    if (!ok)
        fail(error, SWTPM_STATE_ERROR_CRYPTO, "no random IV (RAND_bytes failed)");
    ok = ok && aes_cbc_run(true, key, iv, buf, clen, ct, error) &&
         hmac_sha256(key, ct, clen, iv, key->len, mac, error);
    if (ok) {
        swtpm_blob_put_tlv(out, SWTPM_TAG_ENCRYPTED_DATA, ct, clen);
        swtpm_blob_put_tlv(out, SWTPM_TAG_HMAC, mac, HMAC_SIZE);
        swtpm_blob_put_tlv(out, SWTPM_TAG_IVEC_ENCRYPTED_DATA, iv, key->len);
        swtpm_blob_put_header(out, SWTPM_BLOB_FLAG_ENCRYPTED |
                                   (key->len == 32 ? SWTPM_BLOB_FLAG_ENCRYPTED_256 : 0));
    }
    OPENSSL_cleanse(buf, clen);
    g_free(buf);
    g_free(ct);
    if (!ok) {
        swtpm_state_free(out);
        return NULL;
    }
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

