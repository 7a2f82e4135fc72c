/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * nvram-tool-swtpm.c — nvram-tool's import-swtpm and export-swtpm: a TPM
 * state moved between an image and swtpm's state directory or linear
 * file.  The formats are swtpm-blob.c's and swtpm-crypt.c's; this file
 * owns the options, the files and the order of writes that keeps a state
 * whole across a crash.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <openssl/crypto.h>

#include "nvram-tool.h"
#include "nvramtdb.h"
#include "swtpm-blob.h"
#include "swtpm-crypt.h"

/* The maxima nvram-tpmd registers for its blobs: nvtpm_permall_max() and
 * nvtpm_volatilestate_max() (tpm/nvtpm.c explains them).  The tool does
 * not link libtpms, so the numbers are repeated here. */
#define SWTPM_IMPORT_PERMALL_MAX  212992u
#define SWTPM_IMPORT_VOLATILE_MAX 65536u
/* Largest swtpm state file or linear file read. */
#define SWTPM_FILE_MAX (16u * 1024 * 1024)

/* The options import-swtpm and export-swtpm share. */
struct swtpm_opts {
    gchar *device;
    gchar *key_file, *key_format, *pwdfile, *kdf, *cipher;
};

static void swtpm_opts_free(struct swtpm_opts *o)
{
    g_free(o->device);
    g_free(o->key_file);
    g_free(o->key_format);
    g_free(o->pwdfile);
    g_free(o->kdf);
    g_free(o->cipher);
}

/* Check the key options; RC_OK or RC_USAGE (after a message). */
static int swtpm_key_opts_check(const struct swtpm_opts *o, size_t *cipher_keylen)
{
    swtpm_key_format fmt;
    swtpm_kdf kdf;

    *cipher_keylen = 0;
    if (o->key_file && o->pwdfile)
        return usage_error("--key and --pwdfile exclude each other");
    if (o->key_format && !swtpm_key_format_parse(o->key_format, &fmt))
        return usage_error("--key-format: '%s' is neither hex nor binary", o->key_format);
    if (o->key_format && !o->key_file)
        return usage_error("--key-format needs --key");
    if (o->kdf && !swtpm_kdf_parse(o->kdf, &kdf))
        return usage_error("--kdf: '%s' is neither pbkdf2 nor sha512", o->kdf);
    if (o->kdf && !o->pwdfile)
        return usage_error("--kdf needs --pwdfile");
    if (o->cipher && !swtpm_cipher_parse(o->cipher, cipher_keylen))
        return usage_error("--cipher: '%s' is not aes-cbc, aes-128-cbc or aes-256-cbc",
                           o->cipher);
    if (o->cipher && !o->key_file && !o->pwdfile)
        return usage_error("--cipher needs --key or --pwdfile");
    return RC_OK;
}

/*
 * Parse the arguments of import-swtpm and export-swtpm, IMAGE and the
 * swtpm state, into @o.  Both take --device, then the command's own
 * option @own, then the key options.  The key options are checked and
 * *dev is the device id (--device, or tpm0).  RC_OK with *args set, or
 * RC_USAGE after a message, with nothing left to free but @o.
 */
static int parse_swtpm_options(const struct command *cmd, const GOptionEntry *own,
                               int argc, char **argv, struct swtpm_opts *o,
                               char ***args, const char **dev, size_t *cipher_keylen)
{
    const GOptionEntry entries[] = {
        { "device", 'd', 0, G_OPTION_ARG_STRING, &o->device,
          "Device id of the TPM on the image (default tpm0)", "ID" },
        *own,
        { "key", 'k', 0, G_OPTION_ARG_FILENAME, &o->key_file,
          "State encryption key file, as swtpm --key file=FILE", "FILE" },
        { "key-format", 0, 0, G_OPTION_ARG_STRING, &o->key_format,
          "Format of the key file: hex (default) or binary", "FORMAT" },
        { "pwdfile", 'p', 0, G_OPTION_ARG_FILENAME, &o->pwdfile,
          "Passphrase file to derive the key from, as swtpm --key pwdfile=FILE", "FILE" },
        { "kdf", 0, 0, G_OPTION_ARG_STRING, &o->kdf,
          "Key derivation for --pwdfile: pbkdf2 (default) or sha512", "KDF" },
        { "cipher", 0, 0, G_OPTION_ARG_STRING, &o->cipher,
          "aes-128-cbc (aes-cbc) or aes-256-cbc, as swtpm's mode=", "CIPHER" },
        OPT_END
    };
    int rc = parse_options(cmd, entries, argc, argv, 2, 2, args);

    if (rc != RC_OK)
        return rc;
    rc = swtpm_key_opts_check(o, cipher_keylen);
    *dev = o->device ? o->device : "tpm0";
    if (rc == RC_OK && (!**dev || strchr(*dev, '/')))
        rc = usage_error("--device: '%s' is not a device id", *dev);
    if (rc != RC_OK) {
        g_strfreev(*args);
        *args = NULL;
    }
    return rc;
}

/* Load the key the options name (false after a message).  @keylen: the
 * size a passphrase key gets; a key file must match it unless it is 0. */
static bool swtpm_key_opts_load(const struct swtpm_opts *o, size_t keylen, swtpm_key *key)
{
    swtpm_key_format fmt = SWTPM_KEY_HEX;
    swtpm_kdf kdf = SWTPM_KDF_PBKDF2;
    GError *err = NULL;
    bool ok;

    if (o->key_format)
        swtpm_key_format_parse(o->key_format, &fmt);
    if (o->kdf)
        swtpm_kdf_parse(o->kdf, &kdf);
    if (o->key_file)
        ok = swtpm_key_load(o->key_file, fmt, keylen, key, &err);
    else
        ok = swtpm_key_from_pwdfile(o->pwdfile, kdf, keylen ? keylen : 16, key, &err);
    if (!ok) {
        error_msg("%s", err->message);
        g_error_free(err);
    }
    return ok;
}

/* Cleanse and release what swtpm_read_file() read (NULL is fine).  The
 * bytes are ours (g_bytes_new_take), or a slice of a linear file's. */
static void cleanse_bytes_unref(GBytes *bytes)
{
    gsize len = 0;
    void *p;

    if (!bytes)
        return;
    p = (void *)g_bytes_get_data(bytes, &len);
    if (p)
        OPENSSL_cleanse(p, len);
    g_bytes_unref(bytes);
}

/* Read a whole swtpm file; *data NULL (and true) if it does not exist. */
static bool swtpm_read_file(const char *path, bool missing_ok, GBytes **data)
{
    gchar *buf = NULL;
    gsize len = 0;
    GError *err = NULL;
    struct stat st;

    *data = NULL;
    if (stat(path, &st) < 0) {
        if (errno == ENOENT && missing_ok)
            return true;
        error_msg("%s: %s", path, g_strerror(errno));
        return false;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > (off_t)SWTPM_FILE_MAX) {
        error_msg("%s: not a regular file of at most %u bytes", path, SWTPM_FILE_MAX);
        return false;
    }
    if (!g_file_get_contents(path, &buf, &len, &err)) {
        error_msg("%s", err->message);
        g_error_free(err);
        return false;
    }
    *data = g_bytes_new_take(buf, len);
    return true;
}

/* Import @src (a state directory, dir://DIR or file://PATH) into @image. */
int cmd_import_swtpm(const struct command *cmd, int argc, char **argv)
{
    struct swtpm_opts so = { 0 };
    gchar **args = NULL;
    gboolean create = FALSE;
    const GOptionEntry create_entry = {
        "create", 'c', 0, G_OPTION_ARG_NONE, &create, "Create IMAGE if it does not exist", NULL
    };
    static const uint32_t maxima[SWTPM_NSTATES] = {
        SWTPM_IMPORT_PERMALL_MAX, SWTPM_IMPORT_VOLATILE_MAX, SWTPM_IMPORT_VOLATILE_MAX,
    };
    GBytes *files[SWTPM_NSTATES] = { NULL }, *linear = NULL;
    GByteArray *plain[SWTPM_NSTATES] = { NULL };
    char *where[SWTPM_NSTATES] = { NULL }, *names[SWTPM_NSTATES] = { NULL };
    struct blob_spec specs[SWTPM_NSTATES];
    size_t nspecs = 0, cipher_keylen = 0, need = 0;
    swtpm_key key = { 0 };
    bool have_key = false, existed = true;
    const char *src, *dev;
    nvramtdb *db = NULL;
    int rc, r;

    rc = parse_swtpm_options(cmd, &create_entry, argc, argv, &so, &args, &dev, &cipher_keylen);
    if (rc != RC_OK)
        goto out;
    rc = RC_FAIL;
    src = args[1];

    /* 1. read every file */
    if (g_str_has_prefix(src, "file://")) {
        swtpm_linear_entry ent[SWTPM_NSTATES];
        GError *err = NULL;
        const uint8_t *p;
        gsize len;

        if (!swtpm_read_file(src + 7, false, &linear))
            goto out;
        p = g_bytes_get_data(linear, &len);
        if (!swtpm_linear_parse(p, len, ent, &err)) {
            error_msg("%s: %s", src + 7, err->message);
            g_error_free(err);
            goto out;
        }
        for (unsigned i = 0; i < SWTPM_NSTATES; i++) {
            where[i] = g_strdup_printf("%s (%s)", src + 7, swtpm_state_name(i));
            if (ent[i].present)
                files[i] = g_bytes_new_from_bytes(linear, ent[i].offset, ent[i].length);
        }
    } else {
        const char *dir = g_str_has_prefix(src, "dir://") ? src + 6 : src;

        for (unsigned i = 0; i < SWTPM_NSTATES; i++) {
            where[i] = g_strdup_printf("%s/tpm2-00.%s", dir, swtpm_state_name(i));
            if (!swtpm_read_file(where[i], true, &files[i]))
                goto out;
        }
    }
    if (!files[SWTPM_PERMALL]) {
        error_msg("%s: no such file: %s holds no TPM 2 state of swtpm", where[SWTPM_PERMALL],
                  src);
        goto out;
    }

    /* 2. the key, sized for the state when it comes from a passphrase */
    for (unsigned i = 0; i < SWTPM_NSTATES && !need; i++) {
        gsize len;
        const uint8_t *p = files[i] ? g_bytes_get_data(files[i], &len) : NULL;

        if (p)
            need = swtpm_blob_keylen(p, len);
    }
    if (so.key_file || so.pwdfile) {
        if (!swtpm_key_opts_load(&so, cipher_keylen ? cipher_keylen : need, &key))
            goto out;
        have_key = true;
    }

    /* 3. decode and check everything before the image is touched */
    for (unsigned i = 0; i < SWTPM_NSTATES; i++) {
        GError *err = NULL;
        const uint8_t *p;
        gsize len;

        if (!files[i])
            continue;
        p = g_bytes_get_data(files[i], &len);
        if (!swtpm_blob_decode(p, len, have_key ? &key : NULL, &plain[i], NULL, &err)) {
            error_msg("%s: %s", where[i], err->message);
            g_error_free(err);
            goto out;
        }
        if (plain[i]->len > maxima[i]) {
            error_msg("%s: a %s of %u bytes is above the maximum of %" PRIu32, where[i],
                      swtpm_state_name(i), plain[i]->len, maxima[i]);
            goto out;
        }
    }

    /* 4. write */
    for (unsigned i = 0; i < SWTPM_NSTATES; i++) {
        names[i] = g_strdup_printf("%s/%s", dev, swtpm_state_name(i));
        if (i != SWTPM_SAVESTATE || plain[i]) {
            specs[nspecs].name = names[i];
            specs[nspecs].max_size = maxima[i];
            nspecs++;
        }
    }
    if (create) {
        struct stat st;

        existed = g_str_has_prefix(args[0], "mem:") || image_is_export(args[0]) ||
                  stat(image_path(args[0]), &st) == 0;
    }
    db = open_image(args[0], create ? NVRAMTDB_OPEN_CREATE : 0, specs, nspecs, NULL);
    if (!db)
        goto out;
    /*
     * One atomic batch: after a crash the image holds the whole old TPM
     * state or the whole new one, never the volatile state of one TPM
     * with the permall of another.  A state the source lacks is deleted
     * from the image.
     */
    nvramtdb_change changes[SWTPM_NSTATES];
    size_t nchanges = 0;
    for (unsigned i = 0; i < SWTPM_NSTATES; i++) {
        bool present = false;
        if (plain[i]) {
            changes[nchanges++] = (nvramtdb_change){ .struct_size = sizeof(nvramtdb_change),
                                                     .name = names[i], .data = plain[i]->data,
                                                     .len = plain[i]->len };
            continue;
        }
        r = find_entry(db, names[i], &present);
        if (r < 0) {
            lib_error(r);
            goto out;
        }
        if (present)
            changes[nchanges++] = (nvramtdb_change){ .struct_size = sizeof(nvramtdb_change),
                                                     .name = names[i], .is_delete = true };
    }
    r = nvramtdb_write_batch(db, changes, nchanges, NVRAMTDB_WAIT_COMPLETION, NULL, NULL);
    if (r < 0) {
        lib_error(r);
        goto out;
    }
    rc = close_image(db);
    db = NULL;
    if (rc == RC_OK) {
        printf("imported %s into %s:", src, args[0]);
        for (unsigned i = 0; i < SWTPM_NSTATES; i++)
            if (plain[i])
                printf(" %s (%u bytes)", names[i], plain[i]->len);
        printf("\n");
    }
out:
    if (db)
        nvramtdb_close(db);
    if (rc != RC_OK && !existed)
        unlink(image_path(args[0]));     /* ours, and incomplete */
    OPENSSL_cleanse(&key, sizeof key);     /* also after a failed load */
    for (unsigned i = 0; i < SWTPM_NSTATES; i++) {
        cleanse_bytes_unref(files[i]);  /* a plain state file holds the state as it is */
        swtpm_state_free(plain[i]);
        g_free(where[i]);
        g_free(names[i]);
    }
    cleanse_bytes_unref(linear);
    swtpm_opts_free(&so);
    g_strfreev(args);
    return rc;
}

/* Export the TPM blobs of @image as a swtpm state directory. */
int cmd_export_swtpm(const struct command *cmd, int argc, char **argv)
{
    struct swtpm_opts so = { 0 };
    gchar **args = NULL;
    gboolean force = FALSE;
    const GOptionEntry force_entry = {
        "force", 'f', 0, G_OPTION_ARG_NONE, &force, "Replace a swtpm state already in DIR", NULL
    };
    GByteArray *blob[SWTPM_NSTATES] = { NULL };
    char *tmp[SWTPM_NSTATES] = { NULL }, *final[SWTPM_NSTATES] = { NULL };
    size_t cipher_keylen = 0;
    swtpm_key key = { 0 };
    bool have_key = false;
    const char *dev, *dir;
    char *lock_path = NULL;
    int lock_fd = -1;
    nvramtdb *db = NULL;
    int rc;

    rc = parse_swtpm_options(cmd, &force_entry, argc, argv, &so, &args, &dev, &cipher_keylen);
    if (rc != RC_OK)
        goto out;
    dir = g_str_has_prefix(args[1], "dir://") ? args[1] + 6 : args[1];
    rc = RC_FAIL;
    if (so.key_file || so.pwdfile) {
        if (!swtpm_key_opts_load(&so, cipher_keylen, &key))
            goto out;
        have_key = true;
    }

    /* 1. read and encode everything */
    db = open_image(args[0], NVRAMTDB_OPEN_READONLY, NULL, 0, NULL);
    if (!db)
        goto out;
    for (unsigned i = 0; i < SWTPM_NSTATES; i++) {
        char *name = g_strdup_printf("%s/%s", dev, swtpm_state_name(i));
        uint8_t *data = NULL;
        size_t len = 0;
        GError *err = NULL;
        int r = nvramtdb_read(db, name, &data, &len);

        g_free(name);
        if (r == -ENOENT && i != SWTPM_PERMALL)
            continue;
        if (r == -ENOENT) {
            error_msg("%s: no %s/permall on the image: no TPM state to export", args[0], dev);
            goto out;
        }
        if (r < 0) {
            lib_error(r);
            goto out;
        }
        blob[i] = swtpm_blob_encode(data, len, have_key ? &key : NULL, &err);
        if (data)
            OPENSSL_cleanse(data, len);
        free(data);
        if (!blob[i]) {
            error_msg("%s", err->message);
            g_error_free(err);
            goto out;
        }
    }
    nvramtdb_close(db);
    db = NULL;

    /* 2. the directory, locked as swtpm locks it */
    if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
        error_msg("%s: %s", dir, g_strerror(errno));
        goto out;
    }
    lock_path = g_strdup_printf("%s/.lock", dir);
    lock_fd = open(lock_path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0640);
    if (lock_fd < 0) {
        if (errno == ELOOP)
            error_msg("%s: is a symbolic link; refusing to follow it", lock_path);
        else
            error_msg("%s: %s", lock_path, g_strerror(errno));
        goto out;
    }
    {
        struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };

        if (fcntl(lock_fd, F_SETLK, &fl) < 0) {
            error_msg("%s: in use (a swtpm runs on it?): %s", dir, g_strerror(errno));
            goto out;
        }
    }
    for (unsigned i = 0; i < SWTPM_NSTATES; i++) {
        final[i] = g_strdup_printf("%s/tpm2-00.%s", dir, swtpm_state_name(i));
        if (!not_a_symlink(final[i]))
            goto out;
    }
    if (!force && access(final[SWTPM_PERMALL], F_OK) == 0) {
        error_msg("%s: exists (use --force to replace the state in %s)", final[SWTPM_PERMALL],
                  dir);
        goto out;
    }

    /* 3. temporary files, synced; then stale states go and renames follow */
    for (unsigned i = 0; i < SWTPM_NSTATES; i++)
        if (blob[i] && !write_private_temp(final[i], blob[i]->data, blob[i]->len, &tmp[i]))
            goto out;
    /* As for import: the old volatile and save states go first (synced),
     * so that no step pairs a permall with another TPM's volatile state. */
    for (unsigned i = SWTPM_VOLATILESTATE; i < SWTPM_NSTATES; i++) {
        if (unlink(final[i]) < 0 && errno != ENOENT) {
            error_msg("%s: %s", final[i], g_strerror(errno));
            goto out;
        }
    }
    if (sync_parent_dir(final[SWTPM_PERMALL]) != 0)
        goto out;
    for (unsigned i = 0; i < SWTPM_NSTATES; i++) {   /* permall first */
        if (tmp[i] && rename(tmp[i], final[i]) < 0) {
            error_msg("%s: cannot rename into place: %s", final[i], g_strerror(errno));
            goto out;
        }
        g_free(tmp[i]);
        tmp[i] = NULL;
    }
    if (sync_parent_dir(final[SWTPM_PERMALL]) != 0)
        goto out;
    printf("exported %s/* of %s to %s%s:", dev, args[0], dir, have_key ? " (encrypted)" : "");
    for (unsigned i = 0; i < SWTPM_NSTATES; i++)
        if (blob[i])
            printf(" tpm2-00.%s (%u bytes)", swtpm_state_name(i), blob[i]->len);
    printf("\n");
    rc = RC_OK;
out:
    nvramtdb_close(db);
    if (lock_fd >= 0)
        close(lock_fd);
    OPENSSL_cleanse(&key, sizeof key);     /* also after a failed load */
    for (unsigned i = 0; i < SWTPM_NSTATES; i++) {
        if (tmp[i]) {
            unlink(tmp[i]);
            g_free(tmp[i]);
        }
        g_free(final[i]);
        swtpm_state_free(blob[i]);  /* plain TPM state unless encrypted */
    }
    g_free(lock_path);
    swtpm_opts_free(&so);
    g_strfreev(args);
    return rc;
}
