/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qkit-img commit: copy an overlay's data down into a backing image. */
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

/* Bytes copied per step. */
#define COMMIT_BUF_SIZE (1024 * 1024)

/* True if a names node: as written in its parent's header, or the same file on disk. */
static bool commit_name_matches(const char *name, const BlockDriverState *parent,
                                const BlockDriverState *node)
{
    if (!strcmp(name, parent->backing_file) || !strcmp(name, node->filename) ||
        !strcmp(name, parent->full_backing_filename)) {
        return true;
    }
    char a[PATH_MAX], b[PATH_MAX];
    return realpath(name, a) && realpath(node->filename, b) && !strcmp(a, b);
}

BlockDriverState *img_find_backing_image(BlockDriverState *bs, const char *name)
{
    for (BlockDriverState *p = bs; p->backing; p = p->backing) {
        if (commit_name_matches(name, p, p->backing)) {
            return p->backing;
        }
    }
    return NULL;
}

/*
 * Copy every range that some layer above base provides into base (zero ranges as
 * zero writes), growing base first if the top is larger.
 */
static int commit_copy(BlockDriverState *top, BlockDriverState *base, Error **errp)
{
    int64_t len = bdrv_getlength(top);
    int64_t base_len = bdrv_getlength(base);
    if (len < 0 || base_len < 0) {
        error_setg_errno(errp, (int)-(len < 0 ? len : base_len), "Could not get image size");
        return -1;
    }
    if (base_len < len && bdrv_truncate(base, len, false, PREALLOC_MODE_OFF, errp) < 0) {
        return -1;
    }
    uint8_t *buf = malloc(COMMIT_BUF_SIZE);
    if (!buf) {
        abort();
    }
    int ret = 0;
    for (int64_t offset = 0; offset < len;) {
        int64_t n;
        ret = bdrv_block_status_above(top, base, offset, len - offset, &n, NULL, NULL, NULL);
        if (ret < 0 || n <= 0) {
            error_setg_errno(errp, ret < 0 ? -ret : EIO, "Could not read image metadata");
            ret = -1;
            break;
        }
        if (ret & BDRV_BLOCK_ALLOCATED) {
            if (ret & BDRV_BLOCK_ZERO) {
                ret = bdrv_pwrite_zeroes(base, offset, n, BDRV_REQ_MAY_UNMAP);
            } else {
                n = QKIT_MIN(n, (int64_t)COMMIT_BUF_SIZE);
                ret = bdrv_pread(top, offset, n, buf, 0);
                if (ret == 0) {
                    ret = bdrv_pwrite(base, offset, n, buf, 0);
                }
            }
            if (ret < 0) {
                error_setg_errno(errp, -ret, "Could not copy data into the base image");
                ret = -1;
                break;
            }
        }
        ret = 0;
        offset += n;
        img_progress_print(offset, len);
    }
    free(buf);
    if (ret == 0) {
        ret = bdrv_flush(base);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not flush the base image");
            ret = -1;
        }
    }
    return ret;
}

/* Entry point of `qkit-img commit`. */
int img_commit(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *cache = "writeback", *base = NULL;
    bool progress = false, quiet = false, drop = false, image_opts = false;
    int c;

    while ((c = getopt_long(argc, argv, ":f:ht:b:dpqr:", long_options, NULL)) != -1) {
        switch (c) {
        case ':':
        case '?':
            img_getopt_error(c, argv);
        case 'h':
            img_help();
        case 'f':
            fmt = optarg;
            break;
        case 't':
            cache = optarg;
            break;
        case 'b':
            base = optarg;
            /* Images between base and top become invalid: keep the top intact. */
            drop = true;
            break;
        case 'd':
            drop = true;
            break;
        case 'p':
            progress = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 'r':
            /* The copy is not rate limited; the value is still checked. */
            if (img_cvtnum("rate limit", optarg) < 0) {
                return 1;
            }
            break;
        case OPT_OBJECT:
            img_object_add(optarg);
            break;
        case OPT_IMAGE_OPTS:
            image_opts = true;
            break;
        }
    }
    if (quiet) {
        progress = false;
    }
    const char *filename = img_one_filename(argc, argv);
    int flags = BDRV_O_RDWR | BDRV_O_UNMAP;
    if (img_parse_cache_mode("cache", cache, &flags) < 0) {
        return 1;
    }
    BlockDriverState *bs = img_open(image_opts, filename, fmt, flags, false, quiet, false);
    if (!bs) {
        return 1;
    }
    img_progress_init(progress, 1.0f);
    img_progress_print(0, 100);

    Error *err = NULL;
    BlockDriverState *base_bs;
    if (base) {
        base_bs = img_find_backing_image(bs, base);
        if (!base_bs) {
            error_setg(&err, "Did not find '%s' in the backing chain of '%s'", base, filename);
            goto done;
        }
    } else {
        base_bs = bs->backing;
        if (!base_bs) {
            error_setg(&err, "Image does not have a backing file");
            goto done;
        }
    }
    if (bdrv_reopen(base_bs, true, &err) < 0) {
        goto done;
    }
    if (commit_copy(bs, base_bs, &err) < 0) {
        goto done;
    }
    img_progress_print(100, 100);
    if (!drop && bs->drv->make_empty) {
        int ret = bs->drv->make_empty(bs);
        if (ret == 0) {
            ret = bdrv_flush(bs);
        }
        if (ret < 0 && ret != -ENOTSUP) {
            error_setg_errno(&err, -ret, "Could not empty the image");
            goto done;
        }
    }
done:
    img_progress_end();
    bdrv_unref(bs);
    if (err) {
        error_report_err(err);
        return 1;
    }
    if (!quiet) {
        printf("Image committed.\n");
    }
    return 0;
}
