/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QMP's JSON parser: one message's tokens to a jansson value. Strings may be single- or
 * double-quoted and are checked as QEMU checks them (modified UTF-8: "\xC0\x80" is NUL;
 * no surrogates or noncharacters); integers too large for int64 become uint64 and then
 * doubles; the first error met is the one reported, in QEMU's words.
 */
#include "qmp/json-stream.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The text shown for a bad \u escape: the escape itself, at most this long. */
#define JSON_UESC_SHOWN 6
#define UNI_SURROGATE_HI_FIRST 0xD800
#define UNI_SURROGATE_HI_LAST 0xDBFF
#define UNI_SURROGATE_LO_FIRST 0xDC00
#define UNI_SURROGATE_LO_LAST 0xDFFF
#define UNI_NONCHAR_FIRST 0xFDD0
#define UNI_NONCHAR_LAST 0xFDEF
#define UNI_MAX 0x10FFFF

typedef struct ParseCtx {
    const char *text;
    const JsonToken *toks;
    size_t ntoks;
    size_t pos;
    char *err;
} ParseCtx;

/* Record the first error only; later ones are consequences of it. */
static void __attribute__((format(printf, 2, 3))) parse_error(ParseCtx *c, const char *fmt, ...)
{
    char msg[JSON_MAX_ERROR_MSG + 1];
    va_list ap;

    if (c->err) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (asprintf(&c->err, "JSON parse error, %s", msg) < 0) {
        abort();
    }
}

static const JsonToken *peek_token(ParseCtx *c)
{
    return c->pos < c->ntoks ? &c->toks[c->pos] : NULL;
}

static const JsonToken *pop_token(ParseCtx *c)
{
    return c->pos < c->ntoks ? &c->toks[c->pos++] : NULL;
}

json_t *json_u64_new(uint64_t v)
{
    char digits[24];
    snprintf(digits, sizeof(digits), "%" PRIu64, v);
    return json_pack("{ss}", JSON_U64_KEY, digits);
}

bool json_u64_get(const json_t *v, uint64_t *out)
{
    json_t *d;
    if (!json_is_object(v) || json_object_size(v) != 1 ||
        !(d = json_object_get(v, JSON_U64_KEY)) || !json_is_string(d)) {
        return false;
    }
    const char *digits = json_string_value(d);
    if (digits[0] < '0' || digits[0] > '9') {
        return false; /* an infinity */
    }
    *out = strtoull(digits, NULL, 10);
    return true;
}

/* Whether a code point may appear in a QMP string. */
static bool codepoint_ok(long cp)
{
    return cp >= 0 && cp <= UNI_MAX && (cp & 0xFFFE) != 0xFFFE &&
           !(cp >= UNI_NONCHAR_FIRST && cp <= UNI_NONCHAR_LAST) &&
           !(cp >= UNI_SURROGATE_HI_FIRST && cp <= UNI_SURROGATE_LO_LAST);
}

/*
 * Decode one UTF-8 sequence at s (n bytes left), accepting "\xC0\x80" for NUL. Returns
 * the code point (or -1 if invalid) and sets *used to the bytes consumed (at least 1).
 */
long json_utf8_decode(const unsigned char *s, size_t n, size_t *used)
{
    unsigned char b = s[0];
    int extra;
    long cp, min;

    *used = 1;
    if (b < 0x80) {
        return b;
    }
    if (b == 0xC0 && n >= 2 && s[1] == 0x80) {
        *used = 2;
        return 0;
    }
    if ((b & 0xE0) == 0xC0) {
        extra = 1, cp = b & 0x1F, min = 0x80;
    } else if ((b & 0xF0) == 0xE0) {
        extra = 2, cp = b & 0x0F, min = 0x800;
    } else if ((b & 0xF8) == 0xF0) {
        extra = 3, cp = b & 0x07, min = 0x10000;
    } else {
        return -1;
    }
    for (int i = 1; i <= extra; i++) {
        if ((size_t)i >= n || (s[i] & 0xC0) != 0x80) {
            *used = i;
            return -1;
        }
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    *used = extra + 1;
    if (cp < min || !codepoint_ok(cp)) {
        return -1;
    }
    return cp;
}

/* Append code point cp to out as UTF-8 (NUL as a real 0 byte). */
static size_t utf8_encode(long cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Four hex digits at p (up to end) as a number, or -1. */
static long hex4(const char *p, const char *end)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        if (p + i >= end) {
            return -1;
        }
        char ch = p[i];
        int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 :
                ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
        if (d < 0) {
            return -1;
        }
        v = v * 16 + d;
    }
    return v;
}

/* A string token (quotes included) to a jansson string, or NULL after parse_error. */
static json_t *parse_string(ParseCtx *c, const JsonToken *t)
{
    const char *p = c->text + t->off + 1;
    const char *end = c->text + t->off + t->len - 1; /* the closing quote */
    const char *tok_end = end + 1;
    char *out = malloc(t->len + 1);
    size_t n = 0;
    json_t *v = NULL;

    if (!out) {
        abort();
    }
    while (p < end) {
        if (*p != '\\') {
            size_t used;
            long cp = json_utf8_decode((const unsigned char *)p, end - p, &used);
            if (cp < 0) {
                parse_error(c, "invalid UTF-8 sequence in string");
                goto out;
            }
            n += utf8_encode(cp, out + n);
            p += used;
            continue;
        }
        const char *bs = p;
        p++;
        switch (*p) {
        case '"': out[n++] = '"'; p++; break;
        case '\'': out[n++] = '\''; p++; break;
        case '\\': out[n++] = '\\'; p++; break;
        case '/': out[n++] = '/'; p++; break;
        case 'b': out[n++] = '\b'; p++; break;
        case 'f': out[n++] = '\f'; p++; break;
        case 'n': out[n++] = '\n'; p++; break;
        case 'r': out[n++] = '\r'; p++; break;
        case 't': out[n++] = '\t'; p++; break;
        case 'u': {
            long cp = hex4(p + 1, end);
            p += 5;
            if (cp >= UNI_SURROGATE_HI_FIRST && cp <= UNI_SURROGATE_HI_LAST) {
                long lo = -1;
                if (p + 1 < end && p[0] == '\\' && p[1] == 'u') {
                    lo = hex4(p + 2, end);
                }
                if (lo >= UNI_SURROGATE_LO_FIRST && lo <= UNI_SURROGATE_LO_LAST) {
                    cp = 0x10000 + ((cp - UNI_SURROGATE_HI_FIRST) << 10) +
                         (lo - UNI_SURROGATE_LO_FIRST);
                    p += 6;
                } else {
                    cp = -1;
                }
            }
            if (!codepoint_ok(cp)) {
                int shown = tok_end - bs < JSON_UESC_SHOWN ? (int)(tok_end - bs)
                                                           : JSON_UESC_SHOWN;
                parse_error(c, "%.*s is not a valid Unicode character", shown, bs);
                goto out;
            }
            n += utf8_encode(cp, out + n);
            break;
        }
        default:
            parse_error(c, "invalid escape sequence in string");
            goto out;
        }
    }
    v = json_stringn_nocheck(out, n);
out:
    free(out);
    return v;
}

/* An integer or float token to a number value; QEMU's int64, uint64, double order. */
static json_t *parse_number(ParseCtx *c, const JsonToken *t)
{
    char *s = strndup(c->text + t->off, t->len);
    json_t *v;

    if (!s) {
        abort();
    }
    if (t->type == JSON_TOK_INTEGER) {
        errno = 0;
        long long i = strtoll(s, NULL, 10);
        if (errno == 0) {
            v = json_integer(i);
            goto out;
        }
        if (s[0] != '-') {
            errno = 0;
            unsigned long long u = strtoull(s, NULL, 10);
            if (errno == 0) {
                v = json_u64_new(u);
                goto out;
            }
        }
    }
    double d = strtod(s, NULL);
    v = json_real(d);
    if (!v) {
        /* jansson refuses infinities: keep them as the text QEMU prints for them */
        v = json_pack("{ss}", JSON_U64_KEY, d < 0 ? "-inf" : "inf");
    }
out:
    free(s);
    return v;
}

static json_t *parse_value(ParseCtx *c);

/* "key": value inside an object, added to obj. 0 or -1 after parse_error. */
static int parse_pair(ParseCtx *c, json_t *obj)
{
    const JsonToken *peek = peek_token(c);
    json_t *key = NULL, *value;
    const JsonToken *t;
    int ret = -1;

    if (!peek) {
        parse_error(c, "premature EOI");
        return -1;
    }
    key = parse_value(c);
    if (!key || !json_is_string(key)) {
        parse_error(c, "key is not a string in object");
        goto out;
    }
    t = pop_token(c);
    if (!t) {
        parse_error(c, "premature EOI");
        goto out;
    }
    if (t->type != JSON_TOK_COLON) {
        parse_error(c, "missing : in object pair");
        goto out;
    }
    value = parse_value(c);
    if (!value) {
        parse_error(c, "Missing value in dict");
        goto out;
    }
    if (json_object_getn(obj, json_string_value(key), json_string_length(key))) {
        json_decref(value);
        parse_error(c, "duplicate key");
        goto out;
    }
    json_object_setn_new_nocheck(obj, json_string_value(key), json_string_length(key), value);
    ret = 0;
out:
    json_decref(key);
    return ret;
}

/* One array element: a value, appended to arr; -1 after the error. */
static int parse_element(ParseCtx *c, json_t *arr)
{
    json_t *v = parse_value(c);
    if (!v) {
        parse_error(c, "expecting value");
        return -1;
    }
    json_array_append_new(arr, v);
    return 0;
}

/*
 * { ... } or [ ... ] with the opening token next: items (parse_pair or parse_element)
 * into container, comma separated, up to the close token. Frees container on error.
 */
static json_t *parse_container(ParseCtx *c, json_t *container, JsonTokenType close,
                               int (*parse_item)(ParseCtx *c, json_t *container),
                               const char *separator_error)
{
    const JsonToken *t;

    pop_token(c);
    t = peek_token(c);
    if (!t) {
        parse_error(c, "premature EOI");
        goto fail;
    }
    if (t->type == close) {
        pop_token(c);
        return container;
    }
    for (;;) {
        if (parse_item(c, container) < 0) {
            goto fail;
        }
        t = pop_token(c);
        if (!t) {
            parse_error(c, "premature EOI");
            goto fail;
        }
        if (t->type == close) {
            return container;
        }
        if (t->type != JSON_TOK_COMMA) {
            parse_error(c, "%s", separator_error);
            goto fail;
        }
    }
fail:
    json_decref(container);
    return NULL;
}

/* Any value at the current token. */
static json_t *parse_value(ParseCtx *c)
{
    const JsonToken *t = peek_token(c);

    if (!t) {
        parse_error(c, "premature EOI");
        return NULL;
    }
    switch (t->type) {
    case JSON_TOK_LCURLY:
        return parse_container(c, json_object(), JSON_TOK_RCURLY, parse_pair,
                               "expected separator in dict");
    case JSON_TOK_LSQUARE:
        return parse_container(c, json_array(), JSON_TOK_RSQUARE, parse_element,
                               "expected separator in list");
    case JSON_TOK_STRING:
        pop_token(c);
        return parse_string(c, t);
    case JSON_TOK_INTEGER:
    case JSON_TOK_FLOAT:
        pop_token(c);
        return parse_number(c, t);
    case JSON_TOK_KEYWORD: {
        const char *s = c->text + t->off;
        pop_token(c);
        if (t->len == 4 && !memcmp(s, "true", 4)) {
            return json_true();
        }
        if (t->len == 5 && !memcmp(s, "false", 5)) {
            return json_false();
        }
        if (t->len == 4 && !memcmp(s, "null", 4)) {
            return json_null();
        }
        parse_error(c, "invalid keyword '%.*s'", (int)t->len, s);
        return NULL;
    }
    default:
        parse_error(c, "expecting value");
        return NULL;
    }
}

json_t *json_parse_tokens(const char *text, const JsonToken *toks, size_t ntoks,
                          char **err_msg)
{
    ParseCtx c = { .text = text, .toks = toks, .ntoks = ntoks };
    json_t *v = parse_value(&c);

    if (c.err) {
        json_decref(v);
        *err_msg = c.err;
        return NULL;
    }
    *err_msg = NULL;
    return v;
}

bool json_is_raw_number(const json_t *v)
{
    json_t *d;
    return json_is_object(v) && json_object_size(v) == 1 &&
           (d = json_object_get(v, JSON_U64_KEY)) && json_is_string(d);
}
