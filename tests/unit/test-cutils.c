/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests for size parsing and printing and for -o option lists. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "qkit/cutils.h"
#include "qkit/opts.h"

static void test_strtosz(void **state)
{
    uint64_t v;
    assert_int_equal(qkit_strtosz("512", 0, &v), 0);
    assert_int_equal(v, 512);
    assert_int_equal(qkit_strtosz("64k", 0, &v), 0);
    assert_int_equal(v, 65536);
    assert_int_equal(qkit_strtosz("1.5G", 0, &v), 0);
    assert_int_equal(v, 3ULL << 29);
    assert_int_equal(qkit_strtosz("1T", 0, &v), 0);
    assert_int_equal(v, 1ULL << 40);
    assert_int_equal(qkit_strtosz("0x1000", 0, &v), 0);
    assert_int_equal(v, 4096);
    assert_int_equal(qkit_strtosz("-1", 0, &v), -EINVAL);
    assert_int_equal(qkit_strtosz("12Q", 0, &v), -EINVAL);
    assert_int_equal(qkit_strtosz("", 0, &v), -EINVAL);
    assert_int_equal(qkit_strtosz("16E", 0, &v), -ERANGE);
    assert_int_equal(qkit_strtosz("0.9e16T", 0, &v), -EINVAL);
    assert_int_equal(qkit_strtosz("0.5", 0, &v), -EINVAL);
    assert_int_equal(qkit_strtosz("+1M", 0, &v), 0);
    assert_int_equal(v, 1ULL << 20);
    assert_int_equal(qkit_strtosz("0x10k", 0, &v), 0);
    assert_int_equal(v, 16384);
    assert_true(qkit_size_is_hex_with_suffix("0x10k"));
    assert_false(qkit_size_is_hex_with_suffix("0x10"));
    assert_int_equal(qkit_strtosz("0x1.8k", 0, &v), -EINVAL);
}

static void test_size_to_str(void **state)
{
    static const struct { uint64_t v; const char *s; } cases[] = {
        { 0, "0 B" }, { 512, "512 B" }, { 65536, "64 KiB" }, { 1ULL << 30, "1 GiB" },
        { 3ULL << 29, "1.5 GiB" }, { 1000, "0.977 KiB" }, { 200704, "196 KiB" },
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        char *s = qkit_size_to_str(cases[i].v);
        assert_string_equal(s, cases[i].s);
        free(s);
    }
}

static void test_qopts(void **state)
{
    QOpts *o = qopts_new();
    assert_int_equal(qopts_parse(o, "size=1G,backing_file=a,,b,compat=0.10", NULL), 0);
    assert_string_equal(qopts_get(o, "backing_file"), "a,b");
    uint64_t size;
    assert_int_equal(qopts_get_size(o, "size", 0, &size, NULL), 0);
    assert_int_equal(size, 1ULL << 30);
    static const QOptDesc descs[] = {
        { "size", QOPT_SIZE, "", NULL }, { "backing_file", QOPT_STRING, "", NULL }, { NULL },
    };
    const QOptDesc *tables[] = { descs, NULL };
    Error *err = NULL;
    assert_int_equal(qopts_validate(o, tables, &err), -EINVAL);
    assert_string_equal(error_get_pretty(err), "Invalid parameter 'compat'");
    error_free(err);
    qopts_free(o);
}

static void test_keyval(void **state)
{
    json_t *d = qdict_from_keyval("driver=qcow2,file.filename=/x,,y", NULL);
    assert_non_null(d);
    assert_string_equal(qdict_get_str(d, "driver"), "qcow2");
    json_t *f = json_object_get(d, "file");
    assert_string_equal(qdict_get_str(f, "filename"), "/x,y");
    json_decref(d);
    d = qdict_from_json_filename("json:{\"driver\":\"raw\",\"file.filename\":\"/a\"}", NULL);
    assert_non_null(d);
    assert_string_equal(qdict_get_str(json_object_get(d, "file"), "filename"), "/a");
    json_decref(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strtosz),
        cmocka_unit_test(test_size_to_str),
        cmocka_unit_test(test_qopts),
        cmocka_unit_test(test_keyval),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
