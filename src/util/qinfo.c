/* SPDX-License-Identifier: GPL-2.0-or-later */
/* QDict key order, the human tree of info objects and the probed-raw warning of the tools. */
#include "qkit/qinfo.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * QEMU's QDict keeps keys in a fixed-size hash table and iterates bucket by
 * bucket, newest key first inside a bucket.
 */
#define QDICT_BUCKETS 512
#define QDICT_HASH_SEED 0x238F13AFu
#define QDICT_HASH_MUL 1103515243u
#define QDICT_HASH_ADD 12345u
#define QDICT_HASH_SHIFT_MOD 24
/* Spaces per nesting level of the human tree. */
#define QINFO_HUMAN_INDENT 4

/* The bucket a key falls in within QEMU's QDict hash table. */
static unsigned qinfo_qdict_bucket(const char *key)
{
    uint32_t v = QDICT_HASH_SEED * (uint32_t)strlen(key);
    for (unsigned i = 0; key[i]; i++) {
        v += (uint32_t)(unsigned char)key[i] << (i * 5 % QDICT_HASH_SHIFT_MOD);
    }
    return (QDICT_HASH_MUL * v + QDICT_HASH_ADD) % QDICT_BUCKETS;
}

/* qsort order reproducing QEMU's dictionary iteration. */
static int qinfo_cmp_dict_key(const void *a, const void *b)
{
    const QkitDictKey *ka = a, *kb = b;
    if (ka->bucket != kb->bucket) {
        return ka->bucket < kb->bucket ? -1 : 1;
    }
    /* Later insertions come first inside a bucket. */
    return ka->index > kb->index ? -1 : (ka->index < kb->index ? 1 : 0);
}

/* Called by every dump that prints an object's members as QEMU would. */
QkitDictKey *qkit_dict_keys_ordered(json_t *obj, size_t *count)
{
    size_t n = json_object_size(obj);
    QkitDictKey *keys = calloc(n ? n : 1, sizeof(*keys));
    if (!keys) {
        abort();
    }
    const char *key;
    json_t *value;
    size_t i = 0;
    json_object_foreach(obj, key, value) {
        keys[i] = (QkitDictKey){ key, value, qinfo_qdict_bucket(key), i };
        i++;
    }
    qsort(keys, n, sizeof(*keys), qinfo_cmp_dict_key);
    *count = n;
    return keys;
}

static void qinfo_dump_value(FILE *f, json_t *v, int level);

/* One "label: value" line, or "label:" and the nested entries below it. */
static void qinfo_dump_entry(FILE *f, const char *label, json_t *v, int level)
{
    bool composite = json_is_object(v) || json_is_array(v);
    fprintf(f, "%*s%s:%c", level * QINFO_HUMAN_INDENT, "", label, composite ? '\n' : ' ');
    qinfo_dump_value(f, v, level + 1);
    if (!composite) {
        fputc('\n', f);
    }
}

/* The members of an object in QDict order, '-' in keys shown as ' '. */
static void qinfo_dump_dict(FILE *f, json_t *obj, int level)
{
    size_t n;
    QkitDictKey *keys = qkit_dict_keys_ordered(obj, &n);
    for (size_t i = 0; i < n; i++) {
        char *label = strdup(keys[i].key);
        if (!label) {
            abort();
        }
        for (char *p = label; *p; p++) {
            if (*p == '-') {
                *p = ' ';
            }
        }
        qinfo_dump_entry(f, label, keys[i].value, level);
        free(label);
    }
    free(keys);
}

/* List items as "[N]: value" lines. */
static void qinfo_dump_list(FILE *f, json_t *arr, int level)
{
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e) {
        char label[32];
        snprintf(label, sizeof(label), "[%zu]", i);
        qinfo_dump_entry(f, label, e, level);
    }
}

/* One value of the human tree: scalars inline, containers nested. */
static void qinfo_dump_value(FILE *f, json_t *v, int level)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        qinfo_dump_dict(f, v, level);
        break;
    case JSON_ARRAY:
        qinfo_dump_list(f, v, level);
        break;
    case JSON_STRING:
        fputs(json_string_value(v), f);
        break;
    case JSON_INTEGER:
        fprintf(f, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL:
        fprintf(f, "%.17g", json_real_value(v));
        break;
    case JSON_TRUE:
        fputs("true", f);
        break;
    case JSON_FALSE:
        fputs("false", f);
        break;
    case JSON_NULL:
        fputs("null", f);
        break;
    }
}

/* Called by info (qkit-img and qkit-io) for "Format specific information". */
void qkit_dump_human_tree(FILE *f, json_t *obj, int level)
{
    qinfo_dump_value(f, obj, level);
}

/* Called by a tool that opened an image read-write without a format and got raw. */
void qkit_warn_probed_raw(const char *filename)
{
    fprintf(stderr, "WARNING: Image format was not specified for '%s' and probing "
            "guessed raw.\n"
            "         Automatically detecting the format is dangerous for raw images, "
            "write operations on block 0 will be restricted.\n"
            "         Specify the 'raw' format explicitly to remove the restrictions.\n",
            filename);
}
