/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qkit-img create: make a new image, optionally on top of a backing file. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "img.h"
#include "qkit/cutils.h"

enum {
    OPT_OBJECT = 256,
};

#define IMG_SIZE_UNSET UINT64_MAX

/*
 * The "Formatting ..." line lists options in the order qemu-img prints them for
 * each format, with the defaults it shows when an option is not given. Options a
 * format does not list here follow in the order of its create_opts table.
 */
typedef struct CreatePrintOpt {
    const char *name;
    const char *shown_default;
} CreatePrintOpt;

typedef struct CreatePrintOrder {
    const char *format;
    const CreatePrintOpt *opts;
} CreatePrintOrder;

static const CreatePrintOpt qcow2_print_order[] = {
    { "encryption", NULL },
    { "cluster_size", "65536" },
    { "extended_l2", "off" },
    { "preallocation", NULL },
    { "compression_type", "zlib" },
    { "size", NULL },
    { "compat", NULL },
    { "backing_file", NULL },
    { "backing_fmt", NULL },
    { "data_file", NULL },
    { "data_file_raw", NULL },
    { "lazy_refcounts", "off" },
    { "refcount_bits", "16" },
    { "nocow", NULL },
    { "extent_size_hint", NULL },
    { NULL, NULL },
};

static const CreatePrintOpt raw_print_order[] = {
    { "size", NULL },
    { "nocow", NULL },
    { "preallocation", NULL },
    { "extent_size_hint", NULL },
    { NULL, NULL },
};

static const CreatePrintOrder create_print_orders[] = {
    { "qcow2", qcow2_print_order },
    { "raw", raw_print_order },
    { NULL, NULL },
};

/* Print one " name=value" of the Formatting line: the value given, else the default. */
static void create_print_one(const QOpts *opts, const char *name, const char *def)
{
    const char *v = qopts_get(opts, name);
    if (v) {
        printf(" %s=%s", name, v);
    } else if (def) {
        printf(" %s=%s", name, def);
    }
}

/* The "Formatting 'FILE', fmt=FMT opt=value ..." line qemu-img prints before creating. */
static void create_print_formatting(const char *filename, const char *fmt, const QOpts *opts,
                                    const QOptDesc *const *tables)
{
    const CreatePrintOpt *order = NULL;
    for (const CreatePrintOrder *o = create_print_orders; o->format; o++) {
        if (!strcmp(o->format, fmt)) {
            order = o->opts;
        }
    }
    printf("Formatting '%s', fmt=%s", filename, fmt);
    for (const CreatePrintOpt *p = order; p && p->name; p++) {
        create_print_one(opts, p->name, img_opts_have(tables, p->name) ? p->shown_default : NULL);
    }
    /* Whatever the order table does not know comes in table order. */
    for (int t = 0; tables[t]; t++) {
        for (const QOptDesc *d = tables[t]; d->name; d++) {
            bool listed = false;
            for (const CreatePrintOpt *p = order; p && p->name && !listed; p++) {
                listed = !strcmp(p->name, d->name);
            }
            for (int u = 0; u < t && !listed; u++) {
                for (const QOptDesc *e = tables[u]; e->name && !listed; e++) {
                    listed = !strcmp(e->name, d->name);
                }
            }
            if (!listed) {
                create_print_one(opts, d->name, order ? NULL : d->def_value_str);
            }
        }
    }
    printf("\n");
    fflush(stdout);
}

/*
 * Open the backing file to check it and, when no size was given, take its size.
 * Returns 0, or -1 with *errp set.
 */
static int create_check_backing(const char *filename, const char *backing_file,
                                const char *backing_fmt, uint64_t *size, Error **errp)
{
    char *full = path_combine(filename, backing_file);
    json_t *options = json_object();
    Error *err = NULL;
    BlockDriverState *bs = bdrv_open(full, backing_fmt, options,
                                     BDRV_O_NO_IO | BDRV_O_FORCE_SHARE, &err);
    free(full);
    if (!bs) {
        error_append_hint(&err, "Could not open backing image.\n");
        error_propagate(errp, err);
        return -1;
    }
    int ret = 0;
    if (!backing_fmt) {
        error_setg(errp, "Backing file specified without backing format");
        error_append_hint(errp, "Detected format of %s.", bdrv_get_format_name(bs));
        ret = -1;
    } else if (*size == IMG_SIZE_UNSET) {
        int64_t len = bdrv_getlength(bs);
        if (len < 0) {
            error_setg_errno(errp, (int)-len, "Could not get size of '%s'", backing_file);
            ret = -1;
        } else {
            *size = (uint64_t)len;
        }
    }
    bdrv_unref(bs);
    return ret;
}

/* The work of create once the arguments are known; errors go to *errp. */
static void create_image(const char *filename, const char *fmt, const char *base_filename,
                         const char *base_fmt, const char *options, uint64_t img_size,
                         bool unsafe, bool quiet, Error **errp)
{
    const BlockDriver *drv = bdrv_find_format(fmt);
    if (!drv) {
        error_setg(errp, "Unknown file format '%s'", fmt);
        return;
    }
    const BlockDriver *proto = bdrv_find_protocol(filename);
    if (!drv->create_opts) {
        error_setg(errp, "Format driver '%s' does not support image creation",
                   drv->format_name);
        return;
    }
    if (!proto->create_opts) {
        error_setg(errp, "Protocol driver '%s' does not support image creation",
                   proto->format_name);
        return;
    }
    const QOptDesc *tables[3] = { drv->create_opts, proto->create_opts, NULL };
    QOpts *opts = qopts_new();
    char num[32];

    if (options && img_parse_qopts(opts, options, tables, errp) < 0) {
        goto out;
    }
    if (!qopts_get(opts, "size")) {
        if (img_size != IMG_SIZE_UNSET) {
            snprintf(num, sizeof(num), "%" PRIu64, img_size);
            qopts_set(opts, "size", num);
        }
    } else if (img_size != IMG_SIZE_UNSET) {
        error_setg(errp, "The image size must be specified only once");
        goto out;
    }
    if (base_filename) {
        if (!img_opts_have(tables, "backing_file")) {
            error_setg(errp, "Backing file not supported for file format '%s'", fmt);
            goto out;
        }
        qopts_set(opts, "backing_file", base_filename);
    }
    if (base_fmt) {
        if (!img_opts_have(tables, "backing_fmt")) {
            error_setg(errp, "Backing file format not supported for file format '%s'", fmt);
            goto out;
        }
        qopts_set(opts, "backing_fmt", base_fmt);
    }
    const char *backing_file = qopts_get(opts, "backing_file");
    const char *backing_fmt = qopts_get(opts, "backing_fmt");
    if (backing_file) {
        if (!strcmp(filename, backing_file)) {
            error_setg(errp, "Error: Trying to create an image with the same filename as the "
                       "backing file");
            goto out;
        }
        if (!backing_file[0]) {
            error_setg(errp, "Expected backing file name, got empty string");
            goto out;
        }
    }
    uint64_t size = IMG_SIZE_UNSET;
    if (qopts_get_size(opts, "size", IMG_SIZE_UNSET, &size, errp) < 0) {
        goto out;
    }
    if (backing_file && !unsafe) {
        if (create_check_backing(filename, backing_file, backing_fmt, &size, errp) < 0) {
            goto out;
        }
        if (!qopts_get(opts, "size")) {
            snprintf(num, sizeof(num), "%" PRIu64, size);
            qopts_set(opts, "size", num);
        }
    } else if (backing_file && !backing_fmt) {
        error_setg(errp, "Backing file specified without backing format");
        goto out;
    }
    if (size == IMG_SIZE_UNSET) {
        error_setg(errp, "Image creation needs a size parameter");
        goto out;
    }
    if (!quiet) {
        create_print_formatting(filename, fmt, opts, tables);
    }
    Error *err = NULL;
    int ret = bdrv_create(drv, filename, opts, &err);
    if (ret == -EFBIG) {
        /* Too large: name the format, and suggest larger clusters where they exist. */
        error_free(err);
        err = NULL;
        error_setg(errp, "The image size is too large for file format '%s'%s", fmt,
                   img_opts_have(tables, "cluster_size") ? " (try using a larger cluster size)"
                                                     : "");
    } else if (ret < 0) {
        if (!err) {
            error_setg_errno(&err, -ret, "Could not create image");
        }
        error_propagate(errp, err);
    }
out:
    qopts_free(opts);
}

/* Entry point of `qkit-img create`. */
int img_create(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = "raw", *base_fmt = NULL, *base_filename = NULL;
    char *options = NULL;
    bool quiet = false, unsafe = false;
    uint64_t img_size = IMG_SIZE_UNSET;
    int ret = 1;
    int c;

    while ((c = getopt_long(argc, argv, ":F:b:f:ho:qu", long_options, NULL)) != -1) {
        switch (c) {
        case ':':
        case '?':
            img_getopt_error(c, argv);
        case 'h':
            img_help();
        case 'F':
            base_fmt = optarg;
            break;
        case 'b':
            base_filename = optarg;
            break;
        case 'f':
            fmt = optarg;
            break;
        case 'o':
            if (img_accumulate_options(&options, optarg) < 0) {
                goto out;
            }
            break;
        case 'q':
            quiet = true;
            break;
        case 'u':
            unsafe = true;
            break;
        case OPT_OBJECT:
            img_object_add(optarg);
            break;
        }
    }
    const char *filename = optind < argc ? argv[optind] : NULL;
    if (options && img_has_help_option(options)) {
        ret = img_print_create_opts_help(filename, fmt);
        goto out;
    }
    if (optind >= argc) {
        img_error_exit("Expecting image file name");
    }
    optind++;
    if (optind < argc) {
        int64_t sval = img_cvtnum("image size", argv[optind++]);
        if (sval < 0) {
            goto out;
        }
        img_size = (uint64_t)sval;
    }
    if (optind != argc) {
        img_error_exit("Unexpected argument: %s", argv[optind]);
    }
    Error *err = NULL;
    create_image(filename, fmt, base_filename, base_fmt, options, img_size, unsafe, quiet,
                 &err);
    if (err) {
        error_prepend(&err, "%s: ", filename);
        error_report_err(err);
        goto out;
    }
    ret = 0;
out:
    free(options);
    return ret;
}
