/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * tdbguard.h — validate a tdb file before tdb itself reads it.
 *
 * tdb trusts its header and, at open, replays a pending recovery record
 * without checking its lengths (a crafted one makes tdb write out of bounds
 * or read past its buffer).  The guard checks the header (magic, version,
 * byte order, hash size) and the recovery record (bounds of the record, of
 * every replayed range and of the end of file it restores) against the
 * file's length, and walks every hash chain and the free list with a step
 * bound (tdb's traversal would loop forever on a cycle), so that hostile
 * images are refused with a message.
 */
#ifndef NVT_TDBGUARD_H
#define NVT_TDBGUARD_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"

/* tdb 1.4 on-disk constants (lib/tdb/common/tdb_private.h). */
#define NVT_TDB_HEADER_SIZE 168u
#define NVT_TDB_VERSION 0x2601196Du
#define NVT_TDB_RECORD_SIZE 24u
#define NVT_TDB_RECOVERY_MAGIC 0xf53bc0e7u
#define NVT_TDB_RECOVERY_INVALID_MAGIC 0x0u
#define NVT_TDB_HASH_MAX (1u << 20)

/* Validate the tdb file stored at [@base, @base + @length) of @be.
 * *needs_recovery tells whether tdb will replay a recovery record.
 * Returns 0, or -EBADMSG with a message naming the problem. */
int nvt_tdbguard_check(nvt_backend *be, uint64_t base, uint64_t length, bool *needs_recovery);
/* Walk every hash chain and the free list with a step bound (done by
 * nvt_tdbguard_check unless a recovery is pending; call it after tdb has
 * replayed the recovery record). */
int nvt_tdbguard_walk(nvt_backend *be, uint64_t base, uint64_t length);

#endif /* NVT_TDBGUARD_H */
