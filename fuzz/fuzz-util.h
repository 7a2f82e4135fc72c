/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * fuzz-util.h — what the libFuzzer harnesses of fuzz/ share: the control
 * byte every input starts with, and the checksum fix-ups.
 *
 * A mutated input almost never carries a right CRC32C, so a harness that
 * passed it unchanged would only ever test the checksum checks.  Each
 * harness therefore recomputes the checksums of the structure it feeds
 * (superblock slots, journal frames, blob records) before parsing,
 * unless the control byte says to leave them as they are (so that the
 * checks themselves stay covered too).
 */
#ifndef NVT_FUZZ_UTIL_H
#define NVT_FUZZ_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The control byte (the first byte of every input). */
#define FZ_KEEP_CHECKSUMS (1u << 0)   /* do not fix checksums up */
#define FZ_KEEP_UUID      (1u << 1)   /* journal: do not stamp the image's UUID */

/* Split an input into its control byte (*ctl) and the rest: returns an
 * exact-size g_malloc()ed copy of the rest (*len bytes), so that ASan sees
 * any read past it; NULL when the input is empty. */
uint8_t *fz_body(const uint8_t *data, size_t size, uint8_t *ctl, size_t *len);

/* Superblock slot (NVT_SB_ENCODED_SIZE bytes): recompute its CRC. */
void fz_fix_superblock(uint8_t *slot);

/* Journal ring of @len bytes: for each 4096-byte page that starts with a
 * record header, stamp @uuid (unless NULL), recompute the CRC of the
 * record's body when the record fits the ring, then that of its header. */
void fz_fix_journal(uint8_t *ring, size_t len, const uint8_t *uuid);

/* Every blob record header (magic "NVB1") found in @buf: recompute its
 * payload CRC (when the payload fits @buf) and its header CRC. */
void fz_fix_records(uint8_t *buf, size_t len);

/* A tdb file is mostly zeros after its records (free space), so the tdb
 * harnesses take it as {u32 (LE) file length, the file's first bytes}:
 * returns a g_malloc()ed file of *len bytes (at most FZ_TDB_MAX), the
 * bytes given then zeros; NULL if @size < 4. */
#define FZ_TDB_MAX (1u << 20)
uint8_t *fz_tdb_file(const uint8_t *data, size_t size, size_t *len);

/* Little-endian access. */
uint32_t fz_le32(const uint8_t *p);
uint64_t fz_le64(const uint8_t *p);
void fz_put_le32(uint8_t *p, uint32_t v);

#endif /* NVT_FUZZ_UTIL_H */
