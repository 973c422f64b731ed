/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The GnuTLS code shared by the NBD client and server: credentials, session set-up,
 * record I/O and goodbye. Messages follow QEMU's crypto layer.
 */
#include "nbd/nbd-tls.h"

#include <errno.h>
#include <gnutls/x509.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* File names inside a tls-creds-x509 directory, as QEMU names them. */
#define TLS_CA_CERT     "ca-cert.pem"
#define TLS_CA_CRL      "ca-crl.pem"
#define TLS_SERVER_CERT "server-cert.pem"
#define TLS_SERVER_KEY  "server-key.pem"
#define TLS_CLIENT_CERT "client-cert.pem"
#define TLS_CLIENT_KEY  "client-key.pem"
#define TLS_DH_PARAMS   "dh-params.pem"
/* The key file inside a tls-creds-psk directory: lines "username:hexkey". */
#define TLS_PSK_FILE    "keys.psk"
/* The key exchanges a PSK session adds to the default priority, as QEMU does. */
#define TLS_PSK_PRIORITY_APPEND "+ECDHE-PSK:+DHE-PSK:+PSK"
/* Most CA certificates read from ca-cert.pem for the sanity check. */
#define TLS_MAX_CA_CERTS 16

/* dir/file; the caller frees the result. */
static char *tls_path(const char *dir, const char *file)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%s", dir, file) < 0) {
        abort();
    }
    return p;
}

/* Fail with QEMU's message on the first of the n files that cannot be read. */
static int tls_require(const char *const *files, size_t n, Error **errp)
{
    for (size_t i = 0; i < n; i++) {
        if (access(files[i], R_OK) < 0) {
            int err = errno;
            error_setg_errno(errp, err, "Unable to access credentials %s", files[i]);
            return -err;
        }
    }
    return 0;
}

/* The later checks win, as in QEMU. */
const char *nbd_tls_verify_reason(unsigned int status)
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
static int tls_check_own_cert(gnutls_x509_crt_t cert, const char *file, bool is_ca,
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
static int tls_sanity_check(const char *ca, const char *cert_file, Error **errp)
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
    if (cert && tls_check_own_cert(cert, cert_file, false, errp) < 0) {
        goto out;
    }
    for (unsigned int i = 0; i < ncas; i++) {
        if (tls_check_own_cert(cas[i], ca, true, errp) < 0) {
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
                       cert_file, ca, nbd_tls_verify_reason(status));
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

/* Read dh-params.pem into x->dh and hand it to the credentials. */
static int tls_load_dh(NbdTlsX509 *x, const char *dh, Error **errp)
{
    gnutls_datum_t data = { NULL, 0 };
    int ret = gnutls_load_file(dh, &data);
    if (ret >= 0) {
        ret = gnutls_dh_params_init(&x->dh);
    }
    if (ret >= 0) {
        ret = gnutls_dh_params_import_pkcs3(x->dh, &data, GNUTLS_X509_FMT_PEM);
    }
    gnutls_free(data.data);
    if (ret < 0) {
        error_setg(errp, "Unable to load DH parameters from %s: %s", dh,
                   gnutls_strerror(ret));
        return -EINVAL;
    }
    gnutls_certificate_set_dh_params(x->cred, x->dh);
    return 0;
}

/*
 * Load the CA certificates, then the CRL, our certificate and key, and DH parameters,
 * each skipped when its path is NULL.
 */
static int tls_x509_load(NbdTlsX509 *x, const char *ca, const char *crl, const char *cert,
                         const char *key, const char *dh, Error **errp)
{
    int ret = gnutls_certificate_allocate_credentials(&x->cred);
    if (ret < 0) {
        error_setg(errp, "Cannot allocate credentials: %s", gnutls_strerror(ret));
        return -EINVAL;
    }
    ret = gnutls_certificate_set_x509_trust_file(x->cred, ca, GNUTLS_X509_FMT_PEM);
    if (ret < 0) {
        error_setg(errp, "Cannot load CA certificate '%s': %s", ca, gnutls_strerror(ret));
        return -EINVAL;
    }
    if (crl) {
        ret = gnutls_certificate_set_x509_crl_file(x->cred, crl, GNUTLS_X509_FMT_PEM);
        if (ret < 0) {
            error_setg(errp, "Cannot load CRL '%s': %s", crl, gnutls_strerror(ret));
            return -EINVAL;
        }
    }
    if (cert) {
        ret = gnutls_certificate_set_x509_key_file(x->cred, cert, key, GNUTLS_X509_FMT_PEM);
        if (ret < 0) {
            error_setg(errp, "Cannot load certificate '%s' & key '%s': %s", cert, key,
                       gnutls_strerror(ret));
            return -EINVAL;
        }
    }
    return dh ? tls_load_dh(x, dh, errp) : 0;
}

/* path when it can be read, else NULL (path is freed). */
static char *tls_optional(char *path)
{
    if (path && access(path, R_OK) < 0) {
        free(path);
        return NULL;
    }
    return path;
}

int nbd_tls_x509_load_dir(NbdTlsX509 *x, const char *dir, unsigned int endpoint,
                          bool verify_peer, bool sanity_check, Error **errp)
{
    bool server = endpoint == GNUTLS_SERVER;
    char *ca = tls_path(dir, TLS_CA_CERT);
    char *cert = tls_path(dir, server ? TLS_SERVER_CERT : TLS_CLIENT_CERT);
    char *key = tls_path(dir, server ? TLS_SERVER_KEY : TLS_CLIENT_KEY);
    /* A server's CRL and DH parameters are optional, loaded when present. */
    char *crl = server ? tls_optional(tls_path(dir, TLS_CA_CRL)) : NULL;
    char *dh = server ? tls_optional(tls_path(dir, TLS_DH_PARAMS)) : NULL;
    int ret;

    x->verify_peer = verify_peer;
    if (server) {
        ret = tls_require((const char *const[]){ ca, cert, key }, 3, errp);
    } else {
        ret = tls_require((const char *const[]){ ca }, 1, errp);
        /* A client's own certificate is optional: servers with verify-peer=off need none. */
        if (access(cert, R_OK) < 0 || access(key, R_OK) < 0) {
            free(cert);
            free(key);
            cert = key = NULL;
        }
        if (ret == 0 && sanity_check) {
            ret = tls_sanity_check(ca, cert, errp);
        }
    }
    if (ret == 0) {
        ret = tls_x509_load(x, ca, crl, cert, key, dh, errp);
    }
    free(ca);
    free(crl);
    free(cert);
    free(key);
    free(dh);
    return ret;
}

void nbd_tls_x509_clear(NbdTlsX509 *x)
{
    if (x->cred) {
        gnutls_certificate_free_credentials(x->cred);
        x->cred = NULL;
    }
    if (x->dh) {
        gnutls_dh_params_deinit(x->dh);
        x->dh = NULL;
    }
}

/*
 * A client's key: the hex key on the line of dir/keys.psk that names username, in
 * *key (caller frees). 0, or -errno with QEMU's message.
 */
static int tls_psk_find_key(const char *file, const char *username, char **key,
                            Error **errp)
{
    size_t ulen = strlen(username);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    FILE *f = fopen(file, "r");
    *key = NULL;
    if (!f) {
        int err = errno;
        error_setg_errno(errp, err, "Cannot read PSK file %s", file);
        return -err;
    }
    while ((n = getline(&line, &cap, f)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
            line[--n] = '\0';
        }
        if (!strncmp(line, username, ulen) && line[ulen] == ':') {
            *key = strdup(line + ulen + 1);
            if (!*key) {
                abort();
            }
            break;
        }
    }
    free(line);
    fclose(f);
    if (!*key) {
        error_setg(errp, "Username %s not found in PSK file %s", username, file);
        return -ENOENT;
    }
    return 0;
}

/* endpoint=client: allocate the credentials and set username's key from file. */
static int tls_psk_load_client(NbdTlsPsk *p, const char *file, const char *username,
                               Error **errp)
{
    char *key = NULL;
    int ret = tls_psk_find_key(file, username, &key, errp);
    if (ret < 0) {
        return ret;
    }
    ret = gnutls_psk_allocate_client_credentials(&p->client);
    if (ret < 0) {
        error_setg(errp, "Cannot allocate credentials: %s", gnutls_strerror(ret));
        free(key);
        return -EINVAL;
    }
    gnutls_datum_t k = { (unsigned char *)key, strlen(key) };
    ret = gnutls_psk_set_client_credentials(p->client, username, &k, GNUTLS_PSK_KEY_HEX);
    free(key);
    if (ret < 0) {
        error_setg(errp, "Cannot set PSK client credentials: %s", gnutls_strerror(ret));
        return -EINVAL;
    }
    return 0;
}

/* endpoint=server: GnuTLS reads file at each handshake for the client's username. */
static int tls_psk_load_server(NbdTlsPsk *p, const char *file, Error **errp)
{
    int ret = gnutls_psk_allocate_server_credentials(&p->server);
    if (ret < 0) {
        error_setg(errp, "Cannot allocate credentials: %s", gnutls_strerror(ret));
        return -EINVAL;
    }
    ret = gnutls_psk_set_server_credentials_file(p->server, file);
    if (ret < 0) {
        error_setg(errp, "Cannot set PSK server credentials: %s", gnutls_strerror(ret));
        return -EINVAL;
    }
    /* DHE-PSK needs group parameters; the RFC 7919 ones spare generating any. */
    ret = gnutls_psk_set_server_known_dh_params(p->server, GNUTLS_SEC_PARAM_MEDIUM);
    if (ret < 0) {
        error_setg(errp, "Cannot set DH parameters: %s", gnutls_strerror(ret));
        return -EINVAL;
    }
    return 0;
}

int nbd_tls_psk_load_dir(NbdTlsPsk *p, const char *dir, unsigned int endpoint,
                         const char *username, Error **errp)
{
    char *file = tls_path(dir, TLS_PSK_FILE);
    int ret = tls_require((const char *const[]){ file }, 1, errp);
    if (ret == 0) {
        ret = endpoint == GNUTLS_SERVER ? tls_psk_load_server(p, file, errp)
                                        : tls_psk_load_client(p, file, username, errp);
    }
    free(file);
    return ret;
}

void nbd_tls_psk_clear(NbdTlsPsk *p)
{
    if (p->server) {
        gnutls_psk_free_server_credentials(p->server);
        p->server = NULL;
    }
    if (p->client) {
        gnutls_psk_free_client_credentials(p->client);
        p->client = NULL;
    }
}

int nbd_tls_session_new(gnutls_session_t *out, unsigned int endpoint, const NbdTlsX509 *x,
                        const NbdTlsPsk *psk, int fd, Error **errp)
{
    gnutls_session_t s;
    int ret = gnutls_init(&s, endpoint);
    if (ret < 0) {
        error_setg(errp, "Cannot initialize TLS session: %s", gnutls_strerror(ret));
        return -EIO;
    }
    if (x) {
        ret = gnutls_set_default_priority(s);
        if (ret >= 0) {
            ret = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, x->cred);
        }
    } else {
        ret = gnutls_set_default_priority_append(s, TLS_PSK_PRIORITY_APPEND, NULL, 0);
        if (ret >= 0) {
            ret = gnutls_credentials_set(s, GNUTLS_CRD_PSK,
                                         endpoint == GNUTLS_SERVER ? (void *)psk->server
                                                                   : (void *)psk->client);
        }
    }
    if (ret < 0) {
        error_setg(errp, "Cannot set TLS session parameters: %s", gnutls_strerror(ret));
        gnutls_deinit(s);
        return -EIO;
    }
    gnutls_transport_set_int(s, fd);
    *out = s;
    return 0;
}

int nbd_tls_handshake(gnutls_session_t s, Error **errp)
{
    int ret;
    do {
        ret = gnutls_handshake(s);
    } while (ret < 0 && !gnutls_error_is_fatal(ret));
    if (ret < 0) {
        error_setg(errp, "TLS handshake failed: %s", gnutls_strerror(ret));
        gnutls_deinit(s);
        return -EIO;
    }
    return 0;
}

int nbd_tls_read(gnutls_session_t s, void *buf, size_t len, bool abrupt_is_eof,
                 bool *eof)
{
    uint8_t *p = buf;
    size_t done = 0;
    if (eof) {
        *eof = false;
    }
    while (done < len) {
        ssize_t n = gnutls_record_recv(s, p + done, len - done);
        if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
            continue;
        }
        if (n == 0 || (n == GNUTLS_E_PREMATURE_TERMINATION && abrupt_is_eof)) {
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

/* Send one buffer through the session in full. */
static int tls_send_all(gnutls_session_t s, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = gnutls_record_send(s, p, len);
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

int nbd_tls_writev(gnutls_session_t s, const struct iovec *iov, int iovcnt)
{
    int ret = 0;
    gnutls_record_cork(s);
    for (int i = 0; i < iovcnt && ret == 0; i++) {
        ret = tls_send_all(s, iov[i].iov_base, iov[i].iov_len);
    }
    for (;;) {
        int r = gnutls_record_uncork(s, GNUTLS_RECORD_WAIT);
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
            continue;
        }
        return ret < 0 ? ret : (r < 0 ? -EIO : 0);
    }
}

void nbd_tls_close(void **tls, int *fd)
{
    if (*tls) {
        gnutls_bye(*tls, GNUTLS_SHUT_WR);
        gnutls_deinit(*tls);
        *tls = NULL;
    }
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}
