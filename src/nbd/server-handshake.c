/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The server's fixed newstyle handshake: the greeting, the client's flags, then
 * option haggling until NBD_OPT_GO or NBD_OPT_EXPORT_NAME picks an export (or the
 * client leaves). Refused options get an error reply and the haggling goes on;
 * only a broken stream (bad magic, oversize option, EOF) ends the connection.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbd/server-int.h"

/* The handshake flags this server offers. */
#define SERVER_HANDSHAKE_FLAGS (NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES)
/* The client flags it understands. */
#define KNOWN_CLIENT_FLAGS (NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)
/* Bytes before the name in NBD_OPT_INFO / GO data (its length), and after it (count). */
#define INFO_NAME_LEN_SIZE 4
#define INFO_COUNT_SIZE    2
#define INFO_REQUEST_SIZE  2
/* An error reply's message is cut to this many bytes. */
#define REP_MSG_MAX        512

/* State of one option being answered. */
typedef struct NbdOpt {
    uint32_t type;
    uint32_t len;
    uint8_t *data;           /* len bytes (in client->buf) */
} NbdOpt;

/* The export called name, or NULL. */
NbdExport *nbd_server_find_export(NbdServer *srv, const char *name)
{
    for (int i = 0; i < srv->nb_exports; i++) {
        if (!strcmp(srv->exports[i]->name, name)) {
            return srv->exports[i];
        }
    }
    return NULL;
}

/* Send one option reply: header plus payload (and an optional second part). */
int nbd_opt_reply(NbdClient *client, uint32_t opt, uint32_t type, const void *p1,
                  uint32_t len1, const void *p2, uint32_t len2)
{
    NbdOptionReply rep = {
        .magic = htobe64(NBD_REP_MAGIC),
        .option = htobe32(opt),
        .type = htobe32(type),
        .length = htobe32(len1 + len2),
    };
    struct iovec iov[3] = {
        { .iov_base = &rep, .iov_len = sizeof(rep) },
        { .iov_base = (void *)p1, .iov_len = len1 },
        { .iov_base = (void *)p2, .iov_len = len2 },
    };
    return nbd_conn_writev(&client->conn, iov, 3);
}

/* Send a reply with no payload (NBD_REP_ACK). */
static int send_ack(NbdClient *client, uint32_t opt)
{
    return nbd_opt_reply(client, opt, NBD_REP_ACK, NULL, 0, NULL, 0);
}

/* Send an error reply carrying a human message, as QEMU does. */
int nbd_opt_reply_err(NbdClient *client, uint32_t opt, uint32_t type, const char *fmt, ...)
{
    char msg[REP_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0) {
        n = 0;
    } else if ((size_t)n >= sizeof(msg)) {
        n = sizeof(msg) - 1;
    }
    return nbd_opt_reply(client, opt, type, msg, n, NULL, 0);
}

/* Send one NBD_REP_INFO: the info type then its payload. */
static int send_info(NbdClient *client, uint32_t opt, uint16_t info, const void *payload,
                     uint32_t len)
{
    uint16_t type = htobe16(info);
    return nbd_opt_reply(client, opt, NBD_REP_INFO, &type, sizeof(type), payload, len);
}

/* The transmission flags this client sees: the export's plus DF with structured replies. */
static uint16_t client_tx_flags(NbdClient *client, NbdExport *exp)
{
    uint16_t flags = exp->flags;
    if (client->structured_reply) {
        flags |= NBD_FLAG_SEND_DF;
    }
    return flags;
}

/* NBD_OPT_LIST: one NBD_REP_SERVER per export (name, then description), then ACK. */
static int handle_list(NbdClient *client, NbdOpt *o)
{
    if (o->len) {
        return nbd_opt_reply_err(client, o->type, NBD_REP_ERR_INVALID,
                                 "no payload expected in option %s", nbd_opt_name(o->type));
    }
    for (int i = 0; i < client->srv->nb_exports; i++) {
        NbdExport *exp = client->srv->exports[i];
        uint8_t hdr[4];
        size_t nlen = strlen(exp->name);
        size_t dlen = exp->description ? strlen(exp->description) : 0;
        uint8_t *payload = malloc(sizeof(hdr) + nlen + dlen + 1);
        if (!payload) {
            return -ENOMEM;
        }
        nbd_put_be32(hdr, nlen);
        memcpy(payload, hdr, sizeof(hdr));
        memcpy(payload + sizeof(hdr), exp->name, nlen);
        if (dlen) {
            memcpy(payload + sizeof(hdr) + nlen, exp->description, dlen);
        }
        int ret = nbd_opt_reply(client, o->type, NBD_REP_SERVER, payload,
                                sizeof(hdr) + nlen + dlen, NULL, 0);
        free(payload);
        if (ret < 0) {
            return ret;
        }
    }
    return send_ack(client, o->type);
}

/* Reply sizes of NBD_INFO_BLOCK_SIZE for exp; min is 1 unless the client asked. */
static void block_sizes(NbdExport *exp, bool asked, NbdInfoBlockSize *bsz)
{
    bsz->type = htobe16(NBD_INFO_BLOCK_SIZE);
    bsz->minimum = htobe32(asked ? exp->min_block : NBD_MIN_BLOCK_SIZE);
    bsz->preferred = htobe32(exp->pref_block);
    bsz->maximum = htobe32(exp->max_block);
}

/* Called when the chosen export's meta context selection must follow the export. */
static void meta_follow_export(NbdClient *client, NbdExport *exp)
{
    if (client->meta.exp != exp) {
        memset(&client->meta, 0, sizeof(client->meta));
    }
}

/*
 * NBD_OPT_INFO and NBD_OPT_GO: name the export, send the requested information
 * (name, description, block sizes, size and flags), then ACK. Returns 1 when GO
 * succeeded (transmission starts), 0 when the haggling goes on.
 */
static int handle_info(NbdClient *client, NbdOpt *o)
{
    const uint8_t *p = o->data;
    char name[NBD_MAX_STRING_SIZE + 1];
    bool want_name = false, want_block_size = false;
    int ret;

    if (o->len < INFO_NAME_LEN_SIZE + INFO_COUNT_SIZE) {
        return nbd_opt_reply_err(client, o->type, NBD_REP_ERR_INVALID,
                                 "Invalid length for option %s", nbd_opt_name(o->type));
    }
    uint32_t namelen = nbd_get_be32(p);
    if (namelen > o->len - INFO_NAME_LEN_SIZE - INFO_COUNT_SIZE) {
        return nbd_opt_reply_err(client, o->type, NBD_REP_ERR_INVALID,
                                 "Invalid length for option %s", nbd_opt_name(o->type));
    }
    if (namelen > NBD_MAX_STRING_SIZE) {
        return nbd_opt_reply_err(client, o->type, NBD_REP_ERR_INVALID, "export name too long");
    }
    memcpy(name, p + INFO_NAME_LEN_SIZE, namelen);
    name[namelen] = '\0';
    p += INFO_NAME_LEN_SIZE + namelen;
    uint16_t nreq = nbd_get_be16(p);
    p += INFO_COUNT_SIZE;
    if (o->len != INFO_NAME_LEN_SIZE + namelen + INFO_COUNT_SIZE +
                  (uint32_t)nreq * INFO_REQUEST_SIZE) {
        return nbd_opt_reply_err(client, o->type, NBD_REP_ERR_INVALID,
                                 "Data overrun for option %s", nbd_opt_name(o->type));
    }
    for (uint16_t i = 0; i < nreq; i++) {
        uint16_t info = nbd_get_be16(p + i * INFO_REQUEST_SIZE);
        if (info == NBD_INFO_NAME) {
            want_name = true;
        } else if (info == NBD_INFO_BLOCK_SIZE) {
            want_block_size = true;
        }
    }
    if (strlen(name) != namelen) {
        return nbd_opt_reply_err(client, o->type, NBD_REP_ERR_INVALID,
                                 "export name contains a NUL byte");
    }
    NbdExport *exp = nbd_server_find_export(client->srv, name);
    if (!exp) {
        return nbd_opt_reply_err(client, o->type, NBD_REP_ERR_UNKNOWN,
                                 "export '%s' not present", name);
    }
    if (want_name) {
        ret = send_info(client, o->type, NBD_INFO_NAME, exp->name, strlen(exp->name));
        if (ret < 0) {
            return ret;
        }
    }
    if (exp->description) {
        ret = send_info(client, o->type, NBD_INFO_DESCRIPTION, exp->description,
                        strlen(exp->description));
        if (ret < 0) {
            return ret;
        }
    }
    NbdInfoBlockSize bsz;
    block_sizes(exp, want_block_size || o->type == NBD_OPT_INFO, &bsz);
    ret = nbd_opt_reply(client, o->type, NBD_REP_INFO, &bsz, sizeof(bsz), NULL, 0);
    if (ret < 0) {
        return ret;
    }
    NbdInfoExport ie = {
        .type = htobe16(NBD_INFO_EXPORT),
        .size = htobe64(exp->size),
        .flags = htobe16(client_tx_flags(client, exp)),
    };
    ret = nbd_opt_reply(client, o->type, NBD_REP_INFO, &ie, sizeof(ie), NULL, 0);
    if (ret < 0) {
        return ret;
    }
    /* A client that cannot honour alignment must say it knows about block sizes. */
    if (o->type == NBD_OPT_INFO && !want_block_size && exp->min_block > 1) {
        return nbd_opt_reply_err(client, o->type, NBD_REP_ERR_BLOCK_SIZE_REQD,
                                 "request NBD_INFO_BLOCK_SIZE to use this export");
    }
    ret = send_ack(client, o->type);
    if (ret < 0) {
        return ret;
    }
    if (o->type == NBD_OPT_GO) {
        client->exp = exp;
        meta_follow_export(client, exp);
        return 1;
    }
    return 0;
}

/* NBD_OPT_EXPORT_NAME: no reply on failure but a closed connection, per the spec. */
static int handle_export_name(NbdClient *client, NbdOpt *o, Error **errp)
{
    char name[NBD_MAX_STRING_SIZE + 1];

    if (o->len > NBD_MAX_STRING_SIZE) {
        error_setg(errp, "Bad length received");
        return -EINVAL;
    }
    memcpy(name, o->data, o->len);
    name[o->len] = '\0';
    NbdExport *exp = nbd_server_find_export(client->srv, name);
    if (!exp) {
        error_setg(errp, "export not found");
        return -EINVAL;
    }
    uint8_t buf[sizeof(NbdExportNameReply) + NBD_EXPORT_NAME_PAD] = { 0 };
    NbdExportNameReply rep = {
        .size = htobe64(exp->size),
        .flags = htobe16(client_tx_flags(client, exp)),
    };
    memcpy(buf, &rep, sizeof(rep));
    size_t len = client->no_zeroes ? sizeof(rep) : sizeof(buf);
    int ret = nbd_conn_write(&client->conn, buf, len);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "write failed");
        return ret;
    }
    client->exp = exp;
    meta_follow_export(client, exp);
    return 1;
}

/* NBD_OPT_STARTTLS once TLS is configured and not yet running. */
static int handle_starttls(NbdClient *client, NbdOpt *o, Error **errp)
{
    if (o->len) {
        return nbd_opt_reply_err(client, o->type, NBD_REP_ERR_INVALID,
                                 "no payload expected in option %s", nbd_opt_name(o->type));
    }
    int ret = send_ack(client, o->type);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "write failed");
        return ret;
    }
    return nbd_conn_start_tls(&client->conn, client->srv, errp);
}

/* Describe a failed read of what as QEMU does (EOF has its own wording). */
static void read_error(Error **errp, const char *what, int ret)
{
    if (ret == -ECONNRESET) {
        error_setg(errp, "Failed to read %s: Unexpected end-of-file before all data "
                   "were read", what);
    } else {
        error_setg_errno(errp, -ret, "Failed to read %s", what);
    }
}

/* Read the next option header and its data into client->buf. 0, or -errno (fatal). */
static int read_option(NbdClient *client, NbdOpt *o, bool *eof, Error **errp)
{
    NbdOptionHeader hdr;
    int ret = nbd_conn_read(&client->conn, &hdr, sizeof(hdr), eof);
    if (ret < 0) {
        read_error(errp, "opts magic", ret);
        return ret;
    }
    if (be64toh(hdr.magic) != NBD_OPTS_MAGIC) {
        error_setg(errp, "Bad magic received");
        return -EINVAL;
    }
    o->type = be32toh(hdr.option);
    o->len = be32toh(hdr.length);
    if (o->len > NBD_MAX_BUFFER_SIZE) {
        /* The stray space is qemu-nbd's; scripts may match the message as it is. */
        error_setg(errp, "len (%" PRIu32 " ) is larger than max len (%u)", o->len,
                   NBD_MAX_BUFFER_SIZE);
        return -EINVAL;
    }
    ret = nbd_client_reserve(client, o->len);
    if (ret < 0) {
        error_setg(errp, "Cannot allocate %" PRIu32 " bytes for option data", o->len);
        return ret;
    }
    o->data = client->buf;
    ret = nbd_conn_read(&client->conn, o->data, o->len, NULL);
    if (ret < 0) {
        if (ret == -ECONNRESET) {
            error_setg(errp, "Unexpected end-of-file before all data were read");
        } else {
            error_setg_errno(errp, -ret, "Failed to read option data");
        }
        return ret;
    }
    return 0;
}

/*
 * One option before TLS while TLS is mandatory: only STARTTLS gets through.
 * Returns 0 to go on, or -errno (closing).
 */
static int handle_option_pre_tls(NbdClient *client, NbdOpt *o, Error **errp)
{
    if (o->type == NBD_OPT_STARTTLS) {
        return handle_starttls(client, o, errp);
    }
    if (o->type == NBD_OPT_EXPORT_NAME) {
        error_setg(errp, "Option 0x%" PRIx32 " not permitted before TLS", o->type);
        return -EINVAL;
    }
    int ret = nbd_opt_reply_err(client, o->type, NBD_REP_ERR_TLS_REQD,
                                "Option 0x%" PRIx32 " not permitted before TLS", o->type);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "write failed");
        return ret;
    }
    if (o->type == NBD_OPT_ABORT) {
        return -ECONNABORTED;
    }
    return 0;
}

/* One option in the clear or after TLS. 1 = transmission, 0 = go on, <0 = close. */
static int handle_option(NbdClient *client, NbdOpt *o, Error **errp)
{
    int ret;

    switch (o->type) {
    case NBD_OPT_EXPORT_NAME:
        return handle_export_name(client, o, errp);
    case NBD_OPT_ABORT:
        send_ack(client, o->type);   /* the client may already be gone: ignore errors */
        return -ECONNABORTED;
    case NBD_OPT_LIST:
        ret = handle_list(client, o);
        break;
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
        ret = handle_info(client, o);
        break;
    case NBD_OPT_STARTTLS:
        if (client->conn.tls) {
            ret = nbd_opt_reply_err(client, o->type, NBD_REP_ERR_INVALID, "TLS already enabled");
        } else {
            ret = nbd_opt_reply_err(client, o->type, NBD_REP_ERR_POLICY, "TLS not configured");
        }
        break;
    case NBD_OPT_STRUCTURED_REPLY:
        if (o->len) {
            ret = nbd_opt_reply_err(client, o->type, NBD_REP_ERR_INVALID,
                                    "no payload expected in option %s", nbd_opt_name(o->type));
        } else if (client->structured_reply) {
            ret = nbd_opt_reply_err(client, o->type, NBD_REP_ERR_INVALID,
                                    "structured reply already negotiated");
        } else {
            ret = send_ack(client, o->type);
            client->structured_reply = true;
        }
        break;
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
        return nbd_negotiate_meta_context(client, o->type, o->data, o->len, errp);
    default:
        ret = nbd_opt_reply_err(client, o->type, NBD_REP_ERR_UNSUP,
                                "Unsupported option %" PRIu32 " (%s)", o->type,
                                nbd_opt_name(o->type));
        break;
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "write failed");
    }
    return ret;
}

int nbd_negotiate(NbdClient *client, Error **errp)
{
    NbdNewstyleGreeting greet = {
        .magic = htobe64(NBD_MAGIC),
        .opts_magic = htobe64(NBD_OPTS_MAGIC),
        .handshake_flags = htobe16(SERVER_HANDSHAKE_FLAGS),
    };
    uint32_t cflags;
    bool eof = false;
    int ret;

    ret = nbd_conn_write(&client->conn, &greet, sizeof(greet));
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to write greeting");
        return ret;
    }
    ret = nbd_conn_read(&client->conn, &cflags, sizeof(cflags), &eof);
    if (ret < 0) {
        read_error(errp, "flags", ret);
        return ret;
    }
    cflags = be32toh(cflags);
    if (cflags & ~KNOWN_CLIENT_FLAGS) {
        error_setg(errp, "Unknown client flags 0x%" PRIx32 " received",
                   cflags & ~KNOWN_CLIENT_FLAGS);
        return -EINVAL;
    }
    bool fixed = cflags & NBD_FLAG_C_FIXED_NEWSTYLE;
    client->no_zeroes = cflags & NBD_FLAG_C_NO_ZEROES;

    for (;;) {
        NbdOpt o;
        ret = read_option(client, &o, &eof, errp);
        if (ret < 0) {
            return ret;
        }
        if (client->srv->tls && !client->conn.tls) {
            ret = handle_option_pre_tls(client, &o, errp);
        } else if (!fixed && o.type != NBD_OPT_EXPORT_NAME) {
            /* Plain newstyle clients cannot take error replies: hang up instead. */
            error_setg(errp, "Unsupported option 0x%" PRIx32, o.type);
            ret = -EINVAL;
        } else {
            ret = handle_option(client, &o, errp);
        }
        if (ret == -ECONNABORTED) {
            return 0;
        }
        if (ret != 0) {
            return ret;
        }
    }
}
