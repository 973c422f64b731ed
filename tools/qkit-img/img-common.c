/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Helpers shared by the qkit-img subcommands: help text, argument errors, opening
 * images, the -p progress line, size arguments, -o option lists, and the JSON
 * rendering of QAPI-shaped objects laid out exactly as qemu-img prints it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "img.h"
#include "nbd/objects.h"
#include "qkit/cutils.h"
#include "qkit/qinfo.h"

#define IMG_VERSION_TEXT "qemu-img version 7.2.22 (qkit 0.1.0)\n" \
    "Copyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n"

/* Width that option help names are padded to, after the two-space indent. */
#define OPT_HELP_NAME_WIDTH 22
#define IMG_JSON_INDENT 4

#define NSEC_PER_SEC 1000000000ULL
#define NSEC_PER_MSEC 1000000ULL

static const char img_help_text[] =
"usage: qemu-img [standard options] command [command options]\n"
"QEMU disk image utility\n"
"\n"
"    '-h', '--help'       display this help and exit\n"
"    '-V', '--version'    output version information and exit\n"
"    '-T', '--trace'      [[enable=]<pattern>][,events=<file>][,file=<file>]\n"
"                         specify tracing options\n"
"\n"
"Command syntax:\n"
"  amend [--object objectdef] [--image-opts] [-p] [-q] [-f fmt] [-t cache] [--force]"
" -o options filename\n"
"  bench [-c count] [-d depth] [-f fmt] [--flush-interval=flush_interval] [-i aio] [-n]"
" [--no-drain] [-o offset] [--pattern=pattern] [-q] [-s buffer_size] [-S step_size]"
" [-t cache] [-w] [-U] filename\n"
"  bitmap (--merge SOURCE | --add | --remove | --clear | --enable | --disable)..."
" [-b source_file [-F source_fmt]] [-g granularity] [--object objectdef]"
" [--image-opts | -f fmt] filename bitmap\n"
"  check [--object objectdef] [--image-opts] [-q] [-f fmt] [--output=ofmt]"
" [-r [leaks | all]] [-T src_cache] [-U] filename\n"
"  commit [--object objectdef] [--image-opts] [-q] [-f fmt] [-t cache] [-b base]"
" [-r rate_limit] [-d] [-p] filename\n"
"  compare [--object objectdef] [--image-opts] [-f fmt] [-F fmt] [-T src_cache] [-p] [-q]"
" [-s] [-U] filename1 filename2\n"
"  convert [--object objectdef] [--image-opts] [--target-image-opts] [--target-is-zero]"
" [--bitmaps] [-U] [-C] [-c] [-p] [-q] [-n] [-f fmt] [-t cache] [-T src_cache]"
" [-O output_fmt] [-B backing_file [-F backing_fmt]] [-o options] [-l snapshot_param]"
" [-S sparse_size] [-r rate_limit] [-m num_coroutines] [-W] [--salvage]"
" filename [filename2 [...]] output_filename\n"
"  create [--object objectdef] [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u]"
" [-o options] filename [size]\n"
"  dd [--image-opts] [-U] [-f fmt] [-O output_fmt] [bs=block_size] [count=blocks]"
" [skip=blocks] if=input of=output\n"
"  info [--object objectdef] [--image-opts] [-f fmt] [--output=ofmt] [--backing-chain]"
" [-U] filename\n"
"  map [--object objectdef] [--image-opts] [-f fmt] [--start-offset=offset]"
" [--max-length=len] [--output=ofmt] [-U] filename\n"
"  measure [--output=ofmt] [-O output_fmt] [-o options] [--size N | [--object objectdef]"
" [--image-opts] [-f fmt] [-l snapshot_param] filename]\n"
"  snapshot [--object objectdef] [--image-opts] [-U] [-q]"
" [-l | -a snapshot | -c snapshot | -d snapshot] filename\n"
"  rebase [--object objectdef] [--image-opts] [-U] [-q] [-f fmt] [-t cache] [-T src_cache]"
" [-p] [-u] -b backing_file [-F backing_fmt] filename\n"
"  resize [--object objectdef] [--image-opts] [-f fmt] [--preallocation=prealloc] [-q]"
" [--shrink] filename [+ | -]size\n"
"\n"
"Command parameters:\n"
"  'filename' is a disk image filename\n"
"  'objectdef' is a QEMU user creatable object definition. See the qemu(1)\n"
"    manual page for a description of the object properties. The most common\n"
"    object type is a 'secret', which is used to supply passwords and/or\n"
"    encryption keys.\n"
"  'fmt' is the disk image format. It is guessed automatically in most cases\n"
"  'cache' is the cache mode used to write the output disk image, the valid\n"
"    options are: 'none', 'writeback' (default, except for convert), 'writethrough',\n"
"    'directsync' and 'unsafe' (default for convert)\n"
"  'src_cache' is the cache mode used to read input disk images, the valid\n"
"    options are the same as for the 'cache' option\n"
"  'size' is the disk image size in bytes. Optional suffixes\n"
"    'k' or 'K' (kilobyte, 1024), 'M' (megabyte, 1024k), 'G' (gigabyte, 1024M),\n"
"    'T' (terabyte, 1024G), 'P' (petabyte, 1024T) and 'E' (exabyte, 1024P)  are\n"
"    supported. 'b' is ignored.\n"
"  'output_filename' is the destination disk image filename\n"
"  'output_fmt' is the destination format\n"
"  'options' is a comma separated list of format specific options in a\n"
"    name=value format. Use -o help for an overview of the options supported by\n"
"    the used format\n"
"  'snapshot_param' is param used for internal snapshot, format\n"
"    is 'snapshot.id=[ID],snapshot.name=[NAME]', or\n"
"    '[ID_OR_NAME]'\n"
"  '-c' indicates that target image must be compressed (qcow format only)\n"
"  '-u' allows unsafe backing chains. For rebasing, it is assumed that old and\n"
"       new backing file match exactly. The image doesn't need a working\n"
"       backing file before rebasing in this case (useful for renaming the\n"
"       backing file). For image creation, allow creating without attempting\n"
"       to open the backing file.\n"
"  '-h' with or without a command shows this help and lists the supported formats\n"
"  '-p' show progress of command (only certain commands)\n"
"  '-q' use Quiet mode - do not print any output (except errors)\n"
"  '-S' indicates the consecutive number of bytes (defaults to 4k) that must\n"
"       contain only zeros for qemu-img to create a sparse image during\n"
"       conversion. If the number of bytes is 0, the source will not be scanned for\n"
"       unallocated or zero sectors, and the destination image will always be\n"
"       fully allocated\n"
"  '--output' takes the format in which the output must be done (human or json)\n"
"  '-n' skips the target volume creation (useful if the volume is created\n"
"       prior to running qemu-img)\n"
"\n"
"Parameters to bitmap subcommand:\n"
"  'bitmap' is the name of the bitmap to manipulate, through one or more\n"
"       actions from '--add', '--remove', '--clear', '--enable', '--disable',\n"
"       or '--merge source'\n"
"  '-g granularity' sets the granularity for '--add' actions\n"
"  '-b source' and '-F src_fmt' tell '--merge' actions to find the source\n"
"       bitmaps from an alternative file\n"
"\n"
"Parameters to check subcommand:\n"
"  '-r' tries to repair any inconsistencies that are found during the check.\n"
"       '-r leaks' repairs only cluster leaks, whereas '-r all' fixes all\n"
"       kinds of errors, with a higher risk of choosing the wrong fix or\n"
"       hiding corruption that has already occurred.\n"
"\n"
"Parameters to convert subcommand:\n"
"  '--bitmaps' copies all top-level persistent bitmaps to destination\n"
"  '-m' specifies how many coroutines work in parallel during the convert\n"
"       process (defaults to 8)\n"
"  '-W' allow to write to the target out of order rather than sequential\n"
"\n"
"Parameters to snapshot subcommand:\n"
"  'snapshot' is the name of the snapshot to create, apply or delete\n"
"  '-a' applies a snapshot (revert disk to saved state)\n"
"  '-c' creates a snapshot\n"
"  '-d' deletes a snapshot\n"
"  '-l' lists all snapshots in the given image\n"
"\n"
"Parameters to compare subcommand:\n"
"  '-f' first image format\n"
"  '-F' second image format\n"
"  '-s' run in Strict mode - fail on different image size or sector allocation\n"
"\n"
"Parameters to dd subcommand:\n"
"  'bs=BYTES' read and write up to BYTES bytes at a time (default: 512)\n"
"  'count=N' copy only N input blocks\n"
"  'if=FILE' read from FILE\n"
"  'of=FILE' write to FILE\n"
"  'skip=N' skip N bs-sized blocks at the start of input\n"
"\n"
"Supported formats:";

/* Collects format names for the help text. */
typedef struct FormatList {
    const char *names[64];
    int n;
} FormatList;

/* Called for each registered driver: remember its name once. */
static void format_list_add(void *opaque, const char *name)
{
    FormatList *fl = opaque;
    for (int i = 0; i < fl->n; i++) {
        if (!strcmp(fl->names[i], name)) {
            return;
        }
    }
    if (fl->n < (int)ARRAY_SIZE(fl->names)) {
        fl->names[fl->n++] = name;
    }
}

/* qsort order for the format names of --help. */
static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* -h / --help, at top level or after a command. */
void img_help(void)
{
    FormatList fl = { .n = 0 };
    printf("%s", IMG_VERSION_TEXT);
    printf("%s", img_help_text);
    bdrv_iterate_format(format_list_add, &fl);
    qsort(fl.names, fl.n, sizeof(fl.names[0]), cmp_str_ptr);
    for (int i = 0; i < fl.n; i++) {
        printf(" %s", fl.names[i]);
    }
    printf("\n\nSee <https://qemu.org/contribute/report-a-bug> for how to report bugs.\n"
           "More information on the QEMU project at <https://qemu.org>.\n");
    exit(EXIT_SUCCESS);
}

/* A usage error: the message, a pointer to --help, exit 1. */
void img_error_exit(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", error_get_progname());
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'qemu-img --help' for more information\n");
    exit(EXIT_FAILURE);
}

/* Called from a command's getopt loop for a missing argument or unknown option. */
void img_getopt_error(int c, char **argv)
{
    if (c == ':') {
        img_error_exit("missing argument for option '%s'", argv[optind - 1]);
    }
    img_error_exit("unrecognized option '%s'", argv[optind - 1]);
}

/*
 * Called for each --object: print the help it asks for and exit 0, or create it now,
 * or print why not and exit 1 as qemu-img does.
 */
void img_object_add(const char *def)
{
    Error *err = NULL;
    int ret = user_object_add_or_help(def, &err);
    if (ret < 0) {
        error_report_err(err);
    }
    if (ret) {
        exit(ret > 0 ? EXIT_SUCCESS : EXIT_FAILURE);
    }
}

/* True if a json: filename names its format itself (then nothing was probed). */
static bool options_named_driver(const char *filename)
{
    if (strncmp(filename, "json:", 5)) {
        return false;
    }
    json_t *o = qdict_from_json_filename(filename, NULL);
    bool named = o && qdict_get_str(o, "driver");
    json_decref(o);
    return named;
}

BlockDriverState *img_open(bool image_opts, const char *filename, const char *fmt, int flags,
                           bool writethrough, bool quiet, bool force_share)
{
    Error *err = NULL;
    json_t *options = NULL;
    const char *open_name = filename;

    if (image_opts) {
        if (fmt) {
            error_report("--image-opts and --format are mutually exclusive");
            return NULL;
        }
        options = qdict_from_keyval(filename, &err);
        if (!options) {
            error_report_err(err);
            return NULL;
        }
        if (force_share) {
            bool fs = true;
            if (json_object_get(options, "force-share") &&
                (qdict_get_bool_opt(options, "force-share", true, &fs, NULL) < 0 || !fs)) {
                error_report("--force-share/-U conflicts with image options");
                json_decref(options);
                return NULL;
            }
            json_object_del(options, "force-share");
        }
        open_name = NULL;
    }
    if (force_share) {
        flags |= BDRV_O_FORCE_SHARE;
    }
    if (writethrough) {
        flags |= BDRV_O_WRITETHROUGH;
    }
    BlockDriverState *bs = bdrv_open(open_name, fmt, options, flags, &err);
    if (!bs) {
        error_prepend(&err, "Could not open '%s': ", filename);
        error_report_err(err);
        return NULL;
    }
    if (!fmt && !image_opts && (flags & BDRV_O_RDWR) && bs->drv == &bdrv_raw &&
        !(options_named_driver(filename))) {
        /* Writing to a guessed raw image is how format confusion attacks start. */
        qkit_warn_probed_raw(bs->file ? bs->file->filename : bs->filename);
    }
    return bs;
}

/* -p progress state: one line per tool run, redrawn in place with '\r'. */
static struct {
    bool enabled;
    float min_step;
    float current;
    float last_print;
} img_progress;

/* Called once per command with -p (enabled) or without. */
void img_progress_init(bool enabled, float min_step)
{
    img_progress.enabled = enabled;
    img_progress.min_step = min_step;
    img_progress.current = 0;
    img_progress.last_print = 0;
}

/* Called as work advances; redraws the line when it moved enough. */
void img_progress_print(float done, float total)
{
    float cur = total > 0 ? done / total * 100.0f : 100.0f;
    if (cur > 100) {
        cur = 100;
    }
    if (cur < 0) {
        cur = 0;
    }
    img_progress.current = cur;
    if (!img_progress.enabled) {
        return;
    }
    if (cur > img_progress.last_print + img_progress.min_step ||
        cur < img_progress.last_print - img_progress.min_step || cur == 0 || cur == 100) {
        img_progress.last_print = cur;
        printf("    (%3.2f/100%%)\r", cur);
        fflush(stdout);
    }
}

/* Called when the command is done: finish the progress line. */
void img_progress_end(void)
{
    if (img_progress.enabled) {
        printf("\n");
        fflush(stdout);
    }
}

/* Parse a size given on the command line, with qemu-img's messages. */
int64_t img_cvtnum(const char *name, const char *value)
{
    uint64_t v;
    int ret = qkit_strtosz(value, 0, &v);
    if (ret < 0 && ret != -ERANGE) {
        error_report("Invalid %s specified. You may use k, M, G, T, P or E suffixes for", name);
        error_report("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
        return ret;
    }
    if (ret == -ERANGE || v > INT64_MAX) {
        error_report("Invalid %s specified. Must be between 0 and %" PRId64 ".", name,
                     INT64_MAX);
        return -ERANGE;
    }
    if (qkit_size_is_hex_with_suffix(value)) {
        error_report("warning: Using a multiplier suffix on hex numbers is deprecated: %s",
                     value);
    }
    return (int64_t)v;
}

/* Parse --output. */
int img_parse_output_format(const char *arg)
{
    if (!arg) {
        return IMG_OUTPUT_HUMAN;
    }
    if (!strcmp(arg, "json")) {
        return IMG_OUTPUT_JSON;
    }
    if (!strcmp(arg, "human")) {
        return IMG_OUTPUT_HUMAN;
    }
    error_report("--output must be used with human or json as argument.");
    return -1;
}

/* An -o list is valid unless it is empty or ends in a lone separating comma. */
static bool option_list_is_valid(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || s[0] == ',') {
        return false;
    }
    /* A trailing comma is literal only when it is part of an even run of commas. */
    size_t commas = 0;
    while (commas < len && s[len - 1 - commas] == ',') {
        commas++;
    }
    return commas % 2 == 0;
}

/* Called for each -o: several -o lists join into one. */
int img_accumulate_options(char **options, const char *optarg)
{
    if (!option_list_is_valid(optarg)) {
        error_report("Invalid option list: %s", optarg);
        return -1;
    }
    char *joined = NULL;
    if (*options) {
        if (asprintf(&joined, "%s,%s", *options, optarg) < 0) {
            abort();
        }
        free(*options);
    } else {
        joined = strdup(optarg);
        if (!joined) {
            abort();
        }
    }
    *options = joined;
    return 0;
}

/* The single image operand after a command's options, or qemu-img's usage error. */
const char *img_one_filename(int argc, char **argv)
{
    if (optind != argc - 1) {
        img_error_exit("Expecting one image file name");
    }
    return argv[optind];
}

/* Apply a -t/-T cache mode to *flags; "Invalid WHAT option: MODE" and -1 if unknown. */
int img_parse_cache_mode(const char *what, const char *mode, int *flags)
{
    if (bdrv_parse_cache_mode(mode, flags) < 0) {
        error_report("Invalid %s option: %s", what, mode);
        return -1;
    }
    return 0;
}

/* Does an -o list ask for the option help? */
bool img_has_help_option(const char *options)
{
    bool found = false;
    QOpts *o = qopts_new();
    if (options && qopts_parse(o, options, NULL) == 0) {
        found = qopts_get(o, "help") != NULL || qopts_get(o, "?") != NULL;
    }
    qopts_free(o);
    return found;
}

/* Find the description of name in a NULL-terminated list of option tables. */
static const QOptDesc *opt_find_desc(const QOptDesc *const *tables, const char *name)
{
    for (int t = 0; tables[t]; t++) {
        for (const QOptDesc *d = tables[t]; d->name; d++) {
            if (!strcmp(d->name, name)) {
                return d;
            }
        }
    }
    return NULL;
}

/* Does any of the option tables describe name (create/convert: backing_file etc.)? */
bool img_opts_have(const QOptDesc *const *tables, const char *name)
{
    return opt_find_desc(tables, name) != NULL;
}

/* Parse and check an -o list as qemu-img's option parser does. */
int img_parse_qopts(QOpts *o, const char *str, const QOptDesc *const *tables, Error **errp)
{
    QOpts *raw = qopts_new();
    int ret = qopts_parse(raw, str, errp);
    for (int i = 0; ret == 0 && i < qopts_count(raw); i++) {
        const char *name = qopts_name_at(raw, i);
        const char *value = qopts_value_at(raw, i);
        const QOptDesc *d = opt_find_desc(tables, name);
        char num[32];
        if (!d) {
            error_setg(errp, "Invalid parameter '%s'", name);
            ret = -EINVAL;
            break;
        }
        /* Check the value's type now; sizes and numbers are kept in plain decimal. */
        if (d->type == QOPT_SIZE) {
            uint64_t v;
            ret = qopts_get_size(raw, name, 0, &v, errp);
            snprintf(num, sizeof(num), "%" PRIu64, v);
            value = num;
        } else if (d->type == QOPT_NUMBER) {
            uint64_t v;
            ret = qopts_get_number(raw, name, 0, &v, errp);
            snprintf(num, sizeof(num), "%" PRIu64, v);
            value = num;
        } else if (d->type == QOPT_BOOL) {
            bool b;
            ret = qopts_get_bool(raw, name, false, &b, errp);
        }
        if (ret == 0) {
            qopts_set(o, name, value);
        }
    }
    qopts_free(raw);
    return ret;
}

/* The type label of -o help ("str", "size", ...). */
static const char *opt_type_name(QOptType t)
{
    switch (t) {
    case QOPT_BOOL:
        return "bool (on/off)";
    case QOPT_NUMBER:
        return "num";
    case QOPT_SIZE:
        return "size";
    case QOPT_STRING:
    default:
        return "str";
    }
}

/* qsort order for -o help: by option name. */
static int cmp_desc_ptr(const void *a, const void *b)
{
    const QOptDesc *da = *(const QOptDesc *const *)a;
    const QOptDesc *db = *(const QOptDesc *const *)b;
    return strcmp(da->name, db->name);
}

/* Print the option lines of -o help. */
void img_print_opts_help(const QOptDesc *const *tables, bool (*filter)(const QOptDesc *d))
{
    int n = 0;
    for (int t = 0; tables[t]; t++) {
        for (const QOptDesc *d = tables[t]; d->name; d++) {
            n++;
        }
    }
    const QOptDesc **list = calloc(n ? n : 1, sizeof(*list));
    if (!list) {
        abort();
    }
    int k = 0;
    for (int t = 0; tables[t]; t++) {
        for (const QOptDesc *d = tables[t]; d->name; d++) {
            /* The first table that names an option wins, as when QEMU merges lists. */
            bool dup = false;
            for (int j = 0; j < k && !dup; j++) {
                dup = !strcmp(list[j]->name, d->name);
            }
            if (!dup && (!filter || filter(d))) {
                list[k++] = d;
            }
        }
    }
    qsort(list, k, sizeof(*list), cmp_desc_ptr);
    for (int i = 0; i < k; i++) {
        char head[256];
        snprintf(head, sizeof(head), "%s=<%s>", list[i]->name, opt_type_name(list[i]->type));
        if (list[i]->help) {
            printf("  %-*s - %s\n", OPT_HELP_NAME_WIDTH, head, list[i]->help);
        } else {
            printf("  %s\n", head);
        }
    }
    free(list);
}

/*
 * Without a filename, -o help lists the format's own options: entries a format
 * repeats verbatim from the file protocol (other than size) belong to the protocol.
 */
static bool create_help_is_format_opt(const QOptDesc *d)
{
    if (!strcmp(d->name, "size")) {
        return true;
    }
    for (const QOptDesc *p = bdrv_file.create_opts; p && p->name; p++) {
        if (!strcmp(p->name, d->name) && p->help && d->help && !strcmp(p->help, d->help)) {
            return false;
        }
    }
    return true;
}

/* -o help of create and convert: fmt's options (and the protocol's, given a filename). */
int img_print_create_opts_help(const char *filename, const char *fmt)
{
    const BlockDriver *drv = bdrv_find_format(fmt);
    if (!drv) {
        error_report("Unknown file format '%s'", fmt);
        return 1;
    }
    if (!drv->create_opts) {
        error_report("Format driver '%s' does not support image creation", fmt);
        return 1;
    }
    const QOptDesc *tables[3] = { drv->create_opts, NULL, NULL };
    if (filename) {
        const BlockDriver *proto = bdrv_find_protocol(filename);
        if (!proto->create_opts) {
            error_report("Protocol '%s' does not support image creation", proto->format_name);
            return 1;
        }
        tables[1] = proto->create_opts;
        printf("Supported options:\n");
        img_print_opts_help(tables, NULL);
    } else {
        printf("Supported %s options:\n", fmt);
        img_print_opts_help(tables, create_help_is_format_opt);
        printf("\n"
               "The protocol level may support further options.\n"
               "Specify the target filename to include those options.\n");
    }
    return 0;
}

/* ---- JSON dumps in QDict order ---- */

/* Append str to the growing output buffer. */
typedef struct StrBuf {
    char *data;
    size_t len, cap;
} StrBuf;

/* Append n bytes to a growing string. */
static void sb_append(StrBuf *sb, const char *s, size_t n)
{
    if (sb->len + n + 1 > sb->cap) {
        sb->cap = QKIT_MAX(sb->cap * 2, sb->len + n + 1 + 256);
        sb->data = realloc(sb->data, sb->cap);
        if (!sb->data) {
            abort();
        }
    }
    memcpy(sb->data + sb->len, s, n);
    sb->len += n;
    sb->data[sb->len] = 0;
}

/* Append a C string. */
static void sb_puts(StrBuf *sb, const char *s)
{
    sb_append(sb, s, strlen(s));
}

/* Append the indentation of one nesting level of pretty JSON. */
static void sb_indent(StrBuf *sb, int level)
{
    for (int i = 0; i < level * IMG_JSON_INDENT; i++) {
        sb_append(sb, " ", 1);
    }
}

/* Decode one UTF-8 sequence; invalid bytes come back as U+FFFD, one byte consumed. */
static uint32_t utf8_next(const unsigned char **pp)
{
    const unsigned char *p = *pp;
    uint32_t cp;
    int extra;
    if (p[0] < 0x80) {
        *pp = p + 1;
        return p[0];
    } else if ((p[0] & 0xE0) == 0xC0) {
        cp = p[0] & 0x1F;
        extra = 1;
    } else if ((p[0] & 0xF0) == 0xE0) {
        cp = p[0] & 0x0F;
        extra = 2;
    } else if ((p[0] & 0xF8) == 0xF0) {
        cp = p[0] & 0x07;
        extra = 3;
    } else {
        *pp = p + 1;
        return 0xFFFD;
    }
    for (int i = 1; i <= extra; i++) {
        if ((p[i] & 0xC0) != 0x80) {
            *pp = p + 1;
            return 0xFFFD;
        }
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    *pp = p + extra + 1;
    return cp;
}

/* A JSON string as QEMU writes it: printable ASCII as is, the rest as \uXXXX. */
static void sb_json_string(StrBuf *sb, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    char tmp[16];
    sb_append(sb, "\"", 1);
    while (*p) {
        uint32_t cp = utf8_next(&p);
        switch (cp) {
        case '"':
            sb_puts(sb, "\\\"");
            break;
        case '\\':
            sb_puts(sb, "\\\\");
            break;
        case '\b':
            sb_puts(sb, "\\b");
            break;
        case '\f':
            sb_puts(sb, "\\f");
            break;
        case '\n':
            sb_puts(sb, "\\n");
            break;
        case '\r':
            sb_puts(sb, "\\r");
            break;
        case '\t':
            sb_puts(sb, "\\t");
            break;
        default:
            if (cp >= 0x20 && cp < 0x7F) {
                tmp[0] = (char)cp;
                sb_append(sb, tmp, 1);
            } else if (cp >= 0x10000) {
                /* Outside the BMP: a UTF-16 surrogate pair. */
                uint32_t v = cp - 0x10000;
                snprintf(tmp, sizeof(tmp), "\\u%04X\\u%04X", 0xD800 | (v >> 10),
                         0xDC00 | (v & 0x3FF));
                sb_puts(sb, tmp);
            } else {
                snprintf(tmp, sizeof(tmp), "\\u%04X", cp);
                sb_puts(sb, tmp);
            }
        }
    }
    sb_append(sb, "\"", 1);
}

/* Append one JSON value, pretty-printed at the given nesting level. */
static void sb_json_value(StrBuf *sb, json_t *v, int level)
{
    char tmp[64];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        size_t n;
        QkitDictKey *keys = qkit_dict_keys_ordered(v, &n);
        sb_puts(sb, "{");
        for (size_t i = 0; i < n; i++) {
            sb_puts(sb, i ? ",\n" : "\n");
            sb_indent(sb, level + 1);
            sb_json_string(sb, keys[i].key);
            sb_puts(sb, ": ");
            sb_json_value(sb, keys[i].value, level + 1);
        }
        sb_puts(sb, "\n");
        sb_indent(sb, level);
        sb_puts(sb, "}");
        free(keys);
        break;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *e;
        sb_puts(sb, "[");
        json_array_foreach(v, i, e) {
            sb_puts(sb, i ? ",\n" : "\n");
            sb_indent(sb, level + 1);
            sb_json_value(sb, e, level + 1);
        }
        sb_puts(sb, "\n");
        sb_indent(sb, level);
        sb_puts(sb, "]");
        break;
    }
    case JSON_STRING:
        sb_json_string(sb, json_string_value(v));
        break;
    case JSON_INTEGER:
        snprintf(tmp, sizeof(tmp), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        sb_puts(sb, tmp);
        break;
    case JSON_REAL:
        snprintf(tmp, sizeof(tmp), "%.17g", json_real_value(v));
        sb_puts(sb, tmp);
        break;
    case JSON_TRUE:
        sb_puts(sb, "true");
        break;
    case JSON_FALSE:
        sb_puts(sb, "false");
        break;
    case JSON_NULL:
        sb_puts(sb, "null");
        break;
    }
}

/* Render a whole object for --output=json. */
char *img_json_to_str(json_t *obj)
{
    StrBuf sb = { NULL, 0, 0 };
    sb_json_value(&sb, obj, 0);
    return sb.data;
}

/* Print a --output=json document. */
void img_print_json(json_t *obj)
{
    char *s = img_json_to_str(obj);
    printf("%s\n", s);
    free(s);
}

/* Column titles of the snapshot table. */
void img_snapshot_dump_header(void)
{
    printf("%-10s%-17s%8s%20s%13s%11s", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT");
}

/* One row of the snapshot table. */
void img_snapshot_dump(const QkitSnapshotInfo *sn)
{
    char date[128], clock[128], icount[32] = "";
    time_t t = sn->date_sec;
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
    uint64_t secs = sn->vm_clock_nsec / NSEC_PER_SEC;
    snprintf(clock, sizeof(clock), "%02d:%02d:%02d.%03d", (int)(secs / 3600),
             (int)((secs / 60) % 60), (int)(secs % 60),
             (int)((sn->vm_clock_nsec / NSEC_PER_MSEC) % 1000));
    if (sn->icount != UINT64_MAX) {
        snprintf(icount, sizeof(icount), "%" PRId64, (int64_t)sn->icount);
    }
    char *size = qkit_size_to_str(sn->vm_state_size);
    printf("%-9s %-16s %8s%20s%13s%11s", sn->id_str, sn->name, size, date, clock, icount);
    free(size);
}

/* The snapshot table of info and snapshot -l. */
void img_dump_snapshot_list(const QkitSnapshotInfo *sns, int n)
{
    printf("Snapshot list:\n");
    img_snapshot_dump_header();
    printf("\n");
    for (int i = 0; i < n; i++) {
        img_snapshot_dump(&sns[i]);
        printf("\n");
    }
}

/* Used by compare and rebase to find differing sectors. */
bool img_buffer_differs(const uint8_t *a, const uint8_t *b, int64_t bytes, int64_t *pnum)
{
    /* Compare in 512-byte sectors: report how far the first sector's verdict holds. */
    const int64_t sector = IMG_COMPARE_SECTOR;
    int64_t first = QKIT_MIN(sector, bytes);
    bool differs = memcmp(a, b, first) != 0;
    int64_t i = first;
    while (i < bytes) {
        int64_t n = QKIT_MIN(sector, bytes - i);
        if ((memcmp(a + i, b + i, n) != 0) != differs) {
            break;
        }
        i += n;
    }
    *pnum = i;
    return differs;
}
