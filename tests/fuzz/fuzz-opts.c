/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer target for the option parsers that take user text: -o lists (qopts_parse),
 * --image-opts key=value strings (qdict_from_keyval), "json:{...}" filenames
 * (qdict_from_json_filename) and size strings (qkit_strtosz). Built by scripts/fuzz.sh.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qkit/cutils.h"
#include "qkit/error.h"
#include "qkit/opts.h"

/* Longest input worth parsing: option strings on a command line are short. */
#define FUZZ_OPTS_MAX_INPUT 4096
#define FUZZ_JSON_PREFIX "json:"

/* A create-options table like a format's, so validation has known and unknown keys. */
static const QOptDesc fuzz_opts_desc[] = {
    { "size", QOPT_SIZE, "Virtual disk size", NULL },
    { "cluster_size", QOPT_SIZE, "qcow2 cluster size", "65536" },
    { "lazy_refcounts", QOPT_BOOL, "Postpone refcount updates", "off" },
    { "refcount_bits", QOPT_NUMBER, "Width of a reference count entry", "16" },
    { "backing_file", QOPT_STRING, "File name of a base image", NULL },
    { NULL, QOPT_STRING, NULL, NULL },
};

/* Read every typed getter for every key, as the create and amend paths do. */
static void fuzz_opts_qopts(const char *str)
{
    static const QOptDesc *const tables[] = { fuzz_opts_desc, NULL };
    QOpts *o = qopts_new();
    Error *err = NULL;
    uint64_t u;
    bool b;

    (void)qopts_is_help(str);
    if (qopts_parse(o, str, &err) == 0) {
        for (int i = 0; i < qopts_count(o); i++) {
            const char *name = qopts_name_at(o, i);
            (void)qopts_value_at(o, i);
            (void)qopts_get(o, name);
            Error *e1 = NULL, *e2 = NULL, *e3 = NULL;
            qopts_get_size(o, name, 0, &u, &e1);
            qopts_get_number(o, name, 0, &u, &e2);
            qopts_get_bool(o, name, false, &b, &e3);
            error_free(e1);
            error_free(e2);
            error_free(e3);
        }
        qopts_validate(o, tables, &err);
        if (qopts_count(o) > 0) {
            qopts_del(o, qopts_name_at(o, 0));
        }
    }
    error_free(err);
    qopts_free(o);
}

/* Walk a parsed option dictionary with the typed getters the block layer uses. */
static void fuzz_opts_walk(json_t *d)
{
    const char *key;
    json_t *val;
    int64_t i64;
    bool b;

    json_object_foreach(d, key, val) {
        Error *e1 = NULL, *e2 = NULL;
        (void)qdict_get_str(d, key);
        qdict_get_int_opt(d, key, 0, &i64, &e1);
        qdict_get_bool_opt(d, key, false, &b, &e2);
        error_free(e1);
        error_free(e2);
        json_t *sub = qdict_get_obj(d, key);
        if (sub) {
            if (json_is_object(sub)) {
                fuzz_opts_walk(sub);
            }
            json_decref(sub);
        }
    }
}

/* Parse the text as a keyval string and as the body of a json: filename. */
static void fuzz_opts_qdict(const char *str, size_t len)
{
    Error *err = NULL;
    json_t *d = qdict_from_keyval(str, &err);
    if (d) {
        fuzz_opts_walk(d);
        json_decref(d);
    }
    error_free(err);
    err = NULL;

    char *json = malloc(sizeof(FUZZ_JSON_PREFIX) + len);
    memcpy(json, FUZZ_JSON_PREFIX, sizeof(FUZZ_JSON_PREFIX) - 1);
    memcpy(json + sizeof(FUZZ_JSON_PREFIX) - 1, str, len + 1);
    d = qdict_from_json_filename(json, &err);
    if (d) {
        fuzz_opts_walk(d);
        json_decref(d);
    }
    error_free(err);
    free(json);
}

/* Size strings and the other number parsers behind -o and command arguments. */
static void fuzz_opts_numbers(const char *str)
{
    uint64_t u;
    int64_t i;
    bool b;
    if (qkit_strtosz(str, 'B', &u) == 0) {
        free(qkit_size_to_str(u));
    }
    qkit_strtosz(str, 'M', &u);
    qkit_strtoi64(str, &i);
    qkit_strtou64(str, &u);
    qkit_strtobool(str, &b);
}

/* libFuzzer entry point: one NUL-terminated copy of the input goes to every parser. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_OPTS_MAX_INPUT) {
        return 0;
    }
    char *str = malloc(size + 1);
    memcpy(str, data, size);
    str[size] = '\0';
    size_t len = strlen(str);

    fuzz_opts_qopts(str);
    fuzz_opts_qdict(str, len);
    fuzz_opts_numbers(str);
    free(str);
    return 0;
}
