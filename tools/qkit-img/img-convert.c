/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qkit-img convert: parse the command line, open the sources, create and open the
 * target, then hand the copy to block_convert() (src/block/convert.c). Checks run
 * in qemu-img's order so that the same bad command gives the same first message.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "img.h"
#include "qkit/convert.h"
#include "qkit/cutils.h"

enum {
    OPT_OBJECT = 256,
    OPT_IMAGE_OPTS,
    OPT_TARGET_IMAGE_OPTS,
    OPT_SALVAGE,
    OPT_TARGET_IS_ZERO,
    OPT_BITMAPS,
    OPT_SKIP_BROKEN,
};

#define CONVERT_SECTOR_SIZE 512

/* Everything the command line says, before any image is opened. */
typedef struct ConvertArgs {
    const char *fmt;
    const char *out_fmt;
    const char *cache;
    const char *src_cache;
    const char *out_baseimg;
    const char *backing_fmt;
    ImgSnapshotParam snapshot;   /* -l */
    char *options;
    bool compressed, copy_range, progress, quiet, skip_create, in_order, force_share;
    bool image_opts, tgt_image_opts, salvage, target_is_zero, bitmaps, skip_broken;
    bool explicit_min_sparse;
    int64_t min_sparse;
    int64_t num_requests;
    int64_t rate_limit;
} ConvertArgs;

/* Formats whose drivers can write compressed clusters in QEMU. */
static const char *const convert_compress_formats[] = { "qcow", "qcow2", "vmdk", NULL };

/* True if drv can take BDRV_REQ_WRITE_COMPRESSED writes. */
static bool convert_can_compress(const BlockDriver *drv)
{
    if (drv->compress_cluster) {
        return true;
    }
    for (int i = 0; convert_compress_formats[i]; i++) {
        if (!strcmp(drv->format_name, convert_compress_formats[i])) {
            return true;
        }
    }
    return false;
}

/* Parse -S: a multiple of 512 up to 16 MiB; -1 after qemu-img's message. */
static int convert_parse_sparse(ConvertArgs *a, const char *arg)
{
    int64_t sval = img_cvtnum("buffer size for sparse output", arg);
    if (sval < 0) {
        return -1;
    }
    if (sval % CONVERT_SECTOR_SIZE || sval > BLOCK_CONVERT_MAX_BUF_BYTES) {
        error_report("Invalid buffer size for sparse output specified. Valid sizes are "
                     "multiples of %d up to %d. Select 0 to disable sparse detection "
                     "(fully allocates output).", CONVERT_SECTOR_SIZE,
                     BLOCK_CONVERT_MAX_BUF_BYTES);
        return -1;
    }
    a->min_sparse = sval;
    a->explicit_min_sparse = true;
    return 0;
}

/* Parse the options; returns 0, or 1 for an error already reported (exit status). */
static int convert_parse_args(ConvertArgs *a, int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { "target-image-opts", no_argument, NULL, OPT_TARGET_IMAGE_OPTS },
        { "salvage", no_argument, NULL, OPT_SALVAGE },
        { "target-is-zero", no_argument, NULL, OPT_TARGET_IS_ZERO },
        { "bitmaps", no_argument, NULL, OPT_BITMAPS },
        { "skip-broken-bitmaps", no_argument, NULL, OPT_SKIP_BROKEN },
        { NULL, 0, NULL, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, ":hf:O:B:CcF:o:l:S:pt:T:qnm:WUr:", long_options,
                            NULL)) != -1) {
        switch (c) {
        case ':':
        case '?':
            img_getopt_error(c, argv);
        case 'h':
            img_help();
        case 'f':
            a->fmt = optarg;
            break;
        case 'O':
            a->out_fmt = optarg;
            break;
        case 'B':
            a->out_baseimg = optarg;
            break;
        case 'C':
            a->copy_range = true;
            break;
        case 'c':
            a->compressed = true;
            break;
        case 'F':
            a->backing_fmt = optarg;
            break;
        case 'o':
            if (img_accumulate_options(&a->options, optarg) < 0) {
                return 1;
            }
            break;
        case 'l':
            if (img_snapshot_param_parse(&a->snapshot, optarg) < 0) {
                return 1;
            }
            break;
        case 'S':
            if (convert_parse_sparse(a, optarg) < 0) {
                return 1;
            }
            break;
        case 'p':
            a->progress = true;
            break;
        case 't':
            a->cache = optarg;
            break;
        case 'T':
            a->src_cache = optarg;
            break;
        case 'q':
            a->quiet = true;
            break;
        case 'n':
            a->skip_create = true;
            break;
        case 'm':
            if (qkit_strtoi64(optarg, &a->num_requests) < 0 || a->num_requests < 1 ||
                a->num_requests > BLOCK_CONVERT_MAX_REQUESTS) {
                error_report("Invalid number of coroutines. Allowed number of coroutines is "
                             "between 1 and %d", BLOCK_CONVERT_MAX_REQUESTS);
                return 1;
            }
            break;
        case 'W':
            a->in_order = false;
            break;
        case 'U':
            a->force_share = true;
            break;
        case 'r':
            a->rate_limit = img_cvtnum("rate limit", optarg);
            if (a->rate_limit < 0) {
                return 1;
            }
            break;
        case OPT_OBJECT:
            img_object_add(optarg);
            break;
        case OPT_IMAGE_OPTS:
            a->image_opts = true;
            break;
        case OPT_TARGET_IMAGE_OPTS:
            a->tgt_image_opts = true;
            break;
        case OPT_SALVAGE:
            a->salvage = true;
            break;
        case OPT_TARGET_IS_ZERO:
            /* The user vouches for the target as a zero-initialised driver would. */
            a->target_is_zero = true;
            break;
        case OPT_BITMAPS:
            a->bitmaps = true;
            break;
        case OPT_SKIP_BROKEN:
            a->skip_broken = true;
            break;
        }
    }
    return 0;
}

/* The combinations qemu-img refuses before opening anything; 1 after the message. */
static int convert_check_args(const ConvertArgs *a)
{
    if (a->skip_broken && !a->bitmaps) {
        error_report("Use of --skip-broken-bitmaps requires --bitmaps");
    } else if (a->compressed && a->copy_range) {
        error_report("Cannot enable copy offloading when -c is used");
    } else if (a->explicit_min_sparse && a->copy_range) {
        error_report("Cannot enable copy offloading when -S is used");
    } else if (a->copy_range && a->salvage) {
        error_report("Cannot use copy offloading in salvaging mode");
    } else if (a->tgt_image_opts && !a->skip_create) {
        error_report("--target-image-opts requires use of -n flag");
    } else if (a->skip_create && a->options) {
        error_report("-o has no effect when skipping image creation");
    } else if (a->target_is_zero && !a->skip_create) {
        error_report("--target-is-zero requires use of -n flag");
    } else {
        return 0;
    }
    return 1;
}

/*
 * --bitmaps, before copying: the source must support persistent bitmaps, and none of
 * them may be inconsistent unless --skip-broken-bitmaps.
 */
static int convert_check_bitmaps(BlockDriverState *src, bool skip_broken)
{
    if (!bdrv_supports_persistent_dirty_bitmap(src)) {
        error_report("Source lacks bitmap support");
        return -1;
    }
    BdrvDirtyBitmapInfo *list;
    int n = bdrv_dirty_bitmap_list(src, &list);
    int ret = 0;
    for (int i = 0; i < n && !skip_broken; i++) {
        if (list[i].inconsistent) {
            error_report("Cannot copy inconsistent bitmap '%s'", list[i].name);
            fprintf(stderr, "Try --skip-broken-bitmaps, or use 'qemu-img bitmap --remove' "
                    "to delete it\n");
            ret = -1;
            break;
        }
    }
    bdrv_dirty_bitmap_list_free(list, n);
    return ret;
}

/* --bitmaps, after copying: add each source bitmap to the target and fill it. */
static int convert_copy_bitmaps(BlockDriverState *src, BlockDriverState *dst, bool skip_broken)
{
    BdrvDirtyBitmapInfo *list;
    int n = bdrv_dirty_bitmap_list(src, &list);
    int ret = 0;
    for (int i = 0; i < n; i++) {
        Error *err = NULL;
        const char *name = list[i].name;
        if (skip_broken && list[i].inconsistent) {
            error_report("warning: Skipping inconsistent bitmap '%s'", name);
            continue;
        }
        if (bdrv_dirty_bitmap_add(dst, NULL, name, list[i].granularity, !list[i].enabled,
                                  &err) < 0) {
            error_prepend(&err, "Failed to create bitmap %s: ", name);
            error_report_err(err);
            ret = -1;
            break;
        }
        if (bdrv_dirty_bitmap_merge(dst, name, src, name, &err) < 0) {
            error_prepend(&err, "Failed to populate bitmap %s: ", name);
            error_report_err(err);
            bdrv_dirty_bitmap_remove(dst, name, NULL);
            ret = -1;
            break;
        }
    }
    bdrv_dirty_bitmap_list_free(list, n);
    return ret;
}

/* Build the create options of the target; NULL after the error was reported. */
static QOpts *convert_create_opts(const ConvertArgs *a, const BlockDriver *drv,
                                  const char *out_filename, int64_t total_bytes)
{
    const BlockDriver *proto = bdrv_find_protocol(out_filename);
    if (!drv->create_opts) {
        error_report("Format driver '%s' does not support image creation", drv->format_name);
        return NULL;
    }
    if (!proto->create_opts) {
        error_report("Protocol driver '%s' does not support image creation",
                     proto->format_name);
        return NULL;
    }
    const QOptDesc *tables[3] = { drv->create_opts, proto->create_opts, NULL };
    QOpts *opts = qopts_new();
    Error *err = NULL;
    char num[32];
    if (a->options && img_parse_qopts(opts, a->options, tables, &err) < 0) {
        error_report_err(err);
        goto fail;
    }
    /* The size always comes from the sources. */
    snprintf(num, sizeof(num), "%" PRId64, total_bytes);
    qopts_set(opts, "size", num);
    if (a->out_baseimg) {
        if (!img_opts_have(tables, "backing_file")) {
            error_report("Backing file not supported for file format '%s'", a->out_fmt);
            goto fail;
        }
        qopts_set(opts, "backing_file", a->out_baseimg);
    }
    if (a->backing_fmt) {
        if (!img_opts_have(tables, "backing_fmt")) {
            error_report("Backing file format not supported for file format '%s'",
                         a->out_fmt);
            goto fail;
        }
        qopts_set(opts, "backing_fmt", a->backing_fmt);
    }
    return opts;
fail:
    qopts_free(opts);
    return NULL;
}

/* -c with options that exclude it; 0 or -1 after the message. */
static int convert_check_compress(const BlockDriver *drv, const QOpts *opts)
{
    if (drv && !convert_can_compress(drv)) {
        error_report("Compression not supported for this file format");
        return -1;
    }
    bool encryption = false;
    if (opts) {
        qopts_get_bool(opts, "encryption", false, &encryption, NULL);
    }
    if (encryption || (opts && qopts_get(opts, "encrypt.format"))) {
        error_report("Compression and encryption not supported at the same time");
        return -1;
    }
    const char *prealloc = opts ? qopts_get(opts, "preallocation") : NULL;
    if (prealloc && strcmp(prealloc, "off")) {
        error_report("Compression and preallocation not supported at the same time");
        return -1;
    }
    return 0;
}

/* Progress hook of the engine: redraw the -p line. */
static void convert_progress(void *opaque, float done, float total)
{
    img_progress_print(done, total);
}

/* Salvage hook of the engine: a warning, unless -q. */
static void convert_warn(void *opaque, const char *msg)
{
    const ConvertArgs *a = opaque;
    if (!a->quiet) {
        fprintf(stderr, "%s: warning: %s\n", error_get_progname(), msg);
    }
}

/* Everything after the options: open, create, copy. Returns the exit status. */
static int convert_run(ConvertArgs *a, int nsrc, char **src_names, const char *out_filename)
{
    BlockDriverState **src = calloc(nsrc, sizeof(*src));
    BlockDriverState *target = NULL;
    QOpts *opts = NULL;
    const BlockDriver *drv = NULL;
    Error *err = NULL;
    int64_t total_bytes = 0;
    int ret = -1;
    /* Sources let nobody write: the target cannot be a source, even a raw one. */
    int src_flags = BDRV_O_NO_SHARE;

    if (!src) {
        abort();
    }
    if (img_parse_cache_mode("source cache", a->src_cache, &src_flags) < 0) {
        free(src);
        return 1;
    }
    if (a->quiet) {
        a->progress = false;
    }
    img_progress_init(a->progress, 1.0f);
    img_progress_print(0, 100);

    for (int i = 0; i < nsrc; i++) {
        src[i] = img_open(a->image_opts, src_names[i], a->fmt, src_flags, false, a->quiet,
                          a->force_share);
        if (!src[i]) {
            goto out;
        }
        int64_t len = bdrv_getlength(src[i]);
        if (len < 0) {
            error_report("Could not get size of %s: %s", src_names[i], strerror((int)-len));
            goto out;
        }
        total_bytes += ROUND_UP(len, CONVERT_SECTOR_SIZE);
    }

    /* -l: the source reads as the internal snapshot (qemu-img's order of checks). */
    if (!a->snapshot.opts && a->snapshot.id_or_name && nsrc > 1) {
        error_report("No support for concatenating multiple snapshot");
        goto out;
    }
    if (img_snapshot_param_load(&a->snapshot, src[0]) < 0) {
        goto out;
    }

    if (!a->skip_create) {
        drv = bdrv_find_format(a->out_fmt);
        if (!drv) {
            error_report("Unknown file format '%s'", a->out_fmt);
            goto out;
        }
        opts = convert_create_opts(a, drv, out_filename, total_bytes);
        if (!opts) {
            goto out;
        }
    }
    const char *baseimg_param = opts ? qopts_get(opts, "backing_file") : NULL;
    const char *out_baseimg = baseimg_param ? baseimg_param : a->out_baseimg;
    bool target_has_backing = out_baseimg != NULL;

    if (a->target_is_zero && target_has_backing) {
        /* qemu-img reports this but exits 0; scripts may depend on that. */
        error_report("Cannot use --target-is-zero when the destination image has a "
                     "backing file");
        ret = 0;
        goto out;
    }
    if (nsrc > 1 && out_baseimg) {
        error_report("Having a backing file for the target makes no sense when "
                     "concatenating multiple input images");
        goto out;
    }
    if (baseimg_param && !qopts_get(opts, "backing_fmt")) {
        error_report("Use of backing file requires explicit backing format");
        goto out;
    }
    if (a->compressed && convert_check_compress(drv, opts) < 0) {
        goto out;
    }
    if (a->bitmaps) {
        if (nsrc > 1) {
            error_report("Copying bitmaps only possible with single source");
            goto out;
        }
        if (convert_check_bitmaps(src[0], a->skip_broken) < 0) {
            goto out;
        }
    }
    if (!a->skip_create && bdrv_create(drv, out_filename, opts, &err) < 0) {
        if (!err) {
            error_setg(&err, "Could not create image");
        }
        error_prepend(&err, "%s: error while converting %s: ", out_filename, a->out_fmt);
        error_report_err(err);
        goto out;
    }

    int flags = a->min_sparse ? (BDRV_O_RDWR | BDRV_O_UNMAP) : BDRV_O_RDWR;
    if (img_parse_cache_mode("cache", a->cache, &flags) < 0) {
        goto out;
    }
    target = img_open(a->skip_create && a->tgt_image_opts, out_filename, a->out_fmt, flags,
                      false, a->quiet, false);
    if (!target) {
        goto out;
    }
    if (a->bitmaps && !bdrv_supports_persistent_dirty_bitmap(target)) {
        error_report("Format driver '%s' does not support bitmaps", target->drv->format_name);
        goto out;
    }
    if (a->compressed && !convert_can_compress(target->drv)) {
        error_report("Compression not supported for this file format");
        goto out;
    }
    if (a->skip_create) {
        int64_t out_len = bdrv_getlength(target);
        if (out_len < 0) {
            error_report("unable to get output image length: %s", strerror((int)-out_len));
            goto out;
        }
        if (out_len / CONVERT_SECTOR_SIZE < total_bytes / CONVERT_SECTOR_SIZE) {
            error_report("output file is smaller than input file");
            goto out;
        }
    }

    BlockConvertParams p = {
        .src = src,
        .src_num = nsrc,
        .target = target,
        .min_sparse = a->min_sparse,
        .compressed = a->compressed,
        .target_has_backing = target_has_backing,
        .target_is_new = !a->skip_create,
        .target_is_zero = a->target_is_zero,
        .in_order = a->in_order,
        .num_requests = (int)a->num_requests,
        .salvage = a->salvage,
        .copy_range = a->copy_range,
        .rate_limit = (uint64_t)a->rate_limit,
        .progress = a->progress ? convert_progress : NULL,
        .warn = convert_warn,
        .opaque = a,
    };
    if (block_convert(&p, &err) < 0) {
        error_report_err(err);
        goto out;
    }
    if (a->bitmaps && convert_copy_bitmaps(src[0], target, a->skip_broken) < 0) {
        goto out;
    }
    ret = 0;
out:
    if (ret == 0) {
        img_progress_print(100, 100);
    }
    img_progress_end();
    qopts_free(opts);
    if (target) {
        bdrv_unref(target);
    }
    for (int i = 0; i < nsrc; i++) {
        if (src[i]) {
            bdrv_unref(src[i]);
        }
    }
    free(src);
    return ret == 0 ? 0 : 1;
}

int img_convert(int argc, char **argv)
{
    ConvertArgs a = {
        .cache = "unsafe",
        .src_cache = "writeback",
        .min_sparse = BLOCK_CONVERT_DEFAULT_MIN_SPARSE,
        .num_requests = BLOCK_CONVERT_DEFAULT_REQUESTS,
        .in_order = true,
    };
    int ret = convert_parse_args(&a, argc, argv);
    if (ret) {
        goto out;
    }
    if (!a.out_fmt && !a.tgt_image_opts) {
        a.out_fmt = "raw";
    }
    ret = convert_check_args(&a);
    if (ret) {
        goto out;
    }
    int nsrc = argc - optind - 1;
    const char *out_filename = nsrc >= 1 ? argv[argc - 1] : NULL;
    if (a.options && img_has_help_option(a.options)) {
        if (a.out_fmt) {
            ret = img_print_create_opts_help(out_filename, a.out_fmt);
        } else {
            error_report("Option help requires a format be specified");
            ret = 1;
        }
        goto out;
    }
    if (nsrc < 1) {
        error_report("Must specify image file name");
        ret = 1;
        goto out;
    }
    ret = convert_run(&a, nsrc, argv + optind, out_filename);
out:
    free(a.options);
    bdrv_snapshot_param_free(&a.snapshot);
    return ret;
}
