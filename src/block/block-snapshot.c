/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Block layer entry points for reading an internal snapshot in place (convert -l,
 * measure -l, qkit-nbd -l) and for the VM state area (qkit-io read/write -b): the
 * checks QEMU makes, with its messages, then the driver's callback under the node lock;
 * and the temporary overlay of the tools' -s (snapshot) mode.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qkit/block.h"
#include "qkit/cutils.h"
#include "qkit/opts.h"

/* Largest offset + length of a request, as QEMU (INT64_MAX rounded down to 1 GiB). */
#define VMSTATE_MAX_ALIGNMENT (1LL << 30)
#define VMSTATE_MAX_LENGTH (INT64_MAX - (INT64_MAX % VMSTATE_MAX_ALIGNMENT))
/* Where -s overlays go when $TMPDIR is unset, as QEMU. */
#define OVERLAY_TMPDIR "/var/tmp"

/* Take the node lock around a driver callback (drivers that are not thread-safe). */
static void snap_lock(BlockDriverState *bs)
{
    if (!bs->drv->thread_safe) {
        pthread_mutex_lock(&bs->lock);
    }
}

/* Release what snap_lock took. */
static void snap_unlock(BlockDriverState *bs)
{
    if (!bs->drv->thread_safe) {
        pthread_mutex_unlock(&bs->lock);
    }
}

int bdrv_snapshot_load_tmp(BlockDriverState *bs, const char *snapshot_id, const char *name,
                           Error **errp)
{
    if (!snapshot_id && !name) {
        error_setg(errp, "snapshot_id and name are both NULL");
        return -EINVAL;
    }
    /* QEMU names the device here; the tools' nodes have none, hence ''. */
    if (!bs->read_only) {
        error_setg(errp, "Device '' is not readonly");
        return -EINVAL;
    }
    if (!bs->drv->snapshot_load_tmp) {
        error_setg(errp, "Block format '%s' used by device '' does not support temporarily "
                   "loading internal snapshots", bs->drv->format_name);
        return -ENOTSUP;
    }
    snap_lock(bs);
    int ret = bs->drv->snapshot_load_tmp(bs, snapshot_id, name, errp);
    snap_unlock(bs);
    return ret;
}

int bdrv_snapshot_load_tmp_by_id_or_name(BlockDriverState *bs, const char *id_or_name,
                                         Error **errp)
{
    Error *err = NULL;
    int ret = bdrv_snapshot_load_tmp(bs, id_or_name, NULL, &err);
    if (ret == -ENOENT || ret == -EINVAL) {
        error_free(err);
        err = NULL;
        ret = bdrv_snapshot_load_tmp(bs, NULL, id_or_name, &err);
    }
    if (err) {
        error_propagate(errp, err);
    }
    return ret;
}

/* The bounds every request has, VM state included; -EIO as QEMU for the others. */
static int vmstate_check_request(int64_t pos, int64_t bytes)
{
    if (pos < 0 || bytes < 0 || pos > VMSTATE_MAX_LENGTH - bytes) {
        return -EIO;
    }
    return 0;
}

/* Find the node that serves the VM state: the first one down the file chain with it. */
static BlockDriverState *vmstate_node(BlockDriverState *bs, bool write)
{
    while (bs && !(write ? bs->drv->save_vmstate != NULL : bs->drv->load_vmstate != NULL)) {
        bs = bs->file;
    }
    return bs;
}

int bdrv_save_vmstate(BlockDriverState *bs, const void *buf, int64_t pos, int64_t bytes)
{
    int ret = vmstate_check_request(pos, bytes);
    if (ret < 0) {
        return ret;
    }
    if (bs->read_only) {
        return -EACCES;
    }
    BlockDriverState *node = vmstate_node(bs, true);
    if (!node) {
        return -ENOTSUP;
    }
    if (bytes == 0) {
        return 0;
    }
    snap_lock(node);
    ret = node->drv->save_vmstate(node, buf, (uint64_t)pos, (uint64_t)bytes);
    snap_unlock(node);
    /* As any other write: durable on return when the node is write-through. */
    if (ret == 0 && (bs->open_flags & BDRV_O_WRITETHROUGH)) {
        ret = bdrv_flush(bs);
    }
    return ret;
}

int bdrv_load_vmstate(BlockDriverState *bs, void *buf, int64_t pos, int64_t bytes)
{
    int ret = vmstate_check_request(pos, bytes);
    if (ret < 0) {
        return ret;
    }
    BlockDriverState *node = vmstate_node(bs, false);
    if (!node) {
        return -ENOTSUP;
    }
    if (bytes == 0) {
        return 0;
    }
    snap_lock(node);
    ret = node->drv->load_vmstate(node, buf, (uint64_t)pos, (uint64_t)bytes);
    snap_unlock(node);
    return ret;
}

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

int bdrv_snapshot_param_parse(BdrvSnapshotParam *p, const char *arg, Error **errp)
{
    if (strncmp(arg, SNAPSHOT_OPT_PREFIX, strlen(SNAPSHOT_OPT_PREFIX)) != 0) {
        free(p->id_or_name);
        p->id_or_name = strdup(arg);
        if (!p->id_or_name) {
            abort();
        }
        return 0;
    }
    QOpts *o = qopts_new();
    int ret = qopts_parse(o, arg, errp);
    for (int i = 0; ret == 0 && i < qopts_count(o); i++) {
        const char *name = qopts_name_at(o, i);
        if (!strcmp(name, SNAPSHOT_OPT_LIST_ID)) {
            /* It names the list, as in QEMU: checked, then ignored. */
            if (!snapshot_param_is_identifier(qopts_value_at(o, i))) {
                error_setg(errp, "Parameter 'id' expects an identifier");
                error_append_hint(errp, "Identifiers consist of letters, digits, '-', '.', "
                                  "'_', starting with a letter.\n");
                ret = -EINVAL;
            }
        } else if (strcmp(name, SNAPSHOT_OPT_ID) && strcmp(name, SNAPSHOT_OPT_NAME)) {
            error_setg(errp, "Invalid parameter '%s'", name);
            ret = -EINVAL;
        }
    }
    if (ret == 0) {
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
    return ret < 0 ? -EINVAL : 0;
}

int bdrv_snapshot_param_load(BlockDriverState *bs, const BdrvSnapshotParam *p, Error **errp)
{
    int ret = 0;
    if (p->opts) {
        ret = bdrv_snapshot_load_tmp(bs, p->id, p->name, errp);
    } else if (p->id_or_name) {
        ret = bdrv_snapshot_load_tmp_by_id_or_name(bs, p->id_or_name, errp);
    }
    if (ret < 0 && errp && !*errp) {
        error_setg(errp, "%s", strerror(-ret));
    }
    return ret;
}

void bdrv_snapshot_param_free(BdrvSnapshotParam *p)
{
    free(p->id);
    free(p->name);
    free(p->id_or_name);
    p->id = p->name = p->id_or_name = NULL;
}

/* The backing file name an overlay records: absolute, or json: for option strings. */
static char *overlay_backing_name(const char *name, json_t *opts)
{
    char *backing;
    if (opts) {
        json_t *all = json_deep_copy(opts);
        if (name && !json_object_get(all, "file")) {
            json_object_set_new(all, "file", json_pack("{s:s}", "filename", name));
        }
        char *dump = json_dumps(all, JSON_COMPACT);
        json_decref(all);
        if (asprintf(&backing, "json:%s", dump) < 0) {
            abort();
        }
        free(dump);
    } else {
        char *abs = realpath(name, NULL);
        backing = strdup(abs ? abs : name);
        free(abs);
    }
    return backing;
}

char *bdrv_create_temp_overlay(const char *name, json_t *opts, const char *fmt, int flags,
                               Error **errp)
{
    char *path = NULL;
    char *backing = NULL;
    QOpts *copts = NULL;
    json_t *probe_opts = opts ? json_deep_copy(opts) : NULL;
    int pflags = (flags & ~(BDRV_O_RDWR | BDRV_O_WRITETHROUGH)) | BDRV_O_FORCE_SHARE;
    BlockDriverState *bs = bdrv_open(name, fmt, probe_opts, pflags, errp);
    if (!bs) {
        return NULL;
    }
    const BlockDriver *qcow2 = bdrv_find_format("qcow2");
    int64_t len = bdrv_getlength(bs);
    if (!qcow2 || len < 0) {
        error_setg(errp, "Could not create temporary overlay: %s",
                   qcow2 ? strerror((int)-len) : "qcow2 is not available");
        goto out;
    }
    backing = overlay_backing_name(name, opts);
    const char *dir = getenv("TMPDIR");
    if (asprintf(&path, "%s/vl.XXXXXX", dir && *dir ? dir : OVERLAY_TMPDIR) < 0) {
        abort();
    }
    int fd = mkstemp(path);
    if (fd < 0) {
        error_setg_errno(errp, errno, "Could not get temporary filename");
        free(path);
        path = NULL;
        goto out;
    }
    close(fd);
    copts = qopts_new();
    char size[32];
    snprintf(size, sizeof(size), "%" PRId64, len);
    qopts_set(copts, "size", size);
    qopts_set(copts, "backing_file", backing);
    qopts_set(copts, "backing_fmt", bdrv_get_format_name(bs));
    if (bdrv_create(qcow2, path, copts, errp) < 0) {
        unlink(path);
        free(path);
        path = NULL;
    }
out:
    qopts_free(copts);
    free(backing);
    bdrv_unref(bs);
    return path;
}
