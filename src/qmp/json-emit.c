/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QMP's JSON output, byte for byte as QEMU writes it. QEMU keeps object members in a
 * hash table of 512 buckets (the TDB string hash) and writes them bucket by bucket,
 * the most recently added first within a bucket; clients that compare output text,
 * not just parsed values, see the same member order from qkit.
 */
#include "qmp/json-stream.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QDICT_BUCKETS 512
#define TDB_HASH_SEED 0x238F13AFu
#define TDB_HASH_MUL 1103515243u
#define TDB_HASH_ADD 12345u
#define UNI_REPLACEMENT 0xFFFD
#define ASCII_DEL 0x7F

typedef struct EmitBuf {
    char *data;
    size_t len;
    size_t cap;
} EmitBuf;

/* Append n bytes. */
static void eb_put(EmitBuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        b->data = realloc(b->data, cap);
        if (!b->data) {
            abort();
        }
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void eb_puts(EmitBuf *b, const char *s)
{
    eb_put(b, s, strlen(s));
}

/* The bucket QEMU's QDict puts a key in. */
static unsigned qdict_bucket(const char *key, size_t len)
{
    uint32_t value = TDB_HASH_SEED * (uint32_t)len;
    for (size_t i = 0; i < len; i++) {
        value += (uint32_t)(unsigned char)key[i] << (i * 5 % 24);
    }
    return (TDB_HASH_MUL * value + TDB_HASH_ADD) % QDICT_BUCKETS;
}

typedef struct EmitMember {
    const char *key;
    size_t key_len;
    json_t *value;
    unsigned bucket;
    size_t order;
} EmitMember;

/* Sort: lower bucket first, then later insertion first. */
static int member_cmp(const void *a, const void *b)
{
    const EmitMember *x = a, *y = b;
    if (x->bucket != y->bucket) {
        return x->bucket < y->bucket ? -1 : 1;
    }
    return x->order > y->order ? -1 : x->order < y->order;
}

/* A string with QEMU's escapes; invalid UTF-8 becomes U+FFFD. */
static void emit_string(EmitBuf *b, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    char esc[32];

    eb_put(b, "\"", 1);
    while (p < end) {
        /* fast path: a run of printable ASCII that needs no escape (base64 data) */
        const unsigned char *run = p;
        while (run < end && *run >= 0x20 && *run < ASCII_DEL && *run != '"' && *run != '\\') {
            run++;
        }
        if (run > p) {
            eb_put(b, (const char *)p, run - p);
            p = run;
            continue;
        }
        size_t used;
        long cp = json_utf8_decode(p, end - p, &used);
        p += used;
        switch (cp) {
        case '"': eb_puts(b, "\\\""); continue;
        case '\\': eb_puts(b, "\\\\"); continue;
        case '\b': eb_puts(b, "\\b"); continue;
        case '\f': eb_puts(b, "\\f"); continue;
        case '\n': eb_puts(b, "\\n"); continue;
        case '\r': eb_puts(b, "\\r"); continue;
        case '\t': eb_puts(b, "\\t"); continue;
        default: break;
        }
        if (cp < 0) {
            cp = UNI_REPLACEMENT;
        }
        if (cp > 0xFFFF) {
            long v = cp - 0x10000;
            snprintf(esc, sizeof(esc), "\\u%04lX\\u%04lX", 0xD800 + (v >> 10),
                     0xDC00 + (v & 0x3FF));
            eb_puts(b, esc);
        } else if (cp < 0x20 || cp >= ASCII_DEL) {
            snprintf(esc, sizeof(esc), "\\u%04lX", cp);
            eb_puts(b, esc);
        } else {
            char c = (char)cp;
            eb_put(b, &c, 1);
        }
    }
    eb_put(b, "\"", 1);
}

static void emit_value(EmitBuf *b, const json_t *v);

/* An object's members in QDict order. */
static void emit_object(EmitBuf *b, const json_t *v)
{
    size_t n = json_object_size(v), i = 0;
    EmitMember *m;
    const char *key;
    size_t key_len;
    json_t *val;

    if (n == 0) {
        eb_puts(b, "{}");
        return;
    }
    m = calloc(n, sizeof(*m));
    if (!m) {
        abort();
    }
    json_object_keylen_foreach((json_t *)v, key, key_len, val) {
        m[i] = (EmitMember){ key, key_len, val, qdict_bucket(key, key_len), i };
        i++;
    }
    qsort(m, n, sizeof(*m), member_cmp);
    eb_put(b, "{", 1);
    for (i = 0; i < n; i++) {
        if (i) {
            eb_puts(b, ", ");
        }
        emit_string(b, m[i].key, m[i].key_len);
        eb_puts(b, ": ");
        emit_value(b, m[i].value);
    }
    eb_put(b, "}", 1);
    free(m);
}

static void emit_value(EmitBuf *b, const json_t *v)
{
    char num[64];

    switch (json_typeof(v)) {
    case JSON_OBJECT:
        if (json_is_raw_number(v)) {
            eb_puts(b, json_string_value(json_object_get(v, JSON_U64_KEY)));
        } else {
            emit_object(b, v);
        }
        break;
    case JSON_ARRAY:
        eb_put(b, "[", 1);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i) {
                eb_puts(b, ", ");
            }
            emit_value(b, json_array_get(v, i));
        }
        eb_put(b, "]", 1);
        break;
    case JSON_STRING:
        emit_string(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        eb_puts(b, num);
        break;
    case JSON_REAL:
        snprintf(num, sizeof(num), "%.17g", json_real_value(v));
        eb_puts(b, num);
        break;
    case JSON_TRUE:
        eb_puts(b, "true");
        break;
    case JSON_FALSE:
        eb_puts(b, "false");
        break;
    case JSON_NULL:
        eb_puts(b, "null");
        break;
    }
}

char *json_emit(const json_t *v, size_t *len)
{
    EmitBuf b = { 0 };
    emit_value(&b, v);
    if (len) {
        *len = b.len;
    }
    return b.data;
}

const char **json_qdict_keys(const json_t *obj, size_t *n)
{
    size_t count = json_object_size(obj), i = 0;
    EmitMember *m = calloc(count + 1, sizeof(*m));
    const char **keys = calloc(count + 1, sizeof(*keys));
    const char *key;
    size_t key_len;
    json_t *val;

    if (!m || !keys) {
        abort();
    }
    json_object_keylen_foreach((json_t *)obj, key, key_len, val) {
        m[i] = (EmitMember){ key, key_len, val, qdict_bucket(key, key_len), i };
        i++;
    }
    qsort(m, count, sizeof(*m), member_cmp);
    for (i = 0; i < count; i++) {
        keys[i] = m[i].key;
    }
    free(m);
    *n = count;
    return keys;
}
