/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Many threads reading and writing one qcow2 image at once: reads and in-place
 * overwrites take the lock-free path through the file, allocating writes the
 * locked one. Every byte must read back as the last write left it.
 */
#include <errno.h>
#include <pthread.h>
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

#define THR_COUNT 8
#define THR_DISK (64 * QKIT_MiB)
#define THR_STRIPE (THR_DISK / THR_COUNT)
#define THR_IO 4096
#define THR_OPS 400

typedef struct ThreadJob {
    BlockDriverState *bs;
    int index;
    uint8_t *shadow;   /* what this thread's stripe must hold */
    int failures;
} ThreadJob;

static char img_path[] = "/tmp/qkit-threads-XXXXXX";

/* One thread: random 4 KiB writes and verified reads inside its own stripe. */
static void *thread_body(void *opaque)
{
    ThreadJob *j = opaque;
    unsigned seed = 1234 + j->index;
    uint8_t *buf = NULL;
    if (posix_memalign((void **)&buf, 4096, THR_IO)) {
        j->failures++;
        return NULL;
    }
    uint64_t base = (uint64_t)j->index * THR_STRIPE;
    for (int i = 0; i < THR_OPS; i++) {
        uint64_t off = (uint64_t)(rand_r(&seed) % (THR_STRIPE / THR_IO)) * THR_IO;
        if (rand_r(&seed) % 2) {
            memset(buf, rand_r(&seed) & 0xff, THR_IO);
            if (bdrv_pwrite(j->bs, base + off, THR_IO, buf, 0) < 0) {
                j->failures++;
            }
            memcpy(j->shadow + off, buf, THR_IO);
        } else {
            if (bdrv_pread(j->bs, base + off, THR_IO, buf, 0) < 0 ||
                memcmp(buf, j->shadow + off, THR_IO)) {
                j->failures++;
            }
        }
    }
    free(buf);
    return NULL;
}

/* Run the threads against an image opened with flags, then verify after reopening. */
static void run_threads(int flags)
{
    strcpy(img_path, "/tmp/qkit-threads-XXXXXX");
    int fd = mkstemp(img_path);
    assert_true(fd >= 0);
    close(fd);
    QOpts *o = qopts_new();
    qopts_set(o, "size", "64M");
    assert_int_equal(bdrv_create(&bdrv_qcow2, img_path, o, NULL), 0);
    qopts_free(o);
    BlockDriverState *bs = bdrv_open(img_path, "qcow2", NULL, BDRV_O_RDWR | flags, NULL);
    assert_non_null(bs);
    /* Allocate every other megabyte first, so overwrites and allocations mix. */
    uint8_t *mb = malloc(QKIT_MiB);
    memset(mb, 0x5a, QKIT_MiB);
    ThreadJob jobs[THR_COUNT];
    pthread_t tids[THR_COUNT];
    for (int i = 0; i < THR_COUNT; i++) {
        jobs[i] = (ThreadJob){ .bs = bs, .index = i, .shadow = calloc(1, THR_STRIPE) };
        for (uint64_t off = 0; off < THR_STRIPE; off += 2 * QKIT_MiB) {
            assert_int_equal(bdrv_pwrite(bs, (uint64_t)i * THR_STRIPE + off, QKIT_MiB, mb, 0),
                             0);
            memset(jobs[i].shadow + off, 0x5a, QKIT_MiB);
        }
    }
    for (int i = 0; i < THR_COUNT; i++) {
        pthread_create(&tids[i], NULL, thread_body, &jobs[i]);
    }
    for (int i = 0; i < THR_COUNT; i++) {
        pthread_join(tids[i], NULL);
        assert_int_equal(jobs[i].failures, 0);
    }
    bdrv_unref(bs);
    bs = bdrv_open(img_path, "qcow2", NULL, 0, NULL);
    assert_non_null(bs);
    uint8_t *back = malloc(THR_STRIPE);
    for (int i = 0; i < THR_COUNT; i++) {
        assert_int_equal(bdrv_pread(bs, (uint64_t)i * THR_STRIPE, THR_STRIPE, back, 0), 0);
        assert_memory_equal(back, jobs[i].shadow, THR_STRIPE);
        free(jobs[i].shadow);
    }
    free(back);
    free(mb);
    bdrv_unref(bs);
    unlink(img_path);
}

static void test_threads_writeback(void **state)
{
    run_threads(0);
}

static void test_threads_direct(void **state)
{
    run_threads(BDRV_O_NOCACHE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads_writeback),
        cmocka_unit_test(test_threads_direct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
