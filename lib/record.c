/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* record.c — encode and validate blob records (record.h). */
#include "config.h"

#include <string.h>

#include "crc32c.h"
#include "error.h"
#include "record.h"

static void put_le16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put_le32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put_le64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

/* Header fields: magic 0, version 4, flags 5, header size 6, max 8,
 * length 12, generation 16, payload crc 24, header crc 28. */
void nvt_record_encode_header(const nvt_record_meta *meta, uint8_t *out)
{
    uint32_t len = meta->present ? meta->length : 0;
    put_le32(out, NVT_RECORD_MAGIC);
    out[4] = NVT_RECORD_VERSION;
    out[5] = (uint8_t)((meta->present ? NVT_RECORD_PRESENT : 0) |
                       (meta->present && meta->encrypted ? NVT_RECORD_ENCRYPTED : 0) |
                       (meta->present && meta->encrypted && meta->keyslot ? NVT_RECORD_KEYSLOT1
                                                                          : 0));
    put_le16(out + 6, NVT_RECORD_HEADER_SIZE);
    put_le32(out + 8, meta->max_size);
    put_le32(out + 12, len);
    put_le64(out + 16, meta->generation);
    put_le32(out + 24, meta->crc32c);
    put_le32(out + 28, nvt_crc32c(0, out, 28));
}

void nvt_record_encode(const nvt_record_meta *meta, const void *payload, uint8_t *out)
{
    nvt_record_meta m = *meta;
    size_t stored = nvt_record_stored_len(meta);
    if (stored)
        memcpy(out + NVT_RECORD_HEADER_SIZE, payload, stored);
    m.crc32c = nvt_crc32c(0, out + NVT_RECORD_HEADER_SIZE, stored);
    nvt_record_encode_header(&m, out);
}

int nvt_record_decode(const char *name, const uint8_t *data, size_t size, bool check_payload,
                      nvt_record_meta *meta)
{
    if (size < NVT_RECORD_HEADER_SIZE)
        return nvt_error(EBADMSG, "blob %s: record of %zu bytes is shorter than its header",
                         name, size);
    if (le32(data) != NVT_RECORD_MAGIC)
        return nvt_error(EBADMSG, "blob %s: record header has a bad magic", name);
    uint32_t hcrc = le32(data + 28), want = nvt_crc32c(0, data, 28);
    if (hcrc != want)
        return nvt_error(EBADMSG, "blob %s: record header checksum mismatch (stored %08x, "
                         "computed %08x)", name, hcrc, want);
    if (data[4] != NVT_RECORD_VERSION)
        return nvt_error(EBADMSG, "blob %s: unknown record version %u", name, data[4]);
    if (le16(data + 6) != NVT_RECORD_HEADER_SIZE ||
        (data[5] & ~(NVT_RECORD_PRESENT | NVT_RECORD_ENCRYPTED | NVT_RECORD_KEYSLOT1)) ||
        ((data[5] & NVT_RECORD_ENCRYPTED) && !(data[5] & NVT_RECORD_PRESENT)) ||
        ((data[5] & NVT_RECORD_KEYSLOT1) && !(data[5] & NVT_RECORD_ENCRYPTED)))
        return nvt_error(EBADMSG, "blob %s: unknown record header layout", name);
    meta->present = data[5] & NVT_RECORD_PRESENT;
    meta->encrypted = data[5] & NVT_RECORD_ENCRYPTED;
    meta->keyslot = (data[5] & NVT_RECORD_KEYSLOT1) ? 1 : 0;
    meta->max_size = le32(data + 8);
    meta->length = le32(data + 12);
    meta->generation = le64(data + 16);
    meta->crc32c = le32(data + 24);
    if (meta->length > meta->max_size || (!meta->present && meta->length))
        return nvt_error(EBADMSG, "blob %s: length %u exceeds its maximum %u", name,
                         meta->length, meta->max_size);
    size_t stored = nvt_record_stored_len(meta);
    if (size != NVT_RECORD_HEADER_SIZE + stored)
        return nvt_error(EBADMSG, "blob %s: record holds %zu payload bytes, header says %zu",
                         name, size - NVT_RECORD_HEADER_SIZE, stored);
    if (check_payload) {
        uint32_t crc = nvt_crc32c(0, data + NVT_RECORD_HEADER_SIZE, stored);
        if (crc != meta->crc32c)
            return nvt_error(EBADMSG, "blob %s: checksum mismatch (stored %08x, computed %08x): "
                             "the value is corrupt", name, meta->crc32c, crc);
    }
    return 0;
}
