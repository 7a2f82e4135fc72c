/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * image.h — the on-disk layout of an image (docs/FORMAT.md).
 *
 *   offset 0      superblock slot A (4096 bytes)
 *   offset 4096   superblock slot B (4096 bytes)
 *   offset 8192   tdb region: tdb's file, tdb_logical bytes long, inside a
 *                 region of tdb_capacity bytes reserved for it
 *   then          journal region (journal.h), journal_length bytes, or none
 *
 * The superblock is written in two alternating slots, each with a sequence
 * number and a CRC32C, so that an update is atomic: the valid slot with the
 * highest sequence wins.  Everything read from disk is validated before
 * use; no offset is trusted.
 */
#ifndef NVT_IMAGE_H
#define NVT_IMAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"

#define NVT_IMAGE_MAGIC "NVRAMTDB"
#define NVT_IMAGE_FORMAT_VERSION 1u
#define NVT_SB_SLOT_SIZE 4096u
#define NVT_SB_ENCODED_SIZE 128u
/* A superblock update writes the first half of its slot; the second half
 * of slot B holds the ownership record (owner.h). */
#define NVT_SB_AREA_SIZE 2048u
#define NVT_IMAGE_META_SIZE (2 * NVT_SB_SLOT_SIZE)
#define NVT_IMAGE_ALIGN 4096u

/* incompat_flags: a reader that does not know a bit must refuse the image. */
#define NVT_INCOMPAT_ENCRYPTED (1u << 0)   /* values sealed; parameters at 128 (crypt.h) */
#define NVT_INCOMPAT_KNOWN NVT_INCOMPAT_ENCRYPTED
/* compat_flags: a reader that does not know a bit may ignore it. */
#define NVT_COMPAT_OWNER_BIT (1u << 0)     /* ownership record in use (owner.h) */
/* ro_compat_flags: a reader that does not know a bit may only read. */
#define NVT_RO_COMPAT_KNOWN 0u

typedef struct nvt_superblock {
    uint32_t format_version;
    uint64_t sequence;
    uint8_t uuid[16];
    uint64_t image_size;
    uint64_t tdb_offset;
    uint64_t tdb_capacity;
    uint64_t tdb_logical;
    uint64_t journal_offset;     /* 0: no journal (format version 1) */
    uint64_t journal_length;
    uint32_t compat_flags;
    uint32_t incompat_flags;
    uint32_t ro_compat_flags;
    /* Slot bytes 128..255 and 256..383 when incompat_flags has
     * NVT_INCOMPAT_ENCRYPTED: the parameters of key slots 0 and 1 (crypt.h;
     * all zero = unused, at least one used), zero otherwise. */
    uint8_t crypt_area[2][128];
} nvt_superblock;

typedef struct nvt_image {
    nvt_backend *be;           /* borrowed */
    nvt_superblock sb;         /* the active (newest valid) copy */
    int active_slot;           /* 0 = A, 1 = B */
    bool slot_valid[2];
    char slot_problem[2][160]; /* why a slot is invalid, for check */
    /* Called before anything is written in place (checkpoints, recovery);
     * a failure stops the write (owner.h).  NULL: none. */
    int (*guard)(void *opaque);
    void *guard_opaque;
} nvt_image;

/* Encode/decode one slot (NVT_SB_ENCODED_SIZE bytes).  decode validates
 * magic, CRC, version and geometry against @backend_size; on failure it
 * returns a negative errno and a message in @why. */
void nvt_sb_encode(const nvt_superblock *sb, uint8_t out[NVT_SB_ENCODED_SIZE]);
int nvt_sb_decode(const uint8_t in[NVT_SB_ENCODED_SIZE], uint64_t backend_size,
                  nvt_superblock *sb, char *why, size_t why_len);

/* What the superblock area says before anything is trusted. */
typedef enum nvt_probe {
    NVT_PROBE_BLANK,          /* never formatted (or interrupted early): format */
    NVT_PROBE_ORPHANED_DATA,  /* no superblock, but a tdb behind: refuse */
    NVT_PROBE_B_UNWRITTEN,    /* copy A valid, copy B never written: formatting
                                 stopped before its end, or B was wiped */
    NVT_PROBE_FORMATTED,      /* anything else: open and validate */
} nvt_probe;

int nvt_image_probe(nvt_backend *be, nvt_probe *state);
/* Shorthand: nvt_image_probe() == NVT_PROBE_BLANK. */
int nvt_image_probe_blank(nvt_backend *be, bool *blank);

/* Image size needed for a tdb of @tdb_bytes and a journal of
 * @journal_bytes (a multiple of 8192, or 0). */
uint64_t nvt_image_size_for(uint64_t tdb_bytes, uint64_t journal_bytes);

/* Write a new image on @be from @tdb (len bytes, a complete tdb file):
 * the tdb but its first page, flush; slot A, flush; the tdb's first page
 * (its header), flush; slot B, flush.  A crash leaves a blank image, one
 * whose slot B was never written and whose tdb is incomplete (formatted
 * again by a writer), or a valid one; never one that holds a tdb header
 * without a superblock.
 * The journal region (@journal_len bytes, possibly 0) takes the end of the
 * image and the tdb region the rest.  @image_size must be at least
 * nvt_image_size_for(len, journal_len) and the backend that large. */
int nvt_image_format(nvt_backend *be, uint64_t image_size, const void *tdb, uint64_t len,
                     uint64_t journal_len, nvt_image **out);
/* The same for an encrypted image: @crypt_area (128 bytes, crypt.h) goes
 * into both slots and the incompatible flag is set.  NULL: plain. */
int nvt_image_format_crypt(nvt_backend *be, uint64_t image_size, const void *tdb, uint64_t len,
                           uint64_t journal_len, const uint8_t *crypt_area, nvt_image **out);

/* Read and validate the superblocks of @be. */
int nvt_image_open(nvt_backend *be, nvt_image **out);

/* Persist new key slot parameters (a re-key; atomic and durable). */
int nvt_image_set_crypt(nvt_image *img, const uint8_t areas[2][128]);
/* Is key slot @i of an encrypted image's superblock in use? */
bool nvt_image_crypt_slot_used(const nvt_superblock *sb, int i);

/* Persist a new tdb logical length (atomic and durable on return). */
int nvt_image_set_tdb_logical(nvt_image *img, uint64_t logical);

/* Persist new compat_flags (atomic and durable on return). */
int nvt_image_set_compat_flags(nvt_image *img, uint32_t flags);

/* Rewrite an invalid superblock copy from the active one (writers do this
 * at start, so that one torn update never leaves a single copy). */
int nvt_image_repair(nvt_image *img);

void nvt_image_free(nvt_image *img);

/* Format a UUID as 8-4-4-4-12 hex into @out (37 bytes). */
void nvt_uuid_format(const uint8_t uuid[16], char out[37]);

#endif /* NVT_IMAGE_H */
