/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The raw format: the image is the bytes of its file, optionally a window of it
 * (options "offset" and "size"). Everything passes straight through to bs->file.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "block-int.h"
#include "qkit/cutils.h"

typedef struct BDRVRawState {
    uint64_t offset;  /* start of the window in the file */
    uint64_t size;    /* window length; 0 with has_size false = to the end of the file */
    bool has_size;
} BDRVRawState;

/* Raw matches anything, weakly: any real format wins over it. */
static int raw_probe(const uint8_t *buf, int buf_size, const char *filename)
{
    return 1;
}

static int raw_open(BlockDriverState *bs, json_t *options, int flags, Error **errp)
{
    BDRVRawState *s = bs->opaque;
    int64_t off, size;
    if (qdict_get_int_opt(options, "offset", 0, &off, errp) < 0 ||
        qdict_get_int_opt(options, "size", -1, &size, errp) < 0) {
        return -EINVAL;
    }
    if (off < 0) {
        error_setg(errp, "offset cannot be negative");
        return -EINVAL;
    }
    int64_t flen = bdrv_getlength(bs->file);
    if (flen < 0) {
        error_setg_errno(errp, (int)-flen, "Could not get the size of the file");
        return (int)flen;
    }
    if (off > flen) {
        error_setg(errp, "The sum of offset (%" PRId64 ") and size (%" PRId64 ") has to "
                   "be smaller or equal to the actual size of the containing file (%"
                   PRId64 ")", off, size < 0 ? (int64_t)0 : size, flen);
        return -EINVAL;
    }
    if (size >= 0) {
        if (off + size > flen) {
            error_setg(errp, "The sum of offset (%" PRId64 ") and size (%" PRId64 ") has to "
                       "be smaller or equal to the actual size of the containing file (%"
                       PRId64 ")", off, size, flen);
            return -EINVAL;
        }
        s->has_size = true;
        s->size = size;
    }
    s->offset = off;
    bs->request_alignment = bs->file->request_alignment;
    return 0;
}

static int64_t raw_getlength(BlockDriverState *bs)
{
    BDRVRawState *s = bs->opaque;
    if (s->has_size) {
        return s->size;
    }
    int64_t len = bdrv_getlength(bs->file);
    if (len < 0) {
        return len;
    }
    return len > (int64_t)s->offset ? len - (int64_t)s->offset : 0;
}

static int raw_pread(BlockDriverState *bs, uint64_t offset, uint64_t bytes, void *buf,
                     int flags)
{
    BDRVRawState *s = bs->opaque;
    return bdrv_pread(bs->file, s->offset + offset, bytes, buf, flags);
}

static int raw_pwrite(BlockDriverState *bs, uint64_t offset, uint64_t bytes, const void *buf,
                      int flags)
{
    BDRVRawState *s = bs->opaque;
    if (flags & BDRV_REQ_WRITE_COMPRESSED) {
        return -ENOTSUP;
    }
    return bdrv_pwrite(bs->file, s->offset + offset, bytes, buf, flags);
}

static int raw_pwrite_zeroes(BlockDriverState *bs, uint64_t offset, uint64_t bytes, int flags)
{
    BDRVRawState *s = bs->opaque;
    return bdrv_pwrite_zeroes(bs->file, s->offset + offset, bytes, flags);
}

static int raw_pdiscard(BlockDriverState *bs, uint64_t offset, uint64_t bytes)
{
    BDRVRawState *s = bs->opaque;
    return bdrv_pdiscard(bs->file, s->offset + offset, bytes);
}

/* Raw has no metadata: the status is the file's, at the shifted offset. */
static int raw_block_status(BlockDriverState *bs, bool want_zero, uint64_t offset,
                            uint64_t bytes, uint64_t *pnum, uint64_t *map,
                            BlockDriverState **file)
{
    BDRVRawState *s = bs->opaque;
    *pnum = bytes;
    *map = s->offset + offset;
    *file = bs->file;
    return BDRV_BLOCK_RAW | BDRV_BLOCK_OFFSET_VALID;
}

static int raw_truncate(BlockDriverState *bs, uint64_t offset, bool exact,
                        PreallocMode prealloc, Error **errp)
{
    BDRVRawState *s = bs->opaque;
    if (s->has_size) {
        error_setg(errp, "Cannot resize fixed-size raw disks");
        return -ENOTSUP;
    }
    return bdrv_truncate(bs->file, s->offset + offset, exact, prealloc, errp);
}

static bool raw_has_zero_init(BlockDriverState *bs)
{
    return bdrv_has_zero_init(bs->file);
}

static int raw_create(const char *filename, QOpts *opts, Error **errp)
{
    return bdrv_create_file(filename, opts, errp);
}

/* Raw has nothing of its own to say: the protocol underneath answers (or not). */
static int raw_get_info(BlockDriverState *bs, BlockDriverInfo *bdi)
{
    return bdrv_get_info(bs->file, bdi);
}

/* Measure: a raw image needs its full size, with or without data (as qemu-img says). */
static int raw_measure(QOpts *opts, BlockDriverState *in_bs, BlockMeasureInfo *info,
                       Error **errp)
{
    uint64_t size = 0;
    if (in_bs) {
        int64_t len = bdrv_getlength(in_bs);
        if (len < 0) {
            error_setg_errno(errp, (int)-len, "Unable to get image virtual_size");
            return (int)len;
        }
        size = len;
    } else if (qopts_get_size(opts, "size", 0, &size, errp) < 0) {
        return -EINVAL;
    }
    const char *pa = qopts_get(opts, "preallocation");
    PreallocMode prealloc = PREALLOC_MODE_OFF;
    if (pa && prealloc_mode_parse(pa, &prealloc) < 0) {
        error_setg(errp, "Invalid parameter '%s'", pa);
        return -EINVAL;
    }
    /* A raw image holds every byte of the disk, whatever the source has allocated. */
    info->fully_allocated = size;
    info->required = size;
    return 0;
}

static const char *const raw_open_opts[] = { "offset", "size", NULL };

const BlockDriver bdrv_raw = {
    .format_name = "raw",
    .instance_size = sizeof(BDRVRawState),
    .thread_safe = true,
    .shares_write = true,
    .open_opts = raw_open_opts,
    .probe = raw_probe,
    .open = raw_open,
    .pread = raw_pread,
    .pwrite = raw_pwrite,
    .pwrite_zeroes = raw_pwrite_zeroes,
    .pdiscard = raw_pdiscard,
    .block_status = raw_block_status,
    .truncate = raw_truncate,
    .getlength = raw_getlength,
    .has_zero_init = raw_has_zero_init,
    .create = raw_create,
    /* A raw image is its file: the create options are the file protocol's. */
    .create_opts = file_create_opts,
    .get_info = raw_get_info,
    .measure = raw_measure,
};
