/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qkit-img resize: grow or (with --shrink) shrink an image's virtual size. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "img.h"

enum {
    OPT_OBJECT = 256,
    OPT_IMAGE_OPTS,
    OPT_PREALLOCATION,
    OPT_SHRINK,
};

/* Entry point of `qkit-img resize`. */
int img_resize(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "preallocation", required_argument, NULL, OPT_PREALLOCATION },
        { "shrink", no_argument, NULL, OPT_SHRINK },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL;
    bool quiet = false, image_opts = false, shrink = false;
    PreallocMode prealloc = PREALLOC_MODE_OFF;
    int c;

    /* The size is the last argument; take it out first so "-1G" is not an option. */
    if (argc < 3) {
        img_error_exit("Not enough arguments");
    }
    const char *size = argv[--argc];

    while ((c = getopt_long(argc, argv, ":f:hq", long_options, NULL)) != -1) {
        switch (c) {
        case ':':
        case '?':
            img_getopt_error(c, argv);
        case 'h':
            img_help();
        case 'f':
            fmt = optarg;
            break;
        case 'q':
            quiet = true;
            break;
        case OPT_OBJECT:
            img_object_add(optarg);
            break;
        case OPT_IMAGE_OPTS:
            image_opts = true;
            break;
        case OPT_PREALLOCATION:
            if (prealloc_mode_parse(optarg, &prealloc) < 0) {
                error_report("Invalid preallocation mode '%s'", optarg);
                return 1;
            }
            break;
        case OPT_SHRINK:
            shrink = true;
            break;
        }
    }
    if (optind != argc - 1) {
        img_error_exit("Expecting image file name and size");
    }
    const char *filename = argv[optind];

    int relative = 0;
    if (size[0] == '+') {
        relative = 1;
        size++;
    } else if (size[0] == '-') {
        relative = -1;
        size++;
    }
    QOpts *param = qopts_new();
    uint64_t n;
    Error *err = NULL;
    qopts_set(param, "size", size);
    int ret = qopts_get_size(param, "size", 0, &n, &err);
    qopts_free(param);
    if (ret < 0) {
        error_report_err(err);
        return 1;
    }

    BlockDriverState *bs = img_open(image_opts, filename, fmt, BDRV_O_RDWR, false, quiet,
                                    false);
    if (!bs) {
        return 1;
    }
    ret = -1;
    int64_t current = bdrv_getlength(bs);
    if (current < 0) {
        error_report("Failed to inquire current image length: %s", strerror((int)-current));
        goto out;
    }
    int64_t total = relative ? current + (int64_t)n * relative : (int64_t)n;
    if (total <= 0) {
        error_report("New image size must be positive");
        goto out;
    }
    if (total <= current && prealloc != PREALLOC_MODE_OFF) {
        error_report("Preallocation can only be used for growing images");
        goto out;
    }
    if (total < current && !shrink) {
        error_report("Use the --shrink option to perform a shrink operation.");
        fprintf(stderr, "%s: warning: Shrinking an image will delete all data beyond the "
                "shrunken image's end. Before performing such an operation, make sure there "
                "is no important data there.\n", error_get_progname());
        goto out;
    }
    /* exact: the user expects exactly this size, or an error. */
    ret = bdrv_truncate(bs, total, true, prealloc, &err);
    if (ret == 0) {
        ret = bdrv_flush(bs);
        if (ret < 0) {
            error_setg_errno(&err, -ret, "Could not flush the image");
        }
    }
    if (ret == 0) {
        if (!quiet) {
            printf("Image resized.\n");
        }
    } else {
        if (!err) {
            error_setg_errno(&err, -ret, "Could not resize the image");
        }
        error_report_err(err);
    }
out:
    bdrv_unref(bs);
    return ret ? 1 : 0;
}
