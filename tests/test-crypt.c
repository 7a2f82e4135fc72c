/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * test-crypt: encryption at rest (docs/ENCRYPTION.md).  Values written
 * through every path never appear in the image file; a wrong, missing or
 * mismatched key and damaged parameters fail clearly and change nothing;
 * a flipped ciphertext byte, a value moved between blobs and an older
 * value replayed in place are all detected.
 */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "crc32c.h"
#include "crypt.h"
#include "error.h"
#include "image.h"
#include "record.h"
#include "testutil.h"

static const uint8_t key_a[32] = "0123456789abcdef0123456789abcde";
static const uint8_t key_b[32] = "fedcba9876543210fedcba987654321";
/* A plaintext that must never reach the file, 48 bytes. */
static const char secret[] = "TOP-SECRET-SEED-0123456789-never-on-disk-in-clear";

typedef struct fix {
    char *dir;
    char *path;
} fix;

static void fix_init(fix *f)
{
    f->dir = tu_tmpdir();
    f->path = g_build_filename(f->dir, "img", NULL);
}

static void fix_free(fix *f)
{
    tu_rmtree(f->dir);
    g_free(f->dir);
    g_free(f->path);
}

static const tu_blob blobs[] = {
    { "tpm0/permall", 4096 },
    { "tpm0/volatilestate", 4096 },
    { "tpm0/savestate", 1024 },
};
#define NBLOBS 3

static nvramtdb_key raw_key(const uint8_t *k)
{
    nvramtdb_key key = { .struct_size = sizeof key, .type = NVRAMTDB_KEY_RAW, .data = k,
                         .len = 32, .fd = -1 };
    return key;
}

/* Open @path, give @key (NULL: none), register, start with @flags. */
static int open_start(const char *path, const nvramtdb_key *key, unsigned flags, nvramtdb **out)
{
    nvramtdb *db;
    int r = nvramtdb_open(path, NVRAMTDB_OPEN_CREATE, &db);
    if (r < 0)
        return r;
    if (key && (r = nvramtdb_set_key(db, key)) < 0) {
        nvramtdb_close(db);
        return r;
    }
    for (int i = 0; i < NBLOBS; i++)
        TU_OK(nvramtdb_register_blob(db, blobs[i].name, blobs[i].max_size));
    r = nvramtdb_start(db, flags);
    if (r < 0) {
        char msg[512];
        g_strlcpy(msg, nvramtdb_last_error(), sizeof msg);
        nvramtdb_close(db);
        nvt_error(-r, "%s", msg);
        return r;
    }
    *out = db;
    return 0;
}

static nvramtdb *start_key(const char *path, const uint8_t *k)
{
    nvramtdb_key key = raw_key(k);
    nvramtdb *db = NULL;
    TU_OK(open_start(path, &key, 0, &db));
    return db;
}

static void assert_not_in_file(const char *path, const void *needle, size_t len)
{
    size_t flen;
    uint8_t *bytes = tu_read_file(path, &flen);
    /* Any 16-byte window of it would do: check several. */
    for (size_t off = 0; off + 16 <= len; off += 8)
        if (tu_memfind(bytes, flen, (const uint8_t *)needle + off, 16, NULL) >= 0)
            g_error("%s: plaintext bytes %zu..%zu found in the image file", path, off, off + 16);
    g_free(bytes);
}

static void test_round_trip_and_info(void)
{
    fix f;
    fix_init(&f);
    nvramtdb *db = start_key(f.path, key_a);
    TU_OK(nvramtdb_write(db, "tpm0/permall", secret, sizeof secret, 0, NULL, NULL));
    TU_OK(nvramtdb_write(db, "tpm0/savestate", "", 0, 0, NULL, NULL));
    tu_assert_blob(db, "tpm0/permall", secret, sizeof secret);
    tu_assert_blob(db, "tpm0/savestate", "", 0);
    nvramtdb_info info = { .struct_size = sizeof info };
    TU_OK(nvramtdb_get_info(db, &info));
    g_assert_cmpuint(info.encryption, ==, NVRAMTDB_INFO_ENCRYPTED | NVRAMTDB_INFO_KEY_LOADED);
    /* Names and plaintext sizes stay visible. */
    nvramtdb_entry e = tu_entry(db, "tpm0/permall");
    g_assert_cmpuint(e.size, ==, sizeof secret);
    g_assert_cmpuint(e.generation, ==, 1);
    tu_assert_healthy(db);
    TU_OK(nvramtdb_close(db));
    db = start_key(f.path, key_a);
    tu_assert_blob(db, "tpm0/permall", secret, sizeof secret);
    tu_assert_healthy(db);
    TU_OK(nvramtdb_close(db));
    fix_free(&f);
}

/* write, write_batch, async write, import_tdb: in the journal before the
 * checkpoint, in place after it: never in clear. */
static void test_plaintext_never_on_disk(void)
{
    fix f;
    fix_init(&f);
    /* An export of a plain image holding the secret, for the import path. */
    char *plain = g_build_filename(f.dir, "plain", NULL);
    char *export = g_build_filename(f.dir, "export.tdb", NULL);
    nvramtdb *db;
    TU_OK(open_start(plain, NULL, 0, &db));
    TU_OK(nvramtdb_write(db, "tpm0/savestate", secret, sizeof secret, 0, NULL, NULL));
    TU_OK(nvramtdb_export_tdb(db, export));
    TU_OK(nvramtdb_close(db));

    db = start_key(f.path, key_a);
    TU_OK(nvramtdb_write(db, "tpm0/permall", secret, sizeof secret, 0, NULL, NULL));
    nvramtdb_change batch[2] = {
        { .struct_size = sizeof(nvramtdb_change), .name = "tpm0/permall", .data = secret,
          .len = sizeof secret },
        { .struct_size = sizeof(nvramtdb_change), .name = "tpm0/volatilestate", .data = secret,
          .len = sizeof secret },
    };
    TU_OK(nvramtdb_write_batch(db, batch, 2, 0, NULL, NULL));
    TU_OK(nvramtdb_write(db, "tpm0/volatilestate", secret, sizeof secret,
                         NVRAMTDB_ASYNC | NVRAMTDB_WAIT_COMPLETION, NULL, NULL));
    g_assert_cmpint(nvramtdb_import_tdb(db, export, 0), ==, 1);
    TU_OK(nvramtdb_flush(db));
    assert_not_in_file(f.path, secret, sizeof secret);   /* journal, before checkpoint */
    tu_assert_blob(db, "tpm0/savestate", secret, sizeof secret);
    TU_OK(nvramtdb_close(db));                           /* checkpoint */
    assert_not_in_file(f.path, secret, sizeof secret);
    db = start_key(f.path, key_a);
    for (int i = 0; i < NBLOBS; i++)
        tu_assert_blob(db, blobs[i].name, secret, sizeof secret);
    /* The export of an encrypted image would carry bound records: refused. */
    char *export2 = g_build_filename(f.dir, "export2.tdb", NULL);
    TU_ASSERT_ERROR(nvramtdb_export_tdb(db, export2), -ENOTSUP, "encrypted");
    TU_OK(nvramtdb_close(db));
    assert_not_in_file(f.path, secret, sizeof secret);
    g_free(export2);
    g_free(plain);
    g_free(export);
    fix_free(&f);
}

static uint8_t *make_image(fix *f, size_t *len)
{
    nvramtdb *db = start_key(f->path, key_a);
    TU_OK(nvramtdb_write(db, "tpm0/permall", secret, sizeof secret, 0, NULL, NULL));
    TU_OK(nvramtdb_close(db));
    return tu_read_file(f->path, len);
}

static void test_wrong_and_missing_key(void)
{
    fix f;
    fix_init(&f);
    size_t len;
    uint8_t *bytes = make_image(&f, &len);
    nvramtdb *db = NULL;

    nvramtdb_key wrong = raw_key(key_b);
    TU_ASSERT_ERROR(open_start(f.path, &wrong, 0, &db), -EKEYREJECTED, "wrong key");
    TU_ASSERT_FILE_UNCHANGED(f.path, bytes, len);
    nvramtdb_key pass = { .struct_size = sizeof pass, .type = NVRAMTDB_KEY_PASSPHRASE,
                          .data = "hunter2", .len = 7, .fd = -1 };
    TU_ASSERT_ERROR(open_start(f.path, &pass, 0, &db), -EINVAL, "key file", "passphrase");
    TU_ASSERT_FILE_UNCHANGED(f.path, bytes, len);
    TU_ASSERT_ERROR(open_start(f.path, NULL, NVRAMTDB_START_FAIL_ON_ENCRYPTED, &db), -ENOKEY,
                    "encrypted", "no key");
    TU_ASSERT_FILE_UNCHANGED(f.path, bytes, len);

    /* Without the flag: listing works, values do not, until the key. */
    TU_OK(open_start(f.path, NULL, 0, &db));
    nvramtdb_entry e = tu_entry(db, "tpm0/permall");
    g_assert_cmpuint(e.size, ==, sizeof secret);
    nvramtdb_info info = { .struct_size = sizeof info };
    TU_OK(nvramtdb_get_info(db, &info));
    g_assert_cmpuint(info.encryption, ==, NVRAMTDB_INFO_ENCRYPTED);
    uint8_t *data = NULL;
    size_t dlen;
    TU_ASSERT_ERROR(nvramtdb_read(db, "tpm0/permall", &data, &dlen), -ENOKEY, "no key");
    TU_ASSERT_ERROR(nvramtdb_write(db, "tpm0/permall", "x", 1, 0, NULL, NULL), -ENOKEY, "no key");
    TU_ASSERT_ERROR(nvramtdb_delete(db, "tpm0/permall", 0, NULL, NULL), -ENOKEY, "no key");
    nvramtdb_change c = { .struct_size = sizeof c, .name = "tpm0/permall", .data = "x", .len = 1 };
    TU_ASSERT_ERROR(nvramtdb_write_batch(db, &c, 1, 0, NULL, NULL), -ENOKEY, "no key");
    g_assert_cmpint(nvramtdb_check(db, NULL, NULL), ==, 0);   /* structure only */
    TU_ASSERT_ERROR(nvramtdb_set_key(db, &wrong), -EKEYREJECTED, "wrong key");
    TU_ASSERT_ERROR(nvramtdb_read(db, "tpm0/permall", &data, &dlen), -ENOKEY, "no key");
    nvramtdb_key right = raw_key(key_a);
    TU_OK(nvramtdb_set_key(db, &right));
    TU_ASSERT_ERROR(nvramtdb_set_key(db, &right), -EALREADY, "already");
    tu_assert_blob(db, "tpm0/permall", secret, sizeof secret);
    TU_OK(nvramtdb_write(db, "tpm0/volatilestate", secret, 5, 0, NULL, NULL));
    tu_assert_healthy(db);
    TU_OK(nvramtdb_close(db));

    /* A key for a plain image is refused. */
    char *plain = g_build_filename(f.dir, "plain", NULL);
    TU_OK(open_start(plain, NULL, 0, &db));
    TU_OK(nvramtdb_close(db));
    TU_ASSERT_ERROR(open_start(plain, &right, 0, &db), -EINVAL, "not encrypted");
    g_free(plain);
    g_free(bytes);
    fix_free(&f);
}

/* Key sources: hex key file with newline, raw file, fd, passphrase. */
static void test_key_sources(void)
{
    fix f;
    fix_init(&f);
    char hex[66];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", key_a[i]);
    hex[64] = '\n';
    char *hexfile = tu_write_file(f.dir, "hex.key", hex, 65);
    char *rawfile = tu_write_file(f.dir, "raw.key", key_a, 32);
    char *badfile = tu_write_file(f.dir, "bad.key", key_a, 31);
    nvramtdb *db;
    nvramtdb_key k = { .struct_size = sizeof k, .type = NVRAMTDB_KEY_RAW, .path = hexfile,
                       .fd = -1 };
    TU_OK(open_start(f.path, &k, 0, &db));
    TU_OK(nvramtdb_write(db, "tpm0/permall", secret, sizeof secret, 0, NULL, NULL));
    TU_OK(nvramtdb_close(db));
    k.path = rawfile;
    TU_OK(open_start(f.path, &k, 0, &db));
    tu_assert_blob(db, "tpm0/permall", secret, sizeof secret);
    TU_OK(nvramtdb_close(db));
    k.path = NULL;
    k.fd = open(rawfile, O_RDONLY);
    TU_OK(open_start(f.path, &k, 0, &db));
    close(k.fd);
    tu_assert_blob(db, "tpm0/permall", secret, sizeof secret);
    TU_OK(nvramtdb_close(db));
    k.fd = -1;
    k.path = badfile;
    TU_ASSERT_ERROR(open_start(f.path, &k, 0, &db), -EINVAL, "32 raw bytes or 64 hex");

    /* A passphrase image: scrypt, timed. */
    char *pimg = g_build_filename(f.dir, "pimg", NULL);
    char *pfile = tu_write_file(f.dir, "pass", "correct horse\n", 14);
    nvramtdb_key p = { .struct_size = sizeof p, .type = NVRAMTDB_KEY_PASSPHRASE, .path = pfile,
                       .fd = -1 };
    gint64 t0 = g_get_monotonic_time();
    TU_OK(open_start(pimg, &p, 0, &db));
    g_test_message("create with scrypt N=2^16 r=8 p=1 (two derivations): %.0f ms",
                   (double)(g_get_monotonic_time() - t0) / 1000.0);
    TU_OK(nvramtdb_write(db, "tpm0/permall", secret, sizeof secret, 0, NULL, NULL));
    nvramtdb_info info = { .struct_size = sizeof info };
    TU_OK(nvramtdb_get_info(db, &info));
    g_assert_cmpuint(info.encryption, ==, NVRAMTDB_INFO_ENCRYPTED | NVRAMTDB_INFO_KEY_LOADED |
                     NVRAMTDB_INFO_PASSPHRASE);
    g_assert_cmpuint(info.scrypt_log2n, ==, 16);
    TU_OK(nvramtdb_close(db));
    p.path = NULL;
    p.data = "correct horse";   /* the newline of the file is not part of it */
    p.len = 13;
    t0 = g_get_monotonic_time();
    TU_OK(open_start(pimg, &p, 0, &db));
    double ms = (double)(g_get_monotonic_time() - t0) / 1000.0;
    g_test_message("open with a passphrase (one scrypt derivation): %.0f ms", ms);
    printf("# scrypt N=2^16 r=8 p=1: open takes %.0f ms\n", ms);
    tu_assert_blob(db, "tpm0/permall", secret, sizeof secret);
    TU_OK(nvramtdb_close(db));
    p.data = "correct horsf";
    TU_ASSERT_ERROR(open_start(pimg, &p, 0, &db), -EKEYREJECTED, "wrong passphrase");
    g_free(pimg);
    g_free(pfile);
    g_free(hexfile);
    g_free(rawfile);
    g_free(badfile);
    fix_free(&f);
}

/* The key-check value: damaged in one copy, the other serves and check
 * reports it; in both, the image is refused as damaged, not "wrong key". */
static void test_damaged_key_check_value(void)
{
    fix f;
    fix_init(&f);
    size_t len;
    uint8_t *bytes = make_image(&f, &len);
    const size_t kcv = NVT_CRYPT_AREA_OFFSET + 72;
    bytes[kcv] ^= 0x01;
    char *path1 = tu_write_file(f.dir, "one", bytes, len);
    nvramtdb *db = start_key(path1, key_a);
    tu_assert_blob(db, "tpm0/permall", secret, sizeof secret);
    g_assert_cmpint(nvramtdb_check(db, NULL, NULL), ==, 0);   /* start repaired it */
    TU_OK(nvramtdb_close(db));

    bytes[NVT_SB_SLOT_SIZE + kcv] ^= 0x01;
    char *path2 = tu_write_file(f.dir, "two", bytes, len);
    nvramtdb_key k = raw_key(key_a);
    TU_ASSERT_ERROR(open_start(path2, &k, 0, &db), -EBADMSG, "damaged", "key-check");
    TU_ASSERT_FILE_UNCHANGED(path2, bytes, len);
    TU_ASSERT_ERROR(open_start(path2, NULL, 0, &db), -EBADMSG, "damaged");
    TU_ASSERT_FILE_UNCHANGED(path2, bytes, len);
    g_free(path1);
    g_free(path2);
    g_free(bytes);
    fix_free(&f);
}

/* Offset of blob @name's record value (our 32-byte header) in the tdb
 * region of @bytes: its key followed by the record magic.  tdb's free
 * space and recovery area may hold older copies: the live record is the
 * one with the highest generation. */
static size_t record_at(const uint8_t *bytes, size_t len, const char *name)
{
    uint64_t joff = 0;
    for (int i = 0; i < 8; i++)
        joff |= (uint64_t)bytes[72 + i] << (8 * i);
    g_assert_cmpuint(joff, <=, len);
    size_t n = strlen(name), best = 0;
    uint64_t best_gen = 0;
    uint8_t needle[NVRAMTDB_NAME_MAX + 4];
    memcpy(needle, name, n);
    memcpy(needle + n, "NVB1", 4);
    for (size_t off = 8192; off < joff;) {
        long at = tu_memfind(bytes + off, joff - off, needle, n + 4, NULL);
        if (at < 0)
            break;
        size_t rec = off + (size_t)at + n;
        uint64_t gen = 0;
        for (int i = 0; i < 8; i++)
            gen |= (uint64_t)bytes[rec + 16 + i] << (8 * i);
        if (!best || gen > best_gen) {
            best = rec;
            best_gen = gen;
        }
        off = rec + 4;
    }
    g_assert_cmpuint(best, !=, 0);
    return best;
}

/* Recompute the CRCs of the record at @rec: the attacker can, and the
 * tag must still catch it. */
static void recrc(uint8_t *rec, size_t stored)
{
    uint32_t pc = nvt_crc32c(0, rec + 32, stored);
    memcpy(rec + 24, &pc, 4);   /* little-endian host (tdb format) */
    uint32_t hc = nvt_crc32c(0, rec, 28);
    memcpy(rec + 28, &hc, 4);
}

static void expect_read_fails(const char *path, const char *name, const char *needle)
{
    nvramtdb *db = start_key(path, key_a);
    uint8_t *data = NULL;
    size_t dlen;
    TU_ASSERT_ERROR(nvramtdb_read(db, name, &data, &dlen), -EBADMSG, needle);
    g_assert_null(data);
    int problems = 0;
    GString *all = g_string_new("");
    problems = nvramtdb_check(db, NULL, NULL);
    g_assert_cmpint(problems, ==, 1);
    g_string_free(all, TRUE);
    TU_OK(nvramtdb_close(db));
}

static void check_names(void *opaque, const char *problem)
{
    g_string_append(opaque, problem);
}

static void test_tampering_detected(void)
{
    fix f;
    fix_init(&f);
    nvramtdb *db = start_key(f.path, key_a);
    char v1[48], v2[48];
    memset(v1, 'A', sizeof v1);
    memset(v2, 'B', sizeof v2);
    TU_OK(nvramtdb_write(db, "tpm0/permall", v1, sizeof v1, 0, NULL, NULL));
    TU_OK(nvramtdb_write(db, "tpm0/volatilestate", v2, sizeof v2, 0, NULL, NULL));
    TU_OK(nvramtdb_close(db));
    size_t len;
    uint8_t *old = tu_read_file(f.path, &len);
    db = start_key(f.path, key_a);
    TU_OK(nvramtdb_write(db, "tpm0/permall", v2, sizeof v2, 0, NULL, NULL));
    TU_OK(nvramtdb_close(db));
    uint8_t *cur = tu_read_file(f.path, &len);
    const size_t stored = sizeof v1 + NVT_CRYPT_OVERHEAD;
    size_t pa = record_at(cur, len, "tpm0/permall"), pv = record_at(cur, len, "tpm0/volatilestate");
    size_t pa_old = record_at(old, len, "tpm0/permall");

    /* A flipped ciphertext byte: the CRC catches it, and with the CRC
     * recomputed the tag does; check names the blob. */
    uint8_t *b = g_memdup2(cur, len);
    b[pa + 32 + NVT_CRYPT_NONCE_SIZE + 3] ^= 0x40;
    char *p = tu_write_file(f.dir, "flip-crc", b, len);
    expect_read_fails(p, "tpm0/permall", "checksum");
    g_free(p);
    recrc(b + pa, stored);
    p = tu_write_file(f.dir, "flip", b, len);
    expect_read_fails(p, "tpm0/permall", "authentication");
    db = start_key(p, key_a);
    GString *msgs = g_string_new("");
    g_assert_cmpint(nvramtdb_check(db, check_names, msgs), ==, 1);
    g_assert_nonnull(strstr(msgs->str, "tpm0/permall"));
    g_assert_nonnull(strstr(msgs->str, "authentication"));
    g_string_free(msgs, TRUE);
    TU_OK(nvramtdb_close(db));
    g_free(p);
    g_free(b);

    /* volatilestate's sealed value under permall's header. */
    b = g_memdup2(cur, len);
    memcpy(b + pa + 32, cur + pv + 32, stored);
    recrc(b + pa, stored);
    p = tu_write_file(f.dir, "moved", b, len);
    expect_read_fails(p, "tpm0/permall", "authentication");
    g_free(p);
    g_free(b);

    /* volatilestate's whole record (header too) in permall's place. */
    b = g_memdup2(cur, len);
    memcpy(b + pa, cur + pv, 32 + stored);
    p = tu_write_file(f.dir, "moved-whole", b, len);
    expect_read_fails(p, "tpm0/permall", "authentication");
    g_free(p);
    g_free(b);

    /* The older generation's sealed value under the current header. */
    b = g_memdup2(cur, len);
    memcpy(b + pa + 32, old + pa_old + 32, stored);
    recrc(b + pa, stored);
    p = tu_write_file(f.dir, "replayed", b, len);
    expect_read_fails(p, "tpm0/permall", "authentication");
    g_free(p);
    g_free(b);

    /* An unencrypted record swapped in (a downgrade): refused. */
    b = g_memdup2(cur, len);
    b[pa + 5] &= (uint8_t)~NVT_RECORD_ENCRYPTED;
    memcpy(b + pa + 12, &(uint32_t){ (uint32_t)stored }, 4);
    recrc(b + pa, stored);
    p = tu_write_file(f.dir, "downgrade", b, len);
    expect_read_fails(p, "tpm0/permall", "unencrypted value");
    g_free(p);
    g_free(b);

    /* The whole older record (header and value) put back while the image
     * is open: the handle knows the generation it committed. */
    db = start_key(f.path, key_a);
    tu_assert_blob(db, "tpm0/permall", v2, sizeof v2);
    {
        FILE *fp = fopen(f.path, "r+b");
        g_assert_nonnull(fp);
        g_assert_cmpint(fseek(fp, (long)pa, SEEK_SET), ==, 0);
        g_assert_cmpuint(fwrite(old + pa_old, 1, 32 + stored, fp), ==, 32 + stored);
        fclose(fp);
    }
    uint8_t *data = NULL;
    size_t dlen;
    int r = nvramtdb_read(db, "tpm0/permall", &data, &dlen);
    /* The pager may serve its cached page (then the current value); a
     * read from the file must not return the older value. */
    if (r == 0) {
        g_assert_cmpmem(data, dlen, v2, sizeof v2);
        free(data);
    } else {
        TU_ASSERT_ERROR(r, -EBADMSG, "generation");
    }
    nvramtdb_close(db);
    g_free(old);
    g_free(cur);
    fix_free(&f);
}

/* ---- re-keying ------------------------------------------------------------ */

static const char *const rk_values[NBLOBS] = {
    "permall: the seeds under the old key, then the new",
    "volatile",
    "",
};

/* Start a copy of @img (@len bytes) with @k; -errno or 0 with every value
 * as written (then healthy). */
static int try_key(const uint8_t *img, size_t len, const uint8_t *k)
{
    nvramtdb *db;
    int r = nvt_open_backend(nvt_mem_backend_new(img, len), 0, &db);
    g_assert_cmpint(r, ==, 0);
    nvramtdb_key key = raw_key(k);
    TU_OK(nvramtdb_set_key(db, &key));
    for (int i = 0; i < NBLOBS; i++)
        TU_OK(nvramtdb_register_blob(db, blobs[i].name, blobs[i].max_size));
    r = nvramtdb_start(db, 0);
    if (r == 0) {
        for (int i = 0; i < NBLOBS; i++)
            tu_assert_blob(db, blobs[i].name, rk_values[i], (long)strlen(rk_values[i]));
        tu_assert_healthy(db);
    } else {
        char msg[512];
        g_strlcpy(msg, nvramtdb_last_error(), sizeof msg);
        nvramtdb_close(db);
        nvt_error(-r, "%s", msg);
        return r;
    }
    TU_OK(nvramtdb_close(db));
    return 0;
}

static uint8_t *rekey_base(size_t *len)
{
    nvt_backend *mem = nvt_mem_backend_new(NULL, 0);
    nvramtdb *db;
    TU_OK(nvt_open_backend(nvt_be_borrow(mem), 0, &db));
    nvramtdb_key key = raw_key(key_a);
    TU_OK(nvramtdb_set_key(db, &key));
    for (int i = 0; i < NBLOBS; i++)
        TU_OK(nvramtdb_register_blob(db, blobs[i].name, blobs[i].max_size));
    TU_OK(nvramtdb_start(db, 0));
    for (int i = 0; i < NBLOBS; i++)
        TU_OK(nvramtdb_write(db, blobs[i].name, rk_values[i], strlen(rk_values[i]), 0, NULL,
                             NULL));
    TU_OK(nvramtdb_close(db));
    uint8_t *img = tu_mem_copy(mem, len);
    nvt_be_close(mem);
    return img;
}

static void test_rekey(void)
{
    size_t len;
    uint8_t *img = rekey_base(&len);
    nvt_backend *mem = nvt_mem_backend_new(img, len);
    nvramtdb *db;
    TU_OK(nvt_open_backend(nvt_be_borrow(mem), 0, &db));
    nvramtdb_key a = raw_key(key_a), b = raw_key(key_b);
    TU_OK(nvramtdb_set_key(db, &a));
    TU_OK(nvramtdb_start(db, 0));
    TU_OK(nvramtdb_rekey(db, &b));
    for (int i = 0; i < NBLOBS; i++)
        tu_assert_blob(db, blobs[i].name, rk_values[i], (long)strlen(rk_values[i]));
    TU_OK(nvramtdb_close(db));
    size_t nlen;
    uint8_t *now = tu_mem_copy(mem, &nlen);
    TU_ASSERT_ERROR(try_key(now, nlen, key_a), -EKEYREJECTED, "wrong key");
    TU_OK(try_key(now, nlen, key_b));
    /* A plain image has nothing to re-key; a read-only one refuses. */
    nvt_be_close(mem);
    g_free(now);
    g_free(img);
}

/* A power cut at every operation of a re-key (and the close after it):
 * the image then starts with exactly one of the two keys, every value
 * reads back under it, and the other key is refused. */
static void test_rekey_crash_sweep(void)
{
    size_t len;
    uint8_t *img = rekey_base(&len);
    unsigned olds = 0, news = 0;
    for (uint64_t n = 1;; n++) {
        nvt_backend *fault = nvt_fault_backend_new(nvt_mem_backend_new(img, len));
        nvramtdb *db;
        TU_OK(nvt_open_backend(nvt_be_borrow(fault), 0, &db));
        nvramtdb_key a = raw_key(key_a), b = raw_key(key_b);
        TU_OK(nvramtdb_set_key(db, &a));
        TU_OK(nvramtdb_start(db, 0));
        nvt_fault_arm(fault, NVT_FAULT_POWER_CUT, NVT_FAULT_ON_ANY, n, 0);
        nvramtdb_rekey(db, &b);
        nvramtdb_close(db);
        bool fired = nvt_fault_fired(fault);
        for (uint32_t seed = 1; seed <= (fired ? 3u : 1u); seed++) {
            size_t clen;
            uint8_t *crash = nvt_fault_crash_image(fault, seed, &clen);
            int ra = try_key(crash, clen, key_a), rb = try_key(crash, clen, key_b);
            if ((ra == 0) == (rb == 0) || (ra && ra != -EKEYREJECTED) ||
                (rb && rb != -EKEYREJECTED))
                g_error("cut at op %" G_GUINT64_FORMAT " seed %u: old key %d, new key %d: %s",
                        n, seed, ra, rb, nvramtdb_last_error());
            ra == 0 ? olds++ : news++;
            g_free(crash);
        }
        nvt_be_close(fault);
        if (!fired) {
            g_test_message("re-key: %" G_GUINT64_FORMAT " operations cut; states: %u under the "
                           "old key, %u under the new", n - 1, olds, news);
            break;
        }
    }
    g_assert_cmpuint(olds, >, 0);
    g_assert_cmpuint(news, >, 0);
    g_free(img);
}

/* The test library encrypts every handle it starts exactly when
 * NVT_TEST_ENCRYPT=1 (tests/encrypted.sh): otherwise the crash sweeps run
 * on plain images, and with it on sealed ones. */
static void test_variant_in_effect(void)
{
    bool encrypted = g_strcmp0(g_getenv("NVT_TEST_ENCRYPT"), "1") == 0;
    int rc;
    nvramtdb *db = tu_start(nvt_mem_backend_new(NULL, 0), 0, blobs, NBLOBS, &rc);
    g_assert_nonnull(db);
    nvramtdb_info info = { .struct_size = sizeof info };
    TU_OK(nvramtdb_get_info(db, &info));
    g_assert_cmpuint(info.encryption, ==,
                     encrypted ? NVRAMTDB_INFO_ENCRYPTED | NVRAMTDB_INFO_KEY_LOADED : 0);
    TU_OK(nvramtdb_write(db, "tpm0/permall", secret, sizeof secret, 0, NULL, NULL));
    tu_assert_blob(db, "tpm0/permall", secret, sizeof secret);
    TU_OK(nvramtdb_close(db));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/crypt/round-trip", test_round_trip_and_info);
    g_test_add_func("/crypt/plaintext-never-on-disk", test_plaintext_never_on_disk);
    g_test_add_func("/crypt/wrong-and-missing-key", test_wrong_and_missing_key);
    g_test_add_func("/crypt/key-sources", test_key_sources);
    g_test_add_func("/crypt/damaged-key-check-value", test_damaged_key_check_value);
    g_test_add_func("/crypt/tampering-detected", test_tampering_detected);
    g_test_add_func("/crypt/rekey", test_rekey);
    g_test_add_func("/crypt/rekey-crash-sweep", test_rekey_crash_sweep);
    g_test_add_func("/crypt/test-variant-in-effect", test_variant_in_effect);
    return g_test_run();
}
