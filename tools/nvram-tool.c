/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * nvram-tool.c — command-line front end of libnvramtdb: create images,
 * inspect them, and move blob values in and out.
 *
 * Only the public API (nvramtdb.h) is used, so the tool sees an image the
 * way any other program does.  Each command parses its own options with
 * GOption; usage errors exit 2, failures exit 1 with the library's message
 * (which names the image and the blob) on stderr.  The swtpm commands
 * are in nvram-tool-swtpm.c; nvram-tool.h is what the two files share.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <locale.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <json-glib/json-glib.h>
#include <openssl/crypto.h>

#include "nvramtdb.h"
#include "nvram-tool.h"

/* --force-share of the commands that only read; @verb starts its help. */
#define FORCE_SHARE_ENTRY(var, verb)                                    \
    { "force-share", 'U', 0, G_OPTION_ARG_NONE, &(var),                 \
      verb " an image in use by a writer (best effort)", NULL }

/* The running command, for message prefixes (NULL before dispatch). */
static const char *cmd_name;
/* While create builds an image under a temporary name, the library's
 * messages name that file: they are shown with the real name instead. */
static const char *msg_tmp_name, *msg_real_name;

/* ---- messages ----------------------------------------------------------- */

static void G_GNUC_PRINTF(1, 0) verror_msg(const char *fmt, va_list ap)
{
    fputs("nvram-tool: ", stderr);
    if (cmd_name)
        fprintf(stderr, "%s: ", cmd_name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void G_GNUC_PRINTF(1, 2) error_msg(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    verror_msg(fmt, ap);
    va_end(ap);
}

/* Report a usage error and return the usage exit status. */
int G_GNUC_PRINTF(1, 2) usage_error(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    verror_msg(fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try 'nvram-tool%s%s --help' for more information.\n",
            cmd_name ? " " : "", cmd_name ? cmd_name : "");
    return RC_USAGE;
}

/* Report a library failure (r < 0) with the library's own message. */
int lib_error(int r)
{
    const char *msg = nvramtdb_last_error();

    if (!msg || !*msg) {
        error_msg("%s", g_strerror(-r));
    } else if (msg_tmp_name && strstr(msg, msg_tmp_name)) {
        gchar **parts = g_strsplit(msg, msg_tmp_name, -1);
        gchar *fixed = g_strjoinv(msg_real_name, parts);

        error_msg("%s", fixed);
        g_free(fixed);
        g_strfreev(parts);
    } else {
        error_msg("%s", msg);
    }
    return RC_FAIL;
}

/* ---- argument helpers --------------------------------------------------- */

/*
 * Parse @argv (argv[0] is the command name) against @entries (may be NULL)
 * and collect between @nmin and @nmax non-option arguments into *args
 * (g_strfreev() it).  Returns RC_OK or RC_USAGE.  --help prints the
 * command's help and exits 0 (GOption's behaviour).
 */
int parse_options(const struct command *cmd, const GOptionEntry *entries,
                  int argc, char **argv, int nmin, int nmax, char ***args)
{
    gchar **rest = NULL;
    const GOptionEntry remaining[] = {
        { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &rest, NULL, NULL },
        OPT_END
    };
    GOptionContext *ctx;
    GError *err = NULL;
    int n, rc = RC_OK;

    ctx = g_option_context_new(cmd->params);
    g_option_context_set_summary(ctx, cmd->summary);
    if (cmd->details)
        g_option_context_set_description(ctx, cmd->details);
    if (entries)
        g_option_context_add_main_entries(ctx, entries, NULL);
    g_option_context_add_main_entries(ctx, remaining, NULL);

    if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
        rc = usage_error("%s", err->message);
        g_error_free(err);
        goto out;
    }
    n = rest ? (int)g_strv_length(rest) : 0;
    if (n < nmin)
        rc = usage_error("missing argument (usage: nvram-tool %s [OPTION…] %s)",
                         cmd->name, cmd->params);
    else if (n > nmax)
        rc = usage_error("unexpected argument '%s'", rest[nmax]);
out:
    g_option_context_free(ctx);
    if (rc == RC_OK && !rest)
        rest = g_new0(gchar *, 1);
    if (rc != RC_OK) {
        g_strfreev(rest);
        rest = NULL;
    }
    *args = rest;
    return rc;
}

/* Parse a size option; false (after a usage message) if it is not one. */
static bool parse_size_opt(const char *what, const char *text, uint64_t limit,
                           uint64_t *bytes)
{
    int r = nvramtdb_parse_size(text, bytes);

    if (r == 0 && *bytes <= limit)
        return true;
    if (r == -EINVAL)
        usage_error("%s: '%s' is not a size (examples: 4096, 256K, 1M)", what, text);
    else
        usage_error("%s: '%s' is too large", what, text);
    return false;
}

/* "1052672 bytes (1028 KiB)"; KiB rounded up like nvramtdb_get_totalsize_kb. */
static char *bytes_str(uint64_t n)
{
    return g_strdup_printf("%" PRIu64 " bytes (%" PRIu64 " KiB)", n, (n + 1023) / 1024);
}

static void format_uuid(const uint8_t u[16], char out[37])
{
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7],
             u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

/* Write all of @buf to @fd; 0 or an errno. */
static int write_all(int fd, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (n == 0)
            return EIO;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * Read all of @path ("-" = stdin) into *out.  Input longer than the largest
 * possible blob is refused early rather than buffered whole.
 */
static bool read_input(const char *path, GByteArray **out)
{
    bool is_stdin = strcmp(path, "-") == 0;
    int fd = is_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    const char *label = is_stdin ? "standard input" : path;
    GByteArray *buf;
    uint8_t chunk[65536];

    if (fd < 0) {
        error_msg("%s: %s", label, g_strerror(errno));
        return false;
    }
    buf = g_byte_array_new();
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            error_msg("%s: %s", label, g_strerror(errno));
            goto fail;
        }
        if (n == 0)
            break;
        if (buf->len + (size_t)n > NVRAMTDB_BLOB_MAX) {
            error_msg("%s: more than %u bytes, above the largest blob size",
                      label, NVRAMTDB_BLOB_MAX);
            goto fail;
        }
        g_byte_array_append(buf, chunk, (guint)n);
    }
    if (!is_stdin)
        close(fd);
    *out = buf;
    return true;
fail:
    if (!is_stdin)
        close(fd);
    g_byte_array_free(buf, TRUE);
    return false;
}

/* Print the JSON document built in @b on stdout. */
static void print_json(JsonBuilder *b)
{
    JsonNode *root = json_builder_get_root(b);
    JsonGenerator *gen = json_generator_new();
    gchar *text;

    json_generator_set_pretty(gen, TRUE);
    json_generator_set_root(gen, root);
    text = json_generator_to_data(gen, NULL);
    puts(text);
    g_free(text);
    g_object_unref(gen);
    json_node_unref(root);
}

/* ---- opening images ----------------------------------------------------- */

/* The image key (--key-file / --passphrase-file, taken by main() for
 * every command) and create's --encrypt. */
static const char *key_file, *passphrase_file;
static bool encrypt_opt;

/* Give @db the image key, if one was named; 0 or the library's error. */
int give_key(nvramtdb *db)
{
    if (!key_file && !passphrase_file)
        return 0;
    nvramtdb_key key = {
        .struct_size = sizeof key,
        .type = key_file ? NVRAMTDB_KEY_RAW : NVRAMTDB_KEY_PASSPHRASE,
        .path = key_file ? key_file : passphrase_file,
        .fd = -1,
    };
    return nvramtdb_set_key(db, &key);
}

/* Take the key options out of argv (they may come anywhere after the
 * command); RC_OK or RC_USAGE. */
static int take_key_options(const char *command, int *argc, char **argv)
{
    int out = 2;
    for (int i = 2; i < *argc; i++) {
        const char **dst = NULL;
        const char *arg = argv[i], *val = NULL;
        if (strcmp(arg, "--") == 0) {
            while (i < *argc)
                argv[out++] = argv[i++];
            break;
        }
        if (strcmp(arg, "--encrypt") == 0) {
            encrypt_opt = true;
            continue;
        }
        if (g_str_has_prefix(arg, "--key-file"))
            dst = &key_file, val = arg + strlen("--key-file");
        else if (g_str_has_prefix(arg, "--passphrase-file"))
            dst = &passphrase_file, val = arg + strlen("--passphrase-file");
        if (!dst || (*val && *val != '=')) {
            argv[out++] = argv[i];
            continue;
        }
        if (*val == '=') {
            val++;
        } else if (i + 1 < *argc) {
            val = argv[++i];
        } else {
            return usage_error("%s needs a FILE", arg);
        }
        if (!*val)
            return usage_error("%.*s needs a FILE", (int)strcspn(arg, "="), arg);
        *dst = val;
    }
    argv[out] = NULL;
    *argc = out;
    if (key_file && passphrase_file)
        return usage_error("give --key-file or --passphrase-file, not both");
    if (encrypt_opt && strcmp(command, "create") != 0)
        return usage_error("--encrypt is an option of create (an image is encrypted when it "
                           "is created)");
    if (encrypt_opt && !key_file && !passphrase_file)
        return usage_error("--encrypt needs --key-file=FILE or --passphrase-file=FILE");
    if (strcmp(command, "create") == 0 && !encrypt_opt && (key_file || passphrase_file))
        return usage_error("a key without --encrypt; add --encrypt to create an "
                           "encrypted image");
    return RC_OK;
}

/* The file behind an image argument ("file:PATH" or a plain path). */
const char *image_path(const char *uri)
{
    return g_str_has_prefix(uri, "file:") ? uri + 5 : uri;
}

bool image_is_export(const char *uri)
{
    return g_str_has_prefix(uri, "nbd:") || g_str_has_prefix(uri, "nbds:") ||
           g_str_has_prefix(uri, "nbd+") || g_str_has_prefix(uri, "nbds+");
}

/* Whether the export @uri already holds an image (read-only look; any
 * failure means "no": a writable start then formats a blank export or
 * refuses a damaged one with its own message). */
static bool export_holds_image(const char *uri)
{
    nvramtdb *db;

    if (nvramtdb_open(uri, NVRAMTDB_OPEN_READONLY, &db) < 0)
        return false;
    bool formatted = nvramtdb_start(db, 0) == 0;
    nvramtdb_close(db);
    return formatted;
}

/* An image argument for @path: plain unless it would read as a URI. */
static char *path_uri(const char *path)
{
    if (g_str_has_prefix(path, "file:") || g_str_has_prefix(path, "mem:"))
        return g_strconcat("file:", path, NULL);
    return g_strdup(path);
}

/*
 * Open @uri with @flags, register @blobs, set the image size unless
 * @image_size is NULL, and start.  On failure prints the library's message
 * and returns NULL.
 */
nvramtdb *open_image(const char *uri, unsigned flags,
                     const struct blob_spec *blobs, size_t nblobs,
                     const uint64_t *image_size)
{
    nvramtdb *db;
    int r;

    r = nvramtdb_open(uri, flags, &db);
    if (r < 0) {
        lib_error(r);
        return NULL;
    }
    r = give_key(db);
    if (r < 0)
        goto fail;
    for (size_t i = 0; i < nblobs; i++) {
        r = nvramtdb_register_blob(db, blobs[i].name, blobs[i].max_size);
        if (r < 0)
            goto fail;
    }
    if (image_size) {
        r = nvramtdb_set_image_size(db, *image_size);
        if (r < 0)
            goto fail;
    }
    r = nvramtdb_start(db, 0);
    if (r < 0)
        goto fail;
    return db;
fail:
    lib_error(r);  /* before close, which may replace the message */
    nvramtdb_close(db);
    return NULL;
}

/* Read-only commands: a shared lock, or none with --force-share. */
static nvramtdb *open_for_reading(const char *uri, gboolean force_share)
{
    return open_image(uri, NVRAMTDB_OPEN_READONLY | (force_share ? NVRAMTDB_OPEN_FORCE_SHARE : 0),
                      NULL, 0, NULL);
}

/*
 * The start of a command that only reads the image args[0]: parse @argv
 * (exactly @nargs arguments) against @entries, which hold *@force_share,
 * and open the image for reading.  RC_OK with *args and *db set, or the
 * exit status after a message, with nothing left to free.
 */
static int start_reading(const struct command *cmd, const GOptionEntry *entries,
                         const gboolean *force_share, int argc, char **argv, int nargs,
                         char ***args, nvramtdb **db)
{
    int rc = parse_options(cmd, entries, argc, argv, nargs, nargs, args);

    if (rc != RC_OK)
        return rc;
    *db = open_for_reading((*args)[0], *force_share);
    if (!*db) {
        g_strfreev(*args);
        *args = NULL;
        return RC_FAIL;
    }
    return RC_OK;
}

/* Close a handle that wrote; a failure here means the writes may be lost. */
int close_image(nvramtdb *db)
{
    int r = nvramtdb_close(db);

    return r < 0 ? lib_error(r) : RC_OK;
}

/* Write @value as @name's value, durable on return; false after a message. */
static bool write_durably(nvramtdb *db, const char *name, const GByteArray *value)
{
    int r = nvramtdb_write(db, name, value->data, value->len, NVRAMTDB_WAIT_COMPLETION,
                           NULL, NULL);

    if (r < 0)
        lib_error(r);
    return r >= 0;
}

/* Whether @name is on the image (with or without a value): 1, 0 or
 * -errno; *present (if not NULL) says whether it has a value. */
int find_entry(nvramtdb *db, const char *name, bool *present)
{
    nvramtdb_entry *entries = NULL;
    size_t count = 0;
    int r, found = 0;

    r = nvramtdb_list(db, sizeof(nvramtdb_entry), &entries, &count);
    if (r < 0)
        return r;
    if (present)
        *present = false;
    for (size_t i = 0; i < count && !found; i++) {
        found = strcmp(entries[i].name, name) == 0;
        if (found && present)
            *present = entries[i].present;
    }
    free(entries);
    return found;
}

/* Make a rename or creation in @path's directory durable. */
int sync_parent_dir(const char *path)
{
    char *dir = g_path_get_dirname(path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int err = 0;

    if (fd < 0 || (fsync(fd) < 0 && errno != EINVAL))
        err = errno;
    if (fd >= 0)
        close(fd);
    if (err)
        error_msg("%s: cannot sync directory: %s", dir, g_strerror(err));
    g_free(dir);
    return err;
}

/* ---- files that hold blob values ---------------------------------------- */

/*
 * Blob values are secrets (a TPM's seeds and keys).  A file that receives
 * them is written under a temporary name in its final directory with mode
 * 0600 whatever the umask, synced, and renamed into place: it is never
 * written through a symbolic link, and a failure leaves the old file.
 */

/* False, after a message naming @path, if @path is a symbolic link. */
bool not_a_symlink(const char *path)
{
    struct stat st;

    if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
        error_msg("%s: is a symbolic link; refusing to write TPM state through it", path);
        return false;
    }
    return true;
}

/* Write @data to a new file ".NAME.XXXXXX" next to @path, mode 0600,
 * synced; its name in *tmp.  False after a message, with nothing left. */
bool write_private_temp(const char *path, const uint8_t *data, size_t len, char **tmp)
{
    char *dir = g_path_get_dirname(path), *base = g_path_get_basename(path);
    int fd, err = 0;

    *tmp = g_strdup_printf("%s/.%s.XXXXXX", dir, base);
    g_free(dir);
    g_free(base);
    /* O_CREAT | O_EXCL: a name that exists, symbolic link or not, is never opened */
    fd = g_mkstemp_full(*tmp, O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
        error_msg("%s: %s", *tmp, g_strerror(errno));
        g_free(*tmp);
        *tmp = NULL;
        return false;
    }
    if (fchmod(fd, 0600) < 0)       /* exactly 0600, whatever the umask took away */
        err = errno;
    if (!err)
        err = write_all(fd, data, len);
    if (!err && fsync(fd) < 0)
        err = errno;
    if (close(fd) < 0 && !err)
        err = errno;
    if (err) {
        error_msg("%s: %s", *tmp, g_strerror(err));
        unlink(*tmp);
        g_free(*tmp);
        *tmp = NULL;
        return false;
    }
    return true;
}

/* ---- create ------------------------------------------------------------- */

static bool parse_blob_spec(const char *text, struct blob_spec *spec)
{
    const char *colon = strrchr(text, ':');
    uint64_t size;
    char *what;
    bool ok;

    if (!colon || colon == text) {
        usage_error("--blob: '%s' is not NAME:SIZE", text);
        return false;
    }
    what = g_strdup_printf("--blob %s", text);
    ok = parse_size_opt(what, colon + 1, UINT32_MAX, &size);
    g_free(what);
    if (!ok)
        return false;
    spec->name = g_strndup(text, (gsize)(colon - text));
    spec->max_size = (uint32_t)size;
    return true;
}

/*
 * The image is built under a temporary name when it replaces a file, so
 * that a failure leaves the old image intact, and renamed over it at the
 * end.  A new file is built in place and removed again on failure.
 */
static int cmd_create(const struct command *cmd, int argc, char **argv)
{
    gchar **blob_args = NULL, *size_arg = NULL, **args = NULL;
    gboolean force = FALSE;
    const GOptionEntry entries[] = {
        { "blob", 'b', 0, G_OPTION_ARG_STRING_ARRAY, &blob_args,
          "Register blob NAME with maximum size SIZE (repeatable)", "NAME:SIZE" },
        { "size", 's', 0, G_OPTION_ARG_STRING, &size_arg,
          "Make the image SIZE bytes (default: what the blobs need)", "SIZE" },
        { "force", 'f', 0, G_OPTION_ARG_NONE, &force,
          "Replace an existing image file", NULL },
        OPT_END
    };
    struct blob_spec *blobs = NULL;
    size_t nblobs = 0;
    uint64_t image_size = 0;
    const char *uri, *path;
    char *work_path = NULL, *work_uri = NULL, *size_text = NULL;
    bool is_mem, created = false, replace = false;
    nvramtdb *db = NULL;
    nvramtdb_info info = { .struct_size = sizeof info };
    struct stat st;
    int rc, r;

    rc = parse_options(cmd, entries, argc, argv, 1, 1, &args);
    if (rc != RC_OK)
        goto out;
    uri = args[0];
    if (!blob_args && !size_arg) {
        rc = usage_error("give at least one --blob NAME:SIZE or --size SIZE");
        goto out;
    }
    nblobs = blob_args ? g_strv_length(blob_args) : 0;
    blobs = g_new0(struct blob_spec, nblobs + 1);
    for (size_t i = 0; i < nblobs; i++) {
        if (!parse_blob_spec(blob_args[i], &blobs[i])) {
            rc = RC_USAGE;
            goto out;
        }
    }
    if (size_arg && !parse_size_opt("--size", size_arg, UINT64_MAX, &image_size)) {
        rc = RC_USAGE;
        goto out;
    }

    /* "mem:" computes the size without writing anything anywhere. */
    is_mem = g_str_has_prefix(uri, "mem:");
    path = image_path(uri);
    rc = RC_FAIL;
    if (is_mem) {
        work_uri = g_strdup(uri);
    } else if (image_is_export(uri)) {
        /* An export is formatted in place, like a block device; one that
         * already holds an image is only reconciled, with --force. */
        if (!force && export_holds_image(uri)) {
            error_msg("%s: the export already holds an nvramtdb image (use --force to "
                      "open it and reserve the blobs in it)", uri);
            goto out;
        }
        work_uri = g_strdup(uri);
    } else if (stat(path, &st) == 0) {
        if (!force) {
            error_msg("%s: file exists (use --force to replace it)", path);
            goto out;
        }
        if (S_ISBLK(st.st_mode)) {
            /* A device is used as it is: blank means formatted afresh. */
            work_uri = g_strdup(uri);
        } else if (S_ISREG(st.st_mode)) {
            int fd;

            /* Do not pull an image from under a running writer. */
            r = nvramtdb_open(uri, 0, &db);
            if (r == -EBUSY) {
                lib_error(r);
                goto out;
            }
            if (r == 0)
                nvramtdb_close(db);
            db = NULL;
            work_path = g_strdup_printf("%s.XXXXXX", path);
            fd = g_mkstemp(work_path);
            if (fd < 0) {
                error_msg("%s: %s", work_path, g_strerror(errno));
                goto out;
            }
            /* The library creates the file itself. */
            close(fd);
            unlink(work_path);
            work_uri = path_uri(work_path);
            replace = true;
            msg_tmp_name = work_path;
            msg_real_name = path;
        } else {
            error_msg("%s: not a regular file or block device", path);
            goto out;
        }
    } else if (errno != ENOENT) {
        error_msg("%s: %s", path, g_strerror(errno));
        goto out;
    } else {
        work_path = g_strdup(path);
        work_uri = path_uri(path);
    }
    created = work_path != NULL;

    db = open_image(work_uri, is_mem ? 0 : NVRAMTDB_OPEN_CREATE, blobs, nblobs,
                    size_arg ? &image_size : NULL);
    if (!db)
        goto out;
    r = nvramtdb_get_info(db, &info);
    if (r < 0) {
        lib_error(r);
        goto out;
    }
    r = nvramtdb_close(db);
    db = NULL;
    if (r < 0) {
        lib_error(r);
        goto out;
    }
    if (replace && rename(work_path, path) < 0) {
        error_msg("%s: cannot replace: %s", path, g_strerror(errno));
        goto out;
    }
    if (created) {
        created = false;  /* from here on the file is the result */
        if (sync_parent_dir(path) != 0)
            goto out;
    }
    size_text = bytes_str(info.image_size);
    /* For "mem:" nothing is created: only the size is of interest. */
    printf("%s%s%s %s, %" PRIu32 " blob%s\n", is_mem ? "" : "created ", is_mem ? uri : path,
           is_mem ? "" : ":", size_text, info.slots, info.slots == 1 ? "" : "s");
    rc = RC_OK;
out:
    if (db)
        nvramtdb_close(db);
    if (created)
        unlink(work_path);
    msg_tmp_name = msg_real_name = NULL;
    for (size_t i = 0; blobs && i < nblobs; i++)
        g_free(blobs[i].name);
    g_free(blobs);
    g_free(size_text);
    g_free(work_path);
    g_free(work_uri);
    g_strfreev(blob_args);
    g_free(size_arg);
    g_strfreev(args);
    return rc;
}

/* ---- info --------------------------------------------------------------- */

/* "none", or the cipher, the key's kind and whether it is loaded. */
static const char *encryption_str(const nvramtdb_info *info)
{
    static char buf[160];
    if (!(info->encryption & NVRAMTDB_INFO_ENCRYPTED))
        return "none";
    if (info->encryption & NVRAMTDB_INFO_PASSPHRASE)
        snprintf(buf, sizeof buf, "AES-256-GCM, passphrase (scrypt N=2^%u r=%u p=%u)%s",
                 info->scrypt_log2n, info->scrypt_r, info->scrypt_p,
                 info->encryption & NVRAMTDB_INFO_KEY_LOADED ? ", key verified" : ", no key given");
    else
        snprintf(buf, sizeof buf, "AES-256-GCM, key file%s",
                 info->encryption & NVRAMTDB_INFO_KEY_LOADED ? ", key verified" : ", no key given");
    return buf;
}

static void info_json(const char *image, const nvramtdb_info *info, const char *uuid,
                      uint64_t data_free)
{
    JsonBuilder *b = json_builder_new();

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "image");
    json_builder_add_string_value(b, image);
    json_builder_set_member_name(b, "format_version");
    json_builder_add_int_value(b, info->format_version);
    json_builder_set_member_name(b, "uuid");
    json_builder_add_string_value(b, uuid);
    json_builder_set_member_name(b, "image_size");
    json_builder_add_int_value(b, (gint64)info->image_size);
    json_builder_set_member_name(b, "data_capacity");
    json_builder_add_int_value(b, (gint64)info->data_capacity);
    json_builder_set_member_name(b, "data_used");
    json_builder_add_int_value(b, (gint64)info->data_used);
    json_builder_set_member_name(b, "data_free");
    json_builder_add_int_value(b, (gint64)data_free);
    json_builder_set_member_name(b, "reserved_bytes");
    json_builder_add_int_value(b, (gint64)info->reserved_bytes);
    json_builder_set_member_name(b, "value_bytes");
    json_builder_add_int_value(b, (gint64)info->value_bytes);
    json_builder_set_member_name(b, "entries");
    json_builder_add_int_value(b, info->entries);
    json_builder_set_member_name(b, "slots");
    json_builder_add_int_value(b, info->slots);
    json_builder_set_member_name(b, "encrypted");
    json_builder_add_boolean_value(b, info->encryption & NVRAMTDB_INFO_ENCRYPTED);
    json_builder_set_member_name(b, "encryption");
    json_builder_add_string_value(b, encryption_str(info));
    json_builder_end_object(b);
    print_json(b);
    g_object_unref(b);
}

static void info_text(const char *image, const nvramtdb_info *info, const char *uuid,
                      uint64_t data_free)
{
    static const char *const labels[] = {
        "image size", "data capacity", "data used", "data free",
        "reserved bytes", "value bytes",
    };
    const uint64_t values[] = {
        info->image_size, info->data_capacity, info->data_used, data_free,
        info->reserved_bytes, info->value_bytes,
    };

    printf("%-16s%s\n", "image:", image);
    printf("%-16s%" PRIu32 "\n", "format version:", info->format_version);
    printf("%-16s%s\n", "uuid:", uuid);
    for (size_t i = 0; i < G_N_ELEMENTS(labels); i++) {
        char *label = g_strconcat(labels[i], ":", NULL);
        char *text = bytes_str(values[i]);

        printf("%-16s%s\n", label, text);
        g_free(text);
        g_free(label);
    }
    printf("%-16s%" PRIu32 "\n", "entries:", info->entries);
    printf("%-16s%" PRIu32 "\n", "slots:", info->slots);
    printf("%-16s%s\n", "encryption:", encryption_str(info));
}

static int cmd_info(const struct command *cmd, int argc, char **argv)
{
    gboolean json = FALSE, force_share = FALSE;
    const GOptionEntry entries[] = {
        { "json", 'j', 0, G_OPTION_ARG_NONE, &json, "Print a JSON object", NULL },
        FORCE_SHARE_ENTRY(force_share, "Inspect"),
        OPT_END
    };
    gchar **args = NULL;
    nvramtdb *db = NULL;
    nvramtdb_info info = { .struct_size = sizeof info };
    char uuid[37];
    uint64_t data_free;
    int rc, r;

    rc = start_reading(cmd, entries, &force_share, argc, argv, 1, &args, &db);
    if (rc != RC_OK)
        return rc;
    rc = RC_FAIL;
    r = nvramtdb_get_info(db, &info);
    if (r < 0) {
        lib_error(r);
        goto out;
    }
    format_uuid(info.uuid, uuid);
    data_free = info.data_capacity > info.data_used ? info.data_capacity - info.data_used : 0;
    if (json)
        info_json(args[0], &info, uuid, data_free);
    else
        info_text(args[0], &info, uuid, data_free);
    rc = RC_OK;
out:
    nvramtdb_close(db);
    g_strfreev(args);
    return rc;
}

/* ---- list --------------------------------------------------------------- */

static void list_json(const nvramtdb_entry *e, size_t count, bool all)
{
    JsonBuilder *b = json_builder_new();

    json_builder_begin_array(b);
    for (size_t i = 0; i < count; i++) {
        char crc[9];

        if (!e[i].present && !all)
            continue;
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "name");
        json_builder_add_string_value(b, e[i].name);
        json_builder_set_member_name(b, "size");
        json_builder_add_int_value(b, e[i].size);
        json_builder_set_member_name(b, "max_size");
        json_builder_add_int_value(b, e[i].max_size);
        json_builder_set_member_name(b, "generation");
        json_builder_add_int_value(b, (gint64)e[i].generation);
        json_builder_set_member_name(b, "crc32c");
        if (e[i].present) {
            snprintf(crc, sizeof crc, "%08" PRIx32, e[i].crc32c);
            json_builder_add_string_value(b, crc);
        } else {
            json_builder_add_null_value(b);
        }
        json_builder_set_member_name(b, "present");
        json_builder_add_boolean_value(b, e[i].present);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    print_json(b);
    g_object_unref(b);
}

enum { COL_NAME, COL_SIZE, COL_MAX, COL_GEN, COL_CRC, NCOLS };

static void list_text(const nvramtdb_entry *e, size_t count, bool all)
{
    static const char *const heads[NCOLS] = { "NAME", "SIZE", "MAX", "GENERATION", "CRC32C" };
    GPtrArray *cells = g_ptr_array_new_with_free_func(g_free);
    int width[NCOLS];
    size_t rows = 0;

    /* Format every cell first: the columns are as wide as their contents. */
    for (int c = 0; c < NCOLS; c++)
        width[c] = (int)strlen(heads[c]);
    for (size_t i = 0; i < count; i++) {
        if (!e[i].present && !all)
            continue;
        g_ptr_array_add(cells, g_strdup(e[i].name));
        g_ptr_array_add(cells, e[i].present ? g_strdup_printf("%" PRIu32, e[i].size)
                                            : g_strdup("-"));
        g_ptr_array_add(cells, g_strdup_printf("%" PRIu32, e[i].max_size));
        g_ptr_array_add(cells, g_strdup_printf("%" PRIu64, e[i].generation));
        g_ptr_array_add(cells, e[i].present ? g_strdup_printf("%08" PRIx32, e[i].crc32c)
                                            : g_strdup("-"));
        for (int c = 0; c < NCOLS; c++) {
            int len = (int)strlen(cells->pdata[rows * NCOLS + (size_t)c]);

            width[c] = MAX(width[c], len);
        }
        rows++;
    }

    printf("%-*s  %*s  %*s  %*s  %s\n", width[COL_NAME], heads[COL_NAME],
           width[COL_SIZE], heads[COL_SIZE], width[COL_MAX], heads[COL_MAX],
           width[COL_GEN], heads[COL_GEN], heads[COL_CRC]);
    for (size_t i = 0, row = 0; i < count; i++) {
        char **cell;

        if (!e[i].present && !all)
            continue;
        cell = (char **)&cells->pdata[row++ * NCOLS];
        printf("%-*s  %*s  %*s  %*s  %-*s%s\n", width[COL_NAME], cell[COL_NAME],
               width[COL_SIZE], cell[COL_SIZE], width[COL_MAX], cell[COL_MAX],
               width[COL_GEN], cell[COL_GEN], width[COL_CRC], cell[COL_CRC],
               e[i].present ? "" : "  (reserved, no value)");
    }
    g_ptr_array_free(cells, TRUE);
}

static int cmd_list(const struct command *cmd, int argc, char **argv)
{
    gboolean json = FALSE, all = FALSE, force_share = FALSE;
    const GOptionEntry entries[] = {
        { "json", 'j', 0, G_OPTION_ARG_NONE, &json, "Print a JSON array", NULL },
        { "all", 'a', 0, G_OPTION_ARG_NONE, &all,
          "Also show blobs that have space reserved but no value", NULL },
        FORCE_SHARE_ENTRY(force_share, "Inspect"),
        OPT_END
    };
    gchar **args = NULL;
    nvramtdb *db;
    nvramtdb_entry *list = NULL;
    size_t count = 0;
    int rc, r;

    rc = start_reading(cmd, entries, &force_share, argc, argv, 1, &args, &db);
    if (rc != RC_OK)
        return rc;
    rc = RC_FAIL;
    r = nvramtdb_list(db, sizeof(nvramtdb_entry), &list, &count);
    if (r < 0) {
        lib_error(r);
        goto out;
    }
    if (json)
        list_json(list, count, all);
    else
        list_text(list, count, all);
    rc = RC_OK;
out:
    free(list);
    nvramtdb_close(db);
    g_strfreev(args);
    return rc;
}

/* ---- dump --------------------------------------------------------------- */

static bool same_file(const char *a, const char *b)
{
    struct stat sa, sb;

    return stat(a, &sa) == 0 && stat(b, &sb) == 0 &&
           sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* Write a FIFO or device (/dev/null) as it is: nothing is created. */
static bool write_in_place(const char *path, const uint8_t *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC), err = 0;
    struct stat st;

    if (fd < 0) {
        error_msg("%s: %s", path, g_strerror(errno));
        return false;
    }
    if (fstat(fd, &st) < 0)
        err = errno;
    else if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))
        err = EAGAIN;               /* replaced since lstat(): not ours to write into */
    if (!err)
        err = write_all(fd, data, len);
    if (close(fd) < 0 && !err)
        err = errno;
    if (err)
        error_msg("%s: %s", path, g_strerror(err));
    return !err;
}

/* Write @len bytes to @path: a new file, or one replacing an existing
 * regular file atomically (mode 0600, never through a symbolic link); an
 * existing FIFO or device is written as it is.  On error a regular file
 * is left as it was. */
static bool write_output(const char *path, const uint8_t *data, size_t len)
{
    struct stat st;
    char *tmp = NULL;

    if (lstat(path, &st) == 0) {
        if (!not_a_symlink(path))
            return false;
        if (S_ISDIR(st.st_mode)) {
            error_msg("%s: is a directory", path);
            return false;
        }
        if (!S_ISREG(st.st_mode))
            return write_in_place(path, data, len);
    } else if (errno != ENOENT) {
        error_msg("%s: %s", path, g_strerror(errno));
        return false;
    }
    if (!write_private_temp(path, data, len, &tmp))
        return false;
    if (rename(tmp, path) < 0) {     /* rename() replaces a link, never follows it */
        error_msg("%s: cannot rename into place: %s", path, g_strerror(errno));
        unlink(tmp);
        g_free(tmp);
        return false;
    }
    g_free(tmp);
    return sync_parent_dir(path) == 0;
}

static int cmd_dump(const struct command *cmd, int argc, char **argv)
{
    gchar *output = NULL, **args = NULL;
    gboolean force = FALSE, force_share = FALSE;
    const GOptionEntry entries[] = {
        { "output", 'o', 0, G_OPTION_ARG_FILENAME, &output,
          "Write to FILE instead of standard output", "FILE" },
        { "force", 'f', 0, G_OPTION_ARG_NONE, &force,
          "Write binary data even to a terminal", NULL },
        FORCE_SHARE_ENTRY(force_share, "Read"),
        OPT_END
    };
    nvramtdb *db = NULL;
    uint8_t *data = NULL;
    size_t len = 0;
    bool to_stdout;
    int rc, r;

    rc = parse_options(cmd, entries, argc, argv, 2, 2, &args);
    if (rc != RC_OK)
        goto out;
    rc = RC_FAIL;
    to_stdout = !output || strcmp(output, "-") == 0;
    if (to_stdout && !force && isatty(STDOUT_FILENO)) {
        error_msg("refusing to write binary data to a terminal (use -o FILE or --force)");
        goto out;
    }
    if (!to_stdout && !image_is_export(args[0]) && same_file(output, image_path(args[0]))) {
        error_msg("%s: the output file is the image", output);
        goto out;
    }
    db = open_for_reading(args[0], force_share);
    if (!db)
        goto out;
    /* Read before touching the output: a bad blob leaves it alone. */
    r = nvramtdb_read(db, args[1], &data, &len);
    if (r < 0) {
        lib_error(r);
        goto out;
    }
    if (to_stdout) {
        r = write_all(STDOUT_FILENO, data, len);
        if (r) {
            error_msg("standard output: %s", g_strerror(r));
            goto out;
        }
    } else if (!write_output(output, data, len)) {
        goto out;
    }
    rc = RC_OK;
out:
    if (data)
        OPENSSL_cleanse(data, len);
    free(data);
    nvramtdb_close(db);
    g_free(output);
    g_strfreev(args);
    return rc;
}

/* ---- import ------------------------------------------------------------- */

static int cmd_import(const struct command *cmd, int argc, char **argv)
{
    gchar *max_arg = NULL, **args = NULL;
    const GOptionEntry entries[] = {
        { "max", 'm', 0, G_OPTION_ARG_STRING, &max_arg,
          "Register ENTRY with maximum size SIZE (adds it if new)", "SIZE" },
        OPT_END
    };
    struct blob_spec spec = { NULL, 0 };
    GByteArray *value = NULL;
    nvramtdb *db = NULL;
    uint64_t max = 0;
    int rc, r;

    rc = parse_options(cmd, entries, argc, argv, 3, 3, &args);
    if (rc != RC_OK)
        goto out;
    if (max_arg && !parse_size_opt("--max", max_arg, UINT32_MAX, &max)) {
        rc = RC_USAGE;
        goto out;
    }
    rc = RC_FAIL;
    /* Read the whole input before the image is locked and changed. */
    if (!read_input(args[2], &value))
        goto out;
    if (max_arg && value->len > max) {
        /* Registering first would reserve space for a value never written. */
        error_msg("%s: %s is %u bytes, more than --max %" PRIu64,
                  args[1], strcmp(args[2], "-") ? args[2] : "standard input",
                  value->len, max);
        goto out;
    }
    spec.name = args[1];
    spec.max_size = (uint32_t)max;
    db = open_image(args[0], 0, &spec, max_arg ? 1 : 0, NULL);
    if (!db)
        goto out;
    if (!max_arg) {
        r = find_entry(db, args[1], NULL);
        if (r < 0) {
            lib_error(r);
            goto out;
        }
        if (r == 0) {
            error_msg("%s: %s: no such blob on the image; pass --max SIZE to add it",
                      args[0], args[1]);
            goto out;
        }
    }
    if (!write_durably(db, args[1], value))
        goto out;
    rc = close_image(db);
    db = NULL;
out:
    nvramtdb_close(db);
    if (value)
        g_byte_array_free(value, TRUE);
    g_free(max_arg);
    g_strfreev(args);
    return rc;
}

/* ---- delete ------------------------------------------------------------- */

static int cmd_delete(const struct command *cmd, int argc, char **argv)
{
    gchar **args = NULL;
    nvramtdb *db;
    int rc, r;

    rc = parse_options(cmd, NULL, argc, argv, 2, 2, &args);
    if (rc != RC_OK)
        return rc;
    rc = RC_FAIL;
    db = open_image(args[0], 0, NULL, 0, NULL);
    if (!db)
        goto out;
    r = nvramtdb_delete(db, args[1], NVRAMTDB_WAIT_COMPLETION, NULL, NULL);
    if (r < 0) {
        lib_error(r);
        nvramtdb_close(db);
        goto out;
    }
    rc = close_image(db);
out:
    g_strfreev(args);
    return rc;
}

/* ---- check -------------------------------------------------------------- */

static void report_problem(void *opaque, const char *problem)
{
    (void)opaque;
    printf("%s\n", problem);
}

static int cmd_rekey(const struct command *cmd, int argc, char **argv)
{
    gchar *new_key = NULL, *new_pass = NULL, **args = NULL;
    const GOptionEntry entries[] = {
        { "new-key-file", 0, 0, G_OPTION_ARG_FILENAME, &new_key,
          "The new key: 32 raw bytes or 64 hexadecimal digits", "FILE" },
        { "new-passphrase-file", 0, 0, G_OPTION_ARG_FILENAME, &new_pass,
          "The new passphrase (scrypt)", "FILE" },
        OPT_END
    };
    nvramtdb *db;
    int rc, r;

    rc = parse_options(cmd, entries, argc, argv, 1, 1, &args);
    if (rc != RC_OK)
        goto out;
    if (!new_key == !new_pass) {
        rc = usage_error("give --new-key-file=FILE or --new-passphrase-file=FILE");
        goto out;
    }
    if (!key_file && !passphrase_file) {
        rc = usage_error("give the current key with --key-file or --passphrase-file");
        goto out;
    }
    rc = RC_FAIL;
    db = open_image(args[0], 0, NULL, 0, NULL);
    if (!db)
        goto out;
    nvramtdb_key key = {
        .struct_size = sizeof key,
        .type = new_key ? NVRAMTDB_KEY_RAW : NVRAMTDB_KEY_PASSPHRASE,
        .path = new_key ? new_key : new_pass,
        .fd = -1,
    };
    r = nvramtdb_rekey(db, &key);
    if (r < 0) {
        lib_error(r);
        nvramtdb_close(db);
        goto out;
    }
    rc = close_image(db);
    if (rc == RC_OK)
        printf("%s: every value re-encrypted under the new key\n", args[0]);
out:
    g_free(new_key);
    g_free(new_pass);
    g_strfreev(args);
    return rc;
}

/* Take an NBD export's image over from a writer that died without
 * releasing it: open with NVRAMTDB_OPEN_TAKEOVER (which recovers the
 * journal and claims the image), check, close (which releases it). */
static int cmd_takeover(const struct command *cmd, int argc, char **argv)
{
    gchar **args = NULL;
    int rc = parse_options(cmd, NULL, argc, argv, 1, 1, &args);

    if (rc != RC_OK)
        return rc;
    if (!image_is_export(args[0])) {
        error_msg("%s: not an NBD export: a local image is protected by its lock, and a "
                  "dead writer's lock is gone with it", args[0]);
        g_strfreev(args);
        return RC_FAIL;
    }
    nvramtdb *db = open_image(args[0], NVRAMTDB_OPEN_TAKEOVER, NULL, 0, NULL);
    if (!db) {
        g_strfreev(args);
        return RC_FAIL;
    }
    int r = nvramtdb_check(db, report_problem, NULL);
    if (r < 0)
        lib_error(r);
    rc = close_image(db);
    if (rc == RC_OK && r == 0)
        printf("%s: taken over and released: the next writer may open it\n", args[0]);
    else if (r > 0)
        printf("%s: taken over and released, but check found %d problem%s\n", args[0], r,
               r == 1 ? "" : "s");
    g_strfreev(args);
    return rc == RC_OK && r == 0 ? RC_OK : RC_FAIL;
}

static int cmd_check(const struct command *cmd, int argc, char **argv)
{
    gboolean force_share = FALSE;
    const GOptionEntry entries[] = {
        FORCE_SHARE_ENTRY(force_share, "Check"),
        OPT_END
    };
    gchar **args = NULL;
    nvramtdb *db;
    nvramtdb_info info = { .struct_size = sizeof info };
    int rc, r;

    rc = start_reading(cmd, entries, &force_share, argc, argv, 1, &args, &db);
    if (rc != RC_OK)
        return rc;
    r = nvramtdb_check(db, report_problem, NULL);
    if (r < 0)
        lib_error(r);
    else if (r > 0)
        printf("%s: %d problem%s\n", args[0], r, r == 1 ? "" : "s");
    else if (!nvramtdb_get_info(db, &info) && (info.encryption & NVRAMTDB_INFO_ENCRYPTED) &&
             !(info.encryption & NVRAMTDB_INFO_KEY_LOADED))
        printf("%s: ok (structure only: encrypted, no key given, tags not verified)\n",
               args[0]);
    else
        printf("%s: ok\n", args[0]);
    rc = r == 0 ? RC_OK : RC_FAIL;
    nvramtdb_close(db);
    g_strfreev(args);
    return rc;
}

/* ---- export-tdb, import-tdb (standalone tdb files) ---------------------- */

static int cmd_export_tdb(const struct command *cmd, int argc, char **argv)
{
    gboolean force_share = FALSE;
    const GOptionEntry entries[] = {
        FORCE_SHARE_ENTRY(force_share, "Export"),
        OPT_END
    };
    gchar **args = NULL;
    nvramtdb *db;
    int rc, r;

    rc = start_reading(cmd, entries, &force_share, argc, argv, 2, &args, &db);
    if (rc != RC_OK)
        return rc;
    r = nvramtdb_export_tdb(db, args[1]);
    rc = r < 0 ? lib_error(r) : RC_OK;
    nvramtdb_close(db);
    g_strfreev(args);
    return rc;
}

static int cmd_import_tdb(const struct command *cmd, int argc, char **argv)
{
    gboolean create = FALSE;
    const GOptionEntry entries[] = {
        { "create", 'c', 0, G_OPTION_ARG_NONE, &create,
          "Create IMAGE if it does not exist, sized for the file's blobs", NULL },
        OPT_END
    };
    gchar **args = NULL;
    nvramtdb *db = NULL;
    bool created = false;
    int rc, r;

    rc = parse_options(cmd, entries, argc, argv, 2, 2, &args);
    if (rc != RC_OK)
        return rc;
    rc = RC_FAIL;
    created = create && !image_is_export(args[0]) &&
              !g_file_test(image_path(args[0]), G_FILE_TEST_EXISTS);
    r = nvramtdb_open(args[0], create ? NVRAMTDB_OPEN_CREATE : 0, &db);
    if (r < 0) {
        lib_error(r);
        goto out;
    }
    r = give_key(db);
    if (r < 0) {
        lib_error(r);
        nvramtdb_close(db);
        goto out;
    }
    /* Register the file's blobs so that start reserves their space, then
     * write the values as one group. */
    r = nvramtdb_import_tdb(db, args[1], NVRAMTDB_IMPORT_REGISTER);
    if (r >= 0)
        r = nvramtdb_start(db, 0);
    if (r >= 0)
        r = nvramtdb_import_tdb(db, args[1], 0);
    if (r < 0) {
        lib_error(r);
        nvramtdb_close(db);
        if (created)
            unlink(image_path(args[0]));
        goto out;
    }
    rc = close_image(db);
    if (rc == RC_OK)
        printf("%s: %d blob value%s imported from %s\n", args[0], r, r == 1 ? "" : "s",
               args[1]);
out:
    g_strfreev(args);
    return rc;
}

/* ---- help and dispatch -------------------------------------------------- */

static int cmd_help(const struct command *cmd, int argc, char **argv);

static const struct command commands[] = {
    { "create", "IMAGE", "Create an image file for a set of blobs",
      "SIZE takes the suffixes K, M and G (binary units: 1K = 1024).\n"
      "An existing IMAGE is only replaced with --force; it is rebuilt under a\n"
      "temporary name and renamed over the old one.  IMAGE \"mem:\" only\n"
      "computes the size.",
      cmd_create },
    { "info", "IMAGE", "Show facts about an image: version, UUID, sizes, space use",
      NULL, cmd_info },
    { "list", "IMAGE", "List the blobs on an image", NULL, cmd_list },
    { "dump", "IMAGE ENTRY", "Write a blob's value (raw bytes) to a file or standard output",
      "A value whose checksum does not match is an error: no bytes are written.\n"
      "FILE (-o) is written as a new file, mode 0600, and renamed into place: an\n"
      "existing file is replaced, a symbolic link is refused.",
      cmd_dump },
    { "import", "IMAGE ENTRY FILE", "Write the contents of FILE (\"-\" for standard input) as a blob's value",
      "Without --max, ENTRY must already be on the image.  The write is durable\n"
      "when the command returns; a value above the blob's maximum size is\n"
      "refused and the image is not changed.",
      cmd_import },
    { "delete", "IMAGE ENTRY", "Delete a blob's value",
      "nvram-tool registers no blobs, so the blob leaves the image with its\n"
      "reserved space; a program that registers it reserves the space again\n"
      "when it starts.", cmd_delete },
    { "rekey", "IMAGE", "Re-encrypt every value of an encrypted image under a new key",
      "Give the current key with --key-file or --passphrase-file and the new one\n"
      "with --new-key-file or --new-passphrase-file.  Every value is rewritten as\n"
      "one atomic batch: after a crash the image opens with the old key or with\n"
      "the new one, never with a mix.", cmd_rekey },
    { "check", "IMAGE", "Verify an image: superblocks, tdb structure, record checksums",
      "Each problem is printed on standard output; the exit status is 1 if\n"
      "any was found.", cmd_check },
    { "export-tdb", "IMAGE FILE", "Write every blob record to a new standalone tdb file",
      "FILE is an ordinary tdb that Samba's tdbdump and tdbtool open: one record\n"
      "per blob, keyed by its name, the value the image's record (32-byte header,\n"
      "then the payload; see docs/FORMAT.md).  FILE must not exist; it is written\n"
      "in one transaction and synced, and removed if anything fails.",
      cmd_export_tdb },
    { "import-tdb", "IMAGE FILE", "Write the blobs of a tdb file made by export-tdb into an image",
      "Every record of FILE is checked (key, header and payload checksums) before\n"
      "anything is written; a damaged file leaves the image unchanged.  The\n"
      "file's blobs are registered with the maxima their records carry (space\n"
      "is reserved on IMAGE if missing), then every value is written as one\n"
      "atomic, durable group.  Records without a value are not written.",
      cmd_import_tdb },
    { "import-swtpm", "IMAGE DIR|file://PATH",
      "Import a swtpm TPM 2 state (directory or linear file) into an image",
      "Reads tpm2-00.permall, tpm2-00.volatilestate and tpm2-00.savestate of a\n"
      "swtpm state directory (or the sections of a swtpm linear file, file://PATH)\n"
      "and stores them as ID/permall, ID/volatilestate (and ID/savestate) of the\n"
      "device ID (--device, default tpm0), with the maxima nvram-tpmd registers\n"
      "(212992 and 65536 bytes).  Encrypted state needs its key: --key FILE\n"
      "(--key-format hex|binary) or --pwdfile FILE\n"
      "(--kdf pbkdf2|sha512), as given to swtpm --key.  Every file is read, checked\n"
      "and decrypted before the image is opened: a malformed file, a bad HMAC or a\n"
      "wrong key leaves the image unchanged.  A volatile state the source lacks is\n"
      "deleted from the image.  Run it while no nvram-tpmd uses the image.",
      cmd_import_swtpm },
    { "export-swtpm", "IMAGE DIR",
      "Write an image's TPM state as a swtpm state directory",
      "Writes DIR/tpm2-00.permall (and volatilestate, savestate when the image\n"
      "has them) in swtpm's format, encrypted with --key FILE or --pwdfile FILE\n"
      "(--cipher aes-128-cbc|aes-256-cbc), for 'swtpm socket --tpm2 --tpmstate\n"
      "dir=DIR' (with the same --key).  Each file is written under a temporary\n"
      "name (mode 0600), synced and renamed into place; DIR is created if needed\n"
      "and locked as swtpm locks it.  Symbolic links at DIR/.lock or at the state\n"
      "files are refused.  An existing state in DIR is only replaced with --force.",
      cmd_export_swtpm },
    { "takeover", "IMAGE", "Take an NBD export's image over from a dead writer",
      "An image on an NBD export names its writer in an ownership record (host,\n"
      "pid, time); other writers are refused while it is held.  When that writer\n"
      "died without closing the image on another host (on this host a dead\n"
      "writer is recognised by itself), takeover replays its journal, claims\n"
      "the image, checks it and releases it.  Make sure the writer is really\n"
      "dead (its host is down or its process gone): two writers of one image\n"
      "destroy it.  See docs/NBD.md.", cmd_takeover },
    { "help", "[COMMAND]", "Show help on nvram-tool or on one command", NULL, cmd_help },
};

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < G_N_ELEMENTS(commands); i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static void print_usage(FILE *out)
{
    fprintf(out,
            "Usage: nvram-tool COMMAND [OPTION…] ARGS…\n"
            "\n"
            "Create, inspect and change nvramtdb images of device NVRAM blobs.\n"
            "\n"
            "Commands:\n");
    for (size_t i = 0; i < G_N_ELEMENTS(commands); i++)
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(out,
            "\n"
            "Options:\n"
            "  -h, --help     Show this help\n"
            "  -V, --version  Show the version\n"
            "\n"
            "Every command takes the key of an encrypted image (never on the command line):\n"
            "  --key-file=FILE         32 raw bytes or 64 hexadecimal digits\n"
            "  --passphrase-file=FILE  a passphrase (scrypt); one trailing newline ignored\n"
            "  create --encrypt        create the image encrypted with that key\n"
            "\n"
            "Run 'nvram-tool COMMAND --help' for the options of a command.\n");
}

/* "help COMMAND" is turned into "COMMAND --help" by main(). */
static int cmd_help(const struct command *cmd, int argc, char **argv)
{
    gchar **args = NULL;
    int rc;

    rc = parse_options(cmd, NULL, argc, argv, 0, 0, &args);
    if (rc == RC_OK)
        print_usage(stdout);
    g_strfreev(args);
    return rc;
}

int main(int argc, char **argv)
{
    char *help_argv[] = { NULL, NULL, (char *)"--help", NULL };
    const struct command *cmd;
    char *prgname;
    int rc;

    setlocale(LC_ALL, "");
    if (argc < 2)
        return usage_error("missing command");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        print_usage(stdout);
        return RC_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
        printf("nvram-tool (nvramtdb) %s\n", nvramtdb_version());
        return RC_OK;
    }
    if (argv[1][0] == '-')
        return usage_error("unknown option '%s' (options follow the command)", argv[1]);
    cmd = find_command(argv[1]);
    if (!cmd)
        return usage_error("unknown command '%s'", argv[1]);
    cmd_name = cmd->name;
    rc = take_key_options(cmd->name, &argc, argv);
    if (rc != RC_OK)
        return rc;
    if (cmd->fn == cmd_help && argc >= 3 && argv[2][0] != '-') {
        cmd = find_command(argv[2]);
        if (!cmd)
            return usage_error("unknown command '%s'", argv[2]);
        if (argc > 3)
            return usage_error("unexpected argument '%s'", argv[3]);
        cmd_name = cmd->name;
        help_argv[1] = argv[2];
        argc = 3;
        argv = help_argv;
    }

    /* GOption's usage line reads "nvram-tool COMMAND [OPTION…] ARGS"; the
     * program name is set once, before any parsing. */
    prgname = g_strconcat("nvram-tool ", cmd->name, NULL);
    g_set_prgname(prgname);
    g_free(prgname);
    rc = cmd->fn(cmd, argc - 1, argv + 1);

    if (fflush(stdout) != 0 || ferror(stdout)) {
        error_msg("standard output: %s", g_strerror(errno));
        rc = RC_FAIL;
    }
    return rc;
}
