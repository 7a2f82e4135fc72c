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

/* Open a handle on @be, which it takes ownership of (closed by
 * nvramtdb_close(), also on failure).  @flags as nvramtdb_open(); no lock
 * is taken. */
int nvt_open_backend(nvt_backend *be, unsigned flags, nvramtdb **dbp);

#endif /* NVT_INTERNAL_H */
