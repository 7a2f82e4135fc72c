/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * internal.h — the handle's internal interface: how the test library
 * opens a handle on its own backend, and all that lib/export.c may do
 * besides the public API.  Not installed and not exported (the version
 * script exports nvramtdb_* only).
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

/* For lib/export.c, which reads and writes an image only through these
 * calls and the public API (never the store or its lock). */
/* The handle's URI, for messages. */
const char *nvt_handle_uri(nvramtdb *db);
/* Receives one blob record: its name and the record exactly as the image
 * stores it (header and payload, checked in full); @record is malloc()ed
 * and now the visitor's.  A non-zero return stops the walk. */
typedef int nvt_record_visit_fn(void *opaque, const char *name, uint8_t *record, size_t size);
/* Visit every blob record of a started handle, with or without a value,
 * in name order, under the store lock: the records are one state of the
 * image (the writes committed so far).  Returns the visitor's non-zero
 * result or 0.  Errors: -EINVAL not started; -EBADMSG a damaged record
 * (the message names it). */
int nvt_handle_export_records(nvramtdb *db, nvt_record_visit_fn *visit, void *opaque);
/* 0 if the handle accepts writes.  Errors: -EINVAL not started; -EROFS
 * read-only. */
int nvt_handle_need_writable(nvramtdb *db);
/* Would nvramtdb_write() accept @len bytes for @name now?  The checks of
 * nvramtdb_write() without queueing anything.  Errors as nvramtdb_write(). */
int nvt_handle_validate_write(nvramtdb *db, const char *name, size_t len);
/* Before start: register @name with at least @max_size (a larger maximum
 * registered earlier is kept).  Errors as nvramtdb_register_blob(). */
int nvt_handle_register_at_least(nvramtdb *db, const char *name, uint32_t max_size);

#endif /* NVT_INTERNAL_H */
