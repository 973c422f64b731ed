/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qkit-img measure: how much space an image of a given format would need. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "img.h"

enum {
    OPT_OUTPUT = 256,
    OPT_OBJECT,
    OPT_IMAGE_OPTS,
    OPT_SIZE,
};

#define MEASURE_SIZE_UNSET UINT64_MAX

/* Print the measurement as text or JSON. */
static void measure_dump(int ofmt, const BlockMeasureInfo *info)
{
    if (ofmt == IMG_OUTPUT_HUMAN) {
        printf("required size: %" PRIu64 "\n", info->required);
        printf("fully allocated size: %" PRIu64 "\n", info->fully_allocated);
        if (info->has_bitmaps) {
            printf("bitmaps size: %" PRIu64 "\n", info->bitmaps);
        }
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "required", json_integer((json_int_t)info->required));
    json_object_set_new(o, "fully-allocated", json_integer((json_int_t)info->fully_allocated));
    if (info->has_bitmaps) {
        json_object_set_new(o, "bitmaps", json_integer((json_int_t)info->bitmaps));
    }
    img_print_json(o);
    json_decref(o);
}

/* Entry point of `qkit-img measure`. */
int img_measure(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "size", required_argument, NULL, OPT_SIZE },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *out_fmt = "raw";
    ImgSnapshotParam snapshot = { 0 };
    char *options = NULL;
    bool image_opts = false, force_share = false;
    uint64_t img_size = MEASURE_SIZE_UNSET;
    int ofmt = IMG_OUTPUT_HUMAN;
    BlockDriverState *in_bs = NULL;
    QOpts *opts = NULL;
    int ret = 1;
    int c;

    while ((c = getopt_long(argc, argv, ":hf:O:o:l:U", long_options, NULL)) != -1) {
        switch (c) {
        case ':':
        case '?':
            img_getopt_error(c, argv);
        case 'h':
            img_help();
        case 'f':
            fmt = optarg;
            break;
        case 'O':
            out_fmt = optarg;
            break;
        case 'o':
            if (img_accumulate_options(&options, optarg) < 0) {
                goto out;
            }
            break;
        case 'l':
            if (img_snapshot_param_parse(&snapshot, optarg) < 0) {
                goto out;
            }
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
        case OPT_OUTPUT:
            if ((ofmt = img_parse_output_format(optarg)) < 0) {
                goto out;
            }
            break;
        case OPT_SIZE: {
            int64_t sval = img_cvtnum("image size", optarg);
            if (sval < 0) {
                goto out;
            }
            img_size = (uint64_t)sval;
            break;
        }
        }
    }
    const char *filename = NULL;
    if (argc - optind > 1) {
        error_report("At most one filename argument is allowed.");
        goto out;
    } else if (argc - optind == 1) {
        filename = argv[optind];
    }
    if (!filename && (image_opts || fmt || snapshot.opts || snapshot.id_or_name)) {
        error_report("--image-opts, -f, and -l require a filename argument.");
        goto out;
    }
    if (filename && img_size != MEASURE_SIZE_UNSET) {
        error_report("--size N cannot be used together with a filename.");
        goto out;
    }
    if (!filename && img_size == MEASURE_SIZE_UNSET) {
        error_report("Either --size N or one filename must be specified.");
        goto out;
    }
    if (filename) {
        in_bs = img_open(image_opts, filename, fmt, 0, false, false, force_share);
        if (!in_bs) {
            goto out;
        }
        if (img_snapshot_param_load(&snapshot, in_bs) < 0) {
            goto out;
        }
    }
    const BlockDriver *drv = bdrv_find_format(out_fmt);
    if (!drv) {
        error_report("Unknown file format '%s'", out_fmt);
        goto out;
    }
    if (!drv->create_opts) {
        error_report("Format driver '%s' does not support image creation", drv->format_name);
        goto out;
    }
    if (!drv->measure) {
        error_report("Block driver '%s' does not support size measurement",
                     drv->format_name);
        goto out;
    }
    const QOptDesc *tables[3] = { drv->create_opts, bdrv_file.create_opts, NULL };
    Error *err = NULL;
    opts = qopts_new();
    if (options && img_parse_qopts(opts, options, tables, &err) < 0) {
        error_report_err(err);
        error_report("Invalid options for file format '%s'", out_fmt);
        goto out;
    }
    if (img_size != MEASURE_SIZE_UNSET) {
        char num[32];
        snprintf(num, sizeof(num), "%" PRIu64, img_size);
        qopts_set(opts, "size", num);
    }
    BlockMeasureInfo info = { 0 };
    if (drv->measure(opts, in_bs, &info, &err) < 0) {
        if (!err) {
            error_setg(&err, "Failed to measure the image");
        }
        error_report_err(err);
        goto out;
    }
    measure_dump(ofmt, &info);
    ret = 0;
out:
    qopts_free(opts);
    bdrv_unref(in_bs);
    bdrv_snapshot_param_free(&snapshot);
    free(options);
    return ret;
}
