/* SPDX-License-Identifier: GPL-2.0-or-later */
/* --object: the few object types an NBD server needs, with QEMU's checks and messages. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qkit/cutils.h"
#include "qkit/opts.h"

#include "nbd-objects.h"

/* Called for each --object: split off the implied qom-type, then build the object. */
int nbd_objects_add(NbdObjects *objs, const char *def, Error **errp)
{
    const char *comma = strchr(def, ',');
    size_t first_len = comma ? (size_t)(comma - def) : strlen(def);
    const char *rest = def;
    char *type = NULL;
    json_t *o = NULL;
    NbdObject obj = { 0 };
    int ret = -EINVAL;

    if (!memchr(def, '=', first_len)) {
        type = strndup(def, first_len);
        rest = comma ? comma + 1 : "";
    }
    o = qdict_from_keyval(rest, errp);
    if (!o) {
        goto out;
    }
    if (!type && qdict_get_str(o, "qom-type")) {
        type = strdup(qdict_get_str(o, "qom-type"));
    }
    const char *id = qdict_get_str(o, "id");
    if (!type) {
        error_setg(errp, "Parameter 'qom-type' is missing");
        goto out;
    }
    if (!strcmp(type, "secret")) {
        obj.type = NBD_OBJ_SECRET;
    } else if (!strcmp(type, "tls-creds-x509")) {
        obj.type = NBD_OBJ_TLS_CREDS_X509;
    } else if (!strcmp(type, "authz-simple")) {
        obj.type = NBD_OBJ_AUTHZ_SIMPLE;
    } else {
        error_setg(errp, "Parameter 'qom-type' does not accept value '%s'", type);
        goto out;
    }
    if (!id) {
        error_setg(errp, "Parameter 'id' is missing");
        goto out;
    }
    if (nbd_objects_find(objs, id)) {
        error_setg(errp, "attempt to add duplicate property '%s' to object (type "
                   "'container')", id);
        goto out;
    }
    if (obj.type == NBD_OBJ_SECRET) {
        if (!qdict_get_str(o, "data") && !qdict_get_str(o, "file")) {
            error_setg(errp, "Either 'file' or 'data' must be provided");
            goto out;
        }
    } else if (obj.type == NBD_OBJ_AUTHZ_SIMPLE) {
        const char *identity = qdict_get_str(o, "identity");
        if (!identity) {
            error_setg(errp, "The 'identity' property must be set");
            goto out;
        }
        obj.identity = strdup(identity);
    } else {
        const char *endpoint = qdict_get_str(o, "endpoint");
        const char *dir = qdict_get_str(o, "dir");
        const char *verify = qdict_get_str(o, "verify-peer");
        bool verify_peer = true;
        if (endpoint && strcmp(endpoint, "server") && strcmp(endpoint, "client")) {
            error_setg(errp, "Parameter 'endpoint' does not accept value '%s'", endpoint);
            goto out;
        }
        if (verify && qkit_strtobool(verify, &verify_peer) < 0) {
            error_setg(errp, "Parameter 'verify-peer' expects 'on' or 'off'");
            goto out;
        }
        if (!dir) {
            error_setg(errp, "Missing 'dir' property value");
            goto out;
        }
        obj.server_endpoint = endpoint && !strcmp(endpoint, "server");
        if (obj.server_endpoint) {
            obj.creds = nbd_tls_creds_new_x509(dir, verify_peer, errp);
            if (!obj.creds) {
                goto out;
            }
        }
    }
    obj.id = strdup(id);
    NbdObject *v = realloc(objs->v, (objs->n + 1) * sizeof(*v));
    if (!v) {
        abort();
    }
    objs->v = v;
    objs->v[objs->n++] = obj;
    memset(&obj, 0, sizeof(obj));
    ret = 0;
out:
    free(obj.identity);
    nbd_tls_creds_free(obj.creds);
    json_decref(o);
    free(type);
    return ret;
}

NbdObject *nbd_objects_find(NbdObjects *objs, const char *id)
{
    for (int i = 0; i < objs->n; i++) {
        if (!strcmp(objs->v[i].id, id)) {
            return &objs->v[i];
        }
    }
    return NULL;
}

void nbd_objects_free(NbdObjects *objs)
{
    for (int i = 0; i < objs->n; i++) {
        free(objs->v[i].id);
        free(objs->v[i].identity);
        nbd_tls_creds_free(objs->v[i].creds);
    }
    free(objs->v);
    objs->v = NULL;
    objs->n = 0;
}
