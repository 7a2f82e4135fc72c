/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * store.h — blobs as tdb records inside an image's tdb region.
 *
 * The store owns the tdb context (opened through a vfile over the image's
 * tdb region), an in-memory index of every record's metadata, and the
 * space policy that makes the bounded-space contract hold:
 *
 *   Every blob's record is allocated once at its maximum size and from
 *   then on only ever rewritten in place (tdb_update_hash), so steady-state
 *   writes never allocate.  After any change of the set of records, every
 *   record is rewritten once at its maximum inside one transaction, which
 *   grows tdb's recovery area to the size a commit touching all blobs at
 *   their maxima needs.  Deleting a registered blob keeps its allocation
 *   (the record stays, marked absent).  Hence an image formatted for a set
 *   of blobs accepts any sequence of writes within their maxima, forever.
 *
 * Commits go through the image's pager (pager.h).  In journal mode a
 * group's tdb stores are staged and committed as one journal frame; in
 * stock mode every group is one tdb transaction (never a bare tdb_store,
 * which frees the old value before allocating the new one).  Any backend
 * error latched by the pager fails the operation even if tdb reported
 * success, and the image is then recovered (the journal replayed, or
 * tdb's recovery run as it reopens) back to a committed state.  Not
 * thread-safe: the caller serialises calls on one store.
 */
#ifndef NVT_STORE_H
#define NVT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "image.h"
#include "record.h"

typedef struct nvt_store nvt_store;

/* The library's limits on blobs, in internal terms (store.h does not see
 * the public header; nvramtdb.c asserts they equal NVRAMTDB_NAME_MAX and
 * NVRAMTDB_BLOB_MAX). */
#define NVT_BLOB_NAME_MAX 127                    /* bytes, including the '/' */
#define NVT_BLOB_MAX_SIZE (16u * 1024 * 1024)    /* largest maximum a blob may have */

/* What the store knows about one blob (nvramtdb.c turns it into an
 * nvramtdb_entry). */
typedef struct nvt_blob_info {
    char name[NVT_BLOB_NAME_MAX + 1];
    uint32_t size;        /* length of the value (0 if none) */
    uint32_t max_size;    /* space reserved for it */
    uint64_t generation;  /* number of times it was written */
    uint32_t crc32c;      /* CRC32C of the value */
    bool present;         /* has a value (and its header is readable) */
    bool registered;      /* registered by this handle */
} nvt_blob_info;

/* The store's counters and sums (nvramtdb.c puts them in nvramtdb_info). */
typedef struct nvt_store_stats {
    uint64_t data_capacity;   /* bytes of the tdb region */
    uint64_t data_used;       /* bytes tdb uses in it */
    uint64_t reserved_bytes;  /* sum of blob maxima */
    uint64_t value_bytes;     /* sum of current value lengths */
    uint32_t entries;         /* blobs with a value */
    uint32_t slots;           /* blobs with reserved space */
    uint64_t flushes;         /* backend flushes since open */
    uint64_t commits;         /* groups committed since open */
    bool journaled;           /* commits go through the journal */
} nvt_store_stats;

/* Called once per problem nvt_store_check() finds. */
typedef void nvt_report_fn(void *opaque, const char *problem);

typedef struct nvt_blob_spec {
    const char *name;
    uint32_t max_size;
} nvt_blob_spec;

/* Build, in memory, a complete tdb file holding space for @specs (the
 * formatting recipe).  *tdb receives a g_malloc()ed buffer of *len bytes. */
int nvt_store_build_fresh(const nvt_blob_spec *specs, size_t n, uint8_t **tdb, uint64_t *len);
/* The same with @extra stored bytes per value (NVT_RECORD_CRYPT_OVERHEAD
 * on an encrypted image). */
int nvt_store_build_fresh_extra(const nvt_blob_spec *specs, size_t n, uint32_t extra,
                                uint8_t **tdb, uint64_t *len);

/* Open flags. */
#define NVT_STORE_STOCK_COMMIT (1u << 0)  /* tdb transactions (4 flushes), no journal */

/* Open the tdb of @img (whose backend is @img->be).  Logical length
 * changes are persisted in the superblock.  If the image has a journal,
 * its frames are replayed first; commits then use the journal
 * unless NVT_STORE_STOCK_COMMIT is given (pager.h). */
int nvt_store_open(nvt_image *img, unsigned flags, nvt_store **out);
/* True when commits go through the journal (one flush each). */
bool nvt_store_journaled(const nvt_store *st);
/* Make every in-place write durable and empty the journal, so that a
 * closed image needs no replay (two flushes; done at close). */
int nvt_store_checkpoint(nvt_store *st);

/* Journal pages a group rewriting every blob in @specs at its maximum
 * needs; the size to give the journal of a new image. */
uint32_t nvt_store_group_pages(const nvt_blob_spec *specs, size_t n, uint32_t extra);
void nvt_store_close(nvt_store *st);

struct nvt_crypt;
/* Encrypted images (the superblock's flag): values are sealed and opened
 * with @crypt (borrowed; it may have no key yet: value reads and writes
 * then fail with -ENOKEY, listing works). */
void nvt_store_set_crypt(nvt_store *st, struct nvt_crypt *crypt);
bool nvt_store_encrypted(const nvt_store *st);
/* Which key slots seal the image's present values (index, no I/O). */
void nvt_store_keyslots_used(nvt_store *st, bool used[2]);
/* Rewrite every present value, sealed under the context's seal slot, as
 * one atomic batch (a re-key).  Errors as nvt_store_commit_batch() and
 * nvt_store_read(). */
int nvt_store_reseal_all(nvt_store *st);

/* Make room for @specs: add missing blobs, grow maxima that increased.
 * Fails with -ENOSPC (nothing changed) when the region cannot hold them,
 * giving the sizes.  With @read_only, only reports -EROFS if a change is
 * needed.  Marks the blobs as registered. */
int nvt_store_reserve(nvt_store *st, const nvt_blob_spec *specs, size_t n, bool read_only);

/* Would a write of @len bytes (or a delete, @len ignored) be accepted?
 * Checks the name, the blob's existence and maximum; no I/O. */
int nvt_store_validate(nvt_store *st, const char *name, size_t len, bool is_delete);

int nvt_store_read(nvt_store *st, const char *name, uint8_t **data, size_t *len);
/* One request of a group: a write (data/len) or a delete. */
typedef struct nvt_store_op {
    const char *name;
    const uint8_t *data;
    size_t len;
    bool is_delete;
    int result;            /* out: 0 or a negative errno */
    char *message;         /* out: g_malloc()ed message when result < 0 */
} nvt_store_op;

/* Commit @ops, in order, as one atomic group: the ops that are valid on
 * their own (registered blob, within its maximum, a delete of a value
 * that exists at that point) commit together or fail together; the
 * others fail alone.  Several ops on one blob coalesce to the last.
 * Returns the group's error (0 if it committed or had nothing to do). */
int nvt_store_commit_group(nvt_store *st, nvt_store_op *ops, size_t n);
/* The same, all or nothing: if any op is invalid, or the group does not
 * fit one journal frame (-E2BIG, never split), every op fails and
 * nothing changes. */
int nvt_store_commit_batch(nvt_store *st, nvt_store_op *ops, size_t n);
/* The store's sticky failure (0 if usable), with its message. */
int nvt_store_failure(nvt_store *st);

int nvt_store_write(nvt_store *st, const char *name, const void *data, size_t len);
int nvt_store_delete(nvt_store *st, const char *name);
/* Every blob on the image, sorted by name: *blobs receives a g_malloc()ed
 * array of *count entries. */
int nvt_store_list(nvt_store *st, nvt_blob_info **blobs, size_t *count);
void nvt_store_get_stats(nvt_store *st, nvt_store_stats *stats);
/* tdb_check plus every record's header and checksum; returns the number
 * of problems found, or a negative errno. */
int nvt_store_check(nvt_store *st, nvt_report_fn *report, void *opaque);

/* Counters for benchmarks and tests. */
uint64_t nvt_store_groups(const nvt_store *st);
uint64_t nvt_store_flushes(const nvt_store *st);
uint64_t nvt_store_commits(const nvt_store *st);

/* Validate a blob name ("<device>/<entry>"). */
int nvt_blob_name_check(const char *name);

/* A blob's record value exactly as stored (header + payload), checked in
 * full (nvt_record_decode with the payload): *value is malloc()ed.
 * Errors: -ENOENT not on the image; -EBADMSG damaged record. */
int nvt_store_fetch_record(nvt_store *st, const char *name, uint8_t **value, size_t *size);

#endif /* NVT_STORE_H */
