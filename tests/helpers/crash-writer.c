/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * crash-writer: the victim of tests/integration/test-crash-safety.sh. It writes
 * random patterns into an image through the block layer until it is killed, and
 * keeps a log of what it did so the test can tell which writes must have survived:
 *   "W <n> <w|z> <offset> <bytes> <pattern>"  before write n is issued (z: zeroes)
 *   "F <n>"                                   after a flush covering writes 0..n returned
 * Usage: crash-writer IMAGE LOG SEED CACHE_MODE
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qkit/block.h"
#include "qkit/error.h"

/* Largest single write, and the most writes between two flushes. */
#define CW_MAX_WRITE (256 * 1024)
#define CW_MAX_WRITES_PER_FLUSH 4
/* One write in this many writes zeroes instead of a pattern. */
#define CW_ZERO_EVERY 8
/* How many lines the log may hold; the test kills the writer long before. */
#define CW_MAX_WRITES 1000000

/* xorshift64*: a small generator whose sequence depends only on the seed. */
static uint64_t cw_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Append one line to the log with a single write(2): it survives SIGKILL. */
static void cw_log(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void cw_log(int fd, const char *fmt, ...)
{
    char line[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (write(fd, line, (size_t)n) != n) {
        perror("crash-writer: log");
        exit(1);
    }
}

int main(int argc, char **argv)
{
    static uint8_t buf[CW_MAX_WRITE];
    Error *err = NULL;
    int flags = BDRV_O_RDWR;
    int ret = 1;

    error_set_progname(argv[0]);
    if (argc != 5) {
        fprintf(stderr, "usage: %s IMAGE LOG SEED CACHE_MODE\n", argv[0]);
        return 2;
    }
    uint64_t state = strtoull(argv[3], NULL, 0) * 2654435761ULL + 1;
    if (bdrv_parse_cache_mode(argv[4], &flags) < 0) {
        error_report("invalid cache mode '%s'", argv[4]);
        return 2;
    }
    flags |= BDRV_O_RDWR;
    int log_fd = open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_TRUNC, 0644);
    if (log_fd < 0) {
        perror("crash-writer: open log");
        return 1;
    }
    BlockDriverState *bs = bdrv_open(argv[1], "qcow2", NULL, flags, &err);
    if (!bs) {
        error_report_err(err);
        close(log_fd);
        return 1;
    }
    int64_t len = bdrv_getlength(bs);
    if (len <= CW_MAX_WRITE) {
        error_report("image too small");
        goto out;
    }

    int since_flush = 0, per_flush = 1;
    for (int n = 0; n < CW_MAX_WRITES; n++) {
        int64_t bytes = 1 + (int64_t)(cw_rand(&state) % CW_MAX_WRITE);
        int64_t off = (int64_t)(cw_rand(&state) % (uint64_t)(len - bytes));
        /* Half the writes are sector-aligned, the others exercise read-modify-write. */
        if (cw_rand(&state) & 1) {
            off &= ~(int64_t)511;
            bytes = (bytes + 511) & ~(int64_t)511;
        }
        bool zero = cw_rand(&state) % CW_ZERO_EVERY == 0;
        int pattern = zero ? 0 : 1 + n % 255;
        cw_log(log_fd, "W %d %c %" PRId64 " %" PRId64 " %d\n", n, zero ? 'z' : 'w', off,
               bytes, pattern);
        if (zero) {
            ret = bdrv_pwrite_zeroes(bs, off, bytes, 0);
        } else {
            memset(buf, pattern, (size_t)bytes);
            ret = bdrv_pwrite(bs, off, bytes, buf, 0);
        }
        if (ret < 0) {
            error_report("write %d failed: %s", n, strerror(-ret));
            goto out;
        }
        if (++since_flush >= per_flush) {
            ret = bdrv_flush(bs);
            if (ret < 0) {
                error_report("flush after write %d failed: %s", n, strerror(-ret));
                goto out;
            }
            cw_log(log_fd, "F %d\n", n);
            since_flush = 0;
            per_flush = 1 + (int)(cw_rand(&state) % CW_MAX_WRITES_PER_FLUSH);
        }
    }
    ret = 0;
out:
    bdrv_unref(bs);
    close(log_fd);
    return ret < 0 ? 1 : ret;
}
