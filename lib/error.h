/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * error.h — negative errno returns plus a message.
 *
 * Every failing function of the library returns a negative errno and
 * records, for the calling thread, a message that names what failed (the
 * image, the blob, the sizes).  nvramtdb_last_error() returns it.
 */
#ifndef NVT_ERROR_H
#define NVT_ERROR_H

#include <errno.h>

/* Record a message for the calling thread and return -err.  @err is a
 * positive errno, never a function's negative return (asserted in debug
 * builds; the result is negative either way). */
int nvt_error(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefix the current message with "context: " and return -err (err > 0). */
int nvt_error_prefix(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The calling thread's latest message ("" if none). */
const char *nvt_last_error(void);
/* Forget the calling thread's message. */
void nvt_error_clear(void);

#endif /* NVT_ERROR_H */
