/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * test-crash-checkpoint.c — the crash model of docs/ARCHITECTURE.md where
 * the journal is most fragile: a checkpoint, the new epoch's first record
 * written over a ring that still holds the previous epoch's records beyond
 * it, and the commits after it.
 *
 * Two blobs: a small one, and a large one written with values of one size
 * per test, from a few bytes up to the largest record the ring takes.  The
 * epoch opens with a small record (the small blob), then large ones fill
 * the ring until a commit of the large blob checkpoints: that commit's
 * record starts the new epoch at the ring's start and is larger than the
 * old epoch's first record, so it lies over older records that stay valid
 * beyond its end (the test asserts this layout).  Two commits follow (the
 * small blob, then the large one).  The power is cut at every operation
 * from the checkpointing commit to the end, and for each cut many seeds
 * build what the disk would hold (pending writes kept, dropped or torn per
 * 512-byte sector, garbage included).  Every such image must start
 * read-write, pass nvramtdb_check(), and give each blob its last
 * acknowledged value or the one in flight.
 *
 * Both commit modes run: the journal under both disk models, and tdb's own
 * transactions (NVRAMTDB_OPEN_STOCK_COMMIT) under atomic sectors, which
 * tdb's protocol needs; the stock runs start from an image whose ring a
 * journal session left full of records (cleared at its start only), so
 * that a crash in a stock commit must never replay them.
 *
 * NVT_CRASH_SEEDS=n sets the seeds per cut point (default 20).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "crc32c.h"
#include "image.h"
#include "journal.h"
#include "testutil.h"
#include "workload.h"

#define LARGE_MAX (256u * 1024)
#define SMALL_MAX 64u

static const tu_blob cp_blobs[] = {
    { "cp/large", LARGE_MAX },
    { "cp/small", SMALL_MAX },
};
enum { LARGE, SMALL, N_CP_BLOBS };

/* The large blob's value sizes, one test each. */
static const uint32_t sizes[] = { 8, 700, 4000, 30000, 120000, LARGE_MAX };

/* ---- values ------------------------------------------------------------- */

/* Write k of the workload: each value is distinct, names its write in its
 * first bytes, and differs from the previous one in most bytes (so that
 * records hold whole pages, not deltas, except for tiny values). */
static uint32_t value_len(int blob, uint32_t size)
{
    return blob == SMALL ? SMALL_MAX / 2 : size;
}

static void value_fill(int blob, uint32_t k, uint32_t len, uint8_t *buf)
{
    tu_fill(buf, len, k * 2 + (uint32_t)blob);
    memcpy(buf, &k, MIN(len, (uint32_t)sizeof k));
}

/* ---- the workload -------------------------------------------------------- */

typedef struct plan {
    uint32_t size;
    uint32_t fill_writes;     /* large writes before the checkpointing one */
} plan;

typedef struct outcome {
    uint32_t acked[N_CP_BLOBS];   /* write number of the last acknowledged value (0: none) */
    uint32_t in_flight;           /* write number of the failed request, or 0 */
    int in_flight_blob;
} outcome;

/* The sequence of writes: small, then the large blob fill_writes + 1
 * times (the last checkpoints), then small, then large. */
static uint32_t n_writes(const plan *p)
{
    return p->fill_writes + 4;
}

static int write_blob(uint32_t k, const plan *p)
{
    uint32_t n = n_writes(p);
    if (k == 1 || k == n - 1)
        return SMALL;
    return LARGE;
}

/* Run writes 1..n until one fails; @ops_after[k] (if not NULL) gets the
 * operation count after write k. */
static void run_writes(nvramtdb *db, const plan *p, nvt_backend *fault, uint64_t *ops_after,
                       uint32_t limit, outcome *o)
{
    uint8_t *buf = g_malloc(LARGE_MAX);
    memset(o, 0, sizeof *o);
    for (uint32_t k = 1; k <= limit; k++) {
        int b = write_blob(k, p);
        uint32_t len = value_len(b, p->size);
        value_fill(b, k, len, buf);
        if (nvramtdb_write(db, cp_blobs[b].name, buf, len, NVRAMTDB_WAIT_COMPLETION, NULL,
                           NULL) < 0) {
            o->in_flight = k;
            o->in_flight_blob = b;
            break;
        }
        o->acked[b] = k;
        if (ops_after)
            ops_after[k] = nvt_fault_op_count(fault);
    }
    g_free(buf);
}

/* ---- checking a crash image --------------------------------------------- */

static bool blob_is(const uint8_t *got, size_t got_len, int b, uint32_t k, uint32_t size)
{
    if (k == 0)
        return false;
    uint32_t len = value_len(b, size);
    if (got_len != len)
        return false;
    uint8_t *want = g_malloc(len);
    value_fill(b, k, len, want);
    bool same = memcmp(got, want, len) == 0;
    g_free(want);
    return same;
}

static bool verify(commit_mode commit, const uint8_t *img, size_t len, const plan *p,
                   const outcome *o, const char *ctx)
{
    int rc;
    nvramtdb *db = tu_start(nvt_mem_backend_new(img, len), commit_flags[commit], cp_blobs,
                            N_CP_BLOBS, &rc);
    if (!db)
        return violation("%s: start failed: %d (%s)", ctx, rc, nvramtdb_last_error());
    bool ok = healthy(db, ctx, "read-write");
    for (int b = 0; ok && b < N_CP_BLOBS; b++) {
        uint8_t *got = NULL;
        size_t got_len = 0;
        rc = nvramtdb_read(db, cp_blobs[b].name, &got, &got_len);
        bool none_acked = o->acked[b] == 0;
        bool in_flight = o->in_flight && o->in_flight_blob == b;
        bool fine = rc == 0 ? blob_is(got, got_len, b, o->acked[b], p->size) ||
                                  (in_flight && blob_is(got, got_len, b, o->in_flight, p->size))
                            : rc == -ENOENT && none_acked;
        if (!fine) {
            uint32_t names = 0;
            if (got_len >= sizeof names)
                memcpy(&names, got, sizeof names);
            ok = violation("%s: blob %s reads %d, %zu bytes (write %u), expected write %u%s%.0u",
                           ctx, cp_blobs[b].name, rc, got_len, names, o->acked[b],
                           in_flight ? " or the in-flight write " : "",
                           in_flight ? o->in_flight : 0);
        }
        free(got);
    }
    nvramtdb_close(db);
    return ok;
}

/* ---- the ring's layout --------------------------------------------------- */

/* Journal frame headers (magic and header CRC valid) at 4096-byte steps
 * of the ring, and how many of them belong to the epoch of the record at
 * the ring's start. */
static void ring_headers(const uint8_t *img, size_t len, unsigned *all, unsigned *first_epoch)
{
    nvt_superblock sb;
    char why[256];
    const uint8_t *slot_a = img, *slot_b = img + 4096;
    nvt_superblock a, b;
    bool va = nvt_sb_decode(slot_a, len, &a, why, sizeof why) == 0;
    bool vb = nvt_sb_decode(slot_b, len, &b, why, sizeof why) == 0;
    g_assert_true(va || vb);
    sb = va && (!vb || a.sequence > b.sequence) ? a : b;
    g_assert_cmpuint(sb.journal_length, >, 0);
    *all = *first_epoch = 0;
    uint64_t epoch = 0;
    for (uint64_t at = 0; at + NVT_JOURNAL_HEADER_SIZE <= sb.journal_length;
         at += NVT_PAGE_SIZE) {
        const uint8_t *h = img + sb.journal_offset + at;
        uint32_t crc;
        memcpy(&crc, h + 60, sizeof crc);
        if (memcmp(h, NVT_JOURNAL_MAGIC, 8) != 0 || crc != GUINT32_TO_LE(nvt_crc32c(0, h, 60)))
            continue;
        uint64_t e;
        memcpy(&e, h + 16, sizeof e);
        if (at == 0)
            epoch = e;
        (*all)++;
        if (e == epoch)
            (*first_epoch)++;
    }
}

/* ---- the sweep ----------------------------------------------------------- */

typedef struct sweep_case {
    commit_mode commit;
    uint32_t size;
} sweep_case;

static nvramtdb *start_on_fault(commit_mode commit, const uint8_t *img, size_t len,
                                nvt_backend **fault)
{
    int rc;
    *fault = nvt_fault_backend_new(nvt_mem_backend_new(img, len));
    g_assert_nonnull(*fault);
    nvramtdb *db = tu_start(nvt_be_borrow(*fault), commit_flags[commit], cp_blobs, N_CP_BLOBS,
                            &rc);
    if (!db)
        g_error("start: %d (%s)", rc, nvramtdb_last_error());
    return db;
}

/* A formatted image for the two blobs; for stock commits, one whose ring a
 * journal session has filled with records and closed. */
static uint8_t *start_image(commit_mode commit, size_t *len)
{
    nvt_backend *mem = nvt_mem_backend_new(NULL, 0);
    nvramtdb *db;
    TU_OK(nvt_open_backend(nvt_be_borrow(mem), 0, &db));
    for (int b = 0; b < N_CP_BLOBS; b++)
        TU_OK(nvramtdb_register_blob(db, cp_blobs[b].name, cp_blobs[b].max_size));
    /* 2 MiB beyond the size needed, a quarter of which goes to the ring:
     * at the largest value, the default ring (two frames of the largest
     * group) ends its epoch exactly where the new epoch's three records
     * end, and no older record would lie beyond them. */
    uint64_t need = 0;
    TU_OK(nvramtdb_get_totalsize(db, &need));
    TU_OK(nvramtdb_set_image_size(db, need + (2u << 20)));
    TU_OK(nvramtdb_start(db, 0));
    if (commit == COMMIT_STOCK) {
        uint8_t *buf = g_malloc(LARGE_MAX);
        for (uint32_t k = 1; k <= 3; k++) {
            value_fill(LARGE, 1000 + k, LARGE_MAX, buf);
            TU_OK(nvramtdb_write(db, cp_blobs[LARGE].name, buf, LARGE_MAX,
                                 NVRAMTDB_WAIT_COMPLETION, NULL, NULL));
        }
        g_free(buf);
    }
    /* The copy is taken after the close, whose checkpoint it includes:
     * borrow the backend so that the handle leaves it open. */
    nvramtdb_close(db);
    uint8_t *img = tu_mem_copy(mem, len);
    nvt_be_close(mem);
    if (commit == COMMIT_STOCK) {
        unsigned all, first;
        ring_headers(img, *len, &all, &first);
        /* Stale records a stock crash must not replay (the close cleared
         * the first of the three). */
        g_assert_cmpuint(all, >=, 2);
    }
    return img;
}

static void test_cut_around_checkpoint(gconstpointer data)
{
    const sweep_case *sc = data;
    size_t len;
    uint8_t *base = start_image(sc->commit, &len);
    nvt_backend *fault;

    /* A clean run in journal mode finds the write that checkpoints: the
     * first whose operations are more than one record's write and flush. */
    plan p = { .size = sc->size, .fill_writes = 0 };
    uint32_t probe_limit = 4096;
    uint64_t *ops_after = g_new0(uint64_t, probe_limit + 1);
    nvramtdb *db = start_on_fault(COMMIT_JOURNAL, base, len, &fault);
    outcome o;
    p.fill_writes = probe_limit;  /* all large after the first */
    ops_after[0] = nvt_fault_op_count(fault);
    uint32_t checkpointing = 0;
    uint8_t *buf = g_malloc(LARGE_MAX);
    for (uint32_t k = 1; k <= probe_limit && !checkpointing; k++) {
        int b = k == 1 ? SMALL : LARGE;
        uint32_t vlen = value_len(b, sc->size);
        value_fill(b, k, vlen, buf);
        TU_OK(nvramtdb_write(db, cp_blobs[b].name, buf, vlen, NVRAMTDB_WAIT_COMPLETION, NULL,
                             NULL));
        ops_after[k] = nvt_fault_op_count(fault);
        if (k > 2 && ops_after[k] - ops_after[k - 1] > 2)
            checkpointing = k;
    }
    g_free(buf);
    nvramtdb_close(db);
    nvt_be_close(fault);
    g_assert_cmpuint(checkpointing, >, 2);
    p.fill_writes = checkpointing - 2;
    g_assert_cmpint(write_blob(checkpointing, &p), ==, LARGE);

    /* The full run: the layout this sweep is for, and its cut points. */
    db = start_on_fault(sc->commit, base, len, &fault);
    ops_after[0] = nvt_fault_op_count(fault);
    run_writes(db, &p, fault, ops_after, n_writes(&p), &o);
    g_assert_cmpuint(o.in_flight, ==, 0);
    uint64_t first_cut = ops_after[checkpointing - 1] - ops_after[0] + 1;
    uint64_t last_cut = ops_after[n_writes(&p)] - ops_after[0];
    if (sc->commit == COMMIT_JOURNAL) {
        /* Before close (which checkpoints again): the new epoch's records
         * at the ring's start, older ones still valid beyond them. */
        size_t now_len;
        uint8_t *now = nvt_fault_crash_image(fault, 0, &now_len);
        unsigned all, first;
        ring_headers(now, now_len, &all, &first);
        free(now);
        g_assert_cmpuint(first, ==, 3);
        g_assert_cmpuint(all, >, first);
    }
    nvramtdb_close(db);
    nvt_be_close(fault);

    unsigned seeds = crash_seeds(), images = 0, cuts = 0;
    int models = sc->commit == COMMIT_JOURNAL ? 2 : 1;
    for (uint64_t cut = first_cut; cut <= last_cut; cut++, cuts++) {
        db = start_on_fault(sc->commit, base, len, &fault);
        /* ops_after[0] counted the start: arm relative to now, which is
         * the same point in the same deterministic run. */
        nvt_fault_arm(fault, NVT_FAULT_POWER_CUT, NVT_FAULT_ON_ANY, cut, 0);
        run_writes(db, &p, fault, NULL, n_writes(&p), &o);
        nvramtdb_close(db);
        g_assert_true(nvt_fault_fired(fault));
        for (int m = 0; m < models; m++) {
            nvt_fault_set_sector_atomic(fault, m == 0);
            for (uint32_t seed = 0; seed < seeds; seed++) {
                char ctx[200];
                size_t img_len;
                uint8_t *img = nvt_fault_crash_image(fault, seed, &img_len);
                snprintf(ctx, sizeof ctx, "%s, %s sectors, value %u bytes, power cut at op "
                         "%llu of %llu..%llu (write %u in flight), seed %u",
                         commit_names[sc->commit], m == 0 ? "atomic" : "garbage", sc->size,
                         (unsigned long long)cut, (unsigned long long)first_cut,
                         (unsigned long long)last_cut, o.in_flight, seed);
                bool ok = verify(sc->commit, img, img_len, &p, &o, ctx);
                free(img);
                images++;
                if (!ok) {
                    nvt_be_close(fault);
                    goto out;
                }
            }
        }
        nvt_be_close(fault);
    }
    g_test_message("%s, value %u bytes: %u writes, checkpoint at write %u, %u cut points, "
                   "%u crash images verified", commit_names[sc->commit], sc->size,
                   n_writes(&p), checkpointing, cuts, images);
out:
    g_free(ops_after);
    g_free(base);
}

int main(int argc, char **argv)
{
    test_init_keep_going(&argc, argv);
    static sweep_case cases[N_COMMITS][G_N_ELEMENTS(sizes)];
    for (int c = 0; c < N_COMMITS; c++) {
        for (size_t i = 0; i < G_N_ELEMENTS(sizes); i++) {
            cases[c][i] = (sweep_case){ .commit = (commit_mode)c, .size = sizes[i] };
            add_test(&cases[c][i], test_cut_around_checkpoint,
                     "/crash/checkpoint/%s/power-cut/value-%u-bytes", commit_names[c],
                     sizes[i]);
        }
    }
    return run_tests();
}
