/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * test-store: the store's own promises — a deterministic formatting
 * recipe, reservations that change nothing when they cannot fit, one tdb
 * transaction (tdb's four syncs) per write, and recovery after a failed
 * commit.
 */
#include "config.h"

#include <string.h>

#include "image.h"
#include "journal.h"
#include "store.h"
#include "testutil.h"

static void test_fresh_layout_is_deterministic(void)
{
    nvt_blob_spec a[] = { { "x/b", 5000 }, { "x/a", 100 } };
    nvt_blob_spec b[] = { { "x/a", 100 }, { "x/b", 5000 } };
    uint8_t *ta, *tb;
    uint64_t la, lb;
    TU_OK(nvt_store_build_fresh(a, 2, &ta, &la));
    TU_OK(nvt_store_build_fresh(b, 2, &tb, &lb));
    g_assert_cmpmem(ta, la, tb, lb);
    g_free(ta);
    g_free(tb);
}

static void test_failed_reservation_changes_nothing(void)
{
    static const tu_blob blobs[] = { { "dev/a", 1000 } };
    int rc;
    nvt_backend *be = nvt_mem_backend_new(NULL, 0);
    nvramtdb *db = tu_start(nvt_be_borrow(be), 0, blobs, 1, &rc);
    g_assert_nonnull(db);
    TU_OK(nvramtdb_write(db, "dev/a", "value", 5, 0, NULL, NULL));
    TU_OK(nvramtdb_close(db));  /* checkpoints: the journal is empty */
    size_t len;
    uint8_t *before = tu_mem_copy(be, &len);
    nvt_be_close(be);

    /* The image was sized for dev/a alone: a large new blob cannot fit. */
    static const tu_blob more[] = { { "dev/a", 1000 }, { "dev/huge", 4 << 20 } };
    nvt_backend *copy = nvt_mem_backend_new_capped(len);
    TU_OK(nvt_be_pwrite(copy, before, len, 0));
    nvramtdb *db2;
    TU_OK(nvt_open_backend(copy, 0, &db2));
    for (size_t i = 0; i < 2; i++)
        TU_OK(nvramtdb_register_blob(db2, more[i].name, more[i].max_size));
    g_assert_cmpint(nvramtdb_start(db2, 0), ==, -ENOSPC);
    g_assert_nonnull(strstr(nvramtdb_last_error(), "dev/huge"));
    size_t after_len;
    const uint8_t *after = nvt_mem_backend_data(copy, &after_len);
    g_assert_cmpmem(after, after_len, before, len);
    nvramtdb_close(db2);
    g_free(before);
}

static void test_journal_commit_costs_one_flush(void)
{
    static const tu_blob blobs[] = { { "dev/a", 4096 }, { "dev/b", 65536 } };
    int rc;
    nvramtdb *db = tu_start(nvt_mem_backend_new(NULL, 0), 0, blobs, 2, &rc);
    uint8_t buf[65536];
    nvramtdb_info i0 = { .struct_size = sizeof i0 }, i1 = { .struct_size = sizeof i1 };
    TU_OK(nvramtdb_get_info(db, &i0));
    g_assert_true(i0.journaled);
    for (int i = 0; i < 10; i++) {
        tu_fill(buf, sizeof buf, (uint32_t)i);
        TU_OK(nvramtdb_write(db, i % 2 ? "dev/a" : "dev/b", buf, i % 2 ? 4096 : sizeof buf, 0,
                             NULL, NULL));
    }
    TU_OK(nvramtdb_get_info(db, &i1));
    g_assert_cmpuint(i1.commits - i0.commits, ==, 10);
    g_assert_cmpuint(i1.flushes - i0.flushes, ==, 10);
    tu_assert_blob(db, "dev/a", buf, 4096);
    nvramtdb_close(db);
}

static void test_stock_commit_costs_four_flushes(void)
{
    static const tu_blob blobs[] = { { "dev/a", 4096 } };
    int rc;
    nvramtdb *db = tu_start(nvt_mem_backend_new(NULL, 0), NVRAMTDB_OPEN_STOCK_COMMIT, blobs, 1,
                            &rc);
    uint8_t buf[4096];
    nvramtdb_info i0 = { .struct_size = sizeof i0 }, i1 = { .struct_size = sizeof i1 };
    TU_OK(nvramtdb_get_info(db, &i0));
    for (int i = 0; i < 10; i++) {
        tu_fill(buf, sizeof buf, (uint32_t)i);
        TU_OK(nvramtdb_write(db, "dev/a", buf, sizeof buf, 0, NULL, NULL));
    }
    TU_OK(nvramtdb_get_info(db, &i1));
    g_assert_false(i1.journaled);
    g_assert_cmpuint(i1.commits - i0.commits, ==, 10);
    /* tdb syncs recovery data, recovery magic, data and the cleared magic. */
    g_assert_cmpuint(i1.flushes - i0.flushes, ==, 40);
    nvramtdb_close(db);
}

/* Opening an image whose journal holds nothing to replay writes nothing
 * and flushes nothing (start-up latency), and the next commit still
 * lands; an image with frames to replay is flushed at open. */
static void test_clean_open_flushes_nothing(void)
{
    static const tu_blob blobs[] = { { "dev/a", 4096 } };
    int rc;
    nvt_backend *mem = nvt_mem_backend_new(NULL, 0);
    nvramtdb *db = tu_start(nvt_be_borrow(mem), 0, blobs, 1, &rc);
    g_assert_nonnull(db);
    TU_OK(nvramtdb_write(db, "dev/a", "first", 5, 0, NULL, NULL));
    TU_OK(nvramtdb_close(db));  /* checkpoints: the journal is empty */

    nvt_backend *counted = nvt_counting_backend_new(nvt_be_borrow(mem));
    db = tu_start(nvt_be_borrow(counted), 0, blobs, 1, &rc);
    g_assert_nonnull(db);
    g_assert_cmpuint(nvt_counting_backend_flushes(counted), ==, 0);
    TU_OK(nvramtdb_write(db, "dev/a", "second", 6, 0, NULL, NULL));
    g_assert_cmpuint(nvt_counting_backend_flushes(counted), ==, 1);
    /* What a kill -9 now would leave: "second" only in the journal. */
    size_t len;
    uint8_t *killed = tu_mem_copy(mem, &len);
    TU_OK(nvramtdb_close(db));
    nvt_be_close(counted);
    nvt_be_close(mem);

    counted = nvt_counting_backend_new(nvt_mem_backend_new(killed, len));
    db = tu_start(nvt_be_borrow(counted), 0, blobs, 1, &rc);
    g_assert_nonnull(db);
    g_assert_cmpuint(nvt_counting_backend_flushes(counted), >=, 1);  /* replayed */
    tu_assert_blob(db, "dev/a", "second", 6);
    TU_OK(nvramtdb_close(db));
    nvt_be_close(counted);
    g_free(killed);
}

/* Replaying a run of 60 commits of one blob (no checkpoint between them:
 * what a kill -9 leaves) writes each changed page once, not once per
 * commit, and the blob reads as after the last commit. */
static void test_replay_writes_each_page_once(void)
{
    static const tu_blob blobs[] = { { "dev/a", 1024 } };
    const unsigned commits = 60;
    int rc;
    nvt_backend *mem = nvt_mem_backend_new(NULL, 0);
    nvramtdb *db = tu_start(nvt_be_borrow(mem), 0, blobs, 1, &rc);
    g_assert_nonnull(db);
    char value[32];
    for (unsigned i = 0; i < commits; i++) {
        g_snprintf(value, sizeof value, "value %u", i);
        TU_OK(nvramtdb_write(db, "dev/a", value, strlen(value), 0, NULL, NULL));
    }
    size_t len;
    uint8_t *killed = tu_mem_copy(mem, &len);
    TU_OK(nvramtdb_close(db));
    nvt_be_close(mem);

    nvt_backend *fb = nvt_fault_backend_new(nvt_mem_backend_new(killed, len));
    db = tu_start(nvt_be_borrow(fb), 0, blobs, 1, &rc);
    g_assert_nonnull(db);
    uint64_t ops = nvt_fault_op_count(fb);  /* pwrites and flushes of the start */
    g_test_message("start replaying %u commits: %" G_GUINT64_FORMAT " writes and flushes",
                   commits, ops);
    g_assert_cmpuint(ops, >=, 3);           /* replayed: pages, flush, retire */
    g_assert_cmpuint(ops, <, commits / 4);
    tu_assert_blob(db, "dev/a", value, strlen(value));
    TU_OK(nvramtdb_close(db));
    nvt_be_close(fb);
    g_free(killed);
}

/* Each of a commit's flushes fails once in turn (four in stock mode, one
 * with the journal), then each of its writes: the write fails, the blob
 * holds the old or the new value, and the next write works. */
static void failed_commit_recovers(unsigned flags)
{
    static const tu_blob blobs[] = { { "dev/a", 4096 } };
    int rc;
    nvt_backend *mem = nvt_mem_backend_new(NULL, 0);
    nvramtdb *db = tu_start(nvt_be_borrow(mem), flags, blobs, 1, &rc);
    TU_OK(nvramtdb_write(db, "dev/a", "old", 3, 0, NULL, NULL));
    TU_OK(nvramtdb_close(db));
    size_t len;
    uint8_t *image = tu_mem_copy(mem, &len);
    nvt_be_close(mem);

    const unsigned flushes = (flags & NVRAMTDB_OPEN_STOCK_COMMIT) ? 4 : 1;
    for (unsigned kind = 0; kind < 2; kind++) {
        nvt_fault_ops on = kind ? NVT_FAULT_ON_WRITE : NVT_FAULT_ON_FLUSH;
        for (uint64_t n = 1;; n++) {
            nvt_backend *fb = nvt_fault_backend_new(nvt_mem_backend_new(image, len));
            db = tu_start(fb, flags, blobs, 1, &rc);
            g_assert_nonnull(db);
            uint64_t before = nvt_fault_op_count(fb);
            nvt_fault_arm(fb, NVT_FAULT_TRANSIENT, on, n, EIO);
            int r = nvramtdb_write(db, "dev/a", "new", 3, 0, NULL, NULL);
            if (!nvt_fault_fired(fb)) {
                /* n is past the commit's last operation of that kind. */
                TU_OK(r);
                g_assert_cmpuint(n, >, kind ? 1 : flushes);
                nvramtdb_close(db);
                break;
            }
            g_assert_cmpuint(nvt_fault_op_count(fb), >, before);
            g_assert_cmpint(r, ==, -EIO);
            g_assert_cmpstr(nvramtdb_last_error(), !=, "");
            uint8_t *got;
            size_t got_len;
            TU_OK(nvramtdb_read(db, "dev/a", &got, &got_len));
            g_assert_cmpuint(got_len, ==, 3);
            g_assert_true(memcmp(got, "old", 3) == 0 || memcmp(got, "new", 3) == 0);
            free(got);
            TU_OK(nvramtdb_write(db, "dev/a", "next", 4, 0, NULL, NULL));
            tu_assert_blob(db, "dev/a", "next", 4);
            tu_assert_healthy(db);
            nvramtdb_close(db);
        }
    }
    g_free(image);
}

static void test_failed_commit_recovers_journal(void)
{
    failed_commit_recovers(0);
}

static void test_failed_commit_recovers_stock(void)
{
    failed_commit_recovers(NVRAMTDB_OPEN_STOCK_COMMIT);
}

/*
 * A reservation whose second transaction (rewriting every record at its
 * maximum) is too large for the journal runs as a stock tdb transaction,
 * after the first one went through the journal.  Writes outside the
 * journal need it empty (docs/FORMAT.md): otherwise reads would be served
 * from the journaled copies of pages the transaction rewrote in place,
 * and a crash would replay those older copies over it.  The image is
 * formatted by hand with a journal of 16 pages: dev/y (a new blob) fits
 * a record on its own, dev/x and dev/y together do not.
 */
static void test_reservation_outside_small_journal(void)
{
    static const tu_blob old_set[] = { { "dev/x", 36 * 1024 } };
    static const tu_blob new_set[] = { { "dev/x", 36 * 1024 }, { "dev/y", 16 * 1024 } };
    nvt_blob_spec spec = { "dev/x", 36 * 1024 };
    uint8_t *tdb;
    uint64_t len;
    TU_OK(nvt_store_build_fresh(&spec, 1, &tdb, &len));
    nvt_backend *be = nvt_mem_backend_new(NULL, 0);
    uint64_t journal = 16 * 4096, size = 8 * 1024 * 1024;
    TU_OK(nvt_be_resize(be, size));
    nvt_image *img;
    TU_OK(nvt_image_format(be, size, tdb, len, journal, &img));
    nvt_image_free(img);
    g_free(tdb);

    int rc;
    nvramtdb *db = tu_start(nvt_be_borrow(be), 0, old_set, 1, &rc);
    TU_OK(rc);
    uint8_t *x = g_malloc(old_set[0].max_size);
    tu_fill(x, old_set[0].max_size, 7);
    TU_OK(nvramtdb_write(db, "dev/x", x, old_set[0].max_size, NVRAMTDB_WAIT_COMPLETION,
                         NULL, NULL));
    TU_OK(nvramtdb_close(db));

    /* Start with dev/y added, and stop as a crash would: no close. */
    db = tu_start(nvt_be_borrow(be), 0, new_set, 2, &rc);
    TU_OK(rc);
    tu_assert_blob(db, "dev/x", x, old_set[0].max_size);
    tu_assert_healthy(db);
    size_t crashed_len;
    uint8_t *crashed = tu_mem_copy(be, &crashed_len);
    TU_OK(nvramtdb_close(db));
    /* The rule the fallback must keep: nothing left in the ring that a
     * recovery would replay over the stock transaction's in-place writes. */
    nvt_backend *copy = nvt_mem_backend_new(crashed, crashed_len);
    TU_OK(nvt_image_open(copy, &img));
    nvt_journal *j;
    TU_OK(nvt_journal_open(copy, img->sb.journal_offset, img->sb.journal_length, img->sb.uuid,
                           &j));
    g_assert_false(nvt_journal_pending(j, NULL));
    nvt_journal_free(j);
    nvt_image_free(img);
    nvt_be_close(copy);

    /* The space the reservation made must really be there: both blobs
     * rewritten at their maxima many times, in one group and alone. */
    uint8_t *y = g_malloc(new_set[1].max_size);
    db = tu_start(nvt_mem_backend_new(crashed, crashed_len), 0, new_set, 2, &rc);
    TU_OK(rc);
    tu_assert_blob(db, "dev/x", x, old_set[0].max_size);
    tu_assert_healthy(db);
    for (uint32_t round = 0; round < 20; round++) {
        tu_fill(x, old_set[0].max_size, 100 + round);
        tu_fill(y, new_set[1].max_size, 200 + round);
        unsigned flags = round % 2 ? NVRAMTDB_WAIT_COMPLETION : NVRAMTDB_ASYNC;
        TU_OK(nvramtdb_write(db, "dev/x", x, old_set[0].max_size, flags, NULL, NULL));
        TU_OK(nvramtdb_write(db, "dev/y", y, new_set[1].max_size, flags, NULL, NULL));
        TU_OK(nvramtdb_flush(db));
    }
    tu_assert_blob(db, "dev/x", x, old_set[0].max_size);
    tu_assert_blob(db, "dev/y", y, new_set[1].max_size);
    tu_assert_healthy(db);
    TU_OK(nvramtdb_close(db));
    g_free(crashed);
    g_free(x);
    g_free(y);
    nvt_be_close(be);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/store/fresh-layout-deterministic", test_fresh_layout_is_deterministic);
    g_test_add_func("/store/failed-reservation-changes-nothing",
                    test_failed_reservation_changes_nothing);
    g_test_add_func("/store/journal-commit-one-flush", test_journal_commit_costs_one_flush);
    g_test_add_func("/store/stock-commit-four-flushes", test_stock_commit_costs_four_flushes);
    g_test_add_func("/store/clean-open-flushes-nothing", test_clean_open_flushes_nothing);
    g_test_add_func("/store/replay-writes-each-page-once", test_replay_writes_each_page_once);
    g_test_add_func("/store/failed-commit-recovers/journal", test_failed_commit_recovers_journal);
    g_test_add_func("/store/failed-commit-recovers/stock", test_failed_commit_recovers_stock);
    g_test_add_func("/store/reservation-outside-small-journal",
                    test_reservation_outside_small_journal);
    return g_test_run();
}
