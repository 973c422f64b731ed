/* SPDX-License-Identifier: GPL-2.0-or-later */
/* List mode (qemu-nbd -L): what a server says about each of its exports. */
#ifndef QKIT_NBD_LIST_H
#define QKIT_NBD_LIST_H

#include <stdint.h>

#include "nbd/client-sock.h"
#include "qkit/error.h"

typedef struct NbdListExport {
    char *name;
    char *description;       /* NULL if the server gave none */
    uint64_t size;
    uint16_t flags;          /* transmission flags */
    uint32_t min_block;
    uint32_t opt_block;
    uint32_t max_block;
    char **contexts;         /* meta contexts the export offers */
    int nb_contexts;
} NbdListExport;

/*
 * Run the handshake on the connected socket fd (taken over and closed) and describe
 * every export; with creds, NBD_OPT_STARTTLS first and the rest over TLS, checking
 * the server's certificate against hostname. Returns the count (*pexports
 * allocated, free with nbd_list_free) or -errno.
 */
int nbd_list_exports(int fd, const NbdTlsClientCreds *creds, const char *hostname,
                     NbdListExport **pexports, Error **errp);
void nbd_list_free(NbdListExport *exports, int n);

#endif
