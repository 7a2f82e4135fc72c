/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * swtpm-crypt.h — swtpm's state encryption and its keys, for nvram-tool's
 * import-swtpm and export-swtpm (the container itself is swtpm-blob.h).
 *
 * This module owns the cryptography only; it never touches an nvramtdb
 * image.  It promises:
 *  - swtpm_blob_decode() returns the plain libtpms state inside a state
 *    blob that swtpm_blob_unwrap() accepts, decrypting it when it is
 *    encrypted (AES-CBC with swtpm's padding, HMAC-SHA256 over ciphertext
 *    and IV checked first); swtpm_blob_encode() produces what swtpm 0.7
 *    writes itself.  Neither returns partial data;
 *  - keys as swtpm's --key takes them: a key file (hex: optional "0x", 32
 *    or 64 hex digits, optional trailing white space; binary: exactly 16
 *    or 32 bytes), or a passphrase file turned into a key by PBKDF2 (HMAC-
 *    SHA512, salt "swtpm", 1000 iterations: swtpm's default kdf) or by
 *    SHA-512 (kdf=sha512).
 * All cryptography is OpenSSL libcrypto's (EVP, PKCS5_PBKDF2_HMAC,
 * RAND_bytes).  Errors are GErrors in SWTPM_STATE_ERROR (bad HMAC or wrong
 * key: SWTPM_STATE_ERROR_KEY) with a complete English message.
 */
#ifndef NVRAM_SWTPM_CRYPT_H
#define NVRAM_SWTPM_CRYPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

#include "swtpm-blob.h"

/** A state encryption key (AES-128 or AES-256, also the HMAC key). */
typedef struct swtpm_key {
    uint8_t bytes[32];
    size_t len;                 /* 16 or 32 */
} swtpm_key;

typedef enum { SWTPM_KEY_HEX, SWTPM_KEY_BINARY } swtpm_key_format;
typedef enum { SWTPM_KDF_PBKDF2, SWTPM_KDF_SHA512 } swtpm_kdf;

/** Parse "hex" / "binary"; "aes-cbc", "aes-128-cbc" (16) / "aes-256-cbc"
 *  (32); "pbkdf2" / "sha512".  false for anything else. */
bool swtpm_key_format_parse(const char *text, swtpm_key_format *fmt);
bool swtpm_cipher_parse(const char *text, size_t *keylen);
bool swtpm_kdf_parse(const char *text, swtpm_kdf *kdf);

/**
 * Load a key file.  @keylen 0 accepts either size; 16 or 32 requires that
 * size (swtpm's mode=).  Errors: SWTPM_STATE_ERROR_IO, _KEY.
 */
bool swtpm_key_load(const char *path, swtpm_key_format fmt, size_t keylen, swtpm_key *key,
                    GError **error);

/** Derive a @keylen-byte key (16 or 32) from the whole contents of the
 *  passphrase file @path, as swtpm --key pwdfile=...,kdf=... does. */
bool swtpm_key_from_pwdfile(const char *path, swtpm_kdf kdf, size_t keylen, swtpm_key *key,
                            GError **error);

/**
 * Decode a state blob of @len bytes.  @key may be NULL; it is needed for an
 * encrypted blob (else SWTPM_STATE_ERROR_KEY).  Plain blobs are accepted
 * with or without a key.  Blobs with migration data (swtpm_ioctl --save)
 * are accepted unless encrypted with a migration key.  *plain receives the
 * libtpms state (possibly empty).  @info may be NULL.
 */
bool swtpm_blob_decode(const uint8_t *p, size_t len, const swtpm_key *key, GByteArray **plain,
                       swtpm_blob_info *info, GError **error);

/** Cleanse (OPENSSL_cleanse) and free a byte array that held TPM state or
 *  key material: what swtpm_blob_decode() and swtpm_blob_encode() return
 *  (an unencrypted encoding holds the state as it is).  NULL is fine. */
void swtpm_state_free(GByteArray *state);

/** Encode @len bytes of libtpms state as swtpm 0.7 writes a state file:
 *  plain (one DATA TLV, swtpm_blob_wrap()) when @key is NULL, else
 *  encrypted with a fresh random IV (ENCRYPTED_DATA, HMAC, IVEC TLVs). */
GByteArray *swtpm_blob_encode(const uint8_t *data, size_t len, const swtpm_key *key,
                              GError **error);

#endif /* NVRAM_SWTPM_CRYPT_H */
