/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2 persistent bitmaps through the block layer API: add, list, the dirty status a
 * write leaves (what the NBD qemu:dirty-bitmap context reads), merge, clear, enable,
 * remove, and the bitmaps surviving a close and reopen.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "qkit/block.h"
#include "qkit/cutils.h"

#define DISK_SIZE (64 * QKIT_MiB)

static char dir[] = "/tmp/qkit-qcow2-bitmap-XXXXXX";
static char path[PATH_MAX];

/* A fresh image, opened read-write (or read-only). */
static BlockDriverState *open_image(bool rw)
{
    Error *err = NULL;
    BlockDriverState *bs = bdrv_open(path, "qcow2", NULL, rw ? BDRV_O_RDWR : 0, &err);
    if (!bs) {
        fprintf(stderr, "open: %s\n", error_get_pretty(err));
    }
    assert_non_null(bs);
    return bs;
}

static int setup(void **state)
{
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/bm.qcow2", dir);
    QOpts *o = qopts_new();
    Error *err = NULL;
    qopts_set(o, "size", "67108864");
    assert_int_equal(bdrv_create(&bdrv_qcow2, path, o, &err), 0);
    qopts_free(o);
    return 0;
}

static int teardown(void **state)
{
    unlink(path);
    rmdir(dir);
    return 0;
}

/* Dirty status of one byte; the run length is returned in *pnum. */
static int status_at(BlockDriverState *bs, const char *name, int64_t off, int64_t *pnum)
{
    return bdrv_dirty_bitmap_status(bs, name, off, DISK_SIZE - off, pnum);
}

static void test_add_write_status(void **state)
{
    BlockDriverState *bs = open_image(true);
    Error *err = NULL;
    uint8_t buf[4096];
    int64_t pnum;
    memset(buf, 0x5a, sizeof(buf));

    assert_true(bdrv_supports_persistent_dirty_bitmap(bs));
    assert_int_equal(bdrv_dirty_bitmap_add(bs, "node", "a", 0, false, &err), 0);
    assert_int_equal(bdrv_dirty_bitmap_add(bs, "node", "b", 512, true, &err), 0);
    assert_int_equal(bdrv_dirty_bitmap_add(bs, "node", "a", 0, false, &err), -EEXIST);
    assert_string_equal(error_get_pretty(err), "Bitmap already exists: a");
    error_free(err);
    err = NULL;

    assert_int_equal(bdrv_pwrite(bs, 1000000, sizeof(buf), buf, 0), 0);
    /* "a" (64 KiB granules) records the write; "b" is disabled. */
    assert_int_equal(status_at(bs, "a", 0, &pnum), 0);
    assert_int_equal(pnum, 983040);
    assert_int_equal(status_at(bs, "a", 983040, &pnum), 1);
    assert_int_equal(pnum, 65536);
    assert_int_equal(status_at(bs, "b", 0, &pnum), 0);
    assert_int_equal(pnum, DISK_SIZE);
    assert_int_equal(status_at(bs, "nosuch", 0, &pnum), -ENOENT);

    BdrvDirtyBitmapInfo *list;
    int n = bdrv_dirty_bitmap_list(bs, &list);
    assert_int_equal(n, 2);
    /* Newest first, as QEMU lists them. */
    assert_string_equal(list[0].name, "b");
    assert_false(list[0].enabled);
    assert_int_equal(list[0].granularity, 512);
    assert_string_equal(list[1].name, "a");
    assert_int_equal(list[1].count, 65536);
    bdrv_dirty_bitmap_list_free(list, n);

    /* Merge into the fine bitmap: only the granules of the coarse bits. */
    assert_int_equal(bdrv_dirty_bitmap_merge(bs, "b", bs, "a", &err), 0);
    assert_int_equal(status_at(bs, "b", 983040, &pnum), 1);
    assert_int_equal(pnum, 65536);
    assert_int_equal(bdrv_dirty_bitmap_set_enabled(bs, "b", true, &err), 0);
    assert_int_equal(bdrv_pwrite_zeroes(bs, 10 * QKIT_MiB + 512, 512, 0), 0);
    assert_int_equal(status_at(bs, "b", 10 * QKIT_MiB, &pnum), 0);
    assert_int_equal(pnum, 512);
    assert_int_equal(status_at(bs, "b", 10 * QKIT_MiB + 512, &pnum), 1);
    assert_int_equal(pnum, 512);
    bdrv_unref(bs);

    /* Stored at close: read back read-only, with the same bits. */
    bs = open_image(false);
    assert_int_equal(status_at(bs, "a", 983040, &pnum), 1);
    assert_int_equal(pnum, 65536);
    assert_int_equal(status_at(bs, "b", 10 * QKIT_MiB + 512, &pnum), 1);
    assert_int_equal(bdrv_dirty_bitmap_clear(bs, "a", &err), -EPERM);
    assert_string_equal(error_get_pretty(err), "Bitmap 'a' is readonly and cannot be modified");
    error_free(err);
    err = NULL;
    bdrv_unref(bs);

    bs = open_image(true);
    assert_int_equal(bdrv_dirty_bitmap_clear(bs, "a", &err), 0);
    assert_int_equal(status_at(bs, "a", 0, &pnum), 0);
    assert_int_equal(pnum, DISK_SIZE);
    assert_int_equal(bdrv_dirty_bitmap_remove(bs, "b", &err), 0);
    assert_int_equal(bdrv_dirty_bitmap_remove(bs, "b", &err), -ENOENT);
    assert_string_equal(error_get_pretty(err), "Dirty bitmap 'b' not found");
    error_free(err);
    bdrv_unref(bs);

    bs = open_image(false);
    n = bdrv_dirty_bitmap_list(bs, &list);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].name, "a");
    assert_int_equal(list[0].count, 0);
    assert_true(list[0].enabled);
    bdrv_dirty_bitmap_list_free(list, n);
    bdrv_unref(bs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_write_status),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
