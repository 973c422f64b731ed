/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Helpers of the qkit-io commands whose output scripts parse: number arguments,
 * the "read N/N bytes" report and its timing line, the -v hex dump and pattern buffers.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "qkit-io.h"
#include "qkit/cutils.h"

#define QIO_BUFFER_ALIGN 4096
#define QIO_DUMP_LINE 16
#define QIO_SEC_PER_MIN 60
#define QIO_SEC_PER_HOUR 3600
#define NSEC_PER_SEC 1000000000LL

/* Offsets and lengths of every command go through here. */
int64_t qio_cvtnum(const char *s)
{
    uint64_t v;
    int ret = qkit_strtosz(s, 0, &v);
    if (ret < 0) {
        return ret;
    }
    if (qkit_size_is_hex_with_suffix(s)) {
        qio_warn("Using a multiplier suffix on hex numbers is deprecated: %s", s);
    }
    return (int64_t)v;
}

/* Called after qio_cvtnum fails, with the argument as typed. */
void qio_print_cvtnum_err(int64_t rc, const char *arg)
{
    if (rc == -ERANGE) {
        printf("Parsing error: argument too large -- %s\n", arg);
    } else if (rc == -EINVAL) {
        printf("Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- %s\n",
               arg);
    } else {
        printf("Parsing error: %s -- %s\n", strerror((int)-rc), arg);
    }
}

/* Sizes in report lines, length, map and alloc. */
void qio_cvtstr(double value, char *str, size_t size)
{
    static const struct { int shift; const char *unit; } units[] = {
        { 60, " EiB" }, { 50, " PiB" }, { 40, " TiB" },
        { 30, " GiB" }, { 20, " MiB" }, { 10, " KiB" },
    };
    const char *suffix = " bytes";
    bool scaled = false;
    for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
        double unit = (double)(1ULL << units[i].shift);
        if (value >= unit) {
            value /= unit;
            suffix = units[i].unit;
            scaled = true;
            break;
        }
    }
    /* Three decimals for units, six for bytes; the first ".000" ends the number. */
    char num[64];
    snprintf(num, sizeof(num), scaled ? "%.3f" : "%f", value);
    char *zeros = strstr(num, ".000");
    if (zeros) {
        *zeros = '\0';
    }
    snprintf(str, size, "%s%s", num, suffix);
}

/* The -P option of the read and write commands. */
int qio_parse_pattern(const char *arg)
{
    char *end;
    errno = 0;
    long v = strtol(arg, &end, 0);
    if (!*arg || *end || errno || v < 0 || v > UINT8_MAX) {
        printf("%s is not a valid pattern byte\n", arg);
        return -1;
    }
    return (int)v;
}

/* The -v option of the read commands. */
void qio_dump_buffer(FILE *f, const void *buf, int64_t offset, int64_t len)
{
    const uint8_t *p = buf;
    for (int64_t i = 0; i < len; i += QIO_DUMP_LINE) {
        int64_t n = QKIT_MIN((int64_t)QIO_DUMP_LINE, len - i);
        fprintf(f, "%08" PRIx64 ":  ", (uint64_t)(offset + i));
        for (int64_t j = 0; j < n; j++) {
            fprintf(f, "%02x ", p[i + j]);
        }
        fputc(' ', f);
        for (int64_t j = 0; j < n; j++) {
            fputc(isalnum(p[i + j]) ? p[i + j] : '.', f);
        }
        fputc('\n', f);
    }
}

/* Elapsed time as qemu-io shows it: "00.12 sec", or "H:MM:SS.ss" when long or fixed. */
static void qio_timestr(const struct timespec *t, char *buf, size_t size, bool fixed)
{
    double frac = (double)t->tv_nsec / NSEC_PER_SEC;
    if (fixed || t->tv_sec) {
        unsigned h = (unsigned)(t->tv_sec / QIO_SEC_PER_HOUR);
        unsigned m = (unsigned)(t->tv_sec % QIO_SEC_PER_HOUR / QIO_SEC_PER_MIN);
        unsigned sec = (unsigned)(t->tv_sec % QIO_SEC_PER_MIN);
        snprintf(buf, size, "%u:%02u:%05.2f", h, m, sec + frac);
    } else {
        snprintf(buf, size, "%05.2f sec", frac);
    }
}

/* value per second over t. */
static double qio_tdiv(double value, const struct timespec *t)
{
    return value / ((double)t->tv_sec + (double)t->tv_nsec / NSEC_PER_SEC);
}

/* Called after each successful I/O command unless -q. */
void qio_print_report(FILE *f, const char *op, const struct timespec *t, int64_t offset,
                      int64_t count, int64_t total, int cnt, bool csv)
{
    char ts[64], s1[64], s2[64];
    if (csv) {
        qio_timestr(t, ts, sizeof(ts), true);
        fprintf(f, "%" PRId64 ",%d,%s,%.3f,%.3f\n", total, cnt, ts, qio_tdiv(total, t),
                qio_tdiv(cnt, t));
        return;
    }
    fprintf(f, "%s %" PRId64 "/%" PRId64 " bytes at offset %" PRId64 "\n", op, total, count,
            offset);
    qio_timestr(t, ts, sizeof(ts), false);
    qio_cvtstr((double)total, s1, sizeof(s1));
    qio_cvtstr(qio_tdiv(total, t), s2, sizeof(s2));
    fprintf(f, "%s, %d ops; %s (%s/sec and %.4f ops/sec)\n", s1, cnt, ts, s2,
            qio_tdiv(cnt, t));
}

/* Timing of one request for the report line. */
struct timespec qio_time_since(const struct timespec *start)
{
    struct timespec now, d;
    clock_gettime(CLOCK_MONOTONIC, &now);
    d.tv_sec = now.tv_sec - start->tv_sec;
    d.tv_nsec = now.tv_nsec - start->tv_nsec;
    if (d.tv_nsec < 0) {
        d.tv_sec--;
        d.tv_nsec += NSEC_PER_SEC;
    }
    return d;
}

/* Page-aligned so that -n (O_DIRECT) requests need no bounce buffer. */
void *qio_alloc_buffer(int64_t len, int pattern)
{
    void *p = NULL;
    if (posix_memalign(&p, QIO_BUFFER_ALIGN, len > 0 ? (size_t)len : 1)) {
        return NULL;
    }
    memset(p, pattern, len > 0 ? (size_t)len : 1);
    return p;
}

/* write -s: the buffer repeats the file. */
int qio_fill_from_file(void *buf, int64_t len, const char *file)
{
    FILE *f = fopen(file, "r");
    if (!f) {
        perror(file);
        return -1;
    }
    uint8_t *p = buf;
    size_t got = fread(p, 1, (size_t)len, f);
    if (ferror(f)) {
        perror(file);
        fclose(f);
        return -1;
    }
    fclose(f);
    if (got == 0 && len > 0) {
        fprintf(stderr, "%s: file is empty\n", file);
        return -1;
    }
    /* A file shorter than the request is repeated to fill the buffer. */
    for (size_t done = got; got && done < (size_t)len; done += got) {
        size_t n = QKIT_MIN(got, (size_t)len - done);
        memcpy(p + done, p, n);
    }
    return 0;
}

/* Warnings as QEMU prints them: "prog: warning: ...". */
void qio_warn(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: warning: ", error_get_progname());
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ---- probed raw images ---- */

typedef struct QioProbe {
    const uint8_t *buf;
    int len;
    const char *filename;
    const char *best;
    int best_score;
} QioProbe;

/* bdrv_iterate_format callback: remember the format that claims the buffer best. */
static void qio_probe_one(void *opaque, const char *name)
{
    QioProbe *p = opaque;
    const BlockDriver *drv = bdrv_find_format(name);
    if (!drv || !drv->probe) {
        return;
    }
    int score = drv->probe(p->buf, p->len, p->filename);
    if (score > p->best_score) {
        p->best_score = score;
        p->best = name;
    }
}

/* Called before every data write (write, writev, aio_write). */
int qio_check_probed_write(QioState *s, int64_t offset, int64_t bytes, const void *buf)
{
    if (!s->probed_raw || offset >= QIO_SECTOR_SIZE || bytes <= 0) {
        return 0;
    }
    uint8_t head[QIO_SECTOR_SIZE];
    memset(head, 0, sizeof(head));
    int64_t len = bdrv_getlength(s->bs);
    int64_t have = QKIT_MIN(len < 0 ? 0 : len, (int64_t)QIO_SECTOR_SIZE);
    if (have > 0) {
        int ret = bdrv_pread(s->bs, 0, have, head, 0);
        if (ret < 0) {
            return ret;
        }
    }
    int64_t n = QKIT_MIN(bytes, (int64_t)QIO_SECTOR_SIZE - offset);
    memcpy(head + offset, buf, (size_t)n);
    QioProbe p = { head, QIO_SECTOR_SIZE, s->bs->filename, NULL, 0 };
    bdrv_iterate_format(qio_probe_one, &p);
    if (p.best && strcmp(p.best, "raw") != 0) {
        return -EPERM;
    }
    return 0;
}
