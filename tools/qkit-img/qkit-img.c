/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qkit-img: the disk image utility. main() picks the subcommand and runs it. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "img.h"

#define QKIT_IMG_VERSION "qemu-img version 7.2.22 (qkit 0.1.0)\n" \
    "Copyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n"

typedef struct ImgCommand {
    const char *name;
    int (*handler)(int argc, char **argv);
} ImgCommand;

static const ImgCommand img_commands[] = {
    { "amend", img_amend },
    { "bench", img_bench },
    { "bitmap", img_bitmap },
    { "check", img_check },
    { "commit", img_commit },
    { "compare", img_compare },
    { "convert", img_convert },
    { "create", img_create },
    { "dd", img_dd },
    { "info", img_info },
    { "map", img_map },
    { "measure", img_measure },
    { "snapshot", img_snapshot },
    { "rebase", img_rebase },
    { "resize", img_resize },
    { NULL, NULL },
};

int main(int argc, char **argv)
{
    error_set_progname(argv[0]);
    if (argc < 2) {
        img_error_exit("Not enough arguments");
    }
    /* Options before the command name: -h, -V, -T (tracing is accepted and ignored). */
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "trace", required_argument, NULL, 'T' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "+:hVT:", long_options, NULL)) != -1) {
        switch (c) {
        case ':':
            img_error_exit("missing argument for option '%s'", argv[optind - 1]);
        case '?':
            img_error_exit("unrecognized option '%s'", argv[optind - 1]);
        case 'h':
            img_help();
        case 'V':
            printf(QKIT_IMG_VERSION);
            return 0;
        case 'T':
            break;
        }
    }
    if (optind >= argc) {
        img_error_exit("Not enough arguments");
    }
    const char *cmd = argv[optind];
    int sub_argc = argc - optind;
    char **sub_argv = argv + optind;
    optind = 0;
    for (const ImgCommand *ic = img_commands; ic->name; ic++) {
        if (!strcmp(cmd, ic->name)) {
            return ic->handler(sub_argc, sub_argv);
        }
    }
    img_error_exit("Command not found: %s", cmd);
}
