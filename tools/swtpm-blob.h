/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * swtpm-blob.h — swtpm's TPM state storage formats, without cryptography:
 * the state blob container and the linear file that holds three of them.
 * Shared by nvram-tool (import-swtpm, export-swtpm, with swtpm-crypt.h
 * for encrypted state) and nvram-tpmd (GET/SET_STATEBLOB of its control
 * channel, which never decrypts).
 *
 * Promises:
 *  - state blobs (the files tpm2-00.permall, tpm2-00.volatilestate and
 *    tpm2-00.savestate of swtpm's dir backend, the sections of its linear
 *    file, the payload of GET/SET_STATEBLOB): a 10-byte big-endian header
 *    {u8 version, u8 min_version, u16 hdrsize, u16 flags, u32 totlen}
 *    followed by TLVs {u16 tag, u32 len, value};
 *  - every parser reads only the @len bytes it is given, checks every
 *    length against them, and returns pointers into them (it copies and
 *    allocates nothing);
 *  - two readers with stated rules.  swtpm_blob_unwrap() is nvram-tool's:
 *    it refuses, with a message naming the problem, anything it cannot
 *    read completely (truncated header, totlen that does not match,
 *    unknown version or flags, TLVs that do not add up or repeat).
 *    swtpm_blob_unwrap_lenient() is nvram-tpmd's SET_STATEBLOB: it
 *    accepts what swtpm's own SET_STATEBLOB accepts, so that a state
 *    migrates from swtpm whatever its producer; the differences are
 *    listed at that function and nowhere else;
 *  - swtpm_blob_wrap() writes what swtpm writes: a state file (one DATA
 *    TLV) or a GET_STATEBLOB answer (DATA inside MIGRATION_DATA);
 *  - the linear file backend (file://PATH), read only: its little-endian
 *    header {u64 magic "swtpmlin", u8 version, u8 pad, u16 hdrsize} and the
 *    table of {u32 offset, u32 data_length, u32 section_length} entries
 *    (0 permall, 1 volatilestate, 2 savestate).
 * Errors are GErrors in SWTPM_STATE_ERROR with a complete English message.
 */
#ifndef NVRAM_SWTPM_BLOB_H
#define NVRAM_SWTPM_BLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

#define SWTPM_STATE_ERROR (swtpm_state_error_quark())
GQuark swtpm_state_error_quark(void);

/** GError codes (of this module and of swtpm-crypt.h). */
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

/* The container: header, flags and TLV tags (swtpm's swtpm_nvstore.h). */
#define SWTPM_BLOB_HDR_SIZE    10u
#define SWTPM_BLOB_VERSION     2u
#define SWTPM_TLV_HDR_SIZE     6u

#define SWTPM_BLOB_FLAG_ENCRYPTED           0x01u
#define SWTPM_BLOB_FLAG_MIGRATION_ENCRYPTED 0x02u
#define SWTPM_BLOB_FLAG_MIGRATION_DATA      0x04u
#define SWTPM_BLOB_FLAG_ENCRYPTED_256       0x08u
#define SWTPM_BLOB_FLAG_MIGRATION_256       0x10u
#define SWTPM_BLOB_FLAGS_KNOWN              0x1fu

enum {
    SWTPM_TAG_DATA = 1,
    SWTPM_TAG_ENCRYPTED_DATA = 2,
    SWTPM_TAG_HMAC = 3,
    SWTPM_TAG_MIGRATION_DATA = 4,
    SWTPM_TAG_ENCRYPTED_MIGRATION_DATA = 5,
    SWTPM_TAG_IVEC_ENCRYPTED_DATA = 6,
    SWTPM_TAG_IVEC_ENCRYPTED_MIGRATION_DATA = 7,
    SWTPM_TAG_MAX = 7,
};

/** The TLVs of one level of a blob, by tag (val NULL: absent). */
typedef struct swtpm_tlvs {
    const uint8_t *val[SWTPM_TAG_MAX + 1];
    size_t len[SWTPM_TAG_MAX + 1];
} swtpm_tlvs;

/** Facts about a decoded blob. */
typedef struct swtpm_blob_info {
    uint8_t version;
    uint16_t flags;
    bool encrypted;
    size_t keylen;              /* key size the blob needs (encrypted only) */
} swtpm_blob_info;

/** What swtpm_blob_unwrap() found. */
typedef struct swtpm_blob_view {
    swtpm_blob_info info;
    /* Not encrypted: the libtpms state (possibly empty), inside the blob. */
    const uint8_t *state;
    size_t state_len;
    /* Encrypted: the TLVs that hold the ciphertext, its HMAC and its IV
     * (inside MIGRATION_DATA when the header announces migration data). */
    swtpm_tlvs tlvs;
} swtpm_blob_view;

/** Key size (16 or 32) an encrypted blob needs, from its header flags;
 *  0 if @p is not a well-formed encrypted blob header. */
size_t swtpm_blob_keylen(const uint8_t *p, size_t len);

/**
 * nvram-tool's reader: check the blob @p/@len completely, except for what
 * only a key can check.  Blobs with migration data (swtpm_ioctl --save)
 * are accepted unless encrypted with a migration key
 * (SWTPM_STATE_ERROR_KEY).  An encrypted blob is returned as its TLVs for
 * swtpm-crypt.h to check and decrypt.
 */
bool swtpm_blob_unwrap(const uint8_t *p, size_t len, swtpm_blob_view *view, GError **error);

/** Why swtpm_blob_unwrap_lenient() refused a blob (nvram-tpmd answers
 *  each with the TPM result swtpm gives). */
typedef enum {
    SWTPM_BLOB_OK,
    SWTPM_BLOB_BAD_LENGTH,      /**< shorter than a header, or totlen wrong */
    SWTPM_BLOB_BAD_VERSION,     /**< min_version above the one known */
    SWTPM_BLOB_BAD_HDRSIZE,     /**< hdrsize is not 10 */
    SWTPM_BLOB_ENCRYPTED,       /**< encrypted (state or migration key) */
    SWTPM_BLOB_NO_DATA,         /**< no DATA TLV found */
} swtpm_blob_refusal;

/**
 * nvram-tpmd's reader (SET_STATEBLOB): the libtpms state of @p/@len,
 * pointed to inside @p by @state and @state_len, or why not.  It accepts
 * what swtpm's SET_STATEBLOB accepts, more than swtpm_blob_unwrap() does
 * (swtpm-blob.c lists the differences).
 */
swtpm_blob_refusal swtpm_blob_unwrap_lenient(const uint8_t *p, size_t len,
                                             const uint8_t **state, size_t *state_len);

/** Append a TLV {@tag, @len, @val} to @a. */
void swtpm_blob_put_tlv(GByteArray *a, uint16_t tag, const uint8_t *val, size_t len);

/** Fill in the header of the blob @a, whose first SWTPM_BLOB_HDR_SIZE
 *  bytes were reserved for it and whose TLVs follow: version 2, minimum
 *  version 1, @flags, totlen @a's length. */
void swtpm_blob_put_header(GByteArray *a, uint16_t flags);

/**
 * Wrap @len bytes of libtpms state (len + 22 must fit a u32): as swtpm
 * writes a state file (one DATA TLV), or with @migration as swtpm's
 * GET_STATEBLOB answers (a DATA TLV inside a MIGRATION_DATA TLV).  The
 * array is allocated at its final size, so that no copy of the state is
 * left in a buffer it outgrew.
 */
GByteArray *swtpm_blob_wrap(const uint8_t *state, size_t len, bool migration);

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

#endif /* NVRAM_SWTPM_BLOB_H */
