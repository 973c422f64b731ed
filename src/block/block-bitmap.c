/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Block layer entry points for persistent dirty bitmaps: the checks every format
 * shares (and QEMU's QMP block-dirty-bitmap-* commands make, with their messages),
 * then the driver's bitmap callbacks under the node lock.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qkit/block.h"
#include "qkit/cutils.h"

/* QEMU's default granularity: the cluster size, kept within these bounds. */
#define BITMAP_DEFAULT_GRANULARITY_MIN 4096
#define BITMAP_DEFAULT_GRANULARITY_MAX 65536

/* Take the node lock around a driver callback (drivers that are not thread-safe). */
static void bitmap_lock(BlockDriverState *bs)
{
    if (!bs->drv->thread_safe) {
        pthread_mutex_lock(&bs->lock);
    }
}

/* Release what bitmap_lock took. */
static void bitmap_unlock(BlockDriverState *bs)
{
    if (!bs->drv->thread_safe) {
        pthread_mutex_unlock(&bs->lock);
    }
}

bool bdrv_supports_persistent_dirty_bitmap(BlockDriverState *bs)
{
    return bs->drv->bitmap_supported && bs->drv->bitmap_supported(bs);
}

int bdrv_dirty_bitmap_list(BlockDriverState *bs, BdrvDirtyBitmapInfo **plist)
{
    *plist = NULL;
    if (!bs->drv->bitmap_list) {
        return 0;
    }
    bitmap_lock(bs);
    int ret = bs->drv->bitmap_list(bs, plist);
    bitmap_unlock(bs);
    return ret;
}

void bdrv_dirty_bitmap_list_free(BdrvDirtyBitmapInfo *list, int count)
{
    for (int i = 0; list && i < count; i++) {
        free(list[i].name);
    }
    free(list);
}

int bdrv_dirty_bitmap_find(BlockDriverState *bs, const char *name, BdrvDirtyBitmapInfo *info)
{
    BdrvDirtyBitmapInfo *list;
    int n = bdrv_dirty_bitmap_list(bs, &list);
    int found = 0;
    for (int i = 0; i < n; i++) {
        if (!strcmp(list[i].name, name)) {
            *info = list[i];
            info->name = (char *)name;
            found = 1;
            break;
        }
    }
    bdrv_dirty_bitmap_list_free(list, n);
    return n < 0 ? n : found;
}

/* Look name up; "Dirty bitmap 'x' not found" (-ENOENT) when it is not there. */
static int bitmap_lookup(BlockDriverState *bs, const char *name, BdrvDirtyBitmapInfo *info,
                         Error **errp)
{
    int ret = bdrv_dirty_bitmap_find(bs, name, info);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not list the dirty bitmaps");
        return ret;
    }
    if (ret == 0) {
        error_setg(errp, "Dirty bitmap '%s' not found", name);
        return -ENOENT;
    }
    return 0;
}

/* Refuse a read-only bitmap (when it would be modified) and an inconsistent one. */
static int bitmap_check(const BdrvDirtyBitmapInfo *info, bool allow_ro, Error **errp)
{
    if (!allow_ro && info->readonly) {
        error_setg(errp, "Bitmap '%s' is readonly and cannot be modified", info->name);
        return -EPERM;
    }
    if (info->inconsistent) {
        error_setg(errp, "Bitmap '%s' is inconsistent and cannot be used", info->name);
        error_append_hint(errp, "Try block-dirty-bitmap-remove to delete this bitmap from "
                          "disk\n");
        return -EINVAL;
    }
    return 0;
}

/* The granularity QEMU picks when none is given. */
static uint32_t bitmap_default_granularity(BlockDriverState *bs)
{
    BlockDriverInfo bdi;
    memset(&bdi, 0, sizeof(bdi));
    if (bdrv_get_info(bs, &bdi) >= 0 && bdi.cluster_size > 0) {
        return QKIT_MIN(QKIT_MAX((uint32_t)bdi.cluster_size,
                                 (uint32_t)BITMAP_DEFAULT_GRANULARITY_MIN),
                        (uint32_t)BITMAP_DEFAULT_GRANULARITY_MAX);
    }
    return BITMAP_DEFAULT_GRANULARITY_MAX;
}

int bdrv_dirty_bitmap_add(BlockDriverState *bs, const char *node_name, const char *name,
                          uint64_t granularity, bool disabled, Error **errp)
{
    const char *node = node_name ? node_name : bs->filename;
    int ret;
    if (!name || !name[0]) {
        error_setg(errp, "Bitmap name cannot be empty");
        return -EINVAL;
    }
    if (granularity == 0) {
        granularity = bitmap_default_granularity(bs);
    } else if (granularity > UINT32_MAX || granularity < BDRV_BITMAP_MIN_GRANULARITY ||
               !QKIT_IS_POW2(granularity)) {
        error_setg(errp, "Granularity must be power of 2 and at least %d",
                   BDRV_BITMAP_MIN_GRANULARITY);
        return -EINVAL;
    }
    /* A qcow2 v2 image gets its own message from bitmap_can_store. */
    if (!bs->drv->bitmap_can_store || !bs->drv->bitmap_add) {
        error_setg_errno(errp, ENOTSUP, "Can't store persistent bitmaps to %s", node);
        return -ENOTSUP;
    }
    bitmap_lock(bs);
    BdrvDirtyBitmapInfo info;
    ret = bdrv_dirty_bitmap_find(bs, name, &info);
    if (ret != 0) {
        if (ret > 0) {
            error_setg(errp, "Bitmap already exists: %s", name);
            ret = -EEXIST;
        } else {
            error_setg_errno(errp, -ret, "Could not list the dirty bitmaps");
        }
        goto out;
    }
    ret = bs->drv->bitmap_can_store(bs, name, (uint32_t)granularity, errp);
    if (ret < 0) {
        error_prepend(errp, "Can't make bitmap '%s' persistent in '%s': ", name, node);
        goto out;
    }
    ret = bs->drv->bitmap_add(bs, name, (uint32_t)granularity, disabled, errp);
out:
    bitmap_unlock(bs);
    return ret;
}

int bdrv_dirty_bitmap_remove(BlockDriverState *bs, const char *name, Error **errp)
{
    BdrvDirtyBitmapInfo info;
    int ret = bitmap_lookup(bs, name, &info, errp);
    if (ret < 0) {
        return ret;
    }
    if (info.readonly) {
        error_setg(errp, "Bitmap '%s' is readonly and cannot be modified", name);
        return -EPERM;
    }
    bitmap_lock(bs);
    ret = bs->drv->bitmap_remove(bs, name, errp);
    bitmap_unlock(bs);
    return ret;
}

int bdrv_dirty_bitmap_clear(BlockDriverState *bs, const char *name, Error **errp)
{
    BdrvDirtyBitmapInfo info;
    int ret = bitmap_lookup(bs, name, &info, errp);
    if (ret < 0 || (ret = bitmap_check(&info, false, errp)) < 0) {
        return ret;
    }
    bitmap_lock(bs);
    ret = bs->drv->bitmap_clear(bs, name, errp);
    bitmap_unlock(bs);
    return ret;
}

int bdrv_dirty_bitmap_set_enabled(BlockDriverState *bs, const char *name, bool enabled,
                                  Error **errp)
{
    BdrvDirtyBitmapInfo info;
    int ret = bitmap_lookup(bs, name, &info, errp);
    if (ret < 0 || (ret = bitmap_check(&info, true, errp)) < 0) {
        return ret;
    }
    bitmap_lock(bs);
    ret = bs->drv->bitmap_set_enabled(bs, name, enabled, errp);
    bitmap_unlock(bs);
    return ret;
}

int bdrv_dirty_bitmap_merge(BlockDriverState *bs, const char *name, BlockDriverState *src,
                            const char *src_name, Error **errp)
{
    BdrvDirtyBitmapInfo dst_info, src_info;
    int ret = bitmap_lookup(bs, name, &dst_info, errp);
    if (ret < 0 || (ret = bitmap_lookup(src, src_name, &src_info, errp)) < 0 ||
        (ret = bitmap_check(&src_info, true, errp)) < 0) {
        return ret;
    }
    int64_t dst_len = bdrv_getlength(bs), src_len = bdrv_getlength(src);
    if (dst_len < 0 || src_len < 0) {
        error_setg(errp, "Bitmaps are incompatible and can't be merged");
        return -EINVAL;
    }
    if (dst_len != src_len) {
        error_setg(errp, "Bitmaps are of different sizes (destination size is %" PRId64
                   ", source size is %" PRId64 ") and can't be merged", dst_len, src_len);
        return -EINVAL;
    }
    if ((ret = bitmap_check(&dst_info, false, errp)) < 0) {
        return ret;
    }
    bitmap_lock(bs);
    ret = bs->drv->bitmap_merge(bs, name, src, src_name, errp);
    bitmap_unlock(bs);
    return ret;
}

int bdrv_dirty_bitmap_status(BlockDriverState *bs, const char *name, int64_t offset,
                             int64_t bytes, int64_t *pnum)
{
    *pnum = 0;
    if (!bs->drv->bitmap_status) {
        return -ENOENT;
    }
    if (offset < 0 || bytes <= 0) {
        return -EINVAL;
    }
    uint64_t n = 0;
    bitmap_lock(bs);
    int ret = bs->drv->bitmap_status(bs, name, (uint64_t)offset, (uint64_t)bytes, &n);
    bitmap_unlock(bs);
    *pnum = (int64_t)n;
    return ret;
}
