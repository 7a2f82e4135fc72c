/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * tpmd-cli.c — swtpm 0.7.1's --tpmstate, --print-capabilities and
 * --print-states for nvram-tpmd (see tpmd-cli.h and nvram-tpmd(8)).
 *
 * The JSON is printed in swtpm's exact shape (src/swtpm/capabilities.c and
 * SWTPM_NVRAM_PrintJson() in swtpm 0.7.1), since swtpm_setup and libvirt
 * look for feature names in it.  The features listed are exactly the ones
 * nvram-tpmd honours: "cmdarg-key-fd"/"cmdarg-pwd-fd" (--key fd=/pwdfd=:
 * the image key), no "tpm-1.2", no "cmdarg-seccomp".
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libtpms/tpm_error.h>
#include <libtpms/tpm_library.h>

#include "nvramtdb.h"
#include "tpmd-cli.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

#define CLI_ERROR g_quark_from_static_string("nvram-tpmd-cli")

void tpmd_tpmstate_clear(tpmd_tpmstate *ts)
{
    g_free(ts->image);
    g_free(ts->dir);
    memset(ts, 0, sizeof(*ts));
}

bool tpmd_tpmstate_parse(const char *spec, tpmd_tpmstate *ts, GError **err)
{
    gchar **kv = g_strsplit(spec, ",", -1);
    char *dir = NULL, *file = NULL;
    bool ok = true;

    for (gchar **p = kv; ok && *p; p++) {
        if (!**p)
            continue;
        if (g_str_has_prefix(*p, "dir=") && (*p)[4]) {
            g_free(dir);
            dir = g_strdup(*p + 4);
        } else if (g_str_has_prefix(*p, "backend-uri=")) {
            const char *uri = *p + 12;

            if (g_str_has_prefix(uri, "dir://") && uri[6]) {
                g_free(dir);
                dir = g_strdup(uri + 6);
            } else if (g_str_has_prefix(uri, "file://") && uri[7]) {
                g_free(file);
                file = g_strdup(uri + 7);
            } else {
                g_set_error(err, CLI_ERROR, 0,
                            "--tpmstate: backend-uri '%s' is neither dir://DIR nor file://PATH",
                            uri);
                ok = false;
            }
        } else if (g_str_has_prefix(*p, "mode=")) {
            guint64 v;

            if (!g_ascii_string_to_unsigned(*p + 5, 8, 0, 07777, &v, NULL)) {
                g_set_error(err, CLI_ERROR, 0, "--tpmstate: bad mode '%s' (octal, e.g. 0640)",
                            *p + 5);
                ok = false;
            }
            ts->mode = (unsigned)v;
            ts->mode_set = true;
        } else {
            g_set_error(err, CLI_ERROR, 0,
                        "--tpmstate: '%s' is not supported (dir=DIR[,mode=0NNN] or "
                        "backend-uri=dir://DIR|file://PATH)", *p);
            ok = false;
        }
    }
    g_strfreev(kv);
    if (ok && !!dir == !!file) {
        g_set_error(err, CLI_ERROR, 0, "--tpmstate: give one of dir=DIR, backend-uri=dir://DIR "
                    "or backend-uri=file://PATH");
        ok = false;
    }
    if (ok && dir) {
        ts->dir = g_canonicalize_filename(dir, NULL);
        ts->image = g_build_filename(ts->dir, TPMD_STATE_IMAGE_NAME, NULL);
    } else if (ok) {
        ts->image = g_canonicalize_filename(file, NULL);
    }
    g_free(dir);
    g_free(file);
    return ok;
}

/*
 * A file:// path that holds swtpm's linear file (its header starts with the
 * u64 magic "swtpmlin" in host order) is refused with the import command:
 * nvramtdb would refuse it anyway, but not say what to do.
 */
static bool check_linear_file(const tpmd_tpmstate *ts, GError **err)
{
    char magic[8];
    int fd = open(ts->image, O_RDONLY | O_CLOEXEC);
    bool linear;

    if (fd < 0)
        return true;
    linear = read(fd, magic, sizeof(magic)) == (ssize_t)sizeof(magic) &&
             (memcmp(magic, "nilmptws", 8) == 0 || memcmp(magic, "swtpmlin", 8) == 0);
    close(fd);
    if (linear)
        g_set_error(err, CLI_ERROR, 0,
                    "--tpmstate: %s is swtpm's linear state file, not an nvramtdb image; "
                    "import it into a new image with 'nvram-tool import-swtpm IMAGE file://%s' "
                    "and give nvram-tpmd that image", ts->image, ts->image);
    return !linear;
}

bool tpmd_tpmstate_check_dir(const tpmd_tpmstate *ts, GError **err)
{
    static const char *const swtpm_files[] = {
        "tpm2-00.permall", "tpm2-00.volatilestate", "tpm2-00.savestate",
        "tpm-00.permall", "tpm-00.volatilestate", "tpm-00.savestate",
    };
    struct stat st;
    bool image;

    if (!ts->dir)
        return check_linear_file(ts, err);
    if (stat(ts->dir, &st) < 0) {
        g_set_error(err, CLI_ERROR, 0, "--tpmstate: directory %s: %s", ts->dir,
                    g_strerror(errno));
        return false;
    }
    if (!S_ISDIR(st.st_mode)) {
        g_set_error(err, CLI_ERROR, 0, "--tpmstate: %s is not a directory", ts->dir);
        return false;
    }
    image = access(ts->image, F_OK) == 0;
    for (size_t i = 0; i < G_N_ELEMENTS(swtpm_files); i++) {
        char *p = g_build_filename(ts->dir, swtpm_files[i], NULL);
        bool found = access(p, F_OK) == 0;

        g_free(p);
        if (!found)
            continue;
        if (swtpm_files[i][3] == '-') {
            g_set_error(err, CLI_ERROR, 0,
                        "--tpmstate: %s holds swtpm's TPM 1.2 state (%s); nvram-tpmd is a "
                        "TPM 2.0 only", ts->dir, swtpm_files[i]);
        } else if (!image) {
            g_set_error(err, CLI_ERROR, 0,
                        "--tpmstate: %s holds swtpm state (%s) but no image %s; import it "
                        "first with 'nvram-tool import-swtpm %s %s' (add --key or --pwdfile "
                        "if it is encrypted), or move the swtpm files away",
                        ts->dir, swtpm_files[i], TPMD_STATE_IMAGE_NAME, ts->image, ts->dir);
        } else {
            /* Which of the two TPMs is current cannot be told (the swtpm
             * files may be newer than an earlier import): serve neither. */
            g_set_error(err, CLI_ERROR, 0,
                        "--tpmstate: %s holds both the image %s and swtpm state (%s); "
                        "which TPM is current is ambiguous, so neither is served: after "
                        "'nvram-tool import-swtpm %s %s' move the swtpm files (tpm2-00.*) "
                        "out of the directory; to use the swtpm state instead, move the "
                        "image away and import again",
                        ts->dir, TPMD_STATE_IMAGE_NAME, swtpm_files[i], ts->image, ts->dir);
        }
        return false;
    }
    return true;
}

bool tpmd_print_capabilities(FILE *out, bool tpm2, GError **err)
{
    GString *s = g_string_new("{ \"type\": \"swtpm\", \"features\": [ \"tpm-2.0\", "
                              "\"tpm-send-command-header\", \"flags-opt-startup\", "
                              "\"cmdarg-print-states\", \"nvram-backend-dir\", "
                              "\"nvram-backend-file\", \"cmdarg-key-fd\", "
                              "\"cmdarg-pwd-fd\"");

    if (tpm2) {
        /* As swtpm: the RSA key sizes libtpms offers, with --tpm2 only. */
        const char *needle = "\"RSAKeySizes\":[";
        char *info, *p;

        if (TPMLIB_ChooseTPMVersion(TPMLIB_TPM_VERSION_2) != TPM_SUCCESS) {
            g_set_error(err, CLI_ERROR, 0, "libtpms offers no TPM 2.0");
            g_string_free(s, TRUE);
            return false;
        }
        info = TPMLIB_GetInfo(TPMLIB_INFO_TPMFEATURES);
        p = info ? strstr(info, needle) : NULL;
        if (p) {
            p += strlen(needle);
            while (*p >= '0' && *p <= '9') {
                char *end;
                unsigned long v = strtoul(p, &end, 10);

                g_string_append_printf(s, ", \"rsa-keysize-%lu\"", v);
                p = *end == ',' ? end + 1 : end;
            }
        }
        free(info);
    }
    g_string_append(s, " ], \"version\": \"" PACKAGE_VERSION "\" }\n");
    fputs(s->str, out);
    g_string_free(s, TRUE);
    return fflush(out) == 0;
}

bool tpmd_print_states(FILE *out, const char *image, const char *device_id, GError **err)
{
    static const char *const names[] = { "permall", "volatilestate", "savestate" };
    nvramtdb *db = NULL;
    nvramtdb_entry *entries = NULL;
    size_t count = 0;
    GString *s = g_string_new(NULL);
    int r = 0;

    struct stat st;

    /* No file, or an empty one (a new image, see nvram-tpmd's main): no states. */
    if (stat(image, &st) == 0 && !(S_ISREG(st.st_mode) && st.st_size == 0)) {
        r = nvramtdb_open(image, NVRAMTDB_OPEN_READONLY | NVRAMTDB_OPEN_FORCE_SHARE, &db);
        if (r == 0)
            r = nvramtdb_start(db, 0);
        if (r == 0)
            r = nvramtdb_list(db, sizeof(nvramtdb_entry), &entries, &count);
        if (r < 0) {
            g_set_error(err, CLI_ERROR, 0, "--print-states: cannot read image %s: %s", image,
                        nvramtdb_last_error());
            if (db)
                nvramtdb_close(db);
            g_string_free(s, TRUE);
            return false;
        }
    }
    for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
        char *want = g_strdup_printf("%s/%s", device_id, names[i]);

        for (size_t k = 0; k < count; k++) {
            if (strcmp(entries[k].name, want) == 0 && entries[k].present && entries[k].size)
                g_string_append_printf(s, "%s {\"name\": \"%s\", \"size\": %u}",
                                       s->len ? "," : "", names[i], entries[k].size);
        }
        g_free(want);
    }
    free(entries);
    if (db)
        nvramtdb_close(db);
    fprintf(out, "{ \"type\": \"swtpm\", \"states\": [%s%s] }\n", s->str, s->len ? " " : "");
    g_string_free(s, TRUE);
    return fflush(out) == 0;
}
