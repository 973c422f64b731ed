/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The client's side of an NBD connection: a socket that carries plain bytes until
 * NBD_OPT_STARTTLS succeeds and a GnuTLS client session afterwards, and the x509 or
 * PSK credentials (tls-creds-x509 / tls-creds-psk with endpoint=client) it uses.
 */
#ifndef QKIT_NBD_CLIENT_SOCK_H
#define QKIT_NBD_CLIENT_SOCK_H

#include <stdbool.h>
#include <stddef.h>

#include "qkit/error.h"

/* Loaded client credentials: the CA to verify servers with, our own certificate. */
typedef struct NbdTlsClientCreds NbdTlsClientCreds;

/* A connected socket, with a TLS session on top once STARTTLS has run. */
typedef struct NbdSock {
    int fd;
    void *tls;               /* gnutls_session_t, NULL while plain */
} NbdSock;

/*
 * Load dir/ca-cert.pem (required) and dir/client-cert.pem + dir/client-key.pem (when
 * both exist), as QEMU's tls-creds-x509 does for a client; sanity_check first checks
 * the certificates' dates, CA flags and our certificate against the CA. NULL with
 * errp on failure.
 */
NbdTlsClientCreds *nbd_tls_client_creds_new_x509(const char *dir, bool verify_peer,
                                                 bool sanity_check, Error **errp);
/*
 * Client PSK credentials (tls-creds-psk with endpoint=client): username's key from
 * dir/keys.psk, as QEMU loads them. NULL with errp on failure.
 */
NbdTlsClientCreds *nbd_tls_client_creds_new_psk(const char *dir, const char *username,
                                                Error **errp);
/* Free client credentials of either kind (NULL is fine). */
void nbd_tls_client_creds_free(NbdTlsClientCreds *creds);

/* Read exactly len bytes; -ECONNRESET if the peer closed first (*eof if at 0 bytes). */
int nbd_sock_read(NbdSock *s, void *buf, size_t len, bool *eof);
/* Write len bytes in full. 0 or -errno. */
int nbd_sock_write(NbdSock *s, const void *buf, size_t len);
/* Write a header and a payload (payload may be NULL) as one unit. 0 or -errno. */
int nbd_sock_write2(NbdSock *s, const void *hdr, size_t hdr_len, const void *payload,
                    size_t payload_len);
/*
 * After the server acknowledged NBD_OPT_STARTTLS: run the TLS handshake as client
 * and, when the credentials verify peers, check the server's certificate against the
 * CA and hostname (NULL: no name to check, which QEMU refuses). 0 or -errno.
 */
int nbd_sock_start_tls(NbdSock *s, const NbdTlsClientCreds *creds, const char *hostname,
                       Error **errp);
/* Stop both directions (a protocol violation); later reads and writes fail. */
void nbd_sock_shutdown(NbdSock *s);
/* TLS goodbye (if any), free the session and close the socket. */
void nbd_sock_close(NbdSock *s);

#endif
