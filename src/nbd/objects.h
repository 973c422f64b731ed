/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * User-creatable objects (--object): one process-wide registry, as QEMU keeps its
 * /objects container, so that a block driver can find TLS credentials by the id an
 * option names (tls-creds=ID) without the tool passing them down. Types known:
 * tls-creds-x509 and tls-creds-psk (loaded when created, either endpoint),
 * authz-simple and secret.
 * Objects are added while the tool parses its command line and live until
 * user_object_del_all(); lookups are safe from any thread.
 */
#ifndef QKIT_NBD_OBJECTS_H
#define QKIT_NBD_OBJECTS_H

#include <stdbool.h>

#include "nbd/client-sock.h"
#include "nbd/server.h"
#include "qkit/error.h"

typedef enum {
    USER_OBJECT_SECRET,
    USER_OBJECT_TLS_CREDS_X509,
    USER_OBJECT_TLS_CREDS_PSK,
    USER_OBJECT_AUTHZ_SIMPLE,
} UserObjectType;

typedef struct UserObject {
    UserObjectType type;
    char *id;
    bool server_endpoint;                /* tls-creds: endpoint=server */
    NbdTlsCreds *server_creds;           /* tls-creds with a server endpoint, loaded */
    NbdTlsClientCreds *client_creds;     /* tls-creds with a client endpoint, loaded */
    char *identity;                      /* authz-simple: the distinguished name let in */
    struct UserObject *next;
} UserObject;

/*
 * Parse one --object definition ("type,id=ID,key=value,..." or a JSON object) and
 * create it, with QEMU's checks and messages. 0 or -errno.
 */
int user_object_add(const char *def, Error **errp);
/*
 * When an --object definition asks for help ("help", or "TYPE,help" and friends),
 * the text to print, as QEMU's list of types or the type's properties; the caller
 * prints it, frees it and exits 0. NULL when def is not a help request.
 */
char *user_object_help(const char *def);
/*
 * A tool's --object: a help request is printed on stdout and returns 1 (the tool then
 * exits 0, as QEMU's do); otherwise the object is created (0) or not (-errno, errp).
 */
int user_object_add_or_help(const char *def, Error **errp);
/* The object with this id, or NULL. */
const UserObject *user_object_find(const char *id);
/*
 * The tls-creds object id names, for the server or the client side of a connection;
 * NULL with QEMU's message when there is none, it is something else, or it is for
 * the other endpoint.
 */
const UserObject *user_object_tls_creds(const char *id, bool server, Error **errp);
/* Free every object (at exit, once nothing uses them any more). */
void user_object_del_all(void);

#endif
