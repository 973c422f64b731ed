/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qkit-io: the block layer exerciser, a drop-in for qemu-io. One command table
 * (qkit-io.c) dispatches each "-c" string or prompt line to a handler in io-cmds.c
 * (data path) or io-misc.c (image management); io-util.c holds number parsing and
 * the report/dump formats that must match qemu-io's byte for byte.
 */
#ifndef QKIT_IO_H
#define QKIT_IO_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "qkit/block.h"

/* Largest single request qemu-io accepts: INT_MAX rounded down to 512 bytes. */
#define QIO_MAX_REQUEST_BYTES 2147483136LL
#define QIO_SECTOR_SIZE 512
/* Fill byte of write buffers when no -P pattern is given. */
#define QIO_DEFAULT_WRITE_PATTERN 0xcd

/* How an image is to be opened (main options or the "open" command). */
typedef struct QioOpenOpts {
    int flags;              /* BDRV_O_* */
    bool snapshot;          /* -s: writes go to a temporary overlay */
    bool force_share;       /* -U */
    bool image_opts;        /* the name is a key=value option string */
    bool writethrough;      /* cache mode asks for write-through */
    bool copy_on_read;      /* -C: reads copy what they read into the top image */
} QioOpenOpts;

/* One completed asynchronous request whose output waits for aio_flush. */
typedef struct QioDeferred {
    char *text;
    struct QioDeferred *next;
} QioDeferred;

/* Everything a command may touch: the open image and the session state. */
typedef struct QioState {
    BlockDriverState *bs;     /* NULL when no image is open */
    bool probed_raw;          /* opened without a format and probed as raw */
    bool copy_on_read;        /* -C: reads allocate the clusters they touch */
    bool quit;                /* "quit" was run */
    const char *progname;     /* basename of argv[0] */
    char *snapshot_file;      /* temporary overlay of -s, deleted on close */
    QioDeferred *deferred;    /* aio output, oldest first */
    QioDeferred **deferred_tail;
} QioState;

typedef int (*QioCmdFunc)(QioState *s, int argc, char **argv);

/* One command of the table: names, argument limits, help texts. */
typedef struct QioCmd {
    const char *name;
    const char *altname;      /* one-letter alias, or NULL */
    QioCmdFunc func;
    int argmin;
    int argmax;               /* -1: no limit */
    bool needs_file;          /* refuse with "no file open" when no image is open */
    bool needs_write;         /* refuse on a read-only image before parsing */
    const char *args;         /* NULL: none (usage shows no space, "map" has "") */
    const char *oneline;
    void (*help)(void);       /* extended help, or NULL */
} QioCmd;

/* ---- qkit-io.c ---- */
/* Print "NAME ARGS -- ONELINE" for a command (after an argument error). */
void qio_command_usage(const QioCmd *ct);
/* Open an image into s (which must have none); prints errors; 0 or -errno. */
int qio_open_image(QioState *s, const char *name, const char *fmt, json_t *opts,
                   const QioOpenOpts *oo);
/* Close the image of s, if any, printing pending aio output first. */
void qio_close_image(QioState *s);
/*
 * Apply one option letter shared by the program and the open command (-s -n -C -r
 * -k -U, -t cache, -d discard, -i aio) to oo. Returns 1 if c was one of them, 0 if
 * not, -1 after printing "Invalid cache/discard/aio option: ...".
 */
int qio_parse_open_opt(QioOpenOpts *oo, int c, const char *arg);
/* Set the cache mode flags of oo (default writeback); 0 or -EINVAL. */
void qio_open_opts_init(QioOpenOpts *oo);

/* ---- command handlers (io-cmds.c, io-misc.c) ---- */
int qio_read_f(QioState *s, int argc, char **argv);
int qio_readv_f(QioState *s, int argc, char **argv);
int qio_write_f(QioState *s, int argc, char **argv);
int qio_writev_f(QioState *s, int argc, char **argv);
int qio_aio_read_f(QioState *s, int argc, char **argv);
int qio_aio_write_f(QioState *s, int argc, char **argv);
int qio_aio_flush_f(QioState *s, int argc, char **argv);
int qio_discard_f(QioState *s, int argc, char **argv);
int qio_flush_f(QioState *s, int argc, char **argv);
int qio_truncate_f(QioState *s, int argc, char **argv);
int qio_length_f(QioState *s, int argc, char **argv);
int qio_info_f(QioState *s, int argc, char **argv);
int qio_map_f(QioState *s, int argc, char **argv);
int qio_alloc_f(QioState *s, int argc, char **argv);
int qio_open_f(QioState *s, int argc, char **argv);
int qio_close_f(QioState *s, int argc, char **argv);
int qio_reopen_f(QioState *s, int argc, char **argv);
int qio_sleep_f(QioState *s, int argc, char **argv);
int qio_quit_f(QioState *s, int argc, char **argv);
int qio_abort_f(QioState *s, int argc, char **argv);
int qio_sigraise_f(QioState *s, int argc, char **argv);
int qio_break_f(QioState *s, int argc, char **argv);
int qio_remove_break_f(QioState *s, int argc, char **argv);
int qio_resume_f(QioState *s, int argc, char **argv);
int qio_wait_break_f(QioState *s, int argc, char **argv);

/* Extended help texts (io-help.c). */
void qio_read_help(void);
void qio_readv_help(void);
void qio_write_help(void);
void qio_writev_help(void);
void qio_aio_read_help(void);
void qio_aio_write_help(void);
void qio_discard_help(void);
void qio_open_help(void);
void qio_reopen_help(void);
void qio_sigraise_help(void);

/* The command table entries that handlers print usage for. */
extern const QioCmd qio_cmd_read, qio_cmd_readv, qio_cmd_write, qio_cmd_writev;
extern const QioCmd qio_cmd_aio_read, qio_cmd_aio_write, qio_cmd_discard;
extern const QioCmd qio_cmd_truncate, qio_cmd_open, qio_cmd_reopen;

/* ---- io-util.c ---- */
/*
 * Parse an offset or length as qemu-io does (size suffixes, hex, fractions with a
 * suffix). Returns the value or -EINVAL / -ERANGE.
 */
int64_t qio_cvtnum(const char *s);
/* Print qemu-io's "Parsing error: ..." line for a failed qio_cvtnum. */
void qio_print_cvtnum_err(int64_t rc, const char *arg);
/* Human size of the report lines: "%.3f" and a unit, ".000" dropped ("1 KiB"). */
void qio_cvtstr(double value, char *str, size_t size);
/* Parse a -P pattern byte (0..255, any base); prints the error and returns -1. */
int qio_parse_pattern(const char *arg);
/* The hex and character dump of -v: offset is the image offset of buf[0]. */
void qio_dump_buffer(FILE *f, const void *buf, int64_t offset, int64_t len);
/*
 * The lines after an I/O command: "OP TOTAL/COUNT bytes at offset OFF" and the
 * timing line, or one comma-separated line with csv (-C).
 */
void qio_print_report(FILE *f, const char *op, const struct timespec *t, int64_t offset,
                      int64_t count, int64_t total, int cnt, bool csv);
/* Elapsed time from start to now. */
struct timespec qio_time_since(const struct timespec *start);
/* Fill buf from the contents of file, repeated; prints errors, returns 0 or -1. */
int qio_fill_from_file(void *buf, int64_t len, const char *file);
/* Aligned buffer of len bytes filled with pattern (caller frees). */
void *qio_alloc_buffer(int64_t len, int pattern);
/* Run fn and print "warning" style messages like QEMU's warn_report. */
void qio_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Check a write to block 0 of a probed raw image: refuse (-EPERM) if the new first
 * sector would make the image probe as another format, as QEMU does.
 */
int qio_check_probed_write(QioState *s, int64_t offset, int64_t bytes, const void *buf);

#endif
