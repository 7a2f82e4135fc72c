/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * journal.c — the commit journal ring (see journal.h and docs/FORMAT.md).
 *
 * Record layout (records follow each other from the ring's start, each
 * beginning on a 4096-byte boundary):
 *   0  magic "NVTJRNL2"        8  u32 version (1)   12 u32 page count n
 *   16 u64 epoch               24 u64 sequence (1 for the epoch's first)
 *   32 uuid[16]                48 u64 tdb length after the group
 *   56 u32 CRC32C of the page list and the page data
 *   60 u32 CRC32C of bytes 0..59
 *   64 u64 page numbers [n]
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
    uint64_t length;
    uint8_t uuid[16];
    uint64_t epoch;          /* of the records being appended */
    uint64_t next_seq;
    uint64_t head;           /* where the next record goes */
    uint64_t records;
    uint64_t restarts;
    /* the run found at open */
    uint64_t run_records;
    uint64_t run_bytes;
    uint64_t run_tdb_length;
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

static uint64_t data_start(uint32_t n)
{
    return align_page(NVT_JOURNAL_HEADER_SIZE + 8ull * n);
}

static uint64_t record_size(uint32_t n)
{
    return data_start(n) + (uint64_t)n * NVT_PAGE_SIZE;
}

uint64_t nvt_journal_length_for(uint32_t pages)
{
    return MAX(4 * record_size(pages), (uint64_t)NVT_JOURNAL_MIN_LENGTH);
}

uint32_t nvt_journal_capacity(uint64_t length)
{
    uint32_t n = (uint32_t)MIN(length / NVT_PAGE_SIZE, (uint64_t)UINT32_MAX);
    while (n && record_size(n) > length)
        n--;
    return n;
}

static uint64_t random_epoch(void)
{
    return (uint64_t)g_random_int() << 32 | g_random_int();
}

/* Read and validate the record at ring offset @at; on success return its
 * whole bytes (g_malloc) and fill n/epoch/seq/tdb_length. */
static uint8_t *read_record(nvt_journal *j, uint64_t at, uint32_t *n, uint64_t *epoch,
                            uint64_t *seq, uint64_t *tdb_len)
{
    uint8_t hdr[NVT_JOURNAL_HEADER_SIZE];

    if (at + sizeof hdr > j->length ||
        nvt_be_pread(j->be, hdr, sizeof hdr, j->offset + at) < 0)
        return NULL;
    if (memcmp(hdr, NVT_JOURNAL_MAGIC, 8) != 0 || le32(hdr + 8) != 1 ||
        le32(hdr + 60) != nvt_crc32c(0, hdr, 60) || memcmp(hdr + 32, j->uuid, 16) != 0)
        return NULL;
    *n = le32(hdr + 12);
    *epoch = le64(hdr + 16);
    *seq = le64(hdr + 24);
    *tdb_len = le64(hdr + 48);
    if (*n == 0 || *n > nvt_journal_capacity(j->length) || at + record_size(*n) > j->length)
        return NULL;
    uint64_t size = record_size(*n);
    uint8_t *buf = g_malloc(size);
    if (nvt_be_pread(j->be, buf, size, j->offset + at) < 0) {
        g_free(buf);
        return NULL;
    }
    uint32_t crc = nvt_crc32c(0, buf + NVT_JOURNAL_HEADER_SIZE, 8ull * *n);
    crc = nvt_crc32c(crc, buf + data_start(*n), (uint64_t)*n * NVT_PAGE_SIZE);
    if (crc != le32(hdr + 56)) {
        g_free(buf);
        return NULL;
    }
    return buf;
}

int nvt_journal_open(nvt_backend *be, uint64_t offset, uint64_t length,
                     const uint8_t uuid[16], nvt_journal **out)
{
    if (length < record_size(1) || length % NVT_PAGE_SIZE)
        return nvt_error(EBADMSG, "%s: journal region of %llu bytes is too small or unaligned",
                         be->name, (unsigned long long)length);
    nvt_journal *j = g_new0(nvt_journal, 1);
    j->be = be;
    j->offset = offset;
    j->length = length;
    memcpy(j->uuid, uuid, 16);

    /* The run: valid records from the start, one epoch, consecutive. */
    uint64_t at = 0, run_epoch = 0;
    for (;;) {
        uint32_t n;
        uint64_t epoch, seq, tdb_len;
        uint8_t *rec = read_record(j, at, &n, &epoch, &seq, &tdb_len);
        if (!rec)
            break;
        g_free(rec);
        if (j->run_records == 0 ? seq != 1 : (epoch != run_epoch || seq != j->run_records + 1))
            break;
        run_epoch = epoch;
        j->run_records++;
        j->run_tdb_length = tdb_len;
        at += record_size(n);
    }
    j->run_bytes = at;
    /* A crash can only tear the newest record: a later record of the same
     * epoch beyond the run's end means a record in the middle is damaged,
     * and replaying only the run would silently drop acknowledged commits. */
    for (uint64_t p = at + NVT_PAGE_SIZE; j->run_records && p + NVT_JOURNAL_HEADER_SIZE <= length;
         p += NVT_PAGE_SIZE) {
        uint8_t hdr[NVT_JOURNAL_HEADER_SIZE];
        if (nvt_be_pread(be, hdr, sizeof hdr, offset + p) < 0)
            break;
        if (memcmp(hdr, NVT_JOURNAL_MAGIC, 8) == 0 && le32(hdr + 60) == nvt_crc32c(0, hdr, 60) &&
            memcmp(hdr + 32, uuid, 16) == 0 && le64(hdr + 16) == run_epoch &&
            le64(hdr + 24) > j->run_records) {
            unsigned long long damaged = j->run_records + 1;
            nvt_journal_free(j);
            return nvt_error(EBADMSG, "%s: journal record %llu is damaged but record %llu "
                             "follows it: the journal is corrupt, committed writes would be "
                             "lost", be->name, damaged, (unsigned long long)le64(hdr + 24));
        }
    }
    nvt_journal_restart(j);
    *out = j;
    return 0;
}

void nvt_journal_free(nvt_journal *j)
{
    g_free(j);
}

bool nvt_journal_pending(const nvt_journal *j, uint64_t *tdb_length)
{
    if (j->run_records && tdb_length)
        *tdb_length = j->run_tdb_length;
    return j->run_records != 0;
}

int nvt_journal_replay(nvt_journal *j, nvt_journal_page_fn *fn, void *opaque)
{
    uint64_t at = 0;
    for (uint64_t k = 0; k < j->run_records; k++) {
        uint32_t n;
        uint64_t epoch, seq, tdb_len;
        uint8_t *rec = read_record(j, at, &n, &epoch, &seq, &tdb_len);
        if (!rec)
            return nvt_error(EIO, "%s: journal record %llu changed while being replayed",
                             j->be->name, (unsigned long long)k + 1);
        int r = 0;
        for (uint32_t i = 0; r == 0 && i < n; i++)
            r = fn(opaque, le64(rec + NVT_JOURNAL_HEADER_SIZE + 8ull * i),
                   rec + data_start(n) + (uint64_t)i * NVT_PAGE_SIZE);
        g_free(rec);
        if (r < 0)
            return r;
        at += record_size(n);
    }
    return 0;
}

int nvt_journal_append(nvt_journal *j, const uint64_t *pages, const uint8_t *const *data,
                       uint32_t n, uint64_t tdb_length)
{
    if (n == 0)
        return 0;
    uint64_t size = record_size(n);
    if (size > j->length)
        return nvt_error(E2BIG, "%s: a commit of %u pages exceeds the journal's %u",
                         j->be->name, n, nvt_journal_max_pages(j));
    if (!nvt_journal_fits(j, n))
        return nvt_error(ENOSPC, "%s: journal ring full (checkpoint first)", j->be->name);
    uint8_t *buf = g_malloc(size);
    memset(buf, 0, data_start(n));  /* header, page list, padding */
    memcpy(buf, NVT_JOURNAL_MAGIC, 8);
    put_le32(buf + 8, 1);
    put_le32(buf + 12, n);
    put_le64(buf + 16, j->epoch);
    put_le64(buf + 24, j->next_seq);
    memcpy(buf + 32, j->uuid, 16);
    put_le64(buf + 48, tdb_length);
    for (uint32_t i = 0; i < n; i++) {
        put_le64(buf + NVT_JOURNAL_HEADER_SIZE + 8ull * i, pages[i]);
        memcpy(buf + data_start(n) + (uint64_t)i * NVT_PAGE_SIZE, data[i], NVT_PAGE_SIZE);
    }
    uint32_t crc = nvt_crc32c(0, buf + NVT_JOURNAL_HEADER_SIZE, 8ull * n);
    put_le32(buf + 56, nvt_crc32c(crc, buf + data_start(n), (uint64_t)n * NVT_PAGE_SIZE));
    put_le32(buf + 60, nvt_crc32c(0, buf, 60));
    int r = nvt_be_pwrite(j->be, buf, size, j->offset + j->head);
    g_free(buf);
    if (r < 0)
        return r;
    j->head += size;
    j->next_seq++;
    j->records++;
    return 0;
}

bool nvt_journal_fits(const nvt_journal *j, uint32_t n)
{
    return j->head + record_size(n) <= j->length;
}

void nvt_journal_restart(nvt_journal *j)
{
    j->head = 0;
    j->next_seq = 1;
    j->epoch = random_epoch();
    j->restarts++;
}

int nvt_journal_clear(nvt_journal *j)
{
    uint8_t zero[NVT_JOURNAL_HEADER_SIZE] = { 0 };
    int r = nvt_be_pwrite(j->be, zero, sizeof zero, j->offset);
    if (r < 0)
        return r;
    j->run_records = 0;
    nvt_journal_restart(j);
    return 0;
}

uint32_t nvt_journal_max_pages(const nvt_journal *j)
{
    return nvt_journal_capacity(j->length);
}

uint64_t nvt_journal_records(const nvt_journal *j)
{
    return j->records;
}

uint64_t nvt_journal_restarts(const nvt_journal *j)
{
    return j->restarts;
}
