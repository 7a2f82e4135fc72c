/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * swtpm-state.h — swtpm's on-disk TPM state formats, for nvram-tool's
 * import-swtpm and export-swtpm.
 *
 * This module owns the byte formats only; it never touches an nvramtdb
 * image.  It promises:
 *  - state blobs (the files tpm2-00.permall, tpm2-00.volatilestate and
 *    tpm2-00.savestate of swtpm's dir backend, and the sections of its
 *    linear file backend): a 10-byte big-endian header {u8 version,
 *    u8 min_version, u16 hdrsize, u16 flags, u32 totlen} followed by TLVs
 *    {u16 tag, u32 len, value}.  swtpm_blob_decode() returns the plain
 *    libtpms state inside one, decrypting it when it is encrypted (AES-CBC
 *    with swtpm's padding, HMAC-SHA256 over ciphertext and IV checked
 *    first); swtpm_blob_encode() produces what swtpm 0.7 writes itself;
 *  - every parser checks every length against the bytes it has and
 *    refuses, with a message naming the problem (truncated header, totlen
 *    that does not match, unknown version, TLVs that do not add up, bad
 *    HMAC/wrong key, key of the wrong size), anything it cannot read
 *    completely; it never returns partial data;
 *  - keys as swtpm's --key takes them: a key file (hex: optional "0x", 32
 *    or 64 hex digits, optional trailing white space; binary: exactly 16
 *    or 32 bytes), or a passphrase file turned into a key by PBKDF2 (HMAC-
 *    SHA512, salt "swtpm", 1000 iterations: swtpm's default kdf) or by
 *    SHA-512 (kdf=sha512);
 *  - the linear file backend (file://PATH), read only: its little-endian
 *    header {u64 magic "swtpmlin", u8 version, u8 pad, u16 hdrsize} and
 *    the table of {u32 offset, u32 data_length, u32 section_length}
 *    entries (0 permall, 1 volatilestate, 2 savestate).
 * All cryptography is OpenSSL libcrypto's (EVP, PKCS5_PBKDF2_HMAC,
 * RAND_bytes).  Errors are GErrors in SWTPM_STATE_ERROR with a complete
 * English message.
 */
#ifndef NVRAM_SWTPM_STATE_H
#define NVRAM_SWTPM_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

#define SWTPM_STATE_ERROR (swtpm_state_error_quark())
GQuark swtpm_state_error_quark(void);

/** GError codes. */
typedef enum {
    SWTPM_STATE_ERROR_FORMAT,   /**< malformed or unsupported file */
    SWTPM_STATE_ERROR_KEY,      /**< key missing, unusable or wrong */
    SWTPM_STATE_ERROR_IO,       /**< a file could not be read */
    SWTPM_STATE_ERROR_CRYPTO,   /**< libcrypto failed */
} swtpm_state_error_code;

/** The swtpm state blob names, in the order of the linear backend. */
enum { SWTPM_PERMALL = 0, SWTPM_VOLATILESTATE = 1, SWTPM_SAVESTATE = 2, SWTPM_NSTATES = 3 };
/** "permall", "volatilestate", "savestate". */
const char *swtpm_state_name(unsigned which);

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

/** Facts about a decoded blob. */
typedef struct swtpm_blob_info {
    uint8_t version;
    uint16_t flags;
    bool encrypted;
    size_t keylen;              /* key size the blob needs (encrypted only) */
} swtpm_blob_info;

/** Key size (16 or 32) an encrypted blob needs, from its header flags;
 *  0 if @p is not a well-formed encrypted blob header. */
size_t swtpm_blob_keylen(const uint8_t *p, size_t len);

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
 *  plain (one DATA TLV) when @key is NULL, else encrypted with a fresh
 *  random IV (ENCRYPTED_DATA, HMAC, IVEC TLVs). */
GByteArray *swtpm_blob_encode(const uint8_t *data, size_t len, const swtpm_key *key,
                              GError **error);

/** One section of a linear file: absent when @present is false. */
typedef struct swtpm_linear_entry {
    bool present;
    size_t offset;
    size_t length;
} swtpm_linear_entry;

/** Parse the header of a linear backend file (@len bytes); the three
 *  sections of TPM 0 are returned in @entries, checked to lie inside the
 *  file after the header. */
bool swtpm_linear_parse(const uint8_t *p, size_t len, swtpm_linear_entry entries[SWTPM_NSTATES],
                        GError **error);

#endif /* NVRAM_SWTPM_STATE_H */
