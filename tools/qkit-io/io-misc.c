/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The commands that manage or describe the image rather than move data: open,
 * close, reopen, truncate, length, info, map, alloc, and the session commands
 * (sleep, quit, abort, sigraise, and the blkdebug breakpoint commands).
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qkit-io.h"
#include "qkit/cutils.h"
#include "qkit/qinfo.h"

#define QIO_NSEC_PER_MSEC 1000000L
#define QIO_MSEC_PER_SEC 1000L

/* "truncate [-m prealloc] off": resize the image. */
int qio_truncate_f(QioState *s, int argc, char **argv)
{
    PreallocMode prealloc = PREALLOC_MODE_OFF;
    Error *err = NULL;
    int c;

    while ((c = getopt(argc, argv, "m:")) != -1) {
        switch (c) {
        case 'm':
            if (prealloc_mode_parse(optarg, &prealloc) < 0) {
                error_report("Invalid preallocation mode '%s'", optarg);
                return -EINVAL;
            }
            break;
        default:
            qio_command_usage(&qio_cmd_truncate);
            return -EINVAL;
        }
    }
    /* qemu-io takes the first operand and ignores any after it. */
    if (optind >= argc) {
        qio_command_usage(&qio_cmd_truncate);
        return -EINVAL;
    }
    int64_t offset = qio_cvtnum(argv[optind]);
    if (offset < 0) {
        qio_print_cvtnum_err(offset, argv[optind]);
        return (int)offset;
    }
    /*
     * qemu-io asks for "at least" this size, but on the image formats and files qkit
     * supports QEMU always resizes exactly (a raw file shrinks too), so ask for that.
     */
    int ret = bdrv_truncate(s->bs, offset, true, prealloc, &err);
    if (ret < 0) {
        error_report_err(err);
    }
    return ret;
}

/* "length": the virtual size in human units. */
int qio_length_f(QioState *s, int argc, char **argv)
{
    int64_t size = bdrv_getlength(s->bs);
    if (size < 0) {
        printf("getlength: %s\n", strerror((int)-size));
        return (int)size;
    }
    char buf[64];
    qio_cvtstr((double)size, buf, sizeof(buf));
    printf("%s\n", buf);
    return 0;
}

/* "info": format name, cluster size, VM state offset, format-specific data. */
int qio_info_f(QioState *s, int argc, char **argv)
{
    BlockDriverInfo bdi;
    char s1[64], s2[64];

    printf("format name: %s\n", bdrv_get_format_name(s->bs));
    int ret = bdrv_get_info(s->bs, &bdi);
    if (ret) {
        return ret;
    }
    qio_cvtstr(bdi.cluster_size, s1, sizeof(s1));
    qio_cvtstr((double)bdi.vm_state_offset, s2, sizeof(s2));
    printf("cluster size: %s\n", s1);
    printf("vm state offset: %s\n", s2);
    if (!s->bs->drv->get_specific_info) {
        return 0;
    }
    Error *err = NULL;
    json_t *spec = s->bs->drv->get_specific_info(s->bs, &err);
    if (!spec) {
        if (err) {
            error_report_err(err);
            return -EIO;
        }
        return 0;
    }
    json_t *data = json_object_get(spec, "data");
    if (json_is_object(data)) {
        printf("Format specific information:\n");
        qkit_dump_human_tree(stdout, data, 1);
    }
    json_decref(spec);
    return 0;
}

/*
 * Allocation status of the run starting at offset in bs itself, merged over
 * consecutive pieces with the same status; *pnum is the run length.
 */
static int qio_map_is_allocated(BlockDriverState *bs, int64_t offset, int64_t bytes,
                                int64_t *pnum)
{
    int64_t num;
    int ret = bdrv_is_allocated(bs, offset, bytes, &num);
    if (ret < 0) {
        return ret;
    }
    int first = ret;
    *pnum = num;
    while (bytes > 0 && num > 0) {
        offset += num;
        bytes -= num;
        if (bytes <= 0) {
            break;
        }
        ret = bdrv_is_allocated(bs, offset, bytes, &num);
        if (ret < 0 || ret != first || num == 0) {
            break;
        }
        *pnum += num;
    }
    return first;
}

/* "map": allocated and unallocated runs of the top image. */
int qio_map_f(QioState *s, int argc, char **argv)
{
    char s1[64], s2[64];
    int64_t length = bdrv_getlength(s->bs);
    if (length < 0) {
        error_report("Failed to query image length: %s", strerror((int)-length));
        return (int)length;
    }
    int64_t offset = 0;
    while (offset < length) {
        int64_t num;
        int ret = qio_map_is_allocated(s->bs, offset, length - offset, &num);
        if (ret < 0) {
            error_report("Failed to get allocation status: %s", strerror(-ret));
            return ret;
        }
        if (num == 0) {
            error_report("Unexpected end of image");
            return -EIO;
        }
        qio_cvtstr((double)num, s1, sizeof(s1));
        qio_cvtstr((double)offset, s2, sizeof(s2));
        printf("%s (0x%" PRIx64 ") bytes %s at offset %s (0x%" PRIx64 ")\n", s1,
               (uint64_t)num, ret ? "    allocated" : "not allocated", s2, (uint64_t)offset);
        offset += num;
    }
    return 0;
}

/* "alloc off [count]": how much of the range the top image allocates. */
int qio_alloc_f(QioState *s, int argc, char **argv)
{
    int64_t offset = qio_cvtnum(argv[1]);
    if (offset < 0) {
        qio_print_cvtnum_err(offset, argv[1]);
        return (int)offset;
    }
    int64_t count = QIO_SECTOR_SIZE;
    if (argc == 3) {
        count = qio_cvtnum(argv[2]);
        if (count < 0) {
            qio_print_cvtnum_err(count, argv[2]);
            return (int)count;
        }
    }
    int64_t start = offset, remaining = count, sum_alloc = 0;
    while (remaining) {
        int64_t num;
        int ret = bdrv_is_allocated(s->bs, offset, remaining, &num);
        if (ret < 0) {
            printf("is_allocated failed: %s\n", strerror(-ret));
            return ret;
        }
        offset += num;
        remaining -= num;
        if (ret) {
            sum_alloc += num;
        }
        if (num == 0) {
            /* The end of the image: report only the part that exists. */
            count -= remaining;
            remaining = 0;
        }
    }
    char s1[64];
    qio_cvtstr((double)start, s1, sizeof(s1));
    printf("%" PRId64 "/%" PRId64 " bytes allocated at offset %s\n", sum_alloc, count, s1);
    return 0;
}

/* Merge one "-o" list into *opts (later keys win). */
static int qio_merge_opts(json_t **opts, const char *str)
{
    Error *err = NULL;
    json_t *o = qdict_from_keyval(str, &err);
    if (!o) {
        error_report_err(err);
        return -EINVAL;
    }
    if (!*opts) {
        *opts = o;
        return 0;
    }
    json_object_update_recursive(*opts, o);
    json_decref(o);
    return 0;
}

/* "open [-rsCnkU] [-t cache] [-d discard] [-i aio] [-o opts] [path]". */
int qio_open_f(QioState *s, int argc, char **argv)
{
    QioOpenOpts oo;
    json_t *opts = NULL;
    int c;

    qio_open_opts_init(&oo);
    while ((c = getopt(argc, argv, "snCro:kt:d:i:U")) != -1) {
        int handled = qio_parse_open_opt(&oo, c, optarg);
        if (handled < 0) {
            goto fail;
        }
        if (handled) {
            continue;
        }
        switch (c) {
        case 'o':
            if (qio_merge_opts(&opts, optarg) < 0) {
                goto fail;
            }
            break;
        default:
            qio_command_usage(&qio_cmd_open);
            goto fail;
        }
    }
    if (optind == argc - 1) {
        return qio_open_image(s, argv[optind], NULL, opts, &oo);
    }
    if (optind == argc) {
        return qio_open_image(s, NULL, NULL, opts, &oo);
    }
    qio_command_usage(&qio_cmd_open);
fail:
    json_decref(opts);
    return -EINVAL;
}

/* "close": flush and close the image. */
int qio_close_f(QioState *s, int argc, char **argv)
{
    qio_close_image(s);
    return 0;
}

/* Apply the -o keys reopen understands; the first unknown key is an error. */
static int qio_reopen_opts(const char *str, int *rw, int *cache_flags)
{
    Error *err = NULL;
    json_t *o = qdict_from_keyval(str, &err);
    int ret = 0;
    if (!o) {
        error_report_err(err);
        return -EINVAL;
    }
    const char *key;
    json_t *val;
    json_object_foreach(o, key, val) {
        bool b;
        const char *v = json_string_value(val);
        if (!strcmp(key, "read-only")) {
            if (!v || qkit_strtobool(v, &b) < 0 || strcmp(v, b ? "on" : "off")) {
                error_report("Parameter 'read-only' expects 'on' or 'off'");
                ret = -EINVAL;
                break;
            }
            if (*rw != -1) {
                error_report("Cannot set both -r/-w and 'read-only'");
                ret = -EINVAL;
                break;
            }
            *rw = !b;
        } else if (!strcmp(key, "cache") && json_is_object(val)) {
            /* cache.direct needs a new file descriptor: accepted, takes effect on open. */
            json_t *nf = json_object_get(val, "no-flush");
            if (json_is_string(nf) && qkit_strtobool(json_string_value(nf), &b) == 0) {
                *cache_flags = b ? (*cache_flags | BDRV_O_NO_FLUSH)
                                 : (*cache_flags & ~BDRV_O_NO_FLUSH);
            }
        } else {
            error_report("Cannot change the option '%s'", key);
            ret = -EINVAL;
            break;
        }
    }
    json_decref(o);
    return ret;
}

/* "reopen [-r|-w] [-c cache] [-o opts]": change how the open image is used. */
int qio_reopen_f(QioState *s, int argc, char **argv)
{
    int rw = -1;
    int cache_flags = s->bs->open_flags & (BDRV_O_WRITETHROUGH | BDRV_O_NO_FLUSH);
    const char *opts = NULL;
    int c;

    while ((c = getopt(argc, argv, "c:o:rw")) != -1) {
        switch (c) {
        case 'c': {
            int f = 0;
            if (bdrv_parse_cache_mode(optarg, &f) < 0) {
                error_report("Invalid cache option: %s", optarg);
                return -EINVAL;
            }
            cache_flags = f & (BDRV_O_WRITETHROUGH | BDRV_O_NO_FLUSH);
            break;
        }
        case 'o':
            opts = optarg;
            break;
        case 'r':
        case 'w':
            if (rw != -1) {
                error_report("Only one -r/-w option may be given");
                return -EINVAL;
            }
            rw = c == 'w';
            break;
        default:
            qio_command_usage(&qio_cmd_reopen);
            return -EINVAL;
        }
    }
    if (optind != argc) {
        qio_command_usage(&qio_cmd_reopen);
        return -EINVAL;
    }
    if (opts && qio_reopen_opts(opts, &rw, &cache_flags) < 0) {
        return -EINVAL;
    }
    if (rw != -1) {
        Error *err = NULL;
        int ret = bdrv_reopen(s->bs, rw, &err);
        if (ret < 0) {
            error_report_err(err);
            return ret;
        }
    }
    /* Write-through and no-flush are consulted per request, so they change in place. */
    s->bs->open_flags = (s->bs->open_flags & ~(BDRV_O_WRITETHROUGH | BDRV_O_NO_FLUSH)) |
                        cache_flags;
    return 0;
}

/* "sleep MS": wait; aio output pending so far is printed first. */
int qio_sleep_f(QioState *s, int argc, char **argv)
{
    char *end;
    long ms = strtol(argv[1], &end, 0);
    if (ms < 0 || *end || !*argv[1]) {
        printf("%s is not a valid number\n", argv[1]);
        return -EINVAL;
    }
    /* Outstanding aio requests complete while qemu-io sleeps. */
    qio_aio_flush_f(s, 0, NULL);
    struct timespec ts = { ms / QIO_MSEC_PER_SEC, (ms % QIO_MSEC_PER_SEC) * QIO_NSEC_PER_MSEC };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
    return 0;
}

/* "quit": stop after this command. */
int qio_quit_f(QioState *s, int argc, char **argv)
{
    s->quit = true;
    return 0;
}

/* "abort": crash on purpose, for tests of crash consistency. */
int qio_abort_f(QioState *s, int argc, char **argv)
{
    abort();
}

/* "sigraise SIG": raise a signal in the tool itself. */
int qio_sigraise_f(QioState *s, int argc, char **argv)
{
    int64_t sig = qio_cvtnum(argv[1]);
    if (sig < 0) {
        qio_print_cvtnum_err(sig, argv[1]);
        return (int)sig;
    }
    if (sig > NSIG) {
        printf("signal argument '%s' is too large to be a valid signal\n", argv[1]);
        return -EINVAL;
    }
    /* Whatever the signal does, the output so far must not be lost. */
    fflush(stdout);
    fflush(stderr);
    raise((int)sig);
    return 0;
}

/*
 * Breakpoints belong to QEMU's blkdebug driver, which qkit does not have; like
 * qemu-io on any other driver, the commands fail with ENOTSUP.
 */
int qio_break_f(QioState *s, int argc, char **argv)
{
    printf("Could not set breakpoint: %s\n", strerror(ENOTSUP));
    return -ENOTSUP;
}

/* "remove_break tag": see qio_break_f. */
int qio_remove_break_f(QioState *s, int argc, char **argv)
{
    printf("Could not remove breakpoint %s: %s\n", argv[1], strerror(ENOTSUP));
    return -ENOTSUP;
}

/* "resume tag": see qio_break_f. */
int qio_resume_f(QioState *s, int argc, char **argv)
{
    printf("Could not resume request: %s\n", strerror(ENOTSUP));
    return -ENOTSUP;
}

/* qemu-io waits forever here on non-blkdebug images; failing at once is kinder. */
int qio_wait_break_f(QioState *s, int argc, char **argv)
{
    printf("Could not wait for breakpoint %s: %s\n", argv[1], strerror(ENOTSUP));
    return -ENOTSUP;
}
