/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * store.c — blobs as tdb records; the space policy (see store.h).
 */
#include "config.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <openssl/crypto.h>
#include <tdb.h>

#include "crc32c.h"
#include "crypt.h"
#include "debug.h"
#include "error.h"
#include "pager.h"
#include "store.h"
#include "tdbfile.h"
#include "tdbguard.h"
#include "testhook.h"
#include "vfs.h"

#define NVT_TDB_HASH_SIZE 131
#define NVT_TDB_FLAGS (TDB_NOLOCK | TDB_NOMMAP | TDB_DISALLOW_NESTING)
/* A tdb file is addressed with 32-bit offsets; leave tdb room to round. */
#define NVT_TDB_MAX_LENGTH (UINT32_MAX - (1u << 20))

typedef struct blob_entry {
    nvt_record_meta meta;
    uint32_t registered_max;   /* 0: not registered by this handle */
    int damage;                /* 0, or -EBADMSG: header unreadable */
} blob_entry;

struct nvt_store {
    nvt_image *img;            /* NULL for in-memory builds */
    nvt_backend *be;
    nvt_pager *pg;             /* the tdb region's pages and their commits */
    nvt_vfile *vf;             /* the pager as tdb's file */
    bool journal_mode;         /* groups commit through the journal */
    struct tdb_context *tdb;
    GMutex index_lock;         /* NVT_LOCK_INDEX: validation runs beside commits */
    GHashTable *index;         /* name -> blob_entry */
    int failed;                /* sticky error once the tdb cannot be reopened */
    char failed_msg[512];
    char tdb_msg[NVT_TDBFILE_MSG_SIZE]; /* tdb's latest error log line */
    uint64_t commits;          /* tdb transactions */
    uint64_t groups;           /* groups committed (either mode) */
    bool encrypted;            /* the image seals values (crypt.h) */
    uint32_t extra;            /* stored bytes per value beyond its length */
    nvt_crypt *crypt;          /* borrowed; NULL or keyless until a key is given */
};

/* One change of a transaction: store @value, or delete when NULL.  With
 * @payload, the record is @value (its header) followed by @payload. */
typedef struct txn_op {
    const char *name;
    const uint8_t *value;
    size_t size;
    const uint8_t *payload;
    size_t payload_size;
} txn_op;

/* ---- names ---------------------------------------------------------- */

static bool name_part_ok(const char *p, size_t n)
{
    if (n == 0 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!g_ascii_isalnum(p[i]) && p[i] != '.' && p[i] != '_' && p[i] != '-')
            return false;
    return true;
}

int nvt_blob_name_check(const char *name)
{
    const char *slash = name ? strchr(name, '/') : NULL;
    if (!slash || !name_part_ok(name, (size_t)(slash - name)) ||
        !name_part_ok(slash + 1, strlen(slash + 1)))
        return nvt_error(EINVAL, "invalid blob name '%s': expected <device>/<entry>, each 1-63 "
                         "characters of [A-Za-z0-9._-]", name ? name : "(null)");
    return 0;
}

static TDB_DATA key_of(const char *name)
{
    TDB_DATA k = { .dptr = (unsigned char *)name, .dsize = strlen(name) };
    return k;
}

/* ---- tdb plumbing --------------------------------------------------- */

static const char *tdb_why(nvt_store *st)
{
    return st->tdb_msg[0] ? st->tdb_msg : (st->tdb ? tdb_errorstr(st->tdb) : "unknown error");
}

/* The errno for a failed tdb call: a latched backend error first, then
 * lack of space in the region, then tdb's own code. */
static int tdb_errno(nvt_store *st)
{
    int latched = nvt_pager_latched_error(st->pg);
    if (latched)
        return -latched;
    if (nvt_pager_take_enospc(st->pg))
        return ENOSPC;
    switch (st->tdb ? tdb_error(st->tdb) : TDB_ERR_IO) {
    case TDB_ERR_CORRUPT: return EBADMSG;
    case TDB_ERR_OOM: return ENOMEM;
    case TDB_ERR_NOEXIST: return ENOENT;
    case TDB_ERR_RDONLY: return EROFS;
    default: return EIO;
    }
}

static void tdb_detach(nvt_store *st);
static int tdb_attach(nvt_store *st, int open_flags)
{
    bool needs_recovery = false;

    st->tdb_msg[0] = '\0';
    if (!(open_flags & O_CREAT)) {
        int r = nvt_tdbguard_check(st->be, st->img ? st->img->sb.tdb_offset : 0,
                                   nvt_pager_length(st->pg), &needs_recovery);
        if (r < 0)
            return r;
    }
    st->tdb = nvt_tdbfile_open(nvt_vfile_path(st->vf), NVT_TDB_HASH_SIZE, NVT_TDB_FLAGS,
                               open_flags, 0600, st->tdb_msg);
    if (!st->tdb) {
        int err = nvt_pager_latched_error(st->pg) ? -nvt_pager_latched_error(st->pg) : EBADMSG;
        return nvt_error(err, "%s: cannot open the tdb: %s", st->be->name,
                         st->tdb_msg[0] ? st->tdb_msg : "invalid tdb file");
    }
    if (!(open_flags & O_CREAT) && needs_recovery) {
        /* tdb replayed an interrupted commit: now the chains must hold. */
        int r = nvt_tdbguard_walk(st->be, st->img ? st->img->sb.tdb_offset : 0,
                                  nvt_pager_length(st->pg));
        if (r < 0) {
            tdb_detach(st);
            return r;
        }
    }
    return 0;
}

static void tdb_detach(nvt_store *st)
{
    if (!st->tdb)
        return;
    nvt_tdbfile_close(st->tdb);
    st->tdb = NULL;
}

/* ---- the index ------------------------------------------------------ */

static int index_one(struct tdb_context *tdb, TDB_DATA key, TDB_DATA data, void *opaque)
{
    GHashTable *index = opaque;
    char name[NVT_BLOB_NAME_MAX + 1];

    if (key.dsize == 0 || key.dsize > NVT_BLOB_NAME_MAX)
        return 0;  /* not a blob: left alone, reported by check */
    memcpy(name, key.dptr, key.dsize);
    name[key.dsize] = '\0';
    if (memchr(name, '\0', key.dsize) || nvt_blob_name_check(name) < 0)
        return 0;
    blob_entry *e = g_new0(blob_entry, 1);
    e->damage = nvt_record_decode(name, data.dptr, data.dsize, false, &e->meta);
    g_hash_table_replace(index, g_strdup(name), e);
    return 0;
}

/* Rebuild the index from disk, keeping this handle's registrations.  The
 * new index is built aside and swapped in whole: validators on submitting
 * threads see the old one or the new one, never a partial one. */
static int index_load(nvt_store *st)
{
    GHashTable *fresh = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    if (tdb_traverse_read(st->tdb, index_one, fresh) < 0) {
        g_hash_table_destroy(fresh);
        return nvt_error(tdb_errno(st), "%s: cannot list the tdb's records: %s",
                         st->be->name, tdb_why(st));
    }
    nvt_lock(&st->index_lock, NVT_LOCK_INDEX);
    GHashTable *old = st->index;
    if (old) {
        GHashTableIter it;
        gpointer k, v;
        g_hash_table_iter_init(&it, old);
        while (g_hash_table_iter_next(&it, &k, &v)) {
            blob_entry *e = g_hash_table_lookup(fresh, k);
            if (e)
                e->registered_max = ((blob_entry *)v)->registered_max;
        }
    }
    st->index = fresh;
    nvt_unlock(&st->index_lock, NVT_LOCK_INDEX);
    if (old)
        g_hash_table_destroy(old);
    nvt_test_point(NVT_TEST_INDEX_RELOADED);
    return 0;
}

static int pager_create(nvt_store *st, bool after_failure);
static void store_fail(nvt_store *st, int r);

/* After a failed commit: bring the image back to its last committed state
 * (replaying the journal, or letting tdb's recovery run as it reopens)
 * and reload the index.  If that fails too the store stops accepting
 * requests. */
static void store_reset(nvt_store *st)
{
    char saved[1024];
    int r = 0;
    g_strlcpy(saved, nvt_last_error(), sizeof saved);
    tdb_detach(st);
    if (st->img) {
        r = pager_create(st, true);
    } else {
        nvt_pager_clear_error(st->pg);
        nvt_pager_take_enospc(st->pg);
    }
    if (r == 0)
        r = tdb_attach(st, O_RDWR);
    if (r == 0)
        r = index_load(st);
    if (r < 0) {
        nvt_error_prefix(-r, "%s: the image could not be recovered after a failed commit",
                         st->be->name);
        store_fail(st, r);
    }
    nvt_error(EIO, "%s", saved);
}

/* The sticky failure is read by submitting threads while the writer may
 * set it: both under index_lock. */
static void store_fail(nvt_store *st, int r)
{
    nvt_lock(&st->index_lock, NVT_LOCK_INDEX);
    st->failed = r;
    g_strlcpy(st->failed_msg, nvt_last_error(), sizeof st->failed_msg);
    nvt_unlock(&st->index_lock, NVT_LOCK_INDEX);
}

static int store_usable(nvt_store *st)
{
    nvt_lock(&st->index_lock, NVT_LOCK_INDEX);
    int failed = st->failed;
    char msg[sizeof st->failed_msg];
    g_strlcpy(msg, st->failed_msg, sizeof msg);
    nvt_unlock(&st->index_lock, NVT_LOCK_INDEX);
    if (failed)
        return nvt_error(-failed, "%s: image unusable after an earlier unrecoverable "
                         "error (%s); reopen it", st->be->name, msg);
    return 0;
}

int nvt_store_failure(nvt_store *st)
{
    return store_usable(st);
}

/* Apply @ops in one tdb transaction; 0 or a positive errno.  Success only
 * if tdb committed and no backend error was latched on the way. */
static int tdb_txn(nvt_store *st, const txn_op *ops, size_t n)
{
    nvt_pager_take_enospc(st->pg);
    if (tdb_transaction_start(st->tdb) != 0)
        return tdb_errno(st);
    for (size_t i = 0; i < n; i++) {
        TDB_DATA key = key_of(ops[i].name);
        int r;
        if (ops[i].value) {
            TDB_DATA val[2] = {
                { .dptr = (unsigned char *)ops[i].value, .dsize = ops[i].size },
                { .dptr = (unsigned char *)ops[i].payload, .dsize = ops[i].payload_size },
            };
            r = tdb_storev(st->tdb, key, val, ops[i].payload_size ? 2 : 1, TDB_REPLACE);
        } else {
            r = tdb_delete(st->tdb, key);
        }
        if (r != 0) {
            int err = tdb_errno(st);
            tdb_transaction_cancel(st->tdb);
            return err;
        }
    }
    if (tdb_transaction_commit(st->tdb) != 0 || nvt_pager_latched_error(st->pg))
        return tdb_errno(st);
    st->commits++;
    return 0;
}

/* Apply @ops without a transaction: only for a layout built in memory,
 * where atomicity is moot, so that no transaction's recovery area is
 * sized by steps that are not the layout's own commits. */
static int plain_ops(nvt_store *st, const txn_op *ops, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        TDB_DATA key = key_of(ops[i].name);
        TDB_DATA val[2] = {
            { .dptr = (unsigned char *)ops[i].value, .dsize = ops[i].size },
            { .dptr = (unsigned char *)ops[i].payload, .dsize = ops[i].payload_size },
        };
        int r = ops[i].value ? tdb_storev(st->tdb, key, val, ops[i].payload_size ? 2 : 1,
                                          TDB_REPLACE)
                             : tdb_delete(st->tdb, key);
        if (r != 0) {
            int err = tdb_errno(st);
            return -nvt_error(err, "%s: %s failed: %s", st->be->name, what, tdb_why(st));
        }
    }
    return 0;
}

/* Run @ops in one tdb transaction, made atomic on disk by the journal
 * when there is one (tdb's own protocol trusts sectors to be written
 * whole; a journal frame is checksummed instead).  A transaction too
 * large for the journal runs in place on its own, with tdb's four
 * flushes, once the pager has emptied the journal. */
static int store_commit(nvt_store *st, const txn_op *ops, size_t n, const char *what)
{
    int err;

    if (st->journal_mode) {
        nvt_pager_group_begin(st->pg);
        err = tdb_txn(st, ops, n);
        if (err) {
            nvt_pager_group_abort(st->pg);
        } else {
            err = -nvt_pager_group_commit(st->pg);
            if (err == E2BIG) {
                /* Nothing reached the image.  tdb's view is rebuilt and
                 * the transaction redone in place (pager.c, invariant 6). */
                err = -nvt_pager_prepare_in_place(st->pg);
                tdb_detach(st);
                if (err == 0)
                    err = tdb_attach(st, O_RDWR) < 0 ? EIO : tdb_txn(st, ops, n);
            }
        }
    } else {
        err = tdb_txn(st, ops, n);
    }
    if (err == 0)
        return 0;
    nvt_error(err, "%s: %s failed: %s%s%s", st->be->name, what,
              err == ENOSPC ? "no space left in the image's tdb region" : g_strerror(err),
              st->tdb_msg[0] ? "; tdb: " : "", st->tdb_msg);
    store_reset(st);
    return -err;
}

/* ---- opening -------------------------------------------------------- */

static nvt_store *store_new(nvt_backend *be, nvt_image *img, uint64_t base, uint64_t capacity,
                            uint64_t length)
{
    nvt_store *st = g_new0(nvt_store, 1);
    g_mutex_init(&st->index_lock);
    st->img = img;
    st->be = be;
    st->pg = nvt_pager_new(be, base, capacity, length, NULL, NULL);
    st->vf = nvt_vfile_new(st->pg);
    return st;
}

/* The image's pager, after recovery, and tdb's file over it (replacing
 * any earlier ones).  If recovery fails the store gets a pager without a
 * journal, for its counters only: the caller fails the store. */
static int pager_create(nvt_store *st, bool after_failure)
{
    nvt_image *img = st->img;
    nvt_vfile_free(st->vf);
    nvt_pager_free(st->pg);
    int r = nvt_pager_open_image(img, st->journal_mode, after_failure, &st->pg);
    if (r < 0)
        st->pg = nvt_pager_new(st->be, img->sb.tdb_offset, img->sb.tdb_capacity,
                               img->sb.tdb_logical, NULL, NULL);
    st->vf = nvt_vfile_new(st->pg);
    return r;
}

int nvt_store_open(nvt_image *img, unsigned flags, nvt_store **out)
{
    nvt_store *st = g_new0(nvt_store, 1);
    int r = 0;
    g_mutex_init(&st->index_lock);
    st->img = img;
    st->be = img->be;
    st->journal_mode = img->sb.journal_length && !(flags & NVT_STORE_STOCK_COMMIT);
    st->encrypted = img->sb.incompat_flags & NVT_INCOMPAT_ENCRYPTED;
    st->extra = st->encrypted ? NVT_RECORD_CRYPT_OVERHEAD : 0;
    r = pager_create(st, false);
    if (r == 0)
        r = tdb_attach(st, O_RDWR);
    if (r == 0)
        r = index_load(st);
    if (r < 0) {
        nvt_store_close(st);
        return r;
    }
    *out = st;
    return 0;
}

bool nvt_store_journaled(const nvt_store *st)
{
    return nvt_pager_journaled(st->pg);
}

int nvt_store_checkpoint(nvt_store *st)
{
    if (!st->img || !st->img->sb.journal_length || store_usable(st) < 0)
        return 0;
    int r = nvt_pager_checkpoint(st->pg);
    if (r < 0)
        nvt_error_prefix(-r, "%s: checkpoint at close failed (the journal replays at the next "
                         "open)", st->be->name);
    return r;
}

void nvt_store_close(nvt_store *st)
{
    if (!st)
        return;
    tdb_detach(st);
    nvt_vfile_free(st->vf);
    nvt_pager_free(st->pg);
    if (st->index)
        g_hash_table_destroy(st->index);
    g_mutex_clear(&st->index_lock);
    g_free(st);
}

/* Pages a record of @spec may touch: tdb's record header, the key, our
 * header and the payload, possibly straddling one more page. */
/* A blob's tdb record at its maximum: tdb's header, key, our header and
 * the value (tdb's 4-byte tailer not included). */
static uint64_t blob_record_bytes(const nvt_blob_spec *spec, uint32_t extra)
{
    return NVT_TDB_RECORD_SIZE + strlen(spec->name) + NVT_RECORD_HEADER_SIZE +
           (uint64_t)spec->max_size + extra;
}

static uint64_t blob_pages(const nvt_blob_spec *spec, uint32_t extra)
{
    return (blob_record_bytes(spec, extra) + NVT_PAGE_SIZE - 1) / NVT_PAGE_SIZE + 1;
}

/* Pages beyond the records' own that a group may touch: tdb's free list
 * and hash chains when an unregistered blob is deleted. */
#define GROUP_EXTRA_PAGES 8u
/* Smallest journal, so that blobs registered later have room too. */
#define JOURNAL_MIN_PAGES 32u

/* ---- space ---------------------------------------------------------- */

typedef struct plan_item {
    const char *name;
    uint32_t max_size;
} plan_item;

static uint8_t *encode(const nvt_record_meta *m, const void *payload, size_t *size)
{
    *size = NVT_RECORD_HEADER_SIZE + nvt_record_stored_len(m);
    uint8_t *buf = g_malloc(*size);
    nvt_record_encode(m, payload, buf);
    return buf;
}

/* Fetch a record and check it fully; *raw gets tdb's malloc()ed value. */
static int fetch_record(nvt_store *st, const char *name, TDB_DATA *raw, nvt_record_meta *meta)
{
    *raw = tdb_fetch(st->tdb, key_of(name));
    if (!raw->dptr) {
        if (tdb_error(st->tdb) == TDB_ERR_NOEXIST)
            return nvt_error(ENOENT, "%s: blob %s is not on the image", st->be->name, name);
        int err = tdb_errno(st);
        return nvt_error(err, "%s: reading blob %s failed: %s", st->be->name, name,
                         tdb_why(st));
    }
    int r = nvt_record_decode(name, raw->dptr, raw->dsize, true, meta);
    if (r < 0) {
        free(raw->dptr);
        raw->dptr = NULL;
        return nvt_error_prefix(-r, "%s", st->be->name);
    }
    return 0;
}

/* Allocate every item of @plan at its maximum (transaction A; plain
 * stores when @in_memory, a layout being built), then rewrite every
 * record at its maximum once (transaction B) so that tdb's recovery area
 * reaches the size a commit of all blobs needs. */
static int allocate_plan(nvt_store *st, const plan_item *plan, size_t n, bool in_memory)
{
    GPtrArray *bufs = g_ptr_array_new_with_free_func(g_free);
    GArray *ops = g_array_new(FALSE, FALSE, sizeof(txn_op));
    int r = 0;

    for (size_t i = 0; i < n && r == 0; i++) {
        blob_entry *e = g_hash_table_lookup(st->index, plan[i].name);
        nvt_record_meta m = { .max_size = plan[i].max_size };
        TDB_DATA raw = { 0 };
        const uint8_t *payload = NULL;
        if (e) {
            r = fetch_record(st, plan[i].name, &raw, &m);
            if (r < 0)
                break;
            m.max_size = plan[i].max_size;
            payload = raw.dptr + NVT_RECORD_HEADER_SIZE;
        }
        size_t fill_size = NVT_RECORD_HEADER_SIZE + (size_t)plan[i].max_size + st->extra, size;
        uint8_t *fill = g_malloc(fill_size);
        memset(fill, 0x5a, fill_size);
        uint8_t *rec = encode(&m, payload, &size);
        free(raw.dptr);
        g_ptr_array_add(bufs, fill);
        g_ptr_array_add(bufs, rec);
        txn_op a = { .name = plan[i].name, .value = fill, .size = fill_size },
               b = { .name = plan[i].name, .value = rec, .size = size };
        g_array_append_val(ops, a);
        g_array_append_val(ops, b);
    }
    if (r == 0 && in_memory)
        r = plain_ops(st, (txn_op *)ops->data, ops->len, "reserving space");
    else if (r == 0)
        r = store_commit(st, (txn_op *)ops->data, ops->len, "reserving space");
    if (r == 0)
        r = index_load(st);

    g_array_set_size(ops, 0);
    g_ptr_array_set_size(bufs, 0);
    if (r == 0) {
        GHashTableIter it;
        gpointer k, v;
        g_hash_table_iter_init(&it, st->index);
        while (g_hash_table_iter_next(&it, &k, &v)) {
            blob_entry *e = v;
            if (e->damage)
                continue;  /* unreadable header: its maximum is unknown */
            TDB_DATA raw = tdb_fetch(st->tdb, key_of(k));
            if (!raw.dptr) {
                r = nvt_error(tdb_errno(st), "%s: reading blob %s failed: %s", st->be->name,
                              (char *)k, tdb_why(st));
                break;
            }
            /* The filler differs from the record in every byte, so tdb
             * really writes it (it skips identical rewrites). */
            size_t fill_size = NVT_RECORD_HEADER_SIZE + (size_t)e->meta.max_size + st->extra;
            uint8_t *fill = g_malloc(fill_size);
            for (size_t j = 0; j < fill_size; j++)
                fill[j] = (uint8_t)~(j < raw.dsize ? raw.dptr[j] : 0);
            uint8_t *rec = g_memdup2(raw.dptr, raw.dsize);
            txn_op a = { .name = k, .value = fill, .size = fill_size },
                   b = { .name = k, .value = rec, .size = raw.dsize };
            free(raw.dptr);
            g_ptr_array_add(bufs, fill);
            g_ptr_array_add(bufs, rec);
            g_array_append_val(ops, a);
            g_array_append_val(ops, b);
        }
    }
    if (r == 0)
        r = store_commit(st, (txn_op *)ops->data, ops->len, "sizing the commit area");
    g_array_free(ops, TRUE);
    g_ptr_array_free(bufs, TRUE);
    return r;
}

static int spec_cmp(const void *a, const void *b)
{
    return strcmp(((const nvt_blob_spec *)a)->name, ((const nvt_blob_spec *)b)->name);
}

static int check_specs(const nvt_blob_spec *specs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int r = nvt_blob_name_check(specs[i].name);
        if (r < 0)
            return r;
        if (specs[i].max_size == 0 || specs[i].max_size > NVT_BLOB_MAX_SIZE)
            return nvt_error(EINVAL, "blob %s: maximum size %u outside 1..%u", specs[i].name,
                             specs[i].max_size, NVT_BLOB_MAX_SIZE);
    }
    return 0;
}

/* Sorted, de-duplicated plan items for @specs not yet satisfied by @st. */
static GArray *make_plan(nvt_store *st, const nvt_blob_spec *specs, size_t n)
{
    nvt_blob_spec *sorted = g_memdup2(specs, n * sizeof *specs);
    if (n)
        qsort(sorted, n, sizeof *sorted, spec_cmp);
    GArray *plan = g_array_new(FALSE, FALSE, sizeof(plan_item));
    for (size_t i = 0; i < n; i++) {
        if (i + 1 < n && strcmp(sorted[i].name, sorted[i + 1].name) == 0)
            continue;  /* the last registration of a name wins */
        blob_entry *e = st ? g_hash_table_lookup(st->index, sorted[i].name) : NULL;
        /* A damaged record keeps its space until a write replaces it. */
        if (e && (e->damage || e->meta.max_size >= sorted[i].max_size))
            continue;
        plan_item it = { sorted[i].name, sorted[i].max_size };
        g_array_append_val(plan, it);
    }
    g_free(sorted);
    return plan;
}

/* tdb grows its file by 100 times any request below 100 KiB (2 times
 * above), at least by a quarter, and sizes a new recovery area (always
 * at the end of the file) the same way; it allocates every record at
 * 1.25 times its size.  Built naively, one 64 KiB blob would make a
 * 10 MiB tdb.  So a layout may start with a padding record of @pad
 * bytes, above that threshold: stored outside a transaction (the file
 * grows by twice its allocation), rewritten in place in a transaction
 * (which puts a recovery area of twice its bytes at the end of the
 * file), and deleted: the blobs' records then take its space, and the
 * commit that rewrites every blob fits the recovery area. */
#define PAD_KEY "nvramtdb:format-padding"
#define PAD_MIN (100u * 1024 + 1)
/* Beyond this the 100x rule costs proportionally little, and each
 * trial layout would cost time and memory (16 MiB blob: 1.2 s, 300 MB). */
#define PAD_MAX (8u * 1024 * 1024)
/* Paddings tried between two estimates (nvt_store_build_fresh_extra). */
#define PAD_TRIALS 12u
/* tdb's record tailer (a copy of the record's length). */
#define NVT_TDB_TAILER_SIZE 4u

/* The padding step of a layout (above). */
static int pad_tdb(nvt_store *st, uint32_t pad)
{
    uint8_t *buf = g_malloc0(pad);
    txn_op put = { .name = PAD_KEY, .value = buf, .size = pad }, del = { .name = PAD_KEY };
    int err = -plain_ops(st, &put, 1, "formatting: padding record");
    if (err == 0) {
        memset(buf, 0xff, pad);  /* differs in every byte: all rewritten */
        err = tdb_txn(st, &put, 1);
        if (err)
            nvt_error(err, "formatting: padding record: %s", tdb_why(st));
    }
    if (err == 0)
        err = -plain_ops(st, &del, 1, "formatting: padding record");
    g_free(buf);
    return -err;
}

static int build_layout(const nvt_blob_spec *specs, size_t n, uint32_t extra, uint32_t pad,
                        uint8_t **tdb, uint64_t *len)
{
    nvt_backend *be = nvt_mem_backend_new(NULL, 0);
    nvt_store *st = store_new(be, NULL, 0, NVT_TDB_MAX_LENGTH, 0);
    st->extra = extra;
    int r = tdb_attach(st, O_RDWR | O_CREAT | O_TRUNC);
    if (r == 0 && pad)
        r = pad_tdb(st, pad);
    if (r == 0)
        r = index_load(st);
    if (r == 0) {
        GArray *plan = make_plan(NULL, specs, n);
        r = allocate_plan(st, (plan_item *)plan->data, plan->len, true);
        g_array_free(plan, TRUE);
    }
    if (r == 0) {
        size_t size;
        const uint8_t *data = nvt_mem_backend_data(be, &size);
        *len = nvt_pager_length(st->pg);
        *tdb = g_memdup2(data, *len);
    }
    nvt_store_close(st);
    nvt_be_close(be);
    return r;
}

/* The smallest of the layouts without padding and with a few paddings.
 * Deterministic: the same blobs always give the same tdb. */
int nvt_store_build_fresh(const nvt_blob_spec *specs, size_t n, uint8_t **tdb, uint64_t *len)
{
    return nvt_store_build_fresh_extra(specs, n, 0, tdb, len);
}

int nvt_store_build_fresh_extra(const nvt_blob_spec *specs, size_t n, uint32_t extra,
                                uint8_t **tdb, uint64_t *len)
{
    int r = check_specs(specs, n);
    if (r < 0)
        return r;
    uint64_t records = 0;
    for (size_t i = 0; i < n; i++)
        records += blob_record_bytes(&specs[i], extra) + NVT_TDB_TAILER_SIZE;
    /* Refused before building gigabytes in memory only to find it out. */
    if (records > NVT_TDB_MAX_LENGTH)
        return nvt_error(ENOSPC, "%zu blobs need %llu bytes of records; a tdb holds at most "
                         "%u bytes", n, (unsigned long long)records, NVT_TDB_MAX_LENGTH);
    r = build_layout(specs, n, extra, 0, tdb, len);
    /* The padding's allocation (1.25x), doubled, should just hold the
     * records' allocations, and its recovery area (2x) what a commit of
     * every blob at its maximum saves: each page it changes plus 8 bytes,
     * at most blob_pages() a blob, and the header's page.  The padding
     * must be at least half of both; which one fits best depends on how
     * the records fall on pages, so paddings from half the records'
     * total to half that bound are tried. */
    uint64_t saved = NVT_PAGE_SIZE + 8 + 4;
    for (size_t i = 0; i < n; i++)
        saved += blob_pages(&specs[i], extra) * (NVT_PAGE_SIZE + 8);
    uint64_t lo = records / 2, hi = MAX(saved / 2 + NVT_PAGE_SIZE, lo);
    uint64_t tried = 0;
    for (uint32_t i = 0; r == 0 && records <= PAD_MAX && i < PAD_TRIALS; i++) {
        uint64_t pad = MAX(lo + (hi - lo) * i / (PAD_TRIALS - 1), (uint64_t)PAD_MIN);
        if (pad == tried)
            continue;  /* small sets: every trial is PAD_MIN */
        tried = pad;
        uint8_t *t;
        uint64_t l;
        r = build_layout(specs, n, extra, (uint32_t)pad, &t, &l);
        if (r == 0 && l < *len) {
            g_free(*tdb);
            *tdb = t;
            *len = l;
        } else {
            g_free(t);
        }
    }
    if (r < 0) {
        g_free(*tdb);
        *tdb = NULL;
    }
    return r;
}

/* Run @plan on a private copy of the tdb to learn the length it needs. */
static int dry_run(nvt_store *st, const plan_item *plan, size_t n, uint64_t *needed)
{
    uint64_t len = nvt_pager_length(st->pg);
    uint64_t base = st->img ? st->img->sb.tdb_offset : 0;
    uint8_t *copy = g_malloc(len ? len : 1);
    int r = nvt_be_pread(st->be, copy, len, base);
    if (r < 0) {
        g_free(copy);
        return r;
    }
    nvt_backend *be = nvt_mem_backend_new(copy, len);
    g_free(copy);
    nvt_store *dry = store_new(be, NULL, 0, NVT_TDB_MAX_LENGTH, len);
    dry->extra = st->extra;
    r = tdb_attach(dry, O_RDWR);
    if (r == 0)
        r = index_load(dry);
    if (r == 0)
        r = allocate_plan(dry, plan, n, false);
    *needed = nvt_pager_length(dry->pg);
    nvt_store_close(dry);
    nvt_be_close(be);
    return r;
}

int nvt_store_reserve(nvt_store *st, const nvt_blob_spec *specs, size_t n, bool read_only)
{
    int r = store_usable(st);
    if (r == 0)
        r = check_specs(specs, n);
    if (r < 0)
        return r;
    GArray *plan = make_plan(st, specs, n);
    const plan_item *items = (const plan_item *)plan->data;
    if (plan->len && read_only) {
        r = nvt_error(EROFS, "%s: blob %s needs %u bytes reserved, but the image is open "
                      "read-only", st->be->name, items[0].name, items[0].max_size);
    }
    /* Every blob must fit a journal frame on its own. */
    uint32_t frame_pages = nvt_pager_max_group_pages(st->pg);
    for (guint i = 0; r == 0 && frame_pages && i < plan->len; i++) {
        nvt_blob_spec one = { items[i].name, items[i].max_size };
        if (blob_pages(&one, st->extra) + GROUP_EXTRA_PAGES > frame_pages)
            r = nvt_error(ENOSPC, "%s: blob %s (maximum %u bytes) does not fit the image's "
                          "journal of %u pages; create a new image for it", st->be->name,
                          items[i].name, items[i].max_size, frame_pages);
    }
    /* Never build on a damaged structure: a record that tdb cannot reach
     * would look missing and be recreated empty. */
    if (r == 0 && plan->len) {
        st->tdb_msg[0] = '\0';
        if (tdb_check(st->tdb, NULL, NULL) != 0)
            r = nvt_error(EBADMSG, "%s: tdb structure is damaged (%s); refusing to change it, "
                          "run nvram-tool check", st->be->name, tdb_why(st));
    }
    if (r == 0 && plan->len) {
        uint64_t needed = 0;
        r = dry_run(st, items, plan->len, &needed);
        if (r == 0 && needed > nvt_pager_capacity(st->pg))
            r = nvt_error(ENOSPC, "%s: no room for blob %s (maximum %u bytes)%s: the tdb region "
                          "holds %llu bytes and would need %llu; the image must be at least "
                          "%llu bytes", st->be->name, items[0].name, items[0].max_size,
                          plan->len > 1 ? " and others" : "",
                          (unsigned long long)nvt_pager_capacity(st->pg),
                          (unsigned long long)needed,
                          (unsigned long long)nvt_image_size_for(needed,
                              st->img ? st->img->sb.journal_length : 0));
        else if (r < 0)
            nvt_error_prefix(-r, "%s: cannot plan space for the registered blobs", st->be->name);
        if (r == 0)
            r = allocate_plan(st, items, plan->len, false);
    }
    g_array_free(plan, TRUE);
    if (r < 0)
        return r;
    nvt_lock(&st->index_lock, NVT_LOCK_INDEX);
    for (size_t i = 0; i < n; i++) {
        blob_entry *e = g_hash_table_lookup(st->index, specs[i].name);
        if (e)
            e->registered_max = specs[i].max_size;
    }
    nvt_unlock(&st->index_lock, NVT_LOCK_INDEX);
    return 0;
}

/* ---- blobs ---------------------------------------------------------- */

void nvt_store_set_crypt(nvt_store *st, nvt_crypt *crypt)
{
    st->crypt = crypt;
}

bool nvt_store_encrypted(const nvt_store *st)
{
    return st->encrypted;
}

void nvt_store_keyslots_used(nvt_store *st, bool used[2])
{
    GHashTableIter it;
    gpointer k, v;
    used[0] = used[1] = false;
    g_hash_table_iter_init(&it, st->index);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        blob_entry *e = v;
        if (!e->damage && e->meta.present && e->meta.encrypted)
            used[e->meta.keyslot] = true;
    }
}

int nvt_store_reseal_all(nvt_store *st)
{
    nvt_blob_info *blobs;
    size_t n, nops = 0;
    int r = nvt_store_list(st, &blobs, &n);
    if (r < 0)
        return r;
    nvt_store_op *ops = g_new0(nvt_store_op, n ? n : 1);
    uint8_t **values = g_new0(uint8_t *, n ? n : 1);
    size_t *lens = g_new0(size_t, n ? n : 1);
    for (size_t i = 0; r == 0 && i < n; i++) {
        if (!blobs[i].present)
            continue;
        r = nvt_store_read(st, blobs[i].name, &values[nops], &lens[nops]);
        if (r < 0)
            break;
        ops[nops] = (nvt_store_op){ .name = blobs[i].name, .data = values[nops],
                                    .len = lens[nops] };
        nops++;
    }
    if (r == 0 && nops)
        r = nvt_store_commit_batch(st, ops, nops);
    for (size_t i = 0; i < nops; i++) {
        if (values[i])
            OPENSSL_cleanse(values[i], lens[i]);
        free(values[i]);
        g_free(ops[i].message);
    }
    g_free(values);
    g_free(lens);
    g_free(ops);
    g_free(blobs);
    return r;
}

/* An encrypted image holds only sealed values, a plain one only plain
 * ones: a record swapped for a plaintext one is damage, never data. */
static int check_sealing(nvt_store *st, const char *name, const nvt_record_meta *m)
{
    if (!m->present || m->encrypted == st->encrypted)
        return 0;
    return nvt_error(EBADMSG, "%s: blob %s: %s value on %s image", st->be->name, name,
                     m->encrypted ? "an encrypted" : "an unencrypted",
                     st->encrypted ? "an encrypted" : "an unencrypted");
}

static int need_key(nvt_store *st, const char *name)
{
    if (!st->encrypted || nvt_crypt_has_key(st->crypt))
        return 0;
    return nvt_error(ENOKEY, "%s: blob %s: the image is encrypted and no key was given",
                     st->be->name, name);
}

int nvt_store_read(nvt_store *st, const char *name, uint8_t **data, size_t *len)
{
    int r = store_usable(st);
    if (r == 0)
        r = nvt_blob_name_check(name);
    if (r < 0)
        return r;
    blob_entry *e = g_hash_table_lookup(st->index, name);
    if (!e)
        return nvt_error(ENOENT, "%s: no blob %s on the image", st->be->name, name);
    if (!e->damage && !e->meta.present)
        return nvt_error(ENOENT, "%s: blob %s has no value", st->be->name, name);
    r = need_key(st, name);
    if (r < 0)
        return r;
    TDB_DATA raw;
    nvt_record_meta m;
    r = fetch_record(st, name, &raw, &m);
    if (r < 0)
        return r;
    if (!m.present) {
        free(raw.dptr);
        return nvt_error(ENOENT, "%s: blob %s has no value", st->be->name, name);
    }
    r = check_sealing(st, name, &m);
    /* The tag binds the generation the header states; a whole older
     * record put back while the image is open shows as a generation
     * other than the one this handle committed or loaded. */
    if (r == 0 && st->encrypted && !e->damage && m.generation != e->meta.generation)
        r = nvt_error(EBADMSG, "%s: blob %s: the record on the image has generation %llu, "
                      "%llu expected: it was replaced behind this handle", st->be->name, name,
                      (unsigned long long)m.generation, (unsigned long long)e->meta.generation);
    if (r < 0) {
        free(raw.dptr);
        return r;
    }
    *len = m.length;
    *data = NULL;
    /* One byte more: the cipher's output pointer is never NULL. */
    uint8_t *out = malloc(m.length + 1);
    if (!out) {
        free(raw.dptr);
        return nvt_error(ENOMEM, "out of memory reading blob %s", name);
    }
    if (m.encrypted)
        r = nvt_crypt_open(st->crypt, m.keyslot, name, m.generation,
                           raw.dptr + NVT_RECORD_HEADER_SIZE,
                           nvt_record_stored_len(&m), out);
    else
        memcpy(out, raw.dptr + NVT_RECORD_HEADER_SIZE, m.length);
    free(raw.dptr);
    if (r < 0) {
        free(out);
        return nvt_error_prefix(-r, "%s", st->be->name);
    }
    if (m.length)
        *data = out;
    else
        free(out);
    return 0;
}

/* Check one request against the index.  @present, if not NULL, is the
 * blob's state as earlier requests of the same group leave it.  The
 * caller holds index_lock. */
static int validate_locked(nvt_store *st, const char *name, size_t len, bool is_delete,
                           const bool *present, blob_entry **ep)
{
    nvt_assert_held(NVT_LOCK_INDEX);
    int r = nvt_blob_name_check(name);
    if (r < 0)
        return r;
    blob_entry *e = g_hash_table_lookup(st->index, name);
    if (!e)
        return nvt_error(ENOENT, "%s: blob %s is neither registered nor on the image",
                         st->be->name, name);
    r = need_key(st, name);
    if (r < 0)
        return r;
    /* A damaged record can be replaced: deleted, or rewritten within the
     * maximum its registration gives (its own header is unreadable). */
    if (e->damage && !is_delete && !e->registered_max)
        return nvt_error(EBADMSG, "%s: blob %s has a damaged record header and no registered "
                         "maximum; register it or delete it", st->be->name, name);
    if (is_delete) {
        /* At submission (@present NULL) queued writes may still give the
         * blob a value: only execution can tell. */
        if (present && !*present)
            return nvt_error(ENOENT, "%s: blob %s has no value", st->be->name, name);
    } else {
        uint32_t limit = e->damage ? e->registered_max
                         : e->registered_max ? MIN(e->registered_max, e->meta.max_size)
                                             : e->meta.max_size;
        if (len > limit)
            return nvt_error(EFBIG, "%s: blob %s: %zu bytes exceed its maximum of %u bytes",
                             st->be->name, name, len, limit);
    }
    if (ep)
        *ep = e;
    return 0;
}

int nvt_store_validate(nvt_store *st, const char *name, size_t len, bool is_delete)
{
    int r = store_usable(st);
    if (r < 0)
        return r;
    nvt_lock(&st->index_lock, NVT_LOCK_INDEX);
    r = validate_locked(st, name, len, is_delete, NULL, NULL);
    nvt_unlock(&st->index_lock, NVT_LOCK_INDEX);
    return r;
}

/* The final change a group makes to one blob.  Its record is @header
 * followed by @payload: tdb_storev() takes both, so the value is never
 * copied into a record buffer. */
typedef struct blob_change {
    nvt_store_op *op;          /* the last valid request on the blob */
    unsigned count;            /* valid requests on it (generations) */
    bool remove;               /* unregistered blob deleted: record goes */
    nvt_record_meta meta;      /* the record after the group */
    uint8_t header[NVT_RECORD_HEADER_SIZE];
    const uint8_t *payload;    /* the op's data, or @sealed */
    size_t stored;             /* payload bytes */
    uint8_t *sealed;           /* encrypted images: the sealed value */
    int result;
} blob_change;

static void change_free(gpointer p)
{
    blob_change *c = p;
    g_free(c->sealed);
    g_free(c);
}

/* Stage @changes (journal mode) or store them in a tdb transaction, and
 * commit.  On success the index takes the new metadata. */
static int commit_changes(nvt_store *st, blob_change **changes, size_t n)
{
    int r = 0;

    if (st->journal_mode) {
        nvt_pager_group_begin(st->pg);
        for (size_t i = 0; i < n && r == 0; i++) {
            blob_change *c = changes[i];
            TDB_DATA key = key_of(c->op->name);
            TDB_DATA val[2] = { { .dptr = c->header, .dsize = sizeof c->header },
                                { .dptr = (unsigned char *)c->payload, .dsize = c->stored } };
            int tr = c->remove ? tdb_delete(st->tdb, key)
                               : tdb_storev(st->tdb, key, val, c->stored ? 2 : 1, TDB_REPLACE);
            if (tr != 0)
                r = -tdb_errno(st);
            else if (nvt_pager_group_pages(st->pg) > nvt_pager_max_group_pages(st->pg))
                r = -E2BIG;
        }
        bool io_failed = false;
        if (r == 0) {
            r = nvt_pager_group_commit(st->pg);
            io_failed = r < 0;
        } else {
            nvt_pager_group_abort(st->pg);
        }
        if (r == -E2BIG) {
            /* Nothing reached the image; tdb's cached state is rebuilt. */
            nvt_error(E2BIG, "%s: group of %zu blobs exceeds the journal", st->be->name, n);
            tdb_detach(st);
            int ar = tdb_attach(st, O_RDWR);
            if (ar < 0)
                store_fail(st, ar);
            return -E2BIG;
        }
        if (io_failed && r != -ENOSPC) {
            /* Keep the backend's message: it says which request failed
             * and why (the network's reason, for an NBD export). */
            nvt_error_prefix(-r, "%s: commit failed", st->be->name);
            store_reset(st);
            return r;
        }
        if (r < 0) {
            nvt_error(-r, "%s: commit failed: %s%s%s", st->be->name,
                      r == -ENOSPC ? "no space left in the image's tdb region" : g_strerror(-r),
                      st->tdb_msg[0] ? "; tdb: " : "", st->tdb_msg);
            store_reset(st);
            return r;
        }
    } else {
        txn_op *ops = g_new(txn_op, n);
        for (size_t i = 0; i < n; i++) {
            blob_change *c = changes[i];
            ops[i] = (txn_op){ .name = c->op->name, .value = c->remove ? NULL : c->header,
                               .size = sizeof c->header, .payload = c->payload,
                               .payload_size = c->stored };
        }
        r = store_commit(st, ops, n, "commit");
        g_free(ops);
        if (r < 0)
            return r;
    }
    st->groups++;
    nvt_lock(&st->index_lock, NVT_LOCK_INDEX);
    for (size_t i = 0; i < n; i++) {
        if (changes[i]->remove) {
            g_hash_table_remove(st->index, changes[i]->op->name);
        } else {
            blob_entry *e = g_hash_table_lookup(st->index, changes[i]->op->name);
            if (e) {
                e->meta = changes[i]->meta;
                e->damage = 0;
            }
        }
    }
    nvt_unlock(&st->index_lock, NVT_LOCK_INDEX);
    return 0;
}

static void op_fail(nvt_store_op *op, int r)
{
    op->result = r;
    g_free(op->message);
    op->message = g_strdup(nvt_last_error());
}

/* All-or-nothing: op @bad failed; every other op fails with its error. */
static void fail_all_for(nvt_store_op *ops, size_t n, size_t bad)
{
    for (size_t i = 0; i < n; i++) {
        if (i == bad)
            continue;
        nvt_error(-ops[bad].result, "not applied: change %zu of the batch (blob %s) failed: %s",
                  bad + 1, ops[bad].name, ops[bad].message);
        op_fail(&ops[i], ops[bad].result);
    }
    nvt_error(-ops[bad].result, "%s", ops[bad].message);  /* the batch's error */
}

/* The record of change @c: its value sealed under a fresh nonce on an
 * encrypted image (bound to the generation it is written at), and the
 * index's CRC that of the stored bytes, as index_load() reads it.  The
 * value's CRC is computed here, once per blob and group. */
static int seal_and_encode(nvt_store *st, blob_change *c)
{
    c->meta.encrypted = st->encrypted && c->meta.present;
    c->meta.keyslot = 0;
    if (c->meta.encrypted && nvt_crypt_has_key(st->crypt))
        c->meta.keyslot = (uint8_t)nvt_crypt_seal_slot(st->crypt);
    c->stored = nvt_record_stored_len(&c->meta);
    c->payload = c->meta.present ? c->op->data : NULL;
    if (c->meta.encrypted) {
        c->sealed = g_malloc(c->stored);
        int r = nvt_crypt_seal(st->crypt, c->op->name, c->meta.generation, c->op->data,
                               c->meta.length, c->sealed);
        if (r < 0)
            return nvt_error_prefix(-r, "%s", st->be->name);
        c->payload = c->sealed;
    }
    c->meta.crc32c = nvt_crc32c(0, c->payload, c->stored);
    nvt_record_encode_header(&c->meta, c->header);
    return 0;
}

/* A group's changes by blob name: a list while short (the usual group of
 * one TPM blob needs no hash table per commit), indexed when it grows. */
#define CHANGES_LINEAR_MAX 8u

static blob_change *find_change(GHashTable *index, GPtrArray *order, const char *name)
{
    if (index)
        return g_hash_table_lookup(index, name);
    for (guint i = 0; i < order->len; i++) {
        blob_change *c = order->pdata[i];
        if (strcmp(c->op->name, name) == 0)
            return c;
    }
    return NULL;
}

static void add_change(GHashTable **index, GPtrArray *order, blob_change *c)
{
    g_ptr_array_add(order, c);
    if (!*index && order->len > CHANGES_LINEAR_MAX) {
        *index = g_hash_table_new(g_str_hash, g_str_equal);
        for (guint i = 0; i + 1 < order->len; i++) {
            blob_change *o = order->pdata[i];
            g_hash_table_insert(*index, (gpointer)o->op->name, o);
        }
    }
    if (*index)
        g_hash_table_insert(*index, (gpointer)c->op->name, c);
}

static int commit_requests(nvt_store *st, nvt_store_op *ops, size_t n, bool atomic)
{
    GHashTable *changes = NULL;     /* name -> blob_change, once the group is long */
    GPtrArray *order = g_ptr_array_new_with_free_func(change_free);
    int r = store_usable(st);

    for (size_t i = 0; i < n; i++) {
        ops[i].result = 0;
        ops[i].message = NULL;
    }
    if (r < 0) {
        for (size_t i = 0; i < n; i++)
            op_fail(&ops[i], r);
        goto out;
    }

    /* Validate in order, against the state earlier requests leave. */
    nvt_lock(&st->index_lock, NVT_LOCK_INDEX);
    for (size_t i = 0; i < n; i++) {
        blob_change *c = find_change(changes, order, ops[i].name);
        blob_entry *known = g_hash_table_lookup(st->index, ops[i].name);
        bool present = c ? c->meta.present
                         : (known && (known->meta.present || known->damage));
        blob_entry *e = NULL;
        int vr = validate_locked(st, ops[i].name, ops[i].len, ops[i].is_delete, &present, &e);
        if (vr < 0) {
            op_fail(&ops[i], vr);
            if (!atomic)
                continue;
            nvt_unlock(&st->index_lock, NVT_LOCK_INDEX);
            fail_all_for(ops, n, i);
            r = vr;
            goto out;
        }
        if (!c) {
            c = g_new0(blob_change, 1);
            c->meta = e->meta;
            if (e->damage) {
                nvt_record_meta fresh = { .max_size = e->registered_max };
                c->meta = fresh;
            }
            c->remove = false;
            c->op = &ops[i];
            add_change(&changes, order, c);
        }
        c->op = &ops[i];
        c->count++;
        c->meta.generation++;
        c->meta.present = !ops[i].is_delete;
        c->meta.length = ops[i].is_delete ? 0 : (uint32_t)ops[i].len;
        c->remove = ops[i].is_delete && !e->registered_max;
    }
    nvt_unlock(&st->index_lock, NVT_LOCK_INDEX);
    if (order->len == 0)
        goto out;

    for (guint i = 0; r == 0 && i < order->len; i++) {
        blob_change *c = order->pdata[i];
        if (!c->remove)
            r = seal_and_encode(st, c);
    }
    if (r < 0) {
        for (size_t i = 0; i < n; i++)
            if (!ops[i].message)
                op_fail(&ops[i], r);
        goto out;
    }
    r = commit_changes(st, (blob_change **)order->pdata, order->len);
    if (r == -E2BIG && order->len > 1 && !atomic) {
        /* Too large for one journal frame: each blob on its own. */
        r = 0;
        for (guint i = 0; i < order->len; i++) {
            blob_change *c = order->pdata[i];
            c->result = commit_changes(st, &c, 1);
            if (c->result < 0) {
                r = r ? r : c->result;
                g_free(c->op->message);
                c->op->message = g_strdup(nvt_last_error());
            }
        }
    } else {
        for (guint i = 0; i < order->len; i++)
            ((blob_change *)order->pdata[i])->result = r;
    }
    /* Every valid request shares the result of its blob's change. */
    char *group_msg = r < 0 ? g_strdup(nvt_last_error()) : NULL;
    for (size_t i = 0; i < n; i++) {
        if (ops[i].message)
            continue;  /* failed alone, or carries its blob's own message */
        blob_change *c = find_change(changes, order, ops[i].name);
        if (c && c->result < 0) {
            ops[i].result = c->result;
            ops[i].message = g_strdup(group_msg);
        }
    }
    for (guint i = 0; i < order->len; i++) {
        blob_change *c = order->pdata[i];
        if (c->result < 0 && c->op->message == NULL)
            c->op->message = g_strdup(group_msg);
    }
    g_free(group_msg);

out:
    g_ptr_array_free(order, TRUE);
    if (changes)
        g_hash_table_destroy(changes);
    return r;
}

int nvt_store_commit_group(nvt_store *st, nvt_store_op *ops, size_t n)
{
    return commit_requests(st, ops, n, false);
}

int nvt_store_commit_batch(nvt_store *st, nvt_store_op *ops, size_t n)
{
    return commit_requests(st, ops, n, true);
}

/* A single request as a group of one; its message stays in this thread. */
static int commit_one(nvt_store *st, const char *name, const void *data, size_t len,
                     bool is_delete)
{
    nvt_store_op op = { .name = name, .data = data, .len = len, .is_delete = is_delete };
    nvt_store_commit_group(st, &op, 1);
    if (op.result < 0)
        nvt_error(-op.result, "%s", op.message ? op.message : "request failed");
    g_free(op.message);
    return op.result;
}

int nvt_store_write(nvt_store *st, const char *name, const void *data, size_t len)
{
    return commit_one(st, name, data, len, false);
}

int nvt_store_delete(nvt_store *st, const char *name)
{
    return commit_one(st, name, NULL, 0, true);
}

uint32_t nvt_store_group_pages(const nvt_blob_spec *specs, size_t n, uint32_t extra)
{
    uint64_t pages = GROUP_EXTRA_PAGES;
    for (size_t i = 0; i < n; i++)
        pages += blob_pages(&specs[i], extra);
    return (uint32_t)MIN(MAX(pages, JOURNAL_MIN_PAGES), (uint64_t)UINT32_MAX / NVT_PAGE_SIZE);
}

uint64_t nvt_store_groups(const nvt_store *st)
{
    return st->groups;
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const nvt_blob_info *)a)->name, ((const nvt_blob_info *)b)->name);
}

int nvt_store_list(nvt_store *st, nvt_blob_info **blobs, size_t *count)
{
    size_t n = g_hash_table_size(st->index), i = 0;
    nvt_blob_info *out = g_new0(nvt_blob_info, n ? n : 1);
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, st->index);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        blob_entry *e = v;
        g_strlcpy(out[i].name, k, sizeof out[i].name);
        out[i].size = e->meta.present ? e->meta.length : 0;
        out[i].max_size = e->meta.max_size;
        out[i].generation = e->meta.generation;
        out[i].crc32c = e->meta.crc32c;
        out[i].present = e->meta.present && !e->damage;
        out[i].registered = e->registered_max != 0;
        i++;
    }
    qsort(out, n, sizeof *out, entry_cmp);
    *blobs = out;
    *count = n;
    return 0;
}

void nvt_store_get_stats(nvt_store *st, nvt_store_stats *info)
{
    GHashTableIter it;
    gpointer k, v;

    info->data_capacity = nvt_pager_capacity(st->pg);
    info->data_used = nvt_pager_length(st->pg);
    info->reserved_bytes = info->value_bytes = 0;
    info->entries = info->slots = 0;
    g_hash_table_iter_init(&it, st->index);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        blob_entry *e = v;
        info->slots++;
        info->reserved_bytes += e->meta.max_size;
        if (e->meta.present && !e->damage) {
            info->entries++;
            info->value_bytes += e->meta.length;
        }
    }
    info->flushes = nvt_pager_flushes(st->pg);
    info->commits = st->groups;
    info->journaled = st->journal_mode;
}

typedef struct check_ctx {
    nvt_store *st;
    nvt_report_fn *report;
    void *opaque;
    int problems;
} check_ctx;

static void problem(check_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(check_ctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    c->problems++;
    if (c->report)
        c->report(c->opaque, msg);
    g_free(msg);
}

static int check_one(struct tdb_context *tdb, TDB_DATA key, TDB_DATA data, void *opaque)
{
    check_ctx *c = opaque;
    char name[NVT_BLOB_NAME_MAX + 1];
    nvt_record_meta m;

    if (key.dsize == 0 || key.dsize > NVT_BLOB_NAME_MAX) {
        problem(c, "%s: record with a %zu-byte key is not a blob", c->st->be->name, key.dsize);
        return 0;
    }
    memcpy(name, key.dptr, key.dsize);
    name[key.dsize] = '\0';
    if (memchr(name, '\0', key.dsize) || nvt_blob_name_check(name) < 0) {
        problem(c, "%s: record with key '%.*s' is not a blob", c->st->be->name, (int)key.dsize,
                name);
        return 0;
    }
    if (nvt_record_decode(name, data.dptr, data.dsize, true, &m) < 0) {
        problem(c, "%s: %s", c->st->be->name, nvt_last_error());
        return 0;
    }
    if (check_sealing(c->st, name, &m) < 0) {
        problem(c, "%s", nvt_last_error());
        return 0;
    }
    /* With the key, every tag is verified; without, the structure only. */
    if (m.encrypted && nvt_crypt_has_key(c->st->crypt)) {
        uint8_t *out = g_malloc(m.length + 1);
        if (nvt_crypt_open(c->st->crypt, m.keyslot, name, m.generation,
                           data.dptr + NVT_RECORD_HEADER_SIZE,
                           nvt_record_stored_len(&m), out) < 0)
            problem(c, "%s: %s", c->st->be->name, nvt_last_error());
        OPENSSL_cleanse(out, m.length);
        g_free(out);
    }
    return 0;
}

int nvt_store_check(nvt_store *st, nvt_report_fn *report, void *opaque)
{
    check_ctx c = { st, report, opaque, 0 };
    int r = store_usable(st);
    if (r < 0)
        return r;
    st->tdb_msg[0] = '\0';
    if (tdb_check(st->tdb, NULL, NULL) != 0)
        problem(&c, "%s: tdb structure is damaged: %s", st->be->name, tdb_why(st));
    st->tdb_msg[0] = '\0';
    if (tdb_traverse_read(st->tdb, check_one, &c) < 0)
        problem(&c, "%s: cannot walk the tdb's records: %s", st->be->name, tdb_why(st));
    return c.problems;
}

uint64_t nvt_store_flushes(const nvt_store *st)
{
    return nvt_pager_flushes(st->pg);
}

uint64_t nvt_store_commits(const nvt_store *st)
{
    return st->commits;
}

/* ---- standalone tdb files (export.c) -------------------------------- */

int nvt_store_fetch_record(nvt_store *st, const char *name, uint8_t **value, size_t *size)
{
    int r = store_usable(st);
    if (r == 0)
        r = nvt_blob_name_check(name);
    if (r < 0)
        return r;
    TDB_DATA raw;
    nvt_record_meta m;
    r = fetch_record(st, name, &raw, &m);
    if (r < 0)
        return r;
    *value = raw.dptr;
    *size = raw.dsize;
    return 0;
}
