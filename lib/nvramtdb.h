/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * nvramtdb.h — persistent NVRAM blobs of virtual devices, stored as records
 * of a tdb database that lives inside one preallocated image.
 *
 * Life cycle (the shape of QEMU's "NVRAM blobstore" proposal):
 *
 *   nvramtdb *db;
 *   nvramtdb_open("file:/var/lib/vm/nvram.img", NVRAMTDB_OPEN_CREATE, &db);
 *   nvramtdb_register_blob(db, "tpm0/permall", 192 * 1024);
 *   nvramtdb_register_blob(db, "tpm0/volatilestate", 64 * 1024);
 *   uint64_t need;
 *   nvramtdb_get_totalsize(db, &need);              // image size these blobs need
 *   nvramtdb_start(db, 0);                          // format or reconcile
 *   nvramtdb_read(db, "tpm0/permall", &buf, &len);  // at start-up
 *   nvramtdb_write(db, "tpm0/permall", buf, len,
 *                  NVRAMTDB_ASYNC | NVRAMTDB_WAIT_COMPLETION, NULL, NULL);
 *   nvramtdb_close(db);
 *
 * Conventions, for every function below:
 * - Functions returning int return 0 (or a documented non-negative value)
 *   on success and a negative errno on failure.  A human-readable message
 *   describing the most recent failure in the calling thread is available
 *   from nvramtdb_last_error(); it names the image and the blob concerned.
 * - Blob names are "<device>/<entry>": two non-empty components of
 *   [A-Za-z0-9._-], at most 63 bytes each, joined by one '/'.
 * - Buffers returned to the caller are allocated with malloc() and owned by
 *   the caller (free them with free()).
 * - A handle may be used from several threads; calls on one handle are
 *   serialised internally.  Distinct handles are independent.
 * - The structures nvramtdb_change, nvramtdb_entry, nvramtdb_info and
 *   nvramtdb_key can grow: see "extensible structures" below.
 */
#ifndef NVRAMTDB_H
#define NVRAMTDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NVRAMTDB_VERSION_MAJOR 0
#define NVRAMTDB_VERSION_MINOR 1

/** Longest blob name accepted, including the '/'. */
#define NVRAMTDB_NAME_MAX 127
/** Largest maximum size a blob may register (16 MiB). */
#define NVRAMTDB_BLOB_MAX (16u * 1024 * 1024)

typedef struct nvramtdb nvramtdb;

/* ---- extensible structures ---------------------------------------------- *
 * nvramtdb_change, nvramtdb_entry and nvramtdb_info begin with a
 * struct_size that the caller sets to sizeof the structure as it was
 * compiled (in every element of an array of changes, too):
 *
 *   nvramtdb_info info = { .struct_size = sizeof info };
 *   nvramtdb_get_info(db, &info);
 *
 * The library reads and writes only the bytes struct_size covers, so a
 * program keeps working with a later library and with an earlier one:
 * - output (entry, info): the fields the library knows are filled, bytes
 *   of a larger structure it does not know are set to zero;
 * - input (change): bytes of a larger structure it does not know are
 *   ignored (a field added later has a zero value that means what the
 *   earlier versions did);
 * - a struct_size below NVRAMTDB_*_SIZE_V1 (the end of version 1's last
 *   field), or above 64 KiB (an uninitialised size), fails with -EINVAL
 *   and a message.
 * Later versions only append fields, never reorder, resize or remove
 * one; the first field a version adds is 8-byte aligned, so that it
 * never falls in the tail padding of the previous version's structure.
 */

/* ---- threads ---------------------------------------------------------- *
 * Each writable handle has a writer thread.  Writes, deletes, queued reads
 * and flush barriers are executed by it in submission order; everything
 * pending is committed as one atomic group (one journal frame and one
 * flush).  Completion callbacks run on the writer thread, outside the
 * library's locks: a callback may submit NVRAMTDB_ASYNC requests and read
 * synchronously, but must not wait for a request nor close the image
 * (both return -EDEADLK).  A request submitted while the handle is
 * closing (by a callback that runs during nvramtdb_close()) fails with
 * -ESHUTDOWN.  nvramtdb_last_error() in a callback gives the
 * message of the request being completed.  Synchronous reads see every
 * write submitted before them, from any thread — except inside a
 * callback, where a synchronous read sees what is committed so far
 * (waiting for the queue there would deadlock); use nvramtdb_read_async
 * with NVRAMTDB_ASYNC to read behind queued writes from a callback.
 */

/* ---- open flags ------------------------------------------------------- */
/** Open read-only: the image is never written, not even to recover an
 *  interrupted commit (recovery is then applied to a private copy). */
#define NVRAMTDB_OPEN_READONLY    (1u << 0)
/** file: create the image file if it does not exist (sized at start). */
#define NVRAMTDB_OPEN_CREATE      (1u << 1)
/** With READONLY: do not take the shared lock, so that an image held by a
 *  writer can be inspected.  Best effort: the view may be inconsistent if
 *  the writer commits while it is read (like qemu-img -U). */
#define NVRAMTDB_OPEN_FORCE_SHARE (1u << 2)
/** Commit with tdb's own transactions (four flushes per commit) instead of
 *  the journal (one flush): for comparison, and as a fallback. */
#define NVRAMTDB_OPEN_STOCK_COMMIT (1u << 3)
/** Writable opens of an NBD export: take the image over even if its
 *  ownership record names another live writer (a host that died without
 *  closing).  Only for a writer known to be dead: see docs/NBD.md. */
#define NVRAMTDB_OPEN_TAKEOVER    (1u << 4)

/**
 * Open an image.
 * @uri: "file:PATH" or a plain PATH (regular file or block device),
 *       "mem:" for a private in-memory image (tests, size computation),
 *       or an NBD export in libnbd's URI syntax: nbd://HOST[:PORT]/EXPORT,
 *       nbd+unix:///EXPORT?socket=PATH, nbds://... (TLS); see docs/NBD.md.
 *       The export's size is the image's size; CREATE formats it if blank.
 * @flags: NVRAMTDB_OPEN_* flags.
 * @dbp: receives the handle on success.
 *
 * The image is locked: read-write opens take an exclusive lock, read-only
 * opens a shared one.  The image is not interpreted until nvramtdb_start().
 *
 * Errors: -EINVAL bad URI or flags; -ENOENT no such file (and no CREATE);
 * -EBUSY another process holds a conflicting lock (the message names the
 * image); -ENOTSUP an NBD URI in a build without libnbd; -EROFS a writable
 * open of a read-only NBD export; other negative errno from the operating
 * system or from libnbd (an unreachable server: the message names the URI).
 * On an NBD export, which no lock protects, nvramtdb_start() takes the
 * image's ownership record instead (-EBUSY naming the holder's host, pid
 * and time if another live writer holds it; see NVRAMTDB_OPEN_TAKEOVER).
 */
int nvramtdb_open(const char *uri, unsigned flags, nvramtdb **dbp);

/**
 * Register a blob with its maximum size, before nvramtdb_start().
 * Registering the same name again replaces its maximum.
 * Errors: -EINVAL bad name, size 0 or above NVRAMTDB_BLOB_MAX;
 * -EALREADY the image is already started.
 */
int nvramtdb_register_blob(nvramtdb *db, const char *name, uint32_t max_size);

/**
 * Size in bytes an image needs to hold every registered blob at its maximum
 * size forever (including metadata, tdb overhead and commit space), in
 * *bytes.  Deterministic: the same registrations always give the same size.
 * Errors: -ENOSPC the blobs need more than one image can hold (the message
 * gives the sizes); -ENOMEM.
 */
int nvramtdb_get_totalsize(nvramtdb *db, uint64_t *bytes);
/** nvramtdb_get_totalsize() in KiB, rounded up, in *kib; same errors. */
int nvramtdb_get_totalsize_kb(nvramtdb *db, uint64_t *kib);

/**
 * Size to give the image when nvramtdb_start() formats it (a new file or a
 * blank image), before start.  Default: nvramtdb_get_totalsize().  A size
 * larger than needed leaves room for blobs registered later.
 * Errors: -EINVAL 0 or not a multiple of 4096; -EALREADY already started.
 */
int nvramtdb_set_image_size(nvramtdb *db, uint64_t bytes);

/* ---- encryption at rest (docs/ENCRYPTION.md) --------------------------- *
 * An image is created encrypted or not.  Each value is sealed with
 * AES-256-GCM under a fresh random nonce per write, bound to the image,
 * the blob's name and the record's generation.  Blob names, maxima,
 * value lengths and generations stay visible.  The key is a 32-byte key
 * (a key file: 32 raw bytes or 64 hex digits) or a passphrase (scrypt,
 * N=2^16, r=8, p=1).  Key material is kept in locked memory and
 * cleansed when no longer needed.
 */
/** nvramtdb_key.type: 32 raw bytes, or 64 hexadecimal digits (an
 *  optional trailing newline is ignored). */
#define NVRAMTDB_KEY_RAW        1u
/** nvramtdb_key.type: a passphrase, stretched with scrypt (a single
 *  trailing newline is not part of it). */
#define NVRAMTDB_KEY_PASSPHRASE 2u

/** Where a key comes from: @data/@len if @data is set, else the file
 *  @path if set, else the file descriptor @fd (read to its end, not
 *  closed).  Never put key material on a command line. */
typedef struct nvramtdb_key {
    uint32_t struct_size;  /**< sizeof(nvramtdb_key), set by the caller */
    uint32_t type;         /**< NVRAMTDB_KEY_RAW or NVRAMTDB_KEY_PASSPHRASE */
    const void *data;
    size_t len;
    const char *path;
    int fd;
} nvramtdb_key;
/** Smallest struct_size of a key accepted (version 1's fields). */
#define NVRAMTDB_KEY_SIZE_V1 (offsetof(nvramtdb_key, fd) + sizeof(int))

/**
 * Give the image's key.  Before nvramtdb_start(): a blank image is then
 * formatted encrypted with it (nvramtdb_get_totalsize() accounts for the
 * 28 bytes each value gains), an existing image must be encrypted with
 * this key, or start fails and nothing changes.  After start, on an
 * encrypted image started without a key: the key is checked and value
 * reads and writes work from then on.  The library copies the key
 * material into locked memory; the caller may cleanse its copy at once.
 *
 * Errors: -EINVAL bad struct_size or type, a key that is not 32 bytes or
 * 64 hex digits, an empty passphrase, the image (started) is not
 * encrypted; -EKEYREJECTED (after start) wrong key or passphrase;
 * -EALREADY (after start) a key is already in use; errors reading @path
 * or @fd (-ENOENT, -EACCES, -EFBIG above 4 KiB).
 */
int nvramtdb_set_key(nvramtdb *db, const nvramtdb_key *key);

/**
 * Re-key a started, writable, encrypted image whose key was given: every
 * value is sealed again under @key (new salt and key-check value) in one
 * atomic batch.  After a crash at any point every value is under the old
 * key or every value under the new one; the image then starts with that
 * key only (-EKEYREJECTED names the situation for the other), and the
 * start forgets the other key's parameters.  Waits for every accepted
 * request first.
 * Errors: -EINVAL not encrypted, bad key; -ENOKEY no key given yet;
 * -EROFS read-only; -E2BIG the values do not fit one journal frame
 * (only with blobs registered after creation); storage errors (the old
 * key stays).
 */
int nvramtdb_rekey(nvramtdb *db, const nvramtdb_key *key);

/* ---- start flags ------------------------------------------------------ */
/** Refuse to start an encrypted image when no key was given (-ENOKEY;
 *  the seed's fail_on_encrypted_drive).  Without it, an encrypted image
 *  starts without a key: nvramtdb_list(), nvramtdb_get_info() and the
 *  structural part of nvramtdb_check() work, reads, writes and deletes
 *  of values fail with -ENOKEY until nvramtdb_set_key(). */
#define NVRAMTDB_START_FAIL_ON_ENCRYPTED (1u << 0)

/**
 * Make the image usable: a blank image (all-zero superblock area) is
 * formatted for the registered blobs; an existing image is validated and
 * reconciled: registered blobs missing on disk get space reserved, blobs
 * whose maximum grew get larger space, blobs on disk that nobody registered
 * are kept.  If the image cannot hold the registered blobs nothing changes
 * and the message gives the sizes involved.
 *
 * A read-only handle is validated only.
 *
 * Errors: -ENOSPC image too small (message: bytes needed vs available);
 * -EBADMSG / -EIO corrupt image (including damaged encryption parameters
 * in both superblock copies); -ENOTSUP unsupported format version or
 * feature; -EALREADY already started; -EROFS a read-only handle needs a
 * change to match the registrations; -ENOKEY encrypted image, no key and
 * NVRAMTDB_START_FAIL_ON_ENCRYPTED; -EKEYREJECTED wrong key or
 * passphrase; -EINVAL a key was given for an unencrypted image, or a key
 * file for a passphrase image (or the reverse).  On any error nothing
 * is changed.
 */
int nvramtdb_start(nvramtdb *db, unsigned flags);

/**
 * Read a blob.  On success *data receives a malloc()ed copy (NULL when the
 * blob is empty) and *len its length; the caller frees *data.
 * Errors: -ENOENT the blob has no value; -EBADMSG its checksum does not
 * match, or (encrypted image) its authentication tag does not: the value
 * was altered, or copied from another blob, image or generation (no
 * bytes are returned); -ENOKEY encrypted image without a key; -EINVAL
 * bad name; -EIO I/O error.
 */
int nvramtdb_read(nvramtdb *db, const char *name, uint8_t **data, size_t *len);

/* ---- write flags ------------------------------------------------------ */
/** Hand the request to the image's writer and return; completion is
 *  reported through the callback. */
#define NVRAMTDB_ASYNC           (1u << 0)
/** Do not return before the request is durable (or has failed).  With
 *  NVRAMTDB_ASYNC: queued to the writer, and the caller waits. */
#define NVRAMTDB_WAIT_COMPLETION (1u << 1)

/**
 * Completion of a request.
 * @opaque: the caller's pointer.
 * @errcode: 0 once the request is durable, or a negative errno.
 * @is_write: true for writes and deletes, false for reads.
 * @data, @len: for reads, the value (ownership passes to the callback,
 *              which must free() it); for writes, NULL and the length
 *              written.
 */
typedef void nvramtdb_completion_fn(void *opaque, int errcode, bool is_write,
                                    uint8_t *data, size_t len);

/**
 * Write (create or replace) a blob's value atomically and durably.
 * @data may be NULL when @len is 0.  The caller keeps ownership of @data;
 * it is copied before the call returns.
 *
 * The blob must be registered (or exist on disk with a maximum) and
 * @len must not exceed its maximum; otherwise the call fails at once and
 * @cb is not called.  Once accepted, the request is queued to the writer
 * thread and @cb, if not NULL, is called exactly once on that thread with
 * the result when the write is durable (errcode 0) or has failed.
 *
 * @flags: NVRAMTDB_ASYNC alone returns 0 as soon as the request is
 * accepted.  Without NVRAMTDB_ASYNC, or with NVRAMTDB_WAIT_COMPLETION,
 * the call returns the request's result once it is complete (after @cb
 * has run).
 *
 * Errors: -EFBIG @len above the blob's maximum (nothing changes);
 * -ENOENT blob not registered; -EROFS read-only handle; -EDEADLK waiting
 * from a completion callback; -ESHUTDOWN submitted while the handle is
 * closing; -EIO / -ENOSPC storage failure (the blob
 * keeps its previous value or, if the failure hit the very end of the
 * commit, may hold the new one: never a mix).
 */
int nvramtdb_write(nvramtdb *db, const char *name, const void *data, size_t len,
                   unsigned flags, nvramtdb_completion_fn *cb, void *opaque);

/**
 * Delete a blob's value.  A registered blob keeps its reserved space (so
 * that writing it again can never fail for lack of space); an unregistered
 * blob found on disk is removed entirely.  Same flags, callback and errors
 * as nvramtdb_write(), plus -ENOENT if the blob has no value.
 */
int nvramtdb_delete(nvramtdb *db, const char *name, unsigned flags,
                    nvramtdb_completion_fn *cb, void *opaque);

/** One change of nvramtdb_write_batch(): a write of @len bytes at @data
 *  (which may be NULL when @len is 0), or a delete (@is_delete; @data
 *  and @len ignored). */
typedef struct nvramtdb_change {
    uint32_t struct_size;  /**< sizeof(nvramtdb_change), set by the caller */
    const char *name;
    const void *data;
    size_t len;
    bool is_delete;
} nvramtdb_change;
/** Smallest struct_size of a change accepted (version 1's fields). */
#define NVRAMTDB_CHANGE_SIZE_V1 (offsetof(nvramtdb_change, is_delete) + sizeof(bool))

/**
 * Write and delete several blobs as one atomic, durable change: after a
 * crash either every change of the batch holds or none does.  The values
 * are copied before the call returns.  A name may appear more than once:
 * the changes apply in order, so the last one wins.
 *
 * All or nothing: every change is checked as nvramtdb_write() and
 * nvramtdb_delete() check theirs.  If one fails (at once, or when the
 * writer applies the batch: a delete of a blob that has no value by then)
 * nothing changes, and the batch fails with that change's error and a
 * message naming it.  The batch commits on its own, never split: one
 * journal frame (an image's journal holds every registered blob at its
 * maximum) or one tdb transaction.
 *
 * @changes is an array of @n changes spaced changes[0].struct_size bytes
 * apart (the stride: sizeof(nvramtdb_change) as the caller compiled it);
 * every change's struct_size must equal it.
 *
 * @flags, @cb and @opaque as for nvramtdb_write(): one completion for the
 * whole batch (@is_write true, @len the bytes written).
 *
 * Errors: those of nvramtdb_write() and nvramtdb_delete(), for the first
 * change that has one; -EINVAL no changes, a change without a name, a
 * struct_size below NVRAMTDB_CHANGE_SIZE_V1 or different from the
 * first change's; -E2BIG the batch does not fit one journal frame
 * (possible only with blobs registered after the image was created;
 * nothing changes).
 */
int nvramtdb_write_batch(nvramtdb *db, const nvramtdb_change *changes, size_t n,
                         unsigned flags, nvramtdb_completion_fn *cb, void *opaque);

/**
 * Read a blob through the writer's queue: the value reflects every write
 * submitted before.  @cb receives the value (ownership passes to it) or
 * the error, on the writer thread.  With NVRAMTDB_ASYNC alone the call
 * returns once queued; otherwise it returns after @cb has run.  On a
 * read-only handle @cb runs in the calling thread before the call returns.
 * Errors: -EINVAL bad name or flags, no callback, not started; -EDEADLK
 * waiting from a completion callback; -ESHUTDOWN submitted while the
 * handle is closing.
 */
int nvramtdb_read_async(nvramtdb *db, const char *name, unsigned flags,
                        nvramtdb_completion_fn *cb, void *opaque);

/** One entry of nvramtdb_list(). */
typedef struct nvramtdb_entry {
    uint32_t struct_size; /**< the entry size given to nvramtdb_list() */
    char name[NVRAMTDB_NAME_MAX + 1];
    uint32_t size;        /**< length of the value (0 if none) */
    uint32_t max_size;    /**< space reserved for it */
    uint64_t generation;  /**< number of times it was written */
    uint32_t crc32c;      /**< CRC32C of the value */
    bool present;         /**< false: registered, space reserved, no value */
    bool registered;      /**< registered by this handle */
} nvramtdb_entry;
/** Smallest entry size nvramtdb_list() accepts (version 1's fields). */
#define NVRAMTDB_ENTRY_SIZE_V1 (offsetof(nvramtdb_entry, registered) + sizeof(bool))

/**
 * List the blobs on the image (with or without a value), sorted by name.
 * @entry_size: sizeof(nvramtdb_entry) as the caller compiled it.
 * *entries receives a malloc()ed array of *count entries spaced
 * @entry_size bytes apart, each with struct_size = @entry_size (free() it).
 * Errors: -EINVAL not started, or @entry_size below NVRAMTDB_ENTRY_SIZE_V1.
 */
int nvramtdb_list(nvramtdb *db, size_t entry_size, nvramtdb_entry **entries, size_t *count);

/** Facts about a started image. */
typedef struct nvramtdb_info {
    uint32_t struct_size;     /**< sizeof(nvramtdb_info), set by the caller */
    uint32_t format_version;
    uint8_t uuid[16];
    uint64_t image_size;      /**< bytes of the image */
    uint64_t data_capacity;   /**< bytes of the tdb region */
    uint64_t data_used;       /**< bytes tdb currently uses in it */
    uint64_t reserved_bytes;  /**< sum of blob maxima */
    uint64_t value_bytes;     /**< sum of current value lengths */
    uint32_t entries;         /**< blobs with a value */
    uint32_t slots;           /**< blobs with reserved space */
    uint64_t flushes;         /**< backend flushes since open */
    uint64_t commits;         /**< groups committed since open */
    bool journaled;           /**< commits go through the journal */
    /* version 2 */
    uint64_t encryption;      /**< NVRAMTDB_INFO_* bits */
    uint32_t scrypt_log2n;    /**< passphrase images: scrypt N = 2^this, r, p */
    uint32_t scrypt_r;
    uint32_t scrypt_p;
} nvramtdb_info;
/** nvramtdb_info.encryption: values are sealed with AES-256-GCM. */
#define NVRAMTDB_INFO_ENCRYPTED  (1u << 0)
/** nvramtdb_info.encryption: the key is a passphrase (scrypt). */
#define NVRAMTDB_INFO_PASSPHRASE (1u << 1)
/** nvramtdb_info.encryption: a key is loaded (values readable). */
#define NVRAMTDB_INFO_KEY_LOADED (1u << 2)
/** Smallest struct_size of an info accepted (version 1's fields). */
#define NVRAMTDB_INFO_SIZE_V1 (offsetof(nvramtdb_info, journaled) + sizeof(bool))

/** Fill the info->struct_size bytes of *info (the caller sets
 *  struct_size).  Errors: -EINVAL not started, or struct_size below
 *  NVRAMTDB_INFO_SIZE_V1. */
int nvramtdb_get_info(nvramtdb *db, nvramtdb_info *info);

/**
 * Report callback of nvramtdb_check(): called once per problem found.
 */
typedef void nvramtdb_report_fn(void *opaque, const char *problem);

/**
 * Verify the whole image: both superblock copies, tdb structure
 * (tdb_check), every record header and checksum, and on an encrypted
 * image with its key every value's authentication tag (without the key:
 * the structure only).
 * Returns the number of problems found (0 = healthy), or a negative errno
 * if the check could not run.  Never modifies the image.
 */
int nvramtdb_check(nvramtdb *db, nvramtdb_report_fn *report, void *opaque);

/* ---- standalone tdb files ----------------------------------------- *
 * An image's blobs can be copied to and from an ordinary tdb file that
 * Samba's tdb-tools (tdbdump, tdbtool) open: one record per blob, keyed by
 * the blob's name (no terminating NUL), its value exactly the record the
 * image stores (the 32-byte header then the payload, docs/FORMAT.md).
 */

/**
 * Write every blob record of a started image (with or without a value)
 * to a new tdb file at @path.  The file is created exclusively (mode
 * 0600, never replacing anything), filled in one tdb transaction, synced
 * and closed; on failure it is removed.  The records are those of every
 * write accepted before the call.  Works on read-only handles too.
 *
 * Errors: -EINVAL not started; -EEXIST @path exists; -EBADMSG a damaged
 * record on the image (nothing is written); other negative errno from the
 * operating system or tdb (-EIO).
 */
int nvramtdb_export_tdb(nvramtdb *db, const char *path);

/* ---- import flags ----------------------------------------------------- */
/** Before nvramtdb_start(): register every blob of the file with the
 *  maximum its record carries (a larger maximum registered earlier is
 *  kept), and write nothing. */
#define NVRAMTDB_IMPORT_REGISTER (1u << 0)

/**
 * Import the blobs of a tdb file written by nvramtdb_export_tdb().
 * The file is opened read-only and checked in full first: its tdb
 * structure, every key (a valid blob name) and every record (header and
 * payload checksums).  Any problem fails the call with -EBADMSG before
 * anything is written.
 *
 * Two steps, because space is reserved at start:
 *   nvramtdb_import_tdb(db, path, NVRAMTDB_IMPORT_REGISTER);   // before start
 *   nvramtdb_start(db, 0);        // reserves space; -ENOSPC if it lacks
 *   nvramtdb_import_tdb(db, path, 0);                          // after start
 * The first call may be left out when the caller registered the blobs
 * itself (or they exist on the image with large enough maxima).
 *
 * Without flags, on a started writable handle: every record with a value
 * is written as that blob's new value (records without a value are
 * skipped; blobs not in the file are left alone).  Every blob must be
 * registered or on the image, with a maximum at least the value's length,
 * or nothing is written.  The values are committed as one
 * nvramtdb_write_batch(), ordered after every write accepted before the
 * call (except when a batch of that size does not fit the image's
 * journal: each blob is then written on its own).
 *
 * Returns the number of blobs registered or written.  Errors: -EBADMSG
 * the file is not a valid export (message names the record); -ENOENT no
 * such file, or a blob neither registered nor on the image; -EFBIG a value
 * above the blob's maximum; -EINVAL unknown flags, or not started (no
 * flags); -EALREADY NVRAMTDB_IMPORT_REGISTER after start; -EROFS
 * read-only handle; -EIO / -ENOSPC storage failure.
 */
int nvramtdb_import_tdb(nvramtdb *db, const char *path, unsigned flags);

/**
 * Wait until every request accepted so far is complete (durable or
 * failed).  Errors: the image's persistent failure, if it has one;
 * -EDEADLK from a completion callback; -ESHUTDOWN while the handle is
 * closing.
 */
int nvramtdb_flush(nvramtdb *db);

/**
 * Close the handle, after completing every accepted request.  Frees the
 * handle and returns the first error met while finishing, if any.  NULL
 * is accepted.  From a completion callback of the same handle it returns
 * -EDEADLK and does nothing (closing waits for the writer thread, which is
 * running the callback): close it from another thread.
 */
int nvramtdb_close(nvramtdb *db);

/** Message describing the most recent failure in the calling thread.
 *  Inside a completion callback: the message of the request completed
 *  ("" when it succeeded), until the callback itself calls the library. */
const char *nvramtdb_last_error(void);

/** Library version string, e.g. "0.1.0". */
const char *nvramtdb_version(void);

/** Parse a size such as "4096", "256K", "1M" or "2G" (binary units).
 *  Errors: -EINVAL not a size; -ERANGE does not fit. */
int nvramtdb_parse_size(const char *text, uint64_t *bytes);

#ifdef __cplusplus
}
#endif
#endif /* NVRAMTDB_H */
