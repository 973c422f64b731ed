/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qkit-img: one function per subcommand, each in its own file, plus shared helpers. */
#ifndef QKIT_IMG_H
#define QKIT_IMG_H

#include <stdbool.h>
#include <stdint.h>

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

/* The progress line drawn by -p: "    (NN.NN/100%)\r". */
void img_progress_init(bool enabled, float min_step);
void img_progress_print(float done, float total);
void img_progress_end(void);

#endif
