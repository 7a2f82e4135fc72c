/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * fuzz-tdbguard.c — the tdb guard on hostile tdb files.
 * Input: u32 (LE) file length, then the file's first bytes (the rest is
 * zeros: see fz_tdb_file); tdb files carry no checksums.  The guard must
 * refuse or accept without reading outside the file and without looping.
 */
#include "config.h"

#include <stdbool.h>

#include <glib.h>

#include "backend.h"
#include "fuzz-util.h"
#include "tdbguard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t len;
    uint8_t *file = fz_tdb_file(data, size, &len);
    if (!file)
        return 0;
    nvt_backend *be = nvt_mem_backend_new(file, len);
    g_free(file);
    bool recovery = false;
    if (nvt_tdbguard_check(be, 0, len, &recovery) == 0 && recovery)
        nvt_tdbguard_walk(be, 0, len);
    nvt_be_close(be);
    return 0;
}
