/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer target for the qcow2 driver's handling of untrusted images: the input
 * bytes are the image file. It is opened read-only as qcow2; if that works, some
 * data is read, the block status is walked over the whole disk and the driver's
 * check runs without repairing. Images the normal open refuses are opened again the
 * way `check` opens them (BDRV_O_CHECK). Built by scripts/fuzz.sh.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "qkit/block.h"
#include "qkit/error.h"

/* Images bigger than this are not more interesting, only slower. */
#define FUZZ_QCOW2_MAX_INPUT (1 << 20)
/* How much each read asks for, and how many block_status steps are taken at most. */
#define FUZZ_QCOW2_READ_SIZE (64 * 1024)
#define FUZZ_QCOW2_MAX_STATUS_STEPS 512

/* The memfd the image lives in, made once: a fuzzer process runs inputs one by one. */
static int fuzz_qcow2_fd = -1;
static char fuzz_qcow2_path[64];

/* Replace the memfd's contents with the input. */
static int fuzz_qcow2_load(const uint8_t *data, size_t size)
{
    if (fuzz_qcow2_fd < 0) {
        fuzz_qcow2_fd = memfd_create("fuzz-qcow2", 0);
        if (fuzz_qcow2_fd < 0) {
            perror("memfd_create");
            abort();
        }
        snprintf(fuzz_qcow2_path, sizeof(fuzz_qcow2_path), "/proc/self/fd/%d", fuzz_qcow2_fd);
    }
    if (ftruncate(fuzz_qcow2_fd, 0) < 0) {
        abort();
    }
    size_t done = 0;
    while (done < size) {
        ssize_t n = pwrite(fuzz_qcow2_fd, data + done, size - done, (off_t)done);
        if (n <= 0) {
            abort();
        }
        done += (size_t)n;
    }
    return 0;
}

/* Read at the start, the middle and the end of the disk, and past the end. */
static void fuzz_qcow2_reads(BlockDriverState *bs, int64_t len, uint8_t *buf)
{
    const int64_t offsets[] = { 0, len / 2, len - FUZZ_QCOW2_READ_SIZE, len };
    for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
        int64_t off = offsets[i] < 0 ? 0 : offsets[i] & ~(int64_t)511;
        int64_t n = len - off < FUZZ_QCOW2_READ_SIZE ? len - off : FUZZ_QCOW2_READ_SIZE;
        if (n > 0) {
            bdrv_pread(bs, off, n, buf, 0);
        }
        /* An unaligned request goes through the core's read-modify-write path. */
        if (n > 3) {
            bdrv_pread(bs, off + 1, n - 2, buf, 0);
        }
    }
}

/* Walk the block status from the start as `map` does, a bounded number of steps. */
static void fuzz_qcow2_status(BlockDriverState *bs, int64_t len)
{
    int64_t off = 0;
    for (int i = 0; i < FUZZ_QCOW2_MAX_STATUS_STEPS && off < len; i++) {
        int64_t pnum = 0, map = 0;
        BlockDriverState *file = NULL;
        int ret = bdrv_block_status_above(bs, NULL, off, len - off, &pnum, &map, &file, NULL);
        if (ret < 0 || pnum <= 0) {
            break;
        }
        off += pnum;
    }
}

/* Run the driver's consistency check without repairing anything. */
static void fuzz_qcow2_check(BlockDriverState *bs)
{
    BdrvCheckResult res;
    if (bs->drv && bs->drv->check) {
        memset(&res, 0, sizeof(res));
        bs->drv->check(bs, &res, 0);
    }
}

/* libFuzzer entry point: the input is a qcow2 image file. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t buf[FUZZ_QCOW2_READ_SIZE];
    Error *err = NULL;

    if (size > FUZZ_QCOW2_MAX_INPUT) {
        return 0;
    }
    fuzz_qcow2_load(data, size);

    /* Never follow a backing file name from the input: it names host files. */
    BlockDriverState *bs = bdrv_open(fuzz_qcow2_path, "qcow2", NULL,
                                     BDRV_O_NO_BACKING | BDRV_O_FORCE_SHARE, &err);
    if (bs) {
        int64_t len = bdrv_getlength(bs);
        if (len > 0) {
            fuzz_qcow2_reads(bs, len, buf);
            fuzz_qcow2_status(bs, len);
        }
        BlockDriverInfo bdi;
        bdrv_get_info(bs, &bdi);
        if (bs->drv->get_specific_info) {
            Error *e = NULL;
            json_t *info = bs->drv->get_specific_info(bs, &e);
            json_decref(info);
            error_free(e);
        }
        if (bs->drv->snapshot_list) {
            QkitSnapshotInfo *sn = NULL;
            if (bs->drv->snapshot_list(bs, &sn) >= 0) {
                free(sn);
            }
        }
        fuzz_qcow2_check(bs);
        bdrv_unref(bs);
    } else {
        /* A damaged image is what `check` is for: it opens it with BDRV_O_CHECK. */
        error_free(err);
        err = NULL;
        bs = bdrv_open(fuzz_qcow2_path, "qcow2", NULL,
                       BDRV_O_NO_BACKING | BDRV_O_FORCE_SHARE | BDRV_O_CHECK, &err);
        if (bs) {
            fuzz_qcow2_check(bs);
            bdrv_unref(bs);
        }
    }
    error_free(err);
    return 0;
}
