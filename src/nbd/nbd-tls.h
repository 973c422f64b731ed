/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * GnuTLS pieces both ends of an NBD connection use: x509 credentials loaded from a
 * tls-creds-x509 directory, PSK credentials from a tls-creds-psk one, the session set-up and handshake after NBD_OPT_STARTTLS,
 * whole-buffer record reads and corked writes, and the goodbye. The client
 * (client-sock.c) and the server (server-conn.c) add their own certificate checks.
 */
#ifndef QKIT_NBD_NBD_TLS_H
#define QKIT_NBD_NBD_TLS_H

#include <gnutls/gnutls.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

#include "qkit/error.h"

/* Loaded x509 credentials of either endpoint. */
typedef struct NbdTlsX509 {
    gnutls_certificate_credentials_t cred;
    gnutls_dh_params_t dh;   /* NULL unless dh-params.pem was loaded */
    bool verify_peer;        /* check the peer's certificate after the handshake */
} NbdTlsX509;

/*
 * Load a tls-creds-x509 directory for endpoint (GNUTLS_CLIENT or GNUTLS_SERVER) as
 * QEMU does: ca-cert.pem always; a server's server-cert.pem and server-key.pem, and
 * ca-crl.pem and dh-params.pem when present; a client's client-cert.pem and
 * client-key.pem when both are present. sanity_check (client only) first checks the
 * certificates' dates, CA flags and our certificate against the CA. 0, or -errno with
 * errp; x is then left for nbd_tls_x509_clear.
 */
int nbd_tls_x509_load_dir(NbdTlsX509 *x, const char *dir, unsigned int endpoint,
                          bool verify_peer, bool sanity_check, Error **errp);
/* Free what nbd_tls_x509_load_dir loaded. */
void nbd_tls_x509_clear(NbdTlsX509 *x);

/* Loaded PSK credentials of one endpoint (tls-creds-psk). */
typedef struct NbdTlsPsk {
    gnutls_psk_server_credentials_t server;   /* endpoint=server: keys.psk, read per login */
    gnutls_psk_client_credentials_t client;   /* endpoint=client: our username and key */
} NbdTlsPsk;

/*
 * Load a tls-creds-psk directory for endpoint as QEMU does: a server hands
 * dir/keys.psk to GnuTLS, which looks each client's username up in it; a client finds
 * the line "username:hexkey" for its own username. 0, or -errno with errp; p is then
 * left for nbd_tls_psk_clear.
 */
int nbd_tls_psk_load_dir(NbdTlsPsk *p, const char *dir, unsigned int endpoint,
                         const char *username, Error **errp);
/* Free what nbd_tls_psk_load_dir loaded. */
void nbd_tls_psk_clear(NbdTlsPsk *p);

/* The reason QEMU gives for a failed verification status. */
const char *nbd_tls_verify_reason(unsigned int status);

/*
 * A session over fd for endpoint (GNUTLS_CLIENT or GNUTLS_SERVER) with x's
 * certificates and the default priority, or (x NULL) psk's keys and the default
 * priority with the PSK key exchanges added; the caller may adjust it before the
 * handshake.
 */
int nbd_tls_session_new(gnutls_session_t *out, unsigned int endpoint, const NbdTlsX509 *x,
                        const NbdTlsPsk *psk, int fd, Error **errp);
/* Run the handshake to its end; on failure the session is freed. 0 or -EIO. */
int nbd_tls_handshake(gnutls_session_t s, Error **errp);

/*
 * Read exactly len bytes; -ECONNRESET if the peer closed first (*eof if at 0 bytes).
 * A close without TLS goodbye counts as such a close when abrupt_is_eof, else as
 * -EIO.
 */
int nbd_tls_read(gnutls_session_t s, void *buf, size_t len, bool abrupt_is_eof,
                 bool *eof);
/* Write a list of buffers in full, corked into as few records as they fit. 0 or -EIO. */
int nbd_tls_writev(gnutls_session_t s, const struct iovec *iov, int iovcnt);
/* TLS goodbye and free the session (if any), then close the socket (if open). */
void nbd_tls_close(void **tls, int *fd);

#endif
