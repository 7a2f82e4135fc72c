/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * image.c — superblocks: encoding, validation, atomic update.
 *
 * Encoding is explicit little-endian field by field (never a struct cast),
 * so the format does not depend on the compiler.  A slot is accepted only if
 * its magic, CRC32C, version, feature flags and geometry all check out
 * against the size of the backend; otherwise the other slot is used, and if
 * neither is valid the image is refused with the reasons.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "crc32c.h"
#include "crypt.h"
#include "error.h"
#include "image.h"

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
    return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

/* Field offsets inside an encoded slot (docs/FORMAT.md). */
enum {
    SB_MAGIC = 0, SB_VERSION = 8, SB_SIZE = 12, SB_SEQUENCE = 16, SB_UUID = 24,
    SB_IMAGE_SIZE = 40, SB_TDB_OFFSET = 48, SB_TDB_CAPACITY = 56,
    SB_TDB_LOGICAL = 64, SB_JOURNAL_OFFSET = 72, SB_JOURNAL_LENGTH = 80,
    SB_COMPAT = 88, SB_INCOMPAT = 92, SB_RO_COMPAT = 96, SB_CRC = 124,
};

void nvt_sb_encode(const nvt_superblock *sb, uint8_t out[NVT_SB_ENCODED_SIZE])
{
    memset(out, 0, NVT_SB_ENCODED_SIZE);
    memcpy(out + SB_MAGIC, NVT_IMAGE_MAGIC, 8);
    put_le32(out + SB_VERSION, sb->format_version);
    put_le32(out + SB_SIZE, NVT_SB_ENCODED_SIZE);
    put_le64(out + SB_SEQUENCE, sb->sequence);
    memcpy(out + SB_UUID, sb->uuid, 16);
    put_le64(out + SB_IMAGE_SIZE, sb->image_size);
    put_le64(out + SB_TDB_OFFSET, sb->tdb_offset);
    put_le64(out + SB_TDB_CAPACITY, sb->tdb_capacity);
    put_le64(out + SB_TDB_LOGICAL, sb->tdb_logical);
    put_le64(out + SB_JOURNAL_OFFSET, sb->journal_offset);
    put_le64(out + SB_JOURNAL_LENGTH, sb->journal_length);
    put_le32(out + SB_COMPAT, sb->compat_flags);
    put_le32(out + SB_INCOMPAT, sb->incompat_flags);
    put_le32(out + SB_RO_COMPAT, sb->ro_compat_flags);
    put_le32(out + SB_CRC, nvt_crc32c(0, out, SB_CRC));
}

#define BAD(err, ...) (snprintf(why, why_len, __VA_ARGS__), (err) > 0 ? -(err) : (err))

int nvt_sb_decode(const uint8_t in[NVT_SB_ENCODED_SIZE], uint64_t backend_size,
                  nvt_superblock *sb, char *why, size_t why_len)
{
    if (memcmp(in + SB_MAGIC, NVT_IMAGE_MAGIC, 8) != 0)
        return BAD(EBADMSG, "no nvramtdb magic");
    uint32_t crc = get_le32(in + SB_CRC), want = nvt_crc32c(0, in, SB_CRC);
    if (crc != want)
        return BAD(EBADMSG, "checksum mismatch (stored %08x, computed %08x)", crc, want);
    memset(sb, 0, sizeof *sb);
    sb->format_version = get_le32(in + SB_VERSION);
    if (sb->format_version != NVT_IMAGE_FORMAT_VERSION)
        return BAD(ENOTSUP, "format version %u is not supported (this library reads version %u)",
                   sb->format_version, NVT_IMAGE_FORMAT_VERSION);
    if (get_le32(in + SB_SIZE) != NVT_SB_ENCODED_SIZE)
        return BAD(EBADMSG, "superblock size %u, expected %u", get_le32(in + SB_SIZE),
                   NVT_SB_ENCODED_SIZE);
    sb->sequence = get_le64(in + SB_SEQUENCE);
    memcpy(sb->uuid, in + SB_UUID, 16);
    sb->image_size = get_le64(in + SB_IMAGE_SIZE);
    sb->tdb_offset = get_le64(in + SB_TDB_OFFSET);
    sb->tdb_capacity = get_le64(in + SB_TDB_CAPACITY);
    sb->tdb_logical = get_le64(in + SB_TDB_LOGICAL);
    sb->journal_offset = get_le64(in + SB_JOURNAL_OFFSET);
    sb->journal_length = get_le64(in + SB_JOURNAL_LENGTH);
    sb->compat_flags = get_le32(in + SB_COMPAT);
    sb->incompat_flags = get_le32(in + SB_INCOMPAT);
    sb->ro_compat_flags = get_le32(in + SB_RO_COMPAT);

    if (sb->incompat_flags & ~NVT_INCOMPAT_KNOWN)
        return BAD(ENOTSUP, "unknown incompatible feature flags 0x%x", sb->incompat_flags);
    if (sb->image_size % NVT_IMAGE_ALIGN || sb->image_size < NVT_IMAGE_META_SIZE)
        return BAD(EBADMSG, "invalid image size %llu", (unsigned long long)sb->image_size);
    if (sb->image_size > backend_size)
        return BAD(EBADMSG, "image truncated: superblock says %llu bytes, only %llu present",
                   (unsigned long long)sb->image_size, (unsigned long long)backend_size);
    if (sb->tdb_offset != NVT_IMAGE_META_SIZE)
        return BAD(EBADMSG, "invalid tdb region offset %llu", (unsigned long long)sb->tdb_offset);
    if (sb->tdb_capacity > sb->image_size - sb->tdb_offset || sb->tdb_capacity % NVT_IMAGE_ALIGN)
        return BAD(EBADMSG, "tdb region of %llu bytes does not fit the image of %llu bytes",
                   (unsigned long long)sb->tdb_capacity, (unsigned long long)sb->image_size);
    if (sb->tdb_logical > sb->tdb_capacity || sb->tdb_logical > UINT32_MAX)
        return BAD(EBADMSG, "tdb length %llu exceeds its region of %llu bytes",
                   (unsigned long long)sb->tdb_logical, (unsigned long long)sb->tdb_capacity);
    if (sb->journal_offset || sb->journal_length) {
        if (sb->journal_offset != sb->tdb_offset + sb->tdb_capacity ||
            sb->journal_length % (2 * NVT_IMAGE_ALIGN) || sb->journal_length < 4 * NVT_IMAGE_ALIGN ||
            sb->journal_length > sb->image_size - sb->journal_offset)
            return BAD(EBADMSG, "journal region [%llu, +%llu) does not follow the tdb region "
                       "inside the image", (unsigned long long)sb->journal_offset,
                       (unsigned long long)sb->journal_length);
    }
    return 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

/* A slot's superblock and the encryption parameters after it. */
#define SLOT_READ_SIZE (NVT_CRYPT_AREA_OFFSET + 2 * NVT_CRYPT_AREA_SIZE)

static int read_slots(nvt_backend *be, uint8_t slots[2][SLOT_READ_SIZE], uint64_t *size)
{
    int r = nvt_be_get_size(be, size);
    if (r < 0)
        return r;
    memset(slots, 0, 2 * SLOT_READ_SIZE);
    for (int i = 0; i < 2; i++) {
        uint64_t off = (uint64_t)i * NVT_SB_SLOT_SIZE;
        if (*size >= off + SLOT_READ_SIZE) {
            r = nvt_be_pread(be, slots[i], SLOT_READ_SIZE, off);
            if (r < 0)
                return r;
        }
    }
    return 0;
}

/* Could these bytes be part of a superblock (magic and CRC right), even
 * if its geometry does not fit?  Such a slot was written on purpose. */
static bool slot_was_written(const uint8_t *slot)
{
    return memcmp(slot + SB_MAGIC, NVT_IMAGE_MAGIC, 8) == 0 &&
           get_le32(slot + SB_CRC) == nvt_crc32c(0, slot, SB_CRC);
}

int nvt_image_probe(nvt_backend *be, nvt_probe *state)
{
    uint8_t slots[2][SLOT_READ_SIZE];
    uint64_t size;

    int r = read_slots(be, slots, &size);
    if (r < 0)
        return r;
    if (size == 0) {
        *state = NVT_PROBE_BLANK;  /* a new, empty file */
        return 0;
    }
    if (size < NVT_IMAGE_META_SIZE) {
        /* Too short to hold the superblocks: blank only if it holds
         * nothing at all, otherwise it is a truncated or foreign file. */
        uint8_t buf[NVT_IMAGE_META_SIZE];
        r = nvt_be_pread(be, buf, size, 0);
        if (r < 0)
            return r;
        *state = all_zero(buf, size) ? NVT_PROBE_BLANK : NVT_PROBE_FORMATTED;
        return 0;
    }
    if (!all_zero(slots[1], NVT_SB_ENCODED_SIZE)) {
        *state = NVT_PROBE_FORMATTED;
        return 0;
    }
    /* Slot B is written last at format time and never zero afterwards. */
    if (slot_was_written(slots[0])) {
        *state = NVT_PROBE_B_UNWRITTEN;
        return 0;
    }
    /* No superblock.  Formatting writes the tdb's header only once slot A
     * is durable, so a tdb header here means data whose superblocks were
     * wiped: formatting over it would destroy it. */
    static const char tdb_magic[] = "TDB file\n";
    uint8_t head[sizeof tdb_magic - 1] = { 0 };
    if (size >= NVT_IMAGE_META_SIZE + sizeof head) {
        r = nvt_be_pread(be, head, sizeof head, NVT_IMAGE_META_SIZE);
        if (r < 0)
            return r;
    }
    *state = memcmp(head, tdb_magic, sizeof head) == 0 ? NVT_PROBE_ORPHANED_DATA
                                                       : NVT_PROBE_BLANK;
    return 0;
}

int nvt_image_probe_blank(nvt_backend *be, bool *blank)
{
    nvt_probe state;
    int r = nvt_image_probe(be, &state);
    if (r == 0)
        *blank = state == NVT_PROBE_BLANK;
    return r;
}

uint64_t nvt_image_size_for(uint64_t tdb_bytes, uint64_t journal_bytes)
{
    uint64_t aligned = (tdb_bytes + NVT_IMAGE_ALIGN - 1) / NVT_IMAGE_ALIGN * NVT_IMAGE_ALIGN;
    return NVT_IMAGE_META_SIZE + aligned + journal_bytes;
}

static int write_slot(nvt_backend *be, int slot, const nvt_superblock *sb)
{
    /* The superblock's half of the slot only: the other half of slot B
     * is the ownership record's (owner.h). */
    uint8_t buf[NVT_SB_AREA_SIZE];
    memset(buf, 0, sizeof buf);
    nvt_sb_encode(sb, buf);
    if (sb->incompat_flags & NVT_INCOMPAT_ENCRYPTED)
        memcpy(buf + NVT_CRYPT_AREA_OFFSET, sb->crypt_area, sizeof sb->crypt_area);
    int r = nvt_be_pwrite(be, buf, sizeof buf, (uint64_t)slot * NVT_SB_SLOT_SIZE);
    if (r == 0)
        r = nvt_be_flush(be);
    return r;
}

static void new_uuid(uint8_t uuid[16])
{
    for (int i = 0; i < 16; i += 4) {
        guint32 v = g_random_int();
        memcpy(uuid + i, &v, 4);
    }
    uuid[6] = (uint8_t)((uuid[6] & 0x0f) | 0x40);  /* version 4 (random) */
    uuid[8] = (uint8_t)((uuid[8] & 0x3f) | 0x80);  /* RFC 4122 variant */
}

int nvt_image_format(nvt_backend *be, uint64_t image_size, const void *tdb, uint64_t len,
                     uint64_t journal_len, nvt_image **out)
{
    return nvt_image_format_crypt(be, image_size, tdb, len, journal_len, NULL, out);
}

int nvt_image_format_crypt(nvt_backend *be, uint64_t image_size, const void *tdb, uint64_t len,
                           uint64_t journal_len, const uint8_t *crypt_area, nvt_image **out)
{
    nvt_superblock sb = {
        .format_version = NVT_IMAGE_FORMAT_VERSION,
        .sequence = 1,
        .image_size = image_size,
        .tdb_offset = NVT_IMAGE_META_SIZE,
        .tdb_capacity = image_size - NVT_IMAGE_META_SIZE - journal_len,
        .tdb_logical = len,
        .journal_offset = journal_len ? image_size - journal_len : 0,
        .journal_length = journal_len,
    };
    int r;

    if (image_size < nvt_image_size_for(len, journal_len) || image_size % NVT_IMAGE_ALIGN)
        return nvt_error(EINVAL, "%s: image size %llu cannot hold a tdb of %llu bytes and a "
                         "journal of %llu", be->name, (unsigned long long)image_size,
                         (unsigned long long)len, (unsigned long long)journal_len);
    new_uuid(sb.uuid);
    if (crypt_area) {
        sb.incompat_flags |= NVT_INCOMPAT_ENCRYPTED;
        memcpy(sb.crypt_area[0], crypt_area, NVT_CRYPT_AREA_SIZE);
    }
    /* The image must read as blank until slot A is durable.  Slot B is
     * zero (that is what blank means) and is not touched before the end;
     * slot A is zeroed only if it holds leftovers, so that even a torn
     * zeroing (garbage in A, B still zero) reads as blank. */
    uint8_t zero[NVT_IMAGE_META_SIZE], slot_a[NVT_SB_SLOT_SIZE];
    memset(zero, 0, sizeof zero);
    uint64_t have = 0;
    r = nvt_be_get_size(be, &have);
    if (r == 0 && have >= NVT_SB_SLOT_SIZE) {
        r = nvt_be_pread(be, slot_a, sizeof slot_a, 0);
        if (r == 0 && !all_zero(slot_a, sizeof slot_a))
            r = nvt_be_pwrite(be, zero, NVT_SB_SLOT_SIZE, 0);
    }
    /* The tdb's first page (its header) goes last, after slot A. */
    uint64_t first = len < NVT_IMAGE_ALIGN ? len : NVT_IMAGE_ALIGN;
    if (r == 0 && len > first)
        r = nvt_be_pwrite(be, (const uint8_t *)tdb + first, len - first,
                          NVT_IMAGE_META_SIZE + first);
    /* Zero the whole journal ring: no stale record can start a run, and
     * the file system allocates its blocks now (preallocated extents are
     * "unwritten" until first written, and converting them in every early
     * commit's flush tripled its cost). */
    if (r == 0 && journal_len) {
        size_t chunk = 256 * 1024;
        uint8_t *zeros = g_malloc0(chunk);
        for (uint64_t done = 0; r == 0 && done < journal_len; done += chunk)
            r = nvt_be_pwrite(be, zeros, (size_t)MIN((uint64_t)chunk, journal_len - done),
                              sb.journal_offset + done);
        g_free(zeros);
    }
    if (r == 0)
        r = nvt_be_flush(be);
    if (r == 0)
        r = write_slot(be, 0, &sb);
    if (r == 0 && first)
        r = nvt_be_pwrite(be, tdb, first, NVT_IMAGE_META_SIZE);
    if (r == 0)
        r = nvt_be_flush(be);
    if (r == 0) {
        sb.sequence = 2;
        r = write_slot(be, 1, &sb);
    }
    if (r < 0)
        return nvt_error_prefix(-r, "%s: formatting failed", be->name);
    return nvt_image_open(be, out);
}

int nvt_image_open(nvt_backend *be, nvt_image **out)
{
    uint8_t slots[2][SLOT_READ_SIZE];
    nvt_superblock sb[2];
    uint64_t size;
    int err[2];

    int r = read_slots(be, slots, &size);
    if (r < 0)
        return r;
    nvt_image *img = g_new0(nvt_image, 1);
    img->be = be;
    for (int i = 0; i < 2; i++) {
        err[i] = nvt_sb_decode(slots[i], size, &sb[i], img->slot_problem[i],
                               sizeof img->slot_problem[i]);
        if (err[i] == 0 && (sb[i].incompat_flags & NVT_INCOMPAT_ENCRYPTED)) {
            /* The parameters belong to the slot: damaged ones make it
             * invalid, so that the other copy serves and check reports. */
            nvt_crypt_params p;
            memcpy(sb[i].crypt_area, slots[i] + NVT_CRYPT_AREA_OFFSET, sizeof sb[i].crypt_area);
            int used = 0;
            for (int k = 0; k < 2 && err[i] == 0; k++) {
                if (!nvt_image_crypt_slot_used(&sb[i], k))
                    continue;
                used++;
                err[i] = nvt_crypt_params_decode(sb[i].crypt_area[k], &p, img->slot_problem[i],
                                                 sizeof img->slot_problem[i]);
            }
            if (err[i] == 0 && !used)
                err[i] = (snprintf(img->slot_problem[i], sizeof img->slot_problem[i],
                                   "encryption parameters: missing (both key slots empty)"),
                          -EBADMSG);
        }
        img->slot_valid[i] = err[i] == 0;
    }
    if (!img->slot_valid[0] && !img->slot_valid[1]) {
        /* ENOTSUP (newer format, unknown feature) wins over corruption:
         * it is the more useful diagnosis. */
        r = err[0] == -ENOTSUP ? err[0] : err[1] == -ENOTSUP ? err[1] : -EBADMSG;
        if (size < NVT_IMAGE_META_SIZE)
            r = nvt_error(EBADMSG, "%s: truncated or not an nvramtdb image: %llu bytes is "
                          "shorter than the superblock area (%u bytes)", be->name,
                          (unsigned long long)size, NVT_IMAGE_META_SIZE);
        else if (all_zero(slots[0], 8) && all_zero(slots[1], 8) && err[0] != -ENOTSUP)
            r = nvt_error(EBADMSG, "%s: not an nvramtdb image (no superblock)", be->name);
        else
            r = nvt_error(-r, "%s: no valid superblock: copy A: %s; copy B: %s", be->name,
                          img->slot_problem[0], img->slot_problem[1]);
        g_free(img);
        return r;
    }
    if (img->slot_valid[0] && img->slot_valid[1])
        img->active_slot = sb[1].sequence > sb[0].sequence ? 1 : 0;
    else
        img->active_slot = img->slot_valid[0] ? 0 : 1;
    img->sb = sb[img->active_slot];
    *out = img;
    return 0;
}

bool nvt_image_crypt_slot_used(const nvt_superblock *sb, int i)
{
    return !all_zero(sb->crypt_area[i], NVT_CRYPT_AREA_SIZE);
}

/* Write @sb (the active one with a field changed) as the new superblock. */
static int update(nvt_image *img, nvt_superblock sb)
{
    sb.sequence++;
    /* Overwrite the older copy: the active one stays intact until the new
     * one is durable. */
    int slot = 1 - img->active_slot;
    int r = write_slot(img->be, slot, &sb);
    if (r < 0)
        return r;
    img->sb = sb;
    img->active_slot = slot;
    img->slot_valid[slot] = true;
    return 0;
}

int nvt_image_set_tdb_logical(nvt_image *img, uint64_t logical)
{
    if (logical > img->sb.tdb_capacity)
        return nvt_error(ENOSPC, "%s: tdb cannot grow to %llu bytes: its region holds %llu",
                         img->be->name, (unsigned long long)logical,
                         (unsigned long long)img->sb.tdb_capacity);
    nvt_superblock sb = img->sb;
    sb.tdb_logical = logical;
    return update(img, sb);
}

int nvt_image_set_compat_flags(nvt_image *img, uint32_t flags)
{
    nvt_superblock sb = img->sb;
    sb.compat_flags = flags;
    return update(img, sb);
}

int nvt_image_set_crypt(nvt_image *img, const uint8_t areas[2][128])
{
    nvt_superblock sb = img->sb;
    memcpy(sb.crypt_area, areas, sizeof sb.crypt_area);
    int r = update(img, sb);
    return r < 0 ? nvt_error_prefix(-r, "%s: writing the new key parameters", img->be->name) : 0;
}

int nvt_image_repair(nvt_image *img)
{
    if (img->slot_valid[1 - img->active_slot])
        return 0;
    /* An update writes the inactive copy: exactly the invalid one. */
    int r = nvt_image_set_tdb_logical(img, img->sb.tdb_logical);
    return r < 0 ? nvt_error_prefix(-r, "%s: rewriting the invalid superblock copy",
                                    img->be->name) : 0;
}

void nvt_image_free(nvt_image *img)
{
    g_free(img);
}

void nvt_uuid_format(const uint8_t u[16], char out[37])
{
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
             u[13], u[14], u[15]);
}
