/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The --object registry: parse a definition, check it as QEMU's object layer does
 * (type, id, property values, unknown properties, duplicates, then loading), and
 * keep the objects in one list that tools and drivers look ids up in.
 */
#include "nbd/objects.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qkit/cutils.h"
#include "qkit/opts.h"

/* Every object created so far, newest first; guarded by user_objects_lock. */
static UserObject *user_objects;
static pthread_mutex_t user_objects_lock = PTHREAD_MUTEX_INITIALIZER;

/* One property of an object type, and the type name "TYPE,help" shows for it. */
typedef struct UserObjectProp {
    const char *name;
    const char *type;
} UserObjectProp;

/* One object type: its name and the properties it takes (besides qom-type and id). */
typedef struct UserObjectClass {
    const char *name;
    UserObjectType type;
    const UserObjectProp *props;
} UserObjectClass;

static const UserObjectProp secret_props[] = {
    { "data", "string" }, { "file", "string" }, { "format", "QCryptoSecretFormat" },
    { "keyid", "string" }, { "iv", "string" }, { NULL, NULL },
};
static const UserObjectProp tls_x509_props[] = {
    { "endpoint", "QCryptoTLSCredsEndpoint" }, { "dir", "string" },
    { "verify-peer", "bool" }, { "priority", "string" }, { "sanity-check", "bool" },
    { "passwordid", "string" }, { NULL, NULL },
};
static const UserObjectProp tls_psk_props[] = {
    { "endpoint", "QCryptoTLSCredsEndpoint" }, { "dir", "string" },
    { "verify-peer", "bool" }, { "priority", "string" }, { "username", "string" },
    { NULL, NULL },
};
static const UserObjectProp authz_simple_props[] = { { "identity", "string" }, { NULL, NULL } };

/* Most properties one object type has. */
#define USER_OBJECT_MAX_PROPS 16

/* The PSK username a client sends when tls-creds-psk names none, as in QEMU. */
#define TLS_PSK_DEFAULT_USERNAME "qemu"

static const UserObjectClass user_object_classes[] = {
    { "authz-simple", USER_OBJECT_AUTHZ_SIMPLE, authz_simple_props },
    { "secret", USER_OBJECT_SECRET, secret_props },
    { "tls-creds-psk", USER_OBJECT_TLS_CREDS_PSK, tls_psk_props },
    { "tls-creds-x509", USER_OBJECT_TLS_CREDS_X509, tls_x509_props },
};

/* The class named name, or NULL. */
static const UserObjectClass *user_object_class(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(user_object_classes); i++) {
        if (!strcmp(name, user_object_classes[i].name)) {
            return &user_object_classes[i];
        }
    }
    return NULL;
}

/* The parsed definition: its properties, and whether they came typed (JSON form). */
typedef struct UserObjectDef {
    json_t *props;
    bool typed;
} UserObjectDef;

/* An id QEMU accepts: a letter, then letters, digits, '-', '.', '_'. */
static bool user_object_id_wellformed(const char *id)
{
    if (!isalpha((unsigned char)id[0])) {
        return false;
    }
    for (const char *p = id + 1; *p; p++) {
        if (!isalnum((unsigned char)*p) && !strchr("-._", *p)) {
            return false;
        }
    }
    return true;
}

/* A string property: absent (NULL, 0), or its value; typed JSON must hold a string. */
static int user_object_str(const UserObjectDef *d, const char *key, const char **val,
                           Error **errp)
{
    json_t *v = json_object_get(d->props, key);
    *val = NULL;
    if (!v) {
        return 0;
    }
    if (!json_is_string(v)) {
        error_setg(errp, "Invalid parameter type for '%s', expected: string", key);
        return -EINVAL;
    }
    *val = json_string_value(v);
    return 0;
}

/* A boolean property ("on"/"off" and friends, or a JSON boolean); def when absent. */
static int user_object_bool(const UserObjectDef *d, const char *key, bool def, bool *val,
                            Error **errp)
{
    json_t *v = json_object_get(d->props, key);
    *val = def;
    if (!v) {
        return 0;
    }
    if (d->typed) {
        if (!json_is_boolean(v)) {
            error_setg(errp, "Invalid parameter type for '%s', expected: boolean", key);
            return -EINVAL;
        }
        *val = json_is_true(v);
        return 0;
    }
    if (!json_is_string(v) || qkit_strtobool(json_string_value(v), val) < 0) {
        error_setg(errp, "Parameter '%s' expects 'on' or 'off'", key);
        return -EINVAL;
    }
    return 0;
}

/* Split a definition into its type name (*type, caller frees) and its properties. */
static int user_object_parse(const char *def, char **type, UserObjectDef *d, Error **errp)
{
    *type = NULL;
    if (def[0] == '{') {
        json_error_t jerr;
        d->props = json_loads(def, 0, &jerr);
        d->typed = true;
        if (!json_is_object(d->props)) {
            json_decref(d->props);
            d->props = NULL;
            error_setg(errp, "JSON parse error, %s", jerr.text);
            return -EINVAL;
        }
    } else {
        /* The first element may be the bare type ("secret,id=s0,..."). */
        const char *comma = strchr(def, ',');
        size_t first_len = comma ? (size_t)(comma - def) : strlen(def);
        const char *rest = def;
        if (!memchr(def, '=', first_len)) {
            *type = strndup(def, first_len);
            rest = comma ? comma + 1 : "";
        }
        d->props = qdict_from_keyval(rest, errp);
        if (!d->props) {
            return -EINVAL;
        }
    }
    json_t *qt = json_object_get(d->props, "qom-type");
    if (qt && !json_is_string(qt)) {
        error_setg(errp, "Invalid parameter type for 'qom-type', expected: string");
        return -EINVAL;
    }
    if (qt) {
        free(*type);
        *type = strdup(json_string_value(qt));
    }
    if (!*type) {
        error_setg(errp, "Parameter 'qom-type' is missing");
        return -EINVAL;
    }
    return 0;
}

/*
 * Called once an object's own properties are read: refuse a property the type does not
 * have (-EINVAL), then an id already taken (-EEXIST), in the order QEMU checks them.
 */
static int user_object_check_new(const UserObject *obj, const UserObjectDef *d,
                                 const UserObjectClass *cls, Error **errp)
{
    const char *key;
    json_t *val;
    json_object_foreach(d->props, key, val) {
        bool known = !strcmp(key, "qom-type") || !strcmp(key, "id");
        for (int i = 0; !known && cls->props[i].name; i++) {
            known = !strcmp(key, cls->props[i].name);
        }
        if (!known) {
            error_setg(errp, "Parameter '%s' is unexpected", key);
            return -EINVAL;
        }
    }
    if (user_object_find(obj->id)) {
        error_setg(errp, "attempt to add duplicate property '%s' to object (type "
                   "'container')", obj->id);
        return -EEXIST;
    }
    return 0;
}

/*
 * tls-creds-x509 and tls-creds-psk: check the properties, then load the PEM files or
 * the key file for the endpoint.
 */
static int user_object_tls(UserObject *obj, const UserObjectDef *d,
                           const UserObjectClass *cls, Error **errp)
{
    const char *endpoint, *dir, *priority, *passwordid, *username;
    bool verify_peer, sanity;
    if (user_object_str(d, "endpoint", &endpoint, errp) < 0 ||
        user_object_str(d, "dir", &dir, errp) < 0 ||
        user_object_str(d, "priority", &priority, errp) < 0 ||
        user_object_str(d, "passwordid", &passwordid, errp) < 0 ||
        user_object_str(d, "username", &username, errp) < 0 ||
        user_object_bool(d, "verify-peer", true, &verify_peer, errp) < 0 ||
        user_object_bool(d, "sanity-check", true, &sanity, errp) < 0) {
        return -EINVAL;
    }
    if (endpoint && strcmp(endpoint, "server") && strcmp(endpoint, "client")) {
        error_setg(errp, "Parameter 'endpoint' does not accept value '%s'", endpoint);
        return -EINVAL;
    }
    int ret = user_object_check_new(obj, d, cls, errp);
    if (ret < 0) {
        return ret;
    }
    if (!dir) {
        error_setg(errp, "Missing 'dir' property value");
        return -EINVAL;
    }
    /* QEMU's default endpoint is the client. */
    obj->server_endpoint = endpoint && !strcmp(endpoint, "server");
    if (obj->type == USER_OBJECT_TLS_CREDS_PSK) {
        if (obj->server_endpoint) {
            obj->server_creds = nbd_tls_creds_new_psk(dir, errp);
            return obj->server_creds ? 0 : -EINVAL;
        }
        obj->client_creds = nbd_tls_client_creds_new_psk(
            dir, username ? username : TLS_PSK_DEFAULT_USERNAME, errp);
        return obj->client_creds ? 0 : -EINVAL;
    }
    if (obj->server_endpoint) {
        obj->server_creds = nbd_tls_creds_new_x509(dir, verify_peer, errp);
        return obj->server_creds ? 0 : -EINVAL;
    }
    obj->client_creds = nbd_tls_client_creds_new_x509(dir, verify_peer, sanity, errp);
    return obj->client_creds ? 0 : -EINVAL;
}

/* secret and authz-simple: check the properties and keep what is needed. */
static int user_object_simple(UserObject *obj, const UserObjectDef *d,
                              const UserObjectClass *cls, Error **errp)
{
    const char *a = NULL, *b = NULL;
    if (obj->type == USER_OBJECT_SECRET) {
        if (user_object_str(d, "data", &a, errp) < 0 ||
            user_object_str(d, "file", &b, errp) < 0) {
            return -EINVAL;
        }
    } else if (user_object_str(d, "identity", &a, errp) < 0) {
        return -EINVAL;
    }
    int ret = user_object_check_new(obj, d, cls, errp);
    if (ret < 0) {
        return ret;
    }
    if (obj->type == USER_OBJECT_SECRET) {
        if (!a && !b) {
            error_setg(errp, "Either 'file' or 'data' must be provided");
            return -EINVAL;
        }
        return 0;
    }
    if (!a) {
        error_setg(errp, "Parameter 'identity' is missing");
        return -EINVAL;
    }
    obj->identity = strdup(a);
    if (!obj->identity) {
        abort();
    }
    return 0;
}

/* Free one object and what it loaded. */
static void user_object_free(UserObject *obj)
{
    if (!obj) {
        return;
    }
    free(obj->id);
    free(obj->identity);
    nbd_tls_creds_free(obj->server_creds);
    nbd_tls_client_creds_free(obj->client_creds);
    free(obj);
}

int user_object_add(const char *def, Error **errp)
{
    UserObjectDef d = { 0 };
    UserObject *obj = NULL;
    const UserObjectClass *cls = NULL;
    char *type = NULL;
    const char *id;
    int ret = user_object_parse(def, &type, &d, errp);
    if (ret < 0) {
        goto out;
    }
    ret = -EINVAL;
    cls = user_object_class(type);
    if (!cls) {
        error_setg(errp, "Parameter 'qom-type' does not accept value '%s'", type);
        goto out;
    }
    if (user_object_str(&d, "id", &id, errp) < 0) {
        goto out;
    }
    if (!id) {
        error_setg(errp, "Parameter 'id' is missing");
        goto out;
    }
    if (!user_object_id_wellformed(id)) {
        error_setg(errp, "Parameter 'id' expects an identifier");
        error_append_hint(errp, "Identifiers consist of letters, digits, '-', '.', '_', "
                          "starting with a letter.\n");
        goto out;
    }
    obj = calloc(1, sizeof(*obj));
    if (!obj) {
        abort();
    }
    obj->type = cls->type;
    obj->id = strdup(id);
    if (!obj->id) {
        abort();
    }
    bool tls = obj->type == USER_OBJECT_TLS_CREDS_X509 ||
               obj->type == USER_OBJECT_TLS_CREDS_PSK;
    ret = tls ? user_object_tls(obj, &d, cls, errp) : user_object_simple(obj, &d, cls, errp);
    if (ret < 0) {
        goto out;
    }
    pthread_mutex_lock(&user_objects_lock);
    obj->next = user_objects;
    user_objects = obj;
    pthread_mutex_unlock(&user_objects_lock);
    obj = NULL;
out:
    user_object_free(obj);
    json_decref(d.props);
    free(type);
    return ret;
}

/* qsort order for property names in a type's help. */
static int user_object_prop_cmp(const void *a, const void *b)
{
    return strcmp((*(const UserObjectProp *const *)a)->name,
                   (*(const UserObjectProp *const *)b)->name);
}

/* The help text for one type: its properties sorted by name. */
static char *user_object_class_help(const UserObjectClass *cls)
{
    const UserObjectProp *sorted[USER_OBJECT_MAX_PROPS];
    size_t n = 0;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) {
        abort();
    }
    for (; n < USER_OBJECT_MAX_PROPS && cls->props[n].name; n++) {
        sorted[n] = &cls->props[n];
    }
    qsort(sorted, n, sizeof(sorted[0]), user_object_prop_cmp);
    fprintf(f, "%s options:\n", cls->name);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "  %s=<%s>\n", sorted[i]->name, sorted[i]->type);
    }
    fclose(f);
    return text;
}

char *user_object_help(const char *def)
{
    if (def[0] == '{') {
        return NULL;
    }
    /* Elements are split at single commas; ",," is a comma inside a value. */
    char *copy = strdup(def);
    if (!copy) {
        abort();
    }
    char *type = NULL;
    bool help = false;
    char *start = copy;
    for (char *p = copy;; p++) {
        if (*p == ',' && p[1] == ',') {
            p++;
            continue;
        }
        if (*p && *p != ',') {
            continue;
        }
        bool last = !*p;
        *p = '\0';
        if (start == copy && !strchr(start, '=')) {
            type = start;
        }
        help |= !strcmp(start, "help");
        if (last) {
            break;
        }
        start = p + 1;
    }
    char *text = NULL;
    if (help) {
        const UserObjectClass *cls = type ? user_object_class(type) : NULL;
        if (cls) {
            text = user_object_class_help(cls);
        } else {
            size_t len = 0;
            FILE *f = open_memstream(&text, &len);
            if (!f) {
                abort();
            }
            fprintf(f, "List of user creatable objects:\n");
            for (size_t i = 0; i < ARRAY_SIZE(user_object_classes); i++) {
                fprintf(f, "  %s\n", user_object_classes[i].name);
            }
            fclose(f);
        }
    }
    free(copy);
    return text;
}

const UserObject *user_object_find(const char *id)
{
    UserObject *obj;
    pthread_mutex_lock(&user_objects_lock);
    for (obj = user_objects; obj; obj = obj->next) {
        if (!strcmp(obj->id, id)) {
            break;
        }
    }
    pthread_mutex_unlock(&user_objects_lock);
    return obj;
}

const UserObject *user_object_tls_creds(const char *id, bool server, Error **errp)
{
    const UserObject *obj = user_object_find(id);
    if (!obj) {
        error_setg(errp, "No TLS credentials with id '%s'", id);
        return NULL;
    }
    if (obj->type != USER_OBJECT_TLS_CREDS_X509 && obj->type != USER_OBJECT_TLS_CREDS_PSK) {
        error_setg(errp, "Object with id '%s' is not TLS credentials", id);
        return NULL;
    }
    if (obj->server_endpoint != server) {
        error_setg(errp, "Expected TLS credentials for a %s endpoint",
                   server ? "server" : "client");
        return NULL;
    }
    return obj;
}

void user_object_del_all(void)
{
    pthread_mutex_lock(&user_objects_lock);
    UserObject *obj = user_objects;
    user_objects = NULL;
    pthread_mutex_unlock(&user_objects_lock);
    while (obj) {
        UserObject *next = obj->next;
        user_object_free(obj);
        obj = next;
    }
}

int user_object_add_or_help(const char *def, Error **errp)
{
    char *help = user_object_help(def);
    if (help) {
        fputs(help, stdout);
        free(help);
        return 1;
    }
    return user_object_add(def, errp);
}
