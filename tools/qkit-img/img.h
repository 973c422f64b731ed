/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qkit-img: one function per subcommand, each in its own file, plus shared helpers. */
#ifndef QKIT_IMG_H
#define QKIT_IMG_H

#include <stdbool.h>
#include <stdint.h>

#include <getopt.h>

#include "qkit/block.h"

int img_amend(int argc, char **argv);
int img_bench(int argc, char **argv);
int img_bitmap(int argc, char **argv);
int img_check(int argc, char **argv);
int img_commit(int argc, char **argv);
int img_compare(int argc, char **argv);
int img_convert(int argc, char **argv);
int img_create(int argc, char **argv);
int img_dd(int argc, char **argv);
int img_info(int argc, char **argv);
int img_map(int argc, char **argv);
int img_measure(int argc, char **argv);
int img_snapshot(int argc, char **argv);
int img_rebase(int argc, char **argv);
int img_resize(int argc, char **argv);

/* Print the full --help text (usage, commands, supported formats) and exit 0. */
void img_help(void) __attribute__((noreturn));
/* "Try 'qemu-img --help' for more information" style error and exit 1. */
void img_error_exit(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/*
 * Open an image for a subcommand, printing "Could not open 'NAME': ..." on failure.
 * image_opts: filename is a key=value list (--image-opts). Returns NULL on error.
 */
BlockDriverState *img_open(bool image_opts, const char *filename, const char *fmt, int flags,
                           bool writethrough, bool quiet, bool force_share);

/*
 * The progress line drawn by -p: "    (NN.NN/100%)\r". img_progress_print takes the
 * absolute position (done of total, e.g. bytes); the line is redrawn when it moved by
 * more than min_step percent, and at 0 and 100. img_progress_end ends the line.
 */
void img_progress_init(bool enabled, float min_step);
void img_progress_print(float done, float total);
void img_progress_end(void);

/* ---- shared helpers (img-common.c) ---- */

enum { IMG_OUTPUT_HUMAN, IMG_OUTPUT_JSON };
/* Granularity at which compare reports the first differing offset, as qemu-img. */
#define IMG_COMPARE_SECTOR 512

/* getopt returned ':' (missing argument) or '?' (unknown option): report and exit 1. */
void img_getopt_error(int c, char **argv) __attribute__((noreturn));
/*
 * --object DEF: register a user-creatable object (secret, tls-creds-x509, ...) that
 * later options refer to by id; prints QEMU's message and exits 1 if it is invalid.
 */
void img_object_add(const char *def);
/* Parse a size argument; prints qemu-img's "Invalid NAME specified..." and returns <0. */
int64_t img_cvtnum(const char *name, const char *value);
/* "human" (or NULL) or "json" to IMG_OUTPUT_*; prints the error and returns -1 otherwise. */
int img_parse_output_format(const char *arg);
/* argv[optind] when it is the only operand left, else "Expecting one image file name" and exit. */
const char *img_one_filename(int argc, char **argv);
/* Apply cache mode to *flags; prints "Invalid WHAT option: MODE" and returns -1 if unknown. */
int img_parse_cache_mode(const char *what, const char *mode, int *flags);
/* Append one -o argument to *options (comma-joined); -1 after "Invalid option list". */
int img_accumulate_options(char **options, const char *optarg);
/* True if an -o list asks for help ("help" or "?" among its keys). */
bool img_has_help_option(const char *options);
/*
 * Parse an -o list into o, checking each key against tables (NULL-terminated) and
 * each value against its type, as qemu-img does; sizes and numbers become decimal.
 */
int img_parse_qopts(QOpts *o, const char *str, const QOptDesc *const *tables, Error **errp);
/* True if one of the NULL-terminated option tables describes name. */
bool img_opts_have(const QOptDesc *const *tables, const char *name);
/*
 * -o help of create and convert: "Supported options:" of fmt and filename's protocol,
 * or of fmt alone without a filename; 1 after the error message, else 0.
 */
int img_print_create_opts_help(const char *filename, const char *fmt);
/* Print "  name=<type>   - help" lines, merged (first table wins) and sorted. */
void img_print_opts_help(const QOptDesc *const *tables, bool (*filter)(const QOptDesc *d));
/* JSON text laid out as QEMU's pretty printer (key order of its QDict); caller frees. */
char *img_json_to_str(json_t *obj);
/* img_json_to_str plus a newline, to stdout. */
void img_print_json(json_t *obj);
/* The ImageInfo object of one node (info, and anything else that describes images). */
json_t *img_collect_image_info(BlockDriverState *bs, Error **errp);
/* The node of bs's backing chain (below bs) that name refers to, or NULL. */
BlockDriverState *img_find_backing_image(BlockDriverState *bs, const char *name);
/* Snapshot table rows as `snapshot -l` and `info` print them (no newline). */
void img_snapshot_dump_header(void);
void img_snapshot_dump(const QkitSnapshotInfo *sn);
/* "Snapshot list:", the header and one line per snapshot. */
void img_dump_snapshot_list(const QkitSnapshotInfo *sns, int n);
/*
 * Compare two buffers sector by sector: returns whether the first sector differs and
 * sets *pnum to the length of the run of sectors with that same verdict.
 */
bool img_buffer_differs(const uint8_t *a, const uint8_t *b, int64_t bytes, int64_t *pnum);

/* ---- -l SNAPSHOT_PARAM of convert and measure (img-snapshot-param.c) ---- */

typedef BdrvSnapshotParam ImgSnapshotParam;

/* Record one -l argument; prints qemu-img's parse error and returns -1 on a bad one. */
int img_snapshot_param_parse(ImgSnapshotParam *p, const char *arg);
/* Load that snapshot into bs (read-only); prints "Failed to load snapshot: ...", -1. */
int img_snapshot_param_load(const ImgSnapshotParam *p, BlockDriverState *bs);

#endif
