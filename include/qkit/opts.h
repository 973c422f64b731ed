/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Two kinds of options:
 *  - QOpts: a flat, ordered "key=value,key=value" list as given to -o (create and
 *    amend options), checked against tables of QOptDesc;
 *  - json_t objects (jansson) for opening images: --image-opts, json: filenames and
 *    the options the block layer passes down the graph ("file.filename", ...).
 */
#ifndef QKIT_OPTS_H
#define QKIT_OPTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "qkit/error.h"

typedef enum { QOPT_STRING, QOPT_BOOL, QOPT_NUMBER, QOPT_SIZE } QOptType;

typedef struct QOptDesc {
    const char *name;
    QOptType type;
    const char *help;
    const char *def_value_str;
} QOptDesc;

typedef struct QOpts QOpts;

QOpts *qopts_new(void);
void qopts_free(QOpts *o);
/* Parse "k=v,k2=v2" (",," is a literal comma) into o, later keys replacing earlier. */
int qopts_parse(QOpts *o, const char *str, Error **errp);
void qopts_set(QOpts *o, const char *name, const char *value);
void qopts_del(QOpts *o, const char *name);
/* NULL when the key is absent. */
const char *qopts_get(const QOpts *o, const char *name);
int qopts_get_size(const QOpts *o, const char *name, uint64_t def, uint64_t *out, Error **errp);
int qopts_get_number(const QOpts *o, const char *name, uint64_t def, uint64_t *out,
                     Error **errp);
int qopts_get_bool(const QOpts *o, const char *name, bool def, bool *out, Error **errp);
int qopts_count(const QOpts *o);
const char *qopts_name_at(const QOpts *o, int i);
const char *qopts_value_at(const QOpts *o, int i);
/*
 * Check every key against the NULL-terminated list of NULL-name-terminated desc
 * tables; the first unknown key gives "Invalid parameter 'KEY'".
 */
int qopts_validate(const QOpts *o, const QOptDesc *const *tables, Error **errp);
/* True if the string given to -o asks for help ("help" or "?"). */
bool qopts_is_help(const char *str);

/* Parse "driver=qcow2,file.filename=x" into a nested json object (dots nest). */
json_t *qdict_from_keyval(const char *str, Error **errp);
/* Parse "json:{...}" (with the prefix) into an object with dotted keys nested. */
json_t *qdict_from_json_filename(const char *str, Error **errp);
/* Get a string option; numbers and bools are not strings here (returns NULL). */
const char *qdict_get_str(const json_t *d, const char *key);
/* Get an option that may be given as a string or as a JSON number/bool. */
int qdict_get_int_opt(const json_t *d, const char *key, int64_t def, int64_t *out,
                      Error **errp);
int qdict_get_bool_opt(const json_t *d, const char *key, bool def, bool *out, Error **errp);
/* A new reference to the sub-object d[key], or NULL. */
json_t *qdict_get_obj(const json_t *d, const char *key);

#endif
