/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * installcheck.c — a program outside the tree, built by `make installcheck`
 * against the installed library only: the header and nvramtdb.pc from the
 * install directories, nothing from the source or build tree.  It checks
 * that the header compiles on its own, that the library links and loads,
 * and that a blob survives a round trip.  Exit 0 on success.
 */
#include <nvramtdb.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef EXPECTED_VERSION
#error "EXPECTED_VERSION must be defined (the package version)"
#endif

static int fail(const char *what, int r)
{
    fprintf(stderr, "installcheck: %s failed (%d): %s\n", what, r, nvramtdb_last_error());
    return 1;
}

int main(void)
{
    static const char value[] = "installed and linked";
    nvramtdb *db;
    uint8_t *data = NULL;
    size_t len = 0;
    int r;

    if (strcmp(nvramtdb_version(), EXPECTED_VERSION) != 0) {
        fprintf(stderr, "installcheck: library version %s, expected %s\n",
                nvramtdb_version(), EXPECTED_VERSION);
        return 1;
    }
    if ((r = nvramtdb_open("mem:", 0, &db)) < 0)
        return fail("nvramtdb_open", r);
    if ((r = nvramtdb_register_blob(db, "dev0/state", 4096)) < 0)
        return fail("nvramtdb_register_blob", r);
    if ((r = nvramtdb_start(db, 0)) < 0)
        return fail("nvramtdb_start", r);
    if ((r = nvramtdb_write(db, "dev0/state", value, sizeof value, 0, NULL, NULL)) < 0)
        return fail("nvramtdb_write", r);
    if ((r = nvramtdb_read(db, "dev0/state", &data, &len)) < 0)
        return fail("nvramtdb_read", r);
    if (len != sizeof value || memcmp(data, value, len) != 0) {
        fprintf(stderr, "installcheck: the value read back differs\n");
        return 1;
    }
    free(data);
    if ((r = nvramtdb_close(db)) < 0)
        return fail("nvramtdb_close", r);
    printf("installcheck: nvramtdb %s: ok\n", nvramtdb_version());
    return 0;
}
