/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2 compressed clusters: zlib as raw deflate with a 4 KiB window (what QEMU
 * inflates with), or zstd frames (compression_type 1).
 */
#include <errno.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "block/qcow2.h"

#define QCOW2_ZLIB_WINDOW_BITS (-12)  /* raw deflate, 4 KiB window */
#define QCOW2_ZLIB_MEM_LEVEL 9

/* Deflate src; -ENOMEM when the result does not fit dest_size. */
static ssize_t zlib_compress(void *dest, size_t dest_size, const void *src, size_t src_size)
{
    z_stream strm;
    memset(&strm, 0, sizeof(strm));
    if (deflateInit2(&strm, Z_DEFAULT_COMPRESSION, Z_DEFLATED, QCOW2_ZLIB_WINDOW_BITS,
                     QCOW2_ZLIB_MEM_LEVEL, Z_DEFAULT_STRATEGY) != Z_OK) {
        return -EIO;
    }
    strm.avail_in = (uInt)src_size;
    strm.next_in = (Bytef *)src;
    strm.avail_out = (uInt)dest_size;
    strm.next_out = dest;
    int ret = deflate(&strm, Z_FINISH);
    ssize_t result;
    if (ret == Z_STREAM_END) {
        result = (ssize_t)(dest_size - strm.avail_out);
    } else if (ret == Z_OK || ret == Z_BUF_ERROR) {
        result = -ENOMEM;
    } else {
        result = -EIO;
    }
    deflateEnd(&strm);
    return result;
}

/* Inflate until dest is full; src may hold trailing bytes of the last sector. */
static int zlib_decompress(void *dest, size_t dest_size, const void *src, size_t src_size)
{
    z_stream strm;
    memset(&strm, 0, sizeof(strm));
    strm.next_in = (Bytef *)src;
    strm.avail_in = (uInt)src_size;
    strm.next_out = dest;
    strm.avail_out = (uInt)dest_size;
    if (inflateInit2(&strm, QCOW2_ZLIB_WINDOW_BITS) != Z_OK) {
        return -EIO;
    }
    int ret = inflate(&strm, Z_FINISH);
    int result = 0;
    if ((ret != Z_STREAM_END && ret != Z_BUF_ERROR) || strm.avail_out != 0) {
        result = -EIO;
    }
    inflateEnd(&strm);
    return result;
}

/* One zstd frame of src; -ENOMEM when the result does not fit dest_size. */
static ssize_t zstd_compress(void *dest, size_t dest_size, const void *src, size_t src_size)
{
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    if (!cctx) {
        return -EIO;
    }
    ZSTD_outBuffer out = { dest, dest_size, 0 };
    ZSTD_inBuffer in = { src, src_size, 0 };
    ssize_t result;
    size_t left;
    do {
        left = ZSTD_compressStream2(cctx, &out, &in, ZSTD_e_end);
        if (ZSTD_isError(left)) {
            /* A full output buffer is the only error a valid cluster can cause. */
            result = out.pos == out.size ? -ENOMEM : -EIO;
            goto out;
        }
        if (left > out.size - out.pos) {
            result = -ENOMEM;
            goto out;
        }
    } while (left);
    result = (ssize_t)out.pos;
out:
    ZSTD_freeCCtx(cctx);
    return result;
}

/* Stream-decompress until dest is full (the stored size is rounded up to sectors). */
static int zstd_decompress(void *dest, size_t dest_size, const void *src, size_t src_size)
{
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    if (!dctx) {
        return -EIO;
    }
    ZSTD_outBuffer out = { dest, dest_size, 0 };
    ZSTD_inBuffer in = { src, src_size, 0 };
    int result = 0;
    while (out.pos < out.size) {
        size_t last_in = in.pos, last_out = out.pos;
        size_t r = ZSTD_decompressStream(dctx, &out, &in);
        if (ZSTD_isError(r)) {
            result = -EIO;
            break;
        }
        if (in.pos == last_in && out.pos == last_out) {
            /* No progress: the input ended before the cluster was complete. */
            result = -EIO;
            break;
        }
    }
    ZSTD_freeDCtx(dctx);
    return result;
}

/* Called for a compressed write: compress one cluster with the image's method. */
ssize_t qcow2_compress(const BDRVQcow2State *s, void *dest, size_t dest_size,
                       const void *src, size_t src_size)
{
    if (s->compression_type == QCOW2_COMPRESSION_ZSTD) {
        return zstd_compress(dest, dest_size, src, src_size);
    }
    return zlib_compress(dest, dest_size, src, src_size);
}

/* Called when reading a compressed cluster. */
int qcow2_decompress(const BDRVQcow2State *s, void *dest, size_t dest_size, const void *src,
                     size_t src_size)
{
    if (s->compression_type == QCOW2_COMPRESSION_ZSTD) {
        return zstd_decompress(dest, dest_size, src, src_size);
    }
    return zlib_decompress(dest, dest_size, src, src_size);
}
