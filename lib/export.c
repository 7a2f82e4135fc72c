/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * export.c — standalone tdb files: nvramtdb_export_tdb() and
 * nvramtdb_import_tdb() (nvramtdb.h).
 *
 * Owns the format of an export: an ordinary tdb file (TDB_DEFAULT, hash
 * size 131) with one record per blob, keyed by the blob's name without a
 * NUL, whose value is the image's record byte for byte (record.h).
 *
 * Promises:
 * - export never replaces a file (O_EXCL), writes every record in one tdb
 *   transaction, syncs the file and its directory, and removes the file
 *   if anything fails; it reads the records after a flush, in one walk
 *   under the store lock (nvt_handle_export_records), so the file is one
 *   consistent state of the image;
 * - import never trusts the file: it works on a private in-memory copy
 *   (tdb's recovery, if one is pending, is applied to the copy; the
 *   foreign file is never written nor locked), runs the tdb guard on it,
 *   and checks every key and record in full before it registers or
 *   writes anything.  The values are committed like any other write: as
 *   one nvramtdb_write_batch() (queued behind the writes accepted before
 *   the call), or, when such a batch does not fit the image's journal,
 *   blob by blob with nvramtdb_write().
 */
#include "config.h"

#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <tdb.h>

#include "error.h"
#include "internal.h"
#include "pager.h"
#include "record.h"
#include "store.h"
#include "tdbfile.h"
#include "tdbguard.h"
#include "vfs.h"
#include "nvramtdb.h"

/* A file is addressed by tdb with 32-bit offsets. */
#define EXPORT_FILE_MAX UINT32_MAX

typedef struct export_rec {
    char *name;
    uint8_t *value;     /* malloc()ed (tdb's or ours) */
    size_t size;
    nvt_record_meta meta;
} export_rec;

static void export_rec_free(gpointer p)
{
    export_rec *r = p;
    g_free(r->name);
    free(r->value);
    g_free(r);
}

/* ---- export --------------------------------------------------------- */

/* Keeps one blob record of the image (nvt_handle_export_records). */
static int collect_record(void *opaque, const char *name, uint8_t *record, size_t size)
{
    export_rec *rec = g_new0(export_rec, 1);
    rec->name = g_strdup(name);
    rec->value = record;
    rec->size = size;
    g_ptr_array_add(opaque, rec);
    return 0;
}

/* Make the new directory entry durable (best effort: not every file
 * system lets a directory be opened and synced). */
static void sync_parent(const char *path)
{
    char *copy = g_strdup(path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    g_free(copy);
}

static int write_file(const char *path, GPtrArray *recs)
{
    char msg[NVT_TDBFILE_MSG_SIZE];

    errno = 0;
    struct tdb_context *tdb = nvt_tdbfile_open(path, 0, TDB_DEFAULT, O_CREAT | O_EXCL | O_RDWR,
                                               0600, msg);
    if (!tdb) {
        int err = errno ? errno : EIO;
        if (err == EEXIST)
            return nvt_error(EEXIST, "%s: file exists; refusing to replace it", path);
        return nvt_error(err, "%s: cannot create the tdb file: %s", path,
                         msg[0] ? msg : g_strerror(err));
    }
    int r = 0;
    bool in_txn = tdb_transaction_start(tdb) == 0;
    if (!in_txn)
        r = nvt_error(EIO, "%s: cannot start a transaction: %s", path, nvt_tdbfile_why(tdb, msg));
    for (guint i = 0; r == 0 && i < recs->len; i++) {
        export_rec *rec = recs->pdata[i];
        TDB_DATA key = { .dptr = (unsigned char *)rec->name, .dsize = strlen(rec->name) };
        TDB_DATA val = { .dptr = rec->value, .dsize = rec->size };
        if (tdb_store(tdb, key, val, TDB_INSERT) != 0)
            r = nvt_error(EIO, "%s: storing blob %s failed: %s", path, rec->name,
                          nvt_tdbfile_why(tdb, msg));
    }
    if (r == 0 && tdb_transaction_commit(tdb) != 0)
        r = nvt_error(EIO, "%s: commit failed: %s", path, nvt_tdbfile_why(tdb, msg));
    else if (r < 0 && in_txn)
        (void)tdb_transaction_cancel(tdb);
    if (r == 0 && fsync(tdb_fd(tdb)) != 0)
        r = nvt_error(errno, "%s: fsync failed: %s", path, g_strerror(errno));
    if (nvt_tdbfile_close(tdb) != 0 && r == 0)
        r = nvt_error(EIO, "%s: close failed", path);
    if (r < 0)
        unlink(path);
    else
        sync_parent(path);
    return r;
}

int nvramtdb_export_tdb(nvramtdb *db, const char *path)
{
    if (!path || !*path)
        return nvt_error(EINVAL, "%s: no file to export to", nvt_handle_uri(db));
    /* Every write accepted before this call is committed first. */
    int r = nvramtdb_flush(db);
    if (r < 0)
        return r;
    GPtrArray *recs = g_ptr_array_new_with_free_func(export_rec_free);
    r = nvt_handle_export_records(db, collect_record, recs);
    if (r == 0)
        r = write_file(path, recs);
    g_ptr_array_free(recs, TRUE);
    return r;
}

/* ---- import --------------------------------------------------------- */

typedef struct scan_ctx {
    const char *path;
    GPtrArray *recs;
    int result;
} scan_ctx;

static int scan_one(struct tdb_context *tdb, TDB_DATA key, TDB_DATA data, void *opaque)
{
    (void)tdb;
    scan_ctx *c = opaque;
    char name[NVRAMTDB_NAME_MAX + 1];

    if (key.dsize == 0 || key.dsize > NVRAMTDB_NAME_MAX || memchr(key.dptr, '\0', key.dsize)) {
        char *raw = g_strndup((const char *)key.dptr, MIN(key.dsize, 64));
        char *shown = g_strescape(raw, NULL);
        c->result = nvt_error(EBADMSG, "%s: key '%s' is not a blob name", c->path, shown);
        g_free(shown);
        g_free(raw);
        return 1;
    }
    memcpy(name, key.dptr, key.dsize);
    name[key.dsize] = '\0';
    if (nvt_blob_name_check(name) < 0) {
        c->result = nvt_error_prefix(EBADMSG, "%s", c->path);
        return 1;
    }
    export_rec *rec = g_new0(export_rec, 1);
    rec->name = g_strdup(name);
    g_ptr_array_add(c->recs, rec);
    int r = nvt_record_decode(name, data.dptr, data.dsize, true, &rec->meta);
    if (r < 0) {
        c->result = nvt_error_prefix(EBADMSG, "%s", c->path);
        return 1;
    }
    if (rec->meta.encrypted) {
        c->result = nvt_error(EBADMSG, "%s: blob %s: the record is encrypted (bound to the "
                              "image it came from)", c->path, name);
        return 1;
    }
    if (rec->meta.max_size > NVRAMTDB_BLOB_MAX) {
        c->result = nvt_error(EBADMSG, "%s: blob %s: maximum of %u bytes is above the %u "
                              "bytes a blob may have", c->path, name, rec->meta.max_size,
                              NVRAMTDB_BLOB_MAX);
        return 1;
    }
    if (rec->meta.present && rec->meta.length) {
        rec->value = malloc(rec->meta.length);
        if (!rec->value) {
            c->result = nvt_error(ENOMEM, "%s: out of memory reading blob %s", c->path, name);
            return 1;
        }
        memcpy(rec->value, data.dptr + NVT_RECORD_HEADER_SIZE, rec->meta.length);
        rec->size = rec->meta.length;
    }
    return 0;
}

/* By name: deterministic order, hence deterministic messages. */
static gint rec_cmp(gconstpointer a, gconstpointer b)
{
    return strcmp((*(export_rec *const *)a)->name, (*(export_rec *const *)b)->name);
}

/* Open a private copy of the file with tdb and check everything in it. */
static int scan_file(const char *path, GPtrArray *recs)
{
    gchar *bytes = NULL;
    gsize len = 0;
    GError *err = NULL;
    struct stat sb;
    /* Refuse a huge file before reading it into memory. */
    if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && (uint64_t)sb.st_size > EXPORT_FILE_MAX)
        return nvt_error(EBADMSG, "%s: %llu bytes is too large for a tdb file", path,
                         (unsigned long long)sb.st_size);
    if (!g_file_get_contents(path, &bytes, &len, &err)) {
        int e = err->domain == G_FILE_ERROR && err->code == G_FILE_ERROR_NOENT ? ENOENT : EIO;
        int r = nvt_error(e, "%s", err->message);
        g_error_free(err);
        return r;
    }
    if (len > EXPORT_FILE_MAX) {
        g_free(bytes);
        return nvt_error(EBADMSG, "%s: %zu bytes is too large for a tdb file", path, len);
    }
    nvt_backend *be = nvt_mem_backend_new(bytes, len);
    g_free(bytes);
    g_free(be->name);
    be->name = g_strdup(path);

    bool needs_recovery = false;
    int r = nvt_tdbguard_check(be, 0, len, &needs_recovery);
    if (r < 0) {
        r = nvt_error_prefix(EBADMSG, "%s: not a valid tdb file", path);
        nvt_be_close(be);
        return r;
    }
    nvt_pager *pg = nvt_pager_new(be, 0, len, len, NULL, NULL);
    nvt_vfile *vf = nvt_vfile_new(pg);
    char msg[NVT_TDBFILE_MSG_SIZE];
    /* Read-write on the copy only: a pending recovery is replayed there. */
    struct tdb_context *tdb = nvt_tdbfile_open(nvt_vfile_path(vf), 0, TDB_NOLOCK | TDB_NOMMAP,
                                               O_RDWR, 0600, msg);
    if (!tdb) {
        r = nvt_error(EBADMSG, "%s: tdb cannot open it: %s", path,
                      msg[0] ? msg : "invalid tdb file");
    } else {
        if (needs_recovery)
            r = nvt_tdbguard_walk(be, 0, nvt_pager_length(pg));
        scan_ctx c = { .path = path, .recs = recs };
        if (r == 0 && tdb_traverse_read(tdb, scan_one, &c) < 0 && c.result == 0)
            r = nvt_error(EBADMSG, "%s: cannot list its records: %s", path,
                          nvt_tdbfile_why(tdb, msg));
        if (r == 0)
            r = c.result;
        nvt_tdbfile_close(tdb);
        g_ptr_array_sort(recs, rec_cmp);
    }
    nvt_vfile_free(vf);
    nvt_pager_free(pg);
    nvt_be_close(be);
    return r;
}

static int import_register(nvramtdb *db, GPtrArray *recs)
{
    int r = 0;
    for (guint i = 0; r == 0 && i < recs->len; i++) {
        export_rec *rec = recs->pdata[i];
        r = nvt_handle_register_at_least(db, rec->name, MAX(rec->meta.max_size, 1u));
    }
    return r < 0 ? r : (int)recs->len;
}

/* Commit the values of @changes: one batch, like every other write, or
 * blob by blob when a batch that large does not fit the journal. */
static int import_commit(nvramtdb *db, const nvramtdb_change *changes, size_t n)
{
    int r = nvramtdb_write_batch(db, changes, n, 0, NULL, NULL);
    if (r != -E2BIG)
        return r;
    for (size_t i = 0; i < n; i++) {
        r = nvramtdb_write(db, changes[i].name, changes[i].data, changes[i].len, 0, NULL, NULL);
        if (r < 0)
            return r;
    }
    return 0;
}

static int import_write(nvramtdb *db, const char *path, GPtrArray *recs)
{
    int r = nvt_handle_need_writable(db);
    if (r < 0)
        return r;
    /* Every value is checked before anything is queued. */
    nvramtdb_change *changes = g_new0(nvramtdb_change, recs->len);
    size_t n = 0;
    for (guint i = 0; i < recs->len; i++) {
        export_rec *rec = recs->pdata[i];
        if (!rec->meta.present)
            continue;
        r = nvt_handle_validate_write(db, rec->name, rec->size);
        if (r < 0) {
            r = nvt_error_prefix(-r, "%s: cannot import %s", nvt_handle_uri(db), path);
            goto out;
        }
        changes[n++] = (nvramtdb_change){ .struct_size = sizeof(nvramtdb_change),
                                          .name = rec->name, .data = rec->value,
                                          .len = rec->size };
    }
    if (n) {
        r = import_commit(db, changes, n);
        if (r < 0)
            r = nvt_error_prefix(-r, "%s: importing %s", nvt_handle_uri(db), path);
    }
out:
    g_free(changes);
    return r < 0 ? r : (int)n;
}

int nvramtdb_import_tdb(nvramtdb *db, const char *path, unsigned flags)
{
    if (flags & ~NVRAMTDB_IMPORT_REGISTER)
        return nvt_error(EINVAL, "%s: unknown import flags 0x%x", nvt_handle_uri(db), flags);
    if (!path || !*path)
        return nvt_error(EINVAL, "%s: no file to import from", nvt_handle_uri(db));
    GPtrArray *recs = g_ptr_array_new_with_free_func(export_rec_free);
    int r = scan_file(path, recs);
    if (r == 0)
        r = (flags & NVRAMTDB_IMPORT_REGISTER) ? import_register(db, recs)
                                               : import_write(db, path, recs);
    g_ptr_array_free(recs, TRUE);
    return r;
}
