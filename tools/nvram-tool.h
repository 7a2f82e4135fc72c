/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * nvram-tool.h — what nvram-tool's command files share: the command
 * table's entry, exit statuses, messages, option parsing, opening images
 * and writing files that hold TPM state.  nvram-tool.c defines these and
 * the general commands; nvram-tool-swtpm.c the swtpm commands.
 */
#ifndef NVRAM_TOOL_H
#define NVRAM_TOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

#include "nvramtdb.h"

enum { RC_OK = 0, RC_FAIL = 1, RC_USAGE = 2 };

#define OPT_END { NULL, 0, 0, G_OPTION_ARG_NONE, NULL, NULL, NULL }

struct command;
typedef int command_fn(const struct command *cmd, int argc, char **argv);

struct command {
    const char *name;
    const char *params;   /* arguments, for the usage line */
    const char *summary;
    const char *details;  /* shown after the options by --help */
    command_fn *fn;
};

/* A blob to register when an image is opened. */
struct blob_spec {
    char *name;
    uint32_t max_size;
};

/* "nvram-tool: COMMAND: MESSAGE" on stderr. */
void G_GNUC_PRINTF(1, 2) error_msg(const char *fmt, ...);
/* Report a usage error and return the usage exit status. */
int G_GNUC_PRINTF(1, 2) usage_error(const char *fmt, ...);
/* Report a library failure (r < 0) with the library's own message;
 * returns RC_FAIL. */
int lib_error(int r);

/*
 * Parse @argv (argv[0] is the command name) against @entries (may be NULL)
 * and collect between @nmin and @nmax non-option arguments into *args
 * (g_strfreev() it).  Returns RC_OK or RC_USAGE.
 */
int parse_options(const struct command *cmd, const GOptionEntry *entries, int argc, char **argv,
                  int nmin, int nmax, char ***args);

/* The file behind an image argument ("file:PATH" or a plain path). */
const char *image_path(const char *uri);
/* Whether @uri names an NBD export (nbd://, nbd+unix://, nbds://...): no
 * local file to create, stat or remove. */
bool image_is_export(const char *uri);
/* Open @uri with @flags, register @blobs, set the image size unless
 * @image_size is NULL, and start; NULL after the library's message. */
nvramtdb *open_image(const char *uri, unsigned flags, const struct blob_spec *blobs,
                     size_t nblobs, const uint64_t *image_size);
/* Close a handle that wrote; a failure here means the writes may be lost. */
int close_image(nvramtdb *db);
/* Give @db the image key named by --key-file/--passphrase-file, if any
 * (before start); 0 or the library's negative errno. */
int give_key(nvramtdb *db);
/* Whether @name is on the image (with or without a value): 1, 0 or
 * -errno; *present (if not NULL) says whether it has a value. */
int find_entry(nvramtdb *db, const char *name, bool *present);

/* Make a rename or creation in @path's directory durable (0 or an errno,
 * after a message). */
int sync_parent_dir(const char *path);
/* False, after a message naming @path, if @path is a symbolic link. */
bool not_a_symlink(const char *path);
/* Write @data to a new file ".NAME.XXXXXX" next to @path, mode 0600,
 * synced; its name in *tmp.  False after a message, with nothing left. */
bool write_private_temp(const char *path, const uint8_t *data, size_t len, char **tmp);

/* nvram-tool-swtpm.c */
int cmd_import_swtpm(const struct command *cmd, int argc, char **argv);
int cmd_export_swtpm(const struct command *cmd, int argc, char **argv);

#endif /* NVRAM_TOOL_H */
