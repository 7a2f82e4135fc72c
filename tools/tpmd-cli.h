/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * tpmd-cli.h — the parts of swtpm 0.7.1's command line that nvram-tpmd
 * needs beyond its own options: --tpmstate, --print-capabilities and
 * --print-states.  Each function returns false with *err set (a message
 * for the user) on failure.
 */
#ifndef NVRAM_TPMD_CLI_H
#define NVRAM_TPMD_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include <glib.h>

/*
 * The image's name inside a --tpmstate dir=DIR (documented in
 * nvram-tpmd(8)).  It ends in "permall" on purpose: swtpm_setup
 * --overwrite deletes the files of the directory whose names end in
 * permall, volatilestate or savestate before it manufactures a new TPM,
 * so the image goes with them, as swtpm's state would.
 */
#define TPMD_STATE_IMAGE_NAME "nvramtdb.permall"

typedef struct tpmd_tpmstate {
    char *image;       /* the image path */
    char *dir;         /* dir=DIR / backend-uri=dir://DIR, else NULL */
    unsigned mode;     /* mode=0NNN for the image file */
    bool mode_set;
} tpmd_tpmstate;

/* Parse "dir=DIR[,mode=0NNN]" or "backend-uri=dir://DIR|file://PATH[,mode=..]". */
bool tpmd_tpmstate_parse(const char *spec, tpmd_tpmstate *ts, GError **err);
/* Refuse a directory that holds swtpm state files, with or without an
 * image (see nvram-tpmd(8)), and a file:// path that is swtpm's linear
 * state file. */
bool tpmd_tpmstate_check_dir(const tpmd_tpmstate *ts, GError **err);
void tpmd_tpmstate_clear(tpmd_tpmstate *ts);

/* swtpm's JSON: { "type": "swtpm", "features": [ ... ], "version": ... } */
bool tpmd_print_capabilities(FILE *out, bool tpm2, GError **err);
/* swtpm's JSON: { "type": "swtpm", "states": [ {"name": .., "size": ..} ] }
 * for the blobs of @device_id in @image (none when it does not exist). */
bool tpmd_print_states(FILE *out, const char *image, const char *device_id, GError **err);

#endif
