/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The -l SNAPSHOT_PARAM option of convert and measure: parse it as qemu-img does
 * (snapshot.id=..,snapshot.name=.. or a plain ID or name), then load that internal
 * snapshot read-only into the opened source.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "img.h"

/* Prefix that marks -l as a snapshot.id=...,snapshot.name=... list. */
#define SNAPSHOT_OPT_PREFIX "snapshot."
#define SNAPSHOT_OPT_ID "snapshot.id"
#define SNAPSHOT_OPT_NAME "snapshot.name"
/* The key QEMU's option lists take as the list's own identifier. */
#define SNAPSHOT_OPT_LIST_ID "id"

/* True if s is what QEMU calls an identifier: a letter, then letters, digits, -._ */
static bool snapshot_param_is_identifier(const char *s)
{
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z'))) {
        return false;
    }
    for (s++; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || strchr("-._", *s))) {
            return false;
        }
    }
    return true;
}

/* Called for each -l: keep its value (the last of each form wins); -1 after the error. */
int img_snapshot_param_parse(ImgSnapshotParam *p, const char *arg)
{
    if (strncmp(arg, SNAPSHOT_OPT_PREFIX, strlen(SNAPSHOT_OPT_PREFIX)) != 0) {
        p->id_or_name = arg;
        return 0;
    }
    QOpts *o = qopts_new();
    Error *err = NULL;
    int ret = qopts_parse(o, arg, &err);
    for (int i = 0; ret == 0 && i < qopts_count(o); i++) {
        const char *name = qopts_name_at(o, i);
        if (!strcmp(name, SNAPSHOT_OPT_LIST_ID)) {
            /* It names the list, as in QEMU: checked, then ignored. */
            if (!snapshot_param_is_identifier(qopts_value_at(o, i))) {
                error_setg(&err, "Parameter 'id' expects an identifier");
                error_append_hint(&err, "Identifiers consist of letters, digits, '-', '.', "
                                  "'_', starting with a letter.\n");
                ret = -EINVAL;
            }
        } else if (strcmp(name, SNAPSHOT_OPT_ID) && strcmp(name, SNAPSHOT_OPT_NAME)) {
            error_setg(&err, "Invalid parameter '%s'", name);
            ret = -EINVAL;
        }
    }
    if (ret < 0) {
        error_report_err(err);
        error_report("Failed in parsing snapshot param '%s'", arg);
    } else {
        const char *id = qopts_get(o, SNAPSHOT_OPT_ID);
        const char *name = qopts_get(o, SNAPSHOT_OPT_NAME);
        free(p->id);
        free(p->name);
        p->id = id ? strdup(id) : NULL;
        p->name = name ? strdup(name) : NULL;
        if ((id && !p->id) || (name && !p->name)) {
            abort();
        }
        p->opts = true;
    }
    qopts_free(o);
    return ret < 0 ? -1 : 0;
}

/*
 * After the source is open: load the snapshot -l named, the snapshot.* form first as
 * qemu-img does. Prints "Failed to load snapshot: ..." and returns -1 on failure.
 */
int img_snapshot_param_load(const ImgSnapshotParam *p, BlockDriverState *bs)
{
    Error *err = NULL;
    int ret = 0;
    if (p->opts) {
        ret = bdrv_snapshot_load_tmp(bs, p->id, p->name, &err);
    } else if (p->id_or_name) {
        ret = bdrv_snapshot_load_tmp_by_id_or_name(bs, p->id_or_name, &err);
    }
    if (ret < 0) {
        if (!err) {
            error_setg(&err, "%s", strerror(-ret));
        }
        error_prepend(&err, "Failed to load snapshot: ");
        error_report_err(err);
        return -1;
    }
    return 0;
}

/* Free what img_snapshot_param_parse kept. */
void img_snapshot_param_free(ImgSnapshotParam *p)
{
    free(p->id);
    free(p->name);
    p->id = NULL;
    p->name = NULL;
}
