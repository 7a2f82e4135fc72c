/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * fuzz-swtpm-blob-key.c — swtpm's state blob container decoded with a key
 * (AES-CBC encrypted state, HMAC-SHA256 over ciphertext and IV).
 * Input: control byte, then the blob.  Control bits: FZ_KEEP_CHECKSUMS
 * (leave totlen and the HMAC alone), KEY_256 (use the 32-byte key, else
 * the 16-byte one), ENCRYPT (treat the ENCRYPTED_DATA TLV as plaintext
 * and encrypt it in place first, so that decryption yields the fuzzer's
 * bytes and the padding check is reached).  Unless FZ_KEEP_CHECKSUMS, the
 * harness sets totlen and recomputes the HMAC TLV, so that the fuzzer
 * gets past the HMAC check to the decryption and padding logic.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <openssl/evp.h>

#include "fuzz-util.h"
#include "swtpm-crypt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define KEY_256 (1u << 2)
#define ENCRYPT (1u << 3)

enum { TAG_ENCRYPTED_DATA = 2, TAG_HMAC = 3, TAG_MIGRATION_DATA = 4, TAG_IVEC = 6 };
#define FLAG_MIGRATION_DATA 0x04u

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The value of the first TLV @tag in @p/@len (NULL if none or malformed). */
static uint8_t *tlv(uint8_t *p, size_t len, uint16_t tag, size_t *vlen)
{
    for (size_t off = 0; len - off >= 6;) {
        uint16_t t = (uint16_t)(p[off] << 8 | p[off + 1]);
        uint32_t l = be32(p + off + 2);
        if (l > len - off - 6)
            return NULL;
        if (t == tag) {
            *vlen = l;
            return p + off + 6;
        }
        off += 6 + l;
    }
    return NULL;
}

static void fix_blob(uint8_t *b, size_t n, const swtpm_key *key, bool encrypt)
{
    b[6] = (uint8_t)(n >> 24);
    b[7] = (uint8_t)(n >> 16);
    b[8] = (uint8_t)(n >> 8);
    b[9] = (uint8_t)n;
    uint8_t *p = b + 10;
    size_t len = n - 10, ctlen = 0, ivlen = 0, maclen = 0;
    if ((b[4] << 8 | b[5]) & FLAG_MIGRATION_DATA) {
        p = tlv(p, len, TAG_MIGRATION_DATA, &len);
        if (!p)
            return;
    }
    uint8_t *ct = tlv(p, len, TAG_ENCRYPTED_DATA, &ctlen), *iv = tlv(p, len, TAG_IVEC, &ivlen);
    uint8_t *mac = tlv(p, len, TAG_HMAC, &maclen);
    if (!ct)
        return;
    if (encrypt && ctlen && ctlen % 16 == 0 && ctlen <= INT32_MAX) {
        uint8_t ivb[16] = { 0 };
        if (iv)
            memcpy(ivb, iv, MIN(ivlen, sizeof ivb));
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        int n1 = 0, n2 = 0;
        uint8_t *out = g_malloc(ctlen);
        if (EVP_CipherInit_ex(c, key->len == 32 ? EVP_aes_256_cbc() : EVP_aes_128_cbc(), NULL,
                              key->bytes, ivb, 1) == 1 &&
            EVP_CIPHER_CTX_set_padding(c, 0) == 1 &&
            EVP_CipherUpdate(c, out, &n1, ct, (int)ctlen) == 1 &&
            EVP_CipherFinal_ex(c, out + n1, &n2) == 1)
            memcpy(ct, out, ctlen);
        g_free(out);
        EVP_CIPHER_CTX_free(c);
    }
    if (mac && maclen == 32) {
        EVP_PKEY *pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_HMAC, NULL, key->bytes, key->len);
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        size_t outlen = 32;
        uint8_t m[32];
        if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pk) == 1 &&
            EVP_DigestSignUpdate(md, ct, ctlen) == 1 &&
            (!iv || EVP_DigestSignUpdate(md, iv, ivlen) == 1) &&
            EVP_DigestSignFinal(md, m, &outlen) == 1)
            memcpy(mac, m, 32);
        EVP_MD_CTX_free(md);
        EVP_PKEY_free(pk);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t ctl;
    size_t n;
    uint8_t *blob = fz_body(data, size, &ctl, &n);
    if (!blob)
        return 0;
    swtpm_key key = { .len = ctl & KEY_256 ? 32 : 16 };
    for (size_t i = 0; i < sizeof key.bytes; i++)
        key.bytes[i] = (uint8_t)(0xa0 + i);
    if (!(ctl & FZ_KEEP_CHECKSUMS) && n >= 10)
        fix_blob(blob, n, &key, ctl & ENCRYPT);

    GByteArray *plain = NULL;
    GError *err = NULL;
    swtpm_blob_info info;
    if (swtpm_blob_decode(blob, n, &key, &plain, &info, &err)) {
        if (!plain || plain->len > n)
            abort();
        g_byte_array_unref(plain);
    } else {
        if (!err || !err->message[0] || plain)
            abort();
        g_error_free(err);
    }
    g_free(blob);
    return 0;
}
