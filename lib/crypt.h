/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * crypt.h — encryption at rest (docs/ENCRYPTION.md, docs/FORMAT.md).
 *
 * Three things, all with OpenSSL's libcrypto:
 * - key material in locked, cleansed memory (nvt_secbuf);
 * - the encryption parameters an encrypted image keeps in each superblock
 *   slot (bytes 128..255): cipher, key derivation and its parameters,
 *   salt, key-check value, with their own CRC32C;
 * - sealing and opening one record's value with AES-256-GCM, the
 *   associated data binding the image's UUID, the blob's name, the
 *   record's generation and the value's length.
 *
 * The master key is the 32 raw bytes of a key file, or scrypt of a
 * passphrase.  Two keys are derived from it with HMAC-SHA-256 over
 * distinct labels and the image's salt: the data key (AES-256-GCM) and
 * the key-check value stored in the superblock, so a wrong key is told
 * from a damaged value without the key ever being stored.
 */
#ifndef NVT_CRYPT_H
#define NVT_CRYPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- locked, cleansed memory -------------------------------------------- */

typedef struct nvt_secbuf {
    uint8_t *data;      /* mlock()ed, excluded from core dumps */
    size_t len;         /* bytes in use */
    size_t cap;         /* bytes allocated */
} nvt_secbuf;

/* A buffer of @cap bytes (len 0).  Never fails for lack of mlock: an
 * unlocked buffer is still cleansed on free (debug message only). */
nvt_secbuf *nvt_secbuf_new(size_t cap);
/* OPENSSL_cleanse, munlock, unmap.  NULL is accepted. */
void nvt_secbuf_free(nvt_secbuf *b);
/* Read all of @fd (at most cap bytes; more is -EFBIG) into @b. */
int nvt_secbuf_read_fd(nvt_secbuf *b, int fd, const char *what);

/* ---- parameters (superblock bytes 128..255) --------------------------- */

/* Key slot 0's parameters at slot byte 128, key slot 1's at 256 (zero
 * when unused).  A re-key seals every value under the other key slot. */
#define NVT_CRYPT_AREA_OFFSET 128u
#define NVT_CRYPT_AREA_SIZE 128u
#define NVT_CRYPT_KEY_SLOTS 2
#define NVT_CRYPT_KEY_SIZE 32u
#define NVT_CRYPT_NONCE_SIZE 12u
#define NVT_CRYPT_TAG_SIZE 16u
/* Stored bytes an encrypted value takes beyond its plaintext. */
#define NVT_CRYPT_OVERHEAD (NVT_CRYPT_NONCE_SIZE + NVT_CRYPT_TAG_SIZE)

enum { NVT_CIPHER_AES_256_GCM = 1 };
enum { NVT_KDF_NONE = 0, NVT_KDF_SCRYPT = 1 };

/* scrypt defaults: N = 2^16, r = 8, p = 1 (64 MiB, docs/ENCRYPTION.md). */
#define NVT_SCRYPT_LOG2N 16u
#define NVT_SCRYPT_R 8u
#define NVT_SCRYPT_P 1u
/* Largest accepted from an image: a forged superblock must not make us
 * allocate gigabytes (2^20 * 128 * 16 = 2 GiB... capped by maxmem). */
#define NVT_SCRYPT_LOG2N_MAX 20u
#define NVT_SCRYPT_MAXMEM (1100ull * 1024 * 1024)

typedef struct nvt_crypt_params {
    uint32_t cipher;
    uint32_t kdf;
    uint32_t log2n, r, p;      /* scrypt only */
    uint8_t salt[32];
    uint8_t kcv[32];           /* key-check value */
} nvt_crypt_params;

void nvt_crypt_params_encode(const nvt_crypt_params *p, uint8_t out[NVT_CRYPT_AREA_SIZE]);
/* -EBADMSG (damaged: magic, CRC) or -ENOTSUP (unknown cipher, KDF or
 * parameters out of range), with the reason in @why. */
int nvt_crypt_params_decode(const uint8_t in[NVT_CRYPT_AREA_SIZE], nvt_crypt_params *p,
                            char *why, size_t why_len);

/* ---- keys ------------------------------------------------------------- */

/* What the caller gave: 32 raw bytes (or 64 hex digits), or a passphrase. */
typedef enum nvt_key_kind { NVT_KEY_RAW = 1, NVT_KEY_PASSPHRASE = 2 } nvt_key_kind;

/* Turn key-file contents into 32 raw bytes in place (64 hex digits, with
 * an optional trailing newline, are decoded).  -EINVAL otherwise. */
int nvt_key_normalize_raw(nvt_secbuf *key, const char *what);

typedef struct nvt_crypt nvt_crypt;

/* New parameters for an image encrypted with @kind: random salt, the
 * default KDF for that kind, and the key-check value of @secret. */
int nvt_crypt_params_new(nvt_key_kind kind, const nvt_secbuf *secret, nvt_crypt_params *p);

/* A context for an image with the key slots' parameters @p (NULL: slot
 * unused; at least one is set) and @uuid; without a key until
 * nvt_crypt_set_key(). */
nvt_crypt *nvt_crypt_new(const nvt_crypt_params *p[NVT_CRYPT_KEY_SLOTS],
                         const uint8_t uuid[16]);
void nvt_crypt_free(nvt_crypt *c);
bool nvt_crypt_has_key(const nvt_crypt *c);
/* Derive the key and find the key slot it opens: values are then sealed
 * under that slot.  Errors: -EKEYREJECTED the key matches no slot's
 * key-check value; -EINVAL a key of the wrong kind (a key file for a
 * passphrase image or the reverse). */
int nvt_crypt_set_key(nvt_crypt *c, nvt_key_kind kind, const nvt_secbuf *secret);
/* The key slot new values are sealed under (valid with a key). */
int nvt_crypt_seal_slot(const nvt_crypt *c);
bool nvt_crypt_slot_loaded(const nvt_crypt *c, int slot);
/* Re-key: install @p (new parameters, key-check value of @secret) in
 * @slot with its key, and seal under it from now on; the other slot's key
 * stays for opening.  nvt_crypt_drop_slot() forgets a slot. */
int nvt_crypt_add_slot(nvt_crypt *c, int slot, const nvt_crypt_params *p, nvt_key_kind kind,
                       const nvt_secbuf *secret);
void nvt_crypt_drop_slot(nvt_crypt *c, int slot);
/* Milliseconds the last key derivation took (for reports). */
double nvt_crypt_kdf_ms(const nvt_crypt *c);

/* Seal @len bytes of @plain for blob @name at @generation into @out
 * (len + NVT_CRYPT_OVERHEAD bytes: nonce, ciphertext, tag). */
int nvt_crypt_seal(nvt_crypt *c, const char *name, uint64_t generation, const void *plain,
                   size_t len, uint8_t *out);
/* Open @stored (@stored_len bytes, sealed under key slot @slot) into
 * @out (stored_len - overhead).  -EBADMSG if the tag does not match:
 * damaged, or moved from another blob, image or generation; -ENOKEY the
 * slot's key is not loaded. */
int nvt_crypt_open(nvt_crypt *c, int slot, const char *name, uint64_t generation,
                   const uint8_t *stored, size_t stored_len, uint8_t *out);

#endif /* NVT_CRYPT_H */
