/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qkit-img compare: tell whether two images show the same guest-visible content. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "img.h"
#include "qkit/cutils.h"

enum {
    OPT_OBJECT = 256,
    OPT_IMAGE_OPTS,
};

/* Exit codes documented for compare. */
#define COMPARE_IDENTICAL 0
#define COMPARE_DIFFERENT 1
#define COMPARE_ERR_OPEN 2
#define COMPARE_ERR_STATUS 3
#define COMPARE_ERR_READ 4

/* Bytes read from each image per step. */
#define COMPARE_BUF_SIZE (2 * 1024 * 1024)

/* What both sides of the comparison need: the node, its name, and a read buffer. */
typedef struct CompareSide {
    BlockDriverState *bs;
    const char *filename;
    int64_t size;
    uint8_t *buf;
} CompareSide;

/* Index of the first 512-byte sector of buf that holds a non-zero byte, or -1. */
static int64_t compare_find_nonzero(const uint8_t *buf, int64_t n)
{
    for (int64_t i = 0; i < n; i += IMG_COMPARE_SECTOR) {
        if (!buffer_is_zero(buf + i, QKIT_MIN((int64_t)IMG_COMPARE_SECTOR, n - i))) {
            return i;
        }
    }
    return -1;
}

/* A range present in only one image must read as zeroes there. 0, or an exit code. */
static int compare_check_empty(CompareSide *s, int64_t offset, int64_t bytes, bool quiet)
{
    int ret = bdrv_pread(s->bs, offset, bytes, s->buf, 0);
    if (ret < 0) {
        error_report("Error while reading offset %" PRId64 " of %s: %s", offset, s->filename,
                     strerror(-ret));
        return COMPARE_ERR_READ;
    }
    int64_t idx = compare_find_nonzero(s->buf, bytes);
    if (idx >= 0) {
        if (!quiet) {
            printf("Content mismatch at offset %" PRId64 "!\n", offset + idx);
        }
        return COMPARE_DIFFERENT;
    }
    return 0;
}

/* Both images have data in the range: compare it. 0, or an exit code. */
static int compare_data(CompareSide *a, CompareSide *b, int64_t offset, int64_t bytes,
                        bool quiet)
{
    CompareSide *sides[2] = { a, b };
    for (int i = 0; i < 2; i++) {
        int ret = bdrv_pread(sides[i]->bs, offset, bytes, sides[i]->buf, 0);
        if (ret < 0) {
            error_report("Error while reading offset %" PRId64 " of %s: %s", offset,
                         sides[i]->filename, strerror(-ret));
            return COMPARE_ERR_READ;
        }
    }
    int64_t pnum;
    bool differs = img_buffer_differs(a->buf, b->buf, bytes, &pnum);
    if (differs || pnum != bytes) {
        if (!quiet) {
            printf("Content mismatch at offset %" PRId64 "!\n", offset + (differs ? 0 : pnum));
        }
        return COMPARE_DIFFERENT;
    }
    return 0;
}

/* Walk the common length, then the tail of the longer image. Returns the exit code. */
static int compare_images(CompareSide *a, CompareSide *b, bool strict, bool quiet)
{
    int64_t total = QKIT_MIN(a->size, b->size);
    int64_t base = QKIT_MAX(a->size, b->size);
    int ret;

    img_progress_print(0, 100);
    if (strict && a->size != b->size) {
        if (!quiet) {
            printf("Strict mode: Image size mismatch!\n");
        }
        return COMPARE_DIFFERENT;
    }
    for (int64_t offset = 0; offset < total;) {
        int64_t pnum1, pnum2;
        int st1 = bdrv_block_status_above(a->bs, NULL, offset, a->size - offset, &pnum1, NULL,
                                          NULL, NULL);
        if (st1 < 0) {
            error_report("Sector allocation test failed for %s", a->filename);
            return COMPARE_ERR_STATUS;
        }
        int st2 = bdrv_block_status_above(b->bs, NULL, offset, b->size - offset, &pnum2, NULL,
                                          NULL, NULL);
        if (st2 < 0) {
            error_report("Sector allocation test failed for %s", b->filename);
            return COMPARE_ERR_STATUS;
        }
        if (pnum1 <= 0 || pnum2 <= 0) {
            error_report("Sector allocation test failed for %s",
                         pnum1 <= 0 ? a->filename : b->filename);
            return COMPARE_ERR_STATUS;
        }
        bool alloc1 = st1 & BDRV_BLOCK_ALLOCATED;
        bool alloc2 = st2 & BDRV_BLOCK_ALLOCATED;
        int64_t chunk = QKIT_MIN(pnum1, pnum2);
        chunk = QKIT_MIN(chunk, total - offset);
        if (strict && st1 != st2) {
            if (!quiet) {
                printf("Strict mode: Offset %" PRId64 " block status mismatch!\n", offset);
            }
            return COMPARE_DIFFERENT;
        }
        if ((st1 & BDRV_BLOCK_ZERO) && (st2 & BDRV_BLOCK_ZERO)) {
            /* Both read as zeroes: nothing to read. */
        } else if (alloc1 == alloc2) {
            if (alloc1) {
                chunk = QKIT_MIN(chunk, (int64_t)COMPARE_BUF_SIZE);
                ret = compare_data(a, b, offset, chunk, quiet);
                if (ret) {
                    return ret;
                }
            }
        } else {
            chunk = QKIT_MIN(chunk, (int64_t)COMPARE_BUF_SIZE);
            ret = compare_check_empty(alloc1 ? a : b, offset, chunk, quiet);
            if (ret) {
                return ret;
            }
        }
        offset += chunk;
        img_progress_print(offset, base);
    }
    if (a->size != b->size) {
        CompareSide *over = a->size > b->size ? a : b;
        if (!quiet) {
            printf("Warning: Image size mismatch!\n");
        }
        for (int64_t offset = total; offset < base;) {
            int64_t chunk;
            int st = bdrv_block_status_above(over->bs, NULL, offset, base - offset, &chunk,
                                             NULL, NULL, NULL);
            if (st < 0 || chunk <= 0) {
                error_report("Sector allocation test failed for %s", over->filename);
                return COMPARE_ERR_STATUS;
            }
            if ((st & BDRV_BLOCK_ALLOCATED) && !(st & BDRV_BLOCK_ZERO)) {
                chunk = QKIT_MIN(chunk, (int64_t)COMPARE_BUF_SIZE);
                ret = compare_check_empty(over, offset, chunk, quiet);
                if (ret) {
                    return ret;
                }
            }
            offset += chunk;
            img_progress_print(offset, base);
        }
    }
    if (!quiet) {
        printf("Images are identical.\n");
    }
    return COMPARE_IDENTICAL;
}

/* Entry point of `qkit-img compare`; the exit code tells the verdict. */
int img_compare(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt1 = NULL, *fmt2 = NULL, *cache = "writeback";
    bool progress = false, quiet = false, strict = false, image_opts = false;
    bool force_share = false;
    int c;

    while ((c = getopt_long(argc, argv, ":hf:F:T:pqsU", long_options, NULL)) != -1) {
        switch (c) {
        case ':':
        case '?':
            img_getopt_error(c, argv);
        case 'h':
            img_help();
        case 'f':
            fmt1 = optarg;
            break;
        case 'F':
            fmt2 = optarg;
            break;
        case 'T':
            cache = optarg;
            break;
        case 'p':
            progress = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 's':
            strict = true;
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
    if (quiet) {
        progress = false;
    }
    if (optind != argc - 2) {
        img_error_exit("Expecting two image file names");
    }
    CompareSide a = { .filename = argv[optind] };
    CompareSide b = { .filename = argv[optind + 1] };
    int flags = 0;
    int ret;

    img_progress_init(progress, 2.0f);
    if (img_parse_cache_mode("source cache", cache, &flags) < 0) {
        ret = COMPARE_ERR_OPEN;
        goto out;
    }
    a.bs = img_open(image_opts, a.filename, fmt1, flags, false, quiet, force_share);
    if (!a.bs) {
        ret = COMPARE_ERR_OPEN;
        goto out;
    }
    b.bs = img_open(image_opts, b.filename, fmt2, flags, false, quiet, force_share);
    if (!b.bs) {
        ret = COMPARE_ERR_OPEN;
        goto out;
    }
    CompareSide *sides[2] = { &a, &b };
    for (int i = 0; i < 2; i++) {
        sides[i]->size = bdrv_getlength(sides[i]->bs);
        if (sides[i]->size < 0) {
            error_report("Can't get size of %s: %s", sides[i]->filename,
                         strerror((int)-sides[i]->size));
            ret = COMPARE_ERR_READ;
            goto out;
        }
        sides[i]->buf = malloc(COMPARE_BUF_SIZE);
        if (!sides[i]->buf) {
            abort();
        }
    }
    ret = compare_images(&a, &b, strict, quiet);
out:
    img_progress_end();
    free(a.buf);
    free(b.buf);
    bdrv_unref(a.bs);
    bdrv_unref(b.bs);
    return ret;
}
