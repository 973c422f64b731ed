/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QMP's JSON input stream: bytes arrive in any pieces; complete top-level values come out
 * one at a time as jansson values, with QEMU's lexer extensions ('single-quoted' strings),
 * its error recovery (a stray byte such as 0xFF or a control character resyncs the
 * parser), its limits (token size, token count, nesting depth) and its exact messages.
 */
#ifndef QMP_JSON_STREAM_H
#define QMP_JSON_STREAM_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest total size of one message's tokens, and of any single token. */
#define JSON_MAX_TOKEN_SIZE (64ULL << 20)
/* Most tokens in one message. */
#define JSON_MAX_TOKEN_COUNT (2ULL << 20)
/* Deepest nesting of objects and arrays. */
#define JSON_MAX_NESTING 1024
/* Parser messages are cut to this many bytes, as QEMU's are. */
#define JSON_MAX_ERROR_MSG 1023

typedef enum JsonTokenType {
    JSON_TOK_LCURLY,
    JSON_TOK_RCURLY,
    JSON_TOK_LSQUARE,
    JSON_TOK_RSQUARE,
    JSON_TOK_COLON,
    JSON_TOK_COMMA,
    JSON_TOK_INTEGER,
    JSON_TOK_FLOAT,
    JSON_TOK_KEYWORD,
    JSON_TOK_STRING,
    JSON_TOK_ERROR,
    JSON_TOK_PARTIAL, /* a token cut off by the size limit */
} JsonTokenType;

typedef struct JsonToken {
    JsonTokenType type;
    size_t off; /* into the stream's token text buffer */
    size_t len;
} JsonToken;

/*
 * Called once per message: exactly one of value (owned by the callee) and err_msg
 * (a complete "desc" text, valid during the call) is non-NULL.
 */
typedef void JsonEmitFn(void *opaque, json_t *value, const char *err_msg);

typedef struct JsonStream JsonStream;

JsonStream *json_stream_new(JsonEmitFn *emit, void *opaque);
void json_stream_free(JsonStream *js);
/* Feed bytes; emits every message they complete. */
void json_stream_feed(JsonStream *js, const void *buf, size_t len);
/* Forget any partial message and lexer state (a new client on a socket). */
void json_stream_reset(JsonStream *js);

/*
 * Parse one message's tokens (text holds their bytes). Returns the value, or NULL with
 * *err_msg set to a malloc'd "JSON parse error, ..." text.
 */
json_t *json_parse_tokens(const char *text, const JsonToken *toks, size_t ntoks,
                          char **err_msg);

/*
 * Integers above INT64_MAX and infinities have no jansson type: they travel as a
 * one-member object with this key holding the number's text ("18446744073709551615",
 * "inf"), printed as a bare number by the emitter and known to the argument checks.
 */
#define JSON_U64_KEY "\001u64"
json_t *json_u64_new(uint64_t v);
/* True and *out set if v is such a wrapped uint64 (not an infinity). */
bool json_u64_get(const json_t *v, uint64_t *out);

/* True if v is a wrapped number of either kind. */
bool json_is_raw_number(const json_t *v);
/* Decode one UTF-8 sequence (QEMU's rules); the code point or -1, *used >= 1 bytes. */
long json_utf8_decode(const unsigned char *s, size_t n, size_t *used);
/*
 * Serialise v as QEMU does: ", " and ": " separators, object members in QDict's hash
 * order, non-ASCII as \uXXXX, doubles as %.17g. Returns a malloc'd string (*len bytes).
 */
char *json_emit(const json_t *v, size_t *len);
/* Keys of an object in the order QEMU's QDict iterates them; free() the array. */
const char **json_qdict_keys(const json_t *obj, size_t *n);

#endif
