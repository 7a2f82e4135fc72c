/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* crypt.c — keys, encryption parameters and record sealing (crypt.h). */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <glib.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "crc32c.h"
#include "crypt.h"
#include "error.h"

/* ---- locked memory ---------------------------------------------------- */

nvt_secbuf *nvt_secbuf_new(size_t cap)
{
    nvt_secbuf *b = g_new0(nvt_secbuf, 1);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    b->cap = (cap + page - 1) / page * page;
    void *p = mmap(NULL, b->cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        g_error("nvramtdb: cannot map %zu bytes for key material", b->cap);
    /* Locking may fail under a small RLIMIT_MEMLOCK: the buffer is still
     * cleansed on free, and kept out of core dumps. */
    (void)mlock(p, b->cap);
#ifdef MADV_DONTDUMP
    (void)madvise(p, b->cap, MADV_DONTDUMP);
#endif
    b->data = p;
    return b;
}

void nvt_secbuf_free(nvt_secbuf *b)
{
    if (!b)
        return;
    OPENSSL_cleanse(b->data, b->cap);
    munlock(b->data, b->cap);
    munmap(b->data, b->cap);
    g_free(b);
}

int nvt_secbuf_read_fd(nvt_secbuf *b, int fd, const char *what)
{
    b->len = 0;
    for (;;) {
        if (b->len == b->cap) {
            char extra;
            ssize_t n = read(fd, &extra, 1);
            OPENSSL_cleanse(&extra, 1);
            if (n == 0)
                return 0;
            if (n > 0)
                return nvt_error(EFBIG, "%s: more than %zu bytes of key material", what, b->cap);
            if (errno == EINTR)
                continue;
            return nvt_error(errno, "%s: reading key material: %s", what, g_strerror(errno));
        }
        ssize_t n = read(fd, b->data + b->len, b->cap - b->len);
        if (n == 0)
            return 0;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int err = errno;
            return nvt_error(err, "%s: reading key material: %s", what, g_strerror(err));
        }
        b->len += (size_t)n;
    }
}

/* ---- parameters ------------------------------------------------------- */

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

#define AREA_MAGIC "NVTCRYPT"
/* Offsets inside the area (superblock offset minus 128, docs/FORMAT.md). */
enum {
    CA_MAGIC = 0, CA_VERSION = 8, CA_SIZE = 12, CA_CIPHER = 16, CA_KDF = 20,
    CA_LOG2N = 24, CA_R = 28, CA_P = 32, CA_SALT = 40, CA_KCV = 72, CA_CRC = 124,
};

void nvt_crypt_params_encode(const nvt_crypt_params *p, uint8_t out[NVT_CRYPT_AREA_SIZE])
{
    memset(out, 0, NVT_CRYPT_AREA_SIZE);
    memcpy(out + CA_MAGIC, AREA_MAGIC, 8);
    put_le32(out + CA_VERSION, 1);
    put_le32(out + CA_SIZE, NVT_CRYPT_AREA_SIZE);
    put_le32(out + CA_CIPHER, p->cipher);
    put_le32(out + CA_KDF, p->kdf);
    put_le32(out + CA_LOG2N, p->log2n);
    put_le32(out + CA_R, p->r);
    put_le32(out + CA_P, p->p);
    memcpy(out + CA_SALT, p->salt, sizeof p->salt);
    memcpy(out + CA_KCV, p->kcv, sizeof p->kcv);
    put_le32(out + CA_CRC, nvt_crc32c(0, out, CA_CRC));
}

#define BAD(err, ...) (snprintf(why, why_len, __VA_ARGS__), -(err))

int nvt_crypt_params_decode(const uint8_t in[NVT_CRYPT_AREA_SIZE], nvt_crypt_params *p,
                            char *why, size_t why_len)
{
    if (memcmp(in + CA_MAGIC, AREA_MAGIC, 8) != 0)
        return BAD(EBADMSG, "encryption parameters: bad magic");
    uint32_t crc = get_le32(in + CA_CRC), want = nvt_crc32c(0, in, CA_CRC);
    if (crc != want)
        return BAD(EBADMSG, "encryption parameters (salt, key-check value) are damaged: "
                   "checksum mismatch (stored %08x, computed %08x)", crc, want);
    if (get_le32(in + CA_VERSION) != 1 || get_le32(in + CA_SIZE) != NVT_CRYPT_AREA_SIZE)
        return BAD(ENOTSUP, "encryption parameters version %u is not supported",
                   get_le32(in + CA_VERSION));
    memset(p, 0, sizeof *p);
    p->cipher = get_le32(in + CA_CIPHER);
    p->kdf = get_le32(in + CA_KDF);
    p->log2n = get_le32(in + CA_LOG2N);
    p->r = get_le32(in + CA_R);
    p->p = get_le32(in + CA_P);
    memcpy(p->salt, in + CA_SALT, sizeof p->salt);
    memcpy(p->kcv, in + CA_KCV, sizeof p->kcv);
    if (p->cipher != NVT_CIPHER_AES_256_GCM)
        return BAD(ENOTSUP, "unknown cipher %u", p->cipher);
    if (p->kdf == NVT_KDF_SCRYPT) {
        if (p->log2n < 10 || p->log2n > NVT_SCRYPT_LOG2N_MAX || p->r < 1 || p->r > 32 ||
            p->p < 1 || p->p > 16 || 128ull * p->r << p->log2n > NVT_SCRYPT_MAXMEM)
            return BAD(ENOTSUP, "scrypt parameters N=2^%u r=%u p=%u are outside what this "
                       "version accepts", p->log2n, p->r, p->p);
    } else if (p->kdf != NVT_KDF_NONE) {
        return BAD(ENOTSUP, "unknown key derivation %u", p->kdf);
    }
    return 0;
}

/* ---- keys ------------------------------------------------------------- */

struct nvt_crypt {
    nvt_crypt_params p[NVT_CRYPT_KEY_SLOTS];
    bool used[NVT_CRYPT_KEY_SLOTS];
    uint8_t uuid[16];
    nvt_secbuf *key[NVT_CRYPT_KEY_SLOTS];   /* data keys, once set */
    int seal_slot;
    double kdf_ms;
};

static int hexval(uint8_t c)
{
    return g_ascii_xdigit_value((char)c);
}

int nvt_key_normalize_raw(nvt_secbuf *key, const char *what)
{
    size_t len = key->len;
    if (len == NVT_CRYPT_KEY_SIZE)
        return 0;
    if (len && key->data[len - 1] == '\n')
        len--;
    if (len != 2 * NVT_CRYPT_KEY_SIZE)
        return nvt_error(EINVAL, "%s: a key must be 32 raw bytes or 64 hexadecimal digits, "
                         "found %zu bytes", what, key->len);
    for (size_t i = 0; i < NVT_CRYPT_KEY_SIZE; i++) {
        int hi = hexval(key->data[2 * i]), lo = hexval(key->data[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return nvt_error(EINVAL, "%s: a 64-character key must be hexadecimal digits", what);
        key->data[i] = (uint8_t)(hi << 4 | lo);
    }
    OPENSSL_cleanse(key->data + NVT_CRYPT_KEY_SIZE, key->len - NVT_CRYPT_KEY_SIZE);
    key->len = NVT_CRYPT_KEY_SIZE;
    return 0;
}

static int scrypt(const nvt_crypt_params *p, const nvt_secbuf *pass, uint8_t out[32])
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL);
    EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    uint64_t n = 1ull << p->log2n, maxmem = NVT_SCRYPT_MAXMEM;
    uint32_t r = p->r, par = p->p;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, pass->data, pass->len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)p->salt, sizeof p->salt),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &par),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem),
        OSSL_PARAM_construct_end(),
    };
    int ok = ctx && EVP_KDF_derive(ctx, out, 32, params) == 1;
    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(kdf);
    return ok ? 0 : nvt_error(ENOMEM, "scrypt (N=2^%u, r=%u, p=%u) failed: out of memory or "
                              "not available in this OpenSSL", p->log2n, p->r, p->p);
}

static void hmac_label(const uint8_t master[32], const char *label, const uint8_t salt[32],
                       uint8_t out[32])
{
    unsigned int len = 32;
    uint8_t msg[64];
    size_t n = strlen(label);
    memcpy(msg, label, n);
    memcpy(msg + n, salt, 32);
    HMAC(EVP_sha256(), master, 32, msg, n + 32, out, &len);
}

/* Master key (scrypt or raw) -> data key and key-check value. */
static int derive(const nvt_crypt_params *p, nvt_key_kind kind, const nvt_secbuf *secret,
                  nvt_secbuf *data_key, uint8_t kcv[32], double *ms)
{
    if ((kind == NVT_KEY_PASSPHRASE) != (p->kdf == NVT_KDF_SCRYPT))
        return nvt_error(EINVAL, "the image is encrypted with %s, but %s was given",
                         p->kdf == NVT_KDF_SCRYPT ? "a passphrase" : "a key file",
                         kind == NVT_KEY_PASSPHRASE ? "a passphrase" : "a key");
    nvt_secbuf *master = nvt_secbuf_new(32);
    int r = 0;
    gint64 t0 = g_get_monotonic_time();
    if (kind == NVT_KEY_PASSPHRASE) {
        if (secret->len == 0)
            r = nvt_error(EINVAL, "empty passphrase");
        else
            r = scrypt(p, secret, master->data);
    } else if (secret->len != 32) {
        r = nvt_error(EINVAL, "a key must be 32 bytes, got %zu", secret->len);
    } else {
        memcpy(master->data, secret->data, 32);
    }
    if (ms)
        *ms = (double)(g_get_monotonic_time() - t0) / 1000.0;
    if (r == 0) {
        hmac_label(master->data, "nvramtdb data key v1", p->salt, data_key->data);
        data_key->len = 32;
        hmac_label(master->data, "nvramtdb key check v1", p->salt, kcv);
    }
    nvt_secbuf_free(master);
    return r;
}

int nvt_crypt_params_new(nvt_key_kind kind, const nvt_secbuf *secret, nvt_crypt_params *p)
{
    memset(p, 0, sizeof *p);
    p->cipher = NVT_CIPHER_AES_256_GCM;
    if (kind == NVT_KEY_PASSPHRASE) {
        p->kdf = NVT_KDF_SCRYPT;
        p->log2n = NVT_SCRYPT_LOG2N;
        p->r = NVT_SCRYPT_R;
        p->p = NVT_SCRYPT_P;
    }
    if (RAND_bytes(p->salt, sizeof p->salt) != 1)
        return nvt_error(EIO, "no random bytes for the salt (OpenSSL RAND_bytes failed)");
    nvt_secbuf *dk = nvt_secbuf_new(32);
    int r = derive(p, kind, secret, dk, p->kcv, NULL);
    nvt_secbuf_free(dk);
    return r;
}

nvt_crypt *nvt_crypt_new(const nvt_crypt_params *p[NVT_CRYPT_KEY_SLOTS],
                         const uint8_t uuid[16])
{
    nvt_crypt *c = g_new0(nvt_crypt, 1);
    for (int i = 0; i < NVT_CRYPT_KEY_SLOTS; i++) {
        if (p[i]) {
            c->p[i] = *p[i];
            c->used[i] = true;
        }
    }
    memcpy(c->uuid, uuid, 16);
    return c;
}

void nvt_crypt_drop_slot(nvt_crypt *c, int slot)
{
    nvt_secbuf_free(c->key[slot]);
    c->key[slot] = NULL;
    c->used[slot] = false;
    if (c->seal_slot == slot)
        c->seal_slot = 1 - slot;
}

void nvt_crypt_free(nvt_crypt *c)
{
    if (!c)
        return;
    for (int i = 0; i < NVT_CRYPT_KEY_SLOTS; i++)
        nvt_secbuf_free(c->key[i]);
    g_free(c);
}

bool nvt_crypt_has_key(const nvt_crypt *c)
{
    return c && c->key[c->seal_slot];
}

int nvt_crypt_seal_slot(const nvt_crypt *c)
{
    return c->seal_slot;
}

bool nvt_crypt_slot_loaded(const nvt_crypt *c, int slot)
{
    return c && c->key[slot];
}

int nvt_crypt_add_slot(nvt_crypt *c, int slot, const nvt_crypt_params *p, nvt_key_kind kind,
                       const nvt_secbuf *secret)
{
    nvt_secbuf *dk = nvt_secbuf_new(32);
    uint8_t kcv[32];
    int r = derive(p, kind, secret, dk, kcv, &c->kdf_ms);
    OPENSSL_cleanse(kcv, sizeof kcv);
    if (r < 0) {
        nvt_secbuf_free(dk);
        return r;
    }
    nvt_secbuf_free(c->key[slot]);
    c->key[slot] = dk;
    c->p[slot] = *p;
    c->used[slot] = true;
    c->seal_slot = slot;
    return 0;
}

double nvt_crypt_kdf_ms(const nvt_crypt *c)
{
    return c ? c->kdf_ms : 0;
}

int nvt_crypt_set_key(nvt_crypt *c, nvt_key_kind kind, const nvt_secbuf *secret)
{
    int r = -EKEYREJECTED, kind_err = 0;
    char kind_msg[256] = "";
    for (int i = 0; i < NVT_CRYPT_KEY_SLOTS && r < 0; i++) {
        if (!c->used[i])
            continue;
        nvt_secbuf *dk = nvt_secbuf_new(32);
        uint8_t kcv[32];
        int d = derive(&c->p[i], kind, secret, dk, kcv, &c->kdf_ms);
        if (d == 0 && CRYPTO_memcmp(kcv, c->p[i].kcv, sizeof kcv) == 0) {
            nvt_secbuf_free(c->key[i]);
            c->key[i] = dk;
            c->seal_slot = i;
            r = 0;
        } else {
            if (d < 0 && !kind_err) {
                kind_err = d;
                g_strlcpy(kind_msg, nvt_last_error(), sizeof kind_msg);
            }
            nvt_secbuf_free(dk);
        }
        OPENSSL_cleanse(kcv, sizeof kcv);
    }
    if (r == 0)
        return 0;
    if (kind_err)
        return nvt_error(-kind_err, "%s", kind_msg);
    return nvt_error(EKEYREJECTED, "wrong %s: it does not match the image's key-check value",
                     kind == NVT_KEY_PASSPHRASE ? "passphrase" : "key");
}

/* ---- records ---------------------------------------------------------- */

/* "NVTREC1\0" | uuid | name length (1 byte) | name | generation (le64) |
 * plaintext length (le32). */
static size_t make_aad(const nvt_crypt *c, const char *name, uint64_t generation, size_t len,
                       uint8_t *aad)
{
    size_t n = strlen(name), off = 0;
    memcpy(aad, "NVTREC1", 8);
    off = 8;
    memcpy(aad + off, c->uuid, 16);
    off += 16;
    aad[off++] = (uint8_t)n;
    memcpy(aad + off, name, n);
    off += n;
    for (int i = 0; i < 8; i++)
        aad[off++] = (uint8_t)(generation >> (8 * i));
    put_le32(aad + off, (uint32_t)len);
    return off + 4;
}

#define AAD_MAX (8 + 16 + 1 + 255 + 8 + 4)

int nvt_crypt_seal(nvt_crypt *c, const char *name, uint64_t generation, const void *plain,
                   size_t len, uint8_t *out)
{
    if (!nvt_crypt_has_key(c))
        return nvt_error(ENOKEY, "blob %s: the image is encrypted and no key was given", name);
    const nvt_secbuf *key = c->key[c->seal_slot];
    uint8_t aad[AAD_MAX];
    size_t aad_len = make_aad(c, name, generation, len, aad);
    uint8_t *nonce = out, *ct = out + NVT_CRYPT_NONCE_SIZE, *tag = ct + len;
    if (RAND_bytes(nonce, NVT_CRYPT_NONCE_SIZE) != 1)
        return nvt_error(EIO, "blob %s: no random nonce (OpenSSL RAND_bytes failed)", name);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int outl = 0, ok = ctx &&
        EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key->data, nonce) == 1 &&
        EVP_EncryptUpdate(ctx, NULL, &outl, aad, (int)aad_len) == 1 &&
        (len == 0 || EVP_EncryptUpdate(ctx, ct, &outl, plain, (int)len) == 1) &&
        EVP_EncryptFinal_ex(ctx, ct + len, &outl) == 1 &&
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, NVT_CRYPT_TAG_SIZE, tag) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : nvt_error(EIO, "blob %s: AES-256-GCM encryption failed", name);
}

int nvt_crypt_open(nvt_crypt *c, int slot, const char *name, uint64_t generation,
                   const uint8_t *stored, size_t stored_len, uint8_t *out)
{
    if (!nvt_crypt_has_key(c))
        return nvt_error(ENOKEY, "blob %s: the image is encrypted and no key was given", name);
    if (!c->key[slot])
        return nvt_error(ENOKEY, "blob %s: the value is sealed under the image's other key "
                         "(a re-key was interrupted after its values were rewritten: give "
                         "the new key)", name);
    const nvt_secbuf *key = c->key[slot];
    if (stored_len < NVT_CRYPT_OVERHEAD)
        return nvt_error(EBADMSG, "blob %s: encrypted value of %zu bytes is too short", name,
                         stored_len);
    size_t len = stored_len - NVT_CRYPT_OVERHEAD;
    uint8_t aad[AAD_MAX];
    size_t aad_len = make_aad(c, name, generation, len, aad);
    const uint8_t *nonce = stored, *ct = stored + NVT_CRYPT_NONCE_SIZE, *tag = ct + len;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int outl = 0, ok = ctx &&
        EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key->data, nonce) == 1 &&
        EVP_DecryptUpdate(ctx, NULL, &outl, aad, (int)aad_len) == 1 &&
        (len == 0 || EVP_DecryptUpdate(ctx, out, &outl, ct, (int)len) == 1) &&
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, NVT_CRYPT_TAG_SIZE, (void *)tag) == 1 &&
        EVP_DecryptFinal_ex(ctx, out + len, &outl) == 1;
    EVP_CIPHER_CTX_free(ctx);
    if (!ok) {
        OPENSSL_cleanse(out, len);
        return nvt_error(EBADMSG, "blob %s: authentication tag mismatch: the encrypted value "
                         "was altered, or copied from another blob, image or generation",
                         name);
    }
    return 0;
}
