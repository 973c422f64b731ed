/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The server's side of a connection: whole-buffer reads and writes over a plain
 * socket (through a read-ahead buffer) or a GnuTLS session, the x509 credentials that
 * NBD_OPT_STARTTLS uses and the checks on the client's certificate. The TLS code
 * shared with the client is in nbd-tls.c.
 */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "nbd/nbd-tls.h"
#include "nbd/server-int.h"
#include "qkit/cutils.h"

/* Longest distinguished name --tls-authz compares. */
#define TLS_DN_MAX      1024
/* Scratch space nbd_conn_drain() reads into. */
#define DRAIN_CHUNK     4096
/* Read-ahead buffer of a plain connection: a request header and a small payload. */
#define CONN_RBUF_SIZE  (64 * 1024)
/* Most iovec entries one reply needs (header, payload, data, ...). */
#define CONN_MAX_IOV    8

struct NbdTlsCreds {
    bool is_psk;             /* tls-creds-psk: psk is loaded, x509 is empty */
    NbdTlsPsk psk;
    NbdTlsX509 x509;
};

/*
 * Plain socket reads through a read-ahead buffer, so that a request header and the
 * payload behind it (or the next requests) come in one system call. Reads at least
 * as large as the buffer go straight to the caller's memory.
 */
static int conn_plain_read(NbdConn *conn, uint8_t *p, size_t len, bool *eof)
{
    size_t done = QKIT_MIN(len, conn->rlen - conn->rpos);

    if (done) {
        memcpy(p, conn->rbuf + conn->rpos, done);
        conn->rpos += done;
    }
    while (done < len) {
        size_t want = len - done;
        if (want >= CONN_RBUF_SIZE) {
            return nbd_read_all(conn->fd, p + done, want, done ? NULL : eof);
        }
        if (!conn->rbuf) {
            conn->rbuf = malloc(CONN_RBUF_SIZE);
            if (!conn->rbuf) {
                return -ENOMEM;
            }
        }
        ssize_t n = nbd_read_some(conn->fd, conn->rbuf, CONN_RBUF_SIZE);
        if (n < 0) {
            if (n == -ECONNRESET && eof && done == 0) {
                *eof = true;
            }
            return (int)n;
        }
        size_t take = QKIT_MIN(want, (size_t)n);
        memcpy(p + done, conn->rbuf, take);
        done += take;
        conn->rpos = take;
        conn->rlen = n;
    }
    return 0;
}

/* Read exactly len bytes; -ECONNRESET if the peer closed first (*eof if at 0 bytes). */
int nbd_conn_read(NbdConn *conn, void *buf, size_t len, bool *eof)
{
    if (!conn->tls) {
        if (eof) {
            *eof = false;
        }
        return conn_plain_read(conn, buf, len, eof);
    }
    /* A client that drops the connection without a TLS goodbye is a read error. */
    return nbd_tls_read(conn->tls, buf, len, false, eof);
}

/* Send a plain buffer list with as few system calls as the kernel allows. */
static int conn_plain_writev(int fd, struct iovec *iov, int iovcnt)
{
    while (iovcnt > 0) {
        struct msghdr msg = { .msg_iov = iov, .msg_iovlen = iovcnt };
        ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK) {
            n = writev(fd, iov, iovcnt);
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
            n -= iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + n;
            iov->iov_len -= n;
        }
    }
    return 0;
}

/* Write a list of buffers as one unit (a reply header and its data). */
int nbd_conn_writev(NbdConn *conn, struct iovec *iov, int iovcnt)
{
    if (!conn->tls) {
        return conn_plain_writev(conn->fd, iov, iovcnt);
    }
    return nbd_tls_writev(conn->tls, iov, iovcnt);
}

/* Write one buffer in full. */
int nbd_conn_write(NbdConn *conn, const void *buf, size_t len)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    return nbd_conn_writev(conn, &iov, 1);
}

/* Read and discard len bytes (the rest of an option the server refuses). */
int nbd_conn_drain(NbdConn *conn, uint64_t len)
{
    uint8_t scratch[DRAIN_CHUNK];
    while (len > 0) {
        size_t n = len < sizeof(scratch) ? len : sizeof(scratch);
        int ret = nbd_conn_read(conn, scratch, n, NULL);
        if (ret < 0) {
            return ret;
        }
        len -= n;
    }
    return 0;
}

/* Called at the end of a connection: TLS goodbye, then close the socket. */
void nbd_conn_close(NbdConn *conn)
{
    nbd_tls_close(&conn->tls, &conn->fd);
    free(conn->rbuf);
    conn->rbuf = NULL;
    conn->rpos = conn->rlen = 0;
}

/* The peer certificate's distinguished name, for --tls-authz. */
static int conn_peer_dn(gnutls_session_t s, char *dn, size_t dn_size, Error **errp)
{
    unsigned int n = 0;
    const gnutls_datum_t *certs = gnutls_certificate_get_peers(s, &n);
    gnutls_x509_crt_t crt;
    int ret = -EPERM;

    if (!certs || n == 0) {
        error_setg(errp, "No certificate peer DN available");
        return -EPERM;
    }
    if (gnutls_x509_crt_init(&crt) < 0) {
        error_setg(errp, "Unable to initialize certificate");
        return -ENOMEM;
    }
    if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) < 0) {
        error_setg(errp, "Unable to load certificate");
        goto out;
    }
    size_t len = dn_size;
    if (gnutls_x509_crt_get_dn(crt, dn, &len) < 0) {
        error_setg(errp, "Unable to get certificate DN");
        goto out;
    }
    ret = 0;
out:
    gnutls_x509_crt_deinit(crt);
    return ret;
}

/* Check the client's certificate against the CA and the authorised names. */
static int conn_check_peer(NbdConn *conn, NbdServer *srv, Error **errp)
{
    gnutls_session_t s = conn->tls;
    char dn[TLS_DN_MAX];

    if (srv->tls->is_psk) {
        /* The handshake proved the key; QEMU 7.2 applies no --tls-authz to PSK users. */
        return 0;
    }
    if (srv->tls->x509.verify_peer) {
        unsigned int status = 0;
        int ret = gnutls_certificate_verify_peers2(s, &status);
        if (ret == GNUTLS_E_NO_CERTIFICATE_FOUND ||
            gnutls_certificate_get_peers(s, NULL) == NULL) {
            error_setg(errp, "No certificate was found");
            return -EPERM;
        }
        if (ret < 0) {
            error_setg(errp, "Verify failed: %s", gnutls_strerror(ret));
            return -EPERM;
        }
        if (status) {
            error_setg(errp, "%s", nbd_tls_verify_reason(status));
            return -EPERM;
        }
    }
    if (srv->nb_authz_identities == 0) {
        return 0;
    }
    if (conn_peer_dn(s, dn, sizeof(dn), errp) < 0) {
        return -EPERM;
    }
    for (int i = 0; i < srv->nb_authz_identities; i++) {
        if (!strcmp(dn, srv->authz_identities[i])) {
            return 0;
        }
    }
    error_setg(errp, "TLS x509 authz check for %s is denied", dn);
    return -EPERM;
}

/* NBD_OPT_STARTTLS was acknowledged: run the handshake on the socket. */
int nbd_conn_start_tls(NbdConn *conn, NbdServer *srv, Error **errp)
{
    gnutls_session_t s;
    int ret;

    if (conn->rpos < conn->rlen) {
        /* The handshake must start on the raw socket, not inside bytes already read. */
        error_setg(errp, "Client sent data before the TLS handshake");
        return -EPROTO;
    }
    ret = nbd_tls_session_new(&s, GNUTLS_SERVER, srv->tls->is_psk ? NULL : &srv->tls->x509,
                              &srv->tls->psk, conn->fd, errp);
    if (ret < 0) {
        return ret;
    }
    if (!srv->tls->is_psk && srv->tls->x509.verify_peer) {
        gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
    }
    gnutls_handshake_set_timeout(s, GNUTLS_DEFAULT_HANDSHAKE_TIMEOUT);
    ret = nbd_tls_handshake(s, errp);
    if (ret < 0) {
        return ret;
    }
    conn->tls = s;
    ret = conn_check_peer(conn, srv, errp);
    if (ret < 0) {
        return ret;
    }
    return 0;
}

NbdTlsCreds *nbd_tls_creds_new_x509(const char *dir, bool verify_peer, Error **errp)
{
    NbdTlsCreds *c = calloc(1, sizeof(*c));
    if (!c) {
        abort();
    }
    if (nbd_tls_x509_load_dir(&c->x509, dir, GNUTLS_SERVER, verify_peer, false, errp) < 0) {
        nbd_tls_creds_free(c);
        return NULL;
    }
    return c;
}

NbdTlsCreds *nbd_tls_creds_new_psk(const char *dir, Error **errp)
{
    NbdTlsCreds *c = calloc(1, sizeof(*c));
    if (!c) {
        abort();
    }
    c->is_psk = true;
    if (nbd_tls_psk_load_dir(&c->psk, dir, GNUTLS_SERVER, NULL, errp) < 0) {
        nbd_tls_creds_free(c);
        return NULL;
    }
    return c;
}

void nbd_tls_creds_free(NbdTlsCreds *creds)
{
    if (!creds) {
        return;
    }
    nbd_tls_x509_clear(&creds->x509);
    nbd_tls_psk_clear(&creds->psk);
    free(creds);
}
