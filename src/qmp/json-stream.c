/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The lexer and the message splitter of QMP's JSON input. The lexer turns bytes into
 * tokens; the splitter collects tokens until the braces and brackets balance, then hands
 * them to the parser. Both mirror QEMU's observable behaviour: which bytes are stray,
 * where recovery resumes, and the limits that keep one message from eating the agent.
 */
#include "qmp/json-stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Lexer states; the ones that may end a token name the token they end. */
typedef enum LexState {
    LEX_START,
    LEX_WHITESPACE,
    LEX_DQ_STRING,
    LEX_DQ_ESCAPE,
    LEX_SQ_STRING,
    LEX_SQ_ESCAPE,
    LEX_ZERO,          /* "0" or "-0" */
    LEX_NONZERO,       /* integer digits */
    LEX_NEG,           /* "-" */
    LEX_MANTISSA,      /* "1." needs a digit */
    LEX_MANTISSA_DIGITS,
    LEX_EXP_E,         /* "1e" needs a sign or digit */
    LEX_EXP_SIGN,      /* "1e+" needs a digit */
    LEX_EXP_DIGITS,
    LEX_KEYWORD,
    LEX_RECOVERY,      /* after a stray byte: skip to a resync point */
} LexState;

/* Lowest and highest bytes a string may hold raw (control bytes and 0xFE/0xFF may not). */
#define LEX_STRING_MIN 0x20
#define LEX_STRING_MAX 0xFD
/* Bytes that can never start or continue UTF-8; clients send them to resync. */
#define LEX_RESYNC_FE 0xFE

typedef struct GrowBuf {
    char *data;
    size_t len;
    size_t cap;
} GrowBuf;

struct JsonStream {
    JsonEmitFn *emit;
    void *opaque;
    /* lexer */
    LexState state;
    GrowBuf cur;
    /* splitter */
    GrowBuf text;
    JsonToken *toks;
    size_t ntoks;
    size_t toks_cap;
    int brace_count;
    int bracket_count;
    uint64_t token_size;
};

/* Make room for n more bytes; aborts on allocation failure like the rest of qkit. */
static void growbuf_reserve(GrowBuf *b, size_t n)
{
    if (b->len + n + 1 <= b->cap) {
        return;
    }
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n + 1) {
        cap *= 2;
    }
    b->data = realloc(b->data, cap);
    if (!b->data) {
        abort();
    }
    b->cap = cap;
}

/* Append bytes, keeping the buffer NUL-terminated. */
static void growbuf_append(GrowBuf *b, const char *p, size_t n)
{
    growbuf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

/* Drop the contents; keep a small allocation, free a large one. */
static void growbuf_clear(GrowBuf *b)
{
    if (b->cap > (1 << 20)) {
        free(b->data);
        b->data = NULL;
        b->cap = 0;
    }
    b->len = 0;
    if (b->data) {
        b->data[0] = '\0';
    }
}

JsonStream *json_stream_new(JsonEmitFn *emit, void *opaque)
{
    JsonStream *js = calloc(1, sizeof(*js));
    if (!js) {
        abort();
    }
    js->emit = emit;
    js->opaque = opaque;
    return js;
}

void json_stream_free(JsonStream *js)
{
    if (!js) {
        return;
    }
    free(js->cur.data);
    free(js->text.data);
    free(js->toks);
    free(js);
}

/* Forget the collected tokens of the message being split. */
static void splitter_reset(JsonStream *js)
{
    js->brace_count = 0;
    js->bracket_count = 0;
    js->ntoks = 0;
    js->token_size = 0;
    growbuf_clear(&js->text);
    if (js->toks_cap > 4096) {
        free(js->toks);
        js->toks = NULL;
        js->toks_cap = 0;
    }
}

void json_stream_reset(JsonStream *js)
{
    splitter_reset(js);
    growbuf_clear(&js->cur);
    js->state = LEX_START;
}

/* Report an error for the message being split, then start a new message. */
static void splitter_emit_error(JsonStream *js, const char *msg)
{
    splitter_reset(js);
    js->emit(js->opaque, NULL, msg);
}

/* Called by the lexer with each finished token (whitespace excluded). */
static void splitter_token(JsonStream *js, JsonTokenType type, const char *p, size_t len)
{
    switch (type) {
    case JSON_TOK_LCURLY:
        js->brace_count++;
        break;
    case JSON_TOK_RCURLY:
        js->brace_count--;
        break;
    case JSON_TOK_LSQUARE:
        js->bracket_count++;
        break;
    case JSON_TOK_RSQUARE:
        js->bracket_count--;
        break;
    case JSON_TOK_ERROR: {
        /* The token is shown up to its first NUL byte, as a C string. */
        char *msg = NULL;
        if (asprintf(&msg, "JSON parse error, stray '%.*s'", (int)strnlen(p, len), p) < 0) {
            abort();
        }
        splitter_emit_error(js, msg);
        free(msg);
        return;
    }
    default:
        break;
    }

    if (js->token_size + len + 1 > JSON_MAX_TOKEN_SIZE) {
        splitter_emit_error(js, "JSON token size limit exceeded");
        return;
    }
    if (js->ntoks + 1 > JSON_MAX_TOKEN_COUNT) {
        splitter_emit_error(js, "JSON token count limit exceeded");
        return;
    }
    if (js->brace_count + js->bracket_count > JSON_MAX_NESTING) {
        splitter_emit_error(js, "JSON nesting depth limit exceeded");
        return;
    }

    if (js->ntoks == js->toks_cap) {
        js->toks_cap = js->toks_cap ? js->toks_cap * 2 : 64;
        js->toks = realloc(js->toks, js->toks_cap * sizeof(*js->toks));
        if (!js->toks) {
            abort();
        }
    }
    js->toks[js->ntoks++] = (JsonToken){ type, js->text.len, len };
    growbuf_append(&js->text, p, len);
    js->token_size += len;

    if ((js->brace_count > 0 || js->bracket_count > 0) &&
        js->brace_count >= 0 && js->bracket_count >= 0) {
        return;
    }

    char *err = NULL;
    json_t *v = json_parse_tokens(js->text.data, js->toks, js->ntoks, &err);
    splitter_reset(js);
    js->emit(js->opaque, v, err);
    free(err);
}

/* Pass the current token on and start a new one. */
static void lex_finish(JsonStream *js, JsonTokenType type)
{
    splitter_token(js, type, js->cur.data ? js->cur.data : "", js->cur.len);
    growbuf_clear(&js->cur);
    js->state = LEX_START;
}

/* The byte c cannot continue the current token: it is stray, with what came before. */
static void lex_error(JsonStream *js, char c)
{
    growbuf_append(&js->cur, &c, 1);
    splitter_token(js, JSON_TOK_ERROR, js->cur.data, js->cur.len);
    growbuf_clear(&js->cur);
    js->state = LEX_RECOVERY;
}

static bool lex_is_structural(unsigned char c)
{
    return c == '{' || c == '}' || c == '[' || c == ']' || c == ',' || c == ':';
}

static bool lex_is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool lex_is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* A byte in the start state: a one-byte token, the first byte of a longer one, or stray. */
static void lex_start(JsonStream *js, unsigned char c)
{
    static const JsonTokenType single[256] = {
        ['{'] = JSON_TOK_LCURLY, ['}'] = JSON_TOK_RCURLY, ['['] = JSON_TOK_LSQUARE,
        [']'] = JSON_TOK_RSQUARE, [':'] = JSON_TOK_COLON, [','] = JSON_TOK_COMMA,
    };
    char ch = (char)c;

    if (lex_is_structural(c)) {
        growbuf_append(&js->cur, &ch, 1);
        lex_finish(js, single[c]);
        return;
    }
    if (lex_is_space(c)) {
        js->state = LEX_WHITESPACE;
        return;
    }
    if (c == '"' || c == '\'' || c == '-' || lex_is_digit(c) || (c >= 'a' && c <= 'z')) {
        growbuf_append(&js->cur, &ch, 1);
        js->state = c == '"' ? LEX_DQ_STRING : c == '\'' ? LEX_SQ_STRING :
                    c == '-' ? LEX_NEG : c == '0' ? LEX_ZERO :
                    lex_is_digit(c) ? LEX_NONZERO : LEX_KEYWORD;
        return;
    }
    lex_error(js, ch);
}

/*
 * One byte through the lexer. Returns true when the byte was used, false when it ended
 * the previous token without being part of it and must be looked at again.
 */
static bool lex_byte(JsonStream *js, unsigned char c)
{
    char ch = (char)c;

    switch (js->state) {
    case LEX_START:
        lex_start(js, c);
        return true;
    case LEX_WHITESPACE:
        if (lex_is_space(c)) {
            return true;
        }
        js->state = LEX_START;
        return false;
    case LEX_DQ_STRING:
    case LEX_SQ_STRING: {
        char quote = js->state == LEX_DQ_STRING ? '"' : '\'';
        if (c < LEX_STRING_MIN || c > LEX_STRING_MAX) {
            lex_error(js, ch);
        } else if (ch == quote) {
            growbuf_append(&js->cur, &ch, 1);
            lex_finish(js, JSON_TOK_STRING);
        } else {
            growbuf_append(&js->cur, &ch, 1);
            if (ch == '\\') {
                js->state = js->state == LEX_DQ_STRING ? LEX_DQ_ESCAPE : LEX_SQ_ESCAPE;
            }
        }
        return true;
    }
    case LEX_DQ_ESCAPE:
    case LEX_SQ_ESCAPE:
        if (c < LEX_STRING_MIN || c > LEX_STRING_MAX) {
            lex_error(js, ch);
        } else {
            growbuf_append(&js->cur, &ch, 1);
            js->state = js->state == LEX_DQ_ESCAPE ? LEX_DQ_STRING : LEX_SQ_STRING;
        }
        return true;
    case LEX_NEG:
        if (lex_is_digit(c)) {
            growbuf_append(&js->cur, &ch, 1);
            js->state = c == '0' ? LEX_ZERO : LEX_NONZERO;
        } else {
            lex_error(js, ch);
        }
        return true;
    case LEX_ZERO:
    case LEX_NONZERO:
        if (lex_is_digit(c)) {
            if (js->state == LEX_ZERO) {
                lex_error(js, ch);
            } else {
                growbuf_append(&js->cur, &ch, 1);
            }
            return true;
        }
        if (c == '.' || c == 'e' || c == 'E') {
            growbuf_append(&js->cur, &ch, 1);
            js->state = c == '.' ? LEX_MANTISSA : LEX_EXP_E;
            return true;
        }
        lex_finish(js, JSON_TOK_INTEGER);
        return false;
    case LEX_MANTISSA:
    case LEX_EXP_SIGN:
        if (lex_is_digit(c)) {
            growbuf_append(&js->cur, &ch, 1);
            js->state = js->state == LEX_MANTISSA ? LEX_MANTISSA_DIGITS : LEX_EXP_DIGITS;
        } else {
            lex_error(js, ch);
        }
        return true;
    case LEX_MANTISSA_DIGITS:
        if (lex_is_digit(c) || c == 'e' || c == 'E') {
            growbuf_append(&js->cur, &ch, 1);
            if (!lex_is_digit(c)) {
                js->state = LEX_EXP_E;
            }
            return true;
        }
        lex_finish(js, JSON_TOK_FLOAT);
        return false;
    case LEX_EXP_E:
        if (lex_is_digit(c) || c == '+' || c == '-') {
            growbuf_append(&js->cur, &ch, 1);
            js->state = lex_is_digit(c) ? LEX_EXP_DIGITS : LEX_EXP_SIGN;
        } else {
            lex_error(js, ch);
        }
        return true;
    case LEX_EXP_DIGITS:
        if (lex_is_digit(c)) {
            growbuf_append(&js->cur, &ch, 1);
            return true;
        }
        lex_finish(js, JSON_TOK_FLOAT);
        return false;
    case LEX_KEYWORD:
        if (c >= 'a' && c <= 'z') {
            growbuf_append(&js->cur, &ch, 1);
            return true;
        }
        lex_finish(js, JSON_TOK_KEYWORD);
        return false;
    case LEX_RECOVERY:
        /* Resume at a structural byte, a control byte other than tab, or 0xFE/0xFF. */
        if (lex_is_structural(c) || (c < LEX_STRING_MIN && c != '\t') || c >= LEX_RESYNC_FE) {
            js->state = LEX_START;
            return false;
        }
        return true;
    }
    return true;
}

void json_stream_feed(JsonStream *js, const void *buf, size_t len)
{
    const unsigned char *p = buf;

    for (size_t i = 0; i < len; i++) {
        while (!lex_byte(js, p[i])) {
            /* looked at again in the new state */
        }
        /* No single token may grow without bound. */
        if (js->cur.len > JSON_MAX_TOKEN_SIZE) {
            lex_finish(js, JSON_TOK_PARTIAL);
        }
    }
}
