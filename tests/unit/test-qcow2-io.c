/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2 driver I/O tests through the block API: random writes, zeroes, discards and
 * compressed writes at odd offsets, mirrored in a reference buffer; the image must read
 * back the same before and after reopening, and (when QEMU's tools are installed)
 * `qemu-img check` must find no error and `qemu-img compare` must match a raw dump.
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
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "qkit/block.h"
#include "qkit/cutils.h"

#define NB_RANDOM_OPS 300
#define MAX_OP_BYTES (256 * 1024)
#define QEMU_IMG "/usr/bin/qemu-img"

typedef struct Qcow2Case {
    const char *name;
    const char *opts;      /* -o style create options (size added) */
    uint64_t size;
    bool backing;          /* put the image over a base with a pattern */
    bool compressed;       /* start with compressed writes of whole clusters */
    uint64_t cluster_size;
} Qcow2Case;

static char dir[] = "/tmp/qkit-qcow2-XXXXXX";

static uint64_t rng_state;

/* Deterministic xorshift so a failure is reproducible. */
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void fill_pattern(uint8_t *buf, uint64_t len, uint64_t seed)
{
    for (uint64_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)((seed * 131 + i * 7 + (i >> 9)) & 0xff);
    }
}

static int create_image(const char *path, const char *opts_str, uint64_t size)
{
    QOpts *o = qopts_new();
    Error *err = NULL;
    char sz[32];
    snprintf(sz, sizeof(sz), "%" PRIu64, size);
    if (opts_str && *opts_str) {
        assert_int_equal(qopts_parse(o, opts_str, &err), 0);
    }
    qopts_set(o, "size", sz);
    int ret = bdrv_create(&bdrv_qcow2, path, o, &err);
    if (ret < 0) {
        fprintf(stderr, "create %s: %s\n", path, error_get_pretty(err));
    }
    error_free(err);
    qopts_free(o);
    return ret;
}

static BlockDriverState *open_image(const char *path, int flags)
{
    Error *err = NULL;
    BlockDriverState *bs = bdrv_open(path, "qcow2", NULL, flags, &err);
    if (!bs) {
        fprintf(stderr, "open %s: %s\n", path, error_get_pretty(err));
    }
    error_free(err);
    return bs;
}

/* Read the whole disk in odd-sized pieces and compare with the reference. */
static void verify(BlockDriverState *bs, const uint8_t *ref, uint64_t size)
{
    uint8_t *buf = malloc(size);
    assert_non_null(buf);
    uint64_t off = 0;
    while (off < size) {
        uint64_t want = 1 + rnd() % MAX_OP_BYTES;
        uint64_t n = QKIT_MIN(size - off, want);
        assert_int_equal(bdrv_pread(bs, (int64_t)off, (int64_t)n, buf + off, 0), 0);
        off += n;
    }
    for (uint64_t i = 0; i < size; i++) {
        if (buf[i] != ref[i]) {
            fail_msg("mismatch at byte %" PRIu64 ": got %u want %u", i, buf[i], ref[i]);
        }
    }
    free(buf);
}

static int run(const char *cmd)
{
    int ret = system(cmd);
    return ret == -1 ? -1 : WEXITSTATUS(ret);
}

/* Write the reference as raw and let QEMU's tools judge the image. */
static void qemu_cross_check(const char *img, const uint8_t *ref, uint64_t size)
{
    if (access(QEMU_IMG, X_OK) != 0) {
        return;
    }
    char raw[256], cmd[1024];
    snprintf(raw, sizeof(raw), "%s/ref.raw", dir);
    FILE *f = fopen(raw, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(ref, 1, size, f), size);
    fclose(f);
    snprintf(cmd, sizeof(cmd), QEMU_IMG " check -q %s", img);
    assert_int_equal(run(cmd), 0);
    snprintf(cmd, sizeof(cmd), QEMU_IMG " compare -q -f qcow2 -F raw %s %s", img, raw);
    assert_int_equal(run(cmd), 0);
}

static void run_case(const Qcow2Case *c)
{
    char img[256], base[256], opts[512];
    uint64_t size = c->size;
    uint8_t *ref = calloc(1, size);
    assert_non_null(ref);
    rng_state = 0x9e3779b97f4a7c15ULL ^ size ^ (uint64_t)strlen(c->name);
    snprintf(img, sizeof(img), "%s/%s.qcow2", dir, c->name);
    snprintf(opts, sizeof(opts), "%s", c->opts);

    if (c->backing) {
        /* A base shorter than the overlay: the tail reads as zeroes. */
        uint64_t bsize = size / 2;
        snprintf(base, sizeof(base), "%s/%s-base.qcow2", dir, c->name);
        assert_int_equal(create_image(base, "", bsize), 0);
        BlockDriverState *b = open_image(base, BDRV_O_RDWR);
        assert_non_null(b);
        fill_pattern(ref, bsize, 77);
        assert_int_equal(bdrv_pwrite(b, 0, (int64_t)bsize, ref, 0), 0);
        bdrv_unref(b);
        snprintf(opts, sizeof(opts), "%s%sbacking_file=%s,backing_fmt=qcow2", c->opts,
                 *c->opts ? "," : "", base);
    }
    assert_int_equal(create_image(img, opts, size), 0);
    BlockDriverState *bs = open_image(img, BDRV_O_RDWR | BDRV_O_UNMAP);
    assert_non_null(bs);
    assert_true(bs->backing == NULL || c->backing);
    verify(bs, ref, size);

    uint8_t *buf = malloc(MAX_OP_BYTES + c->cluster_size);
    assert_non_null(buf);
    if (c->compressed) {
        /* Compressible and incompressible clusters, and the partial last one. */
        for (uint64_t off = 0; off < size; off += 3 * c->cluster_size) {
            uint64_t n = QKIT_MIN(c->cluster_size, size - off);
            if ((off / c->cluster_size) % 2) {
                for (uint64_t i = 0; i < n; i++) {
                    buf[i] = (uint8_t)rnd();
                }
            } else {
                fill_pattern(buf, n, off);
            }
            assert_int_equal(bdrv_pwrite(bs, (int64_t)off, (int64_t)n, buf,
                                         BDRV_REQ_WRITE_COMPRESSED), 0);
            memcpy(ref + off, buf, n);
        }
        verify(bs, ref, size);
    }

    for (int i = 0; i < NB_RANDOM_OPS; i++) {
        uint64_t off = rnd() % size;
        uint64_t want = 1 + rnd() % MAX_OP_BYTES;
        uint64_t n = QKIT_MIN(size - off, want);
        int kind = (int)(rnd() % 10);
        if (getenv("QCOW2_TEST_TRACE")) {
            fprintf(stderr, "op %d kind %d off %" PRIu64 " len %" PRIu64 "\n", i, kind, off, n);
        }
        if (kind < 6) {
            fill_pattern(buf, n, (uint64_t)i);
            assert_int_equal(bdrv_pwrite(bs, (int64_t)off, (int64_t)n, buf, 0), 0);
            memcpy(ref + off, buf, n);
        } else if (kind < 8) {
            int flags = kind == 6 ? BDRV_REQ_MAY_UNMAP : 0;
            assert_int_equal(bdrv_pwrite_zeroes(bs, (int64_t)off, (int64_t)n, flags), 0);
            memset(ref + off, 0, n);
        } else if (kind == 8 && !c->backing) {
            /* Discarded whole clusters read as zeroes without a backing file. */
            uint64_t a = ROUND_UP(off, c->cluster_size);
            uint64_t e = off + n >= size ? size : ROUND_DOWN(off + n, c->cluster_size);
            assert_int_equal(bdrv_pdiscard(bs, (int64_t)off, (int64_t)n), 0);
            if (e > a) {
                memset(ref + a, 0, e - a);
            }
        } else {
            uint8_t *rb = malloc(n);
            assert_int_equal(bdrv_pread(bs, (int64_t)off, (int64_t)n, rb, 0), 0);
            assert_memory_equal(rb, ref + off, n);
            free(rb);
        }
    }
    verify(bs, ref, size);
    assert_int_equal(bdrv_flush(bs), 0);
    bdrv_unref(bs);

    bs = open_image(img, 0);
    assert_non_null(bs);
    verify(bs, ref, size);
    bdrv_unref(bs);
    qemu_cross_check(img, ref, size);
    free(buf);
    free(ref);
}

#define MiB QKIT_MiB
static const Qcow2Case cases[] = {
    { "v3-64k", "", 16 * MiB, false, false, 65536 },
    { "v2-64k", "compat=0.10", 16 * MiB, false, false, 65536 },
    { "v3-512", "cluster_size=512", 4 * MiB, false, false, 512 },
    { "v3-4k-rc1", "cluster_size=4096,refcount_bits=1", 8 * MiB, false, false, 4096 },
    { "v3-4k-rc64", "cluster_size=4096,refcount_bits=64", 8 * MiB, false, false, 4096 },
    { "v3-2m", "cluster_size=2M", 12 * MiB + 512, false, false, 2 * MiB },
    { "v3-extl2", "extended_l2=on,cluster_size=64k", 16 * MiB, false, false, 65536 },
    { "v3-backing", "", 16 * MiB, true, false, 65536 },
    { "v2-backing", "compat=0.10", 16 * MiB, true, false, 65536 },
    { "extl2-backing", "extended_l2=on", 16 * MiB, true, false, 65536 },
    { "zlib", "", 8 * MiB + 4608, false, true, 65536 },
    { "zstd", "compression_type=zstd", 8 * MiB, false, true, 65536 },
    { "zlib-4k-extl2", "cluster_size=16k,extended_l2=on", 4 * MiB, false, true, 16384 },
    { "lazy", "lazy_refcounts=on", 8 * MiB, false, false, 65536 },
    { "prealloc-meta", "preallocation=metadata", 8 * MiB, false, false, 65536 },
    { "prealloc-full", "preallocation=full,cluster_size=4k", 4 * MiB, false, false, 4096 },
};

static void test_case(void **state)
{
    run_case(*state);
}

static int setup_all(void **state)
{
    strcpy(dir, "/tmp/qkit-qcow2-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown_all(void **state)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return run(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    struct CMUnitTest tests[ARRAY_SIZE(cases)];
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        tests[i] = (struct CMUnitTest){ cases[i].name, test_case, NULL, NULL,
                                        (void *)&cases[i] };
    }
    return _cmocka_run_group_tests("qcow2-io", tests, ARRAY_SIZE(cases), setup_all,
                                   teardown_all);
}
