/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qkit-nbd: export a disk image over NBD, a drop-in for qemu-nbd (same options,
 * defaults and messages). The serving is src/nbd/server*.c; this file parses
 * options, opens the image, sets up the listener and prints.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nbd/list.h"
#include "nbd/nbd-client.h"
#include "nbd/nbd-proto.h"
#include "nbd/objects.h"
#include "nbd/server.h"
#include "qkit/block.h"
#include "qkit/cutils.h"
#include "qkit/error.h"
#include "qkit/opts.h"


#define QKIT_NBD_VERSION "qemu-nbd 7.2.22 (qkit 0.1.0)\n"
#define DEFAULT_PORT "10809"
/* Longest export name and description the protocol carries. */
#define MAX_NBD_STRING 4096

/* Options that have no short form. */
enum {
    OPT_CACHE = 256,
    OPT_AIO,
    OPT_DISCARD,
    OPT_DETECT_ZEROES,
    OPT_IMAGE_OPTS,
    OPT_OBJECT,
    OPT_TLSCREDS,
    OPT_TLSAUTHZ,
    OPT_TLSHOSTNAME,
    OPT_FORK,
    OPT_PID_FILE,
    OPT_SELINUX_LABEL,
};

/* Everything the command line says. */
typedef struct NbdToolOpts {
    const char *bind;
    const char *port;
    const char *sockpath;
    const char *export_name;
    const char *description;
    const char *fmt;
    const char *device;
    const char *snapshot_param;
    const char *bitmap;
    const char *tls_creds;
    const char *tls_authz;
    const char *tls_hostname;
    const char *pid_file;
    int shared;
    bool persistent;
    bool read_only;
    bool snapshot;
    bool disconnect;
    bool image_opts;
    bool fork_process;
    bool alloc_depth;
    bool list;
    bool verbose;
    uint64_t offset;
    int flags;
    NbdDetectZeroes detect_zeroes;
} NbdToolOpts;

/* The loop a termination signal stops (the handler can reach nothing else). */
static NbdServerLoop *signal_loop;

/* SIGTERM, SIGINT, SIGHUP: stop serving and exit cleanly. */
static void nbd_tool_on_signal(int sig)
{
    if (signal_loop) {
        nbd_server_loop_stop(signal_loop);
    }
}

/* -h */
static void nbd_tool_usage(const char *name)
{
    printf(
"Usage: %1$s [OPTIONS] FILE\n"
"  or:  %1$s -L [OPTIONS]\n"
"QEMU Disk Network Block Device Utility\n"
"\n"
"  -h, --help                display this help and exit\n"
"  -V, --version             output version information and exit\n"
"\n"
"Connection properties:\n"
"  -p, --port=PORT           port to listen on (default `10809')\n"
"  -b, --bind=IFACE          interface to bind to (default `0.0.0.0')\n"
"  -k, --socket=PATH         path to the unix socket\n"
"                            (default '/var/lock/qemu-nbd-DEVICE')\n"
"  -e, --shared=NUM          device can be shared by NUM clients (default '1')\n"
"  -t, --persistent          don't exit on the last connection\n"
"  -v, --verbose             display extra debugging information\n"
"  -x, --export-name=NAME    expose export by name (default is empty string)\n"
"  -D, --description=TEXT    export a human-readable description\n"
"\n"
"Exposing part of the image:\n"
"  -o, --offset=OFFSET       offset into the image\n"
"  -A, --allocation-depth    expose the allocation depth\n"
"  -B, --bitmap=NAME         expose a persistent dirty bitmap\n"
"\n"
"General purpose options:\n"
"  -L, --list                list exports available from another NBD server\n"
"  --object type,id=ID,...   define an object such as 'secret' for providing\n"
"                            passwords and/or encryption keys\n"
"  --tls-creds=ID            use id of an earlier --object to provide TLS\n"
"  --tls-authz=ID            use id of an earlier --object to provide\n"
"                            authorization\n"
"  -T, --trace [[enable=]<pattern>][,events=<file>][,file=<file>]\n"
"                            specify tracing options\n"
"  --fork                    fork off the server process and exit the parent\n"
"                            once the server is running\n"
"  --pid-file=PATH           store the server's process ID in the given file\n"
"  --selinux-label=LABEL     set SELinux process label on listening socket\n"
"\n"
"Kernel NBD client support:\n"
"  -c, --connect=DEV         connect FILE to the local NBD device DEV\n"
"  -d, --disconnect          disconnect the specified device\n"
"\n"
"Block device options:\n"
"  -f, --format=FORMAT       set image format (raw, qcow2, ...)\n"
"  -r, --read-only           export read-only\n"
"  -s, --snapshot            use FILE as an external snapshot, create a temporary\n"
"                            file with backing_file=FILE, redirect the write to\n"
"                            the temporary one\n"
"  -l, --load-snapshot=SNAPSHOT_PARAM\n"
"                            load an internal snapshot inside FILE and export it\n"
"                            as an read-only device, SNAPSHOT_PARAM format is\n"
"                            'snapshot.id=[ID],snapshot.name=[NAME]', or\n"
"                            '[ID_OR_NAME]'\n"
"  -n, --nocache             disable host cache\n"
"      --cache=MODE          set cache mode used to access the disk image, the\n"
"                            valid options are: 'none', 'writeback' (default),\n"
"                            'writethrough', 'directsync' and 'unsafe'\n"
"      --aio=MODE            set AIO mode (native, io_uring or threads)\n"
"      --discard=MODE        set discard mode (ignore, unmap)\n"
"      --detect-zeroes=MODE  set detect-zeroes mode (off, on, unmap)\n"
"      --image-opts          treat FILE as a full set of image options\n"
"\n"
"See <https://qemu.org/contribute/report-a-bug> for how to report bugs.\n"
"More information on the QEMU project at <https://qemu.org>.\n", name);
}

/* A usage error: QEMU's message, then the pointer to --help. */
static int nbd_tool_bad_usage(const char *msg)
{
    error_report("%s", msg);
    fprintf(stderr, "Try `%s --help' for more information.\n", error_get_progname());
    return 1;
}

/* Parse the command line into o; returns 0, or the exit status to stop with. */
static int nbd_tool_parse(int argc, char **argv, NbdToolOpts *o, bool *stop)
{
    static const char sopt[] = "hVb:o:p:rsnc:dvk:e:f:tl:x:T:D:AB:L";
    static const struct option lopt[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "bind", required_argument, NULL, 'b' },
        { "port", required_argument, NULL, 'p' },
        { "socket", required_argument, NULL, 'k' },
        { "offset", required_argument, NULL, 'o' },
        { "read-only", no_argument, NULL, 'r' },
        { "allocation-depth", no_argument, NULL, 'A' },
        { "bitmap", required_argument, NULL, 'B' },
        { "connect", required_argument, NULL, 'c' },
        { "disconnect", no_argument, NULL, 'd' },
        { "list", no_argument, NULL, 'L' },
        { "snapshot", no_argument, NULL, 's' },
        { "load-snapshot", required_argument, NULL, 'l' },
        { "nocache", no_argument, NULL, 'n' },
        { "cache", required_argument, NULL, OPT_CACHE },
        { "aio", required_argument, NULL, OPT_AIO },
        { "discard", required_argument, NULL, OPT_DISCARD },
        { "detect-zeroes", required_argument, NULL, OPT_DETECT_ZEROES },
        { "shared", required_argument, NULL, 'e' },
        { "format", required_argument, NULL, 'f' },
        { "persistent", no_argument, NULL, 't' },
        { "verbose", no_argument, NULL, 'v' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "export-name", required_argument, NULL, 'x' },
        { "description", required_argument, NULL, 'D' },
        { "tls-creds", required_argument, NULL, OPT_TLSCREDS },
        { "tls-hostname", required_argument, NULL, OPT_TLSHOSTNAME },
        { "tls-authz", required_argument, NULL, OPT_TLSAUTHZ },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "trace", required_argument, NULL, 'T' },
        { "fork", no_argument, NULL, OPT_FORK },
        { "pid-file", required_argument, NULL, OPT_PID_FILE },
        { "selinux-label", required_argument, NULL, OPT_SELINUX_LABEL },
        { NULL, 0, NULL, 0 },
    };
    bool seen_cache = false, seen_aio = false;
    bool seen_per_device = false;
    const char *detect = NULL;
    Error *err = NULL;
    int c;

    *stop = false;
    while ((c = getopt_long(argc, argv, sopt, lopt, NULL)) != -1) {
        switch (c) {
        case 's':
            o->snapshot = true;
            break;
        case 'n':
            optarg = (char *)"none";
            /* fall through */
        case OPT_CACHE:
            if (seen_cache) {
                error_report("-n and --cache can only be specified once");
                return 1;
            }
            seen_cache = true;
            if (bdrv_parse_cache_mode(optarg, &o->flags) < 0) {
                error_report("Invalid cache mode `%s'", optarg);
                return 1;
            }
            break;
        case OPT_AIO:
            if (seen_aio) {
                error_report("--aio can only be specified once");
                return 1;
            }
            seen_aio = true;
            if (bdrv_parse_aio(optarg, &o->flags) < 0) {
                error_report("Invalid aio mode '%s'", optarg);
                return 1;
            }
            break;
        case OPT_DISCARD:
            if (bdrv_parse_discard(optarg, &o->flags) < 0) {
                error_report("Invalid discard mode `%s'", optarg);
                return 1;
            }
            break;
        case OPT_DETECT_ZEROES:
            detect = optarg;
            if (!strcmp(optarg, "off")) {
                o->detect_zeroes = NBD_DETECT_ZEROES_OFF;
            } else if (!strcmp(optarg, "on")) {
                o->detect_zeroes = NBD_DETECT_ZEROES_ON;
            } else if (!strcmp(optarg, "unmap")) {
                o->detect_zeroes = NBD_DETECT_ZEROES_UNMAP;
            } else {
                error_report("Failed to parse detect_zeroes mode: invalid parameter "
                             "value: %s", optarg);
                return 1;
            }
            break;
        case 'b':
            o->bind = optarg;
            break;
        case 'p':
            o->port = optarg;
            break;
        case 'o': {
            uint64_t v;
            if (qkit_strtou64(optarg, &v) < 0 || (int64_t)v < 0) {
                error_report("Invalid offset '%s'", optarg);
                return 1;
            }
            o->offset = v;
            seen_per_device = true;
            break;
        }
        case 'l':
            o->snapshot_param = optarg;
            o->read_only = true;
            break;
        case 'r':
            o->read_only = true;
            break;
        case 'A':
            o->alloc_depth = true;
            break;
        case 'B':
            o->bitmap = optarg;
            seen_per_device = true;
            break;
        case 'k':
            o->sockpath = optarg;
            if (optarg[0] != '/') {
                error_report("socket path must be absolute");
                return 1;
            }
            break;
        case 'd':
            o->disconnect = true;
            break;
        case 'c':
            o->device = optarg;
            break;
        case 'e': {
            int64_t v;
            if (qkit_strtoi64(optarg, &v) < 0 || v < 0 || v > INT32_MAX) {
                error_report("Invalid shared device number '%s'", optarg);
                return 1;
            }
            o->shared = (int)v;
            break;
        }
        case 'f':
            o->fmt = optarg;
            break;
        case 't':
            o->persistent = true;
            break;
        case 'x':
            o->export_name = optarg;
            if (strlen(optarg) > MAX_NBD_STRING) {
                error_report("export name '%s' too long", optarg);
                return 1;
            }
            seen_per_device = true;
            break;
        case 'D':
            o->description = optarg;
            if (strlen(optarg) > MAX_NBD_STRING) {
                error_report("export description '%s' too long", optarg);
                return 1;
            }
            seen_per_device = true;
            break;
        case 'v':
            o->verbose = true;
            break;
        case 'V':
            printf(QKIT_NBD_VERSION);
            *stop = true;
            return 0;
        case 'h':
            nbd_tool_usage(error_get_progname());
            *stop = true;
            return 0;
        case '?':
            /* getopt has printed what was wrong, under argv[0] as QEMU's does. */
            error_report("Try `%s --help' for more information.", error_get_progname());
            return 1;
        case 'T':
            break;   /* qkit has no trace events: accepted, nothing to trace */
        case 'L':
            o->list = true;
            break;
        case OPT_OBJECT: {
            /* "--object help" and "TYPE,help" print and end the program, as in QEMU. */
            int ret = user_object_add_or_help(optarg, &err);
            if (ret > 0) {
                exit(EXIT_SUCCESS);
            }
            if (ret < 0) {
                error_report_err(err);
                return 1;
            }
            break;
        }
        case OPT_TLSCREDS:
            o->tls_creds = optarg;
            break;
        case OPT_TLSHOSTNAME:
            o->tls_hostname = optarg;
            break;
        case OPT_TLSAUTHZ:
            o->tls_authz = optarg;
            break;
        case OPT_IMAGE_OPTS:
            o->image_opts = true;
            break;
        case OPT_FORK:
            o->fork_process = true;
            break;
        case OPT_PID_FILE:
            o->pid_file = optarg;
            break;
        case OPT_SELINUX_LABEL:
            error_report("SELinux support not enabled in this binary");
            return 1;
        }
    }
    if (o->list) {
        if (seen_per_device || o->device || o->disconnect || o->fmt || o->tls_authz) {
            error_report("List mode is incompatible with per-device settings");
            return 1;
        }
        if (argc != optind) {
            error_report("List mode is incompatible with a file name");
            return 1;
        }
        if (o->tls_hostname && !o->tls_creds) {
            error_report("--tls-hostname is not permitted without --tls-creds");
            return 1;
        }
        return 0;
    }
    if (o->tls_hostname) {
        error_report("--tls-hostname is only permitted with --list");
        return 1;
    }
    if (argc - optind != 1) {
        return nbd_tool_bad_usage("Invalid number of arguments");
    }
    if (o->tls_authz && !o->tls_creds) {
        error_report("--tls-authz is not permitted without --tls-creds");
        return 1;
    }
    if (o->image_opts && o->fmt) {
        error_report("--image-opts and -f are mutually exclusive");
        return 1;
    }
    if (detect && o->detect_zeroes == NBD_DETECT_ZEROES_UNMAP &&
        !(o->flags & BDRV_O_UNMAP)) {
        error_report("setting detect-zeroes to unmap is not allowed without setting "
                     "discard operation to unmap");
        return 1;
    }
    if (o->tls_creds && o->device) {
        error_report("TLS is not supported with a host device");
        return 1;
    }
    return 0;
}

/* Names of transmission flag bits 1.. as -L prints them (bit 0 is implied). */
static const char *const nbd_tool_flag_names[] = {
    "readonly", "flush", "fua", "rotational", "trim", "zeroes", "df", "multi", "resize",
    "cache", "fast-zero",
};

/* -L: connect to a server and describe its exports as qemu-nbd does. */
static int nbd_tool_list(NbdToolOpts *o)
{
    Error *err = NULL;
    NbdListExport *e = NULL;
    const NbdTlsClientCreds *creds = NULL;
    const char *host = o->bind ? o->bind : "0.0.0.0";
    if (o->tls_creds) {
        const UserObject *obj = user_object_tls_creds(o->tls_creds, false, &err);
        if (!obj) {
            error_prepend(&err, "Failed to get TLS creds: ");
            error_report_err(err);
            return EXIT_FAILURE;
        }
        creds = obj->client_creds;
    }
    int fd = o->sockpath ? nbd_client_connect_unix(o->sockpath, &err)
                         : nbd_client_connect_inet(host, o->port ? o->port : DEFAULT_PORT,
                                                   &err);
    if (fd < 0) {
        error_report_err(err);
        return EXIT_FAILURE;
    }
    /* The name the certificate must carry: --tls-hostname, else the TCP host. */
    const char *hostname = o->tls_hostname ? o->tls_hostname
                                           : (o->sockpath ? NULL : host);
    int n = nbd_list_exports(fd, creds, hostname, &e, &err);
    if (n < 0) {
        error_report_err(err);
        return EXIT_FAILURE;
    }
    printf("exports available: %d\n", n);
    for (int i = 0; i < n; i++) {
        printf(" export: '%s'\n", e[i].name);
        if (e[i].description && *e[i].description) {
            printf("  description: %s\n", e[i].description);
        }
        if (e[i].flags & NBD_FLAG_HAS_FLAGS) {
            printf("  size:  %" PRIu64 "\n", e[i].size);
            printf("  flags: 0x%x (", e[i].flags);
            for (size_t b = 0; b < sizeof(nbd_tool_flag_names) / sizeof(char *); b++) {
                if (e[i].flags & (2u << b)) {
                    printf(" %s", nbd_tool_flag_names[b]);
                }
            }
            printf(" )\n");
        }
        if (e[i].min_block) {
            printf("  min block: %u\n", e[i].min_block);
            printf("  opt block: %u\n", e[i].opt_block);
            printf("  max block: %u\n", e[i].max_block);
        }
        printf("  available meta contexts: %d\n", e[i].nb_contexts);
        for (int j = 0; j < e[i].nb_contexts; j++) {
            printf("   %s\n", e[i].contexts[j]);
        }
    }
    nbd_list_free(e, n);
    return EXIT_SUCCESS;
}

/* Print why a client's connection failed; called from client threads. */
static void nbd_tool_client_error(void *opaque, Error *err)
{
    error_report_err(err);
}

/* Open the image as the options say; prints the error itself. */
static BlockDriverState *nbd_tool_open(NbdToolOpts *o, const char *name)
{
    Error *err = NULL;
    json_t *opts = NULL;
    BlockDriverState *bs = NULL;
    int flags = o->flags | (o->read_only ? 0 : BDRV_O_RDWR);
    const char *fname = name;

    if ((flags & BDRV_O_NATIVE_AIO) && !(flags & BDRV_O_NOCACHE)) {
        error_setg(&err, "aio=native was specified, but it requires cache.direct=on, "
                   "which was not specified.");
        goto fail;
    }
    if (o->image_opts) {
        opts = qdict_from_keyval(name, &err);
        if (!opts) {
            goto fail;
        }
        fname = NULL;
    }
    bool probing = !o->fmt && !(opts && qdict_get_str(opts, "driver"));
    if (o->snapshot) {
        char *overlay = bdrv_create_temp_overlay(fname, opts, o->fmt, flags, &err);
        if (!overlay) {
            goto fail;
        }
        bs = bdrv_open(overlay, "qcow2", NULL, flags | BDRV_O_RDWR, &err);
        unlink(overlay);
        free(overlay);
        probing = false;
    } else {
        bs = bdrv_open(fname, o->fmt, opts, flags, &err);
        opts = NULL;
    }
    if (!bs) {
        goto fail;
    }
    if (probing && !bs->read_only && !strcmp(bdrv_get_format_name(bs), "raw")) {
        fprintf(stderr, "WARNING: Image format was not specified for '%s' and probing "
                "guessed raw.\n"
                "         Automatically detecting the format is dangerous for raw images, "
                "write operations on block 0 will be restricted.\n"
                "         Specify the 'raw' format explicitly to remove the restrictions.\n",
                bs->filename);
    }
    json_decref(opts);
    return bs;
fail:
    error_prepend(&err, "Failed to blk_new_open '%s': ", name);
    error_report_err(err);
    json_decref(opts);
    return NULL;
}

/* -l: load the internal snapshot read-only, with qemu-nbd's messages; -1 on failure. */
static int nbd_tool_load_snapshot(BlockDriverState *bs, const char *param)
{
    BdrvSnapshotParam sp = { 0 };
    Error *err = NULL;
    int ret = -1;
    if (bdrv_snapshot_param_parse(&sp, param, &err) < 0) {
        error_report_err(err);
        error_report("Failed in parsing snapshot param `%s'", param);
    } else if (bdrv_snapshot_param_load(bs, &sp, &err) < 0) {
        error_prepend(&err, "Failed to load snapshot: ");
        error_report_err(err);
    } else {
        ret = 0;
    }
    bdrv_snapshot_param_free(&sp);
    return ret;
}

/* The kernel client of -c: handshake over our end of the socketpair, then attach. */
typedef struct KernelClient {
    int dev_fd;
    int sock;
    const char *device;
    const char *name;
    bool verbose;
} KernelClient;

/* Thread body for -c: runs until the device is disconnected. */
static void *nbd_tool_kernel_thread(void *arg)
{
    KernelClient *k = arg;
    Error *err = NULL;
    uint64_t size;
    uint16_t flags;

    if (nbd_local_client_handshake(k->sock, k->name, &size, &flags, &err) < 0 ||
        nbd_kernel_attach(k->dev_fd, k->sock, size, flags, &err) < 0) {
        error_report_err(err);
    }
    close(k->sock);
    close(k->dev_fd);
    return NULL;
}

/* --fork: the parent waits here until the child says it serves, then exits. */
static int nbd_tool_fork(int *ready_fd)
{
    int p[2];
    if (pipe(p) < 0) {
        error_report("Failed to create pipe: %s", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        error_report("Failed to fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        close(p[0]);
        *ready_fd = p[1];
        setsid();
        return 0;
    }
    close(p[1]);
    char c;
    ssize_t n;
    do {
        n = read(p[0], &c, 1);
    } while (n < 0 && errno == EINTR);
    exit(n == 1 ? EXIT_SUCCESS : EXIT_FAILURE);
}

/*
 * The server is up: tell a waiting --fork parent. Errors still go to stderr, as
 * qemu-nbd's do; stdin and stdout are let go so a caller's pipe sees its end.
 */
static void nbd_tool_ready(int ready_fd)
{
    if (ready_fd < 0) {
        return;
    }
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        close(null);
    }
    char c = 1;
    ssize_t n = write(ready_fd, &c, 1);
    (void)n;
    close(ready_fd);
}

/* Write our pid to --pid-file. */
static int nbd_tool_write_pidfile(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        error_report("Cannot open pid file: %s", strerror(errno));
        return -1;
    }
    fprintf(f, "%d\n", (int)getpid());
    fclose(f);
    return 0;
}

/* The TLS part of the server configuration from --tls-creds / --tls-authz. */
static int nbd_tool_setup_tls(NbdToolOpts *o, NbdServer *srv)
{
    if (!o->tls_creds) {
        return 0;
    }
    Error *err = NULL;
    const UserObject *obj = user_object_tls_creds(o->tls_creds, true, &err);
    if (!obj) {
        error_prepend(&err, "Failed to get TLS creds: ");
        error_report_err(err);
        return -1;
    }
    srv->tls = obj->server_creds;
    if (o->tls_authz) {
        const UserObject *az = user_object_find(o->tls_authz);
        if (!az || az->type != USER_OBJECT_AUTHZ_SIMPLE) {
            error_report("No authorization object with id '%s'", o->tls_authz);
            return -1;
        }
        /* The server only reads the names; the registry owns them until exit. */
        srv->authz_identities = (char **)&az->identity;
        srv->nb_authz_identities = 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    NbdToolOpts o = { .shared = 1 };
    NbdServer srv = { 0 };
    NbdExport *exp = NULL;
    NbdServerLoop *loop = NULL;
    BlockDriverState *bs = NULL;
    Error *err = NULL;
    int listen_fd = -1, ready_fd = -1, ret = EXIT_FAILURE;
    bool stop;
    pthread_t kernel_tid;
    bool kernel_started = false;

    error_set_progname(argv[0]);
    signal(SIGPIPE, SIG_IGN);
    int rc = nbd_tool_parse(argc, argv, &o, &stop);
    if (rc != 0 || stop) {
        user_object_del_all();
        return rc;
    }
    if (o.list) {
        ret = nbd_tool_list(&o);
        goto out;
    }
    const char *name = argv[optind];
    if (o.disconnect) {
        if (nbd_kernel_disconnect(name, &err) < 0) {
            error_report_err(err);
            goto out;
        }
        printf("%s disconnected\n", name);
        ret = EXIT_SUCCESS;
        goto out;
    }
    if (nbd_tool_setup_tls(&o, &srv) < 0) {
        goto out;
    }
    if (o.fork_process && nbd_tool_fork(&ready_fd) < 0) {
        goto out;
    }
    if (o.sockpath) {
        listen_fd = nbd_listen_unix(o.sockpath, &err);
    } else if (!o.device) {
        listen_fd = nbd_listen_tcp(o.bind, o.port ? o.port : DEFAULT_PORT, &err);
    }
    if (err) {
        error_report_err(err);
        goto out;
    }
    bs = nbd_tool_open(&o, name);
    if (!bs) {
        goto out;
    }
    if (o.snapshot_param && nbd_tool_load_snapshot(bs, o.snapshot_param) < 0) {
        goto out;
    }
    NbdExportOptions eo = {
        .name = o.export_name ? o.export_name : "",
        .description = o.description,
        .read_only = o.read_only,
        .allocation_depth = o.alloc_depth,
        .bitmap = o.bitmap,
        .discard = (o.flags & BDRV_O_UNMAP) != 0,
        .detect_zeroes = o.detect_zeroes,
        .multi_conn = o.shared != 1,
        .offset = o.offset,
    };
    exp = nbd_export_new(bs, &eo, &err);
    if (!exp) {
        error_report_err(err);
        goto out;
    }
    srv.exports = &exp;
    srv.nb_exports = 1;
    loop = nbd_server_loop_new(&srv, listen_fd, o.shared, o.persistent,
                               nbd_tool_client_error, NULL, &err);
    if (!loop) {
        error_report_err(err);
        goto out;
    }
    if (o.device) {
        static KernelClient k;
        int sv[2];
        k.dev_fd = nbd_kernel_open(o.device, &err);
        if (k.dev_fd < 0) {
            error_report_err(err);
            goto out;
        }
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
            nbd_server_loop_add_client(loop, sv[0], &err) < 0) {
            error_report("Failed to set up the kernel client: %s",
                         err ? error_get_pretty(err) : strerror(errno));
            error_free(err);
            close(k.dev_fd);
            goto out;
        }
        k.sock = sv[1];
        k.device = o.device;
        k.name = eo.name;
        k.verbose = o.verbose;
        if (pthread_create(&kernel_tid, NULL, nbd_tool_kernel_thread, &k) != 0) {
            error_report("Failed to start the kernel client thread");
            goto out;
        }
        kernel_started = true;
    }
    if (o.pid_file && nbd_tool_write_pidfile(o.pid_file) < 0) {
        goto out;
    }
    signal_loop = loop;
    struct sigaction sa = { .sa_handler = nbd_tool_on_signal };
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    nbd_tool_ready(ready_fd);
    ready_fd = -1;
    nbd_server_loop_run(loop);
    signal_loop = NULL;
    ret = EXIT_SUCCESS;
out:
    if (kernel_started) {
        pthread_join(kernel_tid, NULL);
    }
    nbd_server_loop_free(loop);
    nbd_export_free(exp);
    if (bs) {
        bdrv_unref(bs);
    }
    if (listen_fd >= 0) {
        close(listen_fd);
        if (o.sockpath && ret == EXIT_SUCCESS) {
            unlink(o.sockpath);
        }
    }
    if (o.pid_file && ret == EXIT_SUCCESS) {
        unlink(o.pid_file);
    }
    user_object_del_all();
    return ret;
}
