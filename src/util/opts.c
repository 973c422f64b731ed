/* SPDX-License-Identifier: GPL-2.0-or-later */
/* "-o key=value" lists and the json option dictionaries used to open images. */
#include "qkit/opts.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qkit/cutils.h"

struct QOpts {
    int n, cap;
    char **names;
    char **values;
};

QOpts *qopts_new(void)
{
    QOpts *o = calloc(1, sizeof(*o));
    if (!o) {
        abort();
    }
    return o;
}

void qopts_free(QOpts *o)
{
    if (!o) {
        return;
    }
    for (int i = 0; i < o->n; i++) {
        free(o->names[i]);
        free(o->values[i]);
    }
    free(o->names);
    free(o->values);
    free(o);
}

static int qopts_find(const QOpts *o, const char *name)
{
    for (int i = 0; i < o->n; i++) {
        if (!strcmp(o->names[i], name)) {
            return i;
        }
    }
    return -1;
}

void qopts_set(QOpts *o, const char *name, const char *value)
{
    int i = qopts_find(o, name);
    if (i >= 0) {
        free(o->values[i]);
        o->values[i] = strdup(value);
        return;
    }
    if (o->n == o->cap) {
        o->cap = o->cap ? o->cap * 2 : 8;
        o->names = realloc(o->names, o->cap * sizeof(char *));
        o->values = realloc(o->values, o->cap * sizeof(char *));
        if (!o->names || !o->values) {
            abort();
        }
    }
    o->names[o->n] = strdup(name);
    o->values[o->n] = strdup(value);
    o->n++;
}

void qopts_del(QOpts *o, const char *name)
{
    int i = qopts_find(o, name);
    if (i < 0) {
        return;
    }
    free(o->names[i]);
    free(o->values[i]);
    memmove(&o->names[i], &o->names[i + 1], (o->n - i - 1) * sizeof(char *));
    memmove(&o->values[i], &o->values[i + 1], (o->n - i - 1) * sizeof(char *));
    o->n--;
}

/* Copy one ','-terminated field of s into out, turning ",," into ','. Returns the rest. */
static const char *get_field(const char *s, char delim, char **out)
{
    size_t len = strlen(s);
    char *buf = malloc(len + 1), *q = buf;
    if (!buf) {
        abort();
    }
    while (*s) {
        if (*s == ',' && s[1] == ',') {
            *q++ = ',';
            s += 2;
            continue;
        }
        if (*s == delim || *s == ',') {
            break;
        }
        *q++ = *s++;
    }
    *q = 0;
    *out = buf;
    return s;
}

int qopts_parse(QOpts *o, const char *str, Error **errp)
{
    const char *p = str;
    while (*p) {
        char *name, *value;
        p = get_field(p, '=', &name);
        if (*p == '=') {
            p = get_field(p + 1, 0, &value);
        } else {
            /* A bare key: "help", or a flag meaning on ("nocow" -> nocow=on). */
            value = strdup(!strncmp(name, "no", 2) ? "off" : "on");
            if (!strcmp(name, "help") || !strcmp(name, "?")) {
                free(value);
                value = strdup("on");
            }
        }
        if (!*name) {
            free(name);
            free(value);
            error_setg(errp, "Invalid parameter ''");
            return -EINVAL;
        }
        qopts_set(o, name, value);
        free(name);
        free(value);
        if (*p == ',') {
            p++;
        }
    }
    return 0;
}

const char *qopts_get(const QOpts *o, const char *name)
{
    int i = o ? qopts_find(o, name) : -1;
    return i < 0 ? NULL : o->values[i];
}

int qopts_get_size(const QOpts *o, const char *name, uint64_t def, uint64_t *out, Error **errp)
{
    const char *v = qopts_get(o, name);
    if (!v) {
        *out = def;
        return 0;
    }
    int ret = qkit_strtosz(v, 0, out);
    if (ret == -ERANGE) {
        error_setg(errp, "Value '%s' is out of range for parameter '%s'", v, name);
        return ret;
    }
    if (ret < 0) {
        error_setg(errp, "Parameter '%s' expects a non-negative number below 2^64", name);
        error_append_hint(errp, "Optional suffix k, M, G, T, P or E means kilo-, mega-, "
                          "giga-, tera-, peta-\nand exabytes, respectively.\n");
        return ret;
    }
    return 0;
}

int qopts_get_number(const QOpts *o, const char *name, uint64_t def, uint64_t *out,
                     Error **errp)
{
    const char *v = qopts_get(o, name);
    if (!v) {
        *out = def;
        return 0;
    }
    if (qkit_strtou64(v, out) < 0) {
        error_setg(errp, "Parameter '%s' expects a number", name);
        return -EINVAL;
    }
    return 0;
}

int qopts_get_bool(const QOpts *o, const char *name, bool def, bool *out, Error **errp)
{
    const char *v = qopts_get(o, name);
    if (!v) {
        *out = def;
        return 0;
    }
    if (qkit_strtobool(v, out) < 0) {
        error_setg(errp, "Parameter '%s' expects 'on' or 'off'", name);
        return -EINVAL;
    }
    return 0;
}

int qopts_count(const QOpts *o)
{
    return o->n;
}

const char *qopts_name_at(const QOpts *o, int i)
{
    return o->names[i];
}

const char *qopts_value_at(const QOpts *o, int i)
{
    return o->values[i];
}

int qopts_validate(const QOpts *o, const QOptDesc *const *tables, Error **errp)
{
    for (int i = 0; i < o->n; i++) {
        bool found = false;
        for (int t = 0; tables[t] && !found; t++) {
            for (const QOptDesc *d = tables[t]; d->name; d++) {
                if (!strcmp(d->name, o->names[i])) {
                    found = true;
                    break;
                }
            }
        }
        if (!found) {
            error_setg(errp, "Invalid parameter '%s'", o->names[i]);
            return -EINVAL;
        }
    }
    return 0;
}

bool qopts_is_help(const char *str)
{
    return str && (!strcmp(str, "help") || !strcmp(str, "?"));
}

/* Store value under a dotted key, creating the nested objects on the way. */
static int qdict_put_dotted(json_t *root, const char *key, json_t *value, Error **errp)
{
    json_t *cur = root;
    const char *p = key;
    const char *dot;
    while ((dot = strchr(p, '.'))) {
        char *part = strndup(p, dot - p);
        json_t *sub = json_object_get(cur, part);
        if (!sub) {
            sub = json_object();
            json_object_set_new(cur, part, sub);
        } else if (!json_is_object(sub)) {
            error_setg(errp, "Cannot mix scalar and non-scalar keys for '%s'", key);
            free(part);
            json_decref(value);
            return -EINVAL;
        }
        free(part);
        cur = sub;
        p = dot + 1;
    }
    json_object_set_new(cur, p, value);
    return 0;
}

json_t *qdict_from_keyval(const char *str, Error **errp)
{
    json_t *root = json_object();
    const char *p = str;
    while (*p) {
        char *name, *value;
        p = get_field(p, '=', &name);
        if (*p != '=') {
            error_setg(errp, "Expected '=' after parameter '%s'", name);
            free(name);
            json_decref(root);
            return NULL;
        }
        p = get_field(p + 1, 0, &value);
        int ret = qdict_put_dotted(root, name, json_string(value), errp);
        free(name);
        free(value);
        if (ret < 0) {
            json_decref(root);
            return NULL;
        }
        if (*p == ',') {
            p++;
        }
    }
    return root;
}

/* Rebuild obj so that keys containing dots become nested objects. */
static json_t *qdict_crumple(json_t *obj, Error **errp)
{
    json_t *out = json_object();
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val) {
        json_t *v = json_is_object(val) ? qdict_crumple(val, errp) : json_incref(val);
        if (!v || qdict_put_dotted(out, key, v, errp) < 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

json_t *qdict_from_json_filename(const char *str, Error **errp)
{
    json_error_t jerr;
    json_t *obj = json_loads(str + strlen("json:"), JSON_REJECT_DUPLICATES, &jerr);
    if (!obj || !json_is_object(obj)) {
        error_setg(errp, "Could not parse the JSON options");
        json_decref(obj);
        return NULL;
    }
    json_t *out = qdict_crumple(obj, errp);
    json_decref(obj);
    return out;
}

const char *qdict_get_str(const json_t *d, const char *key)
{
    json_t *v = d ? json_object_get(d, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

int qdict_get_int_opt(const json_t *d, const char *key, int64_t def, int64_t *out,
                      Error **errp)
{
    json_t *v = d ? json_object_get(d, key) : NULL;
    if (!v) {
        *out = def;
        return 0;
    }
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    if (json_is_string(v)) {
        uint64_t u;
        if (qkit_strtosz(json_string_value(v), 0, &u) == 0) {
            *out = (int64_t)u;
            return 0;
        }
    }
    error_setg(errp, "Parameter '%s' expects a number", key);
    return -EINVAL;
}

int qdict_get_bool_opt(const json_t *d, const char *key, bool def, bool *out, Error **errp)
{
    json_t *v = d ? json_object_get(d, key) : NULL;
    if (!v) {
        *out = def;
        return 0;
    }
    if (json_is_boolean(v)) {
        *out = json_is_true(v);
        return 0;
    }
    if (json_is_string(v) && qkit_strtobool(json_string_value(v), out) == 0) {
        return 0;
    }
    error_setg(errp, "Parameter '%s' expects 'on' or 'off'", key);
    return -EINVAL;
}

json_t *qdict_get_obj(const json_t *d, const char *key)
{
    json_t *v = d ? json_object_get(d, key) : NULL;
    return json_is_object(v) ? json_incref(v) : NULL;
}
