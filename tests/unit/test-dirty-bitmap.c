/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests for the in-memory dirty bitmap (marking, searching, merging, serializing). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "qkit/dirty-bitmap.h"

#define KiB 1024ULL
#define MiB (1024ULL * KiB)

static void test_set_rounds_to_granules(void **state)
{
    DirtyBitmap *bm = dirty_bitmap_new(10 * MiB + 100, 64 * KiB);
    assert_non_null(bm);
    assert_int_equal(dirty_bitmap_nb_bits(bm), 161);
    dirty_bitmap_set(bm, 100, 1);
    dirty_bitmap_set(bm, 3000000, 70000);
    assert_true(dirty_bitmap_get(bm, 0));
    assert_true(dirty_bitmap_get(bm, 64 * KiB - 1));
    assert_false(dirty_bitmap_get(bm, 64 * KiB));
    /* 3000000..3069999 touches granules 45 and 46. */
    assert_int_equal(dirty_bitmap_next_dirty(bm, 64 * KiB, 10 * MiB), 45 * 64 * KiB);
    assert_int_equal(dirty_bitmap_next_clean(bm, 45 * 64 * KiB, 10 * MiB), 47 * 64 * KiB);
    assert_int_equal(dirty_bitmap_count(bm), 3);
    /* A search starting inside a dirty granule returns the start offset itself. */
    assert_int_equal(dirty_bitmap_next_dirty(bm, 100, 10 * MiB), 100);
    assert_int_equal(dirty_bitmap_next_dirty(bm, 47 * 64 * KiB, 10 * MiB), -1);
    /* The partial last granule and writes past the end. */
    dirty_bitmap_set(bm, 10 * MiB + 50, 1000);
    assert_true(dirty_bitmap_get(bm, 10 * MiB + 99));
    assert_false(dirty_bitmap_get(bm, 10 * MiB + 100));
    assert_int_equal(dirty_bitmap_count(bm), 4);
    dirty_bitmap_clear(bm);
    assert_int_equal(dirty_bitmap_count(bm), 0);
    assert_int_equal(dirty_bitmap_next_dirty(bm, 0, UINT64_MAX), -1);
    assert_int_equal(dirty_bitmap_next_clean(bm, 0, UINT64_MAX), 0);
    dirty_bitmap_free(bm);
}

static void test_serialize_lsb_first(void **state)
{
    DirtyBitmap *bm = dirty_bitmap_new(100 * 512, 512);
    uint8_t buf[16];
    dirty_bitmap_set(bm, 0, 512);          /* bit 0 */
    dirty_bitmap_set(bm, 9 * 512, 1);      /* bit 9 */
    dirty_bitmap_set(bm, 99 * 512, 512);   /* bit 99, the last */
    memset(buf, 0xee, sizeof(buf));
    assert_int_equal(dirty_bitmap_serialized_size(100), 13);
    dirty_bitmap_serialize(bm, 0, 100, buf);
    assert_int_equal(buf[0], 0x01);
    assert_int_equal(buf[1], 0x02);
    assert_int_equal(buf[12], 0x08);
    for (int i = 2; i < 12; i++) {
        assert_int_equal(buf[i], 0);
    }
    assert_int_equal(buf[13], 0xee);

    DirtyBitmap *copy = dirty_bitmap_new(100 * 512, 512);
    buf[12] |= 0xf0;                       /* tail bits past the disk are ignored */
    dirty_bitmap_deserialize(copy, 0, 100, buf);
    assert_int_equal(dirty_bitmap_count(copy), 3);
    assert_true(dirty_bitmap_get(copy, 99 * 512));
    dirty_bitmap_deserialize_ones(copy, 64, 36);
    assert_int_equal(dirty_bitmap_count(copy), 2 + 36);
    dirty_bitmap_free(copy);
    dirty_bitmap_free(bm);
}

static void test_merge_and_truncate(void **state)
{
    DirtyBitmap *fine = dirty_bitmap_new(4 * MiB, 4 * KiB);
    DirtyBitmap *coarse = dirty_bitmap_new(4 * MiB, 1 * MiB);
    dirty_bitmap_set(fine, 1 * MiB + 8 * KiB, 1);
    dirty_bitmap_merge(coarse, fine);
    assert_true(dirty_bitmap_get(coarse, 1 * MiB));
    assert_int_equal(dirty_bitmap_count(coarse), 1);
    dirty_bitmap_merge(fine, coarse);
    assert_int_equal(dirty_bitmap_count(fine), 256);

    assert_int_equal(dirty_bitmap_truncate(fine, 1 * MiB + 4 * KiB), 0);
    assert_int_equal(dirty_bitmap_count(fine), 1);
    assert_int_equal(dirty_bitmap_truncate(fine, 8 * MiB), 0);
    assert_int_equal(dirty_bitmap_count(fine), 1);
    assert_false(dirty_bitmap_get(fine, 1 * MiB + 4 * KiB));
    assert_int_equal(dirty_bitmap_size(fine), 8 * MiB);
    dirty_bitmap_free(fine);
    dirty_bitmap_free(coarse);
}

static void test_bad_granularity(void **state)
{
    assert_null(dirty_bitmap_new(1 * MiB, 3000));
    assert_null(dirty_bitmap_new(1 * MiB, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_rounds_to_granules),
        cmocka_unit_test(test_serialize_lsb_first),
        cmocka_unit_test(test_merge_and_truncate),
        cmocka_unit_test(test_bad_granularity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
