/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * journal.c — the commit journal (see journal.h and docs/FORMAT.md).
 *
 * Record layout, at the start of a half:
 *   0  magic "NVTJRNL1"        8
 *   8  u32 version (1)         12  u32 page count n
 *   16 u64 sequence            24  uuid[16]
 *   40 u64 tdb length after the group
 *   48 u32 CRC32C of the page list and page data
 *   52 u32 CRC32C of bytes 0..51
 *   56 u64 page numbers [n]
 *   then, from the next 4096-byte boundary, n pages of 4096 bytes.
 */
#include "config.h"

#include <string.h>

#include <glib.h>

#include "crc32c.h"
#include "error.h"
#include "journal.h"

struct nvt_journal {
    nvt_backend *be;
    uint64_t offset;
    uint64_t half;          /* bytes per half */
    uint8_t uuid[16];
    uint64_t next_seq;      /* sequence of the next record */
    uint64_t records;       /* appended since open */
    bool pending;           /* a valid record was found at open */
    int pending_half;
    uint32_t pending_pages;
    uint64_t pending_tdb_length;
};

static void put_le32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put_le64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

static uint64_t align_page(uint64_t n)
{
    return (n + NVT_PAGE_SIZE - 1) / NVT_PAGE_SIZE * NVT_PAGE_SIZE;
}

/* Where a record of @n pages starts its page data, relative to its half. */
static uint64_t data_start(uint32_t n)
{
    return align_page(NVT_JOURNAL_HEADER_SIZE + 8ull * n);
}

uint64_t nvt_journal_length_for(uint32_t pages)
{
    return 2 * (data_start(pages) + (uint64_t)pages * NVT_PAGE_SIZE);
}

uint32_t nvt_journal_capacity(uint64_t length)
{
    uint64_t half = length / 2;
    uint32_t n = (uint32_t)MIN(half / NVT_PAGE_SIZE, (uint64_t)UINT32_MAX);
    while (n && data_start(n) + (uint64_t)n * NVT_PAGE_SIZE > half)
        n--;
    return n;
}

/* Validate the record in half @h; on success fill its page count,
 * sequence and tdb length.  Reads the whole record to check its CRC. */
static bool record_valid(nvt_journal *j, int h, uint32_t *n, uint64_t *seq, uint64_t *tdb_len)
{
    uint8_t hdr[NVT_JOURNAL_HEADER_SIZE];
    uint64_t base = j->offset + (uint64_t)h * j->half;

    if (nvt_be_pread(j->be, hdr, sizeof hdr, base) < 0)
        return false;
    if (memcmp(hdr, NVT_JOURNAL_MAGIC, 8) != 0 || le32(hdr + 8) != 1 ||
        le32(hdr + 52) != nvt_crc32c(0, hdr, 52) || memcmp(hdr + 24, j->uuid, 16) != 0)
        return false;
    *n = le32(hdr + 12);
    *seq = le64(hdr + 16);
    *tdb_len = le64(hdr + 40);
    if (*n == 0 || *n > nvt_journal_max_pages(j))
        return false;
    /* The payload CRC covers the page list and the pages. */
    uint64_t list_len = 8ull * *n;
    uint8_t *buf = g_malloc(data_start(*n) + (uint64_t)*n * NVT_PAGE_SIZE);
    bool ok = nvt_be_pread(j->be, buf, data_start(*n) + (uint64_t)*n * NVT_PAGE_SIZE, base) == 0;
    if (ok) {
        uint32_t crc = nvt_crc32c(0, buf + NVT_JOURNAL_HEADER_SIZE, list_len);
        crc = nvt_crc32c(crc, buf + data_start(*n), (uint64_t)*n * NVT_PAGE_SIZE);
        ok = crc == le32(hdr + 48);
    }
    g_free(buf);
    return ok;
}

int nvt_journal_open(nvt_backend *be, uint64_t offset, uint64_t length,
                     const uint8_t uuid[16], nvt_journal **out)
{
    if (length < nvt_journal_length_for(1) || length % (2 * NVT_PAGE_SIZE))
        return nvt_error(EBADMSG, "%s: journal region of %llu bytes is too small or unaligned",
                         be->name, (unsigned long long)length);
    nvt_journal *j = g_new0(nvt_journal, 1);
    j->be = be;
    j->offset = offset;
    j->half = length / 2;
    memcpy(j->uuid, uuid, 16);
    j->next_seq = 1;
    for (int h = 0; h < 2; h++) {
        uint32_t n;
        uint64_t seq, tdb_len;
        if (!record_valid(j, h, &n, &seq, &tdb_len))
            continue;
        if (!j->pending || seq >= j->next_seq) {
            j->pending = true;
            j->pending_half = h;
            j->pending_pages = n;
            j->pending_tdb_length = tdb_len;
            j->next_seq = seq + 1;
        }
    }
    *out = j;
    return 0;
}

void nvt_journal_free(nvt_journal *j)
{
    g_free(j);
}

bool nvt_journal_pending(const nvt_journal *j, uint64_t *tdb_length)
{
    if (j->pending && tdb_length)
        *tdb_length = j->pending_tdb_length;
    return j->pending;
}

int nvt_journal_replay(nvt_journal *j, nvt_journal_page_fn *fn, void *opaque)
{
    if (!j->pending)
        return 0;
    uint32_t n = j->pending_pages;
    uint64_t base = j->offset + (uint64_t)j->pending_half * j->half;
    uint8_t *buf = g_malloc(data_start(n) + (uint64_t)n * NVT_PAGE_SIZE);
    int r = nvt_be_pread(j->be, buf, data_start(n) + (uint64_t)n * NVT_PAGE_SIZE, base);
    for (uint32_t i = 0; r == 0 && i < n; i++)
        r = fn(opaque, le64(buf + NVT_JOURNAL_HEADER_SIZE + 8ull * i),
               buf + data_start(n) + (uint64_t)i * NVT_PAGE_SIZE);
    g_free(buf);
    return r;
}

int nvt_journal_append(nvt_journal *j, const uint64_t *pages, const uint8_t *const *data,
                       uint32_t n, uint64_t tdb_length)
{
    if (n == 0)
        return 0;
    if (n > nvt_journal_max_pages(j))
        return nvt_error(E2BIG, "%s: a commit of %u pages exceeds the journal's %u", j->be->name,
                         n, nvt_journal_max_pages(j));
    uint64_t size = data_start(n) + (uint64_t)n * NVT_PAGE_SIZE;
    uint8_t *buf = g_malloc0(size);
    memcpy(buf, NVT_JOURNAL_MAGIC, 8);
    put_le32(buf + 8, 1);
    put_le32(buf + 12, n);
    put_le64(buf + 16, j->next_seq);
    memcpy(buf + 24, j->uuid, 16);
    put_le64(buf + 40, tdb_length);
    for (uint32_t i = 0; i < n; i++) {
        put_le64(buf + NVT_JOURNAL_HEADER_SIZE + 8ull * i, pages[i]);
        memcpy(buf + data_start(n) + (uint64_t)i * NVT_PAGE_SIZE, data[i], NVT_PAGE_SIZE);
    }
    uint32_t crc = nvt_crc32c(0, buf + NVT_JOURNAL_HEADER_SIZE, 8ull * n);
    put_le32(buf + 48, nvt_crc32c(crc, buf + data_start(n), (uint64_t)n * NVT_PAGE_SIZE));
    put_le32(buf + 52, nvt_crc32c(0, buf, 52));
    int h = (int)(j->next_seq % 2);
    int r = nvt_be_pwrite(j->be, buf, size, j->offset + (uint64_t)h * j->half);
    g_free(buf);
    if (r < 0)
        return r;
    /* The sequence advances even if the caller's flush fails: the half
     * may hold a valid record now, and the next one must supersede it. */
    j->next_seq++;
    j->records++;
    return 0;
}

int nvt_journal_clear(nvt_journal *j)
{
    uint8_t zero[NVT_JOURNAL_HEADER_SIZE] = { 0 };
    for (int h = 0; h < 2; h++) {
        int r = nvt_be_pwrite(j->be, zero, sizeof zero, j->offset + (uint64_t)h * j->half);
        if (r < 0)
            return r;
    }
    j->pending = false;
    return 0;
}

uint32_t nvt_journal_max_pages(const nvt_journal *j)
{
    return nvt_journal_capacity(2 * j->half);
}

uint64_t nvt_journal_records(const nvt_journal *j)
{
    return j->records;
}
