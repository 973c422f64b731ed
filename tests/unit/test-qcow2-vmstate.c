/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The block layer's VM state and temporary snapshot load API on qcow2: byte-granular
 * VM state I/O that leaves the guest disk alone, a snapshot read in place on a
 * read-only node (disk and VM state as they were), and the refusals (read-write node,
 * no snapshot named, unknown snapshot, formats without either).
 */
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

#define DISK_SIZE (16 * QKIT_MiB)
/* A VM state write that is not sector aligned and crosses a cluster boundary. */
#define VM_POS 65000
#define VM_LEN 3000

static char dir[] = "/tmp/qkit-qcow2-vmstate-XXXXXX";
static char path[PATH_MAX];
static char raw_path[PATH_MAX];

/* Open path with fmt, read-write or read-only. */
static BlockDriverState *open_image(const char *file, const char *fmt, bool rw)
{
    Error *err = NULL;
    BlockDriverState *bs = bdrv_open(file, fmt, NULL, rw ? BDRV_O_RDWR : 0, &err);
    if (!bs) {
        fprintf(stderr, "open: %s\n", error_get_pretty(err));
    }
    assert_non_null(bs);
    return bs;
}

/* Expect err to hold msg, then free it. */
static void expect_error(Error **err, const char *msg)
{
    assert_non_null(*err);
    assert_string_equal(error_get_pretty(*err), msg);
    error_free(*err);
    *err = NULL;
}

/* True if len bytes at buf all equal c. */
static bool all_bytes(const uint8_t *buf, size_t len, uint8_t c)
{
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != c) {
            return false;
        }
    }
    return true;
}

static int setup(void **state)
{
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/vm.qcow2", dir);
    snprintf(raw_path, sizeof(raw_path), "%s/vm.raw", dir);
    Error *err = NULL;
    QOpts *o = qopts_new();
    qopts_set(o, "size", "16777216");
    assert_int_equal(bdrv_create(&bdrv_qcow2, path, o, &err), 0);
    assert_int_equal(bdrv_create(&bdrv_raw, raw_path, o, &err), 0);
    qopts_free(o);
    return 0;
}

static int teardown(void **state)
{
    unlink(path);
    unlink(raw_path);
    rmdir(dir);
    return 0;
}

/* VM state written at a byte offset reads back; the rest of the area and the disk read 0. */
static void test_vmstate_io(void **state)
{
    BlockDriverState *bs = open_image(path, "qcow2", true);
    uint8_t *buf = malloc(VM_LEN * 2);
    assert_non_null(buf);

    memset(buf, 0x5a, VM_LEN);
    assert_int_equal(bdrv_save_vmstate(bs, buf, VM_POS, VM_LEN), 0);
    memset(buf, 0, VM_LEN * 2);
    assert_int_equal(bdrv_load_vmstate(bs, buf, VM_POS - VM_LEN / 2, VM_LEN * 2), 0);
    assert_true(all_bytes(buf, VM_LEN / 2, 0));
    assert_true(all_bytes(buf + VM_LEN / 2, VM_LEN, 0x5a));
    assert_true(all_bytes(buf + VM_LEN / 2 + VM_LEN, VM_LEN / 2, 0));

    /* The guest disk is untouched and keeps its size. */
    assert_int_equal(bdrv_getlength(bs), DISK_SIZE);
    assert_int_equal(bdrv_pread(bs, 0, VM_LEN, buf, 0), 0);
    assert_true(all_bytes(buf, VM_LEN, 0));
    assert_int_equal(bdrv_pread(bs, DISK_SIZE - VM_LEN, VM_LEN, buf, 0), 0);
    assert_true(all_bytes(buf, VM_LEN, 0));

    /* Requests out of any range fail as in QEMU. */
    assert_int_equal(bdrv_load_vmstate(bs, buf, -512, 512), -EIO);
    assert_int_equal(bdrv_save_vmstate(bs, buf, INT64_MAX - 511, 512), -EIO);

    /* Loading a snapshot needs a read-only node, and a snapshot to name. */
    Error *err = NULL;
    assert_int_equal(bdrv_snapshot_load_tmp(bs, "1", NULL, &err), -EINVAL);
    expect_error(&err, "Device '' is not readonly");
    assert_int_equal(bdrv_snapshot_load_tmp(bs, NULL, NULL, &err), -EINVAL);
    expect_error(&err, "snapshot_id and name are both NULL");
    free(buf);
    bdrv_unref(bs);
}

/* A snapshot read in place shows the disk and VM state (test_vmstate_io's) it was taken with. */
static void test_load_tmp(void **state)
{
    BlockDriverState *bs = open_image(path, "qcow2", true);
    uint8_t buf[4096];
    Error *err = NULL;

    memset(buf, 0x11, sizeof(buf));
    assert_int_equal(bdrv_pwrite(bs, 0, sizeof(buf), buf, 0), 0);
    QkitSnapshotInfo sn = { .icount = UINT64_MAX };
    snprintf(sn.name, sizeof(sn.name), "first");
    assert_non_null(bs->drv->snapshot_create);
    assert_int_equal(bs->drv->snapshot_create(bs, &sn, &err), 0);
    /* After the snapshot: new disk data and new VM state (copied on write). */
    memset(buf, 0x22, sizeof(buf));
    assert_int_equal(bdrv_pwrite(bs, 0, sizeof(buf), buf, 0), 0);
    assert_int_equal(bdrv_save_vmstate(bs, buf, VM_POS, sizeof(buf)), 0);
    bdrv_unref(bs);

    bs = open_image(path, "qcow2", false);
    assert_int_equal(bdrv_save_vmstate(bs, buf, 0, 512), -EACCES);
    assert_int_equal(bdrv_snapshot_load_tmp(bs, "1", "other", &err), -ENOENT);
    expect_error(&err, "Can't find snapshot");
    assert_int_equal(bdrv_snapshot_load_tmp_by_id_or_name(bs, "nope", &err), -ENOENT);
    expect_error(&err, "Can't find snapshot");
    /* By name through the ID-or-name lookup. */
    assert_int_equal(bdrv_snapshot_load_tmp_by_id_or_name(bs, "first", &err), 0);
    assert_int_equal(bdrv_pread(bs, 0, sizeof(buf), buf, 0), 0);
    assert_true(all_bytes(buf, sizeof(buf), 0x11));
    assert_int_equal(bdrv_load_vmstate(bs, buf, VM_POS, VM_LEN), 0);
    assert_true(all_bytes(buf, VM_LEN, 0x5a));
    assert_int_equal(bdrv_getlength(bs), DISK_SIZE);
    bdrv_unref(bs);

    /* The image itself still shows the newer data. */
    bs = open_image(path, "qcow2", false);
    assert_int_equal(bdrv_pread(bs, 0, sizeof(buf), buf, 0), 0);
    assert_true(all_bytes(buf, sizeof(buf), 0x22));
    assert_int_equal(bdrv_load_vmstate(bs, buf, VM_POS, sizeof(buf)), 0);
    assert_true(all_bytes(buf, sizeof(buf), 0x22));
    bdrv_unref(bs);
}

/* raw keeps neither snapshots nor VM state. */
static void test_raw_refuses(void **state)
{
    BlockDriverState *bs = open_image(raw_path, "raw", false);
    uint8_t buf[512];
    Error *err = NULL;
    assert_int_equal(bdrv_load_vmstate(bs, buf, 0, sizeof(buf)), -ENOTSUP);
    assert_int_equal(bdrv_snapshot_load_tmp(bs, NULL, "x", &err), -ENOTSUP);
    expect_error(&err, "Block format 'raw' used by device '' does not support temporarily "
                 "loading internal snapshots");
    bdrv_unref(bs);
    bs = open_image(raw_path, "raw", true);
    assert_int_equal(bdrv_save_vmstate(bs, buf, 0, sizeof(buf)), -ENOTSUP);
    bdrv_unref(bs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vmstate_io),
        cmocka_unit_test(test_load_tmp),
        cmocka_unit_test(test_raw_refuses),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
