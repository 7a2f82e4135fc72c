/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* workload.c — the workload shared by test-crash and test-faults. */
#include "config.h"

#include <stdarg.h>
#include <string.h>

#include "workload.h"

const tu_blob blobs[N_BLOBS] = {
    { "dev0/a", 4096 },
    { "dev0/b", 20000 },
    { "dev1/c", 100 },
};



#define WRITE(slug, blob, len, seed) { slug, false, blob, len, seed }
#define DELETE(slug, blob) { slug, true, blob, 0, 0 }

/* Consecutive values of a blob always differ, so that "old" and "new"
 * can be told apart after a crash. */
const step workload[N_STEPS] = {
    WRITE("create-a-small", BLOB_A, 100, 1),
    WRITE("create-b-at-max", BLOB_B, 20000, 2),
    WRITE("create-c-empty", BLOB_C, 0, 3),
    WRITE("replace-a-at-max", BLOB_A, 4096, 4),
    WRITE("replace-b-one-byte", BLOB_B, 1, 5),
    WRITE("replace-c-at-max", BLOB_C, 100, 6),
    WRITE("replace-a-empty", BLOB_A, 0, 7),
    DELETE("delete-b", BLOB_B),
    WRITE("recreate-b-in-between", BLOB_B, 7000, 8),
    DELETE("delete-c", BLOB_C),
    WRITE("replace-a-in-between", BLOB_A, 2048, 9),
    WRITE("recreate-c-small", BLOB_C, 37, 10),
    WRITE("replace-b-at-max", BLOB_B, 20000, 11),
    DELETE("delete-a", BLOB_A),
    WRITE("recreate-a-at-max", BLOB_A, 4096, 12),
    WRITE("replace-b-empty", BLOB_B, 0, 13),
};

static uint8_t *pattern_cache[MAX_SEED + 1];

value step_value(const step *s)
{
    value v = { !s->is_delete, s->len, s->seed };
    return v;
}

/* The bytes of a present value (NULL when empty). */
const uint8_t *value_bytes(const value *v)
{
    g_assert(v->seed <= MAX_SEED);
    if (v->len == 0)
        return NULL;
    if (!pattern_cache[v->seed]) {
        pattern_cache[v->seed] = g_malloc(v->len);
        tu_fill(pattern_cache[v->seed], v->len, v->seed);
    }
    return pattern_cache[v->seed];
}

char *value_describe(const value *v)
{
    if (!v->present)
        return g_strdup("absent");
    return g_strdup_printf("%u bytes (pattern %u)", v->len, v->seed);
}

const char *const commit_names[N_COMMITS] = { "journal", "stock-commit" };
const unsigned commit_flags[N_COMMITS] = { 0, NVRAMTDB_OPEN_STOCK_COMMIT };

static uint8_t *formatted[N_COMMITS];
static size_t formatted_len[N_COMMITS];

const uint8_t *formatted_image(commit_mode commit, size_t *len)
{
    if (!formatted[commit]) {
        nvt_backend *mem = nvt_mem_backend_new(NULL, 0);
        nvramtdb *db = tu_start(mem, commit_flags[commit], blobs, N_BLOBS, NULL);
        g_assert_nonnull(db);
        formatted[commit] = tu_mem_copy(mem, &formatted_len[commit]);
        nvramtdb_close(db);
    }
    *len = formatted_len[commit];
    return formatted[commit];
}

void seen_read(nvramtdb *db, int blob, seen *s)
{
    s->data = NULL;
    s->len = 0;
    s->rc = nvramtdb_read(db, blobs[blob].name, &s->data, &s->len);
}

bool seen_is(const seen *s, const value *v)
{
    if (!v->present)
        return s->rc == -ENOENT;
    return s->rc == 0 && s->len == v->len &&
           (v->len == 0 || memcmp(s->data, value_bytes(v), v->len) == 0);
}

unsigned crash_seeds(void)
{
    const char *env = g_getenv("NVT_CRASH_SEEDS");
    unsigned n = env ? (unsigned)g_ascii_strtoull(env, NULL, 10) : 0;
    return n ? n : 20;
}

bool violation(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_test_message("VIOLATION: %s", msg);
    g_test_fail();
    g_free(msg);
    return false;
}

static void collect_problem(void *opaque, const char *problem)
{
    g_string_append_printf(opaque, "\n  - %s", problem);
}

bool healthy(nvramtdb *db, const char *ctx, const char *how)
{
    GString *problems = g_string_new(NULL);
    int r = nvramtdb_check(db, collect_problem, problems);
    if (r != 0)
        violation("%s, %s: check returned %d (%s):%s", ctx, how, r,
                  r < 0 ? nvramtdb_last_error() : "problems", problems->str);
    g_string_free(problems, TRUE);
    return r == 0;
}

static void free_values(void)
{
    for (size_t i = 0; i <= MAX_SEED; i++) {
        g_free(pattern_cache[i]);
        pattern_cache[i] = NULL;
    }
}

static char **args;         /* the arguments g_test_init() parsed */
static GPtrArray *paths;

void test_init_keep_going(int *argc, char **argv)
{
    args = g_new0(char *, (size_t)*argc + 2);
    memcpy(args, argv, (size_t)*argc * sizeof *args);
    args[(*argc)++] = (char *)"--keep-going";
    g_test_init(argc, &args, NULL);
}

void add_test(gconstpointer data, GTestDataFunc fn, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *p = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (!paths)
        paths = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(paths, p);
    g_test_add_data_func(p, data, fn);
}

int run_tests(void)
{
    int ret = g_test_run();
    if (paths)
        g_ptr_array_free(paths, TRUE);
    paths = NULL;
    free_values();
    for (int c = 0; c < N_COMMITS; c++) {
        g_free(formatted[c]);
        formatted[c] = NULL;
    }
    g_free(args);
    args = NULL;
    return ret;
}
