/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * record.h — the value of a blob's tdb record: a 32-byte header, then the
 * payload.  The header carries the blob's reserved maximum, the payload's
 * length, a generation counter and two CRC32Cs (header, payload), so that a
 * damaged record is an error, never wrong bytes (docs/FORMAT.md).
 */
#ifndef NVT_RECORD_H
#define NVT_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NVT_RECORD_MAGIC 0x3142564eu   /* "NVB1" in file byte order */
#define NVT_RECORD_VERSION 1u
#define NVT_RECORD_HEADER_SIZE 32u
#define NVT_RECORD_PRESENT (1u << 0)   /* the blob has a value */
/* The payload is nonce | AES-256-GCM ciphertext | tag (crypt.h): it holds
 * length + NVT_RECORD_CRYPT_OVERHEAD bytes.  Only on encrypted images. */
#define NVT_RECORD_ENCRYPTED (1u << 1)
#define NVT_RECORD_CRYPT_OVERHEAD 28u
/* With ENCRYPTED: sealed under key slot 1 (else 0) of the image. */
#define NVT_RECORD_KEYSLOT1 (1u << 2)

typedef struct nvt_record_meta {
    uint32_t max_size;
    uint32_t length;
    uint64_t generation;
    uint32_t crc32c;       /* of the stored payload */
    bool present;
    bool encrypted;        /* payload sealed (only with present) */
    uint8_t keyslot;       /* with encrypted: the key slot that sealed it */
} nvt_record_meta;

/* Bytes of payload the record stores for @meta. */
static inline size_t nvt_record_stored_len(const nvt_record_meta *meta)
{
    if (!meta->present)
        return 0;
    return meta->length + (meta->encrypted ? NVT_RECORD_CRYPT_OVERHEAD : 0);
}

/* Encode header + stored payload into @out (NVT_RECORD_HEADER_SIZE +
 * nvt_record_stored_len()).  The payload CRC covers the stored bytes. */
void nvt_record_encode(const nvt_record_meta *meta, const void *payload, uint8_t *out);
/* Encode only the header into @out (NVT_RECORD_HEADER_SIZE bytes), with
 * meta->crc32c as the CRC32C of the stored payload the caller computed:
 * the payload then goes to tdb as a second buffer, never copied. */
void nvt_record_encode_header(const nvt_record_meta *meta, uint8_t *out);
/* Validate @data (@size bytes, one record value) and fill @meta; with
 * @check_payload also verify the payload checksum.  On failure returns
 * -EBADMSG with a message naming @name and the problem. */
int nvt_record_decode(const char *name, const uint8_t *data, size_t size, bool check_payload,
                      nvt_record_meta *meta);

#endif /* NVT_RECORD_H */
