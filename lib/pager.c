/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * pager.c — the commit engine (see pager.h, journal.h, docs/FORMAT.md).
 *
 * A page of the tdb region has up to four copies, and each read takes the
 * first one present: staged (written by the open group), journaled (in a
 * committed frame, not yet in place), clean (a cached copy of the page in
 * place) and the page in place.  A group's staged pages become journaled
 * by its frame; a checkpoint makes the journaled pages clean by writing
 * them in place.  So a page rewritten by many commits is written in place
 * once per checkpoint, and tdb's lookups in a commit cost no system call.
 *
 * Invariants (checked by nvt_assert in debug builds, at the places named):
 *  1. A read returns the newest copy of each page: staged > journaled >
 *     clean > in place (region_read, copy_of_page).
 *  2. A group's commit point is the single durable write of its frame
 *     (nvt_journal_append_frame): before it the group did not happen,
 *     after it recovery replays it.  The group's pages reach the disk
 *     through no other write before the next checkpoint.
 *  3. Without a latched error, the journaled-page table is empty if and
 *     only if the ring holds no frame of the current epoch.  A pager with
 *     a latched error takes no commits: the store replaces it, and
 *     recovery rebuilds the pages from the disk.
 *  4. The first logging of a page after a checkpoint (or open) is the
 *     whole page, since replay starts from the page in place, which a torn
 *     checkpoint may have damaged; later frames may carry only the bytes
 *     that differ from the journaled copy (group_extents).
 *  5. A frame is never overwritten before its pages are durable in place:
 *     a checkpoint writes the pages, persists the length, flushes, and
 *     only then retires the ring (a flushed zero header) and restarts it
 *     under a new epoch.
 *  6. Nothing is written in place while pages are journaled (write_in_place):
 *     the fallback for a group too large for any frame checkpoints first
 *     (nvt_pager_prepare_in_place).  Otherwise a read or a recovery would
 *     bring back the older journaled copy.
 *  7. Recovery accepts a ring only if every frame's pages lie inside the
 *     tdb region and the last frame's tdb length fits the region (and
 *     tdb's 32-bit offsets); otherwise the image is refused (EBADMSG)
 *     before anything is written.  That length replaces the superblock's.
 *  8. Recovery checks every frame, replays them in order, persists the
 *     length, flushes, and only then retires the ring: a crash at any
 *     step replays the same frames again, which gives the same pages.
 *
 * Lock order (debug.h ranks; a thread takes locks only in this order):
 *     store < db handle < queue < index < tdb open < vfs table
 * (the store lock spans whole commits; the others are held briefly).
 * The pager has no lock of its own: the store lock serialises every call
 * on an image's pager (stores private to one thread need none).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "debug.h"
#include "error.h"
#include "pager.h"

/* Journal mode keeps pages read from the image in memory, so that tdb's
 * lookups in a commit cost no system call: up to this many pages. */
#define CLEAN_CACHE_MAX_PAGES 4096u
/* Changed runs of a page closer than this are logged as one extent: an
 * extent's table entry costs 16 bytes. */
#define DELTA_MERGE_GAP 32u
/* A page with more changed runs than this is logged whole. */
#define DELTA_MAX_RUNS 16u

struct nvt_pager {
    nvt_backend *be;
    uint64_t base;
    uint64_t capacity;
    uint64_t length;
    nvt_pager_length_fn *persist;
    void *opaque;
    int latched;
    bool refused_growth;
    uint64_t flushes;
    uint64_t writes;
    uint64_t checkpoints;
    nvt_journal *journal;      /* owned; NULL: none */
    /* journal mode (journal set, tables present) */
    bool journal_mode;
    GHashTable *journaled;     /* page -> newest journaled copy, not yet in place */
    GHashTable *clean;         /* page -> copy equal to what is in place (a cache) */
    GHashTable *staged;        /* page -> copy written by the open group; NULL: none */
    uint64_t group_length;     /* length when the group began */
    uint64_t persisted_length; /* length the superblock holds */
    int (*guard)(void *opaque);  /* the image's guard (image.h), or NULL */
    void *guard_opaque;
};

nvt_pager *nvt_pager_new(nvt_backend *be, uint64_t base, uint64_t capacity, uint64_t length,
                         nvt_pager_length_fn *persist, void *opaque)
{
    nvt_pager *pg = g_new0(nvt_pager, 1);
    pg->be = be;
    pg->base = base;
    pg->capacity = capacity;
    pg->length = length;
    pg->persist = persist;
    pg->opaque = opaque;
    pg->persisted_length = length;
    return pg;
}

void nvt_pager_free(nvt_pager *pg)
{
    if (!pg)
        return;
    if (pg->staged)
        g_hash_table_destroy(pg->staged);
    if (pg->journaled)
        g_hash_table_destroy(pg->journaled);
    if (pg->clean)
        g_hash_table_destroy(pg->clean);
    nvt_journal_free(pg->journal);
    g_free(pg);
}

uint64_t nvt_pager_length(const nvt_pager *pg) { return pg->length; }
uint64_t nvt_pager_capacity(const nvt_pager *pg) { return pg->capacity; }
int nvt_pager_latched_error(const nvt_pager *pg) { return pg->latched; }
void nvt_pager_clear_error(nvt_pager *pg) { pg->latched = 0; }
uint64_t nvt_pager_flushes(const nvt_pager *pg) { return pg->flushes; }
uint64_t nvt_pager_writes(const nvt_pager *pg) { return pg->writes; }
uint64_t nvt_pager_checkpoints(const nvt_pager *pg) { return pg->checkpoints; }
bool nvt_pager_journaled(const nvt_pager *pg) { return pg->journal_mode; }

bool nvt_pager_take_enospc(nvt_pager *pg)
{
    bool was = pg->refused_growth;
    pg->refused_growth = false;
    return was;
}

uint32_t nvt_pager_max_group_pages(const nvt_pager *pg)
{
    return pg->journal ? nvt_journal_max_pages(pg->journal) : 0;
}

uint32_t nvt_pager_group_pages(const nvt_pager *pg)
{
    return pg->staged ? g_hash_table_size(pg->staged) : 0;
}

/* Remember the first backend error; the caller's commit will see it. */
static void latch(nvt_pager *pg, int neg_errno)
{
    nvt_assert(neg_errno < 0);
    if (!pg->latched)
        pg->latched = neg_errno;
}

/* Invariant 3, while nothing is latched. */
static void assert_table_matches_ring(const nvt_pager *pg)
{
    nvt_assert(!pg->journal_mode || pg->latched ||
               (g_hash_table_size(pg->journaled) == 0) == nvt_journal_empty(pg->journal));
}

/* ---- page tables -------------------------------------------------------- */

static GHashTable *page_table(void)
{
    return g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, g_free);
}

static int page_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The pages of @table, sorted, and their data. */
static uint32_t sorted_pages(GHashTable *table, uint64_t **pages, const uint8_t ***data)
{
    uint32_t n = g_hash_table_size(table), i = 0;
    GHashTableIter it;
    gpointer k, v;
    *pages = g_new(uint64_t, n ? n : 1);
    *data = g_new(const uint8_t *, n ? n : 1);
    g_hash_table_iter_init(&it, table);
    while (g_hash_table_iter_next(&it, &k, &v))
        (*pages)[i++] = *(uint64_t *)k;
    qsort(*pages, n, sizeof **pages, page_cmp);
    for (i = 0; i < n; i++)
        (*data)[i] = g_hash_table_lookup(table, &(*pages)[i]);
    return n;
}

void nvt_pager_attach_journal(nvt_pager *pg, nvt_journal *j)
{
    nvt_assert(!pg->journal && !nvt_journal_pending(j, NULL));
    pg->journal = j;
    pg->journal_mode = true;
    pg->journaled = page_table();
    pg->clean = page_table();
    pg->persisted_length = pg->length;
}

/* The clean copy of @page, read from the image into the cache if there
 * is room; NULL if it cannot be cached. */
static const uint8_t *cached_page(nvt_pager *pg, uint64_t page)
{
    uint8_t *p = g_hash_table_lookup(pg->clean, &page);
    if (p || g_hash_table_size(pg->clean) >= CLEAN_CACHE_MAX_PAGES ||
        (page + 1) * NVT_PAGE_SIZE > pg->capacity)
        return p;
    p = g_malloc(NVT_PAGE_SIZE);
    if (nvt_be_pread(pg->be, p, NVT_PAGE_SIZE, pg->base + page * NVT_PAGE_SIZE) < 0) {
        g_free(p);
        return NULL;
    }
    g_hash_table_insert(pg->clean, g_memdup2(&page, sizeof page), p);
    return p;
}

/* Invariant 1 below the open group: the newest copy of @page in memory
 * (journaled, else clean), or NULL to read it in place. */
static const uint8_t *copy_of_page(nvt_pager *pg, uint64_t page)
{
    const uint8_t *p = g_hash_table_lookup(pg->journaled, &page);
    return p ? p : cached_page(pg, page);
}

/* ---- file access -------------------------------------------------------- */

int nvt_pager_set_length(nvt_pager *pg, uint64_t len)
{
    if (len == pg->length)
        return 0;
    if (len > pg->capacity) {
        pg->refused_growth = true;
        return -ENOSPC;
    }
    if (pg->staged) {
        pg->length = len;  /* persisted by the group's commit */
        return 0;
    }
    if (len > pg->length) {
        /* Backends sized for the whole image need nothing; a growable one
         * (memory) must really hold the new bytes, as a file would. */
        uint64_t have;
        int r = nvt_be_get_size(pg->be, &have);
        if (r == 0 && have < pg->base + len)
            r = nvt_be_resize(pg->be, pg->base + len);
        if (r < 0) {
            latch(pg, r);
            return r;
        }
    }
    if (pg->persist) {
        int r = pg->persist(pg->opaque, len);
        if (r < 0) {
            latch(pg, r);
            return r;
        }
        pg->persisted_length = len;
    }
    pg->length = len;
    return 0;
}

static int region_read(nvt_pager *pg, uint8_t *buf, size_t len, uint64_t off)
{
    if (!pg->journal_mode)
        return nvt_be_pread(pg->be, buf, len, pg->base + off);
    while (len) {
        uint64_t page = off / NVT_PAGE_SIZE, in = off % NVT_PAGE_SIZE;
        size_t n = (size_t)MIN((uint64_t)len, NVT_PAGE_SIZE - in);
        const uint8_t *p = pg->staged ? g_hash_table_lookup(pg->staged, &page) : NULL;
        if (!p)
            p = copy_of_page(pg, page);
        if (p) {
            memcpy(buf, p + in, n);
        } else {
            int r = nvt_be_pread(pg->be, buf, n, pg->base + off);
            if (r < 0)
                return r;
        }
        buf += n;
        off += n;
        len -= n;
    }
    return 0;
}

int nvt_pager_read(nvt_pager *pg, void *buf, size_t len, uint64_t off)
{
    nvt_assert(off + len <= pg->length);
    return region_read(pg, buf, len, off);
}

/* A staged page carries, after its NVT_PAGE_SIZE bytes, the span of it
 * the group wrote: the only bytes that can differ from the version it was
 * copied from, so the only ones group_commit compares. */
typedef struct written_span {
    uint32_t lo, hi;
} written_span;

static written_span *span_of(uint8_t *staged_page)
{
    return (written_span *)(void *)(staged_page + NVT_PAGE_SIZE);
}

/* Copy a write into the staged pages of the open group. */
static int stage_write(nvt_pager *pg, const uint8_t *buf, size_t len, uint64_t off)
{
    while (len) {
        uint64_t page = off / NVT_PAGE_SIZE, in = off % NVT_PAGE_SIZE;
        size_t n = (size_t)MIN((uint64_t)len, NVT_PAGE_SIZE - in);
        uint8_t *p = g_hash_table_lookup(pg->staged, &page);
        if (!p) {
            const uint8_t *cur = copy_of_page(pg, page);
            p = g_malloc(NVT_PAGE_SIZE + sizeof(written_span));
            if (cur) {
                memcpy(p, cur, NVT_PAGE_SIZE);
            } else {
                int r = nvt_be_pread(pg->be, p, NVT_PAGE_SIZE, pg->base + page * NVT_PAGE_SIZE);
                if (r < 0) {
                    g_free(p);
                    return r;
                }
            }
            *span_of(p) = (written_span){ .lo = NVT_PAGE_SIZE, .hi = 0 };
            g_hash_table_insert(pg->staged, g_memdup2(&page, sizeof page), p);
        }
        written_span *w = span_of(p);
        w->lo = MIN(w->lo, (uint32_t)in);
        w->hi = MAX(w->hi, (uint32_t)(in + n));
        memcpy(p + in, buf, n);
        buf += n;
        off += n;
        len -= n;
    }
    return 0;
}

/* Writes that go straight to the image make cached copies stale. */
static void forget_pages(nvt_pager *pg, uint64_t off, size_t len)
{
    if (!pg->clean || !len)
        return;
    for (uint64_t page = off / NVT_PAGE_SIZE; page <= (off + len - 1) / NVT_PAGE_SIZE; page++)
        g_hash_table_remove(pg->clean, &page);
}

static int write_in_place(nvt_pager *pg, const void *buf, size_t len, uint64_t off)
{
    /* Invariant 6. */
    nvt_assert(!pg->journal_mode || g_hash_table_size(pg->journaled) == 0);
    forget_pages(pg, off, len);
    return nvt_be_pwrite(pg->be, buf, len, pg->base + off);
}

int nvt_pager_write(nvt_pager *pg, const void *buf, size_t len, uint64_t off)
{
    if (len == 0)
        return 0;
    if (off > pg->capacity || len > pg->capacity - off) {
        pg->refused_growth = true;
        return -ENOSPC;
    }
    if (off + len > pg->length) {
        int r = nvt_pager_set_length(pg, off + len);
        if (r < 0)
            return r;
    }
    int r = pg->staged ? stage_write(pg, buf, len, off) : write_in_place(pg, buf, len, off);
    if (r < 0) {
        latch(pg, r);
        return r;
    }
    pg->writes++;
    return 0;
}

int nvt_pager_flush(nvt_pager *pg)
{
    if (pg->staged)
        return 0;  /* the group's commit flushes */
    int r = nvt_be_flush(pg->be);
    if (r < 0) {
        latch(pg, r);
        return r;
    }
    pg->flushes++;
    return 0;
}

/* ---- checkpoints -------------------------------------------------------- */

/* Invariant 5: every journaled page in place, the length, one flush; only
 * then the ring is retired.  The journaled copies become the clean cache. */
static int checkpoint(nvt_pager *pg)
{
    uint64_t *pages;
    const uint8_t **data;
    uint32_t n = sorted_pages(pg->journaled, &pages, &data);
    uint8_t *run = NULL;
    int r = 0;

    assert_table_matches_ring(pg);
    /* Before anything goes in place: is this writer still the image's
     * (owner.h)?  If not, stop here; the frames stay for the owner. */
    if ((n || pg->persisted_length != pg->length) && pg->guard)
        r = pg->guard(pg->guard_opaque);
    /* Each run of consecutive pages in one write. */
    for (uint32_t i = 0; r == 0 && i < n;) {
        uint32_t span = 1;
        while (i + span < n && pages[i + span] == pages[i] + span)
            span++;
        const uint8_t *src = data[i];
        if (span > 1) {
            run = g_realloc(run, (size_t)span * NVT_PAGE_SIZE);
            for (uint32_t m = 0; m < span; m++)
                memcpy(run + (size_t)m * NVT_PAGE_SIZE, data[i + m], NVT_PAGE_SIZE);
            src = run;
        }
        r = nvt_be_pwrite(pg->be, src, (size_t)span * NVT_PAGE_SIZE,
                          pg->base + pages[i] * NVT_PAGE_SIZE);
        pg->writes++;
        i += span;
    }
    g_free(run);
    g_free(pages);
    g_free(data);
    /* The superblock's length follows (its own write is flushed), then
     * the pages are made durable: only then may the ring be reused. */
    if (r == 0 && pg->persisted_length != pg->length && pg->persist) {
        r = pg->persist(pg->opaque, pg->length);
        if (r == 0)
            pg->persisted_length = pg->length;
    }
    if (r == 0 && n) {
        r = nvt_be_flush(pg->be);
        pg->flushes++;
    }
    /* In place and durable: only now may the ring's frames be retired
     * (one more flush), so that none of them can start a replay once the
     * new epoch writes over them.  Nothing journaled: nothing to retire. */
    if (r == 0 && n) {
        r = nvt_journal_retire(pg->journal);
        pg->flushes++;
    }
    if (r < 0) {
        latch(pg, r);
        return r;
    }
    nvt_assert(nvt_journal_empty(pg->journal));
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, pg->journaled);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        g_hash_table_iter_steal(&it);
        if (g_hash_table_size(pg->clean) < CLEAN_CACHE_MAX_PAGES) {
            g_hash_table_replace(pg->clean, k, v);
        } else {
            g_free(k);
            g_free(v);
        }
    }
    pg->checkpoints++;
    assert_table_matches_ring(pg);
    return 0;
}

int nvt_pager_checkpoint(nvt_pager *pg)
{
    if (!pg->journal || pg->staged)
        return 0;
    if (pg->journal_mode)
        return checkpoint(pg);
    /* Stock mode: tdb's writes went in place; make them durable, then no
     * frame of an earlier life may replay over them. */
    int r = nvt_be_flush(pg->be);
    return r < 0 ? r : nvt_journal_retire(pg->journal);
}

int nvt_pager_prepare_in_place(nvt_pager *pg)
{
    nvt_assert(!pg->staged);
    int r = nvt_pager_checkpoint(pg);
    nvt_assert(r < 0 || !pg->journal_mode || g_hash_table_size(pg->journaled) == 0);
    return r;
}

/* ---- groups ------------------------------------------------------------- */

void nvt_pager_group_begin(nvt_pager *pg)
{
    g_assert(pg->journal_mode && !pg->staged);
    pg->staged = page_table();
    pg->group_length = pg->length;
}

void nvt_pager_group_abort(nvt_pager *pg)
{
    if (!pg->staged)
        return;
    g_hash_table_destroy(pg->staged);
    pg->staged = NULL;
    pg->length = pg->group_length;
}

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t w;
    memcpy(&w, p, sizeof w);
    return w;
}

/* Append to @out the extents in which page @now differs from @before
 * (both NVT_PAGE_SIZE bytes, equal outside @w); false if it is better
 * logged whole.  Skips equal 64-byte blocks, then scans 8-byte words;
 * byte precision only at a run's two ends. */
static bool page_delta(uint64_t page, const uint8_t *now, const uint8_t *before,
                       written_span w, GArray *out)
{
    guint first = out->len;
    uint32_t i = w.lo / 64 * 64, stop = MIN((w.hi + 63) / 64 * 64, NVT_PAGE_SIZE), bytes = 0;
    while (i < stop) {
        if (i % 64 == 0 && memcmp(now + i, before + i, 64) == 0) {
            i += 64;
            continue;
        }
        if (load64(now + i) == load64(before + i)) {
            i += 8;
            continue;
        }
        uint32_t start = i, last = i;  /* words holding the run's ends */
        uint32_t k = i + 8, same = 0;
        for (; k < NVT_PAGE_SIZE && same < DELTA_MERGE_GAP; k += 8) {
            if (load64(now + k) == load64(before + k)) {
                same += 8;
            } else {
                same = 0;
                last = k;
                if (bytes + (k - start) > NVT_PAGE_SIZE / 2)
                    break;  /* rewritten wholesale: no need to find the end */
            }
        }
        while (now[start] == before[start])
            start++;
        uint32_t end = last + 8;
        while (now[end - 1] == before[end - 1])
            end--;
        nvt_journal_extent e = { .page = page, .offset = start, .length = end - start,
                                 .data = now + start };
        g_array_append_val(out, e);
        bytes += e.length;
        if (out->len - first > DELTA_MAX_RUNS || bytes > NVT_PAGE_SIZE / 2) {
            g_array_set_size(out, first);
            return false;
        }
        i = k;
    }
    return true;
}

/* The extents of a group's frame.  Invariant 4: a page not journaled
 * since the last checkpoint is logged whole; the others only by the
 * bytes that differ from their journaled copy. */
static GArray *group_extents(nvt_pager *pg, const uint64_t *pages, const uint8_t **data,
                             uint32_t n)
{
    GArray *ext = g_array_sized_new(FALSE, FALSE, sizeof(nvt_journal_extent), n);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *before = g_hash_table_lookup(pg->journaled, &pages[i]);
        if (before && page_delta(pages[i], data[i], before, *span_of((uint8_t *)data[i]), ext))
            continue;
        nvt_journal_extent whole = { .page = pages[i], .offset = 0, .length = NVT_PAGE_SIZE,
                                     .data = data[i] };
        g_array_append_val(ext, whole);
    }
    return ext;
}

int nvt_pager_group_commit(nvt_pager *pg)
{
    GHashTable *staged = pg->staged;
    uint64_t *pages;
    const uint8_t **data;
    uint32_t n = sorted_pages(staged, &pages, &data);
    uint32_t max = nvt_journal_max_pages(pg->journal);
    int r = pg->latched;  /* invariant 3: a failed pager commits nothing */

    /* Leave group mode first: a checkpoint writes through. */
    pg->staged = NULL;
    uint64_t length = pg->length;
    bool appended = false;
    if (n && r == 0) {
        if (n > max)
            r = nvt_error(E2BIG, "commit of %u pages exceeds the journal's %u", n, max);
        else if (!nvt_journal_fits(pg->journal, n))
            r = checkpoint(pg);
        if (r == 0) {
            /* After the checkpoint: it empties the journaled-page table. */
            GArray *ext = group_extents(pg, pages, data, n);
            appended = ext->len > 0;  /* pages rewritten unchanged: no I/O */
            uint64_t frames = nvt_journal_frames(pg->journal);
            if (appended)
                r = nvt_journal_append_frame(pg->journal, (nvt_journal_extent *)ext->data,
                                             ext->len, length);
            /* Invariant 2: one frame, or none when nothing changed. */
            nvt_assert(r < 0 || nvt_journal_frames(pg->journal) == frames + appended);
            g_array_free(ext, TRUE);
        }
        if (r == 0 && appended)
            pg->flushes++;
        else if (r < 0 && r != -E2BIG)
            latch(pg, r);
    }
    g_free(pages);
    g_free(data);
    if (r < 0) {
        g_hash_table_destroy(staged);
        pg->length = pg->group_length;
        return r;
    }
    /* Durable: the group's pages become the newest journaled copies. */
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, staged);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        g_hash_table_iter_steal(&it);
        g_hash_table_remove(pg->clean, k);
        g_hash_table_replace(pg->journaled, k, v);
    }
    g_hash_table_destroy(staged);
    assert_table_matches_ring(pg);
    return 0;
}

/* ---- recovery ----------------------------------------------------------- */

static int persist_image_length(void *opaque, uint64_t len)
{
    return nvt_image_set_tdb_logical(opaque, len);
}

/* Invariant 7: every page a frame changes lies inside the tdb region. */
static int replay_check(void *opaque, uint64_t page, uint32_t offset G_GNUC_UNUSED,
                        const uint8_t *data G_GNUC_UNUSED, uint32_t length G_GNUC_UNUSED)
{
    nvt_image *img = opaque;
    if (page >= img->sb.tdb_capacity / NVT_PAGE_SIZE)
        return nvt_error(EBADMSG, "%s: journal frame names page %llu outside the tdb region",
                         img->be->name, (unsigned long long)page);
    return 0;
}

/* Replay merges the run's changes into copies of their pages and writes
 * each page once: a run of a few hundred frames changes the same few pages
 * hundreds of times, and one small pwrite per change made a replay after
 * 2000 TPM NV_Writes cost about 6 ms of start-up.  The bytes no change
 * covers are written back as they were read, so the image ends as with
 * change-by-change writes, and a torn page write during recovery is
 * repaired by the next replay the same way.  At most REPLAY_MAX_PAGES
 * copies are held: beyond that they are written out and dropped, and
 * later changes start again from the image. */
#ifdef NVT_TEST_POINTS
#define REPLAY_MAX_PAGES 3u      /* the test library: the crash tests cross it */
#else
#define REPLAY_MAX_PAGES 1024u   /* 4 MiB */
#endif

typedef struct replay_merge {
    nvt_image *img;
    GHashTable *pages;    /* page_table(): page -> its copy, changes applied */
} replay_merge;

/* Write the merged pages in page order and drop them. */
static int replay_write_merged(replay_merge *m)
{
    uint64_t *pages;
    const uint8_t **data;
    uint32_t n = sorted_pages(m->pages, &pages, &data);
    int r = 0;
    for (uint32_t i = 0; r == 0 && i < n; i++)
        r = nvt_be_pwrite(m->img->be, data[i], NVT_PAGE_SIZE,
                          m->img->sb.tdb_offset + pages[i] * NVT_PAGE_SIZE);
    g_free(pages);
    g_free(data);
    g_hash_table_remove_all(m->pages);
    return r;
}

static int replay_page(void *opaque, uint64_t page, uint32_t offset, const uint8_t *data,
                       uint32_t length)
{
    replay_merge *m = opaque;
    uint8_t *copy = g_hash_table_lookup(m->pages, &page);
    if (!copy) {
        int r = 0;
        if (g_hash_table_size(m->pages) >= REPLAY_MAX_PAGES)
            r = replay_write_merged(m);
        copy = g_malloc(NVT_PAGE_SIZE);
        if (r == 0)
            r = nvt_be_pread(m->img->be, copy, NVT_PAGE_SIZE,
                             m->img->sb.tdb_offset + page * NVT_PAGE_SIZE);
        if (r < 0) {
            g_free(copy);
            return r;
        }
        g_hash_table_insert(m->pages, g_memdup2(&page, sizeof page), copy);
    }
    memcpy(copy + offset, data, length);
    return 0;
}

static int replay_run(nvt_journal *j, nvt_image *img)
{
    replay_merge m = {
        .img = img,
        .pages = page_table(),
    };
    int r = nvt_journal_replay(j, replay_page, &m);
    if (r == 0)
        r = replay_write_merged(&m);
    g_hash_table_unref(m.pages);
    return r;
}

/* Invariant 8: replay the ring's frames (their in-place writes may be
 * missing or torn), make that durable, then retire the ring so that no
 * later replay can undo writes made outside it.  The ring is scanned
 * afresh: after a failed commit the run on disk is longer than the one
 * found at open. */
static int recover(nvt_image *img, bool after_failure, nvt_journal **out)
{
    nvt_journal *j = NULL;
    uint64_t len;
    int r = nvt_journal_open(img->be, img->sb.journal_offset, img->sb.journal_length,
                             img->sb.uuid, &j);
    if (r < 0)
        goto out;
    if (nvt_journal_pending(j, &len)) {
        if (len > img->sb.tdb_capacity || len > UINT32_MAX)
            r = nvt_error(EBADMSG, "%s: journal frame gives a tdb length of %llu beyond the "
                          "region's %llu bytes", img->be->name, (unsigned long long)len,
                          (unsigned long long)img->sb.tdb_capacity);
        if (r == 0)
            r = nvt_journal_replay(j, replay_check, img);
        if (r == 0)
            r = replay_run(j, img);
        if (r == 0 && len != img->sb.tdb_logical)
            r = nvt_image_set_tdb_logical(img, len);
        if (r == 0)
            r = nvt_be_flush(img->be);
    }
    /* Replayed and durable: retire the run so that it never replays again.
     * At a first open with no run there is nothing to retire (the ring's
     * start holds no valid first frame; the next epoch starts there), which
     * spares a clean open its only write and flush.  After a failed commit
     * the ring is retired anyway: the failed frame's writes may still be
     * on their way. */
    if (r == 0 && (after_failure || nvt_journal_pending(j, NULL)))
        r = nvt_journal_retire(j);
    nvt_assert(r < 0 || (!nvt_journal_pending(j, NULL) && nvt_journal_empty(j)));
    if (r < 0) {
        nvt_journal_free(j);
        j = NULL;
    }
out:
    if (r < 0)
        nvt_error_prefix(-r, "%s: journal recovery failed", img->be->name);
    *out = j;
    return r;
}

int nvt_pager_open_image(nvt_image *img, bool journaled, bool after_failure,
                         nvt_pager **out)
{
    nvt_journal *j = NULL;
    *out = NULL;
    if (img->guard) {
        /* Recovery writes in place: only the image's writer may. */
        int r = img->guard(img->guard_opaque);
        if (r < 0)
            return r;
    }
    if (img->sb.journal_length) {
        int r = recover(img, after_failure, &j);
        if (r < 0)
            return r;
    }
    /* After recovery, which may have changed the length. */
    nvt_pager *pg = nvt_pager_new(img->be, img->sb.tdb_offset, img->sb.tdb_capacity,
                                  img->sb.tdb_logical, persist_image_length, img);
    pg->guard = img->guard;
    pg->guard_opaque = img->guard_opaque;
    if (j && journaled)
        nvt_pager_attach_journal(pg, j);
    else
        pg->journal = j;  /* stock mode: only emptied */
    *out = pg;
    return 0;
}
