/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * List mode (qemu-nbd -L): ask a server for its exports with NBD_OPT_LIST, then
 * for each one its size, flags and block sizes (NBD_OPT_INFO) and its meta
 * contexts (NBD_OPT_LIST_META_CONTEXT), over TLS when credentials are given.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "nbd/list.h"
#include "nbd/nbd-client.h"
#include "nbd/nbd-proto.h"

#define LIST_NAME_LEN_FIELD 4   /* be32 length before an export name */

/* Read one option reply header and its payload (allocated, NUL-terminated). */
static int list_reply(NbdSock *sock, uint32_t opt, uint32_t *type, uint8_t **data,
                      uint32_t *len, Error **errp)
{
    NbdOptionReply rep;
    if (nbd_sock_read(sock, &rep, sizeof(rep), NULL) < 0) {
        error_setg(errp, "Failed to read option reply");
        return -EIO;
    }
    if (be64toh(rep.magic) != NBD_REP_MAGIC || be32toh(rep.option) != opt) {
        error_setg(errp, "Unexpected option reply");
        return -EINVAL;
    }
    *type = be32toh(rep.type);
    *len = be32toh(rep.length);
    if (*len > NBD_MAX_OPTION_SIZE) {
        error_setg(errp, "Option reply too long");
        return -EINVAL;
    }
    *data = malloc(*len + 1);
    if (!*data) {
        abort();
    }
    if (nbd_sock_read(sock, *data, *len, NULL) < 0) {
        free(*data);
        *data = NULL;
        error_setg(errp, "Failed to read option reply");
        return -EIO;
    }
    (*data)[*len] = '\0';
    return 0;
}

/* Send an option with its payload. */
static int list_send(NbdSock *sock, uint32_t opt, const void *data, uint32_t len, Error **errp)
{
    NbdOptionHeader h = {
        .magic = htobe64(NBD_OPTS_MAGIC),
        .option = htobe32(opt),
        .length = htobe32(len),
    };
    if (nbd_sock_write2(sock, &h, sizeof(h), data, len) < 0) {
        error_setg(errp, "Failed to send option");
        return -EIO;
    }
    return 0;
}


/* Send an option for one export: the be32 length and its name, then tail. */
static int list_send_named(NbdSock *sock, uint32_t opt, const char *name,
                           const uint8_t *tail, size_t tail_len, Error **errp)
{
    size_t nlen = strlen(name);
    uint8_t *buf = malloc(LIST_NAME_LEN_FIELD + nlen + tail_len);
    if (!buf) {
        abort();
    }
    nbd_put_be32(buf, nlen);
    memcpy(buf + LIST_NAME_LEN_FIELD, name, nlen);
    memcpy(buf + LIST_NAME_LEN_FIELD + nlen, tail, tail_len);
    int ret = list_send(sock, opt, buf, LIST_NAME_LEN_FIELD + nlen + tail_len, errp);
    free(buf);
    return ret;
}

/*
 * Read the next reply to opt. True when it is one to handle (*type, *d: the caller
 * frees, *len); false at the end: NBD_REP_ACK, an error reply (which sets *ret to an
 * error unless ignore_err) or a failure (*ret < 0).
 */
static bool list_next(NbdSock *sock, uint32_t opt, bool ignore_err, uint32_t *type,
                      uint8_t **d, uint32_t *len, int *ret, Error **errp)
{
    *ret = list_reply(sock, opt, type, d, len, errp);
    if (*ret < 0) {
        return false;
    }
    if (*type == NBD_REP_ACK || NBD_REP_IS_ERR(*type)) {
        if (*type != NBD_REP_ACK && !ignore_err) {
            *ret = nbd_client_opt_error(*type, opt, (const char *)*d, errp);
        }
        free(*d);
        return false;
    }
    return true;
}

/* NBD_OPT_INFO for one export: size, flags, block sizes. */
static int list_info(NbdSock *sock, NbdListExport *e, Error **errp)
{
    uint8_t req[4];
    uint32_t type, len;
    uint8_t *d;
    nbd_put_be16(req, 1);
    nbd_put_be16(req + 2, NBD_INFO_BLOCK_SIZE);
    int ret = list_send_named(sock, NBD_OPT_INFO, e->name, req, sizeof(req), errp);
    while (ret == 0 && list_next(sock, NBD_OPT_INFO, false, &type, &d, &len, &ret, errp)) {
        if (type == NBD_REP_INFO && len >= 2) {
            uint16_t info = nbd_get_be16(d);
            if (info == NBD_INFO_EXPORT && len >= sizeof(NbdInfoExport)) {
                e->size = nbd_get_be64(d + 2);
                e->flags = nbd_get_be16(d + 10);
            } else if (info == NBD_INFO_BLOCK_SIZE && len >= sizeof(NbdInfoBlockSize)) {
                e->min_block = nbd_get_be32(d + 2);
                e->opt_block = nbd_get_be32(d + 6);
                e->max_block = nbd_get_be32(d + 10);
            }
        }
        free(d);
    }
    return ret;
}

/*
 * NBD_OPT_LIST_META_CONTEXT with no query: every context the export offers (an error
 * reply ends the list: a server without meta contexts simply has none to list).
 */
static int list_contexts(NbdSock *sock, NbdListExport *e, Error **errp)
{
    uint8_t nqueries[4];
    uint32_t type, len;
    uint8_t *d;
    nbd_put_be32(nqueries, 0);
    int ret = list_send_named(sock, NBD_OPT_LIST_META_CONTEXT, e->name, nqueries,
                              sizeof(nqueries), errp);
    while (ret == 0 &&
           list_next(sock, NBD_OPT_LIST_META_CONTEXT, true, &type, &d, &len, &ret, errp)) {
        if (type == NBD_REP_META_CONTEXT && len > sizeof(NbdMetaContextReply)) {
            char **v = realloc(e->contexts, (e->nb_contexts + 1) * sizeof(*v));
            if (!v) {
                abort();
            }
            e->contexts = v;
            e->contexts[e->nb_contexts++] = strdup((char *)d + sizeof(NbdMetaContextReply));
        }
        free(d);
    }
    return ret;
}

int nbd_list_exports(int fd, const NbdTlsClientCreds *creds, const char *hostname,
                     NbdListExport **pexports, Error **errp)
{
    NbdSock s = { .fd = fd };
    NbdSock *sock = &s;
    NbdNewstyleGreeting greet;
    NbdListExport *v = NULL;
    int n = 0, ret;
    uint32_t cflags = htobe32(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);

    *pexports = NULL;
    if (nbd_sock_read(sock, &greet, sizeof(greet), NULL) < 0 ||
        be64toh(greet.magic) != NBD_MAGIC || be64toh(greet.opts_magic) != NBD_OPTS_MAGIC) {
        error_setg(errp, "Server does not support the fixed newstyle handshake");
        nbd_sock_close(sock);
        return -EINVAL;
    }
    if (nbd_sock_write(sock, &cflags, sizeof(cflags)) < 0) {
        error_setg(errp, "Failed to send client flags");
        nbd_sock_close(sock);
        return -EIO;
    }
    uint32_t type, len;
    uint8_t *d;
    ret = creds ? nbd_client_starttls(sock, creds, hostname, errp) : 0;
    if (ret == 0) {
        ret = list_send(sock, NBD_OPT_LIST, NULL, 0, errp);
    }
    while (ret == 0 && list_next(sock, NBD_OPT_LIST, false, &type, &d, &len, &ret, errp)) {
        uint32_t nlen = len >= 4 ? nbd_get_be32(d) : 0;
        if (type == NBD_REP_SERVER && len >= 4 && nlen <= len - 4) {
            NbdListExport *nv = realloc(v, (n + 1) * sizeof(*nv));
            if (!nv) {
                abort();
            }
            v = nv;
            memset(&v[n], 0, sizeof(v[n]));
            v[n].name = strndup((char *)d + 4, nlen);
            v[n].description = len - 4 > nlen ? strdup((char *)d + 4 + nlen) : NULL;
            n++;
        }
        free(d);
    }
    /* Structured replies, so that the server lists its meta contexts. */
    if (ret == 0) {
        ret = list_send(sock, NBD_OPT_STRUCTURED_REPLY, NULL, 0, errp);
        d = NULL;
        if (ret == 0) {
            ret = list_reply(sock, NBD_OPT_STRUCTURED_REPLY, &type, &d, &len, errp);
            free(d);
        }
    }
    for (int i = 0; i < n && ret == 0; i++) {
        ret = list_info(sock, &v[i], errp);
        if (ret == 0) {
            ret = list_contexts(sock, &v[i], errp);
        }
    }
    list_send(sock, NBD_OPT_ABORT, NULL, 0, NULL);
    nbd_sock_close(sock);
    if (ret < 0) {
        nbd_list_free(v, n);
        return ret;
    }
    *pexports = v;
    return n;
}

void nbd_list_free(NbdListExport *exports, int n)
{
    for (int i = 0; i < n; i++) {
        free(exports[i].name);
        free(exports[i].description);
        for (int j = 0; j < exports[i].nb_contexts; j++) {
            free(exports[i].contexts[j]);
        }
        free(exports[i].contexts);
    }
    free(exports);
}
