/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The QMP command table, request checks and responses, in QEMU's words and order. */
#include "qmp/qmp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void qmp_registry_init(QmpRegistry *reg)
{
    memset(reg, 0, sizeof(*reg));
}

void qmp_registry_destroy(QmpRegistry *reg)
{
    free(reg->cmds);
    memset(reg, 0, sizeof(*reg));
}

void qmp_register(QmpRegistry *reg, const QmpCommandDef *def)
{
    reg->cmds = realloc(reg->cmds, (reg->ncmds + 1) * sizeof(*reg->cmds));
    if (!reg->cmds) {
        abort();
    }
    reg->cmds[reg->ncmds++] = (QmpCommand){ def, true, NULL };
}

void qmp_register_table(QmpRegistry *reg, const QmpCommandDef *defs)
{
    for (; defs->name; defs++) {
        qmp_register(reg, defs);
    }
}

QmpCommand *qmp_find(QmpRegistry *reg, const char *name)
{
    for (size_t i = 0; i < reg->ncmds; i++) {
        if (!strcmp(reg->cmds[i].def->name, name)) {
            return &reg->cmds[i];
        }
    }
    return NULL;
}

json_t *qmp_error_response(const char *cls, const char *desc, json_t *id)
{
    json_t *rsp = json_object();
    json_t *err = json_object();

    json_object_set_new(err, "class", json_string(cls));
    json_object_set_new(err, "desc", json_stringn_nocheck(desc, strlen(desc)));
    json_object_set_new(rsp, "error", err);
    if (id) {
        json_object_set(rsp, "id", id);
    }
    return rsp;
}

/* Member names joined as QEMU shows them: "vcpus[0].online". */
static char *arg_path(const char *prefix, const char *name)
{
    char *s = NULL;
    if (asprintf(&s, "%s%s%s", prefix ? prefix : "", prefix ? "." : "", name) < 0) {
        abort();
    }
    return s;
}

static bool check_value(json_t *v, const QmpArg *a, const char *path, Error **errp);

/* One element's type (a list's element, or the member itself). */
static bool check_scalar(json_t *v, const QmpArg *a, const char *path, Error **errp)
{
    const char *want = NULL;
    uint64_t u;

    switch (a->type) {
    case QMP_T_INT:
        if (!json_is_integer(v)) {
            want = "integer";
        }
        break;
    case QMP_T_UINT64:
        if (!json_is_integer(v) && !json_u64_get(v, &u)) {
            want = "integer";
        }
        break;
    case QMP_T_NUMBER:
        if (!json_is_number(v) && !json_is_raw_number(v)) {
            want = "number";
        }
        break;
    case QMP_T_BOOL:
        if (!json_is_boolean(v)) {
            want = "boolean";
        }
        break;
    case QMP_T_STR:
        if (!json_is_string(v)) {
            want = "string";
        }
        break;
    case QMP_T_ENUM:
    case QMP_T_INT_OR_ENUM:
        if (a->type == QMP_T_INT_OR_ENUM && json_is_integer(v)) {
            break;
        }
        if (!json_is_string(v)) {
            want = a->type == QMP_T_ENUM ? "string" : a->type_name;
            break;
        }
        for (const char *const *e = a->enum_values; *e; e++) {
            if (!strcmp(*e, json_string_value(v))) {
                return true;
            }
        }
        error_setg(errp, "Parameter '%s' does not accept value '%s'", path,
                   json_string_value(v));
        return false;
    case QMP_T_OBJECT:
        if (!json_is_object(v) || json_is_raw_number(v)) {
            want = "object";
            break;
        }
        return qmp_check_args(v, a->members, path, errp);
    }
    if (want) {
        error_setg(errp, "Invalid parameter type for '%s', expected: %s", path, want);
        return false;
    }
    return true;
}

/* A member's value against its schema entry; path names it in messages. */
static bool check_value(json_t *v, const QmpArg *a, const char *path, Error **errp)
{
    if (!(a->flags & QMP_ARG_LIST)) {
        return check_scalar(v, a, path, errp);
    }
    if (!json_is_array(v)) {
        error_setg(errp, "Invalid parameter type for '%s', expected: array", path);
        return false;
    }
    for (size_t i = 0; i < json_array_size(v); i++) {
        char *elem = NULL;
        if (asprintf(&elem, "%s[%zu]", path, i) < 0) {
            abort();
        }
        bool ok = check_scalar(json_array_get(v, i), a, elem, errp);
        free(elem);
        if (!ok) {
            return false;
        }
    }
    return true;
}

bool qmp_check_args(json_t *args, const QmpArg *spec, const char *prefix, Error **errp)
{
    static const QmpArg none[] = { { NULL } };
    const char **keys;
    size_t n;
    bool ok = true;

    spec = spec ? spec : none;
    for (const QmpArg *a = spec; a->name; a++) {
        json_t *v = json_object_get(args, a->name);
        char *path = arg_path(prefix, a->name);
        if (!v) {
            if (!(a->flags & QMP_ARG_OPTIONAL)) {
                error_setg(errp, "Parameter '%s' is missing", path);
                ok = false;
            }
        } else {
            ok = check_value(v, a, path, errp);
        }
        free(path);
        if (!ok) {
            return false;
        }
    }
    keys = json_qdict_keys(args, &n);
    for (size_t i = 0; i < n && ok; i++) {
        const QmpArg *a = spec;
        while (a->name && strcmp(a->name, keys[i])) {
            a++;
        }
        if (!a->name) {
            char *path = arg_path(prefix, keys[i]);
            error_setg(errp, "Parameter '%s' is unexpected", path);
            free(path);
            ok = false;
        }
    }
    free(keys);
    return ok;
}

/* The request's outer members: "execute" (or "exec-oob"), "arguments", "id". */
static const char *check_request(QmpRegistry *reg, json_t *req, Error **errp)
{
    const char **keys;
    size_t n;
    const char *exec = NULL;

    keys = json_qdict_keys(req, &n);
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_object_get(req, keys[i]);
        if (!strcmp(keys[i], "execute") || (reg->allow_oob && !strcmp(keys[i], "exec-oob"))) {
            if (!json_is_string(v)) {
                error_setg(errp, "QMP input member '%s' must be a string", keys[i]);
                goto fail;
            }
            if (exec) {
                error_setg(errp, "QMP input member '%s' clashes with '%s'", keys[i],
                           json_object_get(req, "execute") ? "execute" : "exec-oob");
                goto fail;
            }
            exec = json_string_value(v);
        } else if (!strcmp(keys[i], "arguments")) {
            if (!json_is_object(v) || json_is_raw_number(v)) {
                error_setg(errp, "QMP input member 'arguments' must be an object");
                goto fail;
            }
        } else if (strcmp(keys[i], "id")) {
            error_setg(errp, "QMP input member '%s' is unexpected", keys[i]);
            goto fail;
        }
    }
    free(keys);
    if (!exec) {
        error_setg(errp, "QMP input lacks member 'execute'");
    }
    return exec;
fail:
    free(keys);
    return NULL;
}

json_t *qmp_dispatch(QmpRegistry *reg, json_t *req, void *opaque, QmpCommand **cmd_out)
{
    Error *err = NULL;
    json_t *id = NULL, *args, *ret, *rsp;
    const char *name;
    QmpCommand *cmd;
    char *msg = NULL;

    if (cmd_out) {
        *cmd_out = NULL;
    }
    if (!json_is_object(req) || json_is_raw_number(req)) {
        return qmp_error_response(QMP_CLASS_GENERIC, "QMP input must be a JSON object", NULL);
    }
    id = json_object_get(req, "id");
    name = check_request(reg, req, &err);
    if (!name) {
        goto generic_error;
    }
    cmd = qmp_find(reg, name);
    if (!cmd || !cmd->enabled) {
        int r = cmd ? asprintf(&msg, "Command %s has been disabled%s%s", name,
                               cmd->disable_reason ? ": " : "",
                               cmd->disable_reason ? cmd->disable_reason : "")
                    : asprintf(&msg, "The command %s has not been found", name);
        if (r < 0) {
            abort();
        }
        rsp = qmp_error_response(QMP_CLASS_COMMAND_NOT_FOUND, msg, id);
        free(msg);
        return rsp;
    }
    args = json_object_get(req, "arguments");
    args = args ? json_incref(args) : json_object();
    if (!qmp_check_args(args, cmd->def->args, NULL, &err)) {
        json_decref(args);
        goto generic_error;
    }
    if (cmd_out) {
        *cmd_out = cmd;
    }
    ret = cmd->def->fn(opaque, args, &err);
    json_decref(args);
    if (err) {
        json_decref(ret);
        goto generic_error;
    }
    if (!ret) {
        if (cmd->def->no_success_response) {
            return NULL;
        }
        ret = json_object();
    }
    rsp = json_object();
    json_object_set_new(rsp, "return", ret);
    if (id) {
        json_object_set(rsp, "id", id);
    }
    return rsp;

generic_error:
    rsp = qmp_error_response(QMP_CLASS_GENERIC, error_get_pretty(err), id);
    error_free(err);
    return rsp;
}

bool qmp_has(json_t *args, const char *name)
{
    return json_object_get(args, name) != NULL;
}

int64_t qmp_get_int(json_t *args, const char *name, int64_t dflt)
{
    json_t *v = json_object_get(args, name);
    return v ? (int64_t)qmp_value_u64(v) : dflt;
}

uint64_t qmp_value_u64(json_t *v)
{
    uint64_t u;
    if (json_u64_get(v, &u)) {
        return u;
    }
    return (uint64_t)json_integer_value(v);
}

bool qmp_get_bool(json_t *args, const char *name, bool dflt)
{
    json_t *v = json_object_get(args, name);
    return v ? json_is_true(v) : dflt;
}

const char *qmp_get_str(json_t *args, const char *name, const char *dflt)
{
    json_t *v = json_object_get(args, name);
    return v ? json_string_value(v) : dflt;
}
