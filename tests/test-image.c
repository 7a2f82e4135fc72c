/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * test-image.c — the superblock contract of image.h, one behaviour per
 * test: a slot round-trips through encode/decode; decode refuses every
 * kind of bad slot (magic, CRC, version, feature flags, geometry) with the
 * right errno and a reason; a formatted image opens from its newest slot;
 * nvt_image_set_tdb_logical() alternates slots, is durable on return and
 * survives either slot being damaged; both slots bad is refused with both
 * reasons; and blank detection formats only images that hold nothing
 * (never formatted, or formatting interrupted before slot A was durable).
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "backend.h"
#include "crc32c.h"
#include "error.h"
#include "image.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------ */

#define MiB (1024u * 1024u)
#define CRC_OFFSET 124u      /* the slot's CRC32C field (docs/FORMAT.md) */
#define SIZE_OFFSET 12u      /* the slot's encoded-size field */

/* A valid superblock for a @image_size image whose tdb fills the region. */
static nvt_superblock sample_sb(uint64_t image_size)
{
    nvt_superblock sb = {
        .format_version = NVT_IMAGE_FORMAT_VERSION,
        .sequence = 42,
        .image_size = image_size,
        .tdb_offset = NVT_IMAGE_META_SIZE,
        .tdb_capacity = image_size - NVT_IMAGE_META_SIZE,
        .tdb_logical = 12345,
        .compat_flags = 0,
        .incompat_flags = 0,
        .ro_compat_flags = 0,
    };
    for (int i = 0; i < 16; i++)
        sb.uuid[i] = (uint8_t)(0xa0 + i);
    return sb;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Recompute a slot's CRC after editing it, so that decode looks further. */
static void reseal(uint8_t *slot)
{
    put_le32(slot + CRC_OFFSET, nvt_crc32c(0, slot, CRC_OFFSET));
}

/* Decode @sb (encoded) against @backend_size; expect @expect and a reason
 * mentioning @needle. */
static void expect_decode(const nvt_superblock *sb, uint64_t backend_size, int expect,
                          const char *needle)
{
    uint8_t slot[NVT_SB_ENCODED_SIZE];
    nvt_superblock out;
    char why[160] = "";
    nvt_sb_encode(sb, slot);
    int r = nvt_sb_decode(slot, backend_size, &out, why, sizeof why);
    g_assert_cmpint(r, ==, expect);
    g_assert_cmpstr(why, !=, "");
    if (!strstr(why, needle))
        g_error("decode reason '%s' does not mention '%s'", why, needle);
}

/* Fake tdb content: the image layer never interprets it. */
static uint8_t *fake_tdb(size_t len)
{
    uint8_t *tdb = g_malloc(len);
    tu_fill(tdb, len, 77);
    return tdb;
}

/* A memory backend holding a freshly formatted image of @size bytes with a
 * 12 KiB fake tdb; *img receives the opened image. */
static nvt_backend *formatted(uint64_t size, nvt_image **img)
{
    nvt_backend *be = nvt_mem_backend_new(NULL, 0);
    uint8_t *tdb = fake_tdb(12 * 1024);
    TU_OK(nvt_be_resize(be, size));
    TU_OK(nvt_image_format(be, size, tdb, 12 * 1024, 0, img));
    g_free(tdb);
    return be;
}

static void read_slot(nvt_backend *be, int slot, uint8_t out[NVT_SB_ENCODED_SIZE])
{
    TU_OK(nvt_be_pread(be, out, NVT_SB_ENCODED_SIZE, (uint64_t)slot * NVT_SB_SLOT_SIZE));
}

static void write_slot(nvt_backend *be, int slot, const uint8_t in[NVT_SB_ENCODED_SIZE])
{
    TU_OK(nvt_be_pwrite(be, in, NVT_SB_ENCODED_SIZE, (uint64_t)slot * NVT_SB_SLOT_SIZE));
}

/* Flip one bit of a slot's sequence field: the CRC no longer matches. */
static void damage_slot(nvt_backend *be, int slot)
{
    uint8_t buf[NVT_SB_ENCODED_SIZE];
    read_slot(be, slot, buf);
    buf[16] ^= 0x01;
    write_slot(be, slot, buf);
}

static nvt_image *reopen(nvt_backend *be)
{
    nvt_image *img = NULL;
    TU_OK(nvt_image_open(be, &img));
    g_assert_nonnull(img);
    return img;
}

static bool probe(nvt_backend *be)
{
    bool blank = false;
    TU_OK(nvt_image_probe_blank(be, &blank));
    return blank;
}

/* ---- encoding ----------------------------------------------------------- */

static void test_sb_round_trip(void)
{
    nvt_superblock sb = sample_sb(4 * MiB), out;
    sb.compat_flags = 0x11;
    sb.ro_compat_flags = 0x22;
    sb.sequence = UINT64_C(0x0123456789abcdef);
    uint8_t slot[NVT_SB_ENCODED_SIZE];
    char why[160];

    nvt_sb_encode(&sb, slot);
    memset(&out, 0xee, sizeof out);
    TU_OK(nvt_sb_decode(slot, 4 * MiB, &out, why, sizeof why));
    g_assert_cmpuint(out.format_version, ==, sb.format_version);
    g_assert_cmpuint(out.sequence, ==, sb.sequence);
    g_assert_cmpmem(out.uuid, 16, sb.uuid, 16);
    g_assert_cmpuint(out.image_size, ==, sb.image_size);
    g_assert_cmpuint(out.tdb_offset, ==, sb.tdb_offset);
    g_assert_cmpuint(out.tdb_capacity, ==, sb.tdb_capacity);
    g_assert_cmpuint(out.tdb_logical, ==, sb.tdb_logical);
    g_assert_cmpuint(out.journal_offset, ==, 0);
    g_assert_cmpuint(out.journal_length, ==, 0);
    g_assert_cmpuint(out.compat_flags, ==, sb.compat_flags);
    g_assert_cmpuint(out.incompat_flags, ==, sb.incompat_flags);
    g_assert_cmpuint(out.ro_compat_flags, ==, sb.ro_compat_flags);
}

/* The encoding is explicit little-endian with a trailing CRC32C: magic at
 * 0, version at 8, encoded size at 12, sequence at 16, CRC at 124. */
static void test_sb_layout(void)
{
    nvt_superblock sb = sample_sb(4 * MiB);
    uint8_t slot[NVT_SB_ENCODED_SIZE];
    nvt_sb_encode(&sb, slot);
    g_assert_cmpmem(slot, 8, NVT_IMAGE_MAGIC, 8);
    g_assert_cmpuint(get_le32(slot + 8), ==, NVT_IMAGE_FORMAT_VERSION);
    g_assert_cmpuint(get_le32(slot + SIZE_OFFSET), ==, NVT_SB_ENCODED_SIZE);
    g_assert_cmpuint(get_le32(slot + 16), ==, 42);
    g_assert_cmpuint(get_le32(slot + CRC_OFFSET), ==, nvt_crc32c(0, slot, CRC_OFFSET));
}

static void test_sb_bad_magic(void)
{
    nvt_superblock sb = sample_sb(4 * MiB), out;
    uint8_t slot[NVT_SB_ENCODED_SIZE];
    char why[160] = "";
    nvt_sb_encode(&sb, slot);
    slot[0] = 'X';
    reseal(slot);  /* the magic alone must be enough to refuse it */
    g_assert_cmpint(nvt_sb_decode(slot, 4 * MiB, &out, why, sizeof why), ==, -EBADMSG);
    g_assert_nonnull(strstr(why, "magic"));
}

static void test_sb_bad_crc(void)
{
    nvt_superblock sb = sample_sb(4 * MiB), out;
    uint8_t slot[NVT_SB_ENCODED_SIZE];
    char why[160] = "";
    nvt_sb_encode(&sb, slot);
    slot[48] ^= 0x40;  /* tdb offset: decodes to a plausible value */
    g_assert_cmpint(nvt_sb_decode(slot, 4 * MiB, &out, why, sizeof why), ==, -EBADMSG);
    g_assert_nonnull(strstr(why, "checksum"));
}

static void test_sb_wrong_version(void)
{
    nvt_superblock sb = sample_sb(4 * MiB);
    sb.format_version = 2;
    expect_decode(&sb, 4 * MiB, -ENOTSUP, "version 2");
    sb.format_version = 0;
    expect_decode(&sb, 4 * MiB, -ENOTSUP, "version 0");
}

static void test_sb_wrong_encoded_size(void)
{
    nvt_superblock sb = sample_sb(4 * MiB), out;
    uint8_t slot[NVT_SB_ENCODED_SIZE];
    char why[160] = "";
    nvt_sb_encode(&sb, slot);
    put_le32(slot + SIZE_OFFSET, 256);
    reseal(slot);
    g_assert_cmpint(nvt_sb_decode(slot, 4 * MiB, &out, why, sizeof why), ==, -EBADMSG);
    g_assert_nonnull(strstr(why, "size"));
}

static void test_sb_unknown_incompat_flag(void)
{
    nvt_superblock sb = sample_sb(4 * MiB);
    sb.incompat_flags = 1u << 7;
    expect_decode(&sb, 4 * MiB, -ENOTSUP, "0x80");
}

/* The encryption flag is known; its parameters (slot bytes 128..255)
 * are checked when the image is opened (test-crypt). */
static void test_sb_encrypted_flag(void)
{
    nvt_superblock sb = sample_sb(4 * MiB), out;
    sb.incompat_flags = NVT_INCOMPAT_ENCRYPTED;
    uint8_t slot[NVT_SB_ENCODED_SIZE];
    char why[160] = "";
    nvt_sb_encode(&sb, slot);
    TU_OK(nvt_sb_decode(slot, 4 * MiB, &out, why, sizeof why));
    g_assert_cmpuint(out.incompat_flags, ==, NVT_INCOMPAT_ENCRYPTED);
}

static void test_sb_truncated(void)
{
    nvt_superblock sb = sample_sb(4 * MiB);
    expect_decode(&sb, 4 * MiB - 4096, -EBADMSG, "truncated");
    expect_decode(&sb, 0, -EBADMSG, "truncated");
}

static void test_sb_image_size_invalid(void)
{
    nvt_superblock sb = sample_sb(4 * MiB);
    sb.image_size = 4 * MiB - 100;   /* not a multiple of 4096 */
    expect_decode(&sb, 4 * MiB, -EBADMSG, "image size");
    sb.image_size = NVT_SB_SLOT_SIZE;  /* smaller than the superblock area */
    sb.tdb_capacity = 0;
    sb.tdb_logical = 0;
    expect_decode(&sb, 4 * MiB, -EBADMSG, "image size");
}

static void test_sb_tdb_offset_invalid(void)
{
    nvt_superblock sb = sample_sb(4 * MiB);
    sb.tdb_offset = 0;  /* would put tdb over the superblocks */
    expect_decode(&sb, 4 * MiB, -EBADMSG, "offset");
    sb.tdb_offset = 4 * MiB;
    expect_decode(&sb, 4 * MiB, -EBADMSG, "offset");
}

static void test_sb_region_not_fitting(void)
{
    nvt_superblock sb = sample_sb(4 * MiB);
    sb.tdb_capacity = 4 * MiB;  /* offset + capacity > image size */
    expect_decode(&sb, 8 * MiB, -EBADMSG, "does not fit");
    sb.tdb_capacity = UINT64_MAX - 4095;  /* must not wrap around */
    expect_decode(&sb, 8 * MiB, -EBADMSG, "does not fit");
    sb.tdb_capacity = 4 * MiB - NVT_IMAGE_META_SIZE - 1;  /* unaligned */
    sb.tdb_logical = 0;
    expect_decode(&sb, 8 * MiB, -EBADMSG, "does not fit");
}

static void test_sb_logical_beyond_capacity(void)
{
    nvt_superblock sb = sample_sb(4 * MiB);
    sb.tdb_logical = sb.tdb_capacity + 1;
    expect_decode(&sb, 4 * MiB, -EBADMSG, "exceeds");
}

/* tdb addresses its file with 32-bit offsets: a larger logical length is
 * refused even if the region could hold it. */
static void test_sb_logical_beyond_32bit(void)
{
    uint64_t size = UINT64_C(8) << 30;
    nvt_superblock sb = sample_sb(size);
    sb.tdb_logical = (UINT64_C(1) << 32) + 4096;
    expect_decode(&sb, size, -EBADMSG, "exceeds");
}

/* A journal region, when present, takes the end of the image right after
 * the tdb region, in two halves of whole pages (at least 2 x 8 KiB). */
static nvt_superblock journaled_sb(void)
{
    nvt_superblock sb = sample_sb(4 * MiB);
    sb.journal_length = 64 * 1024;
    sb.tdb_capacity = 4 * MiB - NVT_IMAGE_META_SIZE - sb.journal_length;
    sb.journal_offset = sb.tdb_offset + sb.tdb_capacity;
    return sb;
}

static void test_sb_journal_round_trip(void)
{
    nvt_superblock sb = journaled_sb(), out;
    uint8_t slot[NVT_SB_ENCODED_SIZE];
    char why[160];
    nvt_sb_encode(&sb, slot);
    TU_OK(nvt_sb_decode(slot, 4 * MiB, &out, why, sizeof why));
    g_assert_cmpuint(out.journal_offset, ==, sb.journal_offset);
    g_assert_cmpuint(out.journal_length, ==, sb.journal_length);
}

static void test_sb_journal_misplaced(void)
{
    nvt_superblock sb = journaled_sb();
    sb.journal_offset += NVT_IMAGE_ALIGN;    /* a gap after the tdb region */
    expect_decode(&sb, 4 * MiB, -EBADMSG, "journal");
    sb = journaled_sb();
    sb.journal_offset = NVT_IMAGE_META_SIZE;  /* over the tdb region */
    expect_decode(&sb, 4 * MiB, -EBADMSG, "journal");
    sb = journaled_sb();
    sb.journal_length = 0;                    /* an offset without a length */
    expect_decode(&sb, 4 * MiB, -EBADMSG, "journal");
    sb = sample_sb(4 * MiB);
    sb.journal_offset = 0;
    sb.journal_length = 64 * 1024;            /* a length without an offset */
    expect_decode(&sb, 4 * MiB, -EBADMSG, "journal");
}

static void test_sb_journal_bad_length(void)
{
    nvt_superblock sb = journaled_sb();
    sb.journal_length += NVT_IMAGE_ALIGN;     /* halves not whole pages */
    sb.tdb_capacity -= NVT_IMAGE_ALIGN;
    sb.journal_offset -= NVT_IMAGE_ALIGN;
    expect_decode(&sb, 4 * MiB, -EBADMSG, "journal");
    sb = journaled_sb();
    sb.journal_length = 8192;                 /* smaller than two pages per half */
    sb.tdb_capacity = 4 * MiB - NVT_IMAGE_META_SIZE - 8192;
    sb.journal_offset = sb.tdb_offset + sb.tdb_capacity;
    expect_decode(&sb, 4 * MiB, -EBADMSG, "journal");
    sb = journaled_sb();
    sb.journal_length = 8 * MiB;              /* runs past the end of the image */
    expect_decode(&sb, 4 * MiB, -EBADMSG, "journal");
    sb.journal_length = UINT64_MAX - 8191;    /* must not wrap around */
    expect_decode(&sb, 4 * MiB, -EBADMSG, "journal");
}

/* ---- format and open ---------------------------------------------------- */

/* Format writes slot A (sequence 1) then slot B (sequence 2): open picks B,
 * the newest, and both copies are valid. */
static void test_format_opens_newest_slot(void)
{
    nvt_image *img;
    nvt_backend *be = formatted(MiB, &img);
    g_assert_cmpint(img->active_slot, ==, 1);
    g_assert_cmpuint(img->sb.sequence, ==, 2);
    g_assert_true(img->slot_valid[0] && img->slot_valid[1]);
    nvt_image_free(img);

    img = reopen(be);
    g_assert_cmpint(img->active_slot, ==, 1);
    g_assert_cmpuint(img->sb.sequence, ==, 2);
    g_assert_cmpuint(img->sb.format_version, ==, NVT_IMAGE_FORMAT_VERSION);
    g_assert_cmpuint(img->sb.image_size, ==, MiB);
    g_assert_cmpuint(img->sb.tdb_offset, ==, NVT_IMAGE_META_SIZE);
    g_assert_cmpuint(img->sb.tdb_capacity, ==, MiB - NVT_IMAGE_META_SIZE);
    g_assert_cmpuint(img->sb.tdb_logical, ==, 12 * 1024);
    nvt_image_free(img);
    nvt_be_close(be);
}

/* The tdb bytes land in the region right after the superblocks. */
static void test_format_writes_tdb_region(void)
{
    nvt_image *img;
    nvt_backend *be = formatted(MiB, &img);
    uint8_t *want = fake_tdb(12 * 1024), *got = g_malloc(12 * 1024);
    TU_OK(nvt_be_pread(be, got, 12 * 1024, NVT_IMAGE_META_SIZE));
    g_assert_cmpmem(got, 12 * 1024, want, 12 * 1024);
    g_free(want);
    g_free(got);
    nvt_image_free(img);
    nvt_be_close(be);
}

/* With a journal, the journal takes the end of the image, the tdb region
 * the rest, and both halves' headers are cleared (old junk can never be
 * mistaken for a record). */
static void test_format_journal_region(void)
{
    const uint64_t jlen = 64 * 1024;
    uint8_t *junk = g_malloc(MiB);
    tu_fill(junk, MiB, 8);
    memset(junk, 0, NVT_IMAGE_META_SIZE);
    nvt_backend *be = nvt_mem_backend_new(junk, MiB);
    uint8_t *tdb = fake_tdb(12 * 1024);
    nvt_image *img;
    TU_OK(nvt_image_format(be, MiB, tdb, 12 * 1024, jlen, &img));
    g_assert_cmpuint(img->sb.journal_length, ==, jlen);
    g_assert_cmpuint(img->sb.journal_offset, ==, MiB - jlen);
    g_assert_cmpuint(img->sb.tdb_capacity, ==, MiB - NVT_IMAGE_META_SIZE - jlen);
    nvt_image_free(img);
    img = reopen(be);
    g_assert_cmpuint(img->sb.journal_offset, ==, MiB - jlen);
    uint8_t head[64], zero[64] = { 0 };
    for (int h = 0; h < 2; h++) {
        TU_OK(nvt_be_pread(be, head, sizeof head, MiB - jlen + (uint64_t)h * jlen / 2));
        g_assert_cmpmem(head, sizeof head, zero, sizeof zero);
    }
    nvt_image_free(img);
    g_free(tdb);
    g_free(junk);
    nvt_be_close(be);
}

static void test_format_rejects_small_size(void)
{
    nvt_backend *be = nvt_mem_backend_new(NULL, 0);
    uint8_t *tdb = fake_tdb(12 * 1024);
    nvt_image *img = NULL;
    TU_OK(nvt_be_resize(be, 16384));
    nvt_error_clear();
    TU_ASSERT_ERROR(nvt_image_format(be, 16384, tdb, 12 * 1024, 0, &img), -EINVAL, "16384");
    g_assert_null(img);
    /* Nothing was written: the image is still blank. */
    g_assert_true(probe(be));
    g_free(tdb);
    nvt_be_close(be);
}

/* Each format draws a fresh random (version 4, RFC 4122) UUID. */
static void test_format_uuid(void)
{
    nvt_image *a, *b;
    nvt_backend *be1 = formatted(MiB, &a), *be2 = formatted(MiB, &b);
    g_assert_true(memcmp(a->sb.uuid, b->sb.uuid, 16) != 0);
    g_assert_cmpuint(a->sb.uuid[6] >> 4, ==, 4);
    g_assert_cmpuint(a->sb.uuid[8] & 0xc0, ==, 0x80);
    char text[37];
    nvt_uuid_format(a->sb.uuid, text);
    g_assert_cmpuint(strlen(text), ==, 36);
    g_assert_true(text[8] == '-' && text[13] == '-' && text[18] == '-' && text[23] == '-');
    g_assert_true(g_regex_match_simple("^[0-9a-f-]{36}$", text, 0, 0));
    nvt_image_free(a);
    nvt_image_free(b);
    nvt_be_close(be1);
    nvt_be_close(be2);
}

/* A power cut anywhere during format of a blank image leaves a blank
 * image, one whose slot B was never written (a writer formats it again),
 * or a valid one whose tdb region is complete (image.h); never a tdb
 * header without a superblock, which start refuses as orphaned data.  Blank "before" disks: zeroed superblocks
 * over old junk, and a torn slot A from an earlier interrupted format
 * (the crash model of docs/ARCHITECTURE.md may leave garbage sectors in a
 * torn write, so format must not rewrite a slot B that is already zero). */
static void test_format_power_cut(void)
{
    const uint64_t size = 64 * 1024;
    uint8_t *tdb = fake_tdb(12 * 1024);
    for (int start = 0; start < 2; start++) {
        uint8_t *before = g_malloc(size);
        tu_fill(before, size, 5);
        memset(before, 0, NVT_IMAGE_META_SIZE);
        if (start == 1)
            tu_fill(before, NVT_SB_ENCODED_SIZE, 6);
        nvt_backend *check = nvt_mem_backend_new(before, size);
        g_assert_true(probe(check));
        nvt_be_close(check);

        uint64_t cuts = 0;
        for (uint64_t n = 1;; n++) {
            nvt_backend *be = nvt_fault_backend_new(nvt_mem_backend_new(before, size));
            nvt_image *img = NULL;
            nvt_fault_arm(be, NVT_FAULT_POWER_CUT, NVT_FAULT_ON_ANY, n, 0);
            int r = nvt_image_format(be, size, tdb, 12 * 1024, 0, &img);
            if (!nvt_fault_fired(be)) {
                TU_OK(r);
                nvt_image_free(img);
                nvt_be_close(be);
                break;
            }
            g_assert_cmpint(r, <, 0);
            g_assert_null(img);
            cuts++;
            for (uint32_t seed = 1; seed <= 16; seed++) {
                size_t len;
                uint8_t *disk = nvt_fault_crash_image(be, seed, &len);
                nvt_backend *after = nvt_mem_backend_new(disk, len);
                nvt_probe state;
                TU_OK(nvt_image_probe(after, &state));
                if (state == NVT_PROBE_ORPHANED_DATA)
                    g_error("a power cut at operation %llu of format (seed %u) left a tdb "
                            "header without a superblock", (unsigned long long)n, seed);
                if (state == NVT_PROBE_FORMATTED) {
                    nvt_image *got = NULL;
                    if (nvt_image_open(after, &got) < 0)
                        g_error("a power cut at operation %llu of format (%s blank image, "
                                "crash seed %u) left an image that is neither blank nor "
                                "valid: %s", (unsigned long long)n,
                                start ? "torn-slot-A" : "zeroed", seed,
                                nvramtdb_last_error());
                    uint8_t *region = g_malloc(12 * 1024);
                    g_assert_cmpuint(got->sb.tdb_logical, ==, 12 * 1024);
                    TU_OK(nvt_be_pread(after, region, 12 * 1024, NVT_IMAGE_META_SIZE));
                    g_assert_cmpmem(region, 12 * 1024, tdb, 12 * 1024);
                    g_free(region);
                    nvt_image_free(got);
                }
                nvt_be_close(after);
                g_free(disk);
            }
            nvt_be_close(be);
        }
        g_assert_cmpuint(cuts, >=, 7);  /* body, flush, A, flush, header, flush, B, flush */
        g_free(before);
    }
    g_free(tdb);
}

/* Both slots valid: the higher sequence wins, whichever slot holds it. */
static void test_open_highest_sequence_wins(void)
{
    nvt_image *img;
    nvt_backend *be = formatted(MiB, &img);
    nvt_image_free(img);
    nvt_superblock sb = sample_sb(MiB);
    uint8_t slot[NVT_SB_ENCODED_SIZE];
    sb.sequence = 7;
    sb.tdb_logical = 7000;
    nvt_sb_encode(&sb, slot);
    write_slot(be, 0, slot);
    sb.sequence = 5;
    sb.tdb_logical = 5000;
    nvt_sb_encode(&sb, slot);
    write_slot(be, 1, slot);
    img = reopen(be);
    g_assert_cmpint(img->active_slot, ==, 0);
    g_assert_cmpuint(img->sb.sequence, ==, 7);
    g_assert_cmpuint(img->sb.tdb_logical, ==, 7000);
    nvt_image_free(img);
    nvt_be_close(be);
}

static void test_open_both_slots_corrupt(void)
{
    nvt_image *img;
    nvt_backend *be = formatted(MiB, &img);
    nvt_image_free(img);
    uint8_t slot[NVT_SB_ENCODED_SIZE];
    read_slot(be, 0, slot);
    slot[3] = '?';           /* A: bad magic */
    write_slot(be, 0, slot);
    damage_slot(be, 1);      /* B: bad checksum */
    img = NULL;
    nvt_error_clear();
    TU_ASSERT_ERROR(nvt_image_open(be, &img), -EBADMSG, "copy A", "magic", "copy B",
                    "checksum");
    g_assert_null(img);
    nvt_be_close(be);
}

/* A newer format in both slots is -ENOTSUP (upgrade the library), not
 * "corrupt"; so is one newer slot beside a corrupt one. */
static void test_open_unsupported_version(void)
{
    nvt_image *img;
    nvt_backend *be = formatted(MiB, &img);
    nvt_superblock sb = img->sb;
    nvt_image_free(img);
    uint8_t slot[NVT_SB_ENCODED_SIZE];
    sb.format_version = 2;
    nvt_sb_encode(&sb, slot);
    write_slot(be, 0, slot);
    write_slot(be, 1, slot);
    img = NULL;
    nvt_error_clear();
    TU_ASSERT_ERROR(nvt_image_open(be, &img), -ENOTSUP, "version 2");
    g_assert_null(img);

    damage_slot(be, 1);
    nvt_error_clear();
    TU_ASSERT_ERROR(nvt_image_open(be, &img), -ENOTSUP, "version 2");
    g_assert_null(img);
    nvt_be_close(be);
}

static void test_open_empty_backend(void)
{
    nvt_backend *be = nvt_mem_backend_new(NULL, 0);
    nvt_image *img = NULL;
    nvt_error_clear();
    TU_ASSERT_ERROR(nvt_image_open(be, &img), -EBADMSG, "not an nvramtdb image");
    g_assert_null(img);
    nvt_be_close(be);
}

static void test_open_shorter_than_superblocks(void)
{
    uint8_t bytes[6000];
    memset(bytes, 0, sizeof bytes);
    nvt_backend *be = nvt_mem_backend_new(bytes, sizeof bytes);
    nvt_image *img = NULL;
    nvt_error_clear();
    TU_ASSERT_ERROR(nvt_image_open(be, &img), -EBADMSG, "not an nvramtdb image", "6000");
    g_assert_null(img);
    nvt_be_close(be);
}

static void test_open_zeroed(void)
{
    uint8_t *zero = g_malloc0(MiB);
    nvt_backend *be = nvt_mem_backend_new(zero, MiB);
    nvt_image *img = NULL;
    nvt_error_clear();
    TU_ASSERT_ERROR(nvt_image_open(be, &img), -EBADMSG, "not an nvramtdb image");
    g_assert_null(img);
    g_free(zero);
    nvt_be_close(be);
}

/* ---- nvt_image_set_tdb_logical ------------------------------------------ */

/* Each update overwrites the older slot with the next sequence number, so
 * the active copy is never the one being written. */
static void test_set_logical_alternates_slots(void)
{
    nvt_image *img;
    nvt_backend *be = formatted(MiB, &img);
    g_assert_cmpint(img->active_slot, ==, 1);
    uint8_t before_b[NVT_SB_ENCODED_SIZE], now_b[NVT_SB_ENCODED_SIZE];
    read_slot(be, 1, before_b);

    TU_OK(nvt_image_set_tdb_logical(img, 20000));
    g_assert_cmpint(img->active_slot, ==, 0);
    g_assert_cmpuint(img->sb.sequence, ==, 3);
    read_slot(be, 1, now_b);
    g_assert_cmpmem(now_b, sizeof now_b, before_b, sizeof before_b);  /* B untouched */

    TU_OK(nvt_image_set_tdb_logical(img, 30000));
    g_assert_cmpint(img->active_slot, ==, 1);
    g_assert_cmpuint(img->sb.sequence, ==, 4);

    nvt_image *again = reopen(be);
    g_assert_cmpint(again->active_slot, ==, 1);
    g_assert_cmpuint(again->sb.sequence, ==, 4);
    g_assert_cmpuint(again->sb.tdb_logical, ==, 30000);
    g_assert_true(again->slot_valid[0] && again->slot_valid[1]);
    g_assert_cmpmem(again->sb.uuid, 16, img->sb.uuid, 16);
    nvt_image_free(again);
    nvt_image_free(img);
    nvt_be_close(be);
}

/* "Atomic and durable on return": the new slot has been flushed. */
static void test_set_logical_durable_on_return(void)
{
    nvt_image *img;
    nvt_backend *mem = nvt_mem_backend_new(NULL, 0);
    nvt_backend *be = nvt_fault_backend_new(mem);
    uint8_t *tdb = fake_tdb(12 * 1024);
    TU_OK(nvt_be_resize(be, MiB));
    TU_OK(nvt_image_format(be, MiB, tdb, 12 * 1024, 0, &img));
    TU_OK(nvt_image_set_tdb_logical(img, 40960));
    /* Cut the power now: nothing is pending, the update must survive. */
    for (uint32_t seed = 1; seed <= 4; seed++) {
        size_t len;
        uint8_t *disk = nvt_fault_crash_image(be, seed, &len);
        nvt_backend *after = nvt_mem_backend_new(disk, len);
        nvt_image *got = reopen(after);
        g_assert_cmpuint(got->sb.tdb_logical, ==, 40960);
        g_assert_cmpuint(got->sb.sequence, ==, 3);
        nvt_image_free(got);
        nvt_be_close(after);
        g_free(disk);
    }
    g_free(tdb);
    nvt_image_free(img);
    nvt_be_close(be);
}

/* A power cut during an update leaves the old or the new length, never an
 * unreadable image. */
static void test_set_logical_power_cut(void)
{
    uint8_t *tdb = fake_tdb(12 * 1024);
    for (uint64_t n = 1; n <= 2; n++) {
        nvt_image *img;
        nvt_backend *be = nvt_fault_backend_new(nvt_mem_backend_new(NULL, 0));
        TU_OK(nvt_be_resize(be, MiB));
        TU_OK(nvt_image_format(be, MiB, tdb, 12 * 1024, 0, &img));
        nvt_fault_arm(be, NVT_FAULT_POWER_CUT, NVT_FAULT_ON_ANY, n, 0);
        g_assert_cmpint(nvt_image_set_tdb_logical(img, 50000), <, 0);
        for (uint32_t seed = 1; seed <= 32; seed++) {
            size_t len;
            uint8_t *disk = nvt_fault_crash_image(be, seed, &len);
            nvt_backend *after = nvt_mem_backend_new(disk, len);
            nvt_image *got = reopen(after);
            if (got->sb.sequence == 2)
                g_assert_cmpuint(got->sb.tdb_logical, ==, 12 * 1024);
            else if (got->sb.sequence == 3)
                g_assert_cmpuint(got->sb.tdb_logical, ==, 50000);
            else
                g_error("sequence %llu after a cut", (unsigned long long)got->sb.sequence);
            nvt_image_free(got);
            nvt_be_close(after);
            g_free(disk);
        }
        nvt_image_free(img);
        nvt_be_close(be);
    }
    g_free(tdb);
}

static void test_set_logical_beyond_capacity(void)
{
    nvt_image *img;
    nvt_backend *be = formatted(MiB, &img);
    size_t len;
    uint8_t *before = tu_mem_copy(be, &len);
    nvt_error_clear();
    TU_ASSERT_ERROR(nvt_image_set_tdb_logical(img, img->sb.tdb_capacity + 1), -ENOSPC,
                    "1040385", "1040384");
    g_assert_cmpuint(img->sb.sequence, ==, 2);
    g_assert_cmpint(img->active_slot, ==, 1);
    size_t after_len;
    const uint8_t *after = nvt_mem_backend_data(be, &after_len);
    g_assert_cmpmem(after, after_len, before, len);
    g_free(before);
    nvt_image_free(img);
    nvt_be_close(be);
}

/* Damage to the older copy is harmless: the newer one is used. */
static void test_set_logical_older_slot_corrupt(void)
{
    nvt_image *img;
    nvt_backend *be = formatted(MiB, &img);
    TU_OK(nvt_image_set_tdb_logical(img, 20000));   /* A, seq 3 */
    TU_OK(nvt_image_set_tdb_logical(img, 30000));   /* B, seq 4 */
    nvt_image_free(img);
    damage_slot(be, 0);
    img = reopen(be);
    g_assert_cmpint(img->active_slot, ==, 1);
    g_assert_cmpuint(img->sb.sequence, ==, 4);
    g_assert_cmpuint(img->sb.tdb_logical, ==, 30000);
    g_assert_false(img->slot_valid[0]);
    g_assert_true(img->slot_valid[1]);
    g_assert_nonnull(strstr(img->slot_problem[0], "checksum"));
    nvt_image_free(img);
    nvt_be_close(be);
}

/* Damage to the newer copy (e.g. a torn update) falls back to the older
 * one, with its own sequence and length. */
static void test_set_logical_newer_slot_corrupt(void)
{
    nvt_image *img;
    nvt_backend *be = formatted(MiB, &img);
    TU_OK(nvt_image_set_tdb_logical(img, 20000));   /* A, seq 3 */
    TU_OK(nvt_image_set_tdb_logical(img, 30000));   /* B, seq 4 */
    nvt_image_free(img);
    damage_slot(be, 1);
    img = reopen(be);
    g_assert_cmpint(img->active_slot, ==, 0);
    g_assert_cmpuint(img->sb.sequence, ==, 3);
    g_assert_cmpuint(img->sb.tdb_logical, ==, 20000);
    g_assert_true(img->slot_valid[0]);
    g_assert_false(img->slot_valid[1]);
    nvt_image_free(img);
    nvt_be_close(be);
}

/* The next update after a fallback rewrites the damaged copy (never the
 * only valid one), and both copies are valid again. */
static void test_set_logical_repairs_damaged_slot(void)
{
    nvt_image *img;
    nvt_backend *be = formatted(MiB, &img);
    nvt_image_free(img);
    damage_slot(be, 1);            /* B (seq 2) bad: A (seq 1) active */
    img = reopen(be);
    g_assert_cmpint(img->active_slot, ==, 0);
    uint8_t a_before[NVT_SB_ENCODED_SIZE], a_now[NVT_SB_ENCODED_SIZE];
    read_slot(be, 0, a_before);
    TU_OK(nvt_image_set_tdb_logical(img, 24576));
    read_slot(be, 0, a_now);
    g_assert_cmpmem(a_now, sizeof a_now, a_before, sizeof a_before);
    g_assert_cmpint(img->active_slot, ==, 1);
    g_assert_cmpuint(img->sb.sequence, ==, 2);
    nvt_image_free(img);

    img = reopen(be);
    g_assert_true(img->slot_valid[0] && img->slot_valid[1]);
    g_assert_cmpint(img->active_slot, ==, 1);
    g_assert_cmpuint(img->sb.tdb_logical, ==, 24576);
    nvt_image_free(img);
    nvt_be_close(be);
}

/* ---- blank detection ---------------------------------------------------- */

static void test_blank_empty_backend(void)
{
    nvt_backend *be = nvt_mem_backend_new(NULL, 0);
    g_assert_true(probe(be));
    nvt_be_close(be);
}

/* All-zero superblock area: blank, whatever the rest holds (the
 * documented rule; see test-badinput for what start does with it). */
static void test_blank_zeroed_superblocks(void)
{
    nvt_image *img;
    nvt_backend *be = formatted(MiB, &img);
    nvt_image_free(img);
    uint8_t *zero = g_malloc0(NVT_IMAGE_META_SIZE);
    TU_OK(nvt_be_pwrite(be, zero, NVT_IMAGE_META_SIZE, 0));
    g_assert_true(probe(be));
    g_free(zero);
    nvt_be_close(be);
}

/* Slot A garbage (a torn first write) and slot B still zero: formatting
 * was interrupted before anything was committed. */
static void test_blank_interrupted_format(void)
{
    uint8_t *bytes = g_malloc0(MiB);
    tu_fill(bytes, NVT_SB_ENCODED_SIZE, 9);
    nvt_backend *be = nvt_mem_backend_new(bytes, MiB);
    g_assert_true(probe(be));
    g_free(bytes);
    nvt_be_close(be);
}

static void test_blank_valid_image_is_not(void)
{
    nvt_image *img;
    nvt_backend *be = formatted(MiB, &img);
    g_assert_false(probe(be));
    nvt_image_free(img);
    nvt_be_close(be);
}

/* Format interrupted after slot A was durable: the image is valid (from A)
 * and must not be formatted again. */
static void test_blank_slot_a_valid_b_zero_is_not(void)
{
    nvt_image *img;
    nvt_backend *be = formatted(MiB, &img);
    nvt_image_free(img);
    uint8_t zero[NVT_SB_ENCODED_SIZE] = { 0 };
    write_slot(be, 1, zero);
    g_assert_false(probe(be));
    img = reopen(be);
    g_assert_cmpint(img->active_slot, ==, 0);
    g_assert_cmpuint(img->sb.sequence, ==, 1);
    nvt_image_free(img);
    nvt_be_close(be);
}

static void test_blank_slot_a_zero_b_valid_is_not(void)
{
    nvt_image *img;
    nvt_backend *be = formatted(MiB, &img);
    nvt_image_free(img);
    uint8_t zero[NVT_SB_ENCODED_SIZE] = { 0 };
    write_slot(be, 0, zero);
    g_assert_false(probe(be));
    nvt_be_close(be);
}

/* A formatted image cut short after slot A (slot B lies beyond the end) is
 * a truncated image, not an interrupted format: formatting it would throw
 * away the evidence and start the device from scratch. */
static void test_blank_truncated_image_is_not(void)
{
    nvt_image *img;
    nvt_backend *be = formatted(MiB, &img);
    nvt_image_free(img);
    uint8_t first[NVT_SB_SLOT_SIZE];
    TU_OK(nvt_be_pread(be, first, sizeof first, 0));
    nvt_be_close(be);
    be = nvt_mem_backend_new(first, sizeof first);
    g_assert_false(probe(be));
    nvt_be_close(be);
}

/* A small file that is not zero is foreign (or truncated), never blank. */
static void test_blank_small_foreign_is_not(void)
{
    static const char text[] = "127.0.0.1 localhost\n::1 localhost\n";
    nvt_backend *be = nvt_mem_backend_new(text, sizeof text - 1);
    g_assert_false(probe(be));
    nvt_be_close(be);
    uint8_t *zero = g_malloc0(100);
    be = nvt_mem_backend_new(zero, 100);
    g_assert_true(probe(be));
    g_free(zero);
    nvt_be_close(be);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/image/sb/round-trip", test_sb_round_trip);
    g_test_add_func("/image/sb/layout", test_sb_layout);
    g_test_add_func("/image/sb/bad-magic", test_sb_bad_magic);
    g_test_add_func("/image/sb/bad-crc", test_sb_bad_crc);
    g_test_add_func("/image/sb/wrong-version", test_sb_wrong_version);
    g_test_add_func("/image/sb/wrong-encoded-size", test_sb_wrong_encoded_size);
    g_test_add_func("/image/sb/unknown-incompat-flag", test_sb_unknown_incompat_flag);
    g_test_add_func("/image/sb/encrypted-flag", test_sb_encrypted_flag);
    g_test_add_func("/image/sb/truncated", test_sb_truncated);
    g_test_add_func("/image/sb/image-size-invalid", test_sb_image_size_invalid);
    g_test_add_func("/image/sb/tdb-offset-invalid", test_sb_tdb_offset_invalid);
    g_test_add_func("/image/sb/region-not-fitting", test_sb_region_not_fitting);
    g_test_add_func("/image/sb/logical-beyond-capacity", test_sb_logical_beyond_capacity);
    g_test_add_func("/image/sb/logical-beyond-32bit", test_sb_logical_beyond_32bit);
    g_test_add_func("/image/sb/journal-round-trip", test_sb_journal_round_trip);
    g_test_add_func("/image/sb/journal-misplaced", test_sb_journal_misplaced);
    g_test_add_func("/image/sb/journal-bad-length", test_sb_journal_bad_length);

    g_test_add_func("/image/format/opens-newest-slot", test_format_opens_newest_slot);
    g_test_add_func("/image/format/writes-tdb-region", test_format_writes_tdb_region);
    g_test_add_func("/image/format/journal-region", test_format_journal_region);
    g_test_add_func("/image/format/rejects-small-size", test_format_rejects_small_size);
    g_test_add_func("/image/format/uuid", test_format_uuid);
    g_test_add_func("/image/format/power-cut-leaves-blank-or-valid", test_format_power_cut);

    g_test_add_func("/image/open/highest-sequence-wins", test_open_highest_sequence_wins);
    g_test_add_func("/image/open/both-slots-corrupt", test_open_both_slots_corrupt);
    g_test_add_func("/image/open/unsupported-version", test_open_unsupported_version);
    g_test_add_func("/image/open/empty-backend", test_open_empty_backend);
    g_test_add_func("/image/open/shorter-than-superblocks", test_open_shorter_than_superblocks);
    g_test_add_func("/image/open/zeroed", test_open_zeroed);

    g_test_add_func("/image/set-logical/alternates-slots", test_set_logical_alternates_slots);
    g_test_add_func("/image/set-logical/durable-on-return", test_set_logical_durable_on_return);
    g_test_add_func("/image/set-logical/power-cut", test_set_logical_power_cut);
    g_test_add_func("/image/set-logical/beyond-capacity", test_set_logical_beyond_capacity);
    g_test_add_func("/image/set-logical/older-slot-corrupt", test_set_logical_older_slot_corrupt);
    g_test_add_func("/image/set-logical/newer-slot-corrupt", test_set_logical_newer_slot_corrupt);
    g_test_add_func("/image/set-logical/repairs-damaged-slot",
                    test_set_logical_repairs_damaged_slot);

    g_test_add_func("/image/blank/empty-backend", test_blank_empty_backend);
    g_test_add_func("/image/blank/zeroed-superblocks", test_blank_zeroed_superblocks);
    g_test_add_func("/image/blank/interrupted-format", test_blank_interrupted_format);
    g_test_add_func("/image/blank/valid-image-is-not", test_blank_valid_image_is_not);
    g_test_add_func("/image/blank/slot-a-valid-b-zero-is-not",
                    test_blank_slot_a_valid_b_zero_is_not);
    g_test_add_func("/image/blank/slot-a-zero-b-valid-is-not",
                    test_blank_slot_a_zero_b_valid_is_not);
    g_test_add_func("/image/blank/truncated-image-is-not", test_blank_truncated_image_is_not);
    g_test_add_func("/image/blank/small-foreign-file-is-not", test_blank_small_foreign_is_not);

    return g_test_run();
}
