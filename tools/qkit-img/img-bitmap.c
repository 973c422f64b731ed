/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qkit-img bitmap: add, remove, clear, enable, disable or merge a persistent dirty
 * bitmap. The command line, its checks and the per-action messages are qemu-img's.
 *
 * The work is the block layer's (bdrv_dirty_bitmap_*): this file parses the command
 * line and runs the actions in order on the image, opened read-write without its
 * backing chain; the bitmaps are written back when the image is closed, even after a
 * failed action, as with qemu-img.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "img.h"
#include "qkit/cutils.h"

enum {
    OPT_OBJECT = 256,
    OPT_IMAGE_OPTS,
    OPT_ADD,
    OPT_REMOVE,
    OPT_CLEAR,
    OPT_ENABLE,
    OPT_DISABLE,
    OPT_MERGE,
};

typedef enum {
    BITMAP_ADD,
    BITMAP_REMOVE,
    BITMAP_CLEAR,
    BITMAP_ENABLE,
    BITMAP_DISABLE,
    BITMAP_MERGE,
} BitmapActionType;

static const char *const bitmap_op_names[] = {
    [BITMAP_ADD] = "add",
    [BITMAP_REMOVE] = "remove",
    [BITMAP_CLEAR] = "clear",
    [BITMAP_ENABLE] = "enable",
    [BITMAP_DISABLE] = "disable",
    [BITMAP_MERGE] = "merge",
};

typedef struct BitmapAction {
    BitmapActionType act;
    const char *src;              /* --merge SOURCE */
} BitmapAction;

/* QEMU names anonymous nodes "#block" + a counter + two random digits. */
#define BITMAP_NODE_RANDOM_RANGE 100

/* An open image and how error messages name its node. */
typedef struct BitmapImage {
    BlockDriverState *bs;
    char node_name[32];
} BitmapImage;

/* Name the node the way QEMU names anonymous nodes in its messages. */
static void bitmap_image_init(BitmapImage *img, BlockDriverState *bs, unsigned node_index)
{
    memset(img, 0, sizeof(*img));
    img->bs = bs;
    snprintf(img->node_name, sizeof(img->node_name), "#block%u%02u", node_index,
             (unsigned)(rand() % BITMAP_NODE_RANDOM_RANGE));
}

/*
 * The granularity as QMP receives it: qemu-img passes the number through a 32-bit
 * field, so only a value that truncates to 0 is kept whole (and then refused).
 */
static uint64_t bitmap_qmp_granularity(uint64_t granularity)
{
    return (uint32_t)granularity ? (uint32_t)granularity : granularity;
}

/* Run the actions in order; stops at the first failure. 0 or 1 (exit status). */
static int bitmap_run(const BitmapAction *acts, int nacts, const char *bitmap,
                      uint64_t granularity, const BitmapImage *img, const BitmapImage *src)
{
    BlockDriverState *bs = img->bs;
    for (int i = 0; i < nacts; i++) {
        Error *err = NULL;
        switch (acts[i].act) {
        case BITMAP_ADD:
            bdrv_dirty_bitmap_add(bs, img->node_name, bitmap,
                                  bitmap_qmp_granularity(granularity), false, &err);
            break;
        case BITMAP_REMOVE:
            bdrv_dirty_bitmap_remove(bs, bitmap, &err);
            break;
        case BITMAP_CLEAR:
            bdrv_dirty_bitmap_clear(bs, bitmap, &err);
            break;
        case BITMAP_ENABLE:
            bdrv_dirty_bitmap_set_enabled(bs, bitmap, true, &err);
            break;
        case BITMAP_DISABLE:
            bdrv_dirty_bitmap_set_enabled(bs, bitmap, false, &err);
            break;
        case BITMAP_MERGE:
            bdrv_dirty_bitmap_merge(bs, bitmap, src->bs, acts[i].src, &err);
            break;
        }
        if (err) {
            error_prepend(&err, "Operation %s on bitmap %s failed: ",
                          bitmap_op_names[acts[i].act], bitmap);
            error_report_err(err);
            return 1;
        }
    }
    return 0;
}

int img_bitmap(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "add", no_argument, NULL, OPT_ADD },
        { "remove", no_argument, NULL, OPT_REMOVE },
        { "clear", no_argument, NULL, OPT_CLEAR },
        { "enable", no_argument, NULL, OPT_ENABLE },
        { "disable", no_argument, NULL, OPT_DISABLE },
        { "merge", required_argument, NULL, OPT_MERGE },
        { "granularity", required_argument, NULL, 'g' },
        { "source-file", required_argument, NULL, 'b' },
        { "source-format", required_argument, NULL, 'F' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *src_fmt = NULL, *src_filename = NULL;
    bool image_opts = false, add = false, merge = false;
    int64_t granularity = 0;
    BitmapAction *acts = calloc(argc, sizeof(*acts));
    int nacts = 0, ret = 1, c;
    BlockDriverState *bs = NULL, *src_bs = NULL;
    BitmapImage img = { 0 }, src = { 0 };

    if (!acts) {
        abort();
    }
    while ((c = getopt_long(argc, argv, ":b:f:F:g:h", long_options, NULL)) != -1) {
        switch (c) {
        case ':':
        case '?':
            img_getopt_error(c, argv);
        case 'h':
            img_help();
        case 'b':
            src_filename = optarg;
            break;
        case 'f':
            fmt = optarg;
            break;
        case 'F':
            src_fmt = optarg;
            break;
        case 'g':
            granularity = img_cvtnum("granularity", optarg);
            if (granularity < 0) {
                goto out;
            }
            break;
        case OPT_ADD:
            acts[nacts++].act = BITMAP_ADD;
            add = true;
            break;
        case OPT_REMOVE:
            acts[nacts++].act = BITMAP_REMOVE;
            break;
        case OPT_CLEAR:
            acts[nacts++].act = BITMAP_CLEAR;
            break;
        case OPT_ENABLE:
            acts[nacts++].act = BITMAP_ENABLE;
            break;
        case OPT_DISABLE:
            acts[nacts++].act = BITMAP_DISABLE;
            break;
        case OPT_MERGE:
            acts[nacts].act = BITMAP_MERGE;
            acts[nacts++].src = optarg;
            merge = true;
            break;
        case OPT_OBJECT:
            img_object_add(optarg);
            break;
        case OPT_IMAGE_OPTS:
            image_opts = true;
            break;
        }
    }

    if (nacts == 0) {
        error_report("Need at least one of --add, --remove, --clear, --enable, --disable, "
                     "or --merge");
        goto out;
    }
    if (granularity && !add) {
        error_report("granularity only supported with --add");
        goto out;
    }
    if (src_fmt && !src_filename) {
        error_report("-F only supported with -b");
        goto out;
    }
    if (src_filename && !merge) {
        error_report("Merge bitmap source file only supported with --merge");
        goto out;
    }
    if (optind != argc - 2) {
        error_report("Expecting filename and bitmap name");
        goto out;
    }
    const char *filename = argv[optind];
    const char *bitmap = argv[optind + 1];

    srand((unsigned)(time(NULL) ^ getpid()));
    /* Bitmaps live in the image itself: the backing chain is not needed. */
    bs = img_open(image_opts, filename, fmt, BDRV_O_RDWR | BDRV_O_NO_BACKING, false, false,
                  false);
    if (!bs) {
        goto out;
    }
    bitmap_image_init(&img, bs, 1);
    if (src_filename) {
        /* Read-only, with its backing chain, as qemu-img opens the merge source. */
        src_bs = img_open(false, src_filename, src_fmt, 0, false, false, false);
        if (!src_bs) {
            goto out;
        }
        bitmap_image_init(&src, src_bs, 3);
    }
    ret = bitmap_run(acts, nacts, bitmap, (uint64_t)granularity, &img,
                     src_filename ? &src : &img);
out:
    if (src_bs) {
        bdrv_unref(src_bs);
    }
    if (bs) {
        bdrv_unref(bs);
    }
    free(acts);
    return ret;
}
