/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The NBD client's transport: whole-buffer reads and writes over a plain socket or a
 * GnuTLS client session (the TLS code shared with the server is in nbd-tls.c), the
 * client's x509 credentials, and the checks made on the server's certificate after
 * the handshake. Messages follow QEMU's crypto layer so that a failed verification
 * reads the same as with qemu-img.
 */
#include "nbd/client-sock.h"

#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include "nbd/nbd-proto.h"
#include "nbd/nbd-tls.h"

struct NbdTlsClientCreds {
    bool is_psk;             /* tls-creds-psk: psk is loaded, x509 is empty */
    NbdTlsX509 x509;
    NbdTlsPsk psk;
};

NbdTlsClientCreds *nbd_tls_client_creds_new_x509(const char *dir, bool verify_peer,
                                                 bool sanity_check, Error **errp)
{
    NbdTlsClientCreds *c = calloc(1, sizeof(*c));
    if (!c) {
        abort();
    }
    if (nbd_tls_x509_load_dir(&c->x509, dir, GNUTLS_CLIENT, verify_peer, sanity_check,
                              errp) < 0) {
        nbd_tls_client_creds_free(c);
        return NULL;
    }
    return c;
}

NbdTlsClientCreds *nbd_tls_client_creds_new_psk(const char *dir, const char *username,
                                                Error **errp)
{
    NbdTlsClientCreds *c = calloc(1, sizeof(*c));
    if (!c) {
        abort();
    }
    c->is_psk = true;
    if (nbd_tls_psk_load_dir(&c->psk, dir, GNUTLS_CLIENT, username, errp) < 0) {
        nbd_tls_client_creds_free(c);
        return NULL;
    }
    return c;
}

void nbd_tls_client_creds_free(NbdTlsClientCreds *creds)
{
    if (!creds) {
        return;
    }
    nbd_tls_x509_clear(&creds->x509);
    nbd_tls_psk_clear(&creds->psk);
    free(creds);
}

int nbd_sock_read(NbdSock *s, void *buf, size_t len, bool *eof)
{
    if (!s->tls) {
        return nbd_read_all(s->fd, buf, len, eof);
    }
    /* A server that hangs up without a TLS goodbye has still hung up. */
    return nbd_tls_read(s->tls, buf, len, true, eof);
}

int nbd_sock_write(NbdSock *s, const void *buf, size_t len)
{
    return nbd_sock_write2(s, buf, len, NULL, 0);
}

int nbd_sock_write2(NbdSock *s, const void *hdr, size_t hdr_len, const void *payload,
                    size_t payload_len)
{
    if (!s->tls) {
        int ret = nbd_write_all(s->fd, hdr, hdr_len);
        if (ret == 0 && payload && payload_len) {
            ret = nbd_write_all(s->fd, payload, payload_len);
        }
        return ret;
    }
    struct iovec iov[] = {
        { .iov_base = (void *)hdr, .iov_len = hdr_len },
        { .iov_base = (void *)payload, .iov_len = payload ? payload_len : 0 },
    };
    return nbd_tls_writev(s->tls, iov, 2);
}

/* GnuTLS's writes: sendmsg with MSG_NOSIGNAL so a vanished server is an error, not SIGPIPE. */
static ssize_t sock_tls_vec_push(gnutls_transport_ptr_t ptr, const giovec_t *iov, int iovcnt)
{
    struct msghdr msg = { .msg_iov = (struct iovec *)iov, .msg_iovlen = iovcnt };
    return sendmsg((int)(intptr_t)ptr, &msg, MSG_NOSIGNAL);
}

/* Check one certificate of the server's chain: dates, and the name on the first. */
static int sock_check_cert(const gnutls_datum_t *der, bool first, const char *hostname,
                           Error **errp)
{
    gnutls_x509_crt_t cert;
    time_t now = time(NULL);
    int ret = -EPERM;

    if (gnutls_x509_crt_init(&cert) < 0) {
        error_setg(errp, "Cannot initialize certificate");
        return -ENOMEM;
    }
    if (gnutls_x509_crt_import(cert, der, GNUTLS_X509_FMT_DER) < 0) {
        error_setg(errp, "Cannot import certificate");
        goto out;
    }
    if (gnutls_x509_crt_get_expiration_time(cert) < now) {
        error_setg(errp, "The certificate has expired");
        goto out;
    }
    if (gnutls_x509_crt_get_activation_time(cert) > now) {
        error_setg(errp, "The certificate is not yet activated");
        goto out;
    }
    if (first) {
        if (!hostname) {
            error_setg(errp, "No hostname for certificate validation");
            goto out;
        }
        if (!gnutls_x509_crt_check_hostname(cert, hostname)) {
            error_setg(errp, "Certificate does not match the hostname %s", hostname);
            goto out;
        }
    }
    ret = 0;
out:
    gnutls_x509_crt_deinit(cert);
    return ret;
}

/* After the handshake: is the server's certificate from our CA and for this host? */
static int sock_check_server(gnutls_session_t tls, const char *hostname, Error **errp)
{
    unsigned int status = 0;
    int ret = gnutls_certificate_verify_peers2(tls, &status);
    if (ret < 0) {
        error_setg(errp, "Cannot check peer certificate: %s", gnutls_strerror(ret));
        return -EPERM;
    }
    if (status) {
        error_setg(errp, "%s", nbd_tls_verify_reason(status));
        return -EPERM;
    }
    unsigned int ncerts = 0;
    const gnutls_datum_t *certs = gnutls_certificate_get_peers(tls, &ncerts);
    if (!certs || ncerts == 0) {
        error_setg(errp, "No certificate peers");
        return -EPERM;
    }
    for (unsigned int i = 0; i < ncerts; i++) {
        ret = sock_check_cert(&certs[i], i == 0, hostname, errp);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

int nbd_sock_start_tls(NbdSock *s, const NbdTlsClientCreds *creds, const char *hostname,
                       Error **errp)
{
    gnutls_session_t tls;
    int ret = nbd_tls_session_new(&tls, GNUTLS_CLIENT, creds->is_psk ? NULL : &creds->x509,
                                  &creds->psk, s->fd, errp);
    if (ret < 0) {
        return ret;
    }
    gnutls_transport_set_vec_push_function(tls, sock_tls_vec_push);
    ret = nbd_tls_handshake(tls, errp);
    if (ret < 0) {
        return ret;
    }
    /* A PSK session has no certificate: knowing the key is the server's proof. */
    if (!creds->is_psk && creds->x509.verify_peer) {
        ret = sock_check_server(tls, hostname, errp);
        if (ret < 0) {
            gnutls_deinit(tls);
            return ret;
        }
    }
    s->tls = tls;
    return 0;
}

void nbd_sock_shutdown(NbdSock *s)
{
    if (s->fd >= 0) {
        shutdown(s->fd, SHUT_RDWR);
    }
}

void nbd_sock_close(NbdSock *s)
{
    nbd_tls_close(&s->tls, &s->fd);
}
