/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* fuzz-util.c — checksum fix-ups shared by the harnesses (fuzz-util.h).
 * The layouts are those of docs/FORMAT.md, written down again here on
 * purpose: the harness must not trust the code it tests to find them. */
#include "config.h"

#include <string.h>

#include <glib.h>

#include "crc32c.h"
#include "fuzz-util.h"
#include "image.h"
#include "journal.h"
#include "record.h"

uint32_t fz_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint64_t fz_le64(const uint8_t *p)
{
    return (uint64_t)fz_le32(p) | (uint64_t)fz_le32(p + 4) << 32;
}

void fz_put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

uint8_t *fz_body(const uint8_t *data, size_t size, uint8_t *ctl, size_t *len)
{
    if (size < 1)
        return NULL;
    *ctl = data[0];
    *len = size - 1;
    return g_memdup2(data + 1, *len);
}

void fz_fix_superblock(uint8_t *slot)
{
    fz_put_le32(slot + 124, nvt_crc32c(0, slot, 124));
}

static uint64_t align_page(uint64_t n)
{
    return (n + NVT_PAGE_SIZE - 1) / NVT_PAGE_SIZE * NVT_PAGE_SIZE;
}

/* The body CRC of the record at @rec (@room bytes to the ring's end);
 * false if its entry table is not well formed or it does not fit. */
static bool journal_body_crc(const uint8_t *rec, uint64_t room, uint32_t *crc)
{
    uint32_t version = fz_le32(rec + 8), n = fz_le32(rec + 12);
    if (n == 0)
        return false;
    if (version == 1) {
        uint64_t start = align_page(NVT_JOURNAL_HEADER_SIZE + 8ull * n);
        if (start + (uint64_t)n * NVT_PAGE_SIZE > room)
            return false;
        *crc = nvt_crc32c(nvt_crc32c(0, rec + NVT_JOURNAL_HEADER_SIZE, 8ull * n), rec + start,
                          (uint64_t)n * NVT_PAGE_SIZE);
        return true;
    }
    uint64_t table = 16ull * n, data = 0;
    if (NVT_JOURNAL_HEADER_SIZE + table > room)
        return false;
    for (uint32_t i = 0; i < n; i++)
        data += fz_le32(rec + NVT_JOURNAL_HEADER_SIZE + 16ull * i + 12);
    if (NVT_JOURNAL_HEADER_SIZE + table + data > room)
        return false;
    *crc = nvt_crc32c(0, rec + NVT_JOURNAL_HEADER_SIZE, table + data);
    return true;
}

void fz_fix_journal(uint8_t *ring, size_t len, const uint8_t *uuid)
{
    for (size_t at = 0; at + NVT_JOURNAL_HEADER_SIZE <= len; at += NVT_PAGE_SIZE) {
        uint8_t *rec = ring + at;
        if (memcmp(rec, NVT_JOURNAL_MAGIC, 8) != 0)
            continue;
        if (uuid)
            memcpy(rec + 32, uuid, 16);
        uint32_t crc;
        if (journal_body_crc(rec, len - at, &crc))
            fz_put_le32(rec + 56, crc);
        fz_put_le32(rec + 60, nvt_crc32c(0, rec, 60));
    }
}

void fz_fix_records(uint8_t *buf, size_t len)
{
    for (size_t at = 0; at + NVT_RECORD_HEADER_SIZE <= len; at++) {
        uint8_t *rec = buf + at;
        if (fz_le32(rec) != NVT_RECORD_MAGIC)
            continue;
        uint64_t n = fz_le32(rec + 12);
        if ((rec[5] & NVT_RECORD_PRESENT) && (rec[5] & NVT_RECORD_ENCRYPTED))
            n += NVT_RECORD_CRYPT_OVERHEAD;   /* a sealed payload (FORMAT.md) */
        if (n <= len - at - NVT_RECORD_HEADER_SIZE)
            fz_put_le32(rec + 24, nvt_crc32c(0, rec + NVT_RECORD_HEADER_SIZE, n));
        fz_put_le32(rec + 28, nvt_crc32c(0, rec, 28));
    }
}

uint8_t *fz_tdb_file(const uint8_t *data, size_t size, size_t *len)
{
    if (size < 4)
        return NULL;
    size_t n = MIN((size_t)fz_le32(data), (size_t)FZ_TDB_MAX);
    uint8_t *file = g_malloc0(n ? n : 1);
    memcpy(file, data + 4, MIN(n, size - 4));
    *len = n;
    return file;
}
