/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qkit-img bitmap: add, remove, clear, enable, disable or merge a persistent dirty
 * bitmap. The command line, its checks and the per-action messages are qemu-img's.
 *
 * No format driver here stores persistent bitmaps yet: for formats without them in
 * QEMU either (raw) every action fails exactly as in qemu-img. For qcow2, whatever
 * can be decided from the bitmap list the driver reports (empty name, bad
 * granularity, v2 image, unknown or duplicate bitmap) reads as in qemu-img; an
 * action that would really change a qcow2 bitmap fails with a "not supported"
 * message, and the image is opened read-only so that nothing is written to it.
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

#define BITMAP_MIN_GRANULARITY 512
/* Longest bitmap name a qcow2 image can store. */
#define BITMAP_MAX_NAME_LEN 1023
/* QEMU names anonymous nodes "#block" + a counter + two random digits. */
#define BITMAP_NODE_RANDOM_RANGE 100

/* What the image (as its driver reports it) says about persistent bitmaps. */
typedef struct BitmapImage {
    BlockDriverState *bs;
    bool is_qcow2;
    bool qcow2_v2;
    json_t *bitmaps;              /* array of {"name": ...} or NULL */
    char node_name[32];
} BitmapImage;

/* Load what the driver reports (format, compat level, bitmap list) for bs. */
static void bitmap_image_init(BitmapImage *img, BlockDriverState *bs, unsigned node_index)
{
    memset(img, 0, sizeof(*img));
    img->bs = bs;
    img->is_qcow2 = !strcmp(bs->drv->format_name, "qcow2");
    snprintf(img->node_name, sizeof(img->node_name), "#block%u%02u", node_index,
             (unsigned)(rand() % BITMAP_NODE_RANDOM_RANGE));
    if (!img->is_qcow2 || !bs->drv->get_specific_info) {
        return;
    }
    json_t *info = bs->drv->get_specific_info(bs, NULL);
    json_t *data = info ? json_object_get(info, "data") : NULL;
    const char *compat = data ? json_string_value(json_object_get(data, "compat")) : NULL;
    img->qcow2_v2 = compat && !strcmp(compat, "0.10");
    json_t *bitmaps = data ? json_object_get(data, "bitmaps") : NULL;
    if (json_is_array(bitmaps)) {
        img->bitmaps = json_incref(bitmaps);
    }
    json_decref(info);
}

/* True if the image lists a bitmap called name. */
static bool bitmap_image_has(const BitmapImage *img, const char *name)
{
    size_t i;
    json_t *bm;
    json_array_foreach(img->bitmaps, i, bm) {
        const char *n = json_string_value(json_object_get(bm, "name"));
        if (n && !strcmp(n, name)) {
            return true;
        }
    }
    return false;
}

/* The error of adding bitmap name with granularity (0 = default) to img. */
static void bitmap_add(const BitmapImage *img, const char *name, uint64_t granularity,
                       Error **errp)
{
    if (!name[0]) {
        error_setg(errp, "Bitmap name cannot be empty");
        return;
    }
    /* QMP carries the granularity as 32 bits. */
    uint32_t gran32 = (uint32_t)granularity;
    if (granularity && (gran32 < BITMAP_MIN_GRANULARITY || !QKIT_IS_POW2(gran32))) {
        error_setg(errp, "Granularity must be power of 2 and at least %d",
                   BITMAP_MIN_GRANULARITY);
        return;
    }
    if (!img->is_qcow2) {
        error_setg_errno(errp, ENOTSUP, "Can't store persistent bitmaps to %s",
                         img->node_name);
        return;
    }
    if (img->qcow2_v2) {
        error_setg(errp, "Can't make bitmap '%s' persistent in '%s': Cannot store dirty "
                   "bitmaps in qcow2 v2 files", name, img->node_name);
        return;
    }
    if (strlen(name) > BITMAP_MAX_NAME_LEN) {
        error_setg(errp, "Can't make bitmap '%s' persistent in '%s': Name length exceeds "
                   "maximum (%d characters)", name, img->node_name, BITMAP_MAX_NAME_LEN);
        return;
    }
    if (bitmap_image_has(img, name)) {
        error_setg(errp, "Bitmap already exists: %s", name);
        return;
    }
    error_setg(errp, "Persistent bitmaps are not supported for qcow2 images yet");
}

/* The error of remove/clear/enable/disable on bitmap name. */
static void bitmap_modify(const BitmapImage *img, const char *name, Error **errp)
{
    if (!bitmap_image_has(img, name)) {
        error_setg(errp, "Dirty bitmap '%s' not found", name);
        return;
    }
    error_setg(errp, "Persistent bitmaps are not supported for qcow2 images yet");
}

/* The error of merging src_name (of src) into name (of img). */
static void bitmap_merge(const BitmapImage *img, const char *name, const BitmapImage *src,
                         const char *src_name, Error **errp)
{
    if (!bitmap_image_has(img, name)) {
        error_setg(errp, "Dirty bitmap '%s' not found", name);
        return;
    }
    if (!bitmap_image_has(src, src_name)) {
        error_setg(errp, "Dirty bitmap '%s' not found", src_name);
        return;
    }
    error_setg(errp, "Persistent bitmaps are not supported for qcow2 images yet");
}

/*
 * Open the image. A qcow2 image stays read-only, since nothing can be changed in
 * it; other formats are opened again the way qemu-img opens them (read-write),
 * so that warnings and lock errors read the same.
 */
static BlockDriverState *bitmap_open(bool image_opts, const char *filename, const char *fmt,
                                     int flags)
{
    BlockDriverState *bs = img_open(image_opts, filename, fmt, flags & ~BDRV_O_RDWR, false,
                                    false, false);
    if (bs && (flags & BDRV_O_RDWR) && strcmp(bs->drv->format_name, "qcow2")) {
        bdrv_unref(bs);
        bs = img_open(image_opts, filename, fmt, flags, false, false, false);
    }
    return bs;
}

/* Run the actions in order; stops at the first failure. 0 or 1 (exit status). */
static int bitmap_run(const BitmapAction *acts, int nacts, const char *bitmap,
                      uint64_t granularity, const BitmapImage *img, const BitmapImage *src)
{
    for (int i = 0; i < nacts; i++) {
        Error *err = NULL;
        switch (acts[i].act) {
        case BITMAP_ADD:
            bitmap_add(img, bitmap, granularity, &err);
            break;
        case BITMAP_REMOVE:
        case BITMAP_CLEAR:
        case BITMAP_ENABLE:
        case BITMAP_DISABLE:
            bitmap_modify(img, bitmap, &err);
            break;
        case BITMAP_MERGE:
            bitmap_merge(img, bitmap, src, acts[i].src, &err);
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
    bs = bitmap_open(image_opts, filename, fmt, BDRV_O_RDWR | BDRV_O_NO_BACKING);
    if (!bs) {
        goto out;
    }
    bitmap_image_init(&img, bs, 1);
    if (src_filename) {
        src_bs = bitmap_open(false, src_filename, src_fmt, BDRV_O_NO_BACKING);
        if (!src_bs) {
            goto out;
        }
        bitmap_image_init(&src, src_bs, 3);
    }
    ret = bitmap_run(acts, nacts, bitmap, (uint64_t)granularity, &img,
                     src_filename ? &src : &img);
out:
    json_decref(img.bitmaps);
    json_decref(src.bitmaps);
    if (src_bs) {
        bdrv_unref(src_bs);
    }
    if (bs) {
        bdrv_unref(bs);
    }
    free(acts);
    return ret;
}
