/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The nbd protocol: a node whose data lives in an export of an NBD server. The
 * address comes from a URI (nbd://host:port/export, nbd+unix:///export?socket=PATH),
 * the legacy nbd:host:port[:exportname=NAME] / nbd:unix:PATH[...] forms, or the
 * options server.{type,host,port,path} and export. Holes are found with
 * NBD_CMD_BLOCK_STATUS on base:allocation (or the x-dirty-bitmap context), so map and
 * convert skip them over the wire. One request is in flight at a time: the core
 * serialises the node since the driver is not thread safe.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbd/nbd-client.h"
#include "nbd/nbd-proto.h"
#include "nbd/objects.h"
#include "qkit/block.h"
#include "qkit/cutils.h"

/* Port used when a URI names none (the IANA one). */
#define NBD_URI_DEFAULT_PORT "10809"
/* Largest TCP port number. */
#define NBD_MAX_PORT 65535
/* Unit in which node lengths are counted; an unaligned size allows byte access. */
#define NBD_SECTOR_SIZE 512
/* Largest single trim request, as QEMU sends (INT_MAX rounded to the alignment). */
#define NBD_MAX_TRIM_REQUEST INT32_MAX

typedef struct BDRVNBDState {
    NbdClient client;
    bool has_status;          /* a block status context was negotiated */
} BDRVNBDState;

/* Where to connect and which export, from a filename or from options. */
typedef struct NbdAddr {
    bool is_unix;
    char *host;
    char *port;
    char *path;
    char *export;             /* NULL when none was named (shown differently from "") */
} NbdAddr;

/* Free the strings of a parsed address and clear it. */
static void nbd_addr_free(NbdAddr *a)
{
    free(a->host);
    free(a->port);
    free(a->path);
    free(a->export);
    memset(a, 0, sizeof(*a));
}

/* strdup that aborts on out-of-memory, like the core's allocations. */
static char *nbd_strdup(const char *s)
{
    char *d = strdup(s);
    if (!d) {
        abort();
    }
    return d;
}

/* strndup that aborts on out-of-memory. */
static char *nbd_strndup(const char *s, size_t n)
{
    char *d = strndup(s, n);
    if (!d) {
        abort();
    }
    return d;
}

/* Decode %XX escapes of a URI component; NULL if an escape is malformed. */
static char *nbd_uri_unescape(const char *s, size_t n)
{
    char *out = nbd_strndup(s, n);
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            if (i + 2 >= n || !isxdigit((unsigned char)s[i + 1]) ||
                !isxdigit((unsigned char)s[i + 2])) {
                free(out);
                return NULL;
            }
            char hex[3] = { s[i + 1], s[i + 2], '\0' };
            unsigned v = (unsigned)strtoul(hex, NULL, 16);
            out[j++] = (char)v;
            i += 2;
        } else {
            out[j++] = s[i];
        }
    }
    out[j] = '\0';
    return out;
}

/* Parse a URI port (decimal digits, leading zeros allowed) into *port; false if bad. */
static bool nbd_parse_port(const char *s, size_t n, unsigned *port)
{
    unsigned v = 0;
    if (n == 0) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (unsigned)(s[i] - '0');
        if (v > NBD_MAX_PORT) {
            return false;
        }
    }
    *port = v;
    return true;
}

/*
 * Parse nbd[+tcp|+unix]://[host[:port]]/[export][?socket=path]. Anything QEMU would
 * not take gives its one message, "No valid URL specified".
 */
static int nbd_parse_uri(const char *fn, NbdAddr *a, Error **errp)
{
    const char *sep = strstr(fn, "://");
    size_t slen = sep - fn;
    if (slen == 3 || (slen == 7 && !strncmp(fn, "nbd+tcp", 7))) {
        a->is_unix = false;
    } else if (slen == 8 && !strncmp(fn, "nbd+unix", 8)) {
        a->is_unix = true;
    } else {
        error_setg(errp, "Unknown protocol '%.*s'", (int)slen, fn);
        return -EINVAL;
    }
    const char *auth = sep + 3;
    const char *path = auth + strcspn(auth, "/?#");
    const char *query = strchr(path, '?');
    const char *frag = strchr(path, '#');
    const char *path_end = query ? query : (frag ? frag : path + strlen(path));
    const char *query_end = query ? (frag && frag > query ? frag : query + strlen(query))
                                  : NULL;

    /* The authority: host, [v6 host], :port. */
    const char *host = auth;
    const char *host_end = path;
    const char *port = NULL;
    if (*host == '[') {
        const char *close = memchr(host, ']', path - host);
        if (!close) {
            goto invalid;
        }
        host_end = close + 1;
        if (host_end < path) {
            if (*host_end != ':') {
                goto invalid;
            }
            port = host_end + 1;
        }
        host++;
        host_end = close;
    } else {
        const char *colon = memchr(host, ':', path - host);
        if (colon) {
            host_end = colon;
            port = colon + 1;
        }
    }
    unsigned port_num = 0;
    if (port && !nbd_parse_port(port, path - port, &port_num)) {
        goto invalid;
    }

    /* The export is the path without its leading '/'. */
    if (path_end > path && *path == '/' && path_end - path > 1) {
        a->export = nbd_uri_unescape(path + 1, path_end - path - 1);
        if (!a->export) {
            goto invalid;
        }
    }

    if (a->is_unix) {
        /* nbd+unix:///export?socket=path: no host, exactly one socket parameter. */
        if (host_end != host || port || !query || strncmp(query + 1, "socket=", 7) ||
            memchr(query + 1, '&', query_end - query - 1)) {
            goto invalid;
        }
        a->path = nbd_uri_unescape(query + 8, query_end - query - 8);
        if (!a->path) {
            goto invalid;
        }
    } else {
        if (query || host_end == host) {
            goto invalid;
        }
        a->host = nbd_strndup(host, host_end - host);
        if (port && port_num != 0) {
            /* Port 0 means no port, as in QEMU's URI parser: the default applies. */
            char num[16];
            snprintf(num, sizeof(num), "%u", port_num);
            a->port = nbd_strdup(num);
        } else {
            a->port = nbd_strdup(NBD_URI_DEFAULT_PORT);
        }
    }
    return 0;

invalid:
    nbd_addr_free(a);
    error_setg(errp, "No valid URL specified");
    return -EINVAL;
}

/* Parse nbd:host:port[:exportname=NAME] and nbd:unix:PATH[:exportname=NAME]. */
static int nbd_parse_legacy(const char *fn, NbdAddr *a, Error **errp)
{
    const char *rest = fn + strlen("nbd:");
    const char *ex = strstr(rest, ":exportname=");
    size_t alen = ex ? (size_t)(ex - rest) : strlen(rest);
    if (ex) {
        a->export = nbd_strdup(ex + strlen(":exportname="));
    }
    if (alen == 0) {
        error_setg(errp, "NBD server address missing");
        return -EINVAL;
    }
    if (!strncmp(rest, "unix:", 5)) {
        a->is_unix = true;
        a->path = nbd_strndup(rest + 5, alen - 5);
        return 0;
    }
    char *addr = nbd_strndup(rest, alen);
    char *colon;
    if (addr[0] == '[') {
        char *close = strchr(addr, ']');
        colon = close ? close + 1 : NULL;
        if (!close || *colon != ':') {
            colon = NULL;
        } else {
            *close = '\0';
        }
    } else {
        colon = strchr(addr, ':');
    }
    if (!colon) {
        error_setg(errp, "error parsing address '%s'", addr);
        free(addr);
        return -EINVAL;
    }
    *colon = '\0';
    a->host = nbd_strdup(addr[0] == '[' ? addr + 1 : addr);
    a->port = nbd_strdup(colon + 1);
    free(addr);
    return 0;
}

/* A string option that may also be given as a JSON number ("port": 10809). */
static char *nbd_opt_string(const json_t *d, const char *key)
{
    json_t *v = json_object_get(d, key);
    char num[32];
    if (json_is_string(v)) {
        return nbd_strdup(json_string_value(v));
    }
    if (json_is_integer(v)) {
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return nbd_strdup(num);
    }
    return NULL;
}

/* Keys of the server object each socket type takes (SocketAddress in QAPI). */
static const char *const nbd_inet_keys[] = {
    "type", "host", "port", "numeric", "to", "ipv4", "ipv6", "keep-alive", "mptcp", NULL,
};
static const char *const nbd_unix_keys[] = { "type", "path", "abstract", "tight", NULL };

/* True if key is one of the NULL-terminated list. */
static bool nbd_key_in(const char *key, const char *const *list)
{
    for (int i = 0; list[i]; i++) {
        if (!strcmp(key, list[i])) {
            return true;
        }
    }
    return false;
}

/* The server object of the options: {"type": "inet"|"unix", ...}. */
static int nbd_parse_server(const json_t *server, NbdAddr *a, Error **errp)
{
    const char *type = qdict_get_str(server, "type");
    if (!type) {
        error_setg(errp, "Parameter 'type' is missing");
        return -EINVAL;
    }
    const char *const *keys;
    if (!strcmp(type, "inet")) {
        keys = nbd_inet_keys;
    } else if (!strcmp(type, "unix")) {
        keys = nbd_unix_keys;
        a->is_unix = true;
    } else {
        error_setg(errp, "Parameter 'type' does not accept value '%s'", type);
        return -EINVAL;
    }
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)server, key, val) {
        if (!nbd_key_in(key, keys)) {
            error_setg(errp, "Parameter '%s' is unexpected", key);
            return -EINVAL;
        }
    }
    if (a->is_unix) {
        a->path = nbd_opt_string(server, "path");
        if (!a->path) {
            error_setg(errp, "Parameter 'path' is missing");
            return -EINVAL;
        }
        return 0;
    }
    a->host = nbd_opt_string(server, "host");
    if (!a->host) {
        error_setg(errp, "Parameter 'host' is missing");
        return -EINVAL;
    }
    a->port = nbd_opt_string(server, "port");
    if (!a->port) {
        error_setg(errp, "Parameter 'port' is missing");
        return -EINVAL;
    }
    return 0;
}

/* Options of the nbd driver, and the generic node options it tolerates. */
static const char *const nbd_option_keys[] = {
    "driver", "filename", "server", "host", "port", "path", "export", "tls-creds",
    "tls-hostname", "x-dirty-bitmap", "reconnect-delay", "open-timeout",
    "read-only", "auto-read-only", "force-share", "node-name", "cache", "discard",
    "detect-zeroes", NULL,
};

/* Refuse options the driver does not know (QEMU checks them once the node is open). */
static int nbd_check_unknown_opts(const json_t *options, Error **errp)
{
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)options, key, val) {
        if (!nbd_key_in(key, nbd_option_keys)) {
            error_setg(errp, "Block protocol 'nbd' doesn't support the option '%s'", key);
            return -EINVAL;
        }
    }
    return 0;
}

/*
 * Find the server address: the server object, the legacy host/port/path keys, or
 * else the filename. Exactly one of them must be given.
 */
static int nbd_parse_addr(const json_t *options, NbdAddr *a, Error **errp)
{
    const json_t *server = json_object_get(options, "server");
    bool legacy = json_object_get(options, "host") || json_object_get(options, "port") ||
                  json_object_get(options, "path");
    const char *fn = qdict_get_str(options, "filename");
    int ret;
    if (server && legacy) {
        error_setg(errp, "Cannot use 'server' and path/host/port at the same time");
        return -EINVAL;
    }
    if ((server || legacy) && fn) {
        error_setg(errp, "host/port/path and a file name may not be used at the same time");
        return -EINVAL;
    }
    if (server) {
        if (!json_is_object(server)) {
            error_setg(errp, "Invalid parameter type for 'server', expected: object");
            return -EINVAL;
        }
        ret = nbd_parse_server(server, a, errp);
    } else if (legacy) {
        a->path = nbd_opt_string(options, "path");
        a->host = nbd_opt_string(options, "host");
        if (a->path && a->host) {
            error_setg(errp, "path and host may not be used at the same time");
            return -EINVAL;
        }
        if (a->path) {
            a->is_unix = true;
            ret = 0;
        } else if (!a->host) {
            error_setg(errp, "NBD server address missing");
            ret = -EINVAL;
        } else {
            a->port = nbd_opt_string(options, "port");
            if (!a->port) {
                a->port = nbd_strdup(NBD_URI_DEFAULT_PORT);
            }
            ret = 0;
        }
    } else if (fn && strstr(fn, "://")) {
        ret = nbd_parse_uri(fn, a, errp);
    } else if (fn && !strncmp(fn, "nbd:", 4)) {
        ret = nbd_parse_legacy(fn, a, errp);
    } else {
        error_setg(errp, "NBD server address missing");
        ret = -EINVAL;
    }
    if (ret < 0) {
        return ret;
    }
    if (json_object_get(options, "export")) {
        free(a->export);
        a->export = nbd_opt_string(options, "export");
        if (!a->export) {
            error_setg(errp, "Invalid parameter type for 'export', expected: string");
            return -EINVAL;
        }
    }
    return 0;
}

/* The name QEMU gives the node: nbd://host:port[/export] or nbd+unix://[/export]?socket=. */
static void nbd_set_filename(BlockDriverState *bs, const NbdAddr *a)
{
    if (a->is_unix) {
        snprintf(bs->filename, sizeof(bs->filename), "nbd+unix://%s%s?socket=%s",
                 a->export ? "/" : "", a->export ? a->export : "", a->path);
    } else {
        snprintf(bs->filename, sizeof(bs->filename), "nbd://%s:%s%s%s", a->host, a->port,
                 a->export ? "/" : "", a->export ? a->export : "");
    }
}

/* Options accepted for compatibility whose value must still be a number. */
static int nbd_check_number_opts(const json_t *options, Error **errp)
{
    static const char *const keys[] = { "reconnect-delay", "open-timeout" };
    for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
        int64_t v;
        int ret = qdict_get_int_opt(options, keys[i], 0, &v, errp);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/*
 * tls-creds=ID: the client credentials registered by --object under that id, and the
 * name the server's certificate must carry (tls-hostname, else the TCP host; a unix
 * socket has none, which the certificate check refuses as QEMU does).
 */
static int nbd_tls_config(const json_t *options, const NbdAddr *a, NbdClientConfig *cfg,
                          Error **errp)
{
    json_t *creds = json_object_get(options, "tls-creds");
    json_t *hostname = json_object_get(options, "tls-hostname");
    if (creds && !json_is_string(creds)) {
        error_setg(errp, "Invalid parameter type for 'tls-creds', expected: string");
        return -EINVAL;
    }
    if (hostname && !json_is_string(hostname)) {
        error_setg(errp, "Invalid parameter type for 'tls-hostname', expected: string");
        return -EINVAL;
    }
    if (!creds) {
        return 0;
    }
    const UserObject *obj = user_object_tls_creds(json_string_value(creds), false, errp);
    if (!obj) {
        return -EINVAL;
    }
    cfg->tls_creds = obj->client_creds;
    cfg->tls_hostname = hostname ? json_string_value(hostname) : (a->is_unix ? NULL : a->host);
    return 0;
}

/* Called by the core to open the node: parse the address, connect, negotiate. */
static int nbd_open(BlockDriverState *bs, json_t *options, int flags, Error **errp)
{
    BDRVNBDState *s = bs->opaque;
    NbdAddr a = { 0 };
    int ret = nbd_parse_addr(options, &a, errp);
    if (ret < 0) {
        goto out;
    }
    ret = nbd_check_number_opts(options, errp);
    if (ret < 0) {
        goto out;
    }
    const char *bitmap = qdict_get_str(options, "x-dirty-bitmap");
    NbdClientConfig cfg = {
        .export_name = a.export,
        .structured_reply = true,
        .block_size = true,
        .meta_contexts = { bitmap ? bitmap : NBD_META_BASE_ALLOCATION, NULL },
    };
    ret = nbd_tls_config(options, &a, &cfg, errp);
    if (ret < 0) {
        goto out;
    }
    int fd = a.is_unix ? nbd_client_connect_unix(a.path, errp)
                       : nbd_client_connect_inet(a.host, a.port, errp);
    if (fd < 0) {
        ret = fd;
        goto out;
    }
    ret = nbd_client_handshake(&s->client, fd, &cfg, errp);
    if (ret < 0) {
        goto out;
    }
    s->has_status = s->client.n_contexts > 0 && s->client.context_ok[0];
    if (bitmap && !s->has_status) {
        /* QEMU 7.2 reports a missing bitmap context this way. */
        error_setg_errno(errp, EINVAL, "Could not open image");
        ret = -EINVAL;
        goto fail;
    }
    if ((flags & BDRV_O_RDWR) && (s->client.eflags & NBD_FLAG_READ_ONLY)) {
        error_setg_errno(errp, EACCES, "Could not open image");
        ret = -EACCES;
        goto fail;
    }
    ret = nbd_check_unknown_opts(options, errp);
    if (ret < 0) {
        goto fail;
    }
    /*
     * Without advertised sizes: byte access when the size is not whole sectors (to
     * reach the tail) or when block status may report sub-sector extents; otherwise
     * stay with sectors, safest with old servers.
     */
    uint32_t align = s->client.min_block;
    if (!s->client.has_block_size) {
        align = (s->client.size % NBD_SECTOR_SIZE || s->has_status) ? 1 : NBD_SECTOR_SIZE;
    }
    bs->request_alignment = align;
    if (s->client.eflags & NBD_FLAG_SEND_FUA) {
        bs->supported_write_flags = BDRV_REQ_FUA;
    }
    bs->max_transfer = ROUND_DOWN(QKIT_MIN((uint64_t)s->client.max_block,
                                           (uint64_t)NBD_MAX_BUFFER_SIZE), align);
    nbd_set_filename(bs, &a);
    ret = 0;
    goto out;
fail:
    nbd_client_close(&s->client);
out:
    nbd_addr_free(&a);
    return ret;
}

/* Called when the last reference goes: say goodbye to the server. */
static void nbd_close(BlockDriverState *bs)
{
    BDRVNBDState *s = bs->opaque;
    nbd_client_close(&s->client);
}

/* Going read-write needs an export the server lets us write. */
static int nbd_reopen(BlockDriverState *bs, int flags, Error **errp)
{
    BDRVNBDState *s = bs->opaque;
    if ((flags & BDRV_O_RDWR) && (s->client.eflags & NBD_FLAG_READ_ONLY)) {
        error_setg(errp, "Cannot reopen read-only NBD export read-write");
        return -EACCES;
    }
    return 0;
}

/* Bytes of [offset, offset+bytes) inside the export; the rest is the sector tail. */
static uint64_t nbd_in_export(BDRVNBDState *s, uint64_t offset, uint64_t bytes)
{
    if (offset >= s->client.size) {
        return 0;
    }
    return QKIT_MIN(bytes, s->client.size - offset);
}

/* Called for aligned reads of at most max_transfer bytes. */
static int nbd_pread(BlockDriverState *bs, uint64_t offset, uint64_t bytes, void *buf,
                     int flags)
{
    BDRVNBDState *s = bs->opaque;
    uint64_t n = nbd_in_export(s, offset, bytes);
    /* A size that is not whole sectors reads as zeroes up to the sector end. */
    memset((uint8_t *)buf + n, 0, bytes - n);
    return n ? nbd_client_pread(&s->client, offset, (uint32_t)n, buf) : 0;
}

/* Called for aligned writes of at most max_transfer bytes. */
static int nbd_pwrite(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                      const void *buf, int flags)
{
    BDRVNBDState *s = bs->opaque;
    if (nbd_in_export(s, offset, bytes) != bytes) {
        /* The sector tail past the export's size cannot hold data. */
        return -ENOSPC;
    }
    uint16_t cflags = (flags & BDRV_REQ_FUA) ? NBD_CMD_FLAG_FUA : 0;
    return nbd_client_pwrite(&s->client, offset, (uint32_t)bytes, buf, cflags);
}

/* Zeroes in pieces of max_transfer; NO_HOLE unless unmapping is allowed. */
static int nbd_pwrite_zeroes(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                             int flags)
{
    BDRVNBDState *s = bs->opaque;
    if (nbd_in_export(s, offset, bytes) != bytes) {
        /* The sector tail past the export's size cannot hold data. */
        return -ENOSPC;
    }
    uint16_t cflags = 0;
    if (!(flags & BDRV_REQ_MAY_UNMAP)) {
        cflags |= NBD_CMD_FLAG_NO_HOLE;
    }
    if (flags & BDRV_REQ_NO_FALLBACK) {
        cflags |= NBD_CMD_FLAG_FAST_ZERO;
    }
    if (flags & BDRV_REQ_FUA) {
        cflags |= NBD_CMD_FLAG_FUA;
    }
    while (bytes) {
        uint32_t n = (uint32_t)QKIT_MIN(bytes, bs->max_transfer);
        int ret = nbd_client_write_zeroes(&s->client, offset, n, cflags);
        if (ret < 0) {
            return ret;
        }
        offset += n;
        bytes -= n;
    }
    return 0;
}

/* Discard in pieces the 32-bit length field can carry. */
static int nbd_pdiscard(BlockDriverState *bs, uint64_t offset, uint64_t bytes)
{
    BDRVNBDState *s = bs->opaque;
    uint64_t piece = ROUND_DOWN((uint64_t)NBD_MAX_TRIM_REQUEST, bs->request_alignment);
    bytes = nbd_in_export(s, offset, bytes);
    while (bytes) {
        uint32_t n = (uint32_t)QKIT_MIN(bytes, piece);
        int ret = nbd_client_trim(&s->client, offset, n);
        if (ret < 0) {
            return ret;
        }
        offset += n;
        bytes -= n;
    }
    return 0;
}

/* Called by bdrv_flush(): the server makes written data durable (if it can flush). */
static int nbd_flush(BlockDriverState *bs)
{
    BDRVNBDState *s = bs->opaque;
    return nbd_client_flush(&s->client);
}

/*
 * Status from one NBD_CMD_BLOCK_STATUS with REQ_ONE: HOLE clears DATA, ZERO sets
 * ZERO, and like any protocol the data sits at the same offset of this node.
 */
static int nbd_block_status(BlockDriverState *bs, bool want_zero, uint64_t offset,
                            uint64_t bytes, uint64_t *pnum, uint64_t *map,
                            BlockDriverState **file)
{
    BDRVNBDState *s = bs->opaque;
    uint32_t align = bs->request_alignment;
    uint64_t n = nbd_in_export(s, offset, bytes);
    *map = offset;
    *file = bs;
    if (n == 0) {
        /* The sector tail past the export's size reads as zeroes but maps to nothing. */
        *pnum = bytes;
        return BDRV_BLOCK_ZERO;
    }
    if (!s->has_status) {
        *pnum = n;
        return BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;
    }
    n = QKIT_MIN(n, ROUND_DOWN((uint64_t)UINT32_MAX, align));
    NbdExtent ext;
    size_t count;
    int ret = nbd_client_block_status(&s->client, offset, (uint32_t)n, 0, true, &ext, 1,
                                      &count);
    if (ret < 0) {
        return ret;
    }
    if (count == 0) {
        return -EIO;
    }
    uint64_t len = QKIT_MIN((uint64_t)ext.length, n);
    if (len >= align) {
        len = ROUND_DOWN(len, align);
    } else if (align <= n) {
        /* An extent smaller than our unit: claim data for the whole unit to be safe. */
        len = align;
        ext.flags = 0;
    }
    *pnum = len;
    ret = BDRV_BLOCK_OFFSET_VALID;
    if (!(ext.flags & NBD_STATE_HOLE)) {
        ret |= BDRV_BLOCK_DATA;
    }
    if (ext.flags & NBD_STATE_ZERO) {
        ret |= BDRV_BLOCK_ZERO;
    }
    return ret;
}

/* The size is the server's: only a "resize" to the same size (or smaller, inexact) passes. */
static int nbd_truncate(BlockDriverState *bs, uint64_t offset, bool exact,
                        PreallocMode prealloc, Error **errp)
{
    BDRVNBDState *s = bs->opaque;
    if (offset != s->client.size && exact) {
        error_setg(errp, "Cannot resize NBD nodes");
        return -ENOTSUP;
    }
    if (offset > s->client.size) {
        error_setg(errp, "Cannot grow NBD nodes");
        return -EINVAL;
    }
    return 0;
}

/* The export size the server announced; it never changes while connected. */
static int64_t nbd_getlength(BlockDriverState *bs)
{
    BDRVNBDState *s = bs->opaque;
    return (int64_t)s->client.size;
}

/* A server's export may hold anything: never assume it reads as zeroes. */
static bool nbd_has_zero_init(BlockDriverState *bs)
{
    return false;
}

/*
 * create on an NBD URI: the export already exists, so "creating" checks that it is big
 * enough and clears its first sector so no old format is probed there (what QEMU does
 * for protocols that cannot create).
 */
static int nbd_create(const char *filename, QOpts *opts, Error **errp)
{
    uint64_t size;
    int ret = qopts_get_size(opts, "size", 0, &size, errp);
    if (ret < 0) {
        return ret;
    }
    const char *pa = qopts_get(opts, "preallocation");
    PreallocMode prealloc = PREALLOC_MODE_OFF;
    if (pa && prealloc_mode_parse(pa, &prealloc) < 0) {
        error_setg(errp, "Parameter 'preallocation' does not accept value '%s'", pa);
        return -EINVAL;
    }
    if (prealloc != PREALLOC_MODE_OFF) {
        error_setg(errp, "Unsupported preallocation mode '%s'", pa);
        return -ENOTSUP;
    }
    Error *local = NULL;
    BlockDriverState *bs = bdrv_open(filename, NULL, NULL, BDRV_O_RDWR | BDRV_O_PROTOCOL,
                                     &local);
    if (!bs) {
        error_propagate(errp, local);
        error_prepend(errp, "Protocol driver 'nbd' does not support image creation, and "
                      "opening the image failed: ");
        return -EINVAL;
    }
    ret = bdrv_truncate(bs, (int64_t)size, false, PREALLOC_MODE_OFF, errp);
    if (ret == 0) {
        int64_t len = bdrv_getlength(bs);
        int64_t clear = len < 0 ? 0 : QKIT_MIN(len, (int64_t)NBD_SECTOR_SIZE);
        ret = clear ? bdrv_pwrite_zeroes(bs, 0, clear, BDRV_REQ_MAY_UNMAP) : 0;
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Failed to clear the new image's first sector");
        }
    }
    bdrv_unref(bs);
    return ret;
}

/* What create takes for an NBD target (the rest belongs to the format above). */
static const QOptDesc nbd_create_opts[] = {
    { "size", QOPT_SIZE, "Virtual disk size", NULL },
    { "preallocation", QOPT_STRING, "Preallocation mode (allowed values: off)", NULL },
    { NULL },
};

const BlockDriver bdrv_nbd = {
    .format_name = "nbd",
    .protocol_name = "nbd",
    .instance_size = sizeof(BDRVNBDState),
    .thread_safe = false,
    .shares_write = true,
    .open = nbd_open,
    .close = nbd_close,
    .reopen = nbd_reopen,
    .pread = nbd_pread,
    .pwrite = nbd_pwrite,
    .pwrite_zeroes = nbd_pwrite_zeroes,
    .pdiscard = nbd_pdiscard,
    .flush = nbd_flush,
    .block_status = nbd_block_status,
    .truncate = nbd_truncate,
    .getlength = nbd_getlength,
    .has_zero_init = nbd_has_zero_init,
    .create = nbd_create,
    .create_opts = nbd_create_opts,
};
