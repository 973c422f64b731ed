/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The -l SNAPSHOT_PARAM option of convert and measure: the block layer parses and
 * loads it; these print the errors as qemu-img does.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "img.h"

/* Called for each -l: keep its value; prints qemu-img's parse error, -1 on a bad one. */
int img_snapshot_param_parse(ImgSnapshotParam *p, const char *arg)
{
    Error *err = NULL;
    if (bdrv_snapshot_param_parse(p, arg, &err) < 0) {
        error_report_err(err);
        error_report("Failed in parsing snapshot param '%s'", arg);
        return -1;
    }
    return 0;
}

/* After the source is open: prints "Failed to load snapshot: ..." and returns -1. */
int img_snapshot_param_load(const ImgSnapshotParam *p, BlockDriverState *bs)
{
    Error *err = NULL;
    if (bdrv_snapshot_param_load(bs, p, &err) < 0) {
        error_prepend(&err, "Failed to load snapshot: ");
        error_report_err(err);
        return -1;
    }
    return 0;
}
