/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer target for the QMP JSON stream (lexer, splitter, parser), the emitter and
 * the dispatcher's request and argument checks: the input is fed in pieces whose sizes
 * come from its first byte, every message is dispatched against a small command table
 * and every reply serialised. Built by scripts/fuzz.sh.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qmp/qmp.h"

/* Inputs past this size only repeat what smaller ones reach, slower. */
#define FUZZ_QMP_MAX_INPUT (256 * 1024)

/* A command that echoes its arguments, so every checked value is serialised again. */
static json_t *fuzz_echo(void *opaque, json_t *args, Error **errp)
{
    if (qmp_has(args, "fail")) {
        error_setg(errp, "failed as asked");
        return NULL;
    }
    return json_incref(args);
}

static const char *const fuzz_whence[] = { "set", "cur", "end", NULL };
static const QmpArg fuzz_member[] = {
    { "id", QMP_T_INT }, { "big", QMP_T_UINT64, QMP_ARG_OPTIONAL },
    { "flag", QMP_T_BOOL, QMP_ARG_OPTIONAL }, { NULL },
};
static const QmpArg fuzz_args[] = {
    { "id", QMP_T_INT, QMP_ARG_OPTIONAL },
    { "name", QMP_T_STR, QMP_ARG_OPTIONAL },
    { "num", QMP_T_NUMBER, QMP_ARG_OPTIONAL },
    { "list", QMP_T_STR, QMP_ARG_OPTIONAL | QMP_ARG_LIST },
    { "objs", QMP_T_OBJECT, QMP_ARG_OPTIONAL | QMP_ARG_LIST, fuzz_member },
    { "whence", QMP_T_INT_OR_ENUM, QMP_ARG_OPTIONAL, NULL, fuzz_whence, "GuestFileWhence" },
    { "fail", QMP_T_BOOL, QMP_ARG_OPTIONAL },
    { NULL },
};
static const QmpCommandDef fuzz_cmds[] = {
    { "echo", fuzz_echo, fuzz_args },
    { "quiet", fuzz_echo, fuzz_args, true },
    { NULL },
};

/* Each message or error from the stream: dispatch it and serialise the reply. */
static void fuzz_emit(void *opaque, json_t *msg, const char *err)
{
    QmpRegistry *reg = opaque;
    json_t *rsp;

    if (err) {
        rsp = qmp_error_response(QMP_CLASS_GENERIC, err, NULL);
    } else {
        char *text = json_emit(msg, NULL);
        free(text);
        rsp = qmp_dispatch(reg, msg, NULL, NULL);
        json_decref(msg);
    }
    if (rsp) {
        char *text = json_emit(rsp, NULL);
        free(text);
        json_decref(rsp);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    QmpRegistry reg;
    JsonStream *js;
    size_t piece;

    if (size < 1 || size > FUZZ_QMP_MAX_INPUT) {
        return 0;
    }
    piece = (size_t)data[0] + 1;
    data++;
    size--;
    qmp_registry_init(&reg);
    qmp_register_table(&reg, fuzz_cmds);
    reg.cmds[1].enabled = (piece & 1) != 0;
    js = json_stream_new(fuzz_emit, &reg);
    while (size) {
        size_t n = size < piece ? size : piece;
        json_stream_feed(js, data, n);
        data += n;
        size -= n;
    }
    json_stream_free(js);
    qmp_registry_destroy(&reg);
    return 0;
}
