/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qkit-img snapshot: list, create, apply and delete internal snapshots. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "img.h"

enum {
    OPT_OBJECT = 256,
    OPT_IMAGE_OPTS,
};

typedef enum {
    SNAPSHOT_NONE,
    SNAPSHOT_LIST,
    SNAPSHOT_APPLY,
    SNAPSHOT_CREATE,
    SNAPSHOT_DELETE,
} SnapshotAction;

#define NSEC_PER_USEC 1000

/* The snapshots of bs, or a count <= 0 (none, or the format has no snapshots). */
static int snapshot_list(BlockDriverState *bs, QkitSnapshotInfo **psn)
{
    *psn = NULL;
    if (!bs->drv->snapshot_list) {
        return -ENOTSUP;
    }
    return bs->drv->snapshot_list(bs, psn);
}

/* snapshot -l: the table, or nothing when there are no snapshots. */
static void snapshot_dump(BlockDriverState *bs)
{
    QkitSnapshotInfo *sns;
    int n = snapshot_list(bs, &sns);
    if (n > 0) {
        img_dump_snapshot_list(sns, n);
    }
    free(sns);
}

/* snapshot -c: a new snapshot of the current state, stamped with the time. */
static int snapshot_create(BlockDriverState *bs, const char *name)
{
    QkitSnapshotInfo sn;
    struct timeval tv;
    memset(&sn, 0, sizeof(sn));
    snprintf(sn.name, sizeof(sn.name), "%s", name);
    gettimeofday(&tv, NULL);
    sn.date_sec = (uint32_t)tv.tv_sec;
    sn.date_nsec = (uint32_t)(tv.tv_usec * NSEC_PER_USEC);
    Error *err = NULL;
    int ret = bs->drv->snapshot_create ? bs->drv->snapshot_create(bs, &sn, &err) : -ENOTSUP;
    if (ret == 0) {
        ret = bdrv_flush(bs);
    }
    /* qemu-img reports the errno here, not the driver's message. */
    error_free(err);
    if (ret < 0) {
        error_report("Could not create snapshot '%s': %d (%s)", name, ret, strerror(-ret));
        return 1;
    }
    return 0;
}

/* snapshot -a: revert the image to a snapshot. */
static int snapshot_apply(BlockDriverState *bs, const char *name)
{
    Error *err = NULL;
    BdrvDirtyBitmapInfo *bitmaps;
    int nb_bitmaps = bdrv_dirty_bitmap_list(bs, &bitmaps);
    int ret;
    bdrv_dirty_bitmap_list_free(bitmaps, nb_bitmaps);
    if (nb_bitmaps > 0) {
        /* Bitmaps would not describe the reverted disk: QEMU refuses, so do we. */
        error_setg(&err, "Device has active dirty bitmaps");
        ret = -EBUSY;
    } else if (!bs->drv->snapshot_goto) {
        error_setg(&err, "Block driver does not support snapshots");
        ret = -ENOTSUP;
    } else {
        ret = bs->drv->snapshot_goto(bs, name, &err);
        if (ret == 0) {
            ret = bdrv_flush(bs);
        }
        if (ret < 0 && !err) {
            error_setg_errno(&err, -ret, "Failed to load snapshot");
        }
    }
    if (ret < 0) {
        error_prepend(&err, "Could not apply snapshot '%s': ", name);
        error_report_err(err);
        return 1;
    }
    return 0;
}

/* Delete the first snapshot whose name matches (names only, as qemu-img does). */
static int snapshot_delete(BlockDriverState *bs, const char *name)
{
    QkitSnapshotInfo *sns;
    int n = snapshot_list(bs, &sns);
    int found = -1;
    for (int i = 0; i < n && found < 0; i++) {
        if (!strcmp(sns[i].name, name)) {
            found = i;
        }
    }
    int rc = 0;
    if (found < 0) {
        error_report("Could not delete snapshot '%s': snapshot not found", name);
        rc = 1;
        goto out;
    }
    Error *err = NULL;
    int ret = bs->drv->snapshot_delete
              ? bs->drv->snapshot_delete(bs, sns[found].id_str, sns[found].name, &err)
              : -ENOTSUP;
    if (ret == 0) {
        ret = bdrv_flush(bs);
    }
    if (ret < 0) {
        if (!err) {
            error_setg_errno(&err, -ret, "Failed to delete snapshot");
        }
        error_prepend(&err, "Could not delete snapshot '%s': ", name);
        error_report_err(err);
        rc = 1;
    }
out:
    free(sns);
    return rc;
}

/* Entry point of `qkit-img snapshot`. */
int img_snapshot(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    SnapshotAction action = SNAPSHOT_NONE;
    const char *snapshot_name = NULL;
    bool quiet = false, image_opts = false, force_share = false;
    int flags = BDRV_O_RDWR;
    int c;

    while ((c = getopt_long(argc, argv, ":la:c:d:hqU", long_options, NULL)) != -1) {
        switch (c) {
        case ':':
        case '?':
            img_getopt_error(c, argv);
        case 'h':
            img_help();
        case 'l':
        case 'a':
        case 'c':
        case 'd':
            if (action != SNAPSHOT_NONE) {
                img_error_exit("Cannot mix '-l', '-a', '-c', '-d'");
            }
            if (c == 'l') {
                action = SNAPSHOT_LIST;
                flags &= ~BDRV_O_RDWR;
            } else {
                action = c == 'a' ? SNAPSHOT_APPLY
                                  : (c == 'c' ? SNAPSHOT_CREATE : SNAPSHOT_DELETE);
                snapshot_name = optarg;
            }
            break;
        case 'q':
            quiet = true;
            break;
        case 'U':
            force_share = true;
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
    BlockDriverState *bs = img_open(image_opts, filename, NULL, flags, false, quiet,
                                    force_share);
    if (!bs) {
        return 1;
    }
    int ret = 0;
    switch (action) {
    case SNAPSHOT_LIST:
        snapshot_dump(bs);
        break;
    case SNAPSHOT_CREATE:
        ret = snapshot_create(bs, snapshot_name);
        break;
    case SNAPSHOT_APPLY:
        ret = snapshot_apply(bs, snapshot_name);
        break;
    case SNAPSHOT_DELETE:
        ret = snapshot_delete(bs, snapshot_name);
        break;
    case SNAPSHOT_NONE:
        break;
    }
    bdrv_unref(bs);
    return ret;
}
