/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The NBD client library: connect to a server, negotiate an export (fixed newstyle
 * with NBD_OPT_GO, falling back to NBD_OPT_EXPORT_NAME and to the oldstyle
 * handshake), then issue one request at a time and read its simple or structured
 * reply. The block driver (src/block/nbd.c) sits on top; other tools may use it too.
 *
 * Calls are synchronous and not thread safe: one NbdClient serves one caller (or
 * callers that serialise themselves). A protocol violation by the server makes the
 * client drop the connection; every later request then fails with -EIO.
 */
#ifndef QKIT_NBD_CLIENT_H
#define QKIT_NBD_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nbd/client-sock.h"
#include "qkit/error.h"

/* Most metadata contexts one client asks for in NBD_OPT_SET_META_CONTEXT. */
#define NBD_CLIENT_MAX_CONTEXTS 4

/* What the caller wants from the handshake. */
typedef struct NbdClientConfig {
    const char *export_name;      /* NULL means "" */
    bool structured_reply;        /* ask for structured replies (needed for contexts) */
    bool block_size;              /* ask for NBD_INFO_BLOCK_SIZE and obey it */
    /* Metadata contexts to negotiate ("base:allocation", ...); NULL-terminated. */
    const char *meta_contexts[NBD_CLIENT_MAX_CONTEXTS + 1];
    /* Non-NULL: NBD_OPT_STARTTLS first, and everything after it over TLS. */
    const NbdTlsClientCreds *tls_creds;
    /* The name the server's certificate must carry (tls-hostname, or the TCP host). */
    const char *tls_hostname;
} NbdClientConfig;

/* One connection in transmission phase. */
typedef struct NbdClient {
    NbdSock sock;                 /* the socket, and its TLS session if any */
    bool dead;                    /* the connection is no longer usable */
    uint64_t size;                /* export size in bytes */
    uint16_t eflags;              /* NBD_FLAG_* transmission flags */
    bool structured;              /* structured replies were negotiated */
    /* Block size constraints (1, 4096, 32 MiB style defaults when not sent). */
    bool has_block_size;
    uint32_t min_block;
    uint32_t pref_block;
    uint32_t max_block;
    /* Negotiated contexts, in the order of NbdClientConfig.meta_contexts. */
    int n_contexts;
    bool context_ok[NBD_CLIENT_MAX_CONTEXTS];
    uint32_t context_id[NBD_CLIENT_MAX_CONTEXTS];
    uint64_t next_cookie;
    char last_error[256];         /* message of the server's last error chunk, or "" */
} NbdClient;

/* One extent of a block status reply: length bytes with these NBD_STATE_* flags. */
typedef struct NbdExtent {
    uint32_t length;
    uint32_t flags;
} NbdExtent;

/*
 * Connect a TCP socket to host:port (port may be a service name). Returns the fd or
 * -errno with a message like QEMU's ("Failed to connect to 'h:p': ...").
 */
int nbd_client_connect_inet(const char *host, const char *port, Error **errp);
/* Connect to the unix socket at path. Returns the fd or -errno. */
int nbd_client_connect_unix(const char *path, Error **errp);

/*
 * Run the handshake on the connected fd (taken over: closed on failure) and fill
 * c. Returns 0 or -errno with the reason in errp.
 */
int nbd_client_handshake(NbdClient *c, int fd, const NbdClientConfig *cfg, Error **errp);
/*
 * On a connected socket after the fixed newstyle greeting: NBD_OPT_STARTTLS, then the
 * TLS handshake and the check of the server's certificate. 0 or -errno, with QEMU's
 * message for a server that refuses (its hint included).
 */
int nbd_client_starttls(NbdSock *sock, const NbdTlsClientCreds *creds,
                        const char *hostname, Error **errp);
/*
 * Describe an error reply (an NBD_REP_ERR_* type) to option opt as QEMU does, with
 * the server's message as a hint. Returns the -errno that goes with it.
 */
int nbd_client_opt_error(uint32_t type, uint32_t opt, const char *msg, Error **errp);
/* End the session: NBD_CMD_DISC when still connected, then close the socket. */
void nbd_client_close(NbdClient *c);

/* Read len bytes at offset into buf. 0 or -errno. */
int nbd_client_pread(NbdClient *c, uint64_t offset, uint32_t len, void *buf);
/* Write len bytes at offset; cmd_flags may hold NBD_CMD_FLAG_FUA. 0 or -errno. */
int nbd_client_pwrite(NbdClient *c, uint64_t offset, uint32_t len, const void *buf,
                      uint16_t cmd_flags);
/* NBD_CMD_WRITE_ZEROES with NBD_CMD_FLAG_* (NO_HOLE, FAST_ZERO, FUA). 0 or -errno. */
int nbd_client_write_zeroes(NbdClient *c, uint64_t offset, uint32_t len,
                            uint16_t cmd_flags);
/* NBD_CMD_TRIM. 0 or -errno. */
int nbd_client_trim(NbdClient *c, uint64_t offset, uint32_t len);
/* NBD_CMD_FLUSH. 0 or -errno. */
int nbd_client_flush(NbdClient *c);
/*
 * NBD_CMD_BLOCK_STATUS for [offset, offset+len): the extents the server sent for the
 * negotiated context number ctx (an index into the config's list) go to ext (at most
 * max_ext of them; *n_ext says how many). req_one asks for a single extent.
 * Returns 0 or -errno (-ENOTSUP when the context was not negotiated).
 */
int nbd_client_block_status(NbdClient *c, uint64_t offset, uint32_t len, int ctx,
                            bool req_one, NbdExtent *ext, size_t max_ext, size_t *n_ext);

#endif
