/* SPDX-License-Identifier: GPL-2.0-or-later */
/* --object definitions qkit-nbd understands: tls-creds-x509, authz-simple, secret. */
#ifndef QKIT_NBD_OBJECTS_H
#define QKIT_NBD_OBJECTS_H

#include <stdbool.h>

#include "nbd/server.h"
#include "qkit/error.h"

typedef enum {
    NBD_OBJ_SECRET,
    NBD_OBJ_TLS_CREDS_X509,
    NBD_OBJ_AUTHZ_SIMPLE,
} NbdObjectType;

typedef struct NbdObject {
    NbdObjectType type;
    char *id;
    bool server_endpoint;    /* tls-creds: endpoint=server */
    NbdTlsCreds *creds;      /* tls-creds with a server endpoint, loaded */
    char *identity;          /* authz-simple: the distinguished name let in */
} NbdObject;

typedef struct NbdObjects {
    NbdObject *v;
    int n;
} NbdObjects;

/* Parse and create one --object (TLS credentials are loaded now, as QEMU does). */
int nbd_objects_add(NbdObjects *objs, const char *def, Error **errp);
NbdObject *nbd_objects_find(NbdObjects *objs, const char *id);
void nbd_objects_free(NbdObjects *objs);

#endif
