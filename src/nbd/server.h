/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The NBD server as a library: an export is a block node plus the options that
 * shape what clients see; nbd_server_serve_client() runs one client connection
 * (handshake, then transmission) to its end on the calling thread. A tool owns the
 * listening sockets and threads; any number of clients may be served at once.
 */
#ifndef QKIT_NBD_SERVER_H
#define QKIT_NBD_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "qkit/block.h"
#include "qkit/error.h"

/* What --detect-zeroes asks for on plain writes. */
typedef enum {
    NBD_DETECT_ZEROES_OFF,
    NBD_DETECT_ZEROES_ON,
    NBD_DETECT_ZEROES_UNMAP,
} NbdDetectZeroes;

/* How an export is to be built (qemu-nbd's options for it). */
typedef struct NbdExportOptions {
    const char *name;          /* export name ("" by default) */
    const char *description;   /* NULL: none */
    bool read_only;
    bool allocation_depth;     /* offer qemu:allocation-depth */
    const char *bitmap;        /* offer qemu:dirty-bitmap:NAME, NULL: none */
    bool discard;              /* --discard=unmap: trims reach the image */
    NbdDetectZeroes detect_zeroes;
    bool multi_conn;           /* advertise NBD_FLAG_CAN_MULTI_CONN */
    uint64_t offset;           /* -o: the export starts this far into the image */
} NbdExportOptions;

typedef struct NbdExport NbdExport;
typedef struct NbdTlsCreds NbdTlsCreds;

/* One server configuration: its exports and its TLS policy. Filled in by the tool. */
typedef struct NbdServer {
    NbdExport **exports;
    int nb_exports;
    NbdTlsCreds *tls;          /* non-NULL: TLS is mandatory */
    /* Distinguished names allowed to connect under TLS (--tls-authz), NULL: any. */
    char **authz_identities;
    int nb_authz_identities;
} NbdServer;

/*
 * Build an export of bs (a reference is taken). Fails if the node cannot give its
 * length or a requested bitmap is missing.
 */
NbdExport *nbd_export_new(BlockDriverState *bs, const NbdExportOptions *opts, Error **errp);
void nbd_export_free(NbdExport *exp);
const char *nbd_export_name(const NbdExport *exp);
int64_t nbd_export_size(const NbdExport *exp);
/* The transmission flags the export advertises (without per-connection extras). */
uint16_t nbd_export_flags(const NbdExport *exp);

/*
 * Serve one client on the connected socket fd until it leaves; fd is closed on
 * return. Returns 1 if the client reached the transmission phase (qemu-nbd counts
 * such clients to decide when to exit), 0 if it left during the handshake, -errno
 * when the handshake failed. errp is set whenever the connection ended on an error,
 * worded as qemu-nbd reports it ("option negotiation failed: ...", "Disconnect
 * client, due to: ...").
 */
int nbd_server_serve_client(NbdServer *srv, int fd, Error **errp);

/*
 * Listening sockets. nbd_listen_tcp() binds host:port (host NULL = any) and returns
 * the socket; nbd_listen_unix() replaces a stale socket file at path.
 */
int nbd_listen_tcp(const char *host, const char *port, Error **errp);
int nbd_listen_unix(const char *path, Error **errp);

/*
 * The accept loop of a server: one thread per client, at most `shared` clients at
 * once (0 = no limit; further clients wait in the listen queue), and unless
 * persistent the loop ends when the last client that reached transmission leaves.
 */
typedef struct NbdServerLoop NbdServerLoop;
/* Told about each client whose handshake failed (the tool prints it). */
typedef void NbdClientErrorFn(void *opaque, Error *err);

NbdServerLoop *nbd_server_loop_new(NbdServer *srv, int listen_fd, int shared,
                                   bool persistent, NbdClientErrorFn *on_error,
                                   void *opaque, Error **errp);
/* Serve an already connected socket (qemu-nbd -c's socketpair) as a client. */
int nbd_server_loop_add_client(NbdServerLoop *loop, int fd, Error **errp);
/*
 * Accept and serve until the loop ends or nbd_server_loop_stop(); on return every
 * client thread has finished.
 */
void nbd_server_loop_run(NbdServerLoop *loop);
/* Ask the loop to end, dropping clients; safe in a signal handler. */
void nbd_server_loop_stop(NbdServerLoop *loop);
void nbd_server_loop_free(NbdServerLoop *loop);

/*
 * Minimal client handshake over sock for the kernel client: fixed newstyle,
 * NBD_OPT_EXPORT_NAME name; returns the export's size and transmission flags.
 */
int nbd_local_client_handshake(int sock, const char *name, uint64_t *size,
                               uint16_t *flags, Error **errp);

/*
 * TLS credentials from a directory of PEM files as tls-creds-x509 names them
 * (ca-cert.pem, server-cert.pem, server-key.pem, optional ca-crl.pem and
 * dh-params.pem). verify_peer: clients must present a certificate the CA signed.
 */
NbdTlsCreds *nbd_tls_creds_new_x509(const char *dir, bool verify_peer, Error **errp);
/* Server PSK credentials (tls-creds-psk): dir/keys.psk. NULL with errp on failure. */
NbdTlsCreds *nbd_tls_creds_new_psk(const char *dir, Error **errp);
void nbd_tls_creds_free(NbdTlsCreds *creds);

/*
 * Attach the socket fd of a connected socketpair to the kernel NBD device (as
 * qemu-nbd -c does) and run the kernel's client until it disconnects.
 * nbd_kernel_open() checks the device first so a missing module fails early.
 */
int nbd_kernel_open(const char *device, Error **errp);
int nbd_kernel_attach(int dev_fd, int sock_fd, uint64_t size, uint16_t flags, Error **errp);
/* -d: tell the kernel client on device to disconnect. */
int nbd_kernel_disconnect(const char *device, Error **errp);

#endif
