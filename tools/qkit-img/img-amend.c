/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qkit-img amend: change format options of an existing image in place. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "img.h"

enum {
    OPT_OBJECT = 256,
    OPT_IMAGE_OPTS,
    OPT_FORCE,
};

/*
 * The options each format can change after creation (a subset of its create
 * options); the others are refused with a hint that they apply at creation only.
 */
typedef struct AmendOptList {
    const char *format;
    const char *const *names;
    const QOptDesc *amend_only;  /* options that exist for amend but not for create */
} AmendOptList;

static const char *const qcow2_amend_names[] = {
    "backing_file", "backing_fmt", "compat", "data_file", "data_file_raw",
    "encrypt.iter-time", "encrypt.keyslot", "encrypt.new-secret", "encrypt.old-secret",
    "encrypt.state", "lazy_refcounts", "refcount_bits", "size", NULL,
};

/* LUKS keyslot management: accepted by name so that -o help lists what qemu-img lists. */
static const QOptDesc qcow2_amend_only[] = {
    { "encrypt.keyslot", QOPT_NUMBER, "Select a single keyslot to modify explicitly", NULL },
    { "encrypt.new-secret", QOPT_STRING,
      "New secret to set in the matching keyslots. Empty string to erase", NULL },
    { "encrypt.old-secret", QOPT_STRING, "Select all keyslots that match this password",
      NULL },
    { "encrypt.state", QOPT_STRING,
      "Select new state of affected keyslots (active/inactive)", NULL },
    { NULL },
};

static const AmendOptList amend_opt_lists[] = {
    { "qcow2", qcow2_amend_names, qcow2_amend_only },
    { NULL, NULL, NULL },
};

/* A copy of drv's create options restricted to those amend accepts; caller frees. */
static QOptDesc *amend_opts_of(const BlockDriver *drv)
{
    const char *const *names = NULL;
    const QOptDesc *extra = NULL;
    for (const AmendOptList *l = amend_opt_lists; l->format; l++) {
        if (!strcmp(l->format, drv->format_name)) {
            names = l->names;
            extra = l->amend_only;
        }
    }
    int n = 0;
    for (const QOptDesc *d = drv->create_opts; d && d->name; d++) {
        n++;
    }
    for (const QOptDesc *d = extra; d && d->name; d++) {
        n++;
    }
    QOptDesc *out = calloc(n + 1, sizeof(*out));
    if (!out) {
        abort();
    }
    int k = 0;
    for (const QOptDesc *d = drv->create_opts; d && d->name; d++) {
        bool ok = !names;
        for (int i = 0; names && names[i] && !ok; i++) {
            ok = !strcmp(names[i], d->name);
        }
        if (ok) {
            out[k++] = *d;
        }
    }
    for (const QOptDesc *d = extra; d && d->name; d++) {
        bool dup = false;
        for (int i = 0; i < k && !dup; i++) {
            dup = !strcmp(out[i].name, d->name);
        }
        if (!dup) {
            out[k++] = *d;
        }
    }
    return out;
}

/* amend -o help: the options the format can change. */
static int amend_print_help(const char *format)
{
    const BlockDriver *drv = bdrv_find_format(format);
    if (!drv) {
        error_report("Unknown file format '%s'", format);
        return 1;
    }
    if (!drv->amend) {
        error_report("Format driver '%s' does not support option amendment", format);
        return 1;
    }
    QOptDesc *amend_opts = amend_opts_of(drv);
    const QOptDesc *tables[2] = { amend_opts, NULL };
    printf("Amend options for '%s':\n", format);
    img_print_opts_help(tables, NULL);
    free(amend_opts);
    return 0;
}

/* Entry point of `qkit-img amend`. */
int img_amend(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "force", no_argument, NULL, OPT_FORCE },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *cache = "writeback";
    char *options = NULL;
    bool quiet = false, progress = false, image_opts = false, force = false;
    BlockDriverState *bs = NULL;
    QOptDesc *amend_opts = NULL;
    QOpts *opts = NULL;
    int ret = -1;
    int c;

    while ((c = getopt_long(argc, argv, ":ho:f:t:pq", long_options, NULL)) != -1) {
        switch (c) {
        case ':':
        case '?':
            img_getopt_error(c, argv);
        case 'h':
            img_help();
        case 'o':
            if (img_accumulate_options(&options, optarg) < 0) {
                goto out_noprogress;
            }
            break;
        case 'f':
            fmt = optarg;
            break;
        case 't':
            cache = optarg;
            break;
        case 'p':
            progress = true;
            break;
        case 'q':
            quiet = true;
            break;
        case OPT_OBJECT:
            img_object_add(optarg);
            break;
        case OPT_IMAGE_OPTS:
            image_opts = true;
            break;
        case OPT_FORCE:
            force = true;
            break;
        }
    }
    if (!options) {
        img_error_exit("Must specify options (-o)");
    }
    if (quiet) {
        progress = false;
    }
    img_progress_init(progress, 1.0f);

    const char *filename = optind == argc - 1 ? argv[argc - 1] : NULL;
    if (fmt && img_has_help_option(options)) {
        /* A format was named: help needs no image. */
        ret = amend_print_help(fmt);
        goto out;
    }
    if (optind != argc - 1) {
        error_report("Expecting one image file name");
        goto out;
    }
    int flags = BDRV_O_RDWR;
    if (img_parse_cache_mode("cache", cache, &flags) < 0) {
        goto out;
    }
    bs = img_open(image_opts, filename, fmt, flags, false, quiet, false);
    if (!bs) {
        goto out;
    }
    fmt = bdrv_get_format_name(bs);
    if (img_has_help_option(options)) {
        ret = amend_print_help(fmt);
        goto out;
    }
    if (!bs->drv->amend) {
        error_report("Format driver '%s' does not support option amendment", fmt);
        goto out;
    }
    amend_opts = amend_opts_of(bs->drv);
    const QOptDesc *tables[2] = { amend_opts, NULL };
    Error *err = NULL;
    opts = qopts_new();
    if (img_parse_qopts(opts, options, tables, &err) < 0) {
        /* Tell options that exist only for create apart from unknown ones. */
        const QOptDesc *create_tables[2] = { bs->drv->create_opts, NULL };
        QOpts *probe = qopts_new();
        if (img_parse_qopts(probe, options, create_tables, NULL) == 0) {
            error_append_hint(&err, "This option is only supported for image creation\n");
        }
        qopts_free(probe);
        error_report_err(err);
        goto out;
    }
    img_progress_print(0, 100);
    ret = bs->drv->amend(bs, opts, force, &err);
    if (ret == 0) {
        ret = bdrv_flush(bs);
        if (ret < 0) {
            error_setg_errno(&err, -ret, "Could not flush the image");
        }
    }
    /* Completion is drawn twice, as qemu-img does (status callback, then the end). */
    img_progress_print(100, 100);
    img_progress_print(100, 100);
    if (ret < 0) {
        if (!err) {
            error_setg_errno(&err, -ret, "Could not amend the image");
        }
        error_report_err(err);
    }
out:
    img_progress_end();
out_noprogress:
    qopts_free(opts);
    free(amend_opts);
    bdrv_unref(bs);
    free(options);
    return ret ? 1 : 0;
}
