/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * internal.h — entry points for tests and tools built inside the tree.
 * Not installed and not exported (the version script exports nvramtdb_*
 * only).
 */
#ifndef NVT_INTERNAL_H
#define NVT_INTERNAL_H

#include "backend.h"
#include "nvramtdb.h"

/* Open a handle named @name (the URI, for messages) on @be, which it
 * takes ownership of (closed by nvramtdb_close(), also on failure).
 * @flags as nvramtdb_open(), checked again; no lock is taken here.  The
 * tests' nvt_open_backend() (lib/test/) is this on a backend they built. */
int nvt_handle_open(const char *name, nvt_backend *be, unsigned flags, nvramtdb **dbp);

/* For lib/export.c, which works on a handle's store. */
struct nvt_store;
/* The started handle's URI, for messages. */
const char *nvt_handle_uri(nvramtdb *db);
/* Take the handle's store lock and return its store in *st.  Errors:
 * -EINVAL not started; -EROFS @writable and the handle is read-only
 * (the lock is then not held). */
int nvt_handle_lock_store(nvramtdb *db, bool writable, struct nvt_store **st);
void nvt_handle_unlock_store(nvramtdb *db);
/* Before start: register @name with at least @max_size (a larger maximum
 * registered earlier is kept).  Errors as nvramtdb_register_blob(). */
int nvt_handle_register_at_least(nvramtdb *db, const char *name, uint32_t max_size);

#endif /* NVT_INTERNAL_H */
