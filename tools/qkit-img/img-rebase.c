/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qkit-img rebase: point an overlay at a different backing file, keeping its content. */
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

/* Bytes compared per step. */
#define REBASE_BUF_SIZE (2 * 1024 * 1024)

/* What the safe-mode copy works on. */
typedef struct RebaseState {
    BlockDriverState *bs;           /* the overlay being rebased */
    BlockDriverState *old_backing;  /* current backing node, or NULL */
    BlockDriverState *new_backing;  /* new backing node, or NULL for none */
    BlockDriverState *prefix;       /* new backing when it is already in the chain */
    const char *filename;
} RebaseState;

/*
 * Safe mode: wherever the overlay does not hold the data itself and the old and new
 * backing files differ, copy the old content into the overlay.
 */
static int rebase_copy(RebaseState *s)
{
    int64_t size = bdrv_getlength(s->bs);
    int64_t old_size = 0, new_size = 0;
    int ret = -1;
    if (size < 0) {
        error_report("Could not get size of '%s': %s", s->filename, strerror((int)-size));
        return -1;
    }
    if (s->old_backing && (old_size = bdrv_getlength(s->old_backing)) < 0) {
        error_report("Could not get size of '%s': %s", s->old_backing->filename,
                     strerror((int)-old_size));
        return -1;
    }
    if (s->new_backing && (new_size = bdrv_getlength(s->new_backing)) < 0) {
        error_report("Could not get size of '%s': %s", s->new_backing->filename,
                     strerror((int)-new_size));
        return -1;
    }
    uint8_t *buf_old = malloc(REBASE_BUF_SIZE);
    uint8_t *buf_new = malloc(REBASE_BUF_SIZE);
    if (!buf_old || !buf_new) {
        abort();
    }
    int64_t n;
    for (int64_t offset = 0; offset < size; offset += n) {
        bool old_is_zero = false;
        n = QKIT_MIN((int64_t)REBASE_BUF_SIZE, size - offset);
        int r = bdrv_is_allocated(s->bs, offset, n, &n);
        if (r < 0) {
            error_report("error while reading image metadata: %s", strerror(-r));
            goto out;
        }
        if (n <= 0) {
            error_report("error while reading image metadata: %s", strerror(EIO));
            goto out;
        }
        if (r) {
            continue;
        }
        if (s->prefix) {
            /* Unchanged since the new backing file: nothing to do. */
            r = bdrv_is_allocated_above(s->bs->backing, s->prefix, false, offset, n, &n);
            if (r < 0) {
                error_report("error while reading image metadata: %s", strerror(-r));
                goto out;
            }
            if (!r) {
                continue;
            }
        }
        if (offset >= old_size) {
            memset(buf_old, 0, n);
            old_is_zero = true;
        } else {
            n = QKIT_MIN(n, old_size - offset);
            if (bdrv_pread(s->old_backing, offset, n, buf_old, 0) < 0) {
                error_report("error while reading from old backing file");
                goto out;
            }
        }
        if (offset >= new_size || !s->new_backing) {
            memset(buf_new, 0, n);
        } else {
            n = QKIT_MIN(n, new_size - offset);
            if (bdrv_pread(s->new_backing, offset, n, buf_new, 0) < 0) {
                error_report("error while reading from new backing file");
                goto out;
            }
        }
        for (int64_t done = 0; done < n;) {
            int64_t pnum;
            if (img_buffer_differs(buf_old + done, buf_new + done, n - done, &pnum)) {
                r = old_is_zero ? bdrv_pwrite_zeroes(s->bs, offset + done, pnum, 0)
                                : bdrv_pwrite(s->bs, offset + done, pnum, buf_old + done, 0);
                if (r < 0) {
                    error_report("Error while writing to COW image: %s", strerror(-r));
                    goto out;
                }
            }
            done += pnum;
        }
        img_progress_print(offset + n, size);
    }
    ret = 0;
out:
    free(buf_old);
    free(buf_new);
    return ret;
}

/* Entry point of `qkit-img rebase`. */
int img_rebase(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *out_basefmt = NULL, *out_baseimg = NULL;
    const char *cache = "writeback", *src_cache = "writeback";
    bool progress = false, quiet = false, unsafe = false, image_opts = false;
    bool force_share = false;
    RebaseState s = { 0 };
    BlockDriverState *opened_backing = NULL;
    int ret = -1;
    int c;

    while ((c = getopt_long(argc, argv, ":hf:F:b:upt:T:qU", long_options, NULL)) != -1) {
        switch (c) {
        case ':':
        case '?':
            img_getopt_error(c, argv);
        case 'h':
            img_help();
        case 'f':
            fmt = optarg;
            break;
        case 'F':
            out_basefmt = optarg;
            break;
        case 'b':
            out_baseimg = optarg;
            break;
        case 'u':
            unsafe = true;
            break;
        case 'p':
            progress = true;
            break;
        case 't':
            cache = optarg;
            break;
        case 'T':
            src_cache = optarg;
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
    if (quiet) {
        progress = false;
    }
    if (!unsafe && !out_baseimg) {
        img_error_exit("Must specify backing file (-b) or use unsafe mode (-u)");
    }
    s.filename = img_one_filename(argc, argv);
    img_progress_init(progress, 2.0f);
    img_progress_print(0, 100);

    int flags = BDRV_O_RDWR | (unsafe ? BDRV_O_NO_BACKING : 0);
    if (img_parse_cache_mode("cache", cache, &flags) < 0) {
        goto out;
    }
    int src_flags = 0;
    if (img_parse_cache_mode("source cache", src_cache, &src_flags) < 0) {
        goto out;
    }
    s.bs = img_open(image_opts, s.filename, fmt, flags, false, quiet, false);
    if (!s.bs) {
        goto out;
    }
    if (out_basefmt && !bdrv_find_format(out_basefmt)) {
        error_report("Invalid format name: '%s'", out_basefmt);
        goto out;
    }
    if (!unsafe) {
        s.old_backing = s.bs->backing;
        if (out_baseimg[0]) {
            char *real = path_combine(s.bs->filename, out_baseimg);
            s.prefix = img_find_backing_image(s.bs, real);
            if (s.prefix) {
                s.new_backing = s.prefix;
            } else {
                Error *err = NULL;
                if (force_share) {
                    src_flags |= BDRV_O_FORCE_SHARE;
                }
                opened_backing = bdrv_open(real, out_basefmt, NULL, src_flags, &err);
                if (!opened_backing) {
                    error_prepend(&err, "Could not open new backing file '%s': ", out_baseimg);
                    error_report_err(err);
                    free(real);
                    goto out;
                }
                s.new_backing = opened_backing;
            }
            free(real);
        }
        if (rebase_copy(&s) < 0) {
            goto out;
        }
    }

    /* Every differing range is in the overlay now: switching is safe. */
    const char *new_name = out_baseimg && out_baseimg[0] ? out_baseimg : NULL;
    int r;
    if (new_name && !out_basefmt) {
        error_report("Could not change the backing file to '%s': backing format must be "
                     "specified", out_baseimg);
        goto out;
    }
    if (!s.bs->drv->change_backing_file) {
        r = -ENOTSUP;
    } else {
        r = s.bs->drv->change_backing_file(s.bs, new_name, new_name ? out_basefmt : NULL);
        if (r == 0) {
            r = bdrv_flush(s.bs);
        }
    }
    if (r == -ENOSPC) {
        error_report("Could not change the backing file to '%s': No space left on the file "
                     "system", out_baseimg ? out_baseimg : "(null)");
        goto out;
    } else if (r < 0) {
        error_report("Could not change the backing file to '%s': %s",
                     out_baseimg ? out_baseimg : "(null)", strerror(-r));
        goto out;
    }
    img_progress_print(100, 100);
    ret = 0;
out:
    img_progress_end();
    bdrv_unref(opened_backing);
    bdrv_unref(s.bs);
    return ret ? 1 : 0;
}
