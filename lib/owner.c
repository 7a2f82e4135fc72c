/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * owner.c — the ownership record (owner.h, docs/NBD.md).
 *
 * The record is one 512-byte sector, written whole and flushed, so that
 * a torn write is unlikely; a record that fails its CRC, or names another
 * image (UUID), counts as "nobody holds the image".  This is a guard
 * against the usual mistakes (a second host started on the same export,
 * a VM restarted elsewhere while the first still runs), not a fencing
 * protocol: two openers within the same few milliseconds can both
 * succeed, and a writer that has lost the image keeps writing until its
 * next checkpoint.  The server side closes those gaps (one client at a
 * time: qemu-nbd --shared=1, nbdkit's limit filter).
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#include "crc32c.h"
#include "error.h"
#include "owner.h"

#define OWNER_MAGIC "NVTOWNR1"
#define OWNER_VERSION 1u
#define HOST_LEN 128
#define BOOT_LEN 40

enum {
    OW_MAGIC = 0, OW_VERSION = 8, OW_STATE = 12, OW_TOKEN = 16, OW_SINCE = 24, OW_PID = 32,
    OW_UUID = 40, OW_BOOT = 56, OW_HOST = 96, OW_CRC = 508,
};
_Static_assert(OW_HOST + HOST_LEN <= OW_CRC, "owner record layout");
_Static_assert(OW_BOOT + BOOT_LEN <= OW_HOST, "owner record layout");

enum { STATE_RELEASED = 0, STATE_HELD = 1 };

typedef struct record {
    bool valid;            /* magic, version, CRC and UUID match */
    uint32_t state;
    uint64_t token;
    uint64_t since;
    uint32_t pid;
    char boot[BOOT_LEN + 1];
    char host[HOST_LEN + 1];
} record;

struct nvt_owner {
    nvt_image *img;
    uint64_t token;
};

/* The tokens of this process's live claims: a record naming this process
 * with a token not among them belongs to a handle that is gone (its
 * release failed, e.g. with the connection), so it is stale. */
static GMutex live_lock;
static GHashTable *live;    /* uint64_t token (boxed) -> itself */

static void live_add(uint64_t token)
{
    g_mutex_lock(&live_lock);
    if (!live)
        live = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    uint64_t *k = g_new(uint64_t, 1);
    *k = token;
    g_hash_table_add(live, k);
    g_mutex_unlock(&live_lock);
}

static void live_remove(uint64_t token)
{
    g_mutex_lock(&live_lock);
    if (live)
        g_hash_table_remove(live, &token);
    g_mutex_unlock(&live_lock);
}

static bool live_has(uint64_t token)
{
    g_mutex_lock(&live_lock);
    bool has = live && g_hash_table_contains(live, &token);
    g_mutex_unlock(&live_lock);
    return has;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    put_le32(p, (uint32_t)v);
    put_le32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
    return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

/* This host's identity: its name and the id of its current boot. */
static void this_host(char host[HOST_LEN + 1], char boot[BOOT_LEN + 1])
{
    memset(host, 0, HOST_LEN + 1);
    memset(boot, 0, BOOT_LEN + 1);
    if (gethostname(host, HOST_LEN) < 0)
        g_strlcpy(host, "(unknown)", HOST_LEN + 1);
    char *text = NULL;
    if (g_file_get_contents("/proc/sys/kernel/random/boot_id", &text, NULL, NULL)) {
        g_strlcpy(boot, g_strstrip(text), BOOT_LEN + 1);
        g_free(text);
    }
}

static int read_record(nvt_backend *be, const nvt_superblock *sb, record *rec)
{
    uint8_t buf[NVT_OWNER_SIZE];
    memset(rec, 0, sizeof *rec);
    if (!(sb->compat_flags & NVT_COMPAT_OWNER))
        return 0;                        /* never claimed */
    int r = nvt_be_pread(be, buf, sizeof buf, NVT_OWNER_OFFSET);
    if (r < 0)
        return nvt_error_prefix(-r, "%s: reading the ownership record", be->name);
    rec->valid = memcmp(buf + OW_MAGIC, OWNER_MAGIC, 8) == 0 &&
                 get_le32(buf + OW_VERSION) == OWNER_VERSION &&
                 get_le32(buf + OW_CRC) == nvt_crc32c(0, buf, OW_CRC) &&
                 memcmp(buf + OW_UUID, sb->uuid, 16) == 0;
    if (!rec->valid)
        return 0;
    rec->state = get_le32(buf + OW_STATE);
    rec->token = get_le64(buf + OW_TOKEN);
    rec->since = get_le64(buf + OW_SINCE);
    rec->pid = get_le32(buf + OW_PID);
    memcpy(rec->boot, buf + OW_BOOT, BOOT_LEN);
    memcpy(rec->host, buf + OW_HOST, HOST_LEN);
    return 0;
}

static int write_record(nvt_image *img, uint32_t state, uint64_t token)
{
    uint8_t buf[NVT_OWNER_SIZE];
    char host[HOST_LEN + 1], boot[BOOT_LEN + 1];
    memset(buf, 0, sizeof buf);
    this_host(host, boot);
    memcpy(buf + OW_MAGIC, OWNER_MAGIC, 8);
    put_le32(buf + OW_VERSION, OWNER_VERSION);
    put_le32(buf + OW_STATE, state);
    put_le64(buf + OW_TOKEN, token);
    put_le64(buf + OW_SINCE, (uint64_t)time(NULL));
    put_le32(buf + OW_PID, (uint32_t)getpid());
    memcpy(buf + OW_UUID, img->sb.uuid, 16);
    memcpy(buf + OW_BOOT, boot, BOOT_LEN);
    memcpy(buf + OW_HOST, host, HOST_LEN);
    put_le32(buf + OW_CRC, nvt_crc32c(0, buf, OW_CRC));
    int r = nvt_be_pwrite(img->be, buf, sizeof buf, NVT_OWNER_OFFSET);
    if (r == 0)
        r = nvt_be_flush(img->be);
    return r < 0 ? nvt_error_prefix(-r, "%s: writing the ownership record", img->be->name) : 0;
}

/* Whether the holder of @rec may still be writing: only a holder on this
 * host, in this boot, whose process is gone is provably not. */
static bool holder_alive(const record *rec)
{
    char host[HOST_LEN + 1], boot[BOOT_LEN + 1];
    this_host(host, boot);
    if (strcmp(rec->host, host) != 0)
        return true;                     /* another host: nobody can tell */
    if (boot[0] && strcmp(rec->boot, boot) != 0)
        return false;                    /* this host rebooted since */
    if (rec->pid == (uint32_t)getpid())
        return live_has(rec->token);     /* a handle of this process? */
    return kill((pid_t)rec->pid, 0) == 0 || errno != ESRCH;
}

static char *describe(const record *rec)
{
    GDateTime *t = g_date_time_new_from_unix_utc((gint64)rec->since);
    char *when = t ? g_date_time_format(t, "%Y-%m-%d %H:%M:%S UTC") : g_strdup("?");
    char *text = g_strdup_printf("pid %u on host %s since %s", rec->pid, rec->host, when);
    if (t)
        g_date_time_unref(t);
    g_free(when);
    return text;
}

static int refuse(nvt_backend *be, const record *rec)
{
    char *who = describe(rec);
    int r = nvt_error(EBUSY, "%s: the image is in use by %s (its ownership record); if that "
                      "writer is dead, take the image over with 'nvram-tool takeover %s'",
                      be->name, who, be->name);
    g_free(who);
    return r;
}

int nvt_owner_check_free(nvt_backend *be, const nvt_superblock *sb)
{
    record rec;
    int r = read_record(be, sb, &rec);
    if (r < 0)
        return r;
    if (rec.valid && rec.state == STATE_HELD && holder_alive(&rec))
        return refuse(be, &rec);
    return 0;
}

static int guard(void *opaque)
{
    return nvt_owner_check(opaque);
}

int nvt_owner_acquire(nvt_image *img, bool takeover, nvt_owner **out)
{
    *out = NULL;
    record rec;
    int r = read_record(img->be, &img->sb, &rec);
    if (r < 0)
        return r;
    if (!takeover && rec.valid && rec.state == STATE_HELD && holder_alive(&rec))
        return refuse(img->be, &rec);
    nvt_owner *o = g_new0(nvt_owner, 1);
    o->img = img;
    do
        o->token = ((uint64_t)g_random_int() << 32) | g_random_int();
    while (o->token == 0 || o->token == rec.token);
    /* The record first, then the flag that makes readers look at it. */
    r = write_record(img, STATE_HELD, o->token);
    if (r == 0 && !(img->sb.compat_flags & NVT_COMPAT_OWNER))
        r = nvt_image_set_compat_flags(img, img->sb.compat_flags | NVT_COMPAT_OWNER);
    /* Two openers in the same instant both wrote: the later one won. */
    if (r == 0)
        r = nvt_owner_check(o);
    if (r < 0) {
        g_free(o);
        return r;
    }
    img->guard = guard;
    img->guard_opaque = o;
    live_add(o->token);
    *out = o;
    return 0;
}

int nvt_owner_check(nvt_owner *o)
{
    record rec;
    int r = read_record(o->img->be, &o->img->sb, &rec);
    if (r < 0)
        return r;
    if (rec.valid && rec.state == STATE_HELD && rec.token == o->token)
        return 0;
    if (!rec.valid || rec.state != STATE_HELD)
        return nvt_error(EBUSY, "%s: this writer's ownership record is gone (the image was "
                         "taken over, or its record overwritten): writing stops",
                         o->img->be->name);
    char *who = describe(&rec);
    r = nvt_error(EBUSY, "%s: the image was taken over by %s: this writer stops",
                  o->img->be->name, who);
    g_free(who);
    return r;
}

int nvt_owner_release(nvt_owner *o)
{
    if (!o)
        return 0;
    nvt_image *img = o->img;
    if (img->guard_opaque == o) {
        img->guard = NULL;
        img->guard_opaque = NULL;
    }
    int r = nvt_owner_check(o);
    if (r == 0)
        r = write_record(img, STATE_RELEASED, o->token);
    else if (r == -EBUSY)
        r = 0;                           /* someone else's now: leave it */
    live_remove(o->token);
    g_free(o);
    return r;
}
