/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * test-space: the bounded-space contract.  An image of exactly the size
 * nvramtdb_get_totalsize() computes accepts any sequence of writes and
 * deletes within the blobs' maxima without ENOSPC — and, stronger, tdb
 * never grows its file after formatting (no allocation in steady state).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "nvttest.h"
#include "testutil.h"

typedef struct space_case {
    const char *label;
    tu_blob blobs[24];
    size_t n;
    unsigned ops;
} space_case;

static uint32_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (uint32_t)(*s >> 11);
}

/* Sizes at the edges are the interesting ones: 0, 1, max-1, max. */
static uint32_t pick_size(uint64_t *rng, uint32_t max)
{
    switch (next_rand(rng) % 6) {
    case 0: return 0;
    case 1: return max;
    case 2: return max > 1 ? max - 1 : max;
    case 3: return 1;
    default: return next_rand(rng) % (max + 1);
    }
}

/* A case in one commit mode: the journal, or tdb's transactions (whose
 * recovery area the formatting recipe must have sized). */
typedef struct space_run {
    const space_case *c;
    unsigned flags;
} space_run;

static void run_case(const void *data)
{
    const space_case *c = ((const space_run *)data)->c;
    unsigned flags = ((const space_run *)data)->flags;
    nvramtdb *db;

    /* Size the image from the registrations, then make a backend that
     * cannot grow beyond exactly that. */
    TU_OK(nvramtdb_open("mem:", 0, &db));
    /* Keyed like the image tu_start() makes (NVT_TEST_ENCRYPT=1): sealed
     * values are larger, and so must the computed size be. */
    TU_OK(nvt_test_give_key(db));
    for (size_t i = 0; i < c->n; i++)
        TU_OK(nvramtdb_register_blob(db, c->blobs[i].name, c->blobs[i].max_size));
    uint64_t total = 0;
    TU_OK(nvramtdb_get_totalsize(db, &total));
    g_assert_cmpuint(total, >, 0);
    nvramtdb_close(db);

    int rc;
    db = tu_start(nvt_mem_backend_new_capped(total), flags, c->blobs, c->n, &rc);
    if (!db)
        g_error("%s: start on an image of exactly %llu bytes failed: %s", c->label,
                (unsigned long long)total, nvramtdb_last_error());
    nvramtdb_info info = { .struct_size = sizeof info };
    TU_OK(nvramtdb_get_info(db, &info));
    g_assert_cmpuint(info.image_size, ==, total);
    uint64_t used_after_format = info.data_used;

    uint32_t max_all = 0;
    for (size_t i = 0; i < c->n; i++)
        max_all = MAX(max_all, c->blobs[i].max_size);
    uint8_t *buf = g_malloc(max_all + 1);
    uint64_t rng = 0x1234567 + c->n;
    unsigned writes = 0, deletes = 0, groups_at_max = 0;

    for (unsigned op = 0; op < c->ops; op++) {
        /* Now and then rewrite every blob at its maximum: the worst case
         * for tdb's recovery area. */
        if (op % 97 == 0) {
            for (size_t i = 0; i < c->n; i++) {
                tu_fill(buf, c->blobs[i].max_size, op + (uint32_t)i);
                TU_OK(nvramtdb_write(db, c->blobs[i].name, buf, c->blobs[i].max_size, 0, NULL,
                                     NULL));
            }
            groups_at_max++;
            continue;
        }
        const tu_blob *b = &c->blobs[next_rand(&rng) % c->n];
        if (next_rand(&rng) % 8 == 0) {
            int r = nvramtdb_delete(db, b->name, 0, NULL, NULL);
            if (r != 0 && r != -ENOENT)
                g_error("%s: op %u: delete %s: %s", c->label, op, b->name,
                        nvramtdb_last_error());
            deletes++;
        } else {
            uint32_t len = pick_size(&rng, b->max_size);
            tu_fill(buf, len, op);
            int r = nvramtdb_write(db, b->name, buf, len, 0, NULL, NULL);
            if (r != 0)
                g_error("%s: op %u: write of %u bytes to %s (max %u) failed: %s", c->label, op,
                        len, b->name, b->max_size, nvramtdb_last_error());
            tu_assert_blob(db, b->name, buf, len);
            writes++;
        }
        TU_OK(nvramtdb_get_info(db, &info));
        g_assert_cmpuint(info.data_used, ==, used_after_format);
    }
    tu_assert_healthy(db);
    g_test_message("%s: image %llu bytes for %llu reserved; %u writes, %u deletes, %u full "
                   "rewrites, tdb length constant at %llu", c->label,
                   (unsigned long long)total, (unsigned long long)info.reserved_bytes, writes,
                   deletes, groups_at_max, (unsigned long long)used_after_format);
    g_free(buf);
    nvramtdb_close(db);
}

static const space_case cases[] = {
    { "tpm", { { "tpm0/permall", 176832 + 4096 }, { "tpm0/volatilestate", 65536 },
               { "tpm0/savestate", 16384 } }, 3, 600 },
    { "one-byte", { { "dev/tiny", 1 } }, 1, 300 },
    { "one-large", { { "dev/big", 1 << 20 } }, 1, 60 },
    /* What nvram-tpmd registers (tpm/nvtpm.c), and single blobs at the
     * sizes of the image-size bounds (test_size_bounds). */
    { "tpm-nvtpm", { { "tpm0/permall", 208 * 1024 }, { "tpm0/volatilestate", 65536 } }, 2, 300 },
    { "one-100k", { { "dev/b100k", 100 * 1024 } }, 1, 100 },
    { "one-256k", { { "dev/b256k", 256 * 1024 } }, 1, 80 },
    /* Formatted with a padding record (tdb's 100x growth rule): */
    { "one-64k", { { "dev/mid", 65536 } }, 1, 200 },
    { "two-64k", { { "dev/a", 65536 }, { "dev/b", 65536 } }, 2, 200 },
    { "many-small", { { "d/a", 1 }, { "d/b", 17 }, { "d/c", 100 }, { "d/d", 511 },
                      { "d/e", 512 }, { "d/f", 513 }, { "d/g", 4095 }, { "d/h", 4096 },
                      { "d/i", 4097 }, { "d/j", 5000 }, { "e/a", 3 }, { "e/b", 300 },
                      { "e/c", 3000 }, { "e/d", 30000 }, { "f/a", 12345 }, { "f/b", 7 },
                      { "f/c", 65536 }, { "f/d", 2 }, { "g/a", 999 }, { "g/b", 8191 } },
      20, 1500 },
};

/* tdb grows by 100 times any request under 100 KiB: without the padded
 * layout a single 64 KiB blob took an 11 MB image, 80,000 bytes 13.5 MB.
 * Now no blob up to 128 KiB needs more than 3 MiB (journal included). */
static void test_mid_sized_blobs_stay_small(void)
{
    static const uint32_t sizes[] = { 1, 4096, 16384, 40000, 65536, 80000, 90000, 100000,
                                      131072 };
    for (size_t i = 0; i < G_N_ELEMENTS(sizes); i++) {
        nvramtdb *db;
        TU_OK(nvramtdb_open("mem:", 0, &db));
        TU_OK(nvramtdb_register_blob(db, "dev/blob", sizes[i]));
        uint64_t total = 0;
        TU_OK(nvramtdb_get_totalsize(db, &total));
        g_test_message("one blob of %u bytes: image of %llu bytes", sizes[i],
                       (unsigned long long)total);
        g_assert_cmpuint(total, >, sizes[i]);
        g_assert_cmpuint(total, <=, 3u << 20);
        nvramtdb_close(db);
    }
}

/* The image a set of blobs needs, with and without a key: its size and
 * its journal's length (the superblock's, as nvramtdb_get_info() shows
 * the tdb region: image = 8192 + tdb region + journal). */
static void image_for(const tu_blob *blobs, size_t n, bool keyed, uint64_t *image,
                      uint64_t *journal)
{
    static const uint8_t key[32] = "test-space size bounds key 0123";
    nvramtdb *db;
    TU_OK(nvramtdb_open("mem:", 0, &db));
    if (keyed) {
        nvramtdb_key k = { .struct_size = sizeof k, .type = NVRAMTDB_KEY_RAW, .data = key,
                           .len = sizeof key, .fd = -1 };
        TU_OK(nvramtdb_set_key(db, &k));
    }
    for (size_t i = 0; i < n; i++)
        TU_OK(nvramtdb_register_blob(db, blobs[i].name, blobs[i].max_size));
    TU_OK(nvramtdb_start(db, 0));
    nvramtdb_info info = { .struct_size = sizeof info };
    TU_OK(nvramtdb_get_info(db, &info));
    uint64_t total = 0;
    TU_OK(nvramtdb_get_totalsize(db, &total));
    g_assert_cmpuint(info.image_size, ==, total);
    *image = info.image_size;
    *journal = info.image_size - 8192 - info.data_capacity;
    nvramtdb_close(db);
}

/*
 * The image-size bounds of issue 14.  The TPM's image (what nvram-tpmd
 * registers, journal included) is at most 1.5 MiB, encrypted too.  A
 * single blob's image without its journal is at most 2.4 times its
 * maximum from 256 KiB up, and 4.8 times at 100 KiB.  (The issue asked
 * for 2x; tdb 1.4 allocates every record at 1.25 times its size and
 * keeps a copy of every page a commit changes in its recovery area, so
 * 2.25x is the floor for any tdb that holds the blob; below about
 * 160 KiB of records, tdb's growth rules make the file at least about
 * 420 KB, see docs/FORMAT.md.)  test-space's workload on the exact size
 * (run_case, cases tpm-nvtpm, one-100k, one-256k, one-large) shows the
 * images are still never full.
 */
static void test_size_bounds(void)
{
    static const tu_blob tpm[] = { { "tpm0/permall", 208 * 1024 },
                                   { "tpm0/volatilestate", 65536 } };
    uint64_t image, journal;
    for (int keyed = 0; keyed < 2; keyed++) {
        image_for(tpm, G_N_ELEMENTS(tpm), keyed, &image, &journal);
        g_test_message("TPM set%s: image %llu bytes, journal %llu", keyed ? " (encrypted)" : "",
                       (unsigned long long)image, (unsigned long long)journal);
        g_assert_cmpuint(image, <=, 3u << 19);
    }
    static const struct { uint32_t max; double factor; } one[] = {
        { 100 * 1024, 4.8 }, { 256 * 1024, 2.4 }, { 1024 * 1024, 2.4 },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(one); i++) {
        tu_blob b = { "dev/blob", one[i].max };
        image_for(&b, 1, false, &image, &journal);
        g_test_message("one blob of %u bytes: image %llu bytes, journal %llu: %.2fx without it",
                       one[i].max, (unsigned long long)image, (unsigned long long)journal,
                       (double)(image - journal) / one[i].max);
        g_assert_cmpfloat((double)(image - journal), <=, one[i].factor * one[i].max);
        /* The ring: two frames of the blob at its maximum, or 768 KiB. */
        g_assert_cmpuint(journal, <=, MAX(768u * 1024, 2 * (one[i].max + 12 * 4096u)));
    }
}

static void test_totalsize_is_deterministic(void)
{
    nvramtdb *a, *b;
    TU_OK(nvramtdb_open("mem:", 0, &a));
    TU_OK(nvramtdb_open("mem:", 0, &b));
    TU_OK(nvramtdb_register_blob(a, "x/one", 1000));
    TU_OK(nvramtdb_register_blob(a, "x/two", 50000));
    TU_OK(nvramtdb_register_blob(b, "x/two", 50000));
    TU_OK(nvramtdb_register_blob(b, "x/one", 1000));
    uint64_t size_a = 0, size_b = 0, after = 0;
    TU_OK(nvramtdb_get_totalsize(a, &size_a));
    TU_OK(nvramtdb_get_totalsize(b, &size_b));
    g_assert_cmpuint(size_a, ==, size_b);
    /* A new maximum replaces the old.  (Sets of records below about
     * 160 KB all take the smallest padded layout, so grow well beyond.) */
    TU_OK(nvramtdb_register_blob(a, "x/one", 400000));
    TU_OK(nvramtdb_get_totalsize(a, &after));
    g_assert_cmpuint(after, >, size_a);
    nvramtdb_close(a);
    nvramtdb_close(b);
}

static void test_image_one_block_short_is_refused(void)
{
    static const tu_blob blobs[] = { { "tpm0/permall", 65536 } };
    nvramtdb *db;
    TU_OK(nvramtdb_open("mem:", 0, &db));
    TU_OK(nvramtdb_register_blob(db, blobs[0].name, blobs[0].max_size));
    uint64_t total = 0;
    TU_OK(nvramtdb_get_totalsize(db, &total));
    nvramtdb_close(db);

    int rc;
    db = tu_start(nvt_mem_backend_new_capped(total - 4096), 0, blobs, 1, &rc);
    g_assert_null(db);
    g_assert_cmpint(rc, ==, -ENOSPC);
    char want[32];
    snprintf(want, sizeof want, "%llu", (unsigned long long)total);
    g_assert_nonnull(strstr(nvramtdb_last_error(), want));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    static space_run runs[2][G_N_ELEMENTS(cases)];
    for (int m = 0; m < 2; m++) {
        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
            runs[m][i] = (space_run){ &cases[i], m ? NVRAMTDB_OPEN_STOCK_COMMIT : 0 };
            char *path = g_strdup_printf("/space/exact-size-never-full/%s/%s",
                                         m ? "stock-commit" : "journal", cases[i].label);
            g_test_add_data_func(path, &runs[m][i], run_case);
            g_free(path);
        }
    }
    g_test_add_func("/space/totalsize-deterministic", test_totalsize_is_deterministic);
    g_test_add_func("/space/mid-sized-blobs-stay-small", test_mid_sized_blobs_stay_small);
    g_test_add_func("/space/one-block-short-refused", test_image_one_block_short_is_refused);
    g_test_add_func("/space/size-bounds", test_size_bounds);
    return g_test_run();
}
