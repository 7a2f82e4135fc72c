/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * fuzz-import-tdb.c — nvramtdb_import_tdb() on a hostile tdb file.
 * Input: control byte, u32 (LE) file length, then the file's first bytes
 * (the rest is zeros: see fz_tdb_file).  Blob record CRCs inside it are
 * recomputed unless the control byte says not to.  The file is written
 * to a private temporary directory; the import runs against a "mem:"
 * image: NVRAMTDB_IMPORT_REGISTER, start, then the import proper.
 */
#include "config.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "fuzz-util.h"
#include "nvramtdb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Images larger than this are not started (a few large maxima would make
 * every run allocate hundreds of MiB). */
#define MAX_IMAGE (16u * 1024 * 1024)

static char *dir, *path;

static void cleanup(void)
{
    if (path)
        g_unlink(path);
    if (dir)
        g_rmdir(dir);
}

static bool write_input(const uint8_t *p, size_t n)
{
    if (!dir) {
        dir = g_dir_make_tmp("nvramtdb-fuzz-XXXXXX", NULL);
        if (!dir)
            abort();
        path = g_build_filename(dir, "import.tdb", NULL);
        atexit(cleanup);
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        abort();
    bool ok = write(fd, p, n) == (ssize_t)n;
    close(fd);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t ctl = data[0];
    size_t len;
    uint8_t *file = fz_tdb_file(data + 1, size - 1, &len);
    if (!file)
        return 0;
    if (!(ctl & FZ_KEEP_CHECKSUMS))
        fz_fix_records(file, len);
    bool written = write_input(file, len);
    g_free(file);
    if (!written)
        abort();

    nvramtdb *db = NULL;
    if (nvramtdb_open("mem:", 0, &db) < 0)
        abort();
    uint64_t need = 0;
    if (nvramtdb_import_tdb(db, path, NVRAMTDB_IMPORT_REGISTER) > 0 &&
        nvramtdb_get_totalsize(db, &need) == 0 && need <= MAX_IMAGE &&
        nvramtdb_start(db, 0) == 0)
        nvramtdb_import_tdb(db, path, 0);
    nvramtdb_close(db);
    return 0;
}
