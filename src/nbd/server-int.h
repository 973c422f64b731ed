/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Internals shared by the server's files: the export, the connection, the client. */
#ifndef QKIT_NBD_SERVER_INT_H
#define QKIT_NBD_SERVER_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "nbd/nbd-proto.h"
#include "nbd/server.h"

/* Meta context ids this server hands out (stable for a connection, as QEMU's are). */
#define NBD_META_ID_BASE_ALLOCATION 0
#define NBD_META_ID_ALLOC_DEPTH     1
#define NBD_META_ID_DIRTY_BITMAP    2

/* Most extents one BLOCK_STATUS reply chunk carries per context. */
#define NBD_MAX_BLOCK_STATUS_EXTENTS (1024 * 1024 / sizeof(NbdBlockDescriptor))

struct NbdExport {
    char *name;
    char *description;
    BlockDriverState *bs;
    uint64_t offset;         /* added to every request (qemu-nbd -o) */
    int64_t size;            /* bytes clients see: the node's length less offset */
    bool read_only;
    bool allocation_depth;
    char *bitmap;            /* dirty bitmap offered as a meta context, or NULL */
    BlockDriverState *bitmap_bs; /* the node of the chain that holds it */
    bool discard;
    NbdDetectZeroes detect_zeroes;
    uint16_t flags;          /* transmission flags, before per-connection extras */
    uint32_t min_block;
    uint32_t pref_block;
    uint32_t max_block;
};

/* One connection's byte stream: a plain socket, or a TLS session over it. */
typedef struct NbdConn {
    int fd;
    void *tls;               /* gnutls_session_t once STARTTLS succeeded */
    /* Plain sockets: bytes received ahead of what was asked, rbuf[rpos..rlen). */
    uint8_t *rbuf;
    size_t rpos;
    size_t rlen;
} NbdConn;

/* The meta contexts a client selected with NBD_OPT_SET_META_CONTEXT. */
typedef struct NbdMetaSelection {
    NbdExport *exp;          /* the export they were selected for */
    bool base_allocation;
    bool allocation_depth;
    bool bitmap;
    int count;
} NbdMetaSelection;

/* A client connection and what it has negotiated. */
typedef struct NbdClient {
    NbdServer *srv;
    NbdConn conn;
    NbdExport *exp;          /* chosen by NBD_OPT_GO / EXPORT_NAME */
    bool no_zeroes;
    bool structured_reply;
    NbdMetaSelection meta;
    uint8_t *buf;            /* option data, request payload, read data, extents */
    size_t buf_size;         /* grows to the largest request seen, at most 32 MiB */
} NbdClient;

/* server.c: make client->buf hold at least size bytes. 0 or -ENOMEM. */
int nbd_client_reserve(NbdClient *client, size_t size);

/* server-conn.c: whole-buffer I/O over the connection (plain or TLS). */
int nbd_conn_read(NbdConn *conn, void *buf, size_t len, bool *eof);
int nbd_conn_writev(NbdConn *conn, struct iovec *iov, int iovcnt);
int nbd_conn_write(NbdConn *conn, const void *buf, size_t len);
int nbd_conn_drain(NbdConn *conn, uint64_t len);
/* Run the TLS handshake as server over conn->fd; checks the peer and --tls-authz. */
int nbd_conn_start_tls(NbdConn *conn, NbdServer *srv, Error **errp);
/* Say goodbye to the TLS peer (if any), free the session, close the socket. */
void nbd_conn_close(NbdConn *conn);

/* server-handshake.c: the option haggling; 1 = transmission, 0 = client left. */
int nbd_negotiate(NbdClient *client, Error **errp);
NbdExport *nbd_server_find_export(NbdServer *srv, const char *name);
/* Send one option reply: its header, then p1 and p2 (either may be empty). */
int nbd_opt_reply(NbdClient *client, uint32_t opt, uint32_t type, const void *p1,
                  uint32_t len1, const void *p2, uint32_t len2);
/* Send an error reply of type to opt whose payload is the formatted message. */
int __attribute__((format(printf, 4, 5)))
nbd_opt_reply_err(NbdClient *client, uint32_t opt, uint32_t type, const char *fmt, ...);

/* server-meta.c: meta context options and block status replies. */
int nbd_negotiate_meta_context(NbdClient *client, uint32_t opt, const uint8_t *data,
                               uint32_t len, Error **errp);
int nbd_send_block_status(NbdClient *client, const NbdRequest *req, Error **errp);

/* server.c: replies during transmission, used by server-meta.c too. */
int nbd_send_chunk(NbdClient *client, uint64_t cookie, uint16_t type, uint16_t flags,
                   const void *payload, uint32_t len, const void *data, uint32_t data_len);
int nbd_send_error(NbdClient *client, uint64_t cookie, int err, const char *msg);

#endif
