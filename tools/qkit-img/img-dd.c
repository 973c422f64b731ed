/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qkit-img dd: copy an image into a new one block by block, dd(1) style operands
 * (if= of= bs= count= skip=). Sizes, messages and the odd corner cases (a skip past
 * the end warns and still exits 0) are those of qemu-img dd.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "img.h"
#include "qkit/cutils.h"

enum {
    OPT_OBJECT = 256,
    OPT_IMAGE_OPTS,
};

/* Which operands were given. */
#define DD_C_BS    0x1
#define DD_C_COUNT 0x2
#define DD_C_IF    0x4
#define DD_C_OF    0x8
#define DD_C_SKIP  0x10

#define DD_DEFAULT_BS 512

typedef struct DdArgs {
    int flags;           /* DD_C_* */
    int64_t bsz;
    int64_t count;
    int64_t skip;        /* in blocks of bsz */
    char *in_filename;
    char *out_filename;
} DdArgs;

typedef struct DdOperand {
    const char *name;
    int (*parse)(const char *arg, DdArgs *dd);
    int flag;
} DdOperand;

/* bs=: 1 byte to INT_MAX. */
static int dd_parse_bs(const char *arg, DdArgs *dd)
{
    uint64_t v;
    int ret = qkit_strtosz(arg, 0, &v);
    if (ret < 0 && ret != -ERANGE) {
        /* Same wording as every other size argument. */
        return img_cvtnum("bs", arg) < 0 ? -1 : 0;
    }
    if (ret == -ERANGE || v < 1 || v > INT_MAX) {
        error_report("Invalid bs specified. Must be between 1 and %d.", INT_MAX);
        return -1;
    }
    dd->bsz = (int64_t)v;
    return 0;
}

static int dd_parse_count(const char *arg, DdArgs *dd)
{
    dd->count = img_cvtnum("count", arg);
    return dd->count < 0 ? -1 : 0;
}

static int dd_parse_skip(const char *arg, DdArgs *dd)
{
    dd->skip = img_cvtnum("skip", arg);
    return dd->skip < 0 ? -1 : 0;
}

static int dd_parse_if(const char *arg, DdArgs *dd)
{
    free(dd->in_filename);
    dd->in_filename = strdup(arg);
    return dd->in_filename ? 0 : -1;
}

static int dd_parse_of(const char *arg, DdArgs *dd)
{
    free(dd->out_filename);
    dd->out_filename = strdup(arg);
    return dd->out_filename ? 0 : -1;
}

static const DdOperand dd_operands[] = {
    { "bs", dd_parse_bs, DD_C_BS },
    { "count", dd_parse_count, DD_C_COUNT },
    { "if", dd_parse_if, DD_C_IF },
    { "of", dd_parse_of, DD_C_OF },
    { "skip", dd_parse_skip, DD_C_SKIP },
    { NULL, NULL, 0 },
};

/* Parse one "name=value" operand; -1 after the error was reported. */
static int dd_parse_operand(const char *operand, DdArgs *dd)
{
    const char *eq = strchr(operand, '=');
    if (!eq) {
        error_report("unrecognized operand %s", operand);
        return -1;
    }
    size_t len = (size_t)(eq - operand);
    for (const DdOperand *op = dd_operands; op->name; op++) {
        if (strlen(op->name) == len && !strncmp(op->name, operand, len)) {
            if (op->parse(eq + 1, dd) < 0) {
                return -1;
            }
            dd->flags |= op->flag;
            return 0;
        }
    }
    error_report("unrecognized operand %.*s", (int)len, operand);
    return -1;
}

/* True if skip blocks of bsz lie past size (or overflow). */
static bool dd_skip_past_end(const DdArgs *dd, int64_t size)
{
    return (dd->flags & DD_C_SKIP) &&
           (dd->skip > INT64_MAX / dd->bsz || size < dd->bsz * dd->skip);
}

/* Create the output image of out_fmt holding size bytes; -1 after the message. */
static int dd_create_output(const char *out_fmt, const char *filename, int64_t size)
{
    const BlockDriver *drv = bdrv_find_format(out_fmt);
    if (!drv) {
        error_report("Unknown file format");
        return -1;
    }
    const BlockDriver *proto = bdrv_find_protocol(filename);
    if (!drv->create_opts) {
        error_report("Format driver '%s' does not support image creation", drv->format_name);
        return -1;
    }
    if (!proto->create_opts) {
        error_report("Protocol driver '%s' does not support image creation",
                     proto->format_name);
        return -1;
    }
    QOpts *opts = qopts_new();
    char num[32];
    snprintf(num, sizeof(num), "%" PRId64, size);
    qopts_set(opts, "size", num);
    Error *err = NULL;
    int ret = bdrv_create(drv, filename, opts, &err);
    qopts_free(opts);
    if (ret < 0) {
        if (!err) {
            error_setg_errno(&err, -ret, "Could not create image");
        }
        error_prepend(&err, "%s: error while creating output image: ", filename);
        error_report_err(err);
        return -1;
    }
    return 0;
}

/* The copy loop: bsz-sized reads from in_pos, written from offset 0. */
static int dd_copy(BlockDriverState *in, BlockDriverState *out, int64_t in_pos, int64_t size,
                   int64_t bsz)
{
    uint8_t *buf = malloc((size_t)bsz);
    if (!buf) {
        error_report("error while reading from input image file: %s", strerror(ENOMEM));
        return -1;
    }
    int ret = 0;
    for (int64_t out_pos = 0; in_pos < size;) {
        int64_t bytes = in_pos + bsz > size ? size - in_pos : bsz;
        ret = bdrv_pread(in, in_pos, bytes, buf, 0);
        if (ret < 0) {
            error_report("error while reading from input image file: %s", strerror(-ret));
            break;
        }
        in_pos += bytes;
        ret = bdrv_pwrite(out, out_pos, bytes, buf, 0);
        if (ret < 0) {
            error_report("error while writing to output image file: %s", strerror(-ret));
            break;
        }
        out_pos += bytes;
    }
    free(buf);
    return ret < 0 ? -1 : 0;
}

int img_dd(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    DdArgs dd = { .bsz = DD_DEFAULT_BS };
    const char *out_fmt = "raw", *fmt = NULL;
    bool image_opts = false, force_share = false;
    BlockDriverState *in = NULL, *out = NULL;
    int ret = -1;
    int c;

    while ((c = getopt_long(argc, argv, ":hf:O:U", long_options, NULL)) != -1) {
        switch (c) {
        case ':':
        case '?':
            img_getopt_error(c, argv);
        case 'h':
            img_help();
        case 'O':
            out_fmt = optarg;
            break;
        case 'f':
            fmt = optarg;
            break;
        case 'U':
            force_share = true;
            break;
        case OPT_OBJECT:
            img_object_add(optarg);
            break;
        case OPT_IMAGE_OPTS:
            image_opts = true;
            break;
        }
    }
    for (int i = optind; i < argc; i++) {
        if (dd_parse_operand(argv[i], &dd) < 0) {
            goto out;
        }
    }
    if (!(dd.flags & DD_C_IF) || !(dd.flags & DD_C_OF)) {
        error_report("Must specify both input and output files");
        goto out;
    }

    in = img_open(image_opts, dd.in_filename, fmt, 0, false, false, force_share);
    if (!in) {
        goto out;
    }
    if (!bdrv_find_format(out_fmt)) {
        error_report("Unknown file format");
        goto out;
    }
    int64_t size = bdrv_getlength(in);
    if (size < 0) {
        error_report("Failed to get size for '%s'", dd.in_filename);
        goto out;
    }
    if ((dd.flags & DD_C_COUNT) && dd.count <= INT64_MAX / dd.bsz && dd.count * dd.bsz < size) {
        size = dd.count * dd.bsz;
    }
    bool past_end = dd_skip_past_end(&dd, size);
    if (dd_create_output(out_fmt, dd.out_filename, past_end ? 0 : size - dd.bsz * dd.skip) < 0) {
        goto out;
    }
    out = img_open(false, dd.out_filename, out_fmt, BDRV_O_RDWR, false, false, false);
    if (!out) {
        goto out;
    }
    int64_t in_pos;
    if (past_end) {
        /* Like dd(1): warn, and leave an empty output image. */
        error_report("%s: cannot skip to specified offset", dd.in_filename);
        in_pos = size;
    } else {
        in_pos = dd.skip * dd.bsz;
    }
    ret = dd_copy(in, out, in_pos, size, dd.bsz);
out:
    if (out) {
        bdrv_unref(out);
    }
    if (in) {
        bdrv_unref(in);
    }
    free(dd.in_filename);
    free(dd.out_filename);
    return ret ? 1 : 0;
}
