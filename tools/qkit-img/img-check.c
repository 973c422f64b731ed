/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qkit-img check: run the format driver's consistency check, optionally repairing. */
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
};

/* Exit codes documented for check. */
#define CHECK_EXIT_OK 0
#define CHECK_EXIT_FAILED 1
#define CHECK_EXIT_CORRUPT 2
#define CHECK_EXIT_LEAKS 3
#define CHECK_EXIT_UNSUPPORTED 63

/* The result of one check pass, as the ImageCheck of QEMU. */
typedef struct ImageCheck {
    const char *filename;
    const char *format;
    BdrvCheckResult r;
} ImageCheck;

/* Run the driver's check once; -ENOTSUP when the format has none. */
static int check_collect(BlockDriverState *bs, ImageCheck *check, const char *filename,
                         int fix)
{
    memset(&check->r, 0, sizeof(check->r));
    check->filename = filename;
    check->format = bdrv_get_format_name(bs);
    if (!bs->drv->check) {
        return -ENOTSUP;
    }
    int ret = bs->drv->check(bs, &check->r, fix);
    if (ret == 0 && fix) {
        ret = bdrv_flush(bs);
    }
    if (ret < 0) {
        /* As qemu-img: a failed check reports no counts (and triggers no re-check). */
        memset(&check->r, 0, sizeof(check->r));
    }
    return ret;
}

/* The human report of a check. */
static void check_dump_human(const ImageCheck *check, bool quiet)
{
    const BdrvCheckResult *r = &check->r;
    if (quiet) {
        return;
    }
    if (r->corruptions == 0 && r->leaks == 0 && r->check_errors == 0) {
        printf("No errors were found on the image.\n");
    } else {
        if (r->corruptions) {
            printf("\n%d errors were found on the image.\n"
                   "Data may be corrupted, or further writes to the image may corrupt it.\n",
                   r->corruptions);
        }
        if (r->leaks) {
            printf("\n%d leaked clusters were found on the image.\n"
                   "This means waste of disk space, but no harm to data.\n", r->leaks);
        }
        if (r->check_errors) {
            printf("\n%d internal errors have occurred during the check.\n", r->check_errors);
        }
    }
    if (r->total_clusters != 0 && r->allocated_clusters != 0) {
        printf("%" PRIu64 "/%" PRIu64 " = %0.2f%% allocated, %0.2f%% fragmented, "
               "%0.2f%% compressed clusters\n",
               r->allocated_clusters, r->total_clusters,
               r->allocated_clusters * 100.0 / r->total_clusters,
               r->fragmented_clusters * 100.0 / r->allocated_clusters,
               r->compressed_clusters * 100.0 / r->allocated_clusters);
    }
    if (r->image_end_offset) {
        printf("Image end offset: %" PRId64 "\n", r->image_end_offset);
    }
}

/* Put key=value into o unless the value is zero (optional ImageCheck members). */
static void check_put_nonzero(json_t *o, const char *key, int64_t v)
{
    if (v) {
        json_object_set_new(o, key, json_integer(v));
    }
}

/* The ImageCheck object of --output=json. */
static void check_dump_json(const ImageCheck *check)
{
    const BdrvCheckResult *r = &check->r;
    json_t *o = json_object();
    json_object_set_new(o, "filename", json_string(check->filename));
    json_object_set_new(o, "format", json_string(check->format));
    json_object_set_new(o, "check-errors", json_integer(r->check_errors));
    check_put_nonzero(o, "image-end-offset", r->image_end_offset);
    check_put_nonzero(o, "corruptions", r->corruptions);
    check_put_nonzero(o, "leaks", r->leaks);
    check_put_nonzero(o, "corruptions-fixed", r->corruptions_fixed);
    check_put_nonzero(o, "leaks-fixed", r->leaks_fixed);
    check_put_nonzero(o, "total-clusters", (int64_t)r->total_clusters);
    check_put_nonzero(o, "allocated-clusters", (int64_t)r->allocated_clusters);
    check_put_nonzero(o, "fragmented-clusters", (int64_t)r->fragmented_clusters);
    check_put_nonzero(o, "compressed-clusters", (int64_t)r->compressed_clusters);
    img_print_json(o);
    json_decref(o);
}

/* Entry point of `qkit-img check`. */
int img_check(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "repair", required_argument, NULL, 'r' },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *output = NULL, *cache = "writeback";
    bool quiet = false, image_opts = false, force_share = false;
    int fix = 0, flags = BDRV_O_CHECK;
    int c;

    while ((c = getopt_long(argc, argv, ":hf:r:T:qU", long_options, NULL)) != -1) {
        switch (c) {
        case ':':
        case '?':
            img_getopt_error(c, argv);
        case 'h':
            img_help();
        case 'f':
            fmt = optarg;
            break;
        case 'r':
            flags |= BDRV_O_RDWR;
            if (!strcmp(optarg, "leaks")) {
                fix = BDRV_FIX_LEAKS;
            } else if (!strcmp(optarg, "all")) {
                fix = BDRV_FIX_LEAKS | BDRV_FIX_ERRORS;
            } else {
                img_error_exit("Unknown option value for -r (expecting 'leaks' or 'all'): %s",
                               optarg);
            }
            break;
        case OPT_OUTPUT:
            output = optarg;
            break;
        case 'T':
            cache = optarg;
            break;
        case 'q':
            quiet = true;
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
    const char *filename = img_one_filename(argc, argv);
    int ofmt = img_parse_output_format(output);
    if (ofmt < 0) {
        return 1;
    }
    if (img_parse_cache_mode("source cache", cache, &flags) < 0) {
        return 1;
    }
    BlockDriverState *bs = img_open(image_opts, filename, fmt, flags, false, quiet,
                                    force_share);
    if (!bs) {
        return 1;
    }
    ImageCheck check;
    int ret = check_collect(bs, &check, filename, fix);
    if (ret == -ENOTSUP) {
        error_report("This image format does not support checks");
        bdrv_unref(bs);
        return CHECK_EXIT_UNSUPPORTED;
    }
    if (check.r.corruptions_fixed || check.r.leaks_fixed) {
        int corruptions_fixed = check.r.corruptions_fixed;
        int leaks_fixed = check.r.leaks_fixed;
        /* The image was changed: check it again and report what is left. */
        if (ofmt == IMG_OUTPUT_HUMAN && !quiet) {
            printf("The following inconsistencies were found and repaired:\n\n"
                   "    %d leaked clusters\n"
                   "    %d corruptions\n\n"
                   "Double checking the fixed image now...\n", leaks_fixed, corruptions_fixed);
        }
        ret = check_collect(bs, &check, filename, 0);
        check.r.corruptions_fixed = corruptions_fixed;
        check.r.leaks_fixed = leaks_fixed;
    }
    if (ret == 0) {
        if (ofmt == IMG_OUTPUT_JSON) {
            check_dump_json(&check);
        } else {
            check_dump_human(&check, quiet);
        }
    }
    int rc;
    if (ret || check.r.check_errors) {
        if (ret) {
            error_report("Check failed: %s", strerror(-ret));
        } else {
            error_report("Check failed");
        }
        rc = CHECK_EXIT_FAILED;
    } else if (check.r.corruptions) {
        rc = CHECK_EXIT_CORRUPT;
    } else if (check.r.leaks) {
        rc = CHECK_EXIT_LEAKS;
    } else {
        rc = CHECK_EXIT_OK;
    }
    bdrv_unref(bs);
    return rc;
}
