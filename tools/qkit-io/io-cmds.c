/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The data-path commands: read, readv, write, writev, aio_read, aio_write, discard
 * and flush. Each parses its flags like qemu-io, runs one request through the block
 * layer, and prints the same report lines. The aio_* commands run synchronously and
 * keep their output until aio_flush, where qemu-io prints completions.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qkit-io.h"
#include "qkit/cutils.h"

/* Largest piece copy-on-read moves at once. */
#define QIO_COR_CHUNK (1 << 20)

/* Parse an offset argument, printing the parse error; -1 on error. */
static int64_t qio_parse_offset(const char *arg)
{
    int64_t v = qio_cvtnum(arg);
    if (v < 0) {
        qio_print_cvtnum_err(v, arg);
        return -1;
    }
    return v;
}

/*
 * Parse the length argument of read and discard, printing the parse error or
 * qemu-io's "length cannot exceed" line. Returns the length or -errno.
 */
static int64_t qio_parse_length(const char *arg)
{
    int64_t v = qio_cvtnum(arg);
    if (v < 0) {
        qio_print_cvtnum_err(v, arg);
        return v;
    }
    if (v > QIO_MAX_REQUEST_BYTES) {
        printf("length cannot exceed %lld, given %s\n", (long long)QIO_MAX_REQUEST_BYTES, arg);
        return -EINVAL;
    }
    return v;
}

/* Write through the block layer, keeping a probed raw image's block 0 raw. */
static int qio_do_pwrite(QioState *s, int64_t offset, int64_t bytes, const void *buf,
                         int flags)
{
    int ret = qio_check_probed_write(s, offset, bytes, buf);
    if (ret < 0) {
        return ret;
    }
    return bdrv_pwrite(s->bs, offset, bytes, buf, flags);
}

/*
 * -C: after a read, copy every cluster it touched that the top image does not
 * allocate into the top image (zeroes as zero writes), as QEMU's copy-on-read does.
 */
static int qio_copy_on_read(QioState *s, int64_t offset, int64_t bytes)
{
    if (!s->copy_on_read || bytes == 0) {
        return 0;
    }
    BlockDriverInfo bdi;
    int64_t cluster = QIO_SECTOR_SIZE;
    if (bdrv_get_info(s->bs, &bdi) == 0 && bdi.cluster_size > 0) {
        cluster = bdi.cluster_size;
    }
    int64_t len = bdrv_getlength(s->bs);
    if (len < 0) {
        return (int)len;
    }
    int64_t start = ROUND_DOWN(offset, cluster);
    int64_t end = QKIT_MIN(ROUND_UP(offset + bytes, cluster), len);
    uint8_t *buf = NULL;
    int ret = 0;
    while (start < end) {
        int64_t pnum;
        ret = bdrv_is_allocated(s->bs, start, end - start, &pnum);
        if (ret < 0 || pnum == 0) {
            break;
        }
        if (ret == 0) {
            pnum = QKIT_MIN(pnum, (int64_t)QIO_COR_CHUNK);
            if (!buf && !(buf = qio_alloc_buffer(QIO_COR_CHUNK, 0))) {
                ret = -ENOMEM;
                break;
            }
            ret = bdrv_pread(s->bs, start, pnum, buf, 0);
            if (ret == 0) {
                ret = buffer_is_zero(buf, (size_t)pnum)
                      ? bdrv_pwrite_zeroes(s->bs, start, pnum, BDRV_REQ_WRITE_UNCHANGED)
                      : bdrv_pwrite(s->bs, start, pnum, buf, BDRV_REQ_WRITE_UNCHANGED);
            }
            if (ret < 0) {
                break;
            }
        }
        ret = 0;
        start += pnum;
    }
    free(buf);
    return ret;
}

/* A read through the block layer, followed by copy-on-read when enabled. */
static int qio_do_pread(QioState *s, int64_t offset, int64_t bytes, void *buf)
{
    int ret = bdrv_pread(s->bs, offset, bytes, buf, 0);
    if (ret == 0) {
        ret = qio_copy_on_read(s, offset, bytes);
    }
    return ret;
}

/* Index of the first byte of buf that differs from pattern, or -1. */
static int64_t qio_pattern_mismatch(const uint8_t *buf, int64_t len, int pattern)
{
    for (int64_t i = 0; i < len; i++) {
        if (buf[i] != pattern) {
            return i;
        }
    }
    return -1;
}

/* What the read commands do with the data once read (-P, -s, -l, -q, -v, -C). */
typedef struct QioReadCheck {
    bool pflag, quiet, verbose, csv;
    int pattern;
    int64_t pattern_offset, pattern_count;
} QioReadCheck;

/*
 * After a successful read, common to read, readv and aio_read: verify the pattern,
 * then (unless quiet) dump the data and print the report, all to out.
 * Returns -EINVAL if the pattern did not match, else 0.
 */
static int qio_read_check_report(FILE *out, const QioReadCheck *rc, const uint8_t *buf,
                                 int64_t offset, int64_t count, const struct timespec *t)
{
    int ret = 0;
    if (rc->pflag &&
        qio_pattern_mismatch(buf + rc->pattern_offset, rc->pattern_count, rc->pattern) >= 0) {
        fprintf(out, "Pattern verification failed at offset %" PRId64 ", %" PRId64 " bytes\n",
                offset + rc->pattern_offset, rc->pattern_count);
        ret = -EINVAL;
    }
    if (rc->quiet) {
        return ret;
    }
    if (rc->verbose) {
        qio_dump_buffer(out, buf, offset, count);
    }
    qio_print_report(out, "read", t, offset, count, count, 1, rc->csv);
    return ret;
}

/*
 * Sum the length arguments of the vectored commands (readv, writev, aio_*),
 * printing qemu-io's message for a bad one. Returns the total or -1.
 */
static int64_t qio_sum_lengths(char **args, int n)
{
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        int64_t len = qio_cvtnum(args[i]);
        if (len < 0) {
            qio_print_cvtnum_err(len, args[i]);
            return -1;
        }
        if (len > QIO_MAX_REQUEST_BYTES) {
            printf("Argument '%s' exceeds maximum size %lld\n", args[i],
                   (long long)QIO_MAX_REQUEST_BYTES);
            return -1;
        }
        if (total > QIO_MAX_REQUEST_BYTES - len) {
            printf("The total number of bytes exceed the maximum size %lld\n",
                   (long long)QIO_MAX_REQUEST_BYTES);
            return -1;
        }
        total += len;
    }
    return total;
}

/* -b requests the VM state area; it must be sector aligned. */
static bool qio_check_vmstate_alignment(int64_t offset, int64_t count)
{
    if (offset % QIO_SECTOR_SIZE) {
        printf("%" PRId64 " is not a sector-aligned value for 'offset'\n", offset);
        return false;
    }
    if (count % QIO_SECTOR_SIZE) {
        printf("%" PRId64 " is not a sector-aligned value for 'count'\n", count);
        return false;
    }
    return true;
}

/*
 * The options read, readv and aio_read share (-C, -P, -q, -v), called for each option
 * getopt returns: 1 if it was one of them, 0 if not, -EINVAL after a bad pattern.
 */
static int qio_read_check_option(QioReadCheck *rc, int c, const char *arg)
{
    switch (c) {
    case 'C':
        rc->csv = true;
        return 1;
    case 'P':
        rc->pflag = true;
        rc->pattern = qio_parse_pattern(arg);
        return rc->pattern < 0 ? -EINVAL : 1;
    case 'q':
        rc->quiet = true;
        return 1;
    case 'v':
        rc->verbose = true;
        return 1;
    default:
        return 0;
    }
}

/* What the write commands were asked for by -C, -f, -n, -P, -q, -u and -z. */
typedef struct QioWriteOpts {
    bool csv, quiet, pflag, zero;
    int flags;   /* BDRV_REQ_* */
    int pattern;
} QioWriteOpts;

/*
 * The options write, writev and aio_write share, called for each option getopt
 * returns: 1 if it was one of them, 0 if not, -EINVAL after a bad pattern.
 */
static int qio_write_option(QioWriteOpts *w, int c, const char *arg)
{
    switch (c) {
    case 'C':
        w->csv = true;
        return 1;
    case 'f':
        w->flags |= BDRV_REQ_FUA;
        return 1;
    case 'n':
        w->flags |= BDRV_REQ_NO_FALLBACK;
        return 1;
    case 'P':
        w->pflag = true;
        w->pattern = qio_parse_pattern(arg);
        return w->pattern < 0 ? -EINVAL : 1;
    case 'q':
        w->quiet = true;
        return 1;
    case 'u':
        w->flags |= BDRV_REQ_MAY_UNMAP;
        return 1;
    case 'z':
        w->zero = true;
        return 1;
    default:
        return 0;
    }
}

/*
 * The "off len" operands of read and discard, after the options: prints the usage or
 * the parse error and returns it (-errno), else 0.
 */
static int qio_parse_offset_length(const QioCmd *cmd, int argc, char **argv, int64_t *offset,
                                   int64_t *bytes)
{
    if (optind != argc - 2) {
        qio_command_usage(cmd);
        return -EINVAL;
    }
    *offset = qio_parse_offset(argv[optind]);
    if (*offset < 0) {
        return -EINVAL;
    }
    *bytes = qio_parse_length(argv[optind + 1]);
    if (*bytes < 0) {
        return (int)*bytes;
    }
    return 0;
}

/*
 * The "off len [len...]" operands of the vectored commands (args[0] is off): prints
 * the parse error and returns -EINVAL, else 0 with the summed lengths in *total.
 */
static int qio_parse_offset_lengths(char **args, int n, int64_t *offset, int64_t *total)
{
    *offset = qio_parse_offset(args[0]);
    if (*offset < 0) {
        return -EINVAL;
    }
    *total = qio_sum_lengths(args + 1, n - 1);
    if (*total < 0) {
        return -EINVAL;
    }
    return 0;
}

/* "read [-bCqv] [-P pattern [-s off] [-l len]] off len": one read, verified and dumped. */
int qio_read_f(QioState *s, int argc, char **argv)
{
    QioReadCheck rc = { 0 };
    bool vmstate = false, sflag = false, lflag = false;
    int c;

    while ((c = getopt(argc, argv, "bCl:pP:qs:v")) != -1) {
        int r = qio_read_check_option(&rc, c, optarg);
        if (r < 0) {
            return r;
        } else if (r > 0) {
            continue;
        }
        switch (c) {
        case 'b':
            vmstate = true;
            break;
        case 'l':
            lflag = true;
            rc.pattern_count = qio_cvtnum(optarg);
            if (rc.pattern_count < 0) {
                qio_print_cvtnum_err(rc.pattern_count, optarg);
                return (int)rc.pattern_count;
            }
            break;
        case 'p':
            /* Ignored for backwards compatibility, as in qemu-io. */
            break;
        case 's':
            sflag = true;
            rc.pattern_offset = qio_cvtnum(optarg);
            if (rc.pattern_offset < 0) {
                qio_print_cvtnum_err(rc.pattern_offset, optarg);
                return (int)rc.pattern_offset;
            }
            break;
        default:
            qio_command_usage(&qio_cmd_read);
            return -EINVAL;
        }
    }
    int64_t offset, count;
    int err = qio_parse_offset_length(&qio_cmd_read, argc, argv, &offset, &count);
    if (err < 0) {
        return err;
    }
    if (!rc.pflag && (lflag || sflag)) {
        qio_command_usage(&qio_cmd_read);
        return -EINVAL;
    }
    if (!lflag) {
        rc.pattern_count = count - rc.pattern_offset;
    }
    if (rc.pattern_count < 0 || rc.pattern_count + rc.pattern_offset > count) {
        printf("pattern verification range exceeds end of read data\n");
        return -EINVAL;
    }
    if (vmstate && !qio_check_vmstate_alignment(offset, count)) {
        return -EINVAL;
    }

    uint8_t *buf = qio_alloc_buffer(count, 0xab);
    if (!buf) {
        printf("read failed: %s\n", strerror(ENOMEM));
        return -ENOMEM;
    }
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int ret = vmstate ? bdrv_load_vmstate(s->bs, buf, offset, count)
                      : qio_do_pread(s, offset, count, buf);
    struct timespec t = qio_time_since(&t1);
    if (ret < 0) {
        printf("read failed: %s\n", strerror(-ret));
        goto out;
    }
    ret = qio_read_check_report(stdout, &rc, buf, offset, count, &t);
out:
    free(buf);
    return ret;
}

/* "readv": a read of several lengths at once, as one request. */
int qio_readv_f(QioState *s, int argc, char **argv)
{
    QioReadCheck rc = { 0 };
    int c;

    while ((c = getopt(argc, argv, "CP:qv")) != -1) {
        int r = qio_read_check_option(&rc, c, optarg);
        if (r < 0) {
            return r;
        } else if (r > 0) {
            continue;
        }
        switch (c) {
        default:
            qio_command_usage(&qio_cmd_readv);
            return -EINVAL;
        }
    }
    if (optind > argc - 2) {
        qio_command_usage(&qio_cmd_readv);
        return -EINVAL;
    }
    int64_t offset, total;
    if (qio_parse_offset_lengths(argv + optind, argc - optind, &offset, &total) < 0) {
        return -EINVAL;
    }
    uint8_t *buf = qio_alloc_buffer(total, 0xab);
    if (!buf) {
        printf("readv failed: %s\n", strerror(ENOMEM));
        return -ENOMEM;
    }
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int ret = qio_do_pread(s, offset, total, buf);
    struct timespec t = qio_time_since(&t1);
    if (ret < 0) {
        printf("readv failed: %s\n", strerror(-ret));
        goto out;
    }
    rc.pattern_count = total;
    ret = qio_read_check_report(stdout, &rc, buf, offset, total, &t);
out:
    free(buf);
    return ret;
}

/* "write": pattern, file contents (-s), zeroes (-z) or compressed data (-c). */
int qio_write_f(QioState *s, int argc, char **argv)
{
    QioWriteOpts w = { .pattern = QIO_DEFAULT_WRITE_PATTERN };
    bool vmstate = false, compressed = false, sflag = false;
    const char *source = NULL;
    int c;

    while ((c = getopt(argc, argv, "bcCfnpP:qs:uz")) != -1) {
        int r = qio_write_option(&w, c, optarg);
        if (r < 0) {
            return r;
        } else if (r > 0) {
            continue;
        }
        switch (c) {
        case 'b':
            vmstate = true;
            break;
        case 'c':
            compressed = true;
            break;
        case 'p':
            /* Ignored for backwards compatibility, as in qemu-io. */
            break;
        case 's':
            sflag = true;
            source = optarg;
            break;
        default:
            qio_command_usage(&qio_cmd_write);
            return -EINVAL;
        }
    }
    if (optind != argc - 2) {
        qio_command_usage(&qio_cmd_write);
        return -EINVAL;
    }
    if (vmstate && w.zero) {
        printf("-b and -z cannot be specified at the same time\n");
        return -EINVAL;
    }
    if ((w.flags & BDRV_REQ_FUA) && (vmstate || compressed)) {
        printf("-f and -b or -c cannot be specified at the same time\n");
        return -EINVAL;
    }
    if ((w.flags & BDRV_REQ_NO_FALLBACK) && !w.zero) {
        printf("-n requires -z to be specified\n");
        return -EINVAL;
    }
    if ((w.flags & BDRV_REQ_MAY_UNMAP) && !w.zero) {
        printf("-u requires -z to be specified\n");
        return -EINVAL;
    }
    if (w.zero + w.pflag + sflag > 1) {
        printf("Only one of -z, -P, and -s can be specified at the same time\n");
        return -EINVAL;
    }
    int64_t offset = qio_parse_offset(argv[optind]);
    if (offset < 0) {
        return -EINVAL;
    }
    int64_t count = qio_cvtnum(argv[optind + 1]);
    if (count < 0) {
        qio_print_cvtnum_err(count, argv[optind + 1]);
        return (int)count;
    }
    if (count > QIO_MAX_REQUEST_BYTES && !(w.flags & BDRV_REQ_NO_FALLBACK)) {
        printf("length cannot exceed %lld without -n, given %s\n",
               (long long)QIO_MAX_REQUEST_BYTES, argv[optind + 1]);
        return -EINVAL;
    }
    if (vmstate && !qio_check_vmstate_alignment(offset, count)) {
        return -EINVAL;
    }

    uint8_t *buf = NULL;
    if (!w.zero) {
        buf = qio_alloc_buffer(count, w.pattern);
        if (!buf) {
            printf("write failed: %s\n", strerror(ENOMEM));
            return -ENOMEM;
        }
        if (sflag && qio_fill_from_file(buf, count, source) < 0) {
            free(buf);
            return -EINVAL;
        }
    }
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int ret;
    if (w.zero) {
        ret = bdrv_pwrite_zeroes(s->bs, offset, count, w.flags);
    } else if (vmstate) {
        ret = bdrv_save_vmstate(s->bs, buf, offset, count);
    } else {
        ret = qio_do_pwrite(s, offset, count, buf,
                            w.flags | (compressed ? BDRV_REQ_WRITE_COMPRESSED : 0));
    }
    struct timespec t = qio_time_since(&t1);
    if (ret < 0) {
        printf("write failed: %s\n", strerror(-ret));
        goto out;
    }
    if (!w.quiet) {
        qio_print_report(stdout, "wrote", &t, offset, count, count, 1, w.csv);
    }
out:
    free(buf);
    return ret;
}

/* "writev": a write of several pattern-filled lengths as one request. */
int qio_writev_f(QioState *s, int argc, char **argv)
{
    QioWriteOpts w = { .pattern = QIO_DEFAULT_WRITE_PATTERN };
    int c;

    while ((c = getopt(argc, argv, "CfqP:")) != -1) {
        int r = qio_write_option(&w, c, optarg);
        if (r < 0) {
            return r;
        } else if (r == 0) {
            qio_command_usage(&qio_cmd_writev);
            return -EINVAL;
        }
    }
    if (optind > argc - 2) {
        qio_command_usage(&qio_cmd_writev);
        return -EINVAL;
    }
    int64_t offset, total;
    if (qio_parse_offset_lengths(argv + optind, argc - optind, &offset, &total) < 0) {
        return -EINVAL;
    }
    uint8_t *buf = qio_alloc_buffer(total, w.pattern);
    if (!buf) {
        printf("writev failed: %s\n", strerror(ENOMEM));
        return -ENOMEM;
    }
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int ret = qio_do_pwrite(s, offset, total, buf, w.flags);
    struct timespec t = qio_time_since(&t1);
    if (ret < 0) {
        printf("writev failed: %s\n", strerror(-ret));
    } else if (!w.quiet) {
        qio_print_report(stdout, "wrote", &t, offset, total, total, 1, w.csv);
    }
    free(buf);
    return ret;
}

/* Queue the output text of a completed aio request for aio_flush. */
static void qio_defer_output(QioState *s, char *text, size_t len)
{
    if (!len) {
        free(text);
        return;
    }
    QioDeferred *d = calloc(1, sizeof(*d));
    if (!d) {
        abort();
    }
    d->text = text;
    *s->deferred_tail = d;
    s->deferred_tail = &d->next;
}

/* "aio_read": a read whose output is held until aio_flush. */
int qio_aio_read_f(QioState *s, int argc, char **argv)
{
    QioReadCheck rc = { 0 };
    bool invalid = false;
    int c;

    while ((c = getopt(argc, argv, "CP:iqv")) != -1) {
        int r = qio_read_check_option(&rc, c, optarg);
        if (r < 0) {
            return r;
        } else if (r > 0) {
            continue;
        }
        switch (c) {
        case 'i':
            invalid = true;
            break;
        default:
            qio_command_usage(&qio_cmd_aio_read);
            return -EINVAL;
        }
    }
    if (optind > argc - 2) {
        qio_command_usage(&qio_cmd_aio_read);
        return -EINVAL;
    }
    if (invalid) {
        printf("injecting invalid read request\n");
        return 0;
    }
    int64_t offset, total;
    if (qio_parse_offset_lengths(argv + optind, argc - optind, &offset, &total) < 0) {
        return -EINVAL;
    }
    uint8_t *buf = qio_alloc_buffer(total, 0xab);
    if (!buf) {
        return -ENOMEM;
    }
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (!out) {
        abort();
    }
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int ret = qio_do_pread(s, offset, total, buf);
    struct timespec t = qio_time_since(&t1);
    /* Like qemu-io, the command succeeds once submitted; errors only show in output. */
    if (ret < 0) {
        fprintf(out, "readv failed: %s\n", strerror(-ret));
    } else {
        rc.pattern_count = total;
        qio_read_check_report(out, &rc, buf, offset, total, &t);
    }
    fclose(out);
    qio_defer_output(s, text, len);
    free(buf);
    return 0;
}

/* "aio_write": a write (or -z zeroes) whose output is held until aio_flush. */
int qio_aio_write_f(QioState *s, int argc, char **argv)
{
    QioWriteOpts w = { .pattern = QIO_DEFAULT_WRITE_PATTERN };
    bool invalid = false;
    int c;

    while ((c = getopt(argc, argv, "CfiqP:uz")) != -1) {
        int r = qio_write_option(&w, c, optarg);
        if (r < 0) {
            return r;
        } else if (r > 0) {
            continue;
        }
        switch (c) {
        case 'i':
            invalid = true;
            break;
        default:
            qio_command_usage(&qio_cmd_aio_write);
            return -EINVAL;
        }
    }
    if (optind > argc - 2) {
        qio_command_usage(&qio_cmd_aio_write);
        return -EINVAL;
    }
    if (invalid) {
        printf("injecting invalid write request\n");
        return 0;
    }
    if (w.zero && optind != argc - 2) {
        printf("-z supports only a single length parameter\n");
        return -EINVAL;
    }
    if ((w.flags & BDRV_REQ_MAY_UNMAP) && !w.zero) {
        printf("-u requires -z to be specified\n");
        return -EINVAL;
    }
    int64_t offset, total;
    if (!w.zero) {
        if (qio_parse_offset_lengths(argv + optind, argc - optind, &offset, &total) < 0) {
            return -EINVAL;
        }
    } else {
        offset = qio_parse_offset(argv[optind]);
        if (offset < 0) {
            return -EINVAL;
        }
        total = qio_cvtnum(argv[optind + 1]);
        if (total < 0) {
            qio_print_cvtnum_err(total, argv[optind + 1]);
            return -EINVAL;
        }
    }
    uint8_t *buf = NULL;
    if (!w.zero) {
        buf = qio_alloc_buffer(total, w.pattern);
        if (!buf) {
            return -ENOMEM;
        }
    }
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (!out) {
        abort();
    }
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int ret = w.zero ? bdrv_pwrite_zeroes(s->bs, offset, total, w.flags)
                     : qio_do_pwrite(s, offset, total, buf, w.flags);
    struct timespec t = qio_time_since(&t1);
    if (ret < 0) {
        fprintf(out, "aio_write failed: %s\n", strerror(-ret));
    } else if (!w.quiet) {
        qio_print_report(out, "wrote", &t, offset, total, total, 1, w.csv);
    }
    fclose(out);
    qio_defer_output(s, text, len);
    free(buf);
    return 0;
}

/* "discard": passes the range down when discard=unmap. */
int qio_discard_f(QioState *s, int argc, char **argv)
{
    bool csv = false, quiet = false;
    int c;

    while ((c = getopt(argc, argv, "Cq")) != -1) {
        switch (c) {
        case 'C':
            csv = true;
            break;
        case 'q':
            quiet = true;
            break;
        default:
            qio_command_usage(&qio_cmd_discard);
            return -EINVAL;
        }
    }
    int64_t offset, bytes;
    int err = qio_parse_offset_length(&qio_cmd_discard, argc, argv, &offset, &bytes);
    if (err < 0) {
        return err;
    }
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int ret = bdrv_pdiscard(s->bs, offset, bytes);
    struct timespec t = qio_time_since(&t1);
    if (ret < 0) {
        printf("discard failed: %s\n", strerror(-ret));
        return ret;
    }
    if (!quiet) {
        qio_print_report(stdout, "discard", &t, offset, bytes, bytes, 1, csv);
    }
    return 0;
}

/* "flush": make everything written so far durable. */
int qio_flush_f(QioState *s, int argc, char **argv)
{
    return bdrv_flush(s->bs);
}
