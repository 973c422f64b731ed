/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qkit-img bench: a sequential read or write benchmark. COUNT requests of
 * BUFFER_SIZE bytes go out DEPTH at a time (one worker thread per request in
 * flight, as the block layer is synchronous), at OFFSET, OFFSET+STEP, ...
 * wrapping around the image. With --flush-interval, a flush is issued whenever
 * the number of requests not yet sent is a multiple of the interval; by default
 * the queue is drained first, as qemu-img does.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "img.h"
#include "qkit/cutils.h"

enum {
    OPT_FLUSH_INTERVAL = 256,
    OPT_IMAGE_OPTS,
    OPT_PATTERN,
    OPT_NO_DRAIN,
};

#define BENCH_DEFAULT_COUNT 75000
#define BENCH_DEFAULT_DEPTH 64
#define BENCH_DEFAULT_BUFSIZE 4096
#define BENCH_MAX_PATTERN 0xff
/* More threads than this add nothing but scheduling noise. */
#define BENCH_MAX_THREADS 256
#define BENCH_BUF_ALIGN 4096
#define USEC_PER_SEC 1000000.0

typedef struct BenchState {
    BlockDriverState *bs;
    int64_t image_size;
    int64_t bufsize;
    int64_t step;
    int64_t offset;          /* of the next request */
    int depth;
    int to_send;             /* requests not yet sent */
    int in_flight;
    bool write;
    int flush_interval;
    bool drain_on_flush;
    bool flushing;           /* drained flush in progress: send nothing */
    int error;               /* first failure, -errno */
    const char *error_what;  /* "Failed request" or "Failed flush" */
    pthread_mutex_t lock;
    pthread_cond_t cond;
} BenchState;

typedef struct BenchWorker {
    BenchState *b;
    pthread_t thread;
    uint8_t *buf;
} BenchWorker;

/* Parse a size limited to [min, max]; -1 after qemu-img's message. */
static int64_t bench_cvtnum_full(const char *name, const char *value, int64_t min, int64_t max)
{
    uint64_t v;
    int ret = qkit_strtosz(value, 0, &v);
    if (ret < 0 && ret != -ERANGE) {
        return img_cvtnum(name, value);
    }
    if (ret == -ERANGE || v > (uint64_t)max || (int64_t)v < min) {
        error_report("Invalid %s specified. Must be between %" PRId64 " and %" PRId64 ".",
                     name, min, max);
        return -1;
    }
    return (int64_t)v;
}

/* Parse an unsigned number (any base) up to max; false if it is not one. */
static bool bench_parse_ulong(const char *arg, uint64_t max, uint64_t *out)
{
    return qkit_strtou64(arg, out) == 0 && *out <= max;
}

/* Record the first failure and wake everyone so they stop. */
static void bench_fail(BenchState *b, int ret, const char *what)
{
    if (!b->error) {
        b->error = ret;
        b->error_what = what;
    }
    pthread_cond_broadcast(&b->cond);
}

/*
 * Called with the lock held after a request completed: flush when the number of
 * requests still to send is a multiple of the interval (after draining, unless
 * --no-drain). The flush itself runs without the lock.
 */
static void bench_after_request(BenchState *b)
{
    int remaining = b->to_send;
    b->in_flight--;
    if (!b->flush_interval || remaining % b->flush_interval != 0) {
        return;
    }
    if (b->drain_on_flush) {
        b->flushing = true;
        if (b->in_flight > 0) {
            return;
        }
    }
    pthread_mutex_unlock(&b->lock);
    int ret = bdrv_flush(b->bs);
    pthread_mutex_lock(&b->lock);
    if (ret < 0) {
        bench_fail(b, ret, "Failed flush request");
    }
    if (b->drain_on_flush) {
        b->flushing = false;
        pthread_cond_broadcast(&b->cond);
    }
}

/* Body of a worker: send requests until all are sent or one fails. */
static void *bench_worker(void *opaque)
{
    BenchWorker *w = opaque;
    BenchState *b = w->b;
    pthread_mutex_lock(&b->lock);
    for (;;) {
        while (!b->error && b->to_send > 0 && (b->flushing || b->in_flight >= b->depth)) {
            pthread_cond_wait(&b->cond, &b->lock);
        }
        if (b->error || b->to_send == 0) {
            break;
        }
        int64_t offset = b->offset;
        b->to_send--;
        b->in_flight++;
        b->offset += b->step;
        if (b->image_size <= b->bufsize) {
            b->offset = 0;
        } else {
            b->offset %= b->image_size - b->bufsize;
        }
        pthread_mutex_unlock(&b->lock);

        int ret = b->write ? bdrv_pwrite(b->bs, offset, b->bufsize, w->buf, 0)
                           : bdrv_pread(b->bs, offset, b->bufsize, w->buf, 0);

        pthread_mutex_lock(&b->lock);
        if (ret < 0) {
            b->in_flight--;
            bench_fail(b, ret, "Failed request");
            break;
        }
        bench_after_request(b);
        pthread_cond_broadcast(&b->cond);
    }
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

/* Run the requests on worker threads; 0 or -errno with b->error_what set. */
static int bench_run(BenchState *b, int pattern)
{
    int nthreads = QKIT_MIN(QKIT_MIN(b->depth, b->to_send), BENCH_MAX_THREADS);
    BenchWorker *workers = calloc(nthreads ? nthreads : 1, sizeof(*workers));
    size_t bufsize = (size_t)(b->bufsize ? b->bufsize : 1);
    int started = 0, ret = 0;
    if (!workers) {
        return -ENOMEM;
    }
    for (int i = 0; i < nthreads; i++) {
        workers[i].b = b;
        if (posix_memalign((void **)&workers[i].buf, BENCH_BUF_ALIGN, bufsize)) {
            workers[i].buf = NULL;
            b->error_what = "Failed request";
            ret = -ENOMEM;
            goto out;
        }
        memset(workers[i].buf, pattern, bufsize);
    }
    for (started = 0; started < nthreads; started++) {
        if (pthread_create(&workers[started].thread, NULL, bench_worker, &workers[started])) {
            pthread_mutex_lock(&b->lock);
            bench_fail(b, -EAGAIN, "Failed to issue request");
            pthread_mutex_unlock(&b->lock);
            break;
        }
    }
    for (int i = 0; i < started; i++) {
        pthread_join(workers[i].thread, NULL);
    }
    ret = b->error;
out:
    for (int i = 0; i < nthreads; i++) {
        free(workers[i].buf);
    }
    free(workers);
    return ret;
}

int img_bench(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "flush-interval", required_argument, NULL, OPT_FLUSH_INTERVAL },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "pattern", required_argument, NULL, OPT_PATTERN },
        { "no-drain", no_argument, NULL, OPT_NO_DRAIN },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL;
    bool quiet = false, image_opts = false, is_write = false, force_share = false;
    bool drain_on_flush = true;
    uint64_t count = BENCH_DEFAULT_COUNT, depth = BENCH_DEFAULT_DEPTH;
    uint64_t pattern = 0, flush_interval = 0;
    int64_t offset = 0, bufsize = BENCH_DEFAULT_BUFSIZE, step = 0;
    int flags = 0;
    int c;

    while ((c = getopt_long(argc, argv, ":hc:d:f:ni:o:qs:S:t:wU", long_options, NULL)) != -1) {
        switch (c) {
        case ':':
        case '?':
            img_getopt_error(c, argv);
        case 'h':
            img_help();
        case 'c':
            if (!bench_parse_ulong(optarg, INT_MAX, &count)) {
                error_report("Invalid request count specified");
                return 1;
            }
            break;
        case 'd':
            /* qemu-img accepts 0 and then waits forever; refuse it instead. */
            if (!bench_parse_ulong(optarg, INT_MAX, &depth) || depth == 0) {
                error_report("Invalid queue depth specified");
                return 1;
            }
            break;
        case 'f':
            fmt = optarg;
            break;
        case 'n':
            flags |= BDRV_O_NATIVE_AIO;
            break;
        case 'i':
            if (bdrv_parse_aio(optarg, &flags) < 0) {
                error_report("Invalid aio option: %s", optarg);
                return 1;
            }
            break;
        case 'o':
            offset = img_cvtnum("offset", optarg);
            if (offset < 0) {
                return 1;
            }
            break;
        case 'q':
            quiet = true;
            break;
        case 's':
            bufsize = bench_cvtnum_full("buffer size", optarg, 0, INT_MAX);
            if (bufsize < 0) {
                return 1;
            }
            break;
        case 'S':
            step = bench_cvtnum_full("step_size", optarg, 0, INT_MAX);
            if (step < 0) {
                return 1;
            }
            break;
        case 't':
            if (bdrv_parse_cache_mode(optarg, &flags) < 0) {
                error_report("Invalid cache mode");
                return 1;
            }
            break;
        case 'w':
            flags |= BDRV_O_RDWR;
            is_write = true;
            break;
        case 'U':
            force_share = true;
            break;
        case OPT_PATTERN:
            if (!bench_parse_ulong(optarg, BENCH_MAX_PATTERN, &pattern)) {
                error_report("Invalid pattern byte specified");
                return 1;
            }
            break;
        case OPT_FLUSH_INTERVAL:
            if (!bench_parse_ulong(optarg, INT_MAX, &flush_interval)) {
                error_report("Invalid flush interval specified");
                return 1;
            }
            break;
        case OPT_NO_DRAIN:
            drain_on_flush = false;
            break;
        case OPT_IMAGE_OPTS:
            image_opts = true;
            break;
        }
    }
    const char *filename = img_one_filename(argc, argv);
    if (!is_write && flush_interval) {
        error_report("--flush-interval is only available in write tests");
        return 1;
    }
    if (flush_interval && flush_interval < depth) {
        error_report("Flush interval can't be smaller than depth");
        return 1;
    }

    BlockDriverState *bs = img_open(image_opts, filename, fmt, flags, false, quiet, force_share);
    if (!bs) {
        return 1;
    }
    BenchState b = {
        .bs = bs,
        .image_size = bdrv_getlength(bs),
        .bufsize = bufsize,
        .step = step ? step : bufsize,
        .offset = offset,
        .depth = (int)depth,
        .to_send = (int)count,
        .write = is_write,
        .flush_interval = (int)flush_interval,
        .drain_on_flush = drain_on_flush,
    };
    int ret = 1;
    if (b.image_size < 0) {
        goto out;
    }
    pthread_mutex_init(&b.lock, NULL);
    pthread_cond_init(&b.cond, NULL);
    printf("Sending %d %s requests, %d bytes each, %d in parallel (starting at offset %" PRId64
           ", step size %d)\n", (int)count, is_write ? "write" : "read", (int)bufsize,
           (int)depth, offset, (int)b.step);
    if (flush_interval) {
        printf("Sending flush every %d requests\n", (int)flush_interval);
    }

    struct timeval t1, t2;
    gettimeofday(&t1, NULL);
    int err = bench_run(&b, (int)pattern);
    gettimeofday(&t2, NULL);
    pthread_cond_destroy(&b.cond);
    pthread_mutex_destroy(&b.lock);
    if (err < 0) {
        error_report("%s: %s", b.error_what ? b.error_what : "Failed request", strerror(-err));
        goto out;
    }
    printf("Run completed in %3.3f seconds.\n",
           (double)(t2.tv_sec - t1.tv_sec) + (double)(t2.tv_usec - t1.tv_usec) / USEC_PER_SEC);
    ret = 0;
out:
    bdrv_unref(bs);
    return ret;
}
