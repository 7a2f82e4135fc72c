/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * nvramtdb.c — the public API (nvramtdb.h): handles, URIs, start-up.
 *
 * A handle owns the backend, the image (superblocks) and the store.  It
 * adds policy only: which backend a URI names, locking, when to format,
 * read-only opens working on a private copy, request validation before
 * execution.  @lock guards the handle's own state (registrations,
 * start); @store_lock serialises access to the store between the writer
 * thread (queue.c) and direct reads, listings, checks and the record walk
 * of an export (nvt_handle_export_records).  export.c never sees the
 * store nor the lock (internal.h).
 */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "crypt.h"
#include "debug.h"
#include "error.h"
#include "image.h"
#include "internal.h"
#include "journal.h"
#include "owner.h"
#include "queue.h"
#include "tdbguard.h"
#include "nvramtdb.h"
#include "store.h"

/* The store and the queue use internal names for the public limits and
 * callback; they must agree. */
_Static_assert(NVT_BLOB_NAME_MAX == NVRAMTDB_NAME_MAX, "blob name limit");
_Static_assert(NVT_BLOB_MAX_SIZE == NVRAMTDB_BLOB_MAX, "blob size limit");
_Static_assert(sizeof(((nvt_blob_info *)0)->name) == sizeof(((nvramtdb_entry *)0)->name),
               "blob name buffer");

struct nvramtdb {
    GMutex lock;
    GMutex store_lock;
    nvt_queue *queue;       /* writable handles, once started */
    char *uri;
    unsigned flags;
    bool read_only;
    bool started;
    nvt_backend *be;        /* the image's backend */
    bool use_owner;         /* no lock crosses to the image: an ownership record */
    nvt_owner *owner;       /* this writer's claim, once started */
    nvt_backend *copy;      /* read-only: private in-memory copy of the image */
    nvt_image *img;
    nvt_store *st;
    GArray *specs;          /* nvt_blob_spec, names owned */
    uint64_t image_size;    /* requested size for formatting, 0 = computed */
    uint64_t totalsize;     /* cache of nvramtdb_get_totalsize(), 0 = unknown */
    nvt_secbuf *secret;     /* key material given before start (locked memory) */
    nvt_key_kind key_kind;
    nvt_crypt *crypt;       /* encrypted image: its context (keyless until set) */
};

const char *nvramtdb_last_error(void)
{
    return nvt_last_error();
}

const char *nvramtdb_version(void)
{
    return PACKAGE_VERSION;
}

/* ---- opening -------------------------------------------------------- */

static int open_backend(const char *uri, unsigned flags, nvt_backend **be)
{
    bool ro = flags & NVRAMTDB_OPEN_READONLY;

    if (strcmp(uri, "mem:") == 0) {
        *be = nvt_mem_backend_new(NULL, 0);
        return 0;
    }
    if (g_str_has_prefix(uri, "mem:"))
        return nvt_error(EINVAL, "invalid URI '%s': mem: takes no path", uri);
    if (nvt_nbd_uri(uri)) {
        /* The export exists or not: CREATE means "format it if blank".
         * No lock crosses the network (docs/NBD.md). */
        return nvt_nbd_backend_open(uri, ro ? NVT_NBD_READONLY : 0, be);
    }
    const char *path = g_str_has_prefix(uri, "file:") ? uri + 5 : uri;
    if (!*path)
        return nvt_error(EINVAL, "invalid URI '%s': no path", uri);
    unsigned fflags = (ro ? NVT_FILE_READONLY : 0) |
                      ((flags & NVRAMTDB_OPEN_CREATE) ? NVT_FILE_CREATE : 0);
    int r = nvt_file_backend_open(path, fflags, be);
    if (r < 0)
        return r;
    if (!(flags & NVRAMTDB_OPEN_FORCE_SHARE)) {
        r = nvt_be_lock(*be, !ro);
        if (r < 0) {
            nvt_be_close(*be);
            *be = NULL;
        }
    }
    return r;
}

static int check_open_flags(const char *uri, unsigned flags)
{
    const unsigned known = NVRAMTDB_OPEN_READONLY | NVRAMTDB_OPEN_CREATE |
                           NVRAMTDB_OPEN_FORCE_SHARE | NVRAMTDB_OPEN_STOCK_COMMIT |
                           NVRAMTDB_OPEN_TAKEOVER;
    if (flags & ~known)
        return nvt_error(EINVAL, "%s: unknown open flags 0x%x", uri, flags & ~known);
    if ((flags & NVRAMTDB_OPEN_FORCE_SHARE) && !(flags & NVRAMTDB_OPEN_READONLY))
        return nvt_error(EINVAL, "%s: force-share is only allowed for read-only opens", uri);
    if ((flags & NVRAMTDB_OPEN_CREATE) && (flags & NVRAMTDB_OPEN_READONLY))
        return nvt_error(EINVAL, "%s: cannot create an image read-only", uri);
    if ((flags & NVRAMTDB_OPEN_TAKEOVER) && (flags & NVRAMTDB_OPEN_READONLY))
        return nvt_error(EINVAL, "%s: a takeover needs a writable open", uri);
    return 0;
}

static nvramtdb *handle_new(const char *uri, unsigned flags, nvt_backend *be)
{
    nvramtdb *db = g_new0(nvramtdb, 1);
    g_mutex_init(&db->lock);
    g_mutex_init(&db->store_lock);
    db->uri = g_strdup(uri);
    db->flags = flags;
    db->read_only = flags & NVRAMTDB_OPEN_READONLY;
    db->be = be;
    db->specs = g_array_new(FALSE, FALSE, sizeof(nvt_blob_spec));
    return db;
}

int nvramtdb_open(const char *uri, unsigned flags, nvramtdb **dbp)
{
    *dbp = NULL;
    if (!uri)
        return nvt_error(EINVAL, "no image URI given");
    int r = check_open_flags(uri, flags);
    if (r < 0)
        return r;
    nvt_backend *be;
    r = open_backend(uri, flags, &be);
    if (r < 0)
        return r;
    r = nvt_handle_open(uri, be, flags, dbp);
    if (r == 0)
        (*dbp)->use_owner = nvt_nbd_uri(uri);
    return r;
}

int nvt_handle_open(const char *name, nvt_backend *be, unsigned flags, nvramtdb **dbp)
{
    *dbp = NULL;
    int r = check_open_flags(name, flags);
    if (r < 0) {
        nvt_be_close(be);
        return r;
    }
    *dbp = handle_new(name, flags, be);
    return 0;
}

int nvramtdb_register_blob(nvramtdb *db, const char *name, uint32_t max_size)
{
    int r = nvt_blob_name_check(name);
    if (r < 0)
        return r;
    if (max_size == 0 || max_size > NVRAMTDB_BLOB_MAX)
        return nvt_error(EINVAL, "blob %s: maximum size %u outside 1..%u", name, max_size,
                         NVRAMTDB_BLOB_MAX);
    nvt_lock(&db->lock, NVT_LOCK_DB);
    if (db->started) {
        r = nvt_error(EALREADY, "%s: cannot register blob %s: the image is already started",
                      db->uri, name);
    } else {
        nvt_blob_spec *specs = (nvt_blob_spec *)db->specs->data;
        guint i;
        for (i = 0; i < db->specs->len; i++)
            if (strcmp(specs[i].name, name) == 0)
                break;
        if (i < db->specs->len) {
            specs[i].max_size = max_size;
        } else {
            nvt_blob_spec s = { g_strdup(name), max_size };
            g_array_append_val(db->specs, s);
        }
        db->totalsize = 0;
    }
    nvt_unlock(&db->lock, NVT_LOCK_DB);
    return r;
}

/* The journal a new image needs: room for a group rewriting every
 * registered blob at its maximum. */
/* Stored bytes each value gains on the image start formats: a key given
 * means an encrypted image. */
static uint32_t record_extra(nvramtdb *db)
{
    return db->secret ? NVT_RECORD_CRYPT_OVERHEAD : 0;
}

static uint64_t journal_length(nvramtdb *db)
{
    return nvt_journal_length_for(
        nvt_store_group_pages((nvt_blob_spec *)db->specs->data, db->specs->len,
                              record_extra(db)));
}

/* The formatted tdb for the registered blobs, and the image size it needs. */
static int build_fresh(nvramtdb *db, uint8_t **tdb, uint64_t *len, uint64_t *image_size)
{
    int r = nvt_store_build_fresh_extra((nvt_blob_spec *)db->specs->data, db->specs->len,
                                        record_extra(db), tdb, len);
    if (r < 0)
        return nvt_error_prefix(-r, "%s: computing the image layout", db->uri);
    *image_size = nvt_image_size_for(*len, journal_length(db));
    return 0;
}

int nvramtdb_get_totalsize(nvramtdb *db, uint64_t *bytes)
{
    int r = 0;
    nvt_lock(&db->lock, NVT_LOCK_DB);
    if (!db->totalsize) {
        uint8_t *tdb;
        uint64_t len, size = 0;
        r = build_fresh(db, &tdb, &len, &size);
        if (r == 0) {
            g_free(tdb);
            db->totalsize = size;
        }
    }
    if (r == 0)
        *bytes = db->totalsize;
    nvt_unlock(&db->lock, NVT_LOCK_DB);
    return r;
}

int nvramtdb_get_totalsize_kb(nvramtdb *db, uint64_t *kib)
{
    uint64_t bytes;
    int r = nvramtdb_get_totalsize(db, &bytes);
    if (r == 0)
        *kib = (bytes + 1023) / 1024;
    return r;
}

int nvramtdb_set_image_size(nvramtdb *db, uint64_t bytes)
{
    if (bytes == 0 || bytes % NVT_IMAGE_ALIGN)
        return nvt_error(EINVAL, "%s: image size %llu is not a positive multiple of %u",
                         db->uri, (unsigned long long)bytes, NVT_IMAGE_ALIGN);
    nvt_lock(&db->lock, NVT_LOCK_DB);
    int r = 0;
    if (db->started)
        r = nvt_error(EALREADY, "%s: the image is already started", db->uri);
    else
        db->image_size = bytes;
    nvt_unlock(&db->lock, NVT_LOCK_DB);
    return r;
}

/* ---- start ---------------------------------------------------------- */

static int format_blank(nvramtdb *db)
{
    uint8_t *tdb = NULL;
    uint64_t len = 0, need = 0, have = 0;
    int r = build_fresh(db, &tdb, &len, &need);
    if (r < 0)
        return r;
    uint64_t want = db->image_size ? db->image_size : need;
    if (want < need) {
        r = nvt_error(ENOSPC, "%s: the requested image size of %llu bytes is smaller than the "
                      "%llu bytes the registered blobs need", db->uri,
                      (unsigned long long)want, (unsigned long long)need);
        goto out;
    }
    r = nvt_be_get_size(db->be, &have);
    if (r == 0 && have < want) {
        /* Whatever the backend's reason (a full file system, a file size
         * limit, a block device), the image is too small: ENOSPC. */
        if (nvt_be_resize(db->be, want) < 0) {
            r = nvt_error_prefix(ENOSPC, "%s: image is %llu bytes; the registered blobs "
                                 "need %llu bytes", db->uri, (unsigned long long)have,
                                 (unsigned long long)want);
            goto out;
        }
        have = want;
    }
    /* A larger blank image keeps its size: the rest is room for blobs
     * registered later, a quarter of it in the journal so that their
     * commits fit too. */
    uint64_t size = MAX(want, have / NVT_IMAGE_ALIGN * NVT_IMAGE_ALIGN);
    uint64_t journal = journal_length(db);
    journal += (size - need) / 4 / (2 * NVT_IMAGE_ALIGN) * (2 * NVT_IMAGE_ALIGN);
    uint8_t area[NVT_CRYPT_AREA_SIZE];
    if (r == 0 && db->secret) {
        nvt_crypt_params p;
        r = nvt_crypt_params_new(db->key_kind, db->secret, &p);
        if (r < 0)
            nvt_error_prefix(-r, "%s: encrypting the new image", db->uri);
        else
            nvt_crypt_params_encode(&p, area);
    }
    if (r == 0)
        r = nvt_image_format_crypt(db->be, size, tdb, len, journal, db->secret ? area : NULL,
                                   &db->img);
out:
    g_free(tdb);
    return r;
}

/* Read-only: work on a private copy, so that tdb may replay an interrupted
 * commit without the image ever being written. */
static int open_copy(nvramtdb *db)
{
    nvt_image *real;
    int r = nvt_image_open(db->be, &real);
    if (r < 0)
        return r;
    uint64_t size = real->sb.image_size;
    nvt_image_free(real);
    uint8_t *bytes = g_try_malloc(size);
    if (!bytes)
        return nvt_error(ENOMEM, "%s: cannot copy an image of %llu bytes", db->uri,
                         (unsigned long long)size);
    r = nvt_be_pread(db->be, bytes, size, 0);
    if (r == 0) {
        db->copy = nvt_mem_backend_new(bytes, size);
        g_free(db->copy->name);
        db->copy->name = g_strdup(db->be->name);
        r = nvt_image_open(db->copy, &db->img);
    }
    g_free(bytes);
    return r;
}

/* Slot A valid and slot B never written: formatting stopped before its
 * end if the tdb it describes is not whole (its first page is written
 * after slot A), otherwise slot B was wiped and start repairs it. */
static bool formatting_interrupted(nvramtdb *db)
{
    nvt_image *img;
    bool needs_recovery;
    if (nvt_image_open(db->be, &img) < 0)
        return false;
    bool incomplete = nvt_tdbguard_check(db->be, img->sb.tdb_offset, img->sb.tdb_logical,
                                         &needs_recovery) < 0;
    nvt_image_free(img);
    nvt_error_clear();
    return incomplete;
}

static int check_struct_size(nvramtdb *db, const char *what, size_t size, size_t v1);
static int need_writable(nvramtdb *db);
static int load_secret(nvramtdb *db, const nvramtdb_key *key, nvt_secbuf **out);

/* The image's encryption against the key given, before anything is
 * written (journal replay, repair, reservations): a wrong or missing key
 * changes nothing. */
static int start_crypt(nvramtdb *db, unsigned flags)
{
    const nvt_superblock *sb = &db->img->sb;
    if (!(sb->incompat_flags & NVT_INCOMPAT_ENCRYPTED)) {
        if (db->secret)
            return nvt_error(EINVAL, "%s: a key was given, but the image is not encrypted "
                             "(an image is encrypted when it is created)", db->uri);
        return 0;
    }
    nvt_crypt_params p[2];
    const nvt_crypt_params *ps[2] = { NULL, NULL };
    char why[160];
    for (int i = 0; i < 2; i++) {
        if (!nvt_image_crypt_slot_used(sb, i))
            continue;
        int r = nvt_crypt_params_decode(sb->crypt_area[i], &p[i], why, sizeof why);
        if (r < 0)
            return nvt_error(-r, "%s: %s", db->uri, why);
        ps[i] = &p[i];
    }
    int r = 0;
    if (!db->secret && (flags & NVRAMTDB_START_FAIL_ON_ENCRYPTED))
        return nvt_error(ENOKEY, "%s: the image is encrypted and no key was given (give a "
                         "key file or a passphrase)", db->uri);
    db->crypt = nvt_crypt_new(ps, sb->uuid);
    if (db->secret) {
        r = nvt_crypt_set_key(db->crypt, db->key_kind, db->secret);
        if (r < 0)
            return nvt_error_prefix(-r, "%s", db->uri);
    }
    return 0;
}

/* Both key slots in use: a re-key was interrupted.  Its batch committed
 * all values under one slot or none; the key given must be that one's,
 * and a writer then forgets the other slot (finishing or undoing the
 * re-key).  Nothing is written when the key is the wrong one. */
static int settle_keys(nvramtdb *db)
{
    nvt_store_set_crypt(db->st, db->crypt);
    if (!nvt_crypt_has_key(db->crypt) || !nvt_image_crypt_slot_used(&db->img->sb, 0) ||
        !nvt_image_crypt_slot_used(&db->img->sb, 1))
        return 0;
    int mine = nvt_crypt_seal_slot(db->crypt), other = 1 - mine;
    bool used[2];
    nvt_store_keyslots_used(db->st, used);
    if (used[other])
        return nvt_error(EKEYREJECTED, "%s: the values are sealed under the image's other key "
                         "(a re-key was interrupted): give that key", db->uri);
    if (db->read_only)
        return 0;
    uint8_t areas[2][128];
    memcpy(areas, db->img->sb.crypt_area, sizeof areas);
    memset(areas[other], 0, sizeof areas[other]);
    int r = nvt_image_set_crypt(db->img, areas);
    if (r == 0)
        nvt_crypt_drop_slot(db->crypt, other);
    return r;
}

int nvramtdb_rekey(nvramtdb *db, const nvramtdb_key *key)
{
    int r = need_writable(db);
    if (r < 0)
        return r;
    if (!db->crypt)
        return nvt_error(EINVAL, "%s: the image is not encrypted", db->uri);
    if (!key)
        return nvt_error(EINVAL, "%s: no new key given", db->uri);
    r = check_struct_size(db, "nvramtdb_key", key->struct_size, NVRAMTDB_KEY_SIZE_V1);
    if (r < 0)
        return r;
    nvramtdb_key k = { 0 };
    memcpy(&k, key, MIN((size_t)key->struct_size, sizeof k));
    if (k.type != NVRAMTDB_KEY_RAW && k.type != NVRAMTDB_KEY_PASSPHRASE)
        return nvt_error(EINVAL, "%s: unknown key type %u", db->uri, k.type);
    nvt_secbuf *secret;
    r = load_secret(db, &k, &secret);
    if (r < 0)
        return r;
    nvt_key_kind kind = k.type == NVRAMTDB_KEY_RAW ? NVT_KEY_RAW : NVT_KEY_PASSPHRASE;
    r = nvramtdb_flush(db);   /* every accepted write lands under the old key */
    nvt_lock(&db->store_lock, NVT_LOCK_STORE);
    if (r == 0 && !nvt_crypt_has_key(db->crypt))
        r = nvt_error(ENOKEY, "%s: re-keying needs the current key", db->uri);
    int cur = nvt_crypt_seal_slot(db->crypt), next = 1 - cur;
    nvt_crypt_params p;
    uint8_t areas[2][128];
    memcpy(areas, db->img->sb.crypt_area, sizeof areas);
    if (r == 0)
        r = nvt_crypt_params_new(kind, secret, &p);
    /* 1. The new key's slot, durable, beside the current one. */
    if (r == 0) {
        nvt_crypt_params_encode(&p, areas[next]);
        r = nvt_image_set_crypt(db->img, areas);
    }
    if (r == 0)
        r = nvt_crypt_add_slot(db->crypt, next, &p, kind, secret);
    /* 2. Every value under the new key, one atomic batch. */
    if (r == 0) {
        r = nvt_store_reseal_all(db->st);
        if (r < 0) {
            char msg[1024];
            g_strlcpy(msg, nvt_last_error(), sizeof msg);
            nvt_crypt_drop_slot(db->crypt, next);
            memset(areas[next], 0, sizeof areas[next]);
            nvt_image_set_crypt(db->img, areas);   /* best effort; start settles it */
            nvt_error(-r, "%s: re-keying failed, the old key stays: %s", db->uri, msg);
        }
    }
    /* 3. The old key's slot goes. */
    if (r == 0) {
        memset(areas[cur], 0, sizeof areas[cur]);
        r = nvt_image_set_crypt(db->img, areas);
        if (r == 0)
            nvt_crypt_drop_slot(db->crypt, cur);
        else
            nvt_error_prefix(-r, "%s: the values are under the new key, but the old key's "
                             "parameters could not be removed (the next start does it)",
                             db->uri);
    }
    nvt_unlock(&db->store_lock, NVT_LOCK_STORE);
    nvt_secbuf_free(secret);
    return r;
}

/* Key material from @key into locked memory. */
static int load_secret(nvramtdb *db, const nvramtdb_key *key, nvt_secbuf **out)
{
    const size_t cap = 4096;
    nvt_secbuf *b = nvt_secbuf_new(cap);
    int r = 0;
    if (key->data) {
        if (key->len > cap)
            r = nvt_error(EFBIG, "%s: key material of %zu bytes exceeds %zu", db->uri,
                          key->len, cap);
        else
            memcpy(b->data, key->data, key->len), b->len = key->len;
    } else if (key->path) {
        int fd = open(key->path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            r = nvt_error(errno, "%s: cannot open key file %s: %s", db->uri, key->path,
                          g_strerror(errno));
        else {
            r = nvt_secbuf_read_fd(b, fd, key->path);
            close(fd);
        }
    } else if (key->fd >= 0) {
        char what[32];
        snprintf(what, sizeof what, "file descriptor %d", key->fd);
        r = nvt_secbuf_read_fd(b, key->fd, what);
    } else {
        r = nvt_error(EINVAL, "%s: the key has no data, path or file descriptor", db->uri);
    }
    const char *what = key->path ? key->path : "key";
    if (r == 0 && key->type == NVRAMTDB_KEY_RAW) {
        r = nvt_key_normalize_raw(b, what);
    } else if (r == 0) {
        if (b->len && b->data[b->len - 1] == '\n')
            b->data[--b->len] = '\0';
        if (b->len == 0)
            r = nvt_error(EINVAL, "%s: empty passphrase", what);
    }
    if (r < 0) {
        nvt_secbuf_free(b);
        return r;
    }
    *out = b;
    return 0;
}

int nvramtdb_set_key(nvramtdb *db, const nvramtdb_key *key)
{
    if (!key)
        return nvt_error(EINVAL, "%s: no key given", db->uri);
    int r = check_struct_size(db, "nvramtdb_key", key->struct_size, NVRAMTDB_KEY_SIZE_V1);
    if (r < 0)
        return r;
    nvramtdb_key k = { 0 };
    memcpy(&k, key, MIN((size_t)key->struct_size, sizeof k));
    if (k.type != NVRAMTDB_KEY_RAW && k.type != NVRAMTDB_KEY_PASSPHRASE)
        return nvt_error(EINVAL, "%s: unknown key type %u", db->uri, k.type);
    nvt_secbuf *secret;
    r = load_secret(db, &k, &secret);
    if (r < 0)
        return r;
    nvt_key_kind kind = k.type == NVRAMTDB_KEY_RAW ? NVT_KEY_RAW : NVT_KEY_PASSPHRASE;
    nvt_lock(&db->lock, NVT_LOCK_DB);
    if (!db->started) {
        nvt_secbuf_free(db->secret);
        db->secret = secret;
        db->key_kind = kind;
        db->totalsize = 0;  /* an encrypted image's records are larger */
        nvt_unlock(&db->lock, NVT_LOCK_DB);
        return 0;
    }
    nvt_unlock(&db->lock, NVT_LOCK_DB);
    /* Started: the context is fixed; the store lock (taken before the
     * handle's) orders the key against the writer's use of it. */
    nvt_lock(&db->store_lock, NVT_LOCK_STORE);
    if (!db->crypt)
        r = nvt_error(EINVAL, "%s: the image is not encrypted", db->uri);
    else if (nvt_crypt_has_key(db->crypt))
        r = nvt_error(EALREADY, "%s: the image's key is already given", db->uri);
    else if ((r = nvt_crypt_set_key(db->crypt, kind, secret)) < 0)
        nvt_error_prefix(-r, "%s", db->uri);
    nvt_unlock(&db->store_lock, NVT_LOCK_STORE);
    nvt_secbuf_free(secret);
    return r;
}

int nvramtdb_start(nvramtdb *db, unsigned flags)
{
    bool blank;
    int r;

    if (flags & ~NVRAMTDB_START_FAIL_ON_ENCRYPTED)
        return nvt_error(EINVAL, "%s: unknown start flags 0x%x", db->uri, flags);
    nvt_lock(&db->lock, NVT_LOCK_DB);
    if (db->started) {
        r = nvt_error(EALREADY, "%s: already started", db->uri);
        goto out;
    }
    nvt_probe state;
    r = nvt_image_probe(db->be, &state);
    if (r < 0)
        goto out;
    blank = state == NVT_PROBE_BLANK;
    if (state == NVT_PROBE_ORPHANED_DATA) {
        r = nvt_error(EBADMSG, "%s: both superblock copies are blank but the image holds a "
                      "tdb; refusing to format over it (if the image is new, recreate it)",
                      db->uri);
        goto out;
    }
    if (state == NVT_PROBE_B_UNWRITTEN && !db->read_only && formatting_interrupted(db))
        blank = true;
    if (blank && db->read_only) {
        r = nvt_error(EBADMSG, "%s: image is blank (never formatted)", db->uri);
        goto out;
    }
    if (db->read_only)
        r = open_copy(db);
    else if (blank)
        r = format_blank(db);
    else
        r = nvt_image_open(db->be, &db->img);
    if (r == 0)
        r = start_crypt(db, flags);
    if (r == 0 && !db->read_only && (db->img->sb.ro_compat_flags & ~NVT_RO_COMPAT_KNOWN))
        r = nvt_error(EROFS, "%s: image uses features 0x%x this version can only read; open "
                      "it read-only", db->uri, db->img->sb.ro_compat_flags);
    /* No lock protects an NBD export: the ownership record does. */
    if (r == 0 && db->use_owner && db->read_only && !(db->flags & NVRAMTDB_OPEN_FORCE_SHARE))
        r = nvt_owner_check_free(db->be, &db->img->sb);
    if (r == 0 && db->use_owner && !db->read_only)
        r = nvt_owner_acquire(db->img, db->flags & NVRAMTDB_OPEN_TAKEOVER, &db->owner);
    if (r == 0 && !db->read_only)
        r = nvt_image_repair(db->img);
    if (r == 0)
        r = nvt_store_open(db->img,
                           (db->flags & NVRAMTDB_OPEN_STOCK_COMMIT) ? NVT_STORE_STOCK_COMMIT : 0,
                           &db->st);
    if (r == 0 && db->crypt)
        r = settle_keys(db);
    if (r == 0)
        r = nvt_store_reserve(db->st, (nvt_blob_spec *)db->specs->data, db->specs->len,
                              db->read_only);
    if (r == -ENOSPC) {
        /* Say what would do: a new image for exactly these blobs. */
        char msg[1024];
        uint8_t *tdb = NULL;
        uint64_t len, size;
        g_strlcpy(msg, nvt_last_error(), sizeof msg);
        if (build_fresh(db, &tdb, &len, &size) == 0)
            nvt_error(ENOSPC, "%s; a new image for the registered blobs needs %llu bytes", msg,
                      (unsigned long long)size);
        else
            nvt_error(ENOSPC, "%s", msg);
        g_free(tdb);
    }
    if (r == 0) {
        db->started = true;
        nvt_store_set_crypt(db->st, db->crypt);
        /* The derived key lives in the context; the secret goes. */
        nvt_secbuf_free(db->secret);
        db->secret = NULL;
        if (!db->read_only)
            db->queue = nvt_queue_new(db->st, &db->store_lock);
    } else {
        nvt_crypt_free(db->crypt);
        db->crypt = NULL;
        nvt_store_close(db->st);
        db->st = NULL;
        if (db->owner) {
            /* Keep the start's message, not the release's. */
            char *msg = g_strdup(nvt_last_error());
            nvt_owner_release(db->owner);
            db->owner = NULL;
            nvt_error(-r, "%s", msg);
            g_free(msg);
        }
        nvt_image_free(db->img);
        db->img = NULL;
        nvt_be_close(db->copy);
        db->copy = NULL;
    }
out:
    nvt_unlock(&db->lock, NVT_LOCK_DB);
    return r;
}

/* ---- extensible structures (nvramtdb.h) ----------------------------- */

/* Largest struct_size taken seriously: guards against an uninitialised
 * field, far above any version's size. */
#define STRUCT_SIZE_MAX 65536

static int check_struct_size(nvramtdb *db, const char *what, size_t size, size_t v1)
{
    if (size < v1 || size > STRUCT_SIZE_MAX)
        return nvt_error(EINVAL, "%s: %s size %zu is outside %zu..%u (set struct_size to "
                         "sizeof(%s))", db->uri, what, size, v1, STRUCT_SIZE_MAX, what);
    return 0;
}

/* Copy the library's @known bytes of an output structure into the
 * caller's @size bytes: bytes the caller's version has and this library
 * does not know are zero; struct_size keeps the caller's value. */
static void put_struct(void *dst, size_t size, const void *known, size_t known_size)
{
    uint32_t struct_size = (uint32_t)size;
    memcpy(dst, known, MIN(size, known_size));
    if (size > known_size)
        memset((uint8_t *)dst + known_size, 0, size - known_size);
    memcpy(dst, &struct_size, sizeof struct_size);
}

/* ---- requests ------------------------------------------------------- */

static int need_started(nvramtdb *db)
{
    nvt_lock(&db->lock, NVT_LOCK_DB);
    bool started = db->started;
    nvt_unlock(&db->lock, NVT_LOCK_DB);
    return started ? 0 : nvt_error(EINVAL, "%s: image not started", db->uri);
}

static int need_writable(nvramtdb *db)
{
    int r = need_started(db);
    if (r == 0 && db->read_only)
        r = nvt_error(EROFS, "%s: image is open read-only", db->uri);
    return r;
}

static int read_direct(nvramtdb *db, const char *name, uint8_t **data, size_t *len)
{
    nvt_lock(&db->store_lock, NVT_LOCK_STORE);
    int r = nvt_store_read(db->st, name, data, len);
    nvt_unlock(&db->store_lock, NVT_LOCK_STORE);
    return r;
}

int nvramtdb_read(nvramtdb *db, const char *name, uint8_t **data, size_t *len)
{
    int r = need_started(db);
    if (r == 0)
        r = nvt_blob_name_check(name);
    if (r < 0)
        return r;
    /* Nothing queued or in flight: every earlier write is committed. */
    if (!db->queue || nvt_queue_on_writer(db->queue) || nvt_queue_idle(db->queue))
        return read_direct(db, name, data, len);
    return nvt_queue_read(db->queue, name, true, NULL, NULL, data, len);
}

static const unsigned request_flags = NVRAMTDB_ASYNC | NVRAMTDB_WAIT_COMPLETION;

static bool waits(unsigned flags)
{
    return !(flags & NVRAMTDB_ASYNC) || (flags & NVRAMTDB_WAIT_COMPLETION);
}

int nvramtdb_read_async(nvramtdb *db, const char *name, unsigned flags,
                        nvramtdb_completion_fn *cb, void *opaque)
{
    if (flags & ~request_flags)
        return nvt_error(EINVAL, "%s: unknown read flags 0x%x", db->uri, flags);
    if (!cb)
        return nvt_error(EINVAL, "%s: an asynchronous read needs a callback", db->uri);
    int r = need_started(db);
    if (r == 0)
        r = nvt_blob_name_check(name);
    if (r < 0)
        return r;
    if (!db->queue) {
        uint8_t *data = NULL;
        size_t len = 0;
        r = read_direct(db, name, &data, &len);
        cb(opaque, r, false, data, len);
        return waits(flags) ? r : 0;
    }
    return nvt_queue_read(db->queue, name, waits(flags), cb, opaque, NULL, NULL);
}

/* Validate, then queue.  A request refused by validation is not
 * accepted, so its callback is not called. */
static int validate_and_queue(nvramtdb *db, const char *name, const void *data, size_t len,
                              bool is_delete, unsigned flags, nvramtdb_completion_fn *cb,
                              void *opaque)
{
    if (flags & ~request_flags)
        return nvt_error(EINVAL, "%s: unknown write flags 0x%x", db->uri, flags);
    if (len && !data)
        return nvt_error(EINVAL, "%s: blob %s: no data for %zu bytes", db->uri, name, len);
    int r = need_writable(db);
    if (r == 0)
        r = nvt_store_validate(db->st, name, len, is_delete);
    if (r < 0)
        return r;
    return nvt_queue_write(db->queue, name, data, len, is_delete, waits(flags), cb, opaque);
}

int nvramtdb_write(nvramtdb *db, const char *name, const void *data, size_t len,
                   unsigned flags, nvramtdb_completion_fn *cb, void *opaque)
{
    return validate_and_queue(db, name, data, len, false, flags, cb, opaque);
}

int nvramtdb_delete(nvramtdb *db, const char *name, unsigned flags,
                    nvramtdb_completion_fn *cb, void *opaque)
{
    return validate_and_queue(db, name, NULL, 0, true, flags, cb, opaque);
}

int nvramtdb_write_batch(nvramtdb *db, const nvramtdb_change *changes, size_t n,
                         unsigned flags, nvramtdb_completion_fn *cb, void *opaque)
{
    if (flags & ~request_flags)
        return nvt_error(EINVAL, "%s: unknown write flags 0x%x", db->uri, flags);
    if (!changes || n == 0)
        return nvt_error(EINVAL, "%s: a batch needs at least one change", db->uri);
    int r = need_writable(db);
    if (r < 0)
        return r;
    /* The first change's size is the array's stride. */
    size_t stride = changes[0].struct_size;
    r = check_struct_size(db, "nvramtdb_change", stride, NVRAMTDB_CHANGE_SIZE_V1);
    if (r < 0)
        return r;
    nvt_store_op *ops = g_new0(nvt_store_op, n);
    for (size_t i = 0; r == 0 && i < n; i++) {
        nvramtdb_change change = { 0 };
        memcpy(&change, (const uint8_t *)changes + i * stride, MIN(stride, sizeof change));
        const nvramtdb_change *c = &change;
        size_t len = c->is_delete ? 0 : c->len;
        if (c->struct_size != stride)
            r = nvt_error(EINVAL, "%s: change %zu of the batch has struct_size %u, the first "
                          "has %zu", db->uri, i + 1, c->struct_size, stride);
        else if (!c->name)
            r = nvt_error(EINVAL, "%s: change %zu of the batch has no blob name", db->uri, i + 1);
        else if (len && !c->data)
            r = nvt_error(EINVAL, "%s: blob %s: no data for %zu bytes", db->uri, c->name, len);
        else
            r = nvt_store_validate(db->st, c->name, len, c->is_delete);
        if (r < 0 && c->name && c->struct_size == stride)
            nvt_error_prefix(-r, "change %zu of the batch", i + 1);
        ops[i] = (nvt_store_op){ .name = c->name, .data = c->data, .len = len,
                                 .is_delete = c->is_delete };
    }
    if (r == 0)
        r = nvt_queue_batch(db->queue, ops, n, waits(flags), cb, opaque);
    g_free(ops);
    return r;
}

int nvramtdb_list(nvramtdb *db, size_t entry_size, nvramtdb_entry **entries, size_t *count)
{
    int r = need_started(db);
    if (r == 0)
        r = check_struct_size(db, "nvramtdb_entry", entry_size, NVRAMTDB_ENTRY_SIZE_V1);
    if (r < 0)
        return r;
    nvt_blob_info *blobs = NULL;
    size_t n = 0;
    nvt_lock(&db->store_lock, NVT_LOCK_STORE);
    r = nvt_store_list(db->st, &blobs, &n);
    nvt_unlock(&db->store_lock, NVT_LOCK_STORE);
    if (r < 0)
        return r;
    uint8_t *out = calloc(n ? n : 1, entry_size);
    if (!out) {
        g_free(blobs);
        return nvt_error(ENOMEM, "%s: out of memory listing %zu blobs", db->uri, n);
    }
    for (size_t i = 0; i < n; i++) {
        nvramtdb_entry e = { 0 };
        memcpy(e.name, blobs[i].name, sizeof e.name);
        e.size = blobs[i].size;
        e.max_size = blobs[i].max_size;
        e.generation = blobs[i].generation;
        e.crc32c = blobs[i].crc32c;
        e.present = blobs[i].present;
        e.registered = blobs[i].registered;
        put_struct(out + i * entry_size, entry_size, &e, sizeof e);
    }
    g_free(blobs);
    *entries = (nvramtdb_entry *)out;
    *count = n;
    return 0;
}

int nvramtdb_get_info(nvramtdb *db, nvramtdb_info *out)
{
    int r = need_started(db);
    if (r == 0)
        r = check_struct_size(db, "nvramtdb_info", out->struct_size, NVRAMTDB_INFO_SIZE_V1);
    if (r < 0)
        return r;
    nvramtdb_info info = { 0 };
    nvt_store_stats stats;
    nvt_lock(&db->store_lock, NVT_LOCK_STORE);
    info.format_version = db->img->sb.format_version;
    memcpy(info.uuid, db->img->sb.uuid, 16);
    info.image_size = db->img->sb.image_size;
    nvt_store_get_stats(db->st, &stats);
    nvt_unlock(&db->store_lock, NVT_LOCK_STORE);
    info.data_capacity = stats.data_capacity;
    info.data_used = stats.data_used;
    info.reserved_bytes = stats.reserved_bytes;
    info.value_bytes = stats.value_bytes;
    info.entries = stats.entries;
    info.slots = stats.slots;
    info.flushes = stats.flushes;
    info.commits = stats.commits;
    info.journaled = stats.journaled;
    if (db->crypt) {
        nvt_crypt_params p;
        char why[160];
        info.encryption = NVRAMTDB_INFO_ENCRYPTED;
        if (nvt_crypt_has_key(db->crypt))
            info.encryption |= NVRAMTDB_INFO_KEY_LOADED;
        int slot = nvt_crypt_has_key(db->crypt) ? nvt_crypt_seal_slot(db->crypt)
                   : nvt_image_crypt_slot_used(&db->img->sb, 0) ? 0 : 1;
        if (nvt_crypt_params_decode(db->img->sb.crypt_area[slot], &p, why, sizeof why) == 0 &&
            p.kdf == NVT_KDF_SCRYPT) {
            info.encryption |= NVRAMTDB_INFO_PASSPHRASE;
            info.scrypt_log2n = p.log2n;
            info.scrypt_r = p.r;
            info.scrypt_p = p.p;
        }
    }
    put_struct(out, out->struct_size, &info, sizeof info);
    return 0;
}

int nvramtdb_check(nvramtdb *db, nvramtdb_report_fn *report, void *opaque)
{
    int r = need_started(db);
    if (r < 0)
        return r;
    int problems = 0;
    nvt_lock(&db->store_lock, NVT_LOCK_STORE);
    for (int i = 0; i < 2; i++) {
        if (db->img->slot_valid[i])
            continue;
        problems++;
        if (report) {
            char *msg = g_strdup_printf("%s: superblock copy %c is invalid: %s", db->uri,
                                        'A' + i, db->img->slot_problem[i]);
            report(opaque, msg);
            g_free(msg);
        }
    }
    r = nvt_store_check(db->st, report, opaque);
    nvt_unlock(&db->store_lock, NVT_LOCK_STORE);
    return r < 0 ? r : r + problems;
}

int nvramtdb_flush(nvramtdb *db)
{
    int r = need_started(db);
    if (r < 0 || !db->queue)
        return r;
    return nvt_queue_flush(db->queue);
}

int nvramtdb_close(nvramtdb *db)
{
    if (!db)
        return 0;
    int r = 0;
    if (db->queue && nvt_queue_on_writer(db->queue))
        return nvt_error(EDEADLK, "%s: nvramtdb_close() called from a completion callback",
                         db->uri);
    if (db->queue) {
        /* Drain: every accepted request completes before the store goes. */
        nvt_queue_free(db->queue);
        r = nvt_store_failure(db->st);
        if (r == 0)
            r = nvt_store_checkpoint(db->st);
    }
    if (db->owner) {
        /* Released only once everything is in place (or has failed). */
        int rr = nvt_owner_release(db->owner);
        if (r == 0)
            r = rr;
        db->owner = NULL;
    }
    nvt_store_close(db->st);
    nvt_crypt_free(db->crypt);
    nvt_secbuf_free(db->secret);
    nvt_image_free(db->img);
    nvt_be_close(db->copy);
    nvt_be_close(db->be);
    for (guint i = 0; i < db->specs->len; i++)
        g_free((char *)g_array_index(db->specs, nvt_blob_spec, i).name);
    g_array_free(db->specs, TRUE);
    g_free(db->uri);
    g_mutex_clear(&db->store_lock);
    g_mutex_clear(&db->lock);
    g_free(db);
    return r;
}

/* ---- for export.c (internal.h) -------------------------------------- */
/* Named operations instead of the store and its lock: export.c reads the
 * records under the lock, and writes through the public write path. */

const char *nvt_handle_uri(nvramtdb *db)
{
    return db->uri;
}

int nvt_handle_export_records(nvramtdb *db, nvt_record_visit_fn *visit, void *opaque)
{
    int r = need_started(db);
    if (r < 0)
        return r;
    if (db->crypt)
        return nvt_error(ENOTSUP, "%s: the image is encrypted: its records are bound to it "
                         "and a tdb export would not be readable elsewhere; not supported",
                         db->uri);
    nvt_blob_info *blobs = NULL;
    size_t n = 0;
    nvt_lock(&db->store_lock, NVT_LOCK_STORE);
    r = nvt_store_list(db->st, &blobs, &n);
    for (size_t i = 0; r == 0 && i < n; i++) {
        uint8_t *record;
        size_t size;
        r = nvt_store_fetch_record(db->st, blobs[i].name, &record, &size);
        if (r < 0)
            r = nvt_error_prefix(-r, "%s: cannot export blob %s", db->uri, blobs[i].name);
        else
            r = visit(opaque, blobs[i].name, record, size);
    }
    nvt_unlock(&db->store_lock, NVT_LOCK_STORE);
    g_free(blobs);
    return r;
}

int nvt_handle_need_writable(nvramtdb *db)
{
    return need_writable(db);
}

int nvt_handle_validate_write(nvramtdb *db, const char *name, size_t len)
{
    int r = need_writable(db);
    return r < 0 ? r : nvt_store_validate(db->st, name, len, false);
}

int nvt_handle_register_at_least(nvramtdb *db, const char *name, uint32_t max_size)
{
    nvt_lock(&db->lock, NVT_LOCK_DB);
    if (db->started) {
        nvt_unlock(&db->lock, NVT_LOCK_DB);
        return nvt_error(EALREADY, "%s: cannot register blob %s: the image is already "
                         "started", db->uri, name);
    }
    const nvt_blob_spec *specs = (const nvt_blob_spec *)db->specs->data;
    for (guint i = 0; i < db->specs->len; i++) {
        if (strcmp(specs[i].name, name) == 0 && specs[i].max_size >= max_size) {
            nvt_unlock(&db->lock, NVT_LOCK_DB);
            return 0;
        }
    }
    nvt_unlock(&db->lock, NVT_LOCK_DB);
    return nvramtdb_register_blob(db, name, max_size);
}

/* ---- helpers -------------------------------------------------------- */

int nvramtdb_parse_size(const char *text, uint64_t *bytes)
{
    if (!text || !g_ascii_isdigit(*text))
        return nvt_error(EINVAL, "invalid size '%s': expected a number with an optional "
                         "K, M or G suffix", text ? text : "(null)");
    errno = 0;
    char *end;
    guint64 v = g_ascii_strtoull(text, &end, 10);
    if (errno == ERANGE)
        return nvt_error(ERANGE, "size '%s' is too large", text);
    unsigned shift = 0;
    switch (g_ascii_toupper(*end)) {
    case '\0': break;
    case 'K': shift = 10; end++; break;
    case 'M': shift = 20; end++; break;
    case 'G': shift = 30; end++; break;
    default:
        return nvt_error(EINVAL, "invalid size '%s': unknown suffix '%s'", text, end);
    }
    if (shift && (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0))
        end += strlen(end);
    if (*end)
        return nvt_error(EINVAL, "invalid size '%s': trailing '%s'", text, end);
    if (v > (UINT64_MAX >> shift))
        return nvt_error(ERANGE, "size '%s' is too large", text);
    *bytes = v << shift;
    return 0;
}
