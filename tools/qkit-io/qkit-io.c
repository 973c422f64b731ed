/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qkit-io: main(), its options, opening images, the command table and the loop that
 * runs "-c" strings or prompt lines through it, with qemu-io's checks and messages.
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nbd/objects.h"
#include "qkit-io.h"
#include "qkit/cutils.h"
#include "qkit/qinfo.h"

#define QIO_VERSION_FMT "%s version 7.2.22 (qkit 0.1.0)\n" \
    "Copyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n"

/* Where -s puts its temporary overlay unless TMPDIR says otherwise (as QEMU). */

enum {
    QIO_OPT_OBJECT = 256,
    QIO_OPT_IMAGE_OPTS,
};

/* The usage text; both %s are the program name. */
static const char qio_usage_fmt[] =
"Usage: %s [OPTIONS]... [-c STRING]... [file]\n"
"QEMU Disk exerciser\n"
"\n"
"  --object OBJECTDEF   define an object such as 'secret' for\n"
"                       passwords and/or encryption keys\n"
"  --image-opts         treat file as option string\n"
"  -c, --cmd STRING     execute command with its arguments\n"
"                       from the given string\n"
"  -f, --format FMT     specifies the block driver to use\n"
"  -r, --read-only      export read-only\n"
"  -s, --snapshot       use snapshot file\n"
"  -n, --nocache        disable host cache, short for -t none\n"
"  -C, --copy-on-read   enable copy-on-read\n"
"  -m, --misalign       misalign allocations for O_DIRECT\n"
"  -k, --native-aio     use kernel AIO implementation\n"
"                       (Linux only, prefer use of -i)\n"
"  -i, --aio=MODE       use AIO mode (threads, native or io_uring)\n"
"  -t, --cache=MODE     use the given cache mode for the image\n"
"  -d, --discard=MODE   use the given discard mode for the image\n"
"  -T, --trace [[enable=]<pattern>][,events=<file>][,file=<file>]\n"
"                       specify tracing options\n"
"                       see qemu-img(1) man page for full description\n"
"  -U, --force-share    force shared permissions\n"
"  -h, --help           display this help and exit\n"
"  -V, --version        output version information and exit\n"
"\n"
"See '%s -c help' for information on available commands.\n"
"\n"
"See <https://qemu.org/contribute/report-a-bug> for how to report bugs.\n"
"More information on the QEMU project at <https://qemu.org>.\n";

static int qio_help_f(QioState *s, int argc, char **argv);

const QioCmd qio_cmd_read = {
    "read", "r", qio_read_f, 2, -1, true, false,
    "[-abCqv] [-P pattern [-s off] [-l len]] off len",
    "reads a number of bytes at a specified offset", qio_read_help,
};
const QioCmd qio_cmd_readv = {
    "readv", NULL, qio_readv_f, 2, -1, true, false,
    "[-Cqv] [-P pattern] off len [len..]",
    "reads a number of bytes at a specified offset", qio_readv_help,
};
const QioCmd qio_cmd_write = {
    "write", "w", qio_write_f, 2, -1, true, true,
    "[-bcCfnquz] [-P pattern | -s source_file] off len",
    "writes a number of bytes at a specified offset", qio_write_help,
};
const QioCmd qio_cmd_writev = {
    "writev", NULL, qio_writev_f, 2, -1, true, true,
    "[-Cfq] [-P pattern] off len [len..]",
    "writes a number of bytes at a specified offset", qio_writev_help,
};
const QioCmd qio_cmd_aio_read = {
    "aio_read", NULL, qio_aio_read_f, 2, -1, true, false,
    "[-Ciqv] [-P pattern] off len [len..]",
    "asynchronously reads a number of bytes", qio_aio_read_help,
};
const QioCmd qio_cmd_aio_write = {
    "aio_write", NULL, qio_aio_write_f, 2, -1, true, true,
    "[-Cfiquz] [-P pattern] off len [len..]",
    "asynchronously writes a number of bytes", qio_aio_write_help,
};
const QioCmd qio_cmd_discard = {
    "discard", "d", qio_discard_f, 2, -1, true, true,
    "[-Cq] off len",
    "discards a number of bytes at a specified offset", qio_discard_help,
};
const QioCmd qio_cmd_truncate = {
    "truncate", "t", qio_truncate_f, 1, 3, true, true,
    "[-m prealloc_mode] off",
    "truncates the current file at the given offset", NULL,
};
const QioCmd qio_cmd_open = {
    "open", "o", qio_open_f, 1, -1, false, false,
    "[-rsCnkU] [-t cache] [-d discard] [-o options] [path]",
    "open the file specified by path", qio_open_help,
};
const QioCmd qio_cmd_reopen = {
    "reopen", NULL, qio_reopen_f, 0, -1, true, false,
    "[(-r|-w)] [-c cache] [-o options]",
    "reopens an image with new options", qio_reopen_help,
};

static const QioCmd qio_cmd_abort = {
    "abort", NULL, qio_abort_f, 0, 0, false, false,
    NULL, "simulate a program crash using abort(3)", NULL,
};
static const QioCmd qio_cmd_aio_flush = {
    "aio_flush", NULL, qio_aio_flush_f, 0, 0, true, false,
    NULL, "completes all outstanding aio requests", NULL,
};
static const QioCmd qio_cmd_alloc = {
    "alloc", "a", qio_alloc_f, 1, 2, true, false,
    "offset [count]", "checks if offset is allocated in the file", NULL,
};
static const QioCmd qio_cmd_break = {
    "break", NULL, qio_break_f, 2, 2, true, false,
    "event tag", "sets a breakpoint on event and tags the stopped request as tag", NULL,
};
static const QioCmd qio_cmd_close = {
    "close", "c", qio_close_f, 0, 0, true, false,
    NULL, "close the current open file", NULL,
};
static const QioCmd qio_cmd_flush = {
    "flush", "f", qio_flush_f, 0, 0, true, false,
    NULL, "flush all in-core file state to disk", NULL,
};
static const QioCmd qio_cmd_help = {
    "help", "?", qio_help_f, 0, 1, false, false,
    "[command]", "help for one or all commands", NULL,
};
static const QioCmd qio_cmd_info = {
    "info", "i", qio_info_f, 0, 0, true, false,
    NULL, "prints information about the current file", NULL,
};
static const QioCmd qio_cmd_length = {
    "length", "l", qio_length_f, 0, 0, true, false,
    NULL, "gets the length of the current file", NULL,
};
static const QioCmd qio_cmd_map = {
    "map", NULL, qio_map_f, 0, 0, true, false,
    "", "prints the allocated areas of a file", NULL,
};
static const QioCmd qio_cmd_quit = {
    "quit", "q", qio_quit_f, 0, -1, false, false,
    NULL, "exit the program", NULL,
};
static const QioCmd qio_cmd_remove_break = {
    "remove_break", NULL, qio_remove_break_f, 1, 1, true, false,
    "tag", "remove a breakpoint by tag", NULL,
};
static const QioCmd qio_cmd_resume = {
    "resume", NULL, qio_resume_f, 1, 1, true, false,
    "tag", "resumes the request tagged as tag", NULL,
};
static const QioCmd qio_cmd_sigraise = {
    "sigraise", NULL, qio_sigraise_f, 1, 1, false, false,
    "signal", "raises a signal", qio_sigraise_help,
};
static const QioCmd qio_cmd_sleep = {
    "sleep", NULL, qio_sleep_f, 1, 1, false, false,
    NULL, "waits for the given value in milliseconds", NULL,
};
static const QioCmd qio_cmd_wait_break = {
    "wait_break", NULL, qio_wait_break_f, 1, 1, true, false,
    "tag", "waits for the suspension of a request", NULL,
};

/* Sorted by name: "help" lists them in this order. */
static const QioCmd *const qio_cmds[] = {
    &qio_cmd_abort, &qio_cmd_aio_flush, &qio_cmd_aio_read, &qio_cmd_aio_write,
    &qio_cmd_alloc, &qio_cmd_break, &qio_cmd_close, &qio_cmd_discard, &qio_cmd_flush,
    &qio_cmd_help, &qio_cmd_info, &qio_cmd_length, &qio_cmd_map, &qio_cmd_open,
    &qio_cmd_quit, &qio_cmd_read, &qio_cmd_readv, &qio_cmd_remove_break, &qio_cmd_reopen,
    &qio_cmd_resume, &qio_cmd_sigraise, &qio_cmd_sleep, &qio_cmd_truncate,
    &qio_cmd_wait_break, &qio_cmd_write, &qio_cmd_writev, NULL,
};

/* The command called name (or by its alias), or NULL. */
static const QioCmd *qio_find_command(const char *name)
{
    for (int i = 0; qio_cmds[i]; i++) {
        const QioCmd *ct = qio_cmds[i];
        if (!strcmp(ct->name, name) || (ct->altname && !strcmp(ct->altname, name))) {
            return ct;
        }
    }
    return NULL;
}

/* Called by a command when its arguments do not parse. */
void qio_command_usage(const QioCmd *ct)
{
    printf("%s%s%s -- %s\n", ct->name, ct->args ? " " : "", ct->args ? ct->args : "",
           ct->oneline);
}

/* "help" and "help CMD": the one-line list, or one command's full text. */
static int qio_help_f(QioState *s, int argc, char **argv)
{
    if (argc == 1) {
        for (int i = 0; qio_cmds[i]; i++) {
            qio_command_usage(qio_cmds[i]);
        }
        printf("\nUse 'help commandname' for extended help.\n");
        return 0;
    }
    const QioCmd *ct = qio_find_command(argv[1]);
    if (!ct) {
        printf("command %s not found\n", argv[1]);
        return -EINVAL;
    }
    /* The usage line shows the name as typed, alias included. */
    printf("%s%s%s -- %s\n", argv[1], ct->args ? " " : "", ct->args ? ct->args : "",
           ct->oneline);
    if (ct->help) {
        ct->help();
    }
    return 0;
}

/* The argument-count check every command gets before its own parsing. */
static bool qio_check_argc(const QioCmd *ct, int argc, const char *name)
{
    int n = argc - 1;
    if (n >= ct->argmin && (ct->argmax == -1 || n <= ct->argmax)) {
        return true;
    }
    if (ct->argmax == -1) {
        fprintf(stderr, "bad argument count %d to %s, expected at least %d arguments\n",
                n, name, ct->argmin);
    } else if (ct->argmin == ct->argmax) {
        fprintf(stderr, "bad argument count %d to %s, expected %d arguments\n",
                n, name, ct->argmin);
    } else {
        fprintf(stderr, "bad argument count %d to %s, expected between %d and %d arguments\n",
                n, name, ct->argmin, ct->argmax);
    }
    return false;
}

/* Run one command line: split on spaces, find the command, check, call it. */
static int qio_command(QioState *s, char *line)
{
    int argc = 0;
    size_t cap = 8;
    char **argv = malloc((cap + 1) * sizeof(*argv));
    if (!argv) {
        abort();
    }
    for (char *tok = strtok(line, " "); tok; tok = strtok(NULL, " ")) {
        if ((size_t)argc == cap) {
            cap *= 2;
            argv = realloc(argv, (cap + 1) * sizeof(*argv));
            if (!argv) {
                abort();
            }
        }
        argv[argc++] = tok;
    }
    argv[argc] = NULL;
    int ret = 0;
    if (argc == 0) {
        goto out;
    }
    const QioCmd *ct = qio_find_command(argv[0]);
    if (!ct) {
        fprintf(stderr, "command \"%s\" not found\n", argv[0]);
        ret = -EINVAL;
        goto out;
    }
    if (ct->needs_file && !s->bs) {
        fprintf(stderr, "no file open, try 'help open'\n");
        ret = -EINVAL;
        goto out;
    }
    if (!qio_check_argc(ct, argc, argv[0])) {
        ret = -EINVAL;
        goto out;
    }
    if (ct->needs_write && s->bs->read_only) {
        error_report("Block node is read-only");
        ret = -EPERM;
        goto out;
    }
    optind = 0;
    ret = ct->func(s, argc, argv);
out:
    free(argv);
    return ret;
}

/* Defaults of both the program options and the open command. */
void qio_open_opts_init(QioOpenOpts *oo)
{
    memset(oo, 0, sizeof(*oo));
    /* qemu-io opens read-write, cache=writeback, discard=unmap unless told otherwise. */
    oo->flags = BDRV_O_RDWR | BDRV_O_UNMAP;
}

/* -t / open -t. */
static int qio_parse_cache(QioOpenOpts *oo, const char *mode)
{
    if (bdrv_parse_cache_mode(mode, &oo->flags) < 0) {
        error_report("Invalid cache option: %s", mode);
        return -EINVAL;
    }
    oo->writethrough = (oo->flags & BDRV_O_WRITETHROUGH) != 0;
    return 0;
}

/* -d / open -d. */
static int qio_parse_discard(QioOpenOpts *oo, const char *mode)
{
    if (bdrv_parse_discard(mode, &oo->flags) < 0) {
        error_report("Invalid discard option: %s", mode);
        return -EINVAL;
    }
    return 0;
}

/* -i / open -i. */
static int qio_parse_aio(QioOpenOpts *oo, const char *mode)
{
    if (bdrv_parse_aio(mode, &oo->flags) < 0) {
        error_report("Invalid aio option: %s", mode);
        return -EINVAL;
    }
    return 0;
}

/* Called for each option letter of the program and of the open command. */
int qio_parse_open_opt(QioOpenOpts *oo, int c, const char *arg)
{
    switch (c) {
    case 's':
        oo->snapshot = true;
        return 1;
    case 'n':
        oo->flags |= BDRV_O_NOCACHE;
        oo->writethrough = false;
        return 1;
    case 'C':
        oo->copy_on_read = true;
        return 1;
    case 'r':
        oo->flags &= ~BDRV_O_RDWR;
        return 1;
    case 'k':
        oo->flags |= BDRV_O_NATIVE_AIO;
        return 1;
    case 'U':
        oo->force_share = true;
        return 1;
    case 't':
        return qio_parse_cache(oo, arg) < 0 ? -1 : 1;
    case 'd':
        return qio_parse_discard(oo, arg) < 0 ? -1 : 1;
    case 'i':
        return qio_parse_aio(oo, arg) < 0 ? -1 : 1;
    default:
        return 0;
    }
}

/* Print the deferred output of completed aio requests, oldest first. */
static void qio_print_deferred(QioState *s)
{
    while (s->deferred) {
        QioDeferred *d = s->deferred;
        s->deferred = d->next;
        fputs(d->text, stdout);
        free(d->text);
        free(d);
    }
    s->deferred_tail = &s->deferred;
}

/* The image named on the command line, or by the open command. */
int qio_open_image(QioState *s, const char *name, const char *fmt, json_t *opts,
                   const QioOpenOpts *oo)
{
    Error *err = NULL;
    const char *shown = name;
    int flags = oo->flags;
    char *snap = NULL;
    int ret = 0;

    if (s->bs) {
        error_report("file open already, try 'help close'");
        json_decref(opts);
        return -EBUSY;
    }
    if (oo->image_opts) {
        opts = qdict_from_keyval(name, &err);
        if (!opts) {
            error_report_err(err);
            return -EINVAL;
        }
        name = NULL;
        shown = NULL;
    }
    if (oo->force_share) {
        if (flags & BDRV_O_RDWR) {
            error_setg(&err, "force-share=on can only be used with read-only images");
            goto fail;
        }
        flags |= BDRV_O_FORCE_SHARE;
    }
    if (oo->copy_on_read && !(flags & BDRV_O_RDWR)) {
        error_setg(&err, "Can't use copy-on-read on read-only device");
        goto fail;
    }
    if ((flags & BDRV_O_NATIVE_AIO) && !(flags & BDRV_O_NOCACHE)) {
        error_setg(&err, "aio=native was specified, but it requires cache.direct=on, "
                   "which was not specified.");
        goto fail;
    }
    if (!name && !qdict_get_str(opts, "driver") && !json_object_get(opts, "file")) {
        error_setg(&err, "Must specify either driver or file");
        goto fail;
    }
    const char *ro = qdict_get_str(opts, "read-only");
    if (ro && !strcmp(ro, "on") && (flags & BDRV_O_RDWR)) {
        error_setg(&err, "Block node is read-only");
        goto fail;
    }
    bool probing = !fmt && !qdict_get_str(opts, "driver");
    if (probing && name && !strncmp(name, "json:", 5)) {
        json_t *j = qdict_from_json_filename(name, NULL);
        probing = j && !qdict_get_str(j, "driver");
        json_decref(j);
    }
    if (oo->snapshot) {
        snap = bdrv_create_temp_overlay(name, opts, fmt, flags, &err);
        if (!snap) {
            goto fail;
        }
        json_decref(opts);
        opts = NULL;
        s->bs = bdrv_open(snap, "qcow2", NULL, flags, &err);
        probing = false;
    } else {
        s->bs = bdrv_open(name, fmt, opts, flags, &err);
        opts = NULL;
    }
    if (!s->bs) {
        goto fail;
    }
    s->snapshot_file = snap;
    snap = NULL;
    s->probed_raw = probing && !strcmp(bdrv_get_format_name(s->bs), "raw");
    s->copy_on_read = oo->copy_on_read;
    if (s->probed_raw && !s->bs->read_only) {
        qkit_warn_probed_raw(s->bs->filename);
    }
    return 0;

fail:
    if (shown) {
        error_prepend(&err, "can't open device %s: ", shown);
    } else {
        error_prepend(&err, "can't open: ");
    }
    error_report_err(err);
    json_decref(opts);
    if (snap) {
        unlink(snap);
        free(snap);
    }
    ret = -EINVAL;
    return ret;
}

/* close, and the end of the program. */
void qio_close_image(QioState *s)
{
    qio_print_deferred(s);
    if (s->bs) {
        bdrv_unref(s->bs);
        s->bs = NULL;
    }
    if (s->snapshot_file) {
        unlink(s->snapshot_file);
        free(s->snapshot_file);
        s->snapshot_file = NULL;
    }
    s->probed_raw = false;
    s->copy_on_read = false;
}

/* "aio_flush": every aio request has completed; print their output. */
int qio_aio_flush_f(QioState *s, int argc, char **argv)
{
    qio_print_deferred(s);
    return 0;
}

/*
 * --object: print the help it asks for and exit 0, or register the object (secret,
 * tls-creds-x509, ...), or print why not.
 */
static int qio_add_object(const char *def)
{
    Error *err = NULL;
    int ret = user_object_add_or_help(def, &err);
    if (ret > 0) {
        exit(EXIT_SUCCESS);
    }
    if (ret < 0) {
        error_report_err(err);
    }
    return ret;
}

/* Warn, as QEMU does, that an exact (wildcard-free) trace event name is unknown. */
static void qio_trace_pattern(const char *pattern)
{
    if (*pattern && !strchr(pattern, '*') && !strchr(pattern, '?')) {
        qio_warn("trace event '%s' does not exist", pattern);
    }
}

/*
 * -T [enable=]PATTERN,events=FILE,file=FILE: qkit has no trace events, so tracing is
 * accepted and produces nothing; exact event names get QEMU's "does not exist".
 */
static int qio_check_trace(const char *arg)
{
    char *copy = strdup(arg);
    int ret = 0;
    if (!copy) {
        abort();
    }
    for (char *save = NULL, *item = strtok_r(copy, ",", &save); item;
         item = strtok_r(NULL, ",", &save)) {
        if (!strncmp(item, "enable=", 7)) {
            qio_trace_pattern(item + 7);
        } else if (!strncmp(item, "events=", 7)) {
            FILE *f = fopen(item + 7, "r");
            if (!f) {
                fprintf(stderr, "%s:%s: %s\n", error_get_progname(), item + 7,
                        strerror(errno));
                ret = -1;
                break;
            }
            char line[256];
            while (fgets(line, sizeof(line), f)) {
                line[strcspn(line, "\r\n")] = '\0';
                if (line[0] && line[0] != '#') {
                    qio_trace_pattern(line[0] == '-' ? line + 1 : line);
                }
            }
            fclose(f);
        } else if (strncmp(item, "file=", 5) != 0) {
            qio_trace_pattern(item);
        }
    }
    free(copy);
    return ret;
}

/* Print the usage text with the program name. */
static void qio_usage(const char *progname)
{
    printf(qio_usage_fmt, progname, progname);
}

/* The interactive loop: prompt, read a line, run it, until quit or end of input. */
static bool qio_interactive(QioState *s)
{
    bool failed = false;
    char *line = NULL;
    size_t cap = 0;
    bool tty = isatty(STDIN_FILENO);
    while (!s->quit) {
        printf("%s> ", s->progname);
        if (tty) {
            fflush(stdout);
        }
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0) {
            break;
        }
        if (n > 0 && line[n - 1] == '\n') {
            line[n - 1] = '\0';
        }
        if (qio_command(s, line) < 0) {
            failed = true;
        }
    }
    free(line);
    return failed;
}

/* Parse options, open the image, run -c commands or the prompt. */
int main(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "cmd", required_argument, NULL, 'c' },
        { "format", required_argument, NULL, 'f' },
        { "read-only", no_argument, NULL, 'r' },
        { "snapshot", no_argument, NULL, 's' },
        { "nocache", no_argument, NULL, 'n' },
        { "copy-on-read", no_argument, NULL, 'C' },
        { "misalign", no_argument, NULL, 'm' },
        { "native-aio", no_argument, NULL, 'k' },
        { "aio", required_argument, NULL, 'i' },
        { "discard", required_argument, NULL, 'd' },
        { "cache", required_argument, NULL, 't' },
        { "trace", required_argument, NULL, 'T' },
        { "object", required_argument, NULL, QIO_OPT_OBJECT },
        { "image-opts", no_argument, NULL, QIO_OPT_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    QioState state = { 0 };
    QioState *s = &state;
    QioOpenOpts oo;
    const char *fmt = NULL;
    char **cmds = calloc((size_t)argc + 1, sizeof(*cmds));
    int ncmds = 0;
    int status = 0;
    int c;

    if (!cmds) {
        abort();
    }
    char *argv0 = strdup(argv[0]);
    s->progname = basename(argv0);
    error_set_progname(s->progname);
    s->deferred_tail = &s->deferred;
    qio_open_opts_init(&oo);

    while ((c = getopt_long(argc, argv, "hVc:d:f:rsnCmki:t:T:U", long_options, NULL)) != -1) {
        int handled = qio_parse_open_opt(&oo, c, optarg);
        if (handled < 0) {
            status = 1;
            goto out;
        }
        if (handled) {
            continue;
        }
        switch (c) {
        case 'h':
            qio_usage(s->progname);
            goto out;
        case 'V':
            printf(QIO_VERSION_FMT, s->progname);
            goto out;
        case 'c':
            cmds[ncmds++] = optarg;
            break;
        case 'f':
            fmt = optarg;
            break;
        case 'm':
            /* Misaligned buffers only exercise QEMU's bounce paths; nothing to do. */
            break;
        case 'T':
            if (qio_check_trace(optarg) < 0) {
                status = 1;
                goto out;
            }
            break;
        case QIO_OPT_OBJECT:
            if (qio_add_object(optarg) < 0) {
                status = 1;
                goto out;
            }
            break;
        case QIO_OPT_IMAGE_OPTS:
            oo.image_opts = true;
            break;
        default:
            qio_usage(s->progname);
            status = 1;
            goto out;
        }
    }
    if (argc - optind > 1) {
        qio_usage(s->progname);
        status = 1;
        goto out;
    }
    if (oo.image_opts && fmt) {
        error_report("--image-opts and -f are mutually exclusive");
        status = 1;
        goto out;
    }
    if (optind < argc && qio_open_image(s, argv[optind], fmt, NULL, &oo) < 0) {
        status = 1;
        goto out;
    }

    bool failed = false;
    if (ncmds == 0) {
        failed = qio_interactive(s);
    } else {
        for (int i = 0; i < ncmds && !s->quit; i++) {
            char *line = strdup(cmds[i]);
            if (!line) {
                abort();
            }
            if (qio_command(s, line) < 0) {
                failed = true;
            }
            free(line);
        }
    }
    status = failed ? 1 : 0;
out:
    qio_close_image(s);
    free(cmds);
    free(argv0);
    return status;
}
