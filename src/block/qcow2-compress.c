/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2 compressed clusters: zlib as raw deflate with a 4 KiB window (what QEMU
 * inflates with), or zstd frames (compression_type 1).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "block/qcow2.h"

#define QCOW2_ZLIB_WINDOW_BITS (-12)  /* raw deflate, 4 KiB window */
#define QCOW2_ZLIB_MEM_LEVEL 9

/*
 * Compression contexts of one thread, kept between clusters: setting up a deflate
 * stream or a zstd context costs allocations and clearing tables each time, and
 * convert -c compresses thousands of clusters per second on every core. A reset
 * context compresses exactly as a new one does, so the output does not change.
 * This is scratch memory of the calling thread, shared by no image.
 */
typedef struct Qcow2CompressCtx {
    z_stream deflate;
    bool deflate_ready;        /* deflate was set up and may be reset */
    ZSTD_CCtx *cctx;
} Qcow2CompressCtx;

static pthread_once_t compress_ctx_once = PTHREAD_ONCE_INIT;
static pthread_key_t compress_ctx_key;
static bool compress_ctx_key_ok;
static __thread Qcow2CompressCtx *compress_ctx;

/* Thread exit: free what the thread's compressions left set up. */
static void compress_ctx_free(void *opaque)
{
    Qcow2CompressCtx *ctx = opaque;
    if (ctx->deflate_ready) {
        deflateEnd(&ctx->deflate);
    }
    ZSTD_freeCCtx(ctx->cctx);
    free(ctx);
}

/* Once per process: the key whose destructor frees each thread's contexts. */
static void compress_ctx_init_key(void)
{
    compress_ctx_key_ok = pthread_key_create(&compress_ctx_key, compress_ctx_free) == 0;
}

/* The calling thread's contexts, or NULL (then each call sets up its own). */
static Qcow2CompressCtx *compress_ctx_get(void)
{
    if (compress_ctx) {
        return compress_ctx;
    }
    pthread_once(&compress_ctx_once, compress_ctx_init_key);
    if (!compress_ctx_key_ok) {
        return NULL;
    }
    Qcow2CompressCtx *ctx = calloc(1, sizeof(*ctx));
    if (!ctx) {
        return NULL;
    }
    if (pthread_setspecific(compress_ctx_key, ctx) != 0) {
        free(ctx);
        return NULL;
    }
    compress_ctx = ctx;
    return ctx;
}

/* A deflate stream ready for a new cluster: the thread's one reset, or strm set up. */
static z_stream *zlib_deflate_stream(z_stream *strm)
{
    Qcow2CompressCtx *ctx = compress_ctx_get();
    if (ctx && ctx->deflate_ready) {
        if (deflateReset(&ctx->deflate) == Z_OK) {
            return &ctx->deflate;
        }
        deflateEnd(&ctx->deflate);
        ctx->deflate_ready = false;
    }
    z_stream *s = ctx ? &ctx->deflate : strm;
    memset(s, 0, sizeof(*s));
    if (deflateInit2(s, Z_DEFAULT_COMPRESSION, Z_DEFLATED, QCOW2_ZLIB_WINDOW_BITS,
                     QCOW2_ZLIB_MEM_LEVEL, Z_DEFAULT_STRATEGY) != Z_OK) {
        return NULL;
    }
    if (ctx) {
        ctx->deflate_ready = true;
    }
    return s;
}

/* Deflate src; -ENOMEM when the result does not fit dest_size. */
static ssize_t zlib_compress(void *dest, size_t dest_size, const void *src, size_t src_size)
{
    z_stream own;
    z_stream *strm = zlib_deflate_stream(&own);
    if (!strm) {
        return -EIO;
    }
    strm->avail_in = (uInt)src_size;
    strm->next_in = (Bytef *)src;
    strm->avail_out = (uInt)dest_size;
    strm->next_out = dest;
    int ret = deflate(strm, Z_FINISH);
    ssize_t result;
    if (ret == Z_STREAM_END) {
        result = (ssize_t)(dest_size - strm->avail_out);
    } else if (ret == Z_OK || ret == Z_BUF_ERROR) {
        result = -ENOMEM;
    } else {
        result = -EIO;
    }
    if (strm == &own) {
        deflateEnd(strm);
    }
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
    Qcow2CompressCtx *ctx = compress_ctx_get();
    ZSTD_CCtx *cctx = ctx ? ctx->cctx : NULL;
    if (cctx) {
        ZSTD_CCtx_reset(cctx, ZSTD_reset_session_only);
    } else {
        cctx = ZSTD_createCCtx();
        if (!cctx) {
            return -EIO;
        }
        if (ctx) {
            ctx->cctx = cctx;
        }
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
    if (!ctx) {
        ZSTD_freeCCtx(cctx);
    }
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
