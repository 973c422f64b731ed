/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qkit-img info: describe an image (and with --backing-chain, each image below it). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "img.h"
#include "qkit/cutils.h"
#include "qkit/qinfo.h"

enum {
    OPT_OUTPUT = 256,
    OPT_BACKING_CHAIN,
    OPT_OBJECT,
    OPT_IMAGE_OPTS,
};

/* Most images a --backing-chain walk visits before it suspects a loop. */
#define INFO_MAX_CHAIN 1024

/* The "snapshots" array of ImageInfo; NULL when the image has none or cannot have any. */
static json_t *info_snapshots(BlockDriverState *bs, Error **errp)
{
    if (!bs->drv->snapshot_list) {
        return NULL;
    }
    QkitSnapshotInfo *sns = NULL;
    int n = bs->drv->snapshot_list(bs, &sns);
    if (n == -ENOTSUP || n == -ENOMEDIUM) {
        return NULL;
    }
    if (n < 0) {
        error_setg_errno(errp, -n, "Failed to list snapshots");
        return NULL;
    }
    json_t *arr = NULL;
    if (n > 0) {
        arr = json_array();
        for (int i = 0; i < n; i++) {
            const QkitSnapshotInfo *sn = &sns[i];
            json_t *o = json_object();
            json_object_set_new(o, "id", json_string(sn->id_str));
            json_object_set_new(o, "name", json_string(sn->name));
            json_object_set_new(o, "vm-state-size", json_integer((json_int_t)sn->vm_state_size));
            json_object_set_new(o, "date-sec", json_integer(sn->date_sec));
            json_object_set_new(o, "date-nsec", json_integer(sn->date_nsec));
            json_object_set_new(o, "vm-clock-sec",
                                json_integer((json_int_t)(sn->vm_clock_nsec / 1000000000ULL)));
            json_object_set_new(o, "vm-clock-nsec",
                                json_integer((json_int_t)(sn->vm_clock_nsec % 1000000000ULL)));
            if (sn->icount != UINT64_MAX) {
                json_object_set_new(o, "icount", json_integer((json_int_t)sn->icount));
            }
            json_array_append_new(arr, o);
        }
    }
    free(sns);
    return arr;
}

/* Build the ImageInfo object of one opened image. */
json_t *img_collect_image_info(BlockDriverState *bs, Error **errp)
{
    int64_t size = bdrv_getlength(bs);
    if (size < 0) {
        error_setg_errno(errp, (int)-size, "Can't get image size '%s'", bs->filename);
        return NULL;
    }
    json_t *info = json_object();
    json_object_set_new(info, "filename", json_string(bs->filename));
    json_object_set_new(info, "format", json_string(bdrv_get_format_name(bs)));

    BlockDriverInfo bdi;
    bool have_bdi = bdrv_get_info(bs, &bdi) >= 0;
    if (have_bdi) {
        json_object_set_new(info, "dirty-flag", json_boolean(bdi.is_dirty));
    }
    int64_t actual = bdrv_get_allocated_file_size(bs);
    if (actual >= 0) {
        json_object_set_new(info, "actual-size", json_integer(actual));
    }
    json_object_set_new(info, "virtual-size", json_integer(size));
    if (have_bdi && bdi.cluster_size) {
        json_object_set_new(info, "cluster-size", json_integer(bdi.cluster_size));
    }
    if (bs->encrypted) {
        json_object_set_new(info, "encrypted", json_true());
    }
    if (bs->backing_file[0]) {
        json_object_set_new(info, "backing-filename", json_string(bs->backing_file));
        const char *full = bs->full_backing_filename[0] ? bs->full_backing_filename : NULL;
        char *combined = NULL;
        if (!full) {
            combined = path_combine(bs->filename, bs->backing_file);
            full = combined;
        }
        json_object_set_new(info, "full-backing-filename", json_string(full));
        free(combined);
        if (bs->backing_format[0]) {
            json_object_set_new(info, "backing-filename-format",
                                json_string(bs->backing_format));
        }
    }
    Error *err = NULL;
    json_t *sns = info_snapshots(bs, &err);
    if (err) {
        error_propagate(errp, err);
        json_decref(info);
        return NULL;
    }
    if (sns) {
        json_object_set_new(info, "snapshots", sns);
    }
    if (bs->drv->get_specific_info) {
        json_t *spec = bs->drv->get_specific_info(bs, &err);
        if (err) {
            error_propagate(errp, err);
            json_decref(info);
            return NULL;
        }
        if (spec) {
            json_object_set_new(info, "format-specific", spec);
        }
    }
    return info;
}

/* One image in qemu-img's human layout. */
static void info_dump_human(json_t *info)
{
    int64_t vsize = json_integer_value(json_object_get(info, "virtual-size"));
    json_t *actual = json_object_get(info, "actual-size");
    char *vs = qkit_size_to_str((uint64_t)vsize);
    char *ds = actual ? qkit_size_to_str((uint64_t)json_integer_value(actual))
                      : strdup("unavailable");
    printf("image: %s\n"
           "file format: %s\n"
           "virtual size: %s (%" PRId64 " bytes)\n"
           "disk size: %s\n",
           json_string_value(json_object_get(info, "filename")),
           json_string_value(json_object_get(info, "format")), vs, vsize, ds);
    free(vs);
    free(ds);
    if (json_is_true(json_object_get(info, "encrypted"))) {
        printf("encrypted: yes\n");
    }
    json_t *cs = json_object_get(info, "cluster-size");
    if (cs) {
        printf("cluster_size: %" JSON_INTEGER_FORMAT "\n", json_integer_value(cs));
    }
    if (json_is_true(json_object_get(info, "dirty-flag"))) {
        printf("cleanly shut down: no\n");
    }
    const char *bf = json_string_value(json_object_get(info, "backing-filename"));
    if (bf) {
        const char *full = json_string_value(json_object_get(info, "full-backing-filename"));
        printf("backing file: %s", bf);
        if (!full) {
            printf(" (cannot determine actual path)");
        } else if (strcmp(bf, full)) {
            printf(" (actual path: %s)", full);
        }
        printf("\n");
        const char *bfmt = json_string_value(json_object_get(info, "backing-filename-format"));
        if (bfmt) {
            printf("backing file format: %s\n", bfmt);
        }
    }
    json_t *sns = json_object_get(info, "snapshots");
    if (sns) {
        size_t n = json_array_size(sns);
        QkitSnapshotInfo *tab = calloc(n ? n : 1, sizeof(*tab));
        if (!tab) {
            abort();
        }
        for (size_t i = 0; i < n; i++) {
            json_t *o = json_array_get(sns, i);
            json_t *ic = json_object_get(o, "icount");
            snprintf(tab[i].id_str, sizeof(tab[i].id_str), "%s",
                     json_string_value(json_object_get(o, "id")));
            snprintf(tab[i].name, sizeof(tab[i].name), "%s",
                     json_string_value(json_object_get(o, "name")));
            tab[i].vm_state_size = json_integer_value(json_object_get(o, "vm-state-size"));
            tab[i].date_sec = json_integer_value(json_object_get(o, "date-sec"));
            tab[i].date_nsec = json_integer_value(json_object_get(o, "date-nsec"));
            tab[i].vm_clock_nsec =
                json_integer_value(json_object_get(o, "vm-clock-sec")) * 1000000000ULL +
                json_integer_value(json_object_get(o, "vm-clock-nsec"));
            tab[i].icount = ic ? (uint64_t)json_integer_value(ic) : UINT64_MAX;
        }
        img_dump_snapshot_list(tab, (int)n);
        free(tab);
    }
    json_t *spec = json_object_get(info, "format-specific");
    if (spec) {
        printf("Format specific information:\n");
        json_t *data = json_object_get(spec, "data");
        if (data) {
            qkit_dump_human_tree(stdout, data, 1);
        }
    }
}

/* Open each image of the chain in turn (without its backing) and collect its info. */
static json_t *info_collect_list(bool image_opts, const char *filename, const char *fmt,
                                 bool chain, bool force_share)
{
    json_t *list = json_array();
    char *names[INFO_MAX_CHAIN];
    int nnames = 0;
    char *cur = strdup(filename);
    char *cur_fmt = fmt ? strdup(fmt) : NULL;
    bool ok = false;

    while (cur) {
        for (int i = 0; i < nnames; i++) {
            if (!strcmp(names[i], cur)) {
                error_report("Backing file '%s' creates an infinite loop.", cur);
                free(cur);
                goto out;
            }
        }
        if (nnames == INFO_MAX_CHAIN) {
            error_report("Backing file '%s' creates an infinite loop.", cur);
            free(cur);
            goto out;
        }
        names[nnames++] = cur;
        BlockDriverState *bs = img_open(image_opts, cur, cur_fmt,
                                        BDRV_O_NO_BACKING | BDRV_O_NO_IO, false, false,
                                        force_share);
        if (!bs) {
            goto out;
        }
        Error *err = NULL;
        json_t *info = img_collect_image_info(bs, &err);
        bdrv_unref(bs);
        if (!info) {
            error_report_err(err);
            goto out;
        }
        json_array_append_new(list, info);
        image_opts = false;
        free(cur_fmt);
        cur_fmt = NULL;
        cur = NULL;
        if (chain) {
            const char *full = json_string_value(json_object_get(info, "full-backing-filename"));
            const char *bfmt = json_string_value(json_object_get(info,
                                                                 "backing-filename-format"));
            if (full) {
                cur = strdup(full);
            } else if (json_object_get(info, "backing-filename")) {
                error_report("Could not determine absolute backing filename, but backing "
                             "filename '%s' present",
                             json_string_value(json_object_get(info, "backing-filename")));
                goto out;
            }
            if (bfmt) {
                cur_fmt = strdup(bfmt);
            }
        }
    }
    ok = true;
out:
    for (int i = 0; i < nnames; i++) {
        free(names[i]);
    }
    free(cur_fmt);
    if (!ok) {
        json_decref(list);
        return NULL;
    }
    return list;
}

/* Entry point of `qkit-img info`. */
int img_info(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "backing-chain", no_argument, NULL, OPT_BACKING_CHAIN },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *output = NULL;
    bool chain = false, image_opts = false, force_share = false;
    int c;

    while ((c = getopt_long(argc, argv, ":f:hU", long_options, NULL)) != -1) {
        switch (c) {
        case ':':
        case '?':
            img_getopt_error(c, argv);
        case 'h':
            img_help();
        case 'f':
            fmt = optarg;
            break;
        case 'U':
            force_share = true;
            break;
        case OPT_OUTPUT:
            output = optarg;
            break;
        case OPT_BACKING_CHAIN:
            chain = true;
            break;
        case OPT_OBJECT:
            img_object_add(optarg);
            break;
        case OPT_IMAGE_OPTS:
            image_opts = true;
            break;
        }
    }
    const char *filename = img_one_filename(argc, argv);
    int ofmt = img_parse_output_format(output);
    if (ofmt < 0) {
        return 1;
    }
    json_t *list = info_collect_list(image_opts, filename, fmt, chain, force_share);
    if (!list) {
        return 1;
    }
    if (ofmt == IMG_OUTPUT_JSON) {
        img_print_json(chain ? list : json_array_get(list, 0));
    } else {
        size_t i;
        json_t *info;
        json_array_foreach(list, i, info) {
            if (i) {
                printf("\n");
            }
            info_dump_human(info);
        }
    }
    json_decref(list);
    return 0;
}
