/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Block layer entry points for reading an internal snapshot in place (convert -l,
 * measure -l, qkit-nbd -l) and for the VM state area (qkit-io read/write -b): the
 * checks QEMU makes, with its messages, then the driver's callback under the node lock.
 */
#include <errno.h>
#include <stdint.h>

#include "qkit/block.h"
#include "qkit/cutils.h"

/* Largest offset + length of a request, as QEMU (INT64_MAX rounded down to 1 GiB). */
#define VMSTATE_MAX_ALIGNMENT (1LL << 30)
#define VMSTATE_MAX_LENGTH (INT64_MAX - (INT64_MAX % VMSTATE_MAX_ALIGNMENT))

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
