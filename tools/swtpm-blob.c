/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * swtpm-blob.c — swtpm's state blob container and linear file, without
 * cryptography (see swtpm-blob.h for what this module promises).
 *
 * Written from the format as swtpm documents and produces it.  The two
 * readers share the header layout and one TLV walk; they differ only in
 * what they accept, and both sets of rules are here.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdarg.h>
#include <string.h>

#include "byteorder.h"
#include "swtpm-blob.h"

G_DEFINE_QUARK(swtpm-state-error-quark, swtpm_state_error)

static const char *const state_names[SWTPM_NSTATES] = { "permall", "volatilestate", "savestate" };

const char *swtpm_state_name(unsigned which)
{
    return which < SWTPM_NSTATES ? state_names[which] : "?";
}

static bool G_GNUC_PRINTF(3, 4) fail(GError **error, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_propagate_error(error, g_error_new_valist(SWTPM_STATE_ERROR, code, fmt, ap));
    va_end(ap);
    return false;
}

/* ---- the TLV walk ------------------------------------------------------- */

typedef enum { TLV_NEXT, TLV_END, TLV_TRUNCATED, TLV_OVERRUN } tlv_step;

/* The TLV at *off of @p/@len: TLV_NEXT with *tag, *val, *val_len set and
 * *off moved past it; TLV_END when *off is at @len; TLV_TRUNCATED when
 * fewer bytes than a TLV header are left; TLV_OVERRUN when its length
 * (in *val_len) runs past @len. */
static tlv_step tlv_next(const uint8_t *p, size_t len, size_t *off, uint16_t *tag,
                         const uint8_t **val, size_t *val_len)
{
    size_t left = len - *off;
    uint32_t l;

    if (left == 0)
        return TLV_END;
    if (left < SWTPM_TLV_HDR_SIZE)
        return TLV_TRUNCATED;
    *tag = load_be16(p + *off);
    l = load_be32(p + *off + 2);
    *val_len = l;
    if (l > left - SWTPM_TLV_HDR_SIZE)
        return TLV_OVERRUN;
    *val = p + *off + SWTPM_TLV_HDR_SIZE;
    *off += SWTPM_TLV_HDR_SIZE + l;
    return TLV_NEXT;
}

/* nvram-tool's rule: the TLVs must exactly fill @len, a known tag at most
 * once; the values by tag in @t. */
static bool tlv_split(const uint8_t *p, size_t len, const char *what, swtpm_tlvs *t,
                      GError **error)
{
    size_t off = 0, at = 0, l = 0;
    const uint8_t *v = NULL;
    uint16_t tag = 0;
    tlv_step s;

    memset(t, 0, sizeof *t);
    while ((s = tlv_next(p, len, &off, &tag, &v, &l)) == TLV_NEXT) {
        if (tag <= SWTPM_TAG_MAX) {
            if (t->val[tag])
                return fail(error, SWTPM_STATE_ERROR_FORMAT, "%s: TLV tag %u appears twice",
                            what, tag);
            t->val[tag] = v;
            t->len[tag] = l;
        }
        at = off;
    }
    if (s == TLV_TRUNCATED)
        return fail(error, SWTPM_STATE_ERROR_FORMAT,
                    "%s: truncated TLV header at offset %zu (%zu bytes left, 6 needed)",
                    what, at, len - at);
    if (s == TLV_OVERRUN)
        return fail(error, SWTPM_STATE_ERROR_FORMAT,
                    "%s: TLV tag %u at offset %zu has length %zu"
                    ", more than the %zu bytes that follow",
                    what, tag, at, l, len - at - SWTPM_TLV_HDR_SIZE);
    return true;
}

/* swtpm's rule (tlv_data_find_tag): the first TLV @tag before the walk
 * ends or meets a malformed TLV; what follows it is not looked at. */
static bool tlv_find(const uint8_t *p, size_t len, uint16_t tag, const uint8_t **val,
                     size_t *val_len)
{
    size_t off = 0, l = 0;
    const uint8_t *v = NULL;
    uint16_t t = 0;

    while (tlv_next(p, len, &off, &t, &v, &l) == TLV_NEXT) {
        if (t == tag) {
            *val = v;
            *val_len = l;
            return true;
        }
    }
    return false;
}

/* ---- reading a blob ----------------------------------------------------- */

size_t swtpm_blob_keylen(const uint8_t *p, size_t len)
{
    uint16_t flags;

    if (len < SWTPM_BLOB_HDR_SIZE || load_be16(p + 2) != SWTPM_BLOB_HDR_SIZE)
        return 0;
    flags = load_be16(p + 4);
    if (!(flags & SWTPM_BLOB_FLAG_ENCRYPTED))
        return 0;
    return flags & SWTPM_BLOB_FLAG_ENCRYPTED_256 ? 32 : 16;
}

bool swtpm_blob_unwrap(const uint8_t *p, size_t len, swtpm_blob_view *view, GError **error)
{
    uint8_t version, min_version;
    uint16_t hdrsize, flags;
    uint32_t totlen;
    swtpm_tlvs outer;
    const swtpm_tlvs *t = &outer;

    memset(view, 0, sizeof *view);
    if (len < SWTPM_BLOB_HDR_SIZE)
        return fail(error, SWTPM_STATE_ERROR_FORMAT,
                    "truncated header: %zu bytes, a swtpm state blob starts with a %u-byte "
                    "header", len, SWTPM_BLOB_HDR_SIZE);
    version = p[0];
    min_version = p[1];
    hdrsize = load_be16(p + 2);
    flags = load_be16(p + 4);
    totlen = load_be32(p + 6);
    if (totlen != len)
        return fail(error, SWTPM_STATE_ERROR_FORMAT,
                    "length mismatch: the header says %" G_GUINT32_FORMAT " bytes (totlen), "
                    "the blob has %zu", totlen, len);
    if (version == 0 || min_version > SWTPM_BLOB_VERSION || min_version > version)
        return fail(error, SWTPM_STATE_ERROR_FORMAT,
                    "unsupported blob version %u (minimum version %u); version 2 is supported",
                    version, min_version);
    if (hdrsize != SWTPM_BLOB_HDR_SIZE)
        return fail(error, SWTPM_STATE_ERROR_FORMAT,
                    "bad header size %u (expected %u)", hdrsize, SWTPM_BLOB_HDR_SIZE);
    if (flags & ~SWTPM_BLOB_FLAGS_KNOWN)
        return fail(error, SWTPM_STATE_ERROR_FORMAT, "unknown header flags 0x%04x", flags);
    if (flags & SWTPM_BLOB_FLAG_MIGRATION_ENCRYPTED)
        return fail(error, SWTPM_STATE_ERROR_KEY,
                    "the blob is encrypted with a migration key, which is not supported");
    view->info.version = version;
    view->info.flags = flags;
    view->info.encrypted = flags & SWTPM_BLOB_FLAG_ENCRYPTED;
    view->info.keylen = !view->info.encrypted ? 0
                        : flags & SWTPM_BLOB_FLAG_ENCRYPTED_256 ? 32 : 16;
    p += SWTPM_BLOB_HDR_SIZE;
    len -= SWTPM_BLOB_HDR_SIZE;
    if (version == 1) {
        /* version 1: the state follows the header, no TLVs */
        if (view->info.encrypted)
            return fail(error, SWTPM_STATE_ERROR_FORMAT,
                        "encrypted version-1 blobs are not supported");
        view->state = p;
        view->state_len = len;
        return true;
    }
    if (len == 0) {                     /* an empty state */
        /* Unless encrypted: nothing would authenticate it. */
        if (view->info.encrypted)
            return fail(error, SWTPM_STATE_ERROR_FORMAT,
                        "the blob is marked encrypted but holds no encrypted data "
                        "(and no HMAC)");
        view->state = p;
        return true;
    }
    if (!tlv_split(p, len, "blob", &outer, error))
        return false;
    if (flags & SWTPM_BLOB_FLAG_MIGRATION_DATA) {
        if (!outer.val[SWTPM_TAG_MIGRATION_DATA])
            return fail(error, SWTPM_STATE_ERROR_FORMAT,
                        "the header announces migration data, there is no such TLV");
        if (!tlv_split(outer.val[SWTPM_TAG_MIGRATION_DATA], outer.len[SWTPM_TAG_MIGRATION_DATA],
                       "migration data", &view->tlvs, error))
            return false;
        t = &view->tlvs;
    } else {
        view->tlvs = outer;
    }
    if (view->info.encrypted)
        return true;                    /* for swtpm-crypt.h */
    if (!t->val[SWTPM_TAG_DATA])
        return fail(error, SWTPM_STATE_ERROR_FORMAT,
                    t->val[SWTPM_TAG_ENCRYPTED_DATA]
                        ? "encrypted data but the header's encrypted flag is clear"
                        : "no DATA TLV in the blob");
    view->state = t->val[SWTPM_TAG_DATA];
    view->state_len = t->len[SWTPM_TAG_DATA];
    return true;
}

/*
 * What nvram-tpmd's SET_STATEBLOB accepts beyond swtpm_blob_unwrap(), as
 * swtpm's own SET_STATEBLOB does (SWTPM_NVRAM_CheckHeader and
 * tlv_data_find_tag), so that any state swtpm loads loads here too:
 *  - only min_version is checked (version 0 and min_version > version
 *    pass), and unknown flags are ignored;
 *  - version 0 or 1 (below 2) means no TLVs: the state follows the header;
 *  - a MIGRATION_DATA TLV is used whether the flags announce it or not;
 *  - TLVs are searched, not checked: the first of a tag wins, and bytes
 *    after it (even malformed ones) are not read.
 * The refusals carry swtpm's order: length, version, header size, then
 * encryption (there are no keys in the daemon).
 */
swtpm_blob_refusal swtpm_blob_unwrap_lenient(const uint8_t *p, size_t len,
                                             const uint8_t **state, size_t *state_len)
{
    const uint8_t *mig;
    size_t mig_len;
    uint16_t flags;
    uint8_t version;

    if (len < SWTPM_BLOB_HDR_SIZE || load_be32(p + 6) != len)
        return SWTPM_BLOB_BAD_LENGTH;
    if (p[1] > SWTPM_BLOB_VERSION)
        return SWTPM_BLOB_BAD_VERSION;
    if (load_be16(p + 2) != SWTPM_BLOB_HDR_SIZE)
        return SWTPM_BLOB_BAD_HDRSIZE;
    version = p[0];
    flags = load_be16(p + 4);
    if (flags & (SWTPM_BLOB_FLAG_ENCRYPTED | SWTPM_BLOB_FLAG_MIGRATION_ENCRYPTED))
        return SWTPM_BLOB_ENCRYPTED;
    p += SWTPM_BLOB_HDR_SIZE;
    len -= SWTPM_BLOB_HDR_SIZE;
    if (len == 0 || version < 2) {
        *state = p;
        *state_len = len;
        return SWTPM_BLOB_OK;
    }
    if (tlv_find(p, len, SWTPM_TAG_MIGRATION_DATA, &mig, &mig_len)) {
        p = mig;
        len = mig_len;
    }
    if (!tlv_find(p, len, SWTPM_TAG_DATA, state, state_len))
        return SWTPM_BLOB_NO_DATA;
    return SWTPM_BLOB_OK;
}

/* ---- writing a blob ----------------------------------------------------- */

void swtpm_blob_put_tlv(GByteArray *a, uint16_t tag, const uint8_t *val, size_t len)
{
    uint8_t h[SWTPM_TLV_HDR_SIZE];

    store_be16(h, tag);
    store_be32(h + 2, (uint32_t)len);
    g_byte_array_append(a, h, sizeof h);
    if (len)
        g_byte_array_append(a, val, (guint)len);
}

void swtpm_blob_put_header(GByteArray *a, uint16_t flags)
{
    a->data[0] = SWTPM_BLOB_VERSION;
    a->data[1] = 1;                                 /* min_version */
    store_be16(a->data + 2, SWTPM_BLOB_HDR_SIZE);
    store_be16(a->data + 4, flags);
    store_be32(a->data + 6, a->len);
}

GByteArray *swtpm_blob_wrap(const uint8_t *state, size_t len, bool migration)
{
    size_t total = SWTPM_BLOB_HDR_SIZE + (migration ? 2 : 1) * SWTPM_TLV_HDR_SIZE + len;
    GByteArray *out = g_byte_array_sized_new((guint)MIN((uint64_t)total, UINT32_MAX));

    g_byte_array_set_size(out, SWTPM_BLOB_HDR_SIZE);
    if (migration) {
        uint8_t h[SWTPM_TLV_HDR_SIZE];         /* its value: the DATA TLV */

        store_be16(h, SWTPM_TAG_MIGRATION_DATA);
        store_be32(h + 2, (uint32_t)(SWTPM_TLV_HDR_SIZE + len));
        g_byte_array_append(out, h, sizeof h);
    }
    swtpm_blob_put_tlv(out, SWTPM_TAG_DATA, state, len);
    swtpm_blob_put_header(out, migration ? SWTPM_BLOB_FLAG_MIGRATION_DATA : 0);
    return out;
}

/* ---- the linear file backend ------------------------------------------- */

#define LINEAR_MAGIC UINT64_C(0x737774706d6c696e)    /* "swtpmlin" */
#define LINEAR_VERSION 1u
#define LINEAR_FIXED 12u                              /* magic, version, pad, hdrsize */
#define LINEAR_ENTRY 12u

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

bool swtpm_linear_parse(const uint8_t *p, size_t len, swtpm_linear_entry entries[SWTPM_NSTATES],
                        GError **error)
{
    size_t hdrsize;

    memset(entries, 0, sizeof(swtpm_linear_entry) * SWTPM_NSTATES);
    if (len < LINEAR_FIXED)
        return fail(error, SWTPM_STATE_ERROR_FORMAT,
                    "truncated linear file header: %zu bytes", len);
    if (le64(p) != LINEAR_MAGIC)
        return fail(error, SWTPM_STATE_ERROR_FORMAT,
                    "not a swtpm linear state file (no \"swtpmlin\" magic)");
    if (p[8] == 0 || p[8] > LINEAR_VERSION)
        return fail(error, SWTPM_STATE_ERROR_FORMAT,
                    "unsupported linear file version %u (version 1 is supported)", p[8]);
    hdrsize = (size_t)p[10] | (size_t)p[11] << 8;
    if (hdrsize < LINEAR_FIXED + SWTPM_NSTATES * LINEAR_ENTRY || hdrsize > len ||
        (hdrsize - LINEAR_FIXED) % LINEAR_ENTRY != 0)
        return fail(error, SWTPM_STATE_ERROR_FORMAT,
                    "bad linear file header size %zu (file of %zu bytes)", hdrsize, len);
    for (unsigned i = 0; i < SWTPM_NSTATES; i++) {
        const uint8_t *e = p + LINEAR_FIXED + i * LINEAR_ENTRY;
        uint32_t off = le32(e), dlen = le32(e + 4), slen = le32(e + 8);

        if (off == 0)
            continue;
        if (off < hdrsize || dlen > slen || off > len || dlen > len - off)
            return fail(error, SWTPM_STATE_ERROR_FORMAT,
                        "linear file: the %s section (offset %" G_GUINT32_FORMAT ", %"
                        G_GUINT32_FORMAT " bytes of %" G_GUINT32_FORMAT ") does not lie "
                        "inside the %zu-byte file after its header",
                        state_names[i], off, dlen, slen, len);
        entries[i].present = true;
        entries[i].offset = off;
        entries[i].length = dlen;
    }
    return true;
}
