/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* open.c — a handle on a backend a test built (see nvttest.h). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "nvttest.h"

int nvt_test_give_key(nvramtdb *db)
{
    static const uint8_t key[32] = "nvramtdb encrypted test variant";
    const char *on = getenv("NVT_TEST_ENCRYPT");
    if (!db || !on || strcmp(on, "1") != 0)
        return 0;
    nvramtdb_key k = { .struct_size = sizeof k, .type = NVRAMTDB_KEY_RAW, .data = key,
                       .len = sizeof key, .fd = -1 };
    return nvramtdb_set_key(db, &k);
}

int nvt_open_backend(nvt_backend *be, unsigned flags, nvramtdb **dbp)
{
    int r = nvt_handle_open(be->name, be, flags, dbp);
    if (r == 0 && (r = nvt_test_give_key(*dbp)) < 0) {
        nvramtdb_close(*dbp);
        *dbp = NULL;
    }
    return r;
}
