/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests for the block core over the file protocol and the raw format. */
#include <errno.h>
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

#define TEST_SIZE (4 * QKIT_MiB)

static char test_path[] = "/tmp/qkit-unit-XXXXXX";

/* Make a fresh raw image of TEST_SIZE before each test. */
static int setup(void **state)
{
    strcpy(test_path, "/tmp/qkit-unit-XXXXXX");
    int fd = mkstemp(test_path);
    if (fd < 0) {
        return -1;
    }
    close(fd);
    QOpts *o = qopts_new();
    qopts_set(o, "size", "4M");
    Error *err = NULL;
    int ret = bdrv_create(&bdrv_raw, test_path, o, &err);
    qopts_free(o);
    error_free(err);
    return ret;
}

static int teardown(void **state)
{
    unlink(test_path);
    return 0;
}

static BlockDriverState *open_raw(int flags)
{
    Error *err = NULL;
    BlockDriverState *bs = bdrv_open(test_path, "raw", NULL, flags, &err);
    if (!bs) {
        fprintf(stderr, "%s\n", error_get_pretty(err));
    }
    error_free(err);
    return bs;
}

/* Unaligned writes through O_DIRECT exercise the core's read-modify-write. */
static void test_unaligned_direct(void **state)
{
    BlockDriverState *bs = open_raw(BDRV_O_RDWR | BDRV_O_NOCACHE);
    assert_non_null(bs);
    assert_int_equal(bdrv_getlength(bs), TEST_SIZE);
    uint8_t buf[10000], back[10000];
    for (size_t i = 0; i < sizeof(buf); i++) {
        buf[i] = (uint8_t)(i * 7 + 3);
    }
    assert_int_equal(bdrv_pwrite(bs, 4097, sizeof(buf), buf, 0), 0);
    assert_int_equal(bdrv_pread(bs, 4097, sizeof(back), back, 0), 0);
    assert_memory_equal(buf, back, sizeof(buf));
    /* The bytes around the write are untouched zeroes. */
    assert_int_equal(bdrv_pread(bs, 4096, 1, back, 0), 0);
    assert_int_equal(back[0], 0);
    assert_int_equal(bdrv_pread(bs, TEST_SIZE, 1, back, 0), -EIO);
    assert_int_equal(bdrv_flush(bs), 0);
    bdrv_unref(bs);
}

/* Zeroes with unmap leave a hole that block status reports as zero. */
static void test_zeroes_and_status(void **state)
{
    BlockDriverState *bs = open_raw(BDRV_O_RDWR | BDRV_O_UNMAP);
    assert_non_null(bs);
    uint8_t *buf = malloc(QKIT_MiB);
    memset(buf, 0xa5, QKIT_MiB);
    assert_int_equal(bdrv_pwrite(bs, 0, QKIT_MiB, buf, 0), 0);
    int64_t pnum, map;
    BlockDriverState *file;
    int ret = bdrv_block_status(bs, 0, TEST_SIZE, &pnum, &map, &file);
    assert_true(ret & BDRV_BLOCK_DATA);
    assert_true(ret & BDRV_BLOCK_OFFSET_VALID);
    assert_int_equal(pnum, QKIT_MiB);
    ret = bdrv_block_status(bs, QKIT_MiB, TEST_SIZE, &pnum, &map, &file);
    assert_true(ret & BDRV_BLOCK_ZERO);
    assert_true(ret & BDRV_BLOCK_EOF);
    assert_int_equal(bdrv_pwrite_zeroes(bs, 0, 512 * 1024, BDRV_REQ_MAY_UNMAP), 0);
    ret = bdrv_block_status(bs, 0, TEST_SIZE, &pnum, &map, &file);
    assert_true(ret & BDRV_BLOCK_ZERO);
    assert_int_equal(pnum, 512 * 1024);
    assert_int_equal(bdrv_pread(bs, 0, QKIT_MiB, buf, 0), 0);
    assert_true(buffer_is_zero(buf, 512 * 1024));
    assert_int_equal(buf[512 * 1024], 0xa5);
    free(buf);
    bdrv_unref(bs);
}

/*
 * Raw users share write, as in QEMU; the locks they hold still stop a user that
 * does not share (as a qcow2 reader or writer), with QEMU's lock message.
 */
static void test_locking(void **state)
{
    BlockDriverState *bs = open_raw(BDRV_O_RDWR);
    assert_non_null(bs);
    BlockDriverState *bs2 = open_raw(BDRV_O_RDWR);
    assert_non_null(bs2);
    bdrv_unref(bs2);
    /* A user that keeps others from writing: what a qcow2 node asks of its file. */
    BlockDriverState *file = bdrv_open(test_path, "file", NULL, 0, NULL);
    assert_non_null(file);
    Error *err = NULL;
    assert_int_equal(file->drv->set_perm(file, BLK_PERM_CONSISTENT_READ,
                                         BLK_PERM_WRITE | BLK_PERM_RESIZE, &err), -EAGAIN);
    assert_string_equal(error_get_pretty(err), "Failed to get shared \"write\" lock");
    assert_non_null(strstr(error_get_hint(err), "Is another process using the image"));
    error_free(err);
    bdrv_unref(bs);
    assert_int_equal(file->drv->set_perm(file, BLK_PERM_CONSISTENT_READ,
                                         BLK_PERM_WRITE | BLK_PERM_RESIZE, NULL), 0);
    /* Now the writer is the one refused. */
    err = NULL;
    bs = bdrv_open(test_path, "raw", NULL, BDRV_O_RDWR, &err);
    assert_null(bs);
    assert_string_equal(error_get_pretty(err), "Failed to get \"write\" lock");
    error_free(err);
    bdrv_unref(file);
}

/* Grow and shrink, and the raw offset/size window. */
static void test_truncate_and_window(void **state)
{
    BlockDriverState *bs = open_raw(BDRV_O_RDWR);
    assert_non_null(bs);
    assert_int_equal(bdrv_truncate(bs, 8 * QKIT_MiB, true, PREALLOC_MODE_OFF, NULL), 0);
    assert_int_equal(bdrv_getlength(bs), 8 * QKIT_MiB);
    uint8_t pat[512];
    memset(pat, 0x3c, sizeof(pat));
    assert_int_equal(bdrv_pwrite(bs, QKIT_MiB, sizeof(pat), pat, BDRV_REQ_FUA), 0);
    bdrv_unref(bs);

    json_t *opts = json_pack("{s:s, s:s}", "offset", "1M", "size", "4096");
    Error *err = NULL;
    bs = bdrv_open(test_path, "raw", opts, 0, &err);
    assert_non_null(bs);
    assert_int_equal(bdrv_getlength(bs), 4096);
    uint8_t back[512];
    assert_int_equal(bdrv_pread(bs, 0, sizeof(back), back, 0), 0);
    assert_memory_equal(pat, back, sizeof(back));
    assert_int_equal(bdrv_pread(bs, 4096, 1, back, 0), -EIO);
    bdrv_unref(bs);
}

/* Opening a missing file fails with the errno text, as QEMU words it. */
static void test_open_missing(void **state)
{
    Error *err = NULL;
    BlockDriverState *bs = bdrv_open("/nonexistent/x.img", NULL, NULL, 0, &err);
    assert_null(bs);
    assert_string_equal(error_get_pretty(err),
                        "Could not open '/nonexistent/x.img': No such file or directory");
    error_free(err);
}

/* Options a driver does not know are refused with QEMU's wording; known ones work. */
static void test_open_options(void **state)
{
    Error *err = NULL;
    json_t *opts = json_pack("{s:s, s:{s:s, s:s}}", "bogus", "1", "file", "filename",
                             test_path, "driver", "file");
    assert_null(bdrv_open(NULL, "raw", opts, 0, &err));
    assert_string_equal(error_get_pretty(err),
                        "Block format 'raw' does not support the option 'bogus'");
    error_free(err);
    err = NULL;
    opts = json_pack("{s:{s:s, s:s}}", "file", "filename", test_path, "zz", "1");
    assert_null(bdrv_open(NULL, "raw", opts, 0, &err));
    assert_string_equal(error_get_pretty(err),
                        "Block protocol 'file' doesn't support the option 'zz'");
    error_free(err);
    /* read-only=on wins over a read-write open; cache.direct reaches the file. */
    opts = json_pack("{s:s, s:{s:b}, s:{s:s}}", "read-only", "on", "cache", "direct", 1,
                     "file", "filename", test_path);
    BlockDriverState *bs = bdrv_open(NULL, "raw", opts, BDRV_O_RDWR, NULL);
    assert_non_null(bs);
    assert_true(bs->read_only);
    assert_true(bs->file->open_flags & BDRV_O_NOCACHE);
    uint8_t b[16] = { 0 };
    assert_int_equal(bdrv_pwrite(bs, 0, sizeof(b), b, 0), -EACCES);
    bdrv_unref(bs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unaligned_direct, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zeroes_and_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_locking, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncate_and_window, setup, teardown),
        cmocka_unit_test(test_open_missing),
        cmocka_unit_test_setup_teardown(test_open_options, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
