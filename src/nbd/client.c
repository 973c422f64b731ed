/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * NBD client: connecting, the handshake, and synchronous requests with their simple
 * or structured replies. Messages for handshake failures follow QEMU's wording, so
 * tools built on this report the same errors as qemu-img does.
 */
#include "nbd/nbd-client.h"

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "nbd/nbd-proto.h"
#include "qkit/cutils.h"

/* Largest minimum block size the spec allows a server to advertise. */
#define NBD_CLIENT_MAX_MIN_BLOCK (64 * 1024)
/* Defaults the spec gives when the server sends no NBD_INFO_BLOCK_SIZE. */
#define NBD_CLIENT_DEFAULT_MIN_BLOCK  1
#define NBD_CLIENT_DEFAULT_PREF_BLOCK 4096
#define NBD_CLIENT_DEFAULT_MAX_BLOCK  (32 * 1024 * 1024)
/* Largest option reply payload we accept before calling the server broken. */
#define NBD_CLIENT_MAX_OPT_REPLY (NBD_MAX_OPTION_SIZE + NBD_MAX_STRING_SIZE)
/* Largest block status chunk: 2^20 descriptors (the spec's SHOULD) plus the header. */
#define NBD_CLIENT_MAX_STATUS_CHUNK (4 + 8 * (1u << 20))
/* Bytes of a NBD_INFO_BLOCK_SIZE / NBD_INFO_EXPORT payload after its 16-bit type. */
#define NBD_INFO_TYPE_LEN 2

/* The short option names QEMU puts in messages ("go", "structured reply"). */
static const char *nbd_client_opt_str(uint32_t opt)
{
    switch (opt) {
    case NBD_OPT_EXPORT_NAME: return "export name";
    case NBD_OPT_ABORT: return "abort";
    case NBD_OPT_LIST: return "list";
    case NBD_OPT_STARTTLS: return "starttls";
    case NBD_OPT_INFO: return "info";
    case NBD_OPT_GO: return "go";
    case NBD_OPT_STRUCTURED_REPLY: return "structured reply";
    case NBD_OPT_LIST_META_CONTEXT: return "list meta context";
    case NBD_OPT_SET_META_CONTEXT: return "set meta context";
    default: return "<unknown>";
    }
}

/* Turn a failed read into a message: "what: Unexpected end-of-file ..." or the errno. */
static int nbd_client_read_hs(NbdSock *sock, void *buf, size_t len, const char *what,
                              Error **errp)
{
    bool eof = false;
    int ret = nbd_sock_read(sock, buf, len, &eof);
    if (ret == -ECONNRESET && eof) {
        error_setg(errp, "%s: Unexpected end-of-file before all data were read", what);
    } else if (ret < 0) {
        error_setg(errp, "%s: Unable to read from socket: %s", what, strerror(-ret));
    }
    return ret;
}

/* Write during the handshake, with "what" naming the step in the error. */
static int nbd_client_write_hs(NbdSock *sock, const void *buf, size_t len, const char *what,
                               Error **errp)
{
    int ret = nbd_sock_write(sock, buf, len);
    if (ret < 0) {
        error_setg(errp, "%s: Unable to write to socket: %s", what, strerror(-ret));
    }
    return ret;
}

int nbd_client_connect_inet(const char *host, const char *port, Error **errp)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    struct addrinfo *res = NULL;
    int err = getaddrinfo(host, port, &hints, &res);
    if (err != 0) {
        error_setg(errp, "address resolution failed for %s:%s: %s", host, port,
                   gai_strerror(err));
        return -EINVAL;
    }
    int fd = -1;
    int saved = ECONNREFUSED;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int r;
        do {
            r = connect(fd, ai->ai_addr, ai->ai_addrlen);
        } while (r < 0 && errno == EINTR);
        if (r == 0) {
            break;
        }
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        error_setg_errno(errp, saved, "Failed to connect to '%s:%s'", host, port);
        return -saved;
    }
    /* Requests are a header then a payload: do not let Nagle hold the second back. */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

int nbd_client_connect_unix(const char *path, Error **errp)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(addr.sun_path)) {
        error_setg(errp, "UNIX socket path '%s' is too long", path);
        error_append_hint(errp, "Path must be less than %zu bytes\n", sizeof(addr.sun_path));
        return -ENAMETOOLONG;
    }
    memcpy(addr.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        error_setg_errno(errp, e, "Failed to create socket");
        return -e;
    }
    int r;
    do {
        r = connect(fd, (struct sockaddr *)&addr, sizeof(addr));
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        int e = errno;
        close(fd);
        error_setg_errno(errp, e, "Failed to connect to '%s'", path);
        return -e;
    }
    return fd;
}

/* Send one option with its payload. */
static int nbd_client_send_opt(NbdSock *sock, uint32_t opt, const void *data, uint32_t len,
                               Error **errp)
{
    NbdOptionHeader h = {
        .magic = htobe64(NBD_OPTS_MAGIC),
        .option = htobe32(opt),
        .length = htobe32(len),
    };
    int ret = nbd_client_write_hs(sock, &h, sizeof(h), "Failed to send option request header",
                                  errp);
    if (ret == 0 && len) {
        ret = nbd_client_write_hs(sock, data, len, "Failed to send option request data", errp);
    }
    return ret;
}

/*
 * Read one option reply header for opt and its payload (*data, caller frees; NULL when
 * empty). Errors here mean the server broke the protocol or the connection.
 */
static int nbd_client_read_opt_reply(NbdSock *sock, uint32_t opt, NbdOptionReply *rep,
                                     uint8_t **data, Error **errp)
{
    *data = NULL;
    int ret = nbd_client_read_hs(sock, rep, sizeof(*rep), "failed to read option reply", errp);
    if (ret < 0) {
        return ret;
    }
    rep->magic = be64toh(rep->magic);
    rep->option = be32toh(rep->option);
    rep->type = be32toh(rep->type);
    rep->length = be32toh(rep->length);
    if (rep->magic != NBD_REP_MAGIC) {
        error_setg(errp, "Unexpected option reply magic");
        return -EINVAL;
    }
    if (rep->option != opt) {
        error_setg(errp, "Unexpected option type %u (%s), expected %u (%s)", rep->option,
                   nbd_client_opt_str(rep->option), opt, nbd_client_opt_str(opt));
        return -EINVAL;
    }
    if (rep->length > NBD_CLIENT_MAX_OPT_REPLY) {
        error_setg(errp, "server's reply to option %u (%s) is too long", opt,
                   nbd_client_opt_str(opt));
        return -EINVAL;
    }
    if (rep->length) {
        *data = malloc(rep->length + 1);
        if (!*data) {
            error_setg(errp, "Out of memory");
            return -ENOMEM;
        }
        ret = nbd_client_read_hs(sock, *data, rep->length, "failed to read option reply",
                                 errp);
        if (ret < 0) {
            free(*data);
            *data = NULL;
            return ret;
        }
        (*data)[rep->length] = '\0';
    }
    return 0;
}

int nbd_client_opt_error(uint32_t type, uint32_t opt, const char *msg, Error **errp)
{
    const char *name = nbd_client_opt_str(opt);
    int ret = -EINVAL;
    switch (type) {
    case NBD_REP_ERR_UNSUP:
        error_setg(errp, "Unsupported option %u (%s)", opt, name);
        ret = -ENOTSUP;
        break;
    case NBD_REP_ERR_POLICY:
        error_setg(errp, "Denied by server for option %u (%s)", opt, name);
        ret = -EPERM;
        break;
    case NBD_REP_ERR_INVALID:
        error_setg(errp, "Invalid parameters for option %u (%s)", opt, name);
        break;
    case NBD_REP_ERR_PLATFORM:
        error_setg(errp, "Server lacks support for option %u (%s)", opt, name);
        ret = -ENOTSUP;
        break;
    case NBD_REP_ERR_TLS_REQD:
        error_setg(errp, "TLS negotiation required before option %u (%s)", opt, name);
        error_append_hint(errp, "Did you forget a valid tls-creds?\n");
        ret = -EPERM;
        break;
    case NBD_REP_ERR_UNKNOWN:
        error_setg(errp, "Requested export not available");
        ret = -ENOENT;
        break;
    case NBD_REP_ERR_SHUTDOWN:
        error_setg(errp, "Server shutting down before option %u (%s)", opt, name);
        ret = -ESHUTDOWN;
        break;
    case NBD_REP_ERR_BLOCK_SIZE_REQD:
        error_setg(errp, "Server requires INFO_BLOCK_SIZE for option %u (%s)", opt, name);
        break;
    default:
        error_setg(errp, "Unknown error code when asking for option %u (%s)", opt, name);
        break;
    }
    if (msg && msg[0]) {
        error_append_hint(errp, "server reported: %s\n", msg);
    }
    return ret;
}

/* Describe an error reply to option rep->option, with the server's text. */
static int nbd_client_reply_err(const NbdOptionReply *rep, const uint8_t *msg, Error **errp)
{
    return nbd_client_opt_error(rep->type, rep->option, (const char *)msg, errp);
}

/* Tell the server we are leaving the handshake (best effort, before closing). */
static void nbd_client_send_abort(NbdSock *sock)
{
    nbd_client_send_opt(sock, NBD_OPT_ABORT, NULL, 0, NULL);
}

/* Send an option without payload and read the one reply (*data: its payload, freed by caller). */
static int nbd_client_opt_exchange(NbdSock *sock, uint32_t opt, NbdOptionReply *rep,
                                   uint8_t **data, Error **errp)
{
    int ret = nbd_client_send_opt(sock, opt, NULL, 0, errp);
    if (ret < 0) {
        return ret;
    }
    return nbd_client_read_opt_reply(sock, opt, rep, data, errp);
}

/*
 * An option whose only good answer is NBD_REP_ACK (STRUCTURED_REPLY). Returns 1 when
 * acknowledged, 0 when the server declined it, -errno when the connection broke.
 */
static int nbd_client_simple_opt(NbdSock *sock, uint32_t opt, Error **errp)
{
    NbdOptionReply rep;
    uint8_t *data;
    int ret = nbd_client_opt_exchange(sock, opt, &rep, &data, errp);
    if (ret < 0) {
        return ret;
    }
    free(data);
    if (rep.type == NBD_REP_ACK && rep.length == 0) {
        return 1;
    }
    if (NBD_REP_IS_ERR(rep.type)) {
        return 0;
    }
    error_setg(errp, "Unexpected reply type %u (%s) for option %u (%s)", rep.type,
               nbd_rep_name(rep.type), opt, nbd_client_opt_str(opt));
    return -EINVAL;
}

int nbd_client_starttls(NbdSock *sock, const NbdTlsClientCreds *creds,
                        const char *hostname, Error **errp)
{
    NbdOptionReply rep;
    uint8_t *data;
    int ret = nbd_client_opt_exchange(sock, NBD_OPT_STARTTLS, &rep, &data, errp);
    if (ret < 0) {
        return ret;
    }
    if (NBD_REP_IS_ERR(rep.type)) {
        ret = nbd_client_reply_err(&rep, data, errp);
        free(data);
        nbd_client_send_abort(sock);
        return ret;
    }
    free(data);
    if (rep.type != NBD_REP_ACK) {
        error_setg(errp, "Server answered option %u (%s) with unexpected reply %u (%s)",
                   NBD_OPT_STARTTLS, nbd_client_opt_str(NBD_OPT_STARTTLS), rep.type,
                   nbd_rep_name(rep.type));
        nbd_client_send_abort(sock);
        return -EINVAL;
    }
    if (rep.length != 0) {
        error_setg(errp, "Option %u ('%s') response length is %u (it should be zero)",
                   NBD_OPT_STARTTLS, nbd_client_opt_str(NBD_OPT_STARTTLS), rep.length);
        nbd_client_send_abort(sock);
        return -EINVAL;
    }
    return nbd_sock_start_tls(sock, creds, hostname, errp);
}

/* Append a be32 length and the string to a growing option payload. */
static size_t nbd_client_put_str(uint8_t *buf, size_t pos, const char *s)
{
    size_t len = strlen(s);
    nbd_put_be32(buf + pos, (uint32_t)len);
    memcpy(buf + pos + 4, s, len);
    return pos + 4 + len;
}

/* NBD_OPT_SET_META_CONTEXT for the configured contexts; fills c->context_*. */
static int nbd_client_set_meta(NbdClient *c, NbdSock *sock, const NbdClientConfig *cfg,
                               const char *name, Error **errp)
{
    size_t total = 4 + strlen(name) + 4;
    int n = 0;
    while (n < NBD_CLIENT_MAX_CONTEXTS && cfg->meta_contexts[n]) {
        total += 4 + strlen(cfg->meta_contexts[n]);
        n++;
    }
    c->n_contexts = n;
    if (n == 0) {
        return 0;
    }
    if (total > NBD_MAX_OPTION_SIZE) {
        error_setg(errp, "Metadata context request is too long");
        return -EINVAL;
    }
    uint8_t *buf = malloc(total);
    if (!buf) {
        error_setg(errp, "Out of memory");
        return -ENOMEM;
    }
    size_t pos = nbd_client_put_str(buf, 0, name);
    nbd_put_be32(buf + pos, (uint32_t)n);
    pos += 4;
    for (int i = 0; i < n; i++) {
        pos = nbd_client_put_str(buf, pos, cfg->meta_contexts[i]);
    }
    int ret = nbd_client_send_opt(sock, NBD_OPT_SET_META_CONTEXT, buf, (uint32_t)pos, errp);
    free(buf);
    while (ret == 0) {
        NbdOptionReply rep;
        uint8_t *data;
        ret = nbd_client_read_opt_reply(sock, NBD_OPT_SET_META_CONTEXT, &rep, &data, errp);
        if (ret < 0) {
            break;
        }
        if (rep.type == NBD_REP_ACK) {
            free(data);
            break;
        }
        if (rep.type == NBD_REP_ERR_UNSUP) {
            /* An old server: no contexts, block status stays unknown. */
            free(data);
            break;
        }
        if (NBD_REP_IS_ERR(rep.type)) {
            ret = nbd_client_reply_err(&rep, data, errp);
            free(data);
            break;
        }
        if (rep.type != NBD_REP_META_CONTEXT || rep.length < sizeof(NbdMetaContextReply)) {
            free(data);
            error_setg(errp, "Unexpected reply type %u (%s) for option %u (%s)", rep.type,
                       nbd_rep_name(rep.type), NBD_OPT_SET_META_CONTEXT,
                       nbd_client_opt_str(NBD_OPT_SET_META_CONTEXT));
            ret = -EINVAL;
            break;
        }
        const char *ctx_name = (const char *)data + sizeof(NbdMetaContextReply);
        int found = -1;
        for (int i = 0; i < n; i++) {
            if (!strcmp(ctx_name, cfg->meta_contexts[i])) {
                found = i;
            }
        }
        if (found < 0 || c->context_ok[found]) {
            error_setg(errp, "Unexpected context name '%s'", ctx_name);
            ret = -EINVAL;
        } else {
            c->context_ok[found] = true;
            c->context_id[found] = nbd_get_be32(data);
        }
        free(data);
    }
    return ret;
}

/* Check the server's block size constraints against the spec before obeying them. */
static int nbd_client_check_block_size(NbdClient *c, Error **errp)
{
    if (!QKIT_IS_POW2(c->min_block) || c->min_block > NBD_CLIENT_MAX_MIN_BLOCK) {
        error_setg(errp, "server minimum block size %u is not a power of two", c->min_block);
        return -EINVAL;
    }
    if (!QKIT_IS_POW2(c->pref_block) || c->pref_block < c->min_block) {
        error_setg(errp, "server preferred block size %u is not valid", c->pref_block);
        return -EINVAL;
    }
    if (c->max_block < c->min_block || c->max_block % c->min_block) {
        error_setg(errp, "server maximum block size %u is not a multiple of minimum %u",
                   c->max_block, c->min_block);
        return -EINVAL;
    }
    return 0;
}

/* Take one NBD_REP_INFO of the NBD_OPT_GO reply. */
static int nbd_client_take_info(NbdClient *c, const uint8_t *data, uint32_t len,
                                bool *have_export, Error **errp)
{
    if (len < NBD_INFO_TYPE_LEN) {
        error_setg(errp, "Server sent a short NBD_REP_INFO");
        return -EINVAL;
    }
    uint16_t type = nbd_get_be16(data);
    switch (type) {
    case NBD_INFO_EXPORT:
        if (len != sizeof(NbdInfoExport)) {
            error_setg(errp, "remaining export info len %u is unexpected size", len);
            return -EINVAL;
        }
        c->size = nbd_get_be64(data + offsetof(NbdInfoExport, size));
        c->eflags = nbd_get_be16(data + offsetof(NbdInfoExport, flags));
        *have_export = true;
        break;
    case NBD_INFO_BLOCK_SIZE:
        if (len != sizeof(NbdInfoBlockSize)) {
            error_setg(errp, "remaining export info len %u is unexpected size", len);
            return -EINVAL;
        }
        c->min_block = nbd_get_be32(data + offsetof(NbdInfoBlockSize, minimum));
        c->pref_block = nbd_get_be32(data + offsetof(NbdInfoBlockSize, preferred));
        c->max_block = nbd_get_be32(data + offsetof(NbdInfoBlockSize, maximum));
        c->has_block_size = true;
        return nbd_client_check_block_size(c, errp);
    default:
        /* Names and descriptions we did not ask for are harmless: skip them. */
        break;
    }
    return 0;
}

/*
 * NBD_OPT_GO. Returns 1 when the export is ready, 0 when the server does not know
 * NBD_OPT_GO (the caller falls back to NBD_OPT_EXPORT_NAME), -errno on failure.
 */
static int nbd_client_opt_go(NbdClient *c, NbdSock *sock, const NbdClientConfig *cfg,
                             const char *name, Error **errp)
{
    size_t nlen = strlen(name);
    size_t total = 4 + nlen + 2 + (cfg->block_size ? 2 : 0);
    uint8_t *buf = malloc(total);
    if (!buf) {
        error_setg(errp, "Out of memory");
        return -ENOMEM;
    }
    size_t pos = nbd_client_put_str(buf, 0, name);
    nbd_put_be16(buf + pos, cfg->block_size ? 1 : 0);
    pos += 2;
    if (cfg->block_size) {
        nbd_put_be16(buf + pos, NBD_INFO_BLOCK_SIZE);
        pos += 2;
    }
    int ret = nbd_client_send_opt(sock, NBD_OPT_GO, buf, (uint32_t)pos, errp);
    free(buf);
    bool have_export = false;
    while (ret == 0) {
        NbdOptionReply rep;
        uint8_t *data;
        ret = nbd_client_read_opt_reply(sock, NBD_OPT_GO, &rep, &data, errp);
        if (ret < 0) {
            break;
        }
        if (rep.type == NBD_REP_ACK) {
            free(data);
            if (!have_export) {
                error_setg(errp, "server omitted NBD_INFO_EXPORT in its reply to "
                           "option %u (%s)", NBD_OPT_GO, nbd_client_opt_str(NBD_OPT_GO));
                return -EINVAL;
            }
            return 1;
        }
        if (rep.type == NBD_REP_ERR_UNSUP) {
            free(data);
            return 0;
        }
        if (NBD_REP_IS_ERR(rep.type)) {
            ret = nbd_client_reply_err(&rep, data, errp);
        } else if (rep.type == NBD_REP_INFO) {
            ret = nbd_client_take_info(c, data, rep.length, &have_export, errp);
        } else {
            error_setg(errp, "Unexpected reply type %u (%s) for option %u (%s)", rep.type,
                       nbd_rep_name(rep.type), NBD_OPT_GO, nbd_client_opt_str(NBD_OPT_GO));
            ret = -EINVAL;
        }
        free(data);
    }
    return ret;
}

/* NBD_OPT_EXPORT_NAME: the old way into transmission, for servers without GO. */
static int nbd_client_export_name(NbdClient *c, NbdSock *sock, const char *name, bool no_zeroes,
                                  Error **errp)
{
    int ret = nbd_client_send_opt(sock, NBD_OPT_EXPORT_NAME, name, (uint32_t)strlen(name),
                                  errp);
    if (ret < 0) {
        return ret;
    }
    NbdExportNameReply r;
    ret = nbd_client_read_hs(sock, &r, sizeof(r), "Failed to read export length", errp);
    if (ret < 0) {
        return ret;
    }
    c->size = be64toh(r.size);
    c->eflags = be16toh(r.flags);
    if (!no_zeroes) {
        uint8_t pad[NBD_EXPORT_NAME_PAD];
        ret = nbd_client_read_hs(sock, pad, sizeof(pad), "Failed to read reserved block",
                                 errp);
    }
    return ret;
}

/* The oldstyle greeting after the two magics: size, flags and padding. */
static int nbd_client_oldstyle(NbdClient *c, NbdSock *sock, const char *name, bool cfg_tls,
                               Error **errp)
{
    if (cfg_tls) {
        error_setg(errp, "Server does not support STARTTLS");
        return -EINVAL;
    }
    if (name[0]) {
        error_setg(errp, "Server does not support non-empty export names");
        return -EINVAL;
    }
    uint8_t rest[sizeof(NbdOldstyleGreeting) - 16];
    int ret = nbd_client_read_hs(sock, rest, sizeof(rest), "Failed to read export length",
                                 errp);
    if (ret < 0) {
        return ret;
    }
    c->size = nbd_get_be64(rest);
    /* The low 16 bits of the 32-bit field are the transmission flags. */
    c->eflags = (uint16_t)nbd_get_be32(rest + 8);
    return 0;
}

/* Fixed or plain newstyle negotiation, from the handshake flags on. */
static int nbd_client_newstyle(NbdClient *c, NbdSock *sock, const NbdClientConfig *cfg,
                               const char *name, Error **errp)
{
    uint16_t hflags;
    int ret = nbd_client_read_hs(sock, &hflags, sizeof(hflags), "Failed to read server flags",
                                 errp);
    if (ret < 0) {
        return ret;
    }
    hflags = be16toh(hflags);
    bool fixed = hflags & NBD_FLAG_FIXED_NEWSTYLE;
    bool no_zeroes = hflags & NBD_FLAG_NO_ZEROES;
    uint32_t cflags = (fixed ? NBD_FLAG_C_FIXED_NEWSTYLE : 0) |
                      (no_zeroes ? NBD_FLAG_C_NO_ZEROES : 0);
    cflags = htobe32(cflags);
    ret = nbd_client_write_hs(sock, &cflags, sizeof(cflags), "Failed to send clientflags field",
                              errp);
    if (ret < 0) {
        return ret;
    }
    if (cfg->tls_creds) {
        if (!fixed) {
            error_setg(errp, "Server does not support STARTTLS");
            return -EINVAL;
        }
        ret = nbd_client_starttls(sock, cfg->tls_creds, cfg->tls_hostname, errp);
        if (ret < 0) {
            return ret;
        }
    }
    if (!fixed) {
        /* Plain newstyle: any option but EXPORT_NAME may make the server hang up. */
        return nbd_client_export_name(c, sock, name, no_zeroes, errp);
    }
    if (cfg->structured_reply) {
        ret = nbd_client_simple_opt(sock, NBD_OPT_STRUCTURED_REPLY, errp);
        if (ret < 0) {
            return ret;
        }
        c->structured = ret == 1;
    }
    if (c->structured) {
        ret = nbd_client_set_meta(c, sock, cfg, name, errp);
        if (ret < 0) {
            nbd_client_send_abort(sock);
            return ret;
        }
    }
    ret = nbd_client_opt_go(c, sock, cfg, name, errp);
    if (ret < 0) {
        nbd_client_send_abort(sock);
        return ret;
    }
    if (ret == 0) {
        return nbd_client_export_name(c, sock, name, no_zeroes, errp);
    }
    return 0;
}

int nbd_client_handshake(NbdClient *c, int fd, const NbdClientConfig *cfg, Error **errp)
{
    const char *name = cfg->export_name ? cfg->export_name : "";
    memset(c, 0, sizeof(*c));
    c->sock.fd = fd;
    c->min_block = NBD_CLIENT_DEFAULT_MIN_BLOCK;
    c->pref_block = NBD_CLIENT_DEFAULT_PREF_BLOCK;
    c->max_block = NBD_CLIENT_DEFAULT_MAX_BLOCK;
    c->next_cookie = 1;
    NbdSock *sock = &c->sock;
    int ret;
    if (strlen(name) > NBD_MAX_STRING_SIZE) {
        error_setg(errp, "export name '%s' too long", name);
        ret = -EINVAL;
        goto out;
    }
    uint64_t magic;
    ret = nbd_client_read_hs(sock, &magic, sizeof(magic), "Failed to read initial magic",
                             errp);
    if (ret < 0) {
        goto out;
    }
    magic = be64toh(magic);
    if (magic != NBD_MAGIC) {
        error_setg(errp, "Bad initial magic received: 0x%" PRIx64, magic);
        ret = -EINVAL;
        goto out;
    }
    ret = nbd_client_read_hs(sock, &magic, sizeof(magic), "Failed to read server magic",
                             errp);
    if (ret < 0) {
        goto out;
    }
    magic = be64toh(magic);
    if (magic == NBD_OPTS_MAGIC) {
        ret = nbd_client_newstyle(c, sock, cfg, name, errp);
    } else if (magic == NBD_CLISERV_MAGIC) {
        ret = nbd_client_oldstyle(c, sock, name, cfg->tls_creds != NULL, errp);
    } else {
        error_setg(errp, "Bad server magic received: 0x%" PRIx64, magic);
        ret = -EINVAL;
    }
    if (ret == 0 && c->size > INT64_MAX) {
        error_setg(errp, "Export size %" PRIu64 " is too large", c->size);
        ret = -EINVAL;
    }
out:
    if (ret < 0) {
        nbd_sock_close(sock);
        return ret;
    }
    return 0;
}

/*
 * Called on a protocol violation: nothing more can be trusted on this connection.
 * The request that saw a malformed reply fails with EINVAL (as in QEMU); a reply to
 * a request never sent, or any later request, fails with EIO.
 */
static int nbd_client_kill_err(NbdClient *c, int err)
{
    if (!c->dead) {
        nbd_sock_shutdown(&c->sock);
    }
    c->dead = true;
    return -err;
}

/* Drop the connection over a malformed reply; the request fails with EINVAL. */
static int nbd_client_kill(NbdClient *c)
{
    return nbd_client_kill_err(c, EINVAL);
}

/* Send one request header (and the write payload). */
static int nbd_client_send_req(NbdClient *c, uint16_t type, uint16_t flags, uint64_t offset,
                               uint32_t len, const void *payload, uint64_t *cookie)
{
    if (c->dead || c->sock.fd < 0) {
        return -EIO;
    }
    *cookie = c->next_cookie++;
    NbdRequest req = {
        .magic = htobe32(NBD_REQUEST_MAGIC),
        .flags = htobe16(flags),
        .type = htobe16(type),
        .cookie = htobe64(*cookie),
        .offset = htobe64(offset),
        .length = htobe32(len),
    };
    int ret = nbd_sock_write2(&c->sock, &req, sizeof(req), payload, payload ? len : 0);
    if (ret < 0) {
        nbd_client_kill(c);
        return ret;
    }
    return 0;
}

/* Where the chunks of one reply go: read data, block status extents. */
typedef struct NbdReplyCtx {
    uint16_t cmd;
    uint64_t offset;
    uint32_t len;
    void *buf;                  /* NBD_CMD_READ destination */
    uint64_t covered;           /* bytes of the read described by content chunks */
    uint32_t want_ctx_id;       /* NBD_CMD_BLOCK_STATUS: the context to collect */
    bool req_one;
    NbdExtent *ext;
    size_t max_ext;
    size_t n_ext;
    bool got_status;
    int err;                    /* first error the server reported (positive errno) */
} NbdReplyCtx;

/* Read an error chunk's payload: remember the first error and the server's text. */
static int nbd_client_error_chunk(NbdClient *c, NbdReplyCtx *r, uint32_t len)
{
    if (len < sizeof(NbdChunkError) || len > NBD_CLIENT_MAX_OPT_REPLY) {
        return nbd_client_kill(c);
    }
    uint8_t *p = malloc(len + 1);
    if (!p) {
        return nbd_client_kill(c);
    }
    if (nbd_sock_read(&c->sock, p, len, NULL) < 0) {
        free(p);
        return nbd_client_kill(c);
    }
    uint32_t err = nbd_get_be32(p);
    uint16_t mlen = nbd_get_be16(p + 4);
    if (mlen > len - sizeof(NbdChunkError)) {
        free(p);
        return nbd_client_kill(c);
    }
    p[sizeof(NbdChunkError) + mlen] = '\0';
    if (!r->err) {
        r->err = err ? nbd_wire_to_errno(err) : EINVAL;
        snprintf(c->last_error, sizeof(c->last_error), "%s",
                 (const char *)p + sizeof(NbdChunkError));
    }
    free(p);
    return 0;
}

/* Read an OFFSET_DATA or OFFSET_HOLE chunk of a read reply into the buffer. */
static int nbd_client_content_chunk(NbdClient *c, NbdReplyCtx *r, uint16_t type, uint32_t len)
{
    uint8_t hdr[sizeof(NbdChunkOffsetHole)];
    bool data = type == NBD_REPLY_TYPE_OFFSET_DATA;
    if (r->cmd != NBD_CMD_READ || (data && len <= sizeof(NbdChunkOffsetData)) ||
        (!data && len != sizeof(NbdChunkOffsetHole))) {
        return nbd_client_kill(c);
    }
    size_t hlen = data ? sizeof(NbdChunkOffsetData) : sizeof(NbdChunkOffsetHole);
    if (nbd_sock_read(&c->sock, hdr, hlen, NULL) < 0) {
        return nbd_client_kill(c);
    }
    uint64_t off = nbd_get_be64(hdr);
    uint64_t n = data ? len - sizeof(NbdChunkOffsetData) : nbd_get_be32(hdr + 8);
    if (n == 0 || off < r->offset || off - r->offset > r->len ||
        n > r->len - (off - r->offset)) {
        return nbd_client_kill(c);
    }
    uint8_t *dst = (uint8_t *)r->buf + (off - r->offset);
    if (data) {
        if (nbd_sock_read(&c->sock, dst, n, NULL) < 0) {
            return nbd_client_kill(c);
        }
    } else {
        memset(dst, 0, n);
    }
    r->covered += n;
    return 0;
}

/* Read a BLOCK_STATUS chunk; keep the extents of the context that was asked about. */
static int nbd_client_status_chunk(NbdClient *c, NbdReplyCtx *r, uint32_t len)
{
    if (r->cmd != NBD_CMD_BLOCK_STATUS || len < sizeof(NbdChunkBlockStatus) +
        sizeof(NbdBlockDescriptor) || (len - sizeof(NbdChunkBlockStatus)) %
        sizeof(NbdBlockDescriptor) || len > NBD_CLIENT_MAX_STATUS_CHUNK) {
        return nbd_client_kill(c);
    }
    uint8_t *p = malloc(len);
    if (!p) {
        return nbd_client_kill(c);
    }
    if (nbd_sock_read(&c->sock, p, len, NULL) < 0) {
        free(p);
        return nbd_client_kill(c);
    }
    uint32_t id = nbd_get_be32(p);
    size_t count = (len - sizeof(NbdChunkBlockStatus)) / sizeof(NbdBlockDescriptor);
    bool known = false;
    for (int i = 0; i < c->n_contexts; i++) {
        known |= c->context_ok[i] && c->context_id[i] == id;
    }
    if (!known || (r->req_one && count != 1) || (id == r->want_ctx_id && r->got_status)) {
        free(p);
        return nbd_client_kill(c);
    }
    if (id == r->want_ctx_id) {
        r->got_status = true;
        const uint8_t *d = p + sizeof(NbdChunkBlockStatus);
        for (size_t i = 0; i < count && r->n_ext < r->max_ext; i++) {
            uint32_t elen = nbd_get_be32(d + i * sizeof(NbdBlockDescriptor));
            if (elen == 0) {
                free(p);
                return nbd_client_kill(c);
            }
            r->ext[r->n_ext].length = elen;
            r->ext[r->n_ext].flags = nbd_get_be32(d + i * sizeof(NbdBlockDescriptor) + 4);
            r->n_ext++;
        }
    }
    free(p);
    return 0;
}

/*
 * Read the chunks of a structured reply for cookie up to the one flagged DONE. The
 * caller has read the first chunk's magic; each later chunk starts with its own.
 */
static int nbd_client_structured(NbdClient *c, NbdReplyCtx *r, uint64_t cookie)
{
    for (bool first = true;; first = false) {
        uint8_t h[sizeof(NbdStructuredReply) - 4];
        if (!first) {
            uint8_t m[4];
            if (nbd_sock_read(&c->sock, m, sizeof(m), NULL) < 0 ||
                nbd_get_be32(m) != NBD_STRUCTURED_REPLY_MAGIC) {
                return nbd_client_kill(c);
            }
        }
        if (nbd_sock_read(&c->sock, h, sizeof(h), NULL) < 0) {
            return nbd_client_kill(c);
        }
        uint16_t flags = nbd_get_be16(h);
        uint16_t type = nbd_get_be16(h + 2);
        uint64_t ck = nbd_get_be64(h + 4);
        uint32_t len = nbd_get_be32(h + 12);
        int ret;
        if (ck != cookie) {
            return nbd_client_kill_err(c, EIO);
        }
        switch (type) {
        case NBD_REPLY_TYPE_NONE:
            ret = (len == 0 && (flags & NBD_REPLY_FLAG_DONE)) ? 0 : nbd_client_kill(c);
            break;
        case NBD_REPLY_TYPE_OFFSET_DATA:
        case NBD_REPLY_TYPE_OFFSET_HOLE:
            ret = nbd_client_content_chunk(c, r, type, len);
            break;
        case NBD_REPLY_TYPE_BLOCK_STATUS:
            ret = nbd_client_status_chunk(c, r, len);
            break;
        default:
            ret = NBD_REPLY_TYPE_IS_ERR(type) ? nbd_client_error_chunk(c, r, len)
                                              : nbd_client_kill(c);
            break;
        }
        if (ret < 0) {
            return ret;
        }
        if (flags & NBD_REPLY_FLAG_DONE) {
            return 0;
        }
    }
}

/* Read the reply to the request with cookie; returns 0, the server's -errno, or -EIO. */
static int nbd_client_reply(NbdClient *c, NbdReplyCtx *r, uint64_t cookie)
{
    uint32_t magic;
    c->last_error[0] = '\0';
    if (nbd_sock_read(&c->sock, &magic, sizeof(magic), NULL) < 0) {
        return nbd_client_kill_err(c, EIO);
    }
    magic = be32toh(magic);
    if (magic == NBD_SIMPLE_REPLY_MAGIC) {
        uint8_t h[sizeof(NbdSimpleReply) - 4];
        if (nbd_sock_read(&c->sock, h, sizeof(h), NULL) < 0 || nbd_get_be64(h + 4) != cookie) {
            return nbd_client_kill_err(c, EIO);
        }
        uint32_t err = nbd_get_be32(h);
        if (err) {
            return -nbd_wire_to_errno(err);
        }
        if (r->cmd == NBD_CMD_BLOCK_STATUS) {
            /* Block status needs a structured reply. */
            return nbd_client_kill(c);
        }
        if (r->cmd == NBD_CMD_READ) {
            if (nbd_sock_read(&c->sock, r->buf, r->len, NULL) < 0) {
                return nbd_client_kill(c);
            }
        }
        return 0;
    }
    if (magic != NBD_STRUCTURED_REPLY_MAGIC || !c->structured) {
        return nbd_client_kill(c);
    }
    int ret = nbd_client_structured(c, r, cookie);
    if (ret < 0) {
        return ret;
    }
    if (r->err) {
        return -r->err;
    }
    if (r->cmd == NBD_CMD_READ && r->covered != r->len) {
        /* Chunks may not overlap, so a short sum means part of the read is missing. */
        return nbd_client_kill(c);
    }
    if (r->cmd == NBD_CMD_BLOCK_STATUS && !r->got_status) {
        return nbd_client_kill(c);
    }
    return 0;
}

/* One request and its reply: the body of every public I/O call. */
static int nbd_client_request(NbdClient *c, NbdReplyCtx *r, uint16_t flags,
                              const void *payload)
{
    uint64_t cookie;
    int ret = nbd_client_send_req(c, r->cmd, flags, r->offset, r->len, payload, &cookie);
    if (ret < 0) {
        return ret;
    }
    return nbd_client_reply(c, r, cookie);
}

int nbd_client_pread(NbdClient *c, uint64_t offset, uint32_t len, void *buf)
{
    NbdReplyCtx r = { .cmd = NBD_CMD_READ, .offset = offset, .len = len, .buf = buf };
    if (len == 0) {
        return 0;
    }
    return nbd_client_request(c, &r, 0, NULL);
}

int nbd_client_pwrite(NbdClient *c, uint64_t offset, uint32_t len, const void *buf,
                      uint16_t cmd_flags)
{
    NbdReplyCtx r = { .cmd = NBD_CMD_WRITE, .offset = offset, .len = len };
    if (c->eflags & NBD_FLAG_READ_ONLY) {
        return -EPERM;
    }
    if (!(c->eflags & NBD_FLAG_SEND_FUA)) {
        cmd_flags &= ~NBD_CMD_FLAG_FUA;
    }
    return nbd_client_request(c, &r, cmd_flags & NBD_CMD_FLAG_FUA, buf);
}

int nbd_client_write_zeroes(NbdClient *c, uint64_t offset, uint32_t len, uint16_t cmd_flags)
{
    NbdReplyCtx r = { .cmd = NBD_CMD_WRITE_ZEROES, .offset = offset, .len = len };
    if (c->eflags & NBD_FLAG_READ_ONLY) {
        return -EPERM;
    }
    if (!(c->eflags & NBD_FLAG_SEND_WRITE_ZEROES)) {
        return -ENOTSUP;
    }
    if ((cmd_flags & NBD_CMD_FLAG_FAST_ZERO) && !(c->eflags & NBD_FLAG_SEND_FAST_ZERO)) {
        return -ENOTSUP;
    }
    if (!(c->eflags & NBD_FLAG_SEND_FUA)) {
        cmd_flags &= ~NBD_CMD_FLAG_FUA;
    }
    cmd_flags &= NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
    return nbd_client_request(c, &r, cmd_flags, NULL);
}

int nbd_client_trim(NbdClient *c, uint64_t offset, uint32_t len)
{
    NbdReplyCtx r = { .cmd = NBD_CMD_TRIM, .offset = offset, .len = len };
    if (c->eflags & NBD_FLAG_READ_ONLY) {
        return -EPERM;
    }
    if (!(c->eflags & NBD_FLAG_SEND_TRIM)) {
        return -ENOTSUP;
    }
    return nbd_client_request(c, &r, 0, NULL);
}

int nbd_client_flush(NbdClient *c)
{
    NbdReplyCtx r = { .cmd = NBD_CMD_FLUSH };
    if (!(c->eflags & NBD_FLAG_SEND_FLUSH)) {
        return 0;
    }
    return nbd_client_request(c, &r, 0, NULL);
}

int nbd_client_block_status(NbdClient *c, uint64_t offset, uint32_t len, int ctx,
                            bool req_one, NbdExtent *ext, size_t max_ext, size_t *n_ext)
{
    *n_ext = 0;
    if (!c->structured || ctx < 0 || ctx >= c->n_contexts || !c->context_ok[ctx]) {
        return -ENOTSUP;
    }
    NbdReplyCtx r = {
        .cmd = NBD_CMD_BLOCK_STATUS, .offset = offset, .len = len,
        .want_ctx_id = c->context_id[ctx], .req_one = req_one,
        .ext = ext, .max_ext = max_ext,
    };
    int ret = nbd_client_request(c, &r, req_one ? NBD_CMD_FLAG_REQ_ONE : 0, NULL);
    *n_ext = r.n_ext;
    return ret;
}

void nbd_client_close(NbdClient *c)
{
    if (c->sock.fd < 0) {
        return;
    }
    if (!c->dead) {
        uint64_t cookie;
        /* NBD_CMD_DISC has no reply; the server closes its end after it. */
        nbd_client_send_req(c, NBD_CMD_DISC, 0, 0, 0, NULL, &cookie);
    }
    nbd_sock_close(&c->sock);
    c->dead = true;
}
