/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The NBD client's transport: whole-buffer reads and writes over a plain socket or a
 * GnuTLS client session, the client's x509 credentials, and the checks made on the
 * server's certificate after the handshake. Messages follow QEMU's crypto layer so
 * that a failed verification reads the same as with qemu-img.
 */
#include "nbd/client-sock.h"

#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "nbd/nbd-proto.h"

/* File names inside a tls-creds-x509 directory for a client, as QEMU names them. */
#define TLS_CA_CERT     "ca-cert.pem"
#define TLS_CLIENT_CERT "client-cert.pem"
#define TLS_CLIENT_KEY  "client-key.pem"

struct NbdTlsClientCreds {
    gnutls_certificate_credentials_t x509;
    bool verify_peer;
};

/* Most CA certificates read from ca-cert.pem for the sanity check. */
#define TLS_MAX_CA_CERTS 16

/* Join dir and a file name; the caller frees the result. */
static char *client_creds_path(const char *dir, const char *file)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%s", dir, file) < 0) {
        abort();
    }
    return p;
}

/* The reason QEMU gives for a verification status (the later checks win, as there). */
static const char *sock_verify_reason(unsigned int status)
{
    const char *reason = "Invalid certificate";
    if (status & GNUTLS_CERT_INVALID) {
        reason = "The certificate is not trusted";
    }
    if (status & GNUTLS_CERT_SIGNER_NOT_FOUND) {
        reason = "The certificate hasn't got a known issuer";
    }
    if (status & GNUTLS_CERT_REVOKED) {
        reason = "The certificate has been revoked";
    }
    if (status & GNUTLS_CERT_INSECURE_ALGORITHM) {
        reason = "The certificate uses an insecure algorithm";
    }
    return reason;
}

/* Sanity check of one of our certificates: in its validity period, CA or not as needed. */
static int creds_check_cert(gnutls_x509_crt_t cert, const char *file, bool is_ca,
                            Error **errp)
{
    time_t now = time(NULL);
    if (gnutls_x509_crt_get_expiration_time(cert) < now) {
        error_setg(errp, "The certificate %s has expired", file);
        return -EINVAL;
    }
    if (gnutls_x509_crt_get_activation_time(cert) > now) {
        error_setg(errp, "The certificate %s is not yet active", file);
        return -EINVAL;
    }
    unsigned int critical;
    int status = gnutls_x509_crt_get_basic_constraints(cert, &critical, NULL, NULL);
    if (status > 0 && !is_ca) {
        error_setg(errp, "The certificate %s basic constraints show a CA, but we need one "
                   "for a client", file);
        return -EINVAL;
    }
    if (status == 0 && is_ca) {
        error_setg(errp, "The certificate %s basic constraints do not show a CA", file);
        return -EINVAL;
    }
    if (status == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE && is_ca) {
        error_setg(errp, "The certificate %s is missing basic constraints for a CA", file);
        return -EINVAL;
    }
    if (status < 0 && status != GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) {
        error_setg(errp, "Unable to query certificate %s basic constraints: %s", file,
                   gnutls_strerror(status));
        return -EINVAL;
    }
    return 0;
}

/*
 * What QEMU's sanity-check=on does when credentials are created: our certificate and
 * the CA certificates parse, are valid now, and ours is signed by the CA, so a bad
 * directory is reported at --object time rather than as a failed handshake.
 */
static int creds_sanity_check(const char *ca, const char *cert_file, Error **errp)
{
    gnutls_x509_crt_t cert = NULL;
    gnutls_x509_crt_t cas[TLS_MAX_CA_CERTS];
    unsigned int ncas = TLS_MAX_CA_CERTS;
    gnutls_datum_t data = { NULL, 0 };
    int ret = -EINVAL;

    if (cert_file) {
        int r = gnutls_load_file(cert_file, &data);
        if (r >= 0) {
            r = gnutls_x509_crt_init(&cert);
        }
        if (r >= 0) {
            r = gnutls_x509_crt_import(cert, &data, GNUTLS_X509_FMT_PEM);
        }
        gnutls_free(data.data);
        data.data = NULL;
        if (r < 0) {
            error_setg(errp, "Unable to import client certificate %s: %s", cert_file,
                       gnutls_strerror(r));
            if (cert) {
                gnutls_x509_crt_deinit(cert);
            }
            return -EINVAL;
        }
    }
    int r = gnutls_load_file(ca, &data);
    if (r >= 0) {
        r = gnutls_x509_crt_list_import(cas, &ncas, &data, GNUTLS_X509_FMT_PEM,
                                        GNUTLS_X509_CRT_LIST_IMPORT_FAIL_IF_EXCEED);
    }
    gnutls_free(data.data);
    if (r < 0) {
        error_setg(errp, "Unable to import CA certificate list %s", ca);
        ncas = 0;
        goto out;
    }
    if (cert && creds_check_cert(cert, cert_file, false, errp) < 0) {
        goto out;
    }
    for (unsigned int i = 0; i < ncas; i++) {
        if (creds_check_cert(cas[i], ca, true, errp) < 0) {
            goto out;
        }
    }
    if (cert && ncas) {
        unsigned int status = 0;
        if (gnutls_x509_crt_list_verify(&cert, 1, cas, ncas, NULL, 0, 0, &status) < 0) {
            error_setg(errp, "Unable to verify client certificate %s against CA "
                       "certificate %s", cert_file, ca);
            goto out;
        }
        if (status) {
            error_setg(errp, "Our own certificate %s failed validation against %s: %s",
                       cert_file, ca, sock_verify_reason(status));
            goto out;
        }
    }
    ret = 0;
out:
    for (unsigned int i = 0; i < ncas; i++) {
        gnutls_x509_crt_deinit(cas[i]);
    }
    if (cert) {
        gnutls_x509_crt_deinit(cert);
    }
    return ret;
}

NbdTlsClientCreds *nbd_tls_client_creds_new_x509(const char *dir, bool verify_peer,
                                                 bool sanity_check, Error **errp)
{
    NbdTlsClientCreds *c = calloc(1, sizeof(*c));
    char *ca = client_creds_path(dir, TLS_CA_CERT);
    char *cert = client_creds_path(dir, TLS_CLIENT_CERT);
    char *key = client_creds_path(dir, TLS_CLIENT_KEY);
    int ret;

    if (!c) {
        abort();
    }
    c->verify_peer = verify_peer;
    if (access(ca, R_OK) < 0) {
        error_setg_errno(errp, errno, "Unable to access credentials %s", ca);
        goto fail;
    }
    /* The client's own certificate is optional: servers with verify-peer=off need none. */
    bool have_cert = access(cert, R_OK) == 0 && access(key, R_OK) == 0;
    if (sanity_check && creds_sanity_check(ca, have_cert ? cert : NULL, errp) < 0) {
        goto fail;
    }
    ret = gnutls_certificate_allocate_credentials(&c->x509);
    if (ret < 0) {
        error_setg(errp, "Cannot allocate credentials: %s", gnutls_strerror(ret));
        goto fail;
    }
    ret = gnutls_certificate_set_x509_trust_file(c->x509, ca, GNUTLS_X509_FMT_PEM);
    if (ret < 0) {
        error_setg(errp, "Cannot load CA certificate '%s': %s", ca, gnutls_strerror(ret));
        goto fail;
    }
    if (have_cert) {
        ret = gnutls_certificate_set_x509_key_file(c->x509, cert, key, GNUTLS_X509_FMT_PEM);
        if (ret < 0) {
            error_setg(errp, "Cannot load certificate '%s' & key '%s': %s", cert, key,
                       gnutls_strerror(ret));
            goto fail;
        }
    }
    goto out;
fail:
    nbd_tls_client_creds_free(c);
    c = NULL;
out:
    free(ca);
    free(cert);
    free(key);
    return c;
}

void nbd_tls_client_creds_free(NbdTlsClientCreds *creds)
{
    if (!creds) {
        return;
    }
    if (creds->x509) {
        gnutls_certificate_free_credentials(creds->x509);
    }
    free(creds);
}

int nbd_sock_read(NbdSock *s, void *buf, size_t len, bool *eof)
{
    if (!s->tls) {
        return nbd_read_all(s->fd, buf, len, eof);
    }
    uint8_t *p = buf;
    size_t done = 0;
    if (eof) {
        *eof = false;
    }
    while (done < len) {
        ssize_t n = gnutls_record_recv(s->tls, p + done, len - done);
        if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
            continue;
        }
        if (n == GNUTLS_E_PREMATURE_TERMINATION || n == 0) {
            if (eof && done == 0) {
                *eof = true;
            }
            return -ECONNRESET;
        }
        if (n < 0) {
            return -EIO;
        }
        done += n;
    }
    return 0;
}

/* Send len bytes through the TLS session (records may be corked by the caller). */
static int sock_tls_send(gnutls_session_t tls, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = gnutls_record_send(tls, p, len);
        if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
            continue;
        }
        if (n < 0) {
            return -EIO;
        }
        p += n;
        len -= n;
    }
    return 0;
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
    /* Cork so a request header and its data leave in as few records as they fit. */
    gnutls_record_cork(s->tls);
    int ret = sock_tls_send(s->tls, hdr, hdr_len);
    if (ret == 0 && payload && payload_len) {
        ret = sock_tls_send(s->tls, payload, payload_len);
    }
    for (;;) {
        int r = gnutls_record_uncork(s->tls, GNUTLS_RECORD_WAIT);
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
            continue;
        }
        return ret < 0 ? ret : (r < 0 ? -EIO : 0);
    }
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
        error_setg(errp, "%s", sock_verify_reason(status));
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
    int ret = gnutls_init(&tls, GNUTLS_CLIENT);
    if (ret < 0) {
        error_setg(errp, "Cannot initialize TLS session: %s", gnutls_strerror(ret));
        return -EIO;
    }
    ret = gnutls_set_default_priority(tls);
    if (ret >= 0) {
        ret = gnutls_credentials_set(tls, GNUTLS_CRD_CERTIFICATE, creds->x509);
    }
    if (ret < 0) {
        error_setg(errp, "Cannot set TLS session parameters: %s", gnutls_strerror(ret));
        gnutls_deinit(tls);
        return -EIO;
    }
    gnutls_transport_set_int(tls, s->fd);
    gnutls_transport_set_vec_push_function(tls, sock_tls_vec_push);
    do {
        ret = gnutls_handshake(tls);
    } while (ret < 0 && !gnutls_error_is_fatal(ret));
    if (ret < 0) {
        error_setg(errp, "TLS handshake failed: %s", gnutls_strerror(ret));
        gnutls_deinit(tls);
        return -EIO;
    }
    if (creds->verify_peer) {
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
    if (s->tls) {
        gnutls_bye(s->tls, GNUTLS_SHUT_WR);
        gnutls_deinit(s->tls);
        s->tls = NULL;
    }
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
}
