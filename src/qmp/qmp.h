/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The QMP command dispatcher shared by the guest agent and the monitor: a table of
 * commands, each with its argument schema; requests are checked member by member and
 * answered with QEMU's replies and messages ({"return": ...} or {"error": {...}}, the
 * request's "id" echoed).
 */
#ifndef QMP_QMP_H
#define QMP_QMP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qkit/error.h"
#include "qmp/json-stream.h"

#define QMP_CLASS_GENERIC "GenericError"
#define QMP_CLASS_COMMAND_NOT_FOUND "CommandNotFound"

typedef enum QmpArgType {
    QMP_T_INT,      /* int64 */
    QMP_T_UINT64,   /* uint64 (negative int64 wraps, as QEMU's visitor does) */
    QMP_T_NUMBER,   /* any number */
    QMP_T_BOOL,
    QMP_T_STR,
    QMP_T_ENUM,     /* a string from enum_values */
    QMP_T_INT_OR_ENUM, /* an alternate of int and enum_values, named type_name */
    QMP_T_OBJECT,   /* a struct with the members table */
} QmpArgType;

#define QMP_ARG_OPTIONAL (1u << 0)
#define QMP_ARG_LIST (1u << 1)

/* One member of a command's arguments (or of a struct inside them). */
typedef struct QmpArg {
    const char *name; /* NULL ends a table */
    QmpArgType type;
    unsigned flags;
    const struct QmpArg *members;
    const char *const *enum_values; /* NULL-terminated */
    const char *type_name;
} QmpArg;

/*
 * A command's work. Returns the "return" value (a new reference), or NULL with *errp
 * set. A command without success response returns NULL and no error when it worked.
 */
typedef json_t *QmpHandler(void *opaque, json_t *args, Error **errp);

typedef struct QmpCommandDef {
    const char *name;
    QmpHandler *fn;
    const QmpArg *args; /* NULL for none */
    bool no_success_response;
} QmpCommandDef;

typedef struct QmpCommand {
    const QmpCommandDef *def;
    bool enabled;
    const char *disable_reason; /* shown after "has been disabled: " if set */
} QmpCommand;

typedef struct QmpRegistry {
    QmpCommand *cmds; /* in registration order */
    size_t ncmds;
    bool allow_oob; /* "exec-oob" accepted as well as "execute" */
} QmpRegistry;

void qmp_registry_init(QmpRegistry *reg);
void qmp_registry_destroy(QmpRegistry *reg);
void qmp_register(QmpRegistry *reg, const QmpCommandDef *def);
/* Register every entry of a table ending with a NULL name. */
void qmp_register_table(QmpRegistry *reg, const QmpCommandDef *defs);
QmpCommand *qmp_find(QmpRegistry *reg, const char *name);

/*
 * Run one request. Returns the response (a new reference) or NULL when none is due
 * (a command without success response that worked). *cmd_out, if given, is set to the
 * command that ran (NULL if none did).
 */
json_t *qmp_dispatch(QmpRegistry *reg, json_t *req, void *opaque, QmpCommand **cmd_out);
/* {"error": {"class": cls, "desc": desc}} plus "id" if id is non-NULL. */
json_t *qmp_error_response(const char *cls, const char *desc, json_t *id);
/* Check args (an object) against a members table; QEMU's messages, name prefix given. */
bool qmp_check_args(json_t *args, const QmpArg *spec, const char *prefix, Error **errp);

/* Argument getters for handlers (the arguments were checked against the schema). */
bool qmp_has(json_t *args, const char *name);
int64_t qmp_get_int(json_t *args, const char *name, int64_t dflt);
uint64_t qmp_value_u64(json_t *v);
bool qmp_get_bool(json_t *args, const char *name, bool dflt);
/* The string (NUL-terminated; may hold NULs earlier) or dflt. */
const char *qmp_get_str(json_t *args, const char *name, const char *dflt);

#endif
