/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* tdbguard.c — refuse tdb files that would make tdb misbehave (tdbguard.h). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "error.h"
#include "tdbguard.h"

/* tdb stores integers in the host's byte order; we only create and accept
 * little-endian files (a big-endian one would need tdb's conversion). */
static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

#define TDB_MAGIC 0x26011999u
#define TDB_FREE_MAGIC 0xd9fee666u
#define TDB_DEAD_MAGIC 0xfee1deadu

/* Follow every hash chain and the free list (chain -1, at offset 168):
 * each record must lie inside the file with sane lengths, carry the magic
 * its list expects, and no walk may take more steps than the file has
 * records (tdb's traversal only notices a record that points at itself,
 * so a longer cycle would hang it). */
static int walk_chains(nvt_backend *be, uint64_t base, uint64_t length, uint32_t hash_size,
                       uint64_t hash_end)
{
    uint64_t max_steps = length / NVT_TDB_RECORD_SIZE + 1, steps = 0;
    uint32_t nheads = hash_size + 1;
    uint8_t *heads = g_malloc(4ull * nheads);
    int r = nvt_be_pread(be, heads, 4ull * nheads, base + NVT_TDB_HEADER_SIZE);

    for (uint32_t h = 0; r == 0 && h < nheads; h++) {
        uint32_t off = le32(heads + 4ull * h);
        bool freelist = h == 0;
        while (off != 0) {
            uint8_t rec[NVT_TDB_RECORD_SIZE];
            if (off < hash_end || (uint64_t)off + NVT_TDB_RECORD_SIZE > length) {
                r = nvt_error(EBADMSG, "%s: tdb %s chain %u points outside the file (offset %u)",
                              be->name, freelist ? "free" : "hash", h, off);
                break;
            }
            if (++steps > max_steps) {
                r = nvt_error(EBADMSG, "%s: tdb %s chain %u loops", be->name,
                              freelist ? "free" : "hash", h);
                break;
            }
            r = nvt_be_pread(be, rec, sizeof rec, base + off);
            if (r < 0)
                break;
            /* struct tdb_record: next, rec_len, key_len, data_len, full_hash, magic */
            uint32_t next = le32(rec), rec_len = le32(rec + 4), key_len = le32(rec + 8);
            uint32_t data_len = le32(rec + 12), magic = le32(rec + 20);
            bool magic_ok = freelist ? magic == TDB_FREE_MAGIC
                                     : (magic == TDB_MAGIC || magic == TDB_DEAD_MAGIC);
            if (!magic_ok || (uint64_t)off + NVT_TDB_RECORD_SIZE + rec_len > length ||
                (!freelist && (uint64_t)key_len + data_len > rec_len)) {
                r = nvt_error(EBADMSG, "%s: tdb record at offset %u (%s chain %u) is damaged: "
                              "magic 0x%08x, length %u, key %u, data %u, file %llu bytes",
                              be->name, off, freelist ? "free" : "hash", h, magic, rec_len,
                              key_len, data_len, (unsigned long long)length);
                break;
            }
            off = next;
        }
    }
    g_free(heads);
    return r;
}

int nvt_tdbguard_check(nvt_backend *be, uint64_t base, uint64_t length, bool *needs_recovery)
{
    static const char magic[] = "TDB file\n";
    uint8_t hdr[NVT_TDB_HEADER_SIZE];
    int r;

    *needs_recovery = false;
    if (length < NVT_TDB_HEADER_SIZE)
        return nvt_error(EBADMSG, "%s: tdb file of %llu bytes is shorter than its header",
                         be->name, (unsigned long long)length);
    r = nvt_be_pread(be, hdr, sizeof hdr, base);
    if (r < 0)
        return r;
    if (memcmp(hdr, magic, sizeof magic - 1) != 0)
        return nvt_error(EBADMSG, "%s: tdb region has no tdb header magic", be->name);
    uint32_t version = le32(hdr + 32);
    if (version == GUINT32_SWAP_LE_BE(NVT_TDB_VERSION))
        return nvt_error(EBADMSG, "%s: tdb file is in foreign byte order", be->name);
    if (version != NVT_TDB_VERSION)
        return nvt_error(EBADMSG, "%s: unknown tdb version 0x%08x", be->name, version);
    uint32_t hash_size = le32(hdr + 36);
    uint64_t hash_end = NVT_TDB_HEADER_SIZE + 4ull * ((uint64_t)hash_size + 1);
    if (hash_size == 0 || hash_size > NVT_TDB_HASH_MAX || hash_end > length)
        return nvt_error(EBADMSG, "%s: tdb hash size %u does not fit a file of %llu bytes",
                         be->name, hash_size, (unsigned long long)length);

    /* Features we never create change tdb's layout (a mutex area shifts
     * every offset): refuse them rather than let tdb interpret them. */
    uint32_t features = le32(hdr + 60), mutex_size = le32(hdr + 64);
    if (features != 0 || mutex_size != 0)
        return nvt_error(EBADMSG, "%s: tdb uses features 0x%x (mutex area %u bytes) that "
                         "nvramtdb never creates", be->name, features, mutex_size);

    uint32_t rec_off = le32(hdr + 44);
    if (rec_off == 0)
        return walk_chains(be, base, length, hash_size, hash_end);
    if (rec_off < hash_end || (uint64_t)rec_off + NVT_TDB_RECORD_SIZE > length)
        return nvt_error(EBADMSG, "%s: tdb recovery area offset %u outside the file (%llu bytes)",
                         be->name, rec_off, (unsigned long long)length);
    uint8_t rec[NVT_TDB_RECORD_SIZE];
    r = nvt_be_pread(be, rec, sizeof rec, base + rec_off);
    if (r < 0)
        return r;
    /* struct tdb_record: next, rec_len, key_len, data_len, full_hash, magic */
    uint32_t rec_len = le32(rec + 4), eof = le32(rec + 8), data_len = le32(rec + 12);
    uint32_t rmagic = le32(rec + 20);
    if (rmagic != NVT_TDB_RECOVERY_MAGIC)  /* nothing to replay */
        return walk_chains(be, base, length, hash_size, hash_end);

    uint64_t data_off = (uint64_t)rec_off + NVT_TDB_RECORD_SIZE;
    if (data_len > rec_len || data_off + rec_len > length)
        return nvt_error(EBADMSG, "%s: tdb recovery record at %u claims %u bytes (area %u) "
                         "beyond the file's %llu bytes", be->name, rec_off, data_len, rec_len,
                         (unsigned long long)length);
    /* The replay truncates the file to its old end: it must hold the hash
     * table and may not exceed the current file (tdb only grows files in
     * commits, and the recovery area sits beyond the old end). */
    if (eof < hash_end || eof > length)
        return nvt_error(EBADMSG, "%s: tdb recovery record restores an end of file (%u) "
                         "outside [%llu, %llu]", be->name, eof, (unsigned long long)hash_end,
                         (unsigned long long)length);
    uint8_t *data = g_malloc(data_len ? data_len : 1);
    r = nvt_be_pread(be, data, data_len, base + data_off);
    if (r < 0) {
        g_free(data);
        return r;
    }
    /* Walk the entries as tdb's replay does: {u32 offset, u32 length,
     * bytes}, while more than an entry header remains (the last 4 bytes
     * are a tailer). */
    uint64_t p = 0;
    while (p + 8 < data_len) {
        uint32_t ofs = le32(data + p), len = le32(data + p + 4);
        p += 8;
        if (len > data_len - p) {
            r = nvt_error(EBADMSG, "%s: tdb recovery entry of %u bytes overruns its record",
                          be->name, len);
            break;
        }
        if ((uint64_t)ofs + len > eof) {
            r = nvt_error(EBADMSG, "%s: tdb recovery entry [%u, +%u) beyond the restored end "
                          "of file %u", be->name, ofs, len, eof);
            break;
        }
        p += len;
    }
    g_free(data);
    /* A commit was interrupted: its chains may be half updated until tdb
     * replays the record; walk them after that (nvt_tdbguard_walk). */
    if (r == 0)
        *needs_recovery = true;
    return r;
}

int nvt_tdbguard_walk(nvt_backend *be, uint64_t base, uint64_t length)
{
    uint8_t hdr[NVT_TDB_HEADER_SIZE];
    if (length < NVT_TDB_HEADER_SIZE)
        return nvt_error(EBADMSG, "%s: tdb file shorter than its header", be->name);
    int r = nvt_be_pread(be, hdr, sizeof hdr, base);
    if (r < 0)
        return r;
    uint32_t hash_size = le32(hdr + 36);
    uint64_t hash_end = NVT_TDB_HEADER_SIZE + 4ull * ((uint64_t)hash_size + 1);
    if (hash_size == 0 || hash_size > NVT_TDB_HASH_MAX || hash_end > length)
        return nvt_error(EBADMSG, "%s: tdb hash size %u does not fit", be->name, hash_size);
    return walk_chains(be, base, length, hash_size, hash_end);
}
