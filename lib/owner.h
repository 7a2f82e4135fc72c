/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * owner.h — the ownership record: one writer for an image that no lock
 * protects (an NBD export, reachable from many hosts).  docs/NBD.md says
 * what it guarantees and what it does not; docs/FORMAT.md has the layout.
 *
 * A 512-byte record in the second half of superblock slot B (bytes
 * 6144..6655 of the image), meaningful when the superblock's compat flag
 * NVT_COMPAT_OWNER is set, names the writer that holds the image: host,
 * boot id, pid, since when, and a random token of this claim.  A writer
 * claims the image at start and releases it at close; a holder that is
 * provably dead (same host: the process is gone or the host rebooted) is
 * replaced silently; any other holder is refused with its name unless the
 * opener asks for a takeover.  The claim is checked again before every
 * checkpoint, so that a writer whose image was taken over stops.
 */
#ifndef NVT_OWNER_H
#define NVT_OWNER_H

#include <stdbool.h>

#include "image.h"

#define NVT_COMPAT_OWNER NVT_COMPAT_OWNER_BIT
#define NVT_OWNER_OFFSET (NVT_SB_SLOT_SIZE + NVT_SB_AREA_SIZE)
#define NVT_OWNER_SIZE 512u

typedef struct nvt_owner nvt_owner;

/* Claim @img (writable) for this process: refuse (-EBUSY, naming the
 * holder) an image another live writer holds, unless @takeover.  On
 * success the record is durable, the compat flag set, and @img's guard
 * checks the claim before every checkpoint. */
int nvt_owner_acquire(nvt_image *img, bool takeover, nvt_owner **out);
/* For read-only opens of @be (superblock @sb): -EBUSY, naming the
 * holder, if a live writer holds the image. */
int nvt_owner_check_free(nvt_backend *be, const nvt_superblock *sb);
/* Is the claim still ours?  -EBUSY naming the new holder otherwise. */
int nvt_owner_check(nvt_owner *o);
/* Release the claim (if still ours; durable on return) and free @o. */
int nvt_owner_release(nvt_owner *o);

#endif /* NVT_OWNER_H */
