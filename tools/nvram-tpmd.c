/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * nvram-tpmd.c — a TPM 2.0 daemon whose NVRAM lives in an nvramtdb image,
 * speaking swtpm's socket protocols so that existing clients (tpm2-tss's
 * "swtpm" and "mssim"-framed TCTIs, QEMU's -tpmdev emulator) work unchanged.
 *
 * What it owns: the sockets, the two wire protocols, the process life
 * cycle (pid file, log, daemonising, signals).  The TPM itself is the
 * device of tpm/nvtpm.h: every command runs on its device thread, and a
 * response is released only once the NV state the command changed is
 * durable in the image.
 *
 * Command line.  Its own options (--image, --tcp-port, ...) and swtpm
 * 0.7.1's, as swtpm_setup and libvirt give them to "swtpm socket": the
 * "socket" word, --tpmstate, descriptors passed by the caller (fd=,
 * clientfd=, --pid fd=), --terminate, --print-capabilities/--print-states
 * (tpmd-cli.c).  A swtpm option that cannot be honoured is refused by
 * name (refuse_option), never ignored.
 *
 * Structure.  One thread runs a poll loop over the listening sockets and
 * the client connections; every socket is non-blocking and has its own
 * input buffer, so partial reads, several commands per connection,
 * several clients and abrupt disconnects are all the same case.  A
 * complete TPM command is handed to nvtpm_execute() and the loop waits
 * for its response: one command at a time, like a real TPM.
 *
 * Data channel.  Each command is either raw (a TPM 2.0 command: u16 tag,
 * u32 size, ...) or carries the Microsoft simulator framing swtpm calls
 * the "send command header": u32 TPM_SEND_COMMAND (8), u8 locality,
 * u32 size, then the command; the response is then u32 size, response,
 * u32 0.  The framing is recognised per command by its first four bytes
 * (a raw command can never start with 00 00 00 08).  A connection may
 * carry any number of commands; u32 TPM_SESSION_END (20) closes it.
 *
 * Control channel (its table of commands, framing and handlers are
 * tpmd-ctrl.c's; the daemon supplies the operations on its TPM).
 * Big-endian u32 command code and a payload laid out as in swtpm's
 * include/swtpm/tpm_ioctl.h; every response starts with a u32
 * result (a TPM 1.2 style code, 0 = success), except GET_CAPABILITY whose
 * 8-byte answer is a big-endian u64 bit mask (which reads as result 0
 * followed by a u32 mask).  As in swtpm, a request is the message a
 * client writes before waiting for the answer: bytes beyond the layout
 * of the request that arrive with it are padding and are discarded (QEMU
 * sends SET_LOCALITY's 1-byte locality in a 4-byte union).  SET_DATAFD
 * (UNIX control sockets only) takes a connected socket passed with
 * SCM_RIGHTS and serves it as a data connection, as QEMU expects.
 * State blobs of GET/SET_STATEBLOB travel in swtpm's container (header
 * and TLVs) so that a TPM state can migrate between swtpm and this
 * daemon; encrypted containers are refused (no keys here).  A blob that
 * does not exist is answered as swtpm does (TPM_RETRY, no data); SET takes
 * both an empty request and an empty container as "no such blob".  SET
 * only stages the blob (nvtpm_set_state_blob()): INIT writes every staged
 * blob as one atomic batch before the TPM starts, so an incoming
 * migration cut short (daemon killed, no INIT) leaves the image holding
 * the old TPM whole; STOP and SHUTDOWN discard them.
 *
 * Promises.  SIGTERM and SIGINT stop the listeners, let the command in
 * progress finish and its response go out, drain the image's queue
 * (nvtpm_close) and exit 0.  A second daemon on the same image fails at
 * start with a message naming the image.  With --daemon the parent exits
 * only once the child serves (or has failed, with the child's status).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <locale.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>
#include <libtpms/tpm_error.h>
#include <libtpms/tpm_library.h>

#include "byteorder.h"
#include "nvramtdb.h"
#include "nvtpm.h"
#include "tpmd-cli.h"
#include "tpmd-ctrl.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

enum { RC_OK = 0, RC_FAIL = 1, RC_USAGE = 2 };

/* ---- protocol constants ------------------------------------------------- */

/* Data channel framing (Microsoft simulator commands). */
#define MSSIM_SEND_COMMAND 8u
#define MSSIM_SESSION_END  20u
#define MSSIM_HDR_SIZE     9u

#define TPM2_HDR_SIZE        10u
#define TPM2_ST_NO_SESSIONS  0x8001u
#define TPM2_RC_FAILURE      0x101u
#define TPM2_RC_COMMAND_SIZE 0x142u
#define TPM2_RC_INITIALIZE   0x100u

/* ---- logging ------------------------------------------------------------ */

/* The levels of tpmd-ctrl.h, by short names. */
enum {
    L_ERR = TPMD_LOG_ERR,
    L_INFO = TPMD_LOG_INFO,
    L_CONN = TPMD_LOG_CONN,
    L_CMD = TPMD_LOG_CMD,
};

static int log_level = L_INFO;
static int log_fd = STDERR_FILENO;   /* -1: discard */
static bool log_to_file;             /* time stamps, and startup errors also go to stderr */
static char *log_prefix;             /* --log prefix=: before every line */

static void G_GNUC_PRINTF(2, 0) vlogm(int level, const char *fmt, va_list ap)
{
    char line[2048];
    size_t n = 0;
    int k;

    if (level > log_level || log_fd < 0)
        return;
    if (log_to_file) {
        struct timespec ts;
        struct tm tm;

        clock_gettime(CLOCK_REALTIME, &ts);
        localtime_r(&ts.tv_sec, &tm);
        n = strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
        k = snprintf(line + n, sizeof(line) - n, ".%03ld nvram-tpmd[%ld]: ",
                     ts.tv_nsec / 1000000, (long)getpid());
    } else {
        k = snprintf(line, sizeof(line), "nvram-tpmd: ");
    }
    if (k > 0)
        n += (size_t)k;
    if (log_prefix) {
        k = snprintf(line + n, sizeof(line) - n, "%s", log_prefix);
        if (k > 0)
            n += MIN((size_t)k, sizeof(line) - n - 2);
    }
    k = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    if (k > 0)
        n += MIN((size_t)k, sizeof(line) - n - 2);
    line[n++] = '\n';
    while (write(log_fd, line, n) < 0 && errno == EINTR)
        ;
}

static void G_GNUC_PRINTF(2, 3) logm(int level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlogm(level, fmt, ap);
    va_end(ap);
}

/* "nvram-tpmd: MESSAGE" on stderr, whatever the log's destination. */
static void G_GNUC_PRINTF(1, 0) vprint_stderr(const char *fmt, va_list ap)
{
    fputs("nvram-tpmd: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

/* A failure before serving: always on stderr, and in the log file. */
static void G_GNUC_PRINTF(1, 2) fatal(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vprint_stderr(fmt, ap);
    va_end(ap);
    if (log_to_file) {
        va_start(ap, fmt);
        vlogm(L_ERR, fmt, ap);
        va_end(ap);
    }
}

/* nvtpm's message for the last failure, or strerror. */
static const char *lib_msg(int r)
{
    const char *msg = nvtpm_last_error();

    return msg && *msg ? msg : g_strerror(-r);
}

/* ---- daemon state ------------------------------------------------------- */

typedef enum { CHAN_DATA, CHAN_CTRL } chan_kind;
static const char *const chan_name[] = { "data", "control" };

/* A listening socket, from --server, --ctrl or --tcp-port. */
typedef struct endpoint {
    chan_kind kind;
    bool is_unix;
    char *host;        /* tcp: bind address */
    unsigned port;     /* tcp */
    char *path;        /* unixio: absolute socket path */
    unsigned mode;     /* unixio: file mode bits */
    int fd;
    bool created;      /* unixio: we made the socket file (unlink at exit) */
    int given_fd;      /* fd=N (a listening socket) or clientfd=N (a connection) */
    bool client;       /* given_fd is a connection, served as soon as we run */
    bool disconnect;   /* --server disconnect: close after each response */
    long uid, gid;     /* unixio: owner of the socket file (-1: unchanged) */
    char *label;       /* for messages: "127.0.0.1:2321" or the path */
} endpoint;

/* A client connection (or the socket passed by SET_DATAFD). */
typedef struct conn {
    int fd;
    chan_kind kind;
    bool unix_ctrl;     /* control over a UNIX socket: may receive fds */
    bool passed;        /* data socket received by SET_DATAFD */
    bool disconnect;    /* close after one response (--server disconnect) */
    bool eof;           /* peer closed its side */
    bool dead;          /* to be closed and freed */
    int rx_fd;          /* fd received with SCM_RIGHTS, not yet claimed */
    GByteArray *in;
    GByteArray *out;    /* unsent response bytes from out_off */
    size_t out_off;
    unsigned long id;
} conn;

typedef struct tpmd {
    nvtpm *tpm;
    GPtrArray *endpoints;
    GPtrArray *conns;
    uint32_t bufsize;        /* largest command accepted */
    uint8_t locality;        /* set by SET_LOCALITY */
    bool terminate;          /* SHUTDOWN received */
    unsigned long next_id;
    uint64_t commands;       /* TPM commands served */
    uint64_t failures;       /* commands answered with a storage failure */
} tpmd;

/* ---- options ------------------------------------------------------------ */

static char *opt_image;
/* The image key: --key-file / --passphrase-file, or swtpm's --key. */
static char *opt_key_file, *opt_passphrase_file;
static nvramtdb_key image_key = { .struct_size = sizeof image_key, .fd = -1 };
static char *swtpm_key_path;   /* owned copy of --key's file= or pwdfile= */
static bool image_key_remove;  /* --key ...,remove=true */
static char *opt_device_id;
static char **opt_server;
static char **opt_ctrl;
static int opt_tcp_port = -1;
static char *opt_port;
static char **opt_flags;
static char *opt_pid_file;
static char *opt_pid;
static char *opt_log;
static gboolean opt_foreground;
static gboolean opt_daemon;
static gboolean opt_stock_commit;
static gboolean opt_version;
static gboolean opt_tpm2;
static char *opt_tpmstate;
static char *opt_fd;
static gboolean opt_terminate;
static gboolean opt_print_caps;
static gboolean opt_print_states;
static bool swtpm_word;            /* the command line began with swtpm's "socket" */

/* From --flags. */
static bool flag_need_init;
static bool flag_startup_clear;
static bool flag_startup_state;
static bool flag_startup_none;

/*
 * swtpm options nvram-tpmd cannot honour: refused by name with the
 * reason, never ignored.
 */
static gboolean refuse_option(const gchar *name, const gchar *value, gpointer data,
                              GError **error)
{
    const char *why;

    (void)value;
    (void)data;
    if (strcmp(name, "--migration-key") == 0)
        why = "encryption of migrated state blobs is not supported (they travel in clear; "
              "the image itself is encrypted at rest with --key)";
    else if (strcmp(name, "--migration") == 0)
        why = "swtpm's migration options (incoming, release-lock-outgoing) are not supported; "
              "the image is locked while nvram-tpmd runs";
    else if (strcmp(name, "--locality") == 0)
        why = "locality policies (reject-locality-4, allow-set-locality) are not supported";
    else if (strcmp(name, "--runas") == 0 || strcmp(name, "-r") == 0)
        why = "changing user is not supported; start nvram-tpmd as the user it should run as";
    else if (strcmp(name, "--seccomp") == 0)
        why = "seccomp profiles are not supported";
    else
        why = "not supported";
    g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "option %s: %s", name, why);
    return FALSE;
}

/*
 * swtpm's --key file=PATH|fd=N|pwdfile=PATH|pwdfd=N[,format=hex|binary]
 * [,mode=aes-256-cbc][,remove=true|false][,kdf=...]: nvram-tpmd encrypts the
 * image at rest with it (AES-256-GCM, docs/ENCRYPTION.md) instead of
 * swtpm's state files.  A key (file=, fd=) must be 256 bits: 32 raw bytes
 * or 64 hexadecimal digits; a passphrase goes through scrypt (swtpm's
 * kdf= is accepted and not used).  remove=true unlinks the file once read.
 */
static gboolean parse_swtpm_key(const gchar *name, const gchar *value, gpointer data,
                                GError **error)
{
    gchar **parts = g_strsplit(value, ",", -1);
    bool remove_file = false, ok = true;
    const char *why = NULL;
    int src = 0;   /* 1 file, 2 fd, 3 pwdfile, 4 pwdfd */
    const char *arg = NULL;

    (void)name;
    (void)data;
    for (gchar **p = parts; ok && *p; p++) {
        const char *eq = strchr(*p, '=');
        if (!eq) {
            ok = false;
            why = "expected KEY=VALUE parts";
            break;
        }
        size_t klen = (size_t)(eq - *p);
        const char *v = eq + 1;
        if (!strncmp(*p, "file", klen) && klen == 4)
            src = 1, arg = v;
        else if (!strncmp(*p, "fd", klen) && klen == 2)
            src = 2, arg = v;
        else if (!strncmp(*p, "pwdfile", klen) && klen == 7)
            src = 3, arg = v;
        else if (!strncmp(*p, "pwdfd", klen) && klen == 5)
            src = 4, arg = v;
        else if (!strncmp(*p, "remove", klen) && klen == 6)
            remove_file = !strcmp(v, "true");
        else if (!strncmp(*p, "mode", klen) && klen == 4) {
            if (strcmp(v, "aes-256-cbc") != 0) {
                ok = false;
                why = "only mode=aes-256-cbc (a 256-bit key) is accepted: the image is "
                      "encrypted with AES-256-GCM";
            }
        } else if (!(!strncmp(*p, "format", klen) && klen == 6) &&
                   !(!strncmp(*p, "kdf", klen) && klen == 3)) {
            ok = false;
            why = "unknown part (expected file=, fd=, pwdfile=, pwdfd=, format=, mode=, "
                  "remove=, kdf=)";
        }
    }
    if (ok && (!src || !arg || !*arg)) {
        ok = false;
        why = "give file=, fd=, pwdfile= or pwdfd=";
    }
    if (ok) {
        image_key.type = src <= 2 ? NVRAMTDB_KEY_RAW : NVRAMTDB_KEY_PASSPHRASE;
        if (src == 1 || src == 3) {
            g_free(swtpm_key_path);
            swtpm_key_path = g_strdup(arg);
            image_key.path = swtpm_key_path;
        } else {
            char *end;
            long fd = strtol(arg, &end, 10);
            if (*end || fd < 0 || fd > INT_MAX) {
                ok = false;
                why = "not a file descriptor";
            } else {
                image_key.fd = (int)fd;
            }
        }
        if (ok && remove_file && (src == 1 || src == 3))
            image_key_remove = true;
    }
    g_strfreev(parts);
    if (!ok)
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "option --key %s: %s",
                    value, why);
    return ok;
}

/* nvtpm_open(), with the image key when one was given. */
static int open_tpm(unsigned open_flags, nvtpm **tpm)
{
    const char *dev = opt_device_id ? opt_device_id : "tpm0";
    if (!image_key.type)
        return nvtpm_open(opt_image, dev, open_flags, tpm);
    nvramtdb *db;
    unsigned dbflags = NVRAMTDB_OPEN_CREATE |
                       ((open_flags & NVTPM_OPEN_STOCK_COMMIT) ? NVRAMTDB_OPEN_STOCK_COMMIT : 0);
    int r = nvramtdb_open(opt_image, dbflags, &db);
    if (r == 0)
        r = nvramtdb_set_key(db, &image_key);
    if (image_key_remove && image_key.path)
        unlink(image_key.path);
    if (r < 0) {
        char msg[1024];
        g_strlcpy(msg, nvramtdb_last_error(), sizeof msg);
        nvramtdb_close(db);
        fatal("cannot open image %s: %s", opt_image, msg);
        return r;
    }
    return nvtpm_open_handle(db, dev, tpm);
}

static const GOptionEntry option_entries[] = {
    { "image", 'i', 0, G_OPTION_ARG_FILENAME, &opt_image,
      "The nvramtdb image holding the TPM's NVRAM (created, sized for the TPM, if absent)",
      "PATH" },
    { "device-id", 0, 0, G_OPTION_ARG_STRING, &opt_device_id,
      "Device name of the TPM's blobs in the image (default tpm0)", "ID" },
    { "server", 0, 0, G_OPTION_ARG_STRING_ARRAY, &opt_server,
      "Data channel: type=tcp,port=N[,bindaddr=ADDR] or type=unixio,path=P[,mode=0MODE] "
      "(repeatable)", "SPEC" },
    { "ctrl", 0, 0, G_OPTION_ARG_STRING_ARRAY, &opt_ctrl,
      "Control channel: type=tcp,port=N[,bindaddr=ADDR] or type=unixio,path=P[,mode=0MODE] "
      "(repeatable)", "SPEC" },
    { "tcp-port", 0, 0, G_OPTION_ARG_INT, &opt_tcp_port,
      "Data channel on TCP port N and control channel on N+1, on 127.0.0.1", "N" },
    /* -p and -f are swtpm's: a command line written for swtpm means the same here. */
    { "port", 'p', 0, G_OPTION_ARG_STRING, &opt_port,
      "swtpm's -p: a data channel only, on TCP port N of 127.0.0.1, closed after each "
      "response (as --server type=tcp,port=N,disconnect)", "N" },
    { "flags", 0, 0, G_OPTION_ARG_STRING_ARRAY, &opt_flags,
      "Comma-separated: startup-clear or startup-state (send TPM2_Startup(CLEAR or STATE) "
      "at start), startup-none, need-init (stay powered off until the control channel's "
      "INIT), not-need-init (the default, except after swtpm's 'socket' word)",
      "FLAGS" },
    { "pid-file", 0, 0, G_OPTION_ARG_FILENAME, &opt_pid_file,
      "Write the daemon's pid to PATH once it serves", "PATH" },
    { "pid", 0, 0, G_OPTION_ARG_STRING, &opt_pid,
      "swtpm's form of --pid-file, or write the pid to descriptor N", "file=PATH|fd=N" },
    { "log", 0, 0, G_OPTION_ARG_STRING, &opt_log,
      "Log to a file (file=PATH) or descriptor (fd=N) at level N (0 errors, 1 life cycle, "
      "2 connections and control commands, 3 every TPM command); truncate empties the file; "
      "prefix= starts every line", "file=PATH|fd=N[,level=N][,prefix=P][,truncate]" },
    { "foreground", 0, 0, G_OPTION_ARG_NONE, &opt_foreground,
      "Stay in the foreground (the default)", NULL },
    { "daemon", 'd', 0, G_OPTION_ARG_NONE, &opt_daemon,
      "Detach once serving; the parent exits 0 then, or with the failure", NULL },
    { "stock-commit", 0, 0, G_OPTION_ARG_NONE, &opt_stock_commit,
      "Commit with tdb's own transactions (four flushes) instead of the journal (one)", NULL },
    { "tpm2", 0, 0, G_OPTION_ARG_NONE, &opt_tpm2,
      "A TPM 2.0 (always; required after swtpm's 'socket' word)", NULL },
    { "tpmstate", 0, 0, G_OPTION_ARG_STRING, &opt_tpmstate,
      "swtpm's state location: the image DIR/" TPMD_STATE_IMAGE_NAME " or PATH; mode= "
      "sets the image's file mode", "dir=DIR[,mode=0NNN]|backend-uri=dir://DIR|file://PATH" },
    { "fd", 'f', 0, G_OPTION_ARG_STRING, &opt_fd,
      "swtpm's --fd: serve the connected data socket N; exit when it closes", "N" },
    { "terminate", 't', 0, G_OPTION_ARG_NONE, &opt_terminate,
      "Exit (0) when a data connection closes", NULL },
    { "print-capabilities", 0, 0, G_OPTION_ARG_NONE, &opt_print_caps,
      "Print swtpm's JSON list of the features supported and exit", NULL },
    { "print-states", 0, 0, G_OPTION_ARG_NONE, &opt_print_states,
      "Print swtpm's JSON list of the TPM states in --tpmstate's image and exit", NULL },
    { "key-file", 0, 0, G_OPTION_ARG_FILENAME, &opt_key_file,
      "Key of an encrypted image: 32 raw bytes or 64 hex digits (a new image is created "
      "encrypted)", "FILE" },
    { "passphrase-file", 0, 0, G_OPTION_ARG_FILENAME, &opt_passphrase_file,
      "Passphrase of an encrypted image (scrypt)", "FILE" },
    { "key", 0, 0, G_OPTION_ARG_CALLBACK, parse_swtpm_key,
      "swtpm's form: file=|fd=|pwdfile=|pwdfd=...[,remove=true] (the image key)", "SPEC" },
    { "migration-key", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_CALLBACK, refuse_option, "refused",
      "SPEC" },
    { "migration", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_CALLBACK, refuse_option, "refused",
      "SPEC" },
    { "locality", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_CALLBACK, refuse_option, "refused",
      "SPEC" },
    { "runas", 'r', G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_CALLBACK, refuse_option, "refused",
      "USER" },
    { "seccomp", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_CALLBACK, refuse_option, "refused",
      "SPEC" },
    { "version", 0, 0, G_OPTION_ARG_NONE, &opt_version, "Print the version and exit", NULL },
    { NULL, 0, 0, G_OPTION_ARG_NONE, NULL, NULL, NULL },
};

static int G_GNUC_PRINTF(1, 2) usage_error(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vprint_stderr(fmt, ap);
    va_end(ap);
    fputs("Try 'nvram-tpmd --help' for more information.\n", stderr);
    return RC_USAGE;
}

static bool parse_uint(const char *s, unsigned base, unsigned long max, unsigned long *out)
{
    guint64 v;

    if (!s || !*s || !g_ascii_string_to_unsigned(s, base, 0, max, &v, NULL))
        return false;
    *out = (unsigned long)v;
    return true;
}

static void endpoint_free(gpointer p)
{
    endpoint *e = p;

    if (!e)
        return;
    if (e->fd >= 0)
        close(e->fd);
    if (e->created)
        unlink(e->path);
    g_free(e->host);
    g_free(e->path);
    g_free(e->label);
    g_free(e);
}

/*
 * Parse a channel specification "type=tcp,port=N[,bindaddr=A]" or
 * "type=unixio,path=P[,mode=0770][,uid=U][,gid=G]" (swtpm's syntax), or a
 * descriptor the caller opened: fd=N (--ctrl: a listening socket; --server:
 * a connected data socket, as swtpm) or clientfd=N (--ctrl only: a connected
 * UNIX control socket).  --server's "disconnect" closes the connection
 * after each response; swtpm's "ifname" is refused.
 * Returns NULL after printing a usage error.
 */
static endpoint *parse_endpoint(const char *opt, const char *spec, chan_kind kind)
{
    gchar **kv = g_strsplit(spec, ",", -1);
    endpoint *e = g_new0(endpoint, 1);
    char *type = NULL;
    bool ok = true;

    e->kind = kind;
    e->fd = -1;
    e->given_fd = -1;
    e->uid = e->gid = -1;
    e->mode = 0770;
    for (gchar **p = kv; ok && *p; p++) {
        char *eq = strchr(*p, '=');
        unsigned long v = 0;

        if (!**p)
            continue;
        if (strcmp(*p, "disconnect") == 0 && kind == CHAN_DATA) {
            e->disconnect = true;
            continue;
        }
        if (!eq) {
            usage_error("%s: '%s' is not KEY=VALUE", opt, *p);
            ok = false;
            break;
        }
        *eq = '\0';
        const char *key = *p, *val = eq + 1;

        if (strcmp(key, "type") == 0) {
            g_free(type);
            type = g_strdup(val);
        } else if (strcmp(key, "port") == 0) {
            if (!parse_uint(val, 10, 65535, &v) || v == 0) {
                usage_error("%s: bad port '%s'", opt, val);
                ok = false;
            }
            e->port = (unsigned)v;
        } else if (strcmp(key, "bindaddr") == 0) {
            g_free(e->host);
            e->host = g_strdup(val);
        } else if (strcmp(key, "path") == 0) {
            g_free(e->path);
            e->path = g_canonicalize_filename(val, NULL);
        } else if (strcmp(key, "mode") == 0) {
            if (!parse_uint(val, 8, 07777, &v)) {
                usage_error("%s: bad mode '%s' (octal, e.g. 0770)", opt, val);
                ok = false;
            }
            e->mode = (unsigned)v;
        } else if (strcmp(key, "fd") == 0 || strcmp(key, "clientfd") == 0) {
            if (!parse_uint(val, 10, INT_MAX, &v) || fcntl((int)v, F_GETFD) < 0) {
                usage_error("%s: %s=%s is not an open descriptor", opt, key, val);
                ok = false;
            } else if (kind == CHAN_DATA && key[0] == 'c') {
                usage_error("%s: clientfd= is for --ctrl only (--server fd=N is a connection)",
                            opt);
                ok = false;
            }
            if (e->given_fd >= 0) {
                usage_error("%s: fd= and clientfd= exclude each other", opt);
                ok = false;
            }
            e->given_fd = (int)v;
            e->client = key[0] == 'c' || kind == CHAN_DATA;
        } else if (strcmp(key, "uid") == 0 || strcmp(key, "gid") == 0) {
            if (!parse_uint(val, 10, INT_MAX, &v)) {
                usage_error("%s: bad %s '%s' (a number)", opt, key, val);
                ok = false;
            }
            *(key[0] == 'u' ? &e->uid : &e->gid) = (long)v;
        } else if (strcmp(key, "ifname") == 0) {
            usage_error("%s: ifname= is not supported (give bindaddr=ADDR)", opt);
            ok = false;
        } else {
            usage_error("%s: unknown key '%s'", opt, key);
            ok = false;
        }
    }
    g_strfreev(kv);
    if (ok) {
        if (!type)
            type = g_strdup(e->path ? "unixio" : "tcp");
        if (e->given_fd >= 0) {
            if (e->path || e->port || e->host) {
                usage_error("%s: fd=/clientfd= exclude path, port and bindaddr", opt);
                ok = false;
            } else if (strcmp(type, "tcp") != 0 && strcmp(type, "unixio") != 0) {
                usage_error("%s: unknown type '%s' (tcp or unixio)", opt, type);
                ok = false;
            } else if (e->client && kind == CHAN_CTRL && strcmp(type, "unixio") != 0) {
                usage_error("%s: clientfd= needs type=unixio", opt);
                ok = false;
            }
            e->is_unix = strcmp(type, "unixio") == 0;
            e->label = g_strdup_printf("%s %d", e->client ? "connection fd" : "socket fd",
                                       e->given_fd);
        } else if (strcmp(type, "tcp") == 0) {
            if (!e->port || e->path) {
                usage_error("%s: type=tcp needs port=N (and no path)", opt);
                ok = false;
            }
            if (!e->host)
                e->host = g_strdup("127.0.0.1");
            e->label = g_strdup_printf("%s%s%s:%u", strchr(e->host, ':') ? "[" : "", e->host,
                                       strchr(e->host, ':') ? "]" : "", e->port);
        } else if (strcmp(type, "unixio") == 0) {
            if (!e->path || e->port || e->host) {
                usage_error("%s: type=unixio needs path=P (and no port or bindaddr)", opt);
                ok = false;
            } else {
                e->is_unix = true;
                e->label = g_strdup(e->path);
            }
        } else {
            usage_error("%s: unknown type '%s' (tcp or unixio)", opt, type);
            ok = false;
        }
    }
    g_free(type);
    if (!ok) {
        endpoint_free(e);
        return NULL;
    }
    return e;
}

/*
 * --flags.  In nvram-tpmd's own syntax the TPM is powered on at start
 * (not-need-init) unless need-init is given.  After swtpm's "socket" word
 * the default is swtpm's: the TPM waits for the control channel's INIT
 * unless not-need-init is given (libvirt gives no --flags; QEMU sends INIT).
 */
static int parse_flags(void)
{
    bool not_need_init = false;

    for (gchar **f = opt_flags; f && *f; f++) {
        gchar **words = g_strsplit(*f, ",", -1);
        int rc = RC_OK;

        for (gchar **w = words; *w && rc == RC_OK; w++) {
            if (!**w)
                continue;
            if (strcmp(*w, "not-need-init") == 0)
                not_need_init = true;
            else if (strcmp(*w, "need-init") == 0)
                flag_need_init = true;
            else if (strcmp(*w, "startup-clear") == 0)
                flag_startup_clear = true;
            else if (strcmp(*w, "startup-state") == 0)
                flag_startup_state = true;
            else if (strcmp(*w, "startup-none") == 0)
                flag_startup_none = true;
            else if (strcmp(*w, "startup-deactivated") == 0)
                rc = usage_error("--flags: startup-deactivated is a TPM 1.2 startup type; "
                                 "nvram-tpmd is a TPM 2.0 only");
            else
                rc = usage_error("--flags: unknown flag '%s' (startup-clear, startup-state, "
                                 "startup-none, need-init, not-need-init)", *w);
        }
        g_strfreev(words);
        if (rc != RC_OK)
            return rc;
    }
    if (flag_need_init && not_need_init)
        return usage_error("--flags: need-init and not-need-init exclude each other");
    if (swtpm_word && !not_need_init) {
        if (flag_startup_clear || flag_startup_state)
            return usage_error("--flags: startup-%s needs not-need-init (as in swtpm, the TPM "
                               "otherwise waits for INIT)",
                               flag_startup_clear ? "clear" : "state");
        flag_need_init = true;
    }
    if (flag_startup_clear + flag_startup_state + flag_startup_none > 1)
        return usage_error("--flags: give one of startup-clear, startup-state, startup-none");
    if (flag_need_init && (flag_startup_clear || flag_startup_state))
        return usage_error("--flags: startup-%s and need-init exclude each other",
                           flag_startup_clear ? "clear" : "state");
    return RC_OK;
}

static int parse_log(void)
{
    gchar **kv;
    int rc = RC_OK;
    bool truncate = false;
    char *file = NULL;
    long fd = -1;

    if (!opt_log)
        return RC_OK;
    kv = g_strsplit(opt_log, ",", -1);
    for (gchar **p = kv; *p && rc == RC_OK; p++) {
        unsigned long v = 0;

        if (!**p)
            continue;
        if (strcmp(*p, "truncate") == 0) {
            truncate = true;
        } else if (g_str_has_prefix(*p, "file=") && (*p)[5]) {
            g_free(file);
            file = g_strdup(*p + 5);
        } else if (g_str_has_prefix(*p, "fd=") && parse_uint(*p + 3, 10, INT_MAX, &v)) {
            fd = (long)v;
        } else if (g_str_has_prefix(*p, "level=") && parse_uint(*p + 6, 10, 100, &v)) {
            log_level = (int)v;
        } else if (g_str_has_prefix(*p, "prefix=")) {
            g_free(log_prefix);
            log_prefix = g_strdup(*p + 7);
        } else {
            rc = usage_error("--log: cannot understand '%s'", *p);
        }
    }
    g_strfreev(kv);
    if (rc == RC_OK && file && fd >= 0)
        rc = usage_error("--log: file= and fd= exclude each other");
    if (rc == RC_OK && file && strcmp(file, "-") == 0) {
        log_fd = -1;                       /* swtpm: file=- suppresses logging */
    } else if (rc == RC_OK && file) {
        log_fd = open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (truncate ? O_TRUNC : 0),
                      0640);
        if (log_fd < 0) {
            fatal("cannot open log file %s: %s", file, g_strerror(errno));
            rc = RC_FAIL;
        }
        log_to_file = true;
    } else if (rc == RC_OK && fd >= 0) {
        if (fcntl((int)fd, F_GETFD) < 0) {
            fatal("--log: fd %ld is not open", fd);
            rc = RC_FAIL;
        }
        log_fd = (int)fd;
        log_to_file = fd != STDERR_FILENO;
    }
    g_free(file);
    return rc;
}

/* ---- listening sockets -------------------------------------------------- */

static int listen_tcp(endpoint *e)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    struct addrinfo *res = NULL;
    char port[16];
    int err = 0, r;

    snprintf(port, sizeof(port), "%u", e->port);
    r = getaddrinfo(e->host, port, &hints, &res);
    if (r != 0) {
        fatal("%s channel: cannot resolve %s: %s", chan_name[e->kind], e->host, gai_strerror(r));
        return -1;
    }
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int one = 1;
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        ai->ai_protocol);

        if (fd < 0) {
            err = errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 16) == 0) {
            e->fd = fd;
            break;
        }
        err = errno;
        close(fd);
    }
    freeaddrinfo(res);
    if (e->fd < 0) {
        fatal("%s channel: cannot listen on %s: %s", chan_name[e->kind], e->label,
              g_strerror(err));
        return -1;
    }
    return 0;
}

static int listen_unix(endpoint *e)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct stat st;
    int fd;

    if (strlen(e->path) >= sizeof(sa.sun_path)) {
        fatal("%s channel: socket path too long: %s", chan_name[e->kind], e->path);
        return -1;
    }
    strcpy(sa.sun_path, e->path);
    /* A socket file left by a dead daemon is replaced; one that a live
     * process answers on is not. */
    if (lstat(e->path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            fatal("%s channel: %s exists and is not a socket", chan_name[e->kind], e->path);
            return -1;
        }
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            close(fd);
            fatal("%s channel: %s is in use by another process", chan_name[e->kind], e->path);
            return -1;
        }
        if (fd >= 0)
            close(fd);
        unlink(e->path);
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        fatal("%s channel: cannot bind %s: %s", chan_name[e->kind], e->path, g_strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    e->created = true;
    e->fd = fd;
    if (chmod(e->path, e->mode) < 0)
        logm(L_ERR, "cannot set mode %04o on %s: %s", e->mode, e->path, g_strerror(errno));
    if ((e->uid >= 0 || e->gid >= 0) &&
        chown(e->path, e->uid >= 0 ? (uid_t)e->uid : (uid_t)-1,
              e->gid >= 0 ? (gid_t)e->gid : (gid_t)-1) < 0) {
        fatal("%s channel: cannot set owner %ld:%ld of %s: %s", chan_name[e->kind], e->uid,
              e->gid, e->path, g_strerror(errno));
        return -1;
    }
    if (listen(fd, 16) < 0) {
        fatal("%s channel: cannot listen on %s: %s", chan_name[e->kind], e->path,
              g_strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- connections -------------------------------------------------------- */

static conn *conn_new(tpmd *d, int fd, chan_kind kind)
{
    conn *c = g_new0(conn, 1);

    c->fd = fd;
    c->kind = kind;
    c->rx_fd = -1;
    c->in = g_byte_array_new();
    c->out = g_byte_array_new();
    c->id = ++d->next_id;
    g_ptr_array_add(d->conns, c);
    return c;
}

/* TPM commands, answers and state blobs carry secrets: bytes a connection
 * is done with are wiped, not just dropped (the array keeps its storage,
 * and shifting leaves copies past its end). */
static void bytes_drop_front(GByteArray *a, size_t n)
{
    guint old = a->len;
    g_byte_array_remove_range(a, 0, (guint)MIN(n, a->len));
    explicit_bzero(a->data + a->len, old - a->len);
}

static void bytes_wipe(GByteArray *a)
{
    explicit_bzero(a->data, a->len);
    g_byte_array_set_size(a, 0);
}

static void conn_free(gpointer p)
{
    conn *c = p;

    if (c->fd >= 0)
        close(c->fd);
    if (c->rx_fd >= 0)
        close(c->rx_fd);
    bytes_wipe(c->in);
    bytes_wipe(c->out);
    g_byte_array_unref(c->in);
    g_byte_array_unref(c->out);
    g_free(c);
}

static void conn_kill(conn *c, const char *why)
{
    if (!c->dead)
        logm(L_CONN, "%s connection %lu closed (%s)", chan_name[c->kind], c->id, why);
    c->dead = true;
}

static bool conn_pending(const conn *c)
{
    return c->out_off < c->out->len;
}

/* Send what is queued; returns false if the connection broke. */
static bool conn_flush(conn *c)
{
    while (conn_pending(c)) {
        ssize_t n = send(c->fd, c->out->data + c->out_off, c->out->len - c->out_off,
                         MSG_NOSIGNAL);

        if (n < 0 && errno == ENOTSOCK)
            n = write(c->fd, c->out->data + c->out_off, c->out->len - c->out_off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return true;
        if (n <= 0) {
            conn_kill(c, n < 0 ? g_strerror(errno) : "write failed");
            return false;
        }
        c->out_off += (size_t)n;
    }
    bytes_wipe(c->out);
    c->out_off = 0;
    return true;
}

static void conn_send(conn *c, const uint8_t *buf, size_t len)
{
    if (c->dead)
        return;
    g_byte_array_append(c->out, buf, (guint)len);
    conn_flush(c);
}

/* Drop the first @n input bytes. */
static void conn_consume(conn *c, size_t n)
{
    bytes_drop_front(c->in, n);
}

/* ---- data channel ------------------------------------------------------- */

static void tpm2_error_response(uint8_t out[TPM2_HDR_SIZE], uint32_t rc)
{
    store_be16(out, TPM2_ST_NO_SESSIONS);
    store_be32(out + 2, TPM2_HDR_SIZE);
    store_be32(out + 6, rc);
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * Execute one command and send its response, framed like the command.
 * @locality: the mssim header's locality, or -1 (use the control
 * channel's).
 */
static void execute_command(tpmd *d, conn *c, const uint8_t *cmd, size_t len, int locality,
                            bool mssim)
{
    uint8_t fail[TPM2_HDR_SIZE];
    uint8_t *resp = NULL;
    size_t resp_len = 0;
    uint64_t t0 = now_ns();
    int r;

    if (locality >= 0 && locality != d->locality)
        nvtpm_set_locality(d->tpm, (uint8_t)locality);
    if (!nvtpm_is_powered(d->tpm)) {
        r = -ENODEV;
    } else {
        r = nvtpm_execute(d->tpm, cmd, len, &resp, &resp_len);
        if (r < 0)
            logm(L_ERR, "command 0x%08" PRIx32 " failed: %s", load_be32(cmd + 6), lib_msg(r));
    }
    if (locality >= 0 && locality != d->locality)
        nvtpm_set_locality(d->tpm, d->locality);
    d->commands++;
    if (r < 0 || !resp || resp_len < TPM2_HDR_SIZE) {
        /* Not powered (no INIT yet), or the device could not answer: the
         * failure response swtpm gives too. */
        if (r != -ENODEV)
            d->failures++;
        free(resp);
        tpm2_error_response(fail, TPM2_RC_FAILURE);
        resp = NULL;
        resp_len = sizeof(fail);
    }
    logm(L_CMD, "%s 0x%08" PRIx32 " -> 0x%" PRIx32 " (%zu bytes, %" PRIu64 " us)",
         mssim ? "mssim" : "raw", load_be32(cmd + 6), load_be32(resp ? resp + 6 : fail + 6), resp_len,
         (now_ns() - t0) / 1000);
    if (mssim) {
        uint8_t n[4], z[4] = { 0 };

        store_be32(n, (uint32_t)resp_len);
        g_byte_array_append(c->out, n, 4);
        g_byte_array_append(c->out, resp ? resp : fail, (guint)resp_len);
        conn_send(c, z, 4);
    } else {
        conn_send(c, resp ? resp : fail, resp_len);
    }
    free(resp);
}

/* Execute every complete command buffered on @c, in order. */
static void data_process(tpmd *d, conn *c)
{
    while (!c->dead && !conn_pending(c) && c->in->len >= 4 && !d->terminate) {
        const uint8_t *p = c->in->data;
        uint32_t first = load_be32(p), size;
        size_t hdr = 0;
        int locality = -1;

        if (first == MSSIM_SESSION_END) {
            conn_kill(c, "session end");
            return;
        }
        if (first == MSSIM_SEND_COMMAND) {
            if (c->in->len < MSSIM_HDR_SIZE)
                return;
            locality = p[4];
            size = load_be32(p + 5);
            hdr = MSSIM_HDR_SIZE;
        } else {
            if (c->in->len < TPM2_HDR_SIZE)
                return;
            size = load_be32(p + 2);
        }
        if (size < TPM2_HDR_SIZE || size > d->bufsize || locality > 4) {
            uint8_t err[TPM2_HDR_SIZE];

            /* The stream cannot be resynchronised: answer, then close. */
            logm(L_ERR, "data connection %lu: bad command (size %" PRIu32 ", locality %d)",
                 c->id, size, locality);
            tpm2_error_response(err, TPM2_RC_COMMAND_SIZE);
            conn_send(c, err, sizeof(err));
            c->eof = true;
            bytes_wipe(c->in);
            return;
        }
        if (c->in->len < hdr + size)
            return;
        execute_command(d, c, p + hdr, size, locality, hdr != 0);
        conn_consume(c, hdr + size);
        if (c->disconnect) {                 /* --server ...,disconnect */
            c->eof = true;
            bytes_wipe(c->in);
            return;
        }
    }
}

/* ---- control channel ---------------------------------------------------- */

/* The protocol is tpmd-ctrl.c's; these are the daemon's operations. */

/* The request's connection, for SET_DATAFD. */
typedef struct ctrl_call {
    tpmd *d;
    conn *c;
} ctrl_call;

static uint32_t power_on(tpmd *d, const char *why)
{
    int r = nvtpm_power_on(d->tpm);

    if (r < 0) {
        logm(L_ERR, "power on (%s) failed: %s", why, lib_msg(r));
        return TPM_FAIL;
    }
    logm(L_INFO, "TPM powered on (%s)", why);
    return TPM_SUCCESS;
}

static int state_type(uint32_t blob_type)
{
    switch (blob_type) {
    case CTRL_BLOB_PERMANENT:
        return NVTPM_STATE_PERMANENT;
    case CTRL_BLOB_VOLATILE:
        return NVTPM_STATE_VOLATILE;
    case CTRL_BLOB_SAVESTATE:
        return NVTPM_STATE_SAVE_STATE;
    default:
        return -1;
    }
}

static bool op_powered(void *opaque)
{
    ctrl_call *k = opaque;

    return nvtpm_is_powered(k->d->tpm);
}

static int op_power_on(void *opaque, bool delete_volatile)
{
    ctrl_call *k = opaque;

    return power_on(k->d, delete_volatile ? "INIT, delete volatile" : "INIT") == TPM_SUCCESS
               ? 0 : -EIO;
}

/* STOP, SHUTDOWN, and INIT of a running TPM: state blobs set since the
 * last INIT are discarded (never written: the image keeps its state). */
static void op_power_off(void *opaque)
{
    ctrl_call *k = opaque;
    int n = nvtpm_discard_state_blobs(k->d->tpm);

    if (n > 0)
        logm(L_INFO, "state blobs set without INIT discarded; the image keeps its state");
    nvtpm_power_off(k->d->tpm);
}

static void op_terminate(void *opaque)
{
    ctrl_call *k = opaque;

    k->d->terminate = true;
}

static int op_get_established(void *opaque, bool *established)
{
    ctrl_call *k = opaque;

    return nvtpm_get_established(k->d->tpm, established);
}

static int op_reset_established(void *opaque, uint8_t locality)
{
    ctrl_call *k = opaque;

    return nvtpm_reset_established(k->d->tpm, locality);
}

static int op_set_locality(void *opaque, uint8_t locality)
{
    ctrl_call *k = opaque;
    int r = nvtpm_set_locality(k->d->tpm, locality);

    if (r >= 0)
        k->d->locality = locality;
    return r;
}

static int op_cancel(void *opaque)
{
    ctrl_call *k = opaque;

    return nvtpm_cancel(k->d->tpm);
}

static int op_store_volatile(void *opaque)
{
    ctrl_call *k = opaque;
    int r = nvtpm_store_volatile(k->d->tpm);

    if (r < 0)
        logm(L_ERR, "STORE_VOLATILE failed: %s", lib_msg(r));
    else
        logm(L_INFO, "STORE_VOLATILE: volatile state stored");
    return r;
}

static int op_get_state_blob(void *opaque, uint32_t type, uint8_t **blob, size_t *len)
{
    ctrl_call *k = opaque;
    int r = nvtpm_get_state_blob(k->d->tpm, (unsigned)state_type(type), blob, len);

    if (r < 0)
        logm(L_ERR, "GET_STATEBLOB type %" PRIu32 ": %s", type, lib_msg(r));
    return r;
}

static int op_set_state_blob(void *opaque, uint32_t type, const uint8_t *raw, size_t len)
{
    ctrl_call *k = opaque;
    int r = nvtpm_set_state_blob(k->d->tpm, (unsigned)state_type(type), raw, len);

    if (r < 0)
        logm(L_ERR, "SET_STATEBLOB type %" PRIu32 ": %s", type, lib_msg(r));
    return r;
}

static int op_set_datafd(void *opaque)
{
    ctrl_call *k = opaque;
    tpmd *d = k->d;
    conn *c = k->c, *dc;

    if (!c->unix_ctrl || c->rx_fd < 0)
        return -EBADF;                       /* no descriptor came with the request */
    for (guint i = 0; i < d->conns->len; i++) {
        conn *o = g_ptr_array_index(d->conns, i);

        if (o->passed && !o->dead)
            return -EBUSY;                   /* as swtpm: one passed data channel */
    }
    dc = conn_new(d, c->rx_fd, CHAN_DATA);
    dc->passed = true;
    c->rx_fd = -1;
    fcntl(dc->fd, F_SETFL, fcntl(dc->fd, F_GETFL) | O_NONBLOCK);
    fcntl(dc->fd, F_SETFD, FD_CLOEXEC);
    logm(L_INFO, "SET_DATAFD: serving data connection %lu on the passed socket", dc->id);
    return 0;
}

static uint32_t op_set_buffer_size(void *opaque, uint32_t wanted, uint32_t *min, uint32_t *max)
{
    ctrl_call *k = opaque;
    uint32_t size = nvtpm_set_buffer_size(k->d->tpm, wanted, min, max);

    if (size)
        k->d->bufsize = MIN(size, NVTPM_BUFFER_MAX);
    return size;
}

static void G_GNUC_PRINTF(3, 4) op_log(void *opaque, int level, const char *fmt, ...)
{
    va_list ap;

    (void)opaque;
    va_start(ap, fmt);
    vlogm(level, fmt, ap);
    va_end(ap);
}

/* GET_INFO (swtpm_setup asks for the TPM's specification and attributes);
 * runs on the device thread, like every libtpms call. */
static char *op_get_info(void *opaque, uint64_t flags)
{
    (void)opaque;
    return TPMLIB_GetInfo((enum TPMLIB_InfoFlags)flags);
}

static const tpmd_ctrl_ops ctrl_ops = {
    .powered = op_powered,
    .power_on = op_power_on,
    .power_off = op_power_off,
    .terminate = op_terminate,
    .get_established = op_get_established,
    .reset_established = op_reset_established,
    .set_locality = op_set_locality,
    .cancel = op_cancel,
    .store_volatile = op_store_volatile,
    .get_state_blob = op_get_state_blob,
    .set_state_blob = op_set_state_blob,
    .set_datafd = op_set_datafd,
    .set_buffer_size = op_set_buffer_size,
    .log = op_log,
    .get_info = op_get_info,
};

/* Execute the complete request at the start of @c's input. */
static void ctrl_execute(tpmd *d, conn *c)
{
    ctrl_call call = { .d = d, .c = c };
    GByteArray *out = g_byte_array_new();

    tpmd_ctrl_execute(&ctrl_ops, &call, c->in->data, c->in->len, out);
    if (c->rx_fd >= 0) {                     /* a descriptor nobody asked for */
        close(c->rx_fd);
        c->rx_fd = -1;
    }
    conn_send(c, out->data, out->len);
    bytes_wipe(out);                         /* GET_STATEBLOB's answer is TPM state */
    g_byte_array_unref(out);
}

static void ctrl_process(tpmd *d, conn *c)
{
    while (!c->dead && !conn_pending(c) && c->in->len >= 4 && !d->terminate) {
        size_t need = tpmd_ctrl_request_size(c->in->data, c->in->len);

        if (need > TPMD_CTRL_REQUEST_MAX) {
            uint8_t res[4];

            logm(L_ERR, "control connection %lu: request of %zu bytes refused", c->id, need);
            store_be32(res, TPM_BAD_PARAMETER);
            conn_send(c, res, 4);
            c->eof = true;
            bytes_wipe(c->in);
            return;
        }
        if (c->in->len < need)
            return;
        ctrl_execute(d, c);
        /* Whatever came with the request beyond its layout is padding. */
        bytes_wipe(c->in);
    }
}

/* ---- the loop ----------------------------------------------------------- */

static volatile sig_atomic_t got_signal;

/* --terminate, or a data socket given by descriptor: exit (0) once a data
 * connection has closed, as swtpm does. */
static bool terminate_on_data_close;

static void on_signal(int sig)
{
    got_signal = sig;
}

static void accept_clients(tpmd *d, endpoint *e)
{
    for (;;) {
        int fd = accept4(e->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        conn *c;

        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                errno != ECONNABORTED)
                logm(L_ERR, "accept on %s: %s", e->label, g_strerror(errno));
            return;
        }
        if (!e->is_unix) {
            int one = 1;

            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        c = conn_new(d, fd, e->kind);
        c->unix_ctrl = e->is_unix && e->kind == CHAN_CTRL;
        c->disconnect = e->disconnect;
        logm(L_CONN, "%s connection %lu on %s", chan_name[c->kind], c->id, e->label);
    }
}

/* Read what is available; UNIX control sockets may carry a descriptor. */
static void conn_read(conn *c)
{
    uint8_t buf[65536];
    ssize_t n;

    if (c->unix_ctrl) {
        union {
            char space[CMSG_SPACE(sizeof(int))];
            struct cmsghdr align;
        } ctl;
        struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.space,
                              .msg_controllen = sizeof(ctl.space) };

        n = recvmsg(c->fd, &msg, MSG_CMSG_CLOEXEC);
        if (n >= 0) {
            for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
                if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
                    cm->cmsg_len >= CMSG_LEN(sizeof(int))) {
                    int fd;

                    memcpy(&fd, CMSG_DATA(cm), sizeof(fd));
                    if (c->rx_fd >= 0)
                        close(c->rx_fd);
                    c->rx_fd = fd;
                }
            }
        }
    } else {
        n = recv(c->fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == ENOTSOCK)
            n = read(c->fd, buf, sizeof(buf));
    }
    if (n > 0) {
        g_byte_array_append(c->in, buf, (guint)n);
    } else if (n == 0) {
        c->eof = true;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        conn_kill(c, g_strerror(errno));
    }
}

static void conn_service(tpmd *d, conn *c, short revents)
{
    if (revents & POLLOUT)
        conn_flush(c);
    if (!c->dead && (revents & (POLLIN | POLLHUP | POLLERR)))
        conn_read(c);
    if (c->dead)
        return;
    if (c->kind == CHAN_DATA)
        data_process(d, c);
    else
        ctrl_process(d, c);
    if (c->eof && !conn_pending(c))
        conn_kill(c, "closed by peer");
}

static int serve(tpmd *d)
{
    sigset_t waitmask;
    struct pollfd *fds = NULL;
    void **who = NULL;
    size_t cap = 0;

    pthread_sigmask(SIG_BLOCK, NULL, &waitmask);
    sigdelset(&waitmask, SIGTERM);
    sigdelset(&waitmask, SIGINT);
    while (!got_signal && !d->terminate) {
        size_t n = 0, ne = d->endpoints->len;

        if (cap < ne + d->conns->len) {
            cap = 2 * (ne + d->conns->len) + 8;
            fds = g_renew(struct pollfd, fds, cap);
            who = g_renew(void *, who, cap);
        }
        for (guint i = 0; i < ne; i++) {
            endpoint *e = g_ptr_array_index(d->endpoints, i);

            fds[n] = (struct pollfd){ .fd = e->fd, .events = POLLIN };
            who[n++] = e;
        }
        for (guint i = 0; i < d->conns->len; i++) {
            conn *c = g_ptr_array_index(d->conns, i);

            fds[n] = (struct pollfd){ .fd = c->fd,
                                      .events = conn_pending(c) ? POLLOUT : POLLIN };
            who[n++] = c;
        }
        if (ppoll(fds, n, NULL, &waitmask) < 0) {
            if (errno == EINTR)
                continue;
            logm(L_ERR, "poll: %s", g_strerror(errno));
            g_free(fds);
            g_free(who);
            return -1;
        }
        for (size_t i = 0; i < n && !d->terminate && !got_signal; i++) {
            if (!fds[i].revents)
                continue;
            if (i < ne)
                accept_clients(d, who[i]);
            else
                conn_service(d, who[i], fds[i].revents);
        }
        for (guint i = d->conns->len; i-- > 0;) {
            conn *c = g_ptr_array_index(d->conns, i);

            if (c->dead) {
                if (c->kind == CHAN_DATA && terminate_on_data_close && !d->terminate) {
                    logm(L_INFO, "data connection %lu closed: terminating", c->id);
                    d->terminate = true;
                }
                g_ptr_array_remove_index(d->conns, i);
            }
        }
    }
    g_free(fds);
    g_free(who);
    return 0;
}

/* The event loop runs on the TPM's device thread, so that each command
 * executes there inline instead of being handed over and back. */
static int serve_on_device(void *opaque)
{
    return serve(opaque);
}

/* Last chance for queued responses (e.g. SHUTDOWN's): up to a second. */
static void flush_all(tpmd *d)
{
    uint64_t deadline = now_ns() + 1000000000u;

    for (guint i = 0; i < d->conns->len; i++) {
        conn *c = g_ptr_array_index(d->conns, i);

        while (!c->dead && conn_pending(c) && now_ns() < deadline) {
            struct pollfd p = { .fd = c->fd, .events = POLLOUT };

            if (poll(&p, 1, 100) > 0)
                conn_flush(c);
        }
    }
}

/* ---- start-up ----------------------------------------------------------- */

static char *pid_path;
static bool pid_written;
static int pid_fd = -1;       /* --pid fd=N */

/*
 * Write the pid once serving.  A new file is written under a temporary
 * name and renamed into place; an existing regular file is rewritten in
 * place, as swtpm does, since swtpm_setup creates the file with mkstemp()
 * and watches it through its own descriptor.
 */
static int write_pid_file(void)
{
    char *tmp, buf[32];
    int fd, len;
    struct stat st;

    len = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
    if (pid_fd >= 0) {
        if (write(pid_fd, buf, (size_t)len) != len) {
            fatal("cannot write the pid to --pid fd=%d: %s", pid_fd, g_strerror(errno));
            return -1;
        }
        close(pid_fd);
        pid_fd = -1;
    }
    if (!pid_path)
        return 0;
    if (lstat(pid_path, &st) == 0 && S_ISREG(st.st_mode)) {
        fd = open(pid_path, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 || write(fd, buf, (size_t)len) != len || close(fd) < 0) {
            fatal("cannot write pid file %s: %s", pid_path, g_strerror(errno));
            return -1;
        }
        pid_written = true;
        return 0;
    }
    tmp = g_strdup_printf("%s.%ld.tmp", pid_path, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, buf, (size_t)len) != len || close(fd) < 0 ||
        rename(tmp, pid_path) < 0) {
        fatal("cannot write pid file %s: %s", pid_path, g_strerror(errno));
        unlink(tmp);
        g_free(tmp);
        return -1;
    }
    g_free(tmp);
    pid_written = true;
    return 0;
}

/* TPM2_Startup(CLEAR), or (@state) TPM2_Startup(STATE). */
static int startup_clear(tpmd *d, bool state)
{
    uint8_t cmd[] = { 0x80, 0x01, 0, 0, 0, 0x0c, 0, 0, 0x01, 0x44, 0, state ? 1 : 0 };
    uint8_t *resp = NULL;
    size_t len = 0;
    /* Unsynced: its state's flush overlaps with opening the sockets and
     * accepting the first client, whose first command waits for it. */
    int r = nvtpm_execute_unsynced(d->tpm, cmd, sizeof(cmd), &resp, &len);
    uint32_t rc = r == 0 && len >= TPM2_HDR_SIZE ? load_be32(resp + 6) : TPM2_RC_FAILURE;

    free(resp);
    if (rc != 0 && rc != TPM2_RC_INITIALIZE) {
        fatal("TPM2_Startup(%s) failed: %s", state ? "STATE" : "CLEAR",
              r < 0 ? lib_msg(r) : "the TPM answered with an error");
        return -1;
    }
    logm(L_INFO, "TPM2_Startup(%s) sent", state ? "STATE" : "CLEAR");
    return 0;
}

static void print_version(void)
{
    uint32_t v = TPMLIB_GetVersion();

    printf("nvram-tpmd (nvramtdb) %s\nlibnvramtdb %s, libtpms %u.%u.%u\n", PACKAGE_VERSION,
           nvramtdb_version(), (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff);
}

/* Fork; the parent waits for the child to report readiness on a pipe. */
static int daemonize(int *ready_fd)
{
    int p[2];
    pid_t pid;

    if (pipe2(p, O_CLOEXEC) < 0) {
        fatal("pipe: %s", g_strerror(errno));
        return -1;
    }
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        fatal("fork: %s", g_strerror(errno));
        return -1;
    }
    if (pid > 0) {
        char b;
        ssize_t n;
        int st = 0;

        close(p[1]);
        while ((n = read(p[0], &b, 1)) < 0 && errno == EINTR)
            ;
        if (n == 1)
            _exit(RC_OK);
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        _exit(WIFEXITED(st) && WEXITSTATUS(st) ? WEXITSTATUS(st) : RC_FAIL);
    }
    close(p[0]);
    setsid();
    *ready_fd = p[1];
    return 0;
}

/* The child serves: tell the parent and leave the terminal. */
static void detach(int ready_fd)
{
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);

    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        if (log_fd == STDERR_FILENO)
            log_fd = -1;
        dup2(null, STDERR_FILENO);
        close(null);
    }
    if (chdir("/") < 0)
        logm(L_ERR, "chdir /: %s", g_strerror(errno));
    while (write(ready_fd, "1", 1) < 0 && errno == EINTR)
        ;
    close(ready_fd);
}

int main(int argc, char **argv)
{
    GOptionContext *ctx;
    GError *err = NULL;
    tpmd d = { .bufsize = NVTPM_BUFFER_MAX };
    struct sigaction sa = { .sa_handler = on_signal };
    sigset_t block;
    int rc = RC_OK, r, ready_fd = -1;
    unsigned open_flags = NVTPM_OPEN_CREATE;
    tpmd_tpmstate ts = { 0 };

    /* One malloc arena for the few threads (device, writer, crypto
     * warm-up): a thread's own arena grows a page at a time with
     * mprotect(), and with threads on two CPUs each change of the mappings
     * costs an inter-processor interrupt, which in a VM is an exit; that
     * was about 1.3 ms of an unpinned start.  Two busy threads share the
     * arena's lock without contention worth measuring. */
    mallopt(M_ARENA_MAX, 1);
    /* Only the character set (GLib converts option strings with it): the
     * other categories load a file each, about 1 ms of start-up that VM
     * boot waits for, and C formats keep the log's numbers and dates stable. */
    setlocale(LC_CTYPE, "");
    /* swtpm's interface word: "swtpm socket ..." becomes "nvram-tpmd socket ...". */
    if (argc > 1 && strcmp(argv[1], "socket") == 0) {
        swtpm_word = true;
        memmove(argv + 1, argv + 2, (size_t)(argc - 1) * sizeof(*argv));
        argc--;
    } else if (argc > 1 && (strcmp(argv[1], "chardev") == 0 || strcmp(argv[1], "cuse") == 0)) {
        return usage_error("swtpm's '%s' interface is not supported (only 'socket')", argv[1]);
    }
    ctx = g_option_context_new("- TPM 2.0 daemon with its NVRAM in an nvramtdb image");
    g_option_context_add_main_entries(ctx, option_entries, NULL);
    g_option_context_set_summary(
        ctx, "Serves a libtpms TPM 2.0 over swtpm-compatible sockets (data and control\n"
             "channels); every NV change is durable before its response is sent.");
    g_option_context_set_description(
        ctx, "Example:\n  nvram-tpmd --image tpm.img --tcp-port 2321\n"
             "  tpm2_startup -c -T swtpm:host=127.0.0.1,port=2321\n\nSee nvram-tpmd(8).\n");
    if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
        rc = usage_error("%s", err->message);
        g_error_free(err);
        g_option_context_free(ctx);
        return rc;
    }
    g_option_context_free(ctx);
    if (opt_version) {
        print_version();
        return RC_OK;
    }
    if (argc > 1)
        return usage_error("unexpected argument '%s'", argv[1]);
    if ((opt_key_file != NULL) + (opt_passphrase_file != NULL) + (image_key.type != 0) > 1)
        return usage_error("give one image key: --key-file, --passphrase-file or --key");
    if (opt_key_file || opt_passphrase_file) {
        image_key.type = opt_key_file ? NVRAMTDB_KEY_RAW : NVRAMTDB_KEY_PASSPHRASE;
        image_key.path = opt_key_file ? opt_key_file : opt_passphrase_file;
    }
    if (opt_print_caps) {
        if (!tpmd_print_capabilities(stdout, opt_tpm2, &err)) {
            fatal("%s", err->message);
            g_error_free(err);
            return RC_FAIL;
        }
        return RC_OK;
    }
    /* swtpm: TPM_PATH stands for --tpmstate dir=. */
    if (!opt_tpmstate && !opt_image && g_getenv("TPM_PATH") && *g_getenv("TPM_PATH"))
        opt_tpmstate = g_strdup_printf("dir=%s", g_getenv("TPM_PATH"));
    if (opt_tpmstate && opt_image)
        return usage_error("--image and --tpmstate exclude each other");
    if (opt_tpmstate) {
        if (!tpmd_tpmstate_parse(opt_tpmstate, &ts, &err)) {
            rc = usage_error("%s", err->message);
            g_error_free(err);
            return rc;
        }
        if (!tpmd_tpmstate_check_dir(&ts, &err)) {
            fatal("%s", err->message);
            g_error_free(err);
            tpmd_tpmstate_clear(&ts);
            return RC_FAIL;
        }
        opt_image = g_strdup(ts.image);
    }
    if (opt_print_states) {
        if (!opt_image)
            return usage_error("--print-states needs --tpmstate (or --image)");
        /* swtpm's linear-file backend creates its file when it opens it,
         * --print-states too, and swtpm_setup then unlinks it before it
         * manufactures the TPM (failing if it is absent): do the same.  An
         * empty file becomes an image when nvram-tpmd serves it. */
        if (opt_tpmstate && !ts.dir) {
            int fd = open(opt_image, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                          ts.mode_set ? ts.mode : 0600);

            if (fd >= 0)
                close(fd);
        }
        if (!tpmd_print_states(stdout, opt_image, opt_device_id ? opt_device_id : "tpm0",
                               &err)) {
            fatal("%s", err->message);
            g_error_free(err);
            rc = RC_FAIL;
        }
        tpmd_tpmstate_clear(&ts);
        return rc;
    }
    /* After swtpm's "socket" word the command line is swtpm's, where no
     * --tpm2 means a TPM 1.2: refuse rather than serve a TPM 2.0. */
    if (swtpm_word && !opt_tpm2)
        return usage_error("swtpm's default TPM 1.2 is not supported: nvram-tpmd is a TPM 2.0 "
                           "only (add --tpm2)");
    if (!opt_image)
        return usage_error("--image PATH or --tpmstate is required");
    if (opt_daemon && opt_foreground)
        return usage_error("--daemon and --foreground exclude each other");
    if ((rc = parse_flags()) != RC_OK || (rc = parse_log()) != RC_OK)
        return rc;
    if (opt_pid && opt_pid_file)
        return usage_error("--pid and --pid-file exclude each other");
    if (opt_pid && g_str_has_prefix(opt_pid, "fd=")) {
        unsigned long v;

        if (!parse_uint(opt_pid + 3, 10, INT_MAX, &v) || fcntl((int)v, F_GETFD) < 0)
            return usage_error("--pid: %s is not an open descriptor", opt_pid);
        pid_fd = (int)v;
    } else if (opt_pid && (!g_str_has_prefix(opt_pid, "file=") || !opt_pid[5])) {
        return usage_error("--pid: give file=PATH or fd=N");
    } else if (opt_pid || opt_pid_file) {
        pid_path = g_canonicalize_filename(opt_pid ? opt_pid + 5 : opt_pid_file, NULL);
    }
    terminate_on_data_close = opt_terminate;
    if (opt_stock_commit)
        open_flags |= NVTPM_OPEN_STOCK_COMMIT;

    /* --daemon leaves the working directory: make a plain path absolute. */
    if (!strchr(opt_image, ':')) {
        char *abs = g_canonicalize_filename(opt_image, NULL);

        g_free(opt_image);
        opt_image = abs;
    }
    d.endpoints = g_ptr_array_new_with_free_func(endpoint_free);
    d.conns = g_ptr_array_new_with_free_func(conn_free);
    if (opt_tcp_port != -1) {
        endpoint *e;
        char spec[64];

        if (opt_tcp_port < 1 || opt_tcp_port > 65534)
            return usage_error("--tcp-port: bad port %d (the control channel uses N+1)",
                               opt_tcp_port);
        for (int k = 0; k < 2; k++) {
            snprintf(spec, sizeof(spec), "type=tcp,port=%d", opt_tcp_port + k);
            e = parse_endpoint("--tcp-port", spec, k ? CHAN_CTRL : CHAN_DATA);
            if (!e)
                return RC_USAGE;
            g_ptr_array_add(d.endpoints, e);
        }
    }
    if (opt_port) {
        unsigned long v;
        char *spec;
        endpoint *e;

        if (!parse_uint(opt_port, 10, 65535, &v) || v == 0)
            return usage_error("--port: bad port '%s'", opt_port);
        spec = g_strdup_printf("type=tcp,port=%lu,disconnect", v);
        e = parse_endpoint("--port", spec, CHAN_DATA);
        g_free(spec);
        if (!e)
            return RC_USAGE;
        g_ptr_array_add(d.endpoints, e);
    }
    if (opt_fd) {
        char *spec = g_strdup_printf("type=tcp,fd=%s", opt_fd);
        endpoint *e = parse_endpoint("--fd", spec, CHAN_DATA);

        g_free(spec);
        if (!e)
            return RC_USAGE;
        g_ptr_array_add(d.endpoints, e);
    }
    for (int k = 0; k < 2; k++) {
        for (gchar **s = k ? opt_ctrl : opt_server; s && *s; s++) {
            endpoint *e = parse_endpoint(k ? "--ctrl" : "--server", *s,
                                         k ? CHAN_CTRL : CHAN_DATA);

            if (!e)
                return RC_USAGE;
            g_ptr_array_add(d.endpoints, e);
        }
    }
    {
        bool data = false, unix_ctrl = false;

        for (guint i = 0; i < d.endpoints->len; i++) {
            endpoint *e = g_ptr_array_index(d.endpoints, i);

            data |= e->kind == CHAN_DATA;
            unix_ctrl |= e->kind == CHAN_CTRL && e->is_unix;
            /* swtpm: a data socket given by descriptor ends the daemon when it closes. */
            if (e->kind == CHAN_DATA && e->client)
                terminate_on_data_close = true;
        }
        if (!data && !unix_ctrl)
            return usage_error("no data channel: give --tcp-port, --server, or a UNIX --ctrl "
                               "for SET_DATAFD");
    }

    /* Signals: delivered only while the loop waits (ppoll), so a command
     * always runs to completion and its response goes out. */
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    /* Fork before the image is opened: its lock and the device thread
     * belong to the process that serves. */
    if (opt_daemon && daemonize(&ready_fd) < 0)
        return RC_FAIL;

    /* Listen before the TPM is up, as swtpm does: a client that connects
     * early waits in the backlog instead of polling for the port, and its
     * first command is read as soon as the TPM can answer.  Readiness (the
     * pid file, --daemon's parent exiting) still comes after. */
    for (guint i = 0; rc == RC_OK && i < d.endpoints->len; i++) {
        endpoint *e = g_ptr_array_index(d.endpoints, i);

        if (e->given_fd >= 0 && e->client) {
            /* A connection opened by our caller: served from the start. */
            conn *c = conn_new(&d, e->given_fd, e->kind);

            c->unix_ctrl = e->is_unix && e->kind == CHAN_CTRL;
            c->disconnect = e->disconnect;
            fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
            fcntl(c->fd, F_SETFD, FD_CLOEXEC);
            logm(L_CONN, "%s connection %lu on %s", chan_name[c->kind], c->id, e->label);
            g_ptr_array_remove_index(d.endpoints, i--);
        } else if (e->given_fd >= 0) {
            /* A listening socket opened by our caller. */
            e->fd = e->given_fd;
            fcntl(e->fd, F_SETFL, fcntl(e->fd, F_GETFL) | O_NONBLOCK);
            fcntl(e->fd, F_SETFD, FD_CLOEXEC);
        } else if ((e->is_unix ? listen_unix(e) : listen_tcp(e)) < 0) {
            rc = RC_FAIL;
        }
    }
    if (rc == RC_OK) {
        r = open_tpm(open_flags, &d.tpm);
        if (r < 0) {
            fatal("cannot open image %s: %s%s", opt_image, lib_msg(r),
                  r == -EBUSY ? " (is another nvram-tpmd serving it?)" : "");
            rc = RC_FAIL;
        }
    }
    if (rc == RC_OK && ts.mode_set && chmod(opt_image, ts.mode) < 0) {
        fatal("--tpmstate: cannot set mode %04o on %s: %s", ts.mode, opt_image,
              g_strerror(errno));
        rc = RC_FAIL;
    }
    if (rc == RC_OK && !flag_need_init && power_on(&d, "start") != TPM_SUCCESS) {
        fatal("cannot power the TPM on: %s", nvtpm_last_error());
        rc = RC_FAIL;
    }
    if (rc == RC_OK && (flag_startup_clear || flag_startup_state) &&
        startup_clear(&d, flag_startup_state) < 0)
        rc = RC_FAIL;
    if (rc == RC_OK && write_pid_file() < 0)
        rc = RC_FAIL;
    if (rc == RC_OK) {
        GString *where = g_string_new(NULL);

        for (guint i = 0; i < d.endpoints->len; i++) {
            endpoint *e = g_ptr_array_index(d.endpoints, i);

            g_string_append_printf(where, "%s%s %s", i ? ", " : "", chan_name[e->kind],
                                   e->label);
        }
        logm(L_INFO, "serving image %s (%s%s): %s", opt_image,
             opt_stock_commit ? "stock tdb commits" : "journaled commits",
             flag_need_init ? ", waiting for INIT" : "", where->str);
        g_string_free(where, TRUE);
        if (ready_fd >= 0)
            detach(ready_fd);
        if (nvtpm_run_on_device(d.tpm, serve_on_device, &d) < 0)
            rc = RC_FAIL;
        if (got_signal)
            logm(L_INFO, "%s: finishing", got_signal == SIGINT ? "SIGINT" : "SIGTERM");
        flush_all(&d);
    }

    /* Stop listening, drop the clients, drain the image. */
    g_ptr_array_set_size(d.endpoints, 0);
    g_ptr_array_set_size(d.conns, 0);
    r = d.tpm ? nvtpm_close(d.tpm) : 0;
    if (r < 0) {
        logm(L_ERR, "closing image %s: %s", opt_image, lib_msg(r));
        if (ready_fd >= 0)
            fatal("closing image %s: %s", opt_image, lib_msg(r));
        rc = RC_FAIL;
    } else if (d.tpm) {
        logm(L_INFO, "image %s closed; %" PRIu64 " TPM commands served%s", opt_image,
             d.commands, d.failures ? ", some failed (see above)" : "");
    }
    if (pid_written)
        unlink(pid_path);
    g_ptr_array_unref(d.endpoints);
    g_ptr_array_unref(d.conns);
    g_free(pid_path);
    tpmd_tpmstate_clear(&ts);
    return rc;
}
