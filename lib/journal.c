/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * journal.c — the commit journal ring (see journal.h and docs/FORMAT.md).
 *
 * Frame layout (frames follow each other from the ring's start, each
 * beginning on a 4096-byte boundary):
 *   0  magic "NVTJRNL2"        8  u32 version (2; 1 is still read)
 *   12 u32 entry count n       16 u64 epoch
 *   24 u64 sequence (1 for the epoch's first)
 *   32 uuid[16]                48 u64 tdb length after the group
 *   56 u32 CRC32C of everything from byte 64 to the end of the data
 *   60 u32 CRC32C of bytes 0..59
 * Version 2: 64 n entries {u64 page, u32 offset, u32 length}, then their
 *   bytes back to back; the frame is padded to a 4096-byte multiple.
 *   An entry changes bytes [offset, offset+length) of a tdb page, so a
 *   commit that changes a few bytes of a page logs a few bytes, not 4096.
 * Version 1: 64 u64 page numbers [n], then from the next 4096-byte
 *   boundary n whole pages.
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
    uint64_t epoch;          /* of the frames being appended */
    uint64_t next_seq;
    uint64_t head;           /* where the next frame goes */
    uint64_t frames;
    uint64_t restarts;
    /* the run found at open */
    uint64_t run_frames;
    uint64_t run_bytes;
    uint64_t run_tdb_length;
    /* Frame buffer, reused: page-aligned for O_DIRECT; the padding after
     * a frame's data is left as it is (no CRC covers it, nothing reads it). */
    uint8_t *buf;
    uint64_t buf_size;
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

#define ENTRY_SIZE 16u

/* Version 1: where the page data starts. */
static uint64_t v1_data_start(uint32_t n)
{
    return align_page(NVT_JOURNAL_HEADER_SIZE + 8ull * n);
}

/* The largest frame a group of @n pages can need (every page whole);
 * a version 1 frame of n pages is never larger. */
static uint64_t frame_size(uint32_t n)
{
    return align_page(NVT_JOURNAL_HEADER_SIZE + (uint64_t)ENTRY_SIZE * n) +
           (uint64_t)n * NVT_PAGE_SIZE;
}

uint64_t nvt_journal_length_for(uint32_t pages)
{
    return MAX(NVT_JOURNAL_FRAMES * frame_size(pages), (uint64_t)NVT_JOURNAL_MIN_LENGTH);
}

uint32_t nvt_journal_capacity(uint64_t length)
{
    uint32_t n = (uint32_t)MIN(length / NVT_PAGE_SIZE, (uint64_t)UINT32_MAX);
    while (n && frame_size(n) > length)
        n--;
    return n;
}

static uint64_t random_epoch(void)
{
    return (uint64_t)g_random_int() << 32 | g_random_int();
}

/* A validated frame read into memory. */
typedef struct frame {
    uint8_t *buf;           /* the whole frame (g_free) */
    uint64_t size;          /* bytes it occupies in the ring */
    uint32_t version, n;
    uint64_t epoch, seq, tdb_length;
} frame;

/* The entries of a frame, in order: page, byte range within it, bytes. */
typedef struct entry_cursor {
    const frame *fr;
    uint32_t next;
    const uint8_t *data;    /* version 2: where the next entry's bytes start */
} entry_cursor;

static void entries_begin(entry_cursor *c, const frame *fr)
{
    c->fr = fr;
    c->next = 0;
    c->data = fr->buf + NVT_JOURNAL_HEADER_SIZE + (uint64_t)ENTRY_SIZE * fr->n;
}

static bool entries_next(entry_cursor *c, uint64_t *page, uint32_t *offset, uint32_t *length,
                         const uint8_t **data)
{
    const frame *fr = c->fr;
    uint32_t i = c->next;
    if (i >= fr->n)
        return false;
    c->next++;
    const uint8_t *e = fr->buf + NVT_JOURNAL_HEADER_SIZE;
    if (fr->version == 1) {
        *page = le64(e + 8ull * i);
        *offset = 0;
        *length = NVT_PAGE_SIZE;
        *data = fr->buf + v1_data_start(fr->n) + (uint64_t)i * NVT_PAGE_SIZE;
        return true;
    }
    e += (uint64_t)ENTRY_SIZE * i;
    *page = le64(e);
    *offset = le32(e + 8);
    *length = le32(e + 12);
    *data = c->data;
    c->data += *length;
    return true;
}

/* Read and validate the frame at ring offset @at; false if there is no
 * valid frame there. */
static bool read_frame(nvt_journal *j, uint64_t at, frame *fr)
{
    uint8_t hdr[NVT_JOURNAL_HEADER_SIZE];

    memset(fr, 0, sizeof *fr);
    if (at + sizeof hdr > j->length ||
        nvt_be_pread(j->be, hdr, sizeof hdr, j->offset + at) < 0)
        return false;
    if (memcmp(hdr, NVT_JOURNAL_MAGIC, 8) != 0 || le32(hdr + 60) != nvt_crc32c(0, hdr, 60) ||
        memcmp(hdr + 32, j->uuid, 16) != 0)
        return false;
    fr->version = le32(hdr + 8);
    fr->n = le32(hdr + 12);
    fr->epoch = le64(hdr + 16);
    fr->seq = le64(hdr + 24);
    fr->tdb_length = le64(hdr + 48);
    uint32_t n = fr->n;
    if ((fr->version != 1 && fr->version != 2) || n == 0 ||
        (fr->version == 1 && n > nvt_journal_capacity(j->length)) ||
        (uint64_t)ENTRY_SIZE * n > j->length ||
        at + (fr->version == 1 ? v1_data_start(n) : NVT_JOURNAL_HEADER_SIZE +
              (uint64_t)ENTRY_SIZE * n) > j->length)
        return false;

    uint64_t body;  /* bytes after the header that the CRC covers */
    if (fr->version == 1) {
        fr->size = v1_data_start(n) + (uint64_t)n * NVT_PAGE_SIZE;
        body = fr->size - NVT_JOURNAL_HEADER_SIZE;
    } else {
        /* The entry table says how long the data is; it is checked by the
         * CRC only after reading, so bound every field first. */
        uint64_t table = (uint64_t)ENTRY_SIZE * n, data = 0;
        uint8_t *entries = g_malloc(table);
        bool ok = nvt_be_pread(j->be, entries, table, j->offset + at + sizeof hdr) == 0;
        for (uint32_t i = 0; ok && i < n; i++) {
            uint32_t off = le32(entries + ENTRY_SIZE * i + 8);
            uint32_t len = le32(entries + ENTRY_SIZE * i + 12);
            ok = len > 0 && off < NVT_PAGE_SIZE && len <= NVT_PAGE_SIZE - off;
            data += len;
        }
        g_free(entries);
        if (!ok)
            return false;
        body = table + data;
        fr->size = align_page(NVT_JOURNAL_HEADER_SIZE + body);
    }
    if (at + fr->size > j->length)
        return false;
    fr->buf = g_malloc(fr->size);
    if (nvt_be_pread(j->be, fr->buf, fr->size, j->offset + at) < 0 ||
        (fr->version == 1
             ? nvt_crc32c(nvt_crc32c(0, fr->buf + NVT_JOURNAL_HEADER_SIZE, 8ull * n),
                          fr->buf + v1_data_start(n), (uint64_t)n * NVT_PAGE_SIZE)
             : nvt_crc32c(0, fr->buf + NVT_JOURNAL_HEADER_SIZE, body)) != le32(hdr + 56)) {
        g_free(fr->buf);
        fr->buf = NULL;
        return false;
    }
    return true;
}

/* Start again at the ring's beginning (no I/O): only when its start
 * holds no valid frame. */
static void restart(nvt_journal *j)
{
    j->head = 0;
    j->next_seq = 1;
    j->epoch = random_epoch();
    j->restarts++;
}

int nvt_journal_open(nvt_backend *be, uint64_t offset, uint64_t length,
                     const uint8_t uuid[16], nvt_journal **out)
{
    if (length < frame_size(1) || length % NVT_PAGE_SIZE)
        return nvt_error(EBADMSG, "%s: journal region of %llu bytes is too small or unaligned",
                         be->name, (unsigned long long)length);
    nvt_journal *j = g_new0(nvt_journal, 1);
    j->be = be;
    j->offset = offset;
    j->length = length;
    memcpy(j->uuid, uuid, 16);

    /* The run: valid frames from the start, one epoch, consecutive. */
    uint64_t at = 0, run_epoch = 0;
    for (;;) {
        frame fr;
        if (!read_frame(j, at, &fr))
            break;
        g_free(fr.buf);
        if (j->run_frames == 0 ? fr.seq != 1
                                : (fr.epoch != run_epoch || fr.seq != j->run_frames + 1))
            break;
        run_epoch = fr.epoch;
        j->run_frames++;
        j->run_tdb_length = fr.tdb_length;
        at += fr.size;
    }
    j->run_bytes = at;
    /* A crash can only tear the newest frame: a later frame of the same
     * epoch beyond the run's end means a frame in the middle is damaged,
     * and replaying only the run would silently drop acknowledged commits. */
    for (uint64_t p = at + NVT_PAGE_SIZE; j->run_frames && p + NVT_JOURNAL_HEADER_SIZE <= length;
         p += NVT_PAGE_SIZE) {
        uint8_t hdr[NVT_JOURNAL_HEADER_SIZE];
        if (nvt_be_pread(be, hdr, sizeof hdr, offset + p) < 0)
            break;
        if (memcmp(hdr, NVT_JOURNAL_MAGIC, 8) == 0 && le32(hdr + 60) == nvt_crc32c(0, hdr, 60) &&
            memcmp(hdr + 32, uuid, 16) == 0 && le64(hdr + 16) == run_epoch &&
            le64(hdr + 24) > j->run_frames) {
            unsigned long long damaged = j->run_frames + 1;
            nvt_journal_free(j);
            return nvt_error(EBADMSG, "%s: journal frame %llu is damaged but frame %llu "
                             "follows it: the journal is corrupt, committed writes would be "
                             "lost", be->name, damaged, (unsigned long long)le64(hdr + 24));
        }
    }
    restart(j);
    *out = j;
    return 0;
}

void nvt_journal_free(nvt_journal *j)
{
    if (j)
        g_aligned_free(j->buf);
    g_free(j);
}

bool nvt_journal_pending(const nvt_journal *j, uint64_t *tdb_length)
{
    if (j->run_frames && tdb_length)
        *tdb_length = j->run_tdb_length;
    return j->run_frames != 0;
}

int nvt_journal_replay(nvt_journal *j, nvt_journal_page_fn *fn, void *opaque)
{
    uint64_t at = 0;
    for (uint64_t k = 0; k < j->run_frames; k++) {
        frame fr;
        if (!read_frame(j, at, &fr))
            return nvt_error(EIO, "%s: journal frame %llu changed while being replayed",
                             j->be->name, (unsigned long long)k + 1);
        int r = 0;
        entry_cursor c;
        uint64_t page;
        uint32_t offset, length;
        const uint8_t *data;
        entries_begin(&c, &fr);
        while (r == 0 && entries_next(&c, &page, &offset, &length, &data))
            r = fn(opaque, page, offset, data, length);
        g_free(fr.buf);
        if (r < 0)
            return r;
        at += fr.size;
    }
    return 0;
}

int nvt_journal_append_frame(nvt_journal *j, const nvt_journal_extent *e, uint32_t n,
                             uint64_t tdb_length)
{
    if (n == 0)
        return 0;
    uint64_t body = (uint64_t)ENTRY_SIZE * n;
    for (uint32_t i = 0; i < n; i++) {
        g_return_val_if_fail(e[i].length > 0 && e[i].offset < NVT_PAGE_SIZE &&
                             e[i].length <= NVT_PAGE_SIZE - e[i].offset, -EINVAL);
        body += e[i].length;
    }
    uint64_t size = align_page(NVT_JOURNAL_HEADER_SIZE + body);
    if (size > j->length)
        return nvt_error(E2BIG, "%s: a commit of %u changes (%llu bytes) exceeds the "
                         "journal's %llu bytes", j->be->name, n, (unsigned long long)size,
                         (unsigned long long)j->length);
    if (j->head + size > j->length)
        return nvt_error(ENOSPC, "%s: journal ring full (checkpoint first)", j->be->name);
    if (j->buf_size < size) {
        g_aligned_free(j->buf);
        j->buf = g_aligned_alloc0(1, size, NVT_PAGE_SIZE);
        j->buf_size = size;
    }
    uint8_t *buf = j->buf;
    memcpy(buf, NVT_JOURNAL_MAGIC, 8);
    put_le32(buf + 8, 2);
    put_le32(buf + 12, n);
    put_le64(buf + 16, j->epoch);
    put_le64(buf + 24, j->next_seq);
    memcpy(buf + 32, j->uuid, 16);
    put_le64(buf + 48, tdb_length);
    uint8_t *entry = buf + NVT_JOURNAL_HEADER_SIZE, *data = entry + (uint64_t)ENTRY_SIZE * n;
    for (uint32_t i = 0; i < n; i++, entry += ENTRY_SIZE) {
        put_le64(entry, e[i].page);
        put_le32(entry + 8, e[i].offset);
        put_le32(entry + 12, e[i].length);
        memcpy(data, e[i].data, e[i].length);
        data += e[i].length;
    }
    put_le32(buf + 56, nvt_crc32c(0, buf + NVT_JOURNAL_HEADER_SIZE, body));
    put_le32(buf + 60, nvt_crc32c(0, buf, 60));
    int r = nvt_be_pwrite_durable(j->be, buf, size, j->offset + j->head);
    if (r < 0)
        return r;
    j->head += size;
    j->next_seq++;
    j->frames++;
    return 0;
}

bool nvt_journal_fits(const nvt_journal *j, uint32_t n)
{
    return j->head + frame_size(n) <= j->length;
}


int nvt_journal_retire(nvt_journal *j)
{
    uint8_t zero[NVT_JOURNAL_HEADER_SIZE] = { 0 };
    int r = nvt_be_pwrite(j->be, zero, sizeof zero, j->offset);
    if (r < 0)
        return r;
    /* If the flush fails the caller latches the error and recovery scans
     * the ring afresh: restarting before it is harmless. */
    j->run_frames = 0;
    restart(j);
    return nvt_be_flush(j->be);
}

uint32_t nvt_journal_max_pages(const nvt_journal *j)
{
    return nvt_journal_capacity(j->length);
}

bool nvt_journal_empty(const nvt_journal *j)
{
    return j->head == 0;
}

uint64_t nvt_journal_frames(const nvt_journal *j)
{
    return j->frames;
}

uint64_t nvt_journal_restarts(const nvt_journal *j)
{
    return j->restarts;
}
