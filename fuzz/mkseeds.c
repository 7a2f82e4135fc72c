/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * mkseeds.c — writes the seed corpora of fuzz/corpus/ (make fuzz-seeds).
 *
 * Every seed is made by the code under test or by the formats' own
 * encoders (images, records and journal rings by the library, tdb files
 * by nvramtdb_export_tdb, swtpm blobs by swtpm_blob_encode), then put in
 * the input form of its harness (the control byte first, see the comment
 * at the top of each fuzz/fuzz-*.c).  UUIDs, epochs and IVs are random,
 * so two runs write different bytes of the same shapes.
 *
 * Usage: mkseeds OUTDIR   (writes OUTDIR/<target>/<name>)
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "backend.h"
#include "fuzz-util.h"
#include "image.h"
#include "journal.h"
#include "nvramtdb.h"
#include "nvttest.h"
#include "record.h"
#include "swtpm-crypt.h"

static const char *outdir;

static void die(const char *what, int r)
{
    fprintf(stderr, "mkseeds: %s: %s (%s)\n", what, g_strerror(r < 0 ? -r : r),
            nvramtdb_last_error());
    exit(1);
}

/* Write OUTDIR/TARGET/NAME: @ctl, @prefix, then @body. */
static void seed(const char *target, const char *name, uint8_t ctl, const void *prefix,
                 size_t plen, const void *body, size_t blen)
{
    char *dir = g_build_filename(outdir, target, NULL);
    if (g_mkdir_with_parents(dir, 0755) < 0)
        die(dir, errno);
    char *path = g_build_filename(dir, name, NULL);
    GByteArray *a = g_byte_array_new();
    g_byte_array_append(a, &ctl, 1);
    if (plen)
        g_byte_array_append(a, prefix, (guint)plen);
    if (blen)
        g_byte_array_append(a, body, (guint)blen);
    GError *err = NULL;
    if (!g_file_set_contents(path, (const char *)a->data, a->len, &err)) {
        fprintf(stderr, "mkseeds: %s\n", err->message);
        exit(1);
    }
    g_byte_array_free(a, TRUE);
    g_free(path);
    g_free(dir);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* A tdb file in the tdb harnesses' form: its length, its bytes up to the
 * last non-zero one (fz_tdb_file). */
static void seed_tdb(const char *target, const char *name, uint8_t ctl, const uint8_t *file,
                     size_t len)
{
    size_t n = len;
    while (n && !file[n - 1])
        n--;
    uint8_t *buf = g_malloc(4 + n);
    put_le32(buf, (uint32_t)len);
    memcpy(buf + 4, file, n);
    if (strcmp(target, "tdbguard") == 0)   /* no control byte */
        seed(target, name, buf[0], NULL, 0, buf + 1, 3 + n);
    else
        seed(target, name, ctl, NULL, 0, buf, 4 + n);
    g_free(buf);
}

/* ---- images -------------------------------------------------------------- */

/* A started image on a memory backend that outlives the handle. */
static nvramtdb *new_image(nvt_backend **mem, int nblobs)
{
    *mem = nvt_mem_backend_new(NULL, 0);
    nvramtdb *db = NULL;
    int r = nvt_open_backend(nvt_be_borrow(*mem), 0, &db);
    char name[32];
    for (int i = 0; r == 0 && i < nblobs; i++) {
        snprintf(name, sizeof name, "tpm0/blob%d", i);
        r = nvramtdb_register_blob(db, name, 256);
    }
    if (r == 0)
        r = nvramtdb_start(db, 0);
    if (r < 0)
        die("start", r);
    return db;
}

static void write_blobs(nvramtdb *db, int nblobs, int round)
{
    char name[32];
    uint8_t value[256];
    for (int i = 0; i < nblobs; i++) {
        snprintf(name, sizeof name, "tpm0/blob%d", i);
        memset(value, 'a' + i + round, sizeof value);
        int r = nvramtdb_write(db, name, value, 40 + 60 * (size_t)i + round, 0, NULL, NULL);
        if (r < 0)
            die("write", r);
    }
}

/* An image in fuzz-open's patch form: its non-zero runs, page by page. */
static void seed_open(const char *name, const uint8_t *img, size_t len)
{
    GByteArray *a = g_byte_array_new();
    uint8_t pages[2] = { (uint8_t)(len / NVT_IMAGE_ALIGN), (uint8_t)(len / NVT_IMAGE_ALIGN >> 8) };
    g_byte_array_append(a, pages, 2);
    for (size_t off = 0; off < len; off += NVT_IMAGE_ALIGN) {
        size_t n = NVT_IMAGE_ALIGN;
        while (n && !img[off + n - 1])
            n--;
        if (!n)
            continue;
        uint8_t h[6];
        put_le32(h, (uint32_t)off);
        h[4] = (uint8_t)n;
        h[5] = (uint8_t)(n >> 8);
        g_byte_array_append(a, h, 6);
        g_byte_array_append(a, img + off, (guint)n);
    }
    seed("open", name, 0, NULL, 0, a->data, a->len);
    g_byte_array_free(a, TRUE);
}

static void seed_superblock(const char *name, uint8_t ctl, const uint8_t *img, size_t len)
{
    uint8_t size[8];
    put_le32(size, (uint32_t)len);
    put_le32(size + 4, (uint32_t)((uint64_t)len >> 32));
    seed("superblock", name, ctl, size, 8, img, NVT_SB_ENCODED_SIZE);
}

static void image_seeds(void)
{
    nvt_backend *mem;
    size_t len;

    /* a clean image: closed after its writes */
    nvramtdb *db = new_image(&mem, 2);
    write_blobs(db, 2, 0);
    int r = nvramtdb_close(db);
    if (r < 0)
        die("close", r);
    const uint8_t *img = nvt_mem_backend_data(mem, &len);
    seed_open("clean", img, len);
    seed_superblock("slot-a", 0, img, len);
    seed_superblock("slot-b-checksum-kept", 1, img + NVT_SB_SLOT_SIZE, len);
    nvt_superblock sb;
    char why[160];
    if (nvt_sb_decode(img, len, &sb, why, sizeof why) < 0)
        die(why, EBADMSG);
    seed_tdb("tdbguard", "image-tdb", 0, img + NVT_IMAGE_META_SIZE, sb.tdb_logical);

    /* the records of that image, as the store keeps them */
    char *dir = g_dir_make_tmp("nvramtdb-seeds-XXXXXX", NULL);
    char *tdb = g_build_filename(dir, "export.tdb", NULL);
    db = NULL;
    r = nvt_open_backend(nvt_be_borrow(mem), NVRAMTDB_OPEN_READONLY, &db);
    if (r == 0)
        r = nvramtdb_start(db, 0);
    if (r == 0)
        r = nvramtdb_export_tdb(db, tdb);
    if (r < 0)
        die("export", r);
    nvramtdb_close(db);
    gchar *file;
    gsize flen;
    if (!g_file_get_contents(tdb, &file, &flen, NULL))
        die(tdb, EIO);
    seed_tdb("import-tdb", "export", 0, (uint8_t *)file, flen);
    seed_tdb("tdbguard", "export", 0, (uint8_t *)file, flen);
    g_free(file);
    g_unlink(tdb);
    g_rmdir(dir);
    g_free(tdb);
    g_free(dir);
    nvt_be_close(mem);

    /* an image copied while open: its last commits only in the journal */
    db = new_image(&mem, 3);
    write_blobs(db, 3, 0);
    write_blobs(db, 3, 1);
    img = nvt_mem_backend_data(mem, &len);
    seed_open("journal-pending", img, len);
    if (nvt_sb_decode(img, len, &sb, why, sizeof why) < 0)
        die(why, EBADMSG);
    seed_superblock("slot-a-with-journal", 0, img, len);
    nvramtdb_close(db);
    nvt_be_close(mem);
}

/* ---- journal rings ------------------------------------------------------- */

static void journal_seeds(void)
{
    const size_t len = 16 * NVT_PAGE_SIZE;
    uint8_t uuid[16], page[NVT_PAGE_SIZE];
    for (int i = 0; i < 16; i++)
        uuid[i] = (uint8_t)(0x10 * i + 1);
    nvt_backend *be = nvt_mem_backend_new_capped(len);
    int r = nvt_be_resize(be, len);
    nvt_journal *j = NULL;
    if (r == 0)
        r = nvt_journal_open(be, 0, len, uuid, &j);
    if (r < 0)
        die("journal", r);
    memset(page, 0x5a, sizeof page);
    nvt_journal_extent whole[2] = {
        { .page = 3, .offset = 0, .length = NVT_PAGE_SIZE, .data = page },
        { .page = 7, .offset = 0, .length = NVT_PAGE_SIZE, .data = page },
    };
    nvt_journal_extent parts[3] = {
        { .page = 3, .offset = 100, .length = 20, .data = page },
        { .page = 7, .offset = 4000, .length = 96, .data = page },
        { .page = 3, .offset = 0, .length = 1, .data = page },
    };
    r = nvt_journal_append_frame(j, whole, 1, 4 * NVT_PAGE_SIZE);
    size_t used;
    const uint8_t *ring = nvt_mem_backend_data(be, &used);
    if (r == 0)
        seed("journal", "one-record", 0, uuid, 16, ring, 2 * NVT_PAGE_SIZE);
    if (r == 0)
        r = nvt_journal_append_frame(j, whole, 2, 8 * NVT_PAGE_SIZE);
    if (r == 0)
        r = nvt_journal_append_frame(j, parts, 3, 8 * NVT_PAGE_SIZE);
    if (r < 0)
        die("journal append", r);
    ring = nvt_mem_backend_data(be, &used);
    size_t n = used;
    while (n && !ring[n - 1])
        n--;
    seed("journal", "three-records", 0, uuid, 16, ring, n);
    seed("journal", "three-records-checksums-kept", FZ_KEEP_CHECKSUMS, uuid, 16, ring, n);
    nvt_journal_free(j);
    nvt_be_close(be);
}

/* ---- blob records -------------------------------------------------------- */

static void record_seeds(void)
{
    uint8_t out[NVT_RECORD_HEADER_SIZE + 300], payload[300];
    memset(payload, 0x42, sizeof payload);
    nvt_record_meta m = { .max_size = 4096, .length = 300, .generation = 7, .present = true };
    nvt_record_encode(&m, payload, out);
    seed("record", "present", 0, NULL, 0, out, sizeof out);
    m = (nvt_record_meta){ .max_size = 4096, .generation = 1, .present = false };
    nvt_record_encode(&m, NULL, out);
    seed("record", "absent", 0, NULL, 0, out, NVT_RECORD_HEADER_SIZE);
    m = (nvt_record_meta){ .max_size = 5, .length = 5, .generation = 2, .present = true };
    nvt_record_encode(&m, "hello", out);
    seed("record", "full-checksums-kept", FZ_KEEP_CHECKSUMS, NULL, 0, out, NVT_RECORD_HEADER_SIZE + 5);
}

/* ---- swtpm formats ------------------------------------------------------- */

static swtpm_key test_key(size_t len, uint8_t first)
{
    swtpm_key k = { .len = len };
    for (size_t i = 0; i < sizeof k.bytes; i++)
        k.bytes[i] = (uint8_t)(first + i);
    return k;
}

static GByteArray *encode(const uint8_t *state, size_t len, const swtpm_key *key)
{
    GError *err = NULL;
    GByteArray *b = swtpm_blob_encode(state, len, key, &err);
    if (!b) {
        fprintf(stderr, "mkseeds: %s\n", err->message);
        exit(1);
    }
    return b;
}

static void add_tlv(GByteArray *a, uint16_t tag, const uint8_t *v, uint32_t len)
{
    uint8_t h[6] = { (uint8_t)(tag >> 8), (uint8_t)tag };
    put_be32(h + 2, len);
    g_byte_array_append(a, h, 6);
    if (len)
        g_byte_array_append(a, v, len);
}

/* A container header {version 2, min 1, hdrsize 10, @flags, totlen}. */
static void finish_blob(GByteArray *a, uint16_t flags)
{
    a->data[0] = 2;
    a->data[1] = 1;
    a->data[2] = 0;
    a->data[3] = 10;
    a->data[4] = (uint8_t)(flags >> 8);
    a->data[5] = (uint8_t)flags;
    put_be32(a->data + 6, a->len);
}

static void swtpm_seeds(void)
{
    uint8_t state[200];
    for (size_t i = 0; i < sizeof state; i++)
        state[i] = (uint8_t)(i * 7);
    swtpm_key k128 = test_key(16, 0xa0), k256 = test_key(32, 0xa0);

    GByteArray *plain = encode(state, sizeof state, NULL);
    seed("swtpm-blob", "plain", 0, NULL, 0, plain->data, plain->len);
    GByteArray *empty = encode(NULL, 0, NULL);
    seed("swtpm-blob", "empty", 0, NULL, 0, empty->data, empty->len);
    /* swtpm_ioctl --save's form: a DATA TLV inside a MIGRATION_DATA TLV */
    GByteArray *inner = g_byte_array_new(), *mig = g_byte_array_new();
    add_tlv(inner, 1, state, 64);
    g_byte_array_set_size(mig, 10);
    add_tlv(mig, 4, inner->data, inner->len);
    finish_blob(mig, 0x04);
    seed("swtpm-blob", "migration", 0, NULL, 0, mig->data, mig->len);

    GByteArray *e128 = encode(state, sizeof state, &k128), *e256 = encode(state, 31, &k256);
    seed("swtpm-blob", "encrypted-no-key", 0, NULL, 0, e128->data, e128->len);
    seed("swtpm-blob-key", "aes128", 0, NULL, 0, e128->data, e128->len);
    seed("swtpm-blob-key", "aes256", 1u << 2, NULL, 0, e256->data, e256->len);
    /* plaintext that the harness encrypts (ENCRYPT), padded as swtpm pads */
    GByteArray *pt = g_byte_array_new();
    uint8_t body[32], iv[16] = { 1, 2, 3 }, mac[32] = { 0 };
    memset(body, 'p', 20);
    memset(body + 20, 12, 12);
    g_byte_array_set_size(pt, 10);
    add_tlv(pt, 2, body, sizeof body);
    add_tlv(pt, 3, mac, sizeof mac);
    add_tlv(pt, 6, iv, sizeof iv);
    finish_blob(pt, 0x01);
    seed("swtpm-blob-key", "plaintext-to-encrypt", 1u << 3, NULL, 0, pt->data, pt->len);

    /* a linear file: permall and savestate sections, then one with all three */
    for (int variant = 0; variant < 2; variant++) {
        GByteArray *lin = g_byte_array_new();
        const unsigned hdr = 12 + 3 * 12;
        GByteArray *secs[3] = { variant ? e128 : plain, variant ? e128 : NULL, empty };
        g_byte_array_set_size(lin, hdr);
        memset(lin->data, 0, hdr);
        memcpy(lin->data, "nilmptws", 8);     /* "swtpmlin" as a little-endian u64 */
        lin->data[8] = 1;
        lin->data[10] = (uint8_t)hdr;
        for (int i = 0; i < 3; i++) {
            if (!secs[i])
                continue;
            uint32_t off = lin->len, slen = secs[i]->len + 64;
            put_le32(lin->data + 12 + 12 * i, off);
            put_le32(lin->data + 12 + 12 * i + 4, secs[i]->len);
            put_le32(lin->data + 12 + 12 * i + 8, slen);
            g_byte_array_append(lin, secs[i]->data, secs[i]->len);
            guint at = lin->len;
            g_byte_array_set_size(lin, at + 64);
            memset(lin->data + at, 0, 64);
        }
        seed("swtpm-linear", variant ? "encrypted" : "plain", variant ? 4 : 0, NULL, 0,
             lin->data, lin->len);
        g_byte_array_free(lin, TRUE);
    }

    /* control channel requests, as QEMU and swtpm_ioctl send them */
    uint8_t req[16];
    memset(req, 0, sizeof req);
    put_be32(req, 1);                         /* GET_CAPABILITY */
    seed("tpmd-ctrl", "get-capability", 0, NULL, 0, req, 4);
    put_be32(req, 2);                         /* INIT, delete volatile */
    put_be32(req + 4, 1);
    seed("tpmd-ctrl", "init", 0, NULL, 0, req, 8);
    put_be32(req, 5);                         /* SET_LOCALITY in a 4-byte union */
    put_be32(req + 4, 0x03000000);
    seed("tpmd-ctrl", "set-locality", 0, NULL, 0, req, 8);
    put_be32(req, 12);                        /* GET_STATEBLOB permanent, offset 0 */
    put_be32(req + 4, 0);
    put_be32(req + 8, 1);
    seed("tpmd-ctrl", "get-stateblob", 0, NULL, 0, req, 16);
    put_be32(req, 7);                         /* HASH_DATA of 3 bytes */
    put_be32(req + 4, 3);
    seed("tpmd-ctrl", "hash-data", 0, NULL, 0, req, 11);
    GByteArray *set = g_byte_array_new();
    g_byte_array_set_size(set, 16);
    put_be32(set->data, 13);                  /* SET_STATEBLOB volatile */
    put_be32(set->data + 4, 0);
    put_be32(set->data + 8, 2);
    put_be32(set->data + 12, mig->len);
    g_byte_array_append(set, mig->data, mig->len);
    seed("tpmd-ctrl", "set-stateblob-migration", 0, NULL, 0, set->data, set->len);
    g_byte_array_set_size(set, 16);
    put_be32(set->data + 12, plain->len);
    g_byte_array_append(set, plain->data, plain->len);
    seed("tpmd-ctrl", "set-stateblob-plain", 0, NULL, 0, set->data, set->len);

    GByteArray *all[] = { plain, empty, inner, mig, e128, e256, pt, set };
    for (size_t i = 0; i < G_N_ELEMENTS(all); i++)
        g_byte_array_free(all[i], TRUE);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: mkseeds OUTDIR\n");
        return 2;
    }
    outdir = argv[1];
    image_seeds();
    journal_seeds();
    record_seeds();
    swtpm_seeds();
    return 0;
}
