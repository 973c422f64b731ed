/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The NBD server: exports, and the transmission phase of a client connection.
 * Requests of one client are served in order on its thread; the block layer
 * serialises drivers that are not thread safe, so many clients may run at once.
 * A request the server cannot honour gets an error reply; the connection ends only
 * on NBD_CMD_DISC, EOF, a header with a bad magic (the stream is lost), or a write
 * whose payload is too large to take (the spec lets the server hang up there).
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "nbd/server-int.h"
#include "qkit/cutils.h"

/* Alignment of the request buffer, enough for O_DIRECT on any disk. */
#define BUF_ALIGN 4096
/* The request buffer a connection starts with. */
#define BUF_MIN_SIZE (64 * 1024)
/* Messages in error chunks are cut to this many bytes. */
#define ERR_MSG_MAX 256

/* Largest request the export takes in one piece: the node's limit, at most 32 MiB. */
static uint32_t export_max_block(BlockDriverState *bs)
{
    uint64_t max = NBD_MAX_BUFFER_SIZE;
    if (bs->max_transfer && bs->max_transfer < max) {
        max = bs->max_transfer;
    }
    return max;
}

/*
 * -B: find the bitmap on the node or down its backing chain (as qemu-nbd does) and
 * check that it can be read.
 */
static int nbd_export_find_bitmap(BlockDriverState *bs, const char *name,
                                  BlockDriverState **where, Error **errp)
{
    for (BlockDriverState *b = bs; b; b = b->backing) {
        BdrvDirtyBitmapInfo info;
        int ret = bdrv_dirty_bitmap_find(b, name, &info);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not list the dirty bitmaps");
            return ret;
        }
        if (ret == 1) {
            if (info.inconsistent) {
                error_setg(errp, "Bitmap '%s' is inconsistent and cannot be used", name);
                return -EINVAL;
            }
            *where = b;
            return 0;
        }
    }
    error_setg(errp, "Bitmap '%s' is not found", name);
    return -ENOENT;
}

NbdExport *nbd_export_new(BlockDriverState *bs, const NbdExportOptions *opts, Error **errp)
{
    int64_t size = bdrv_getlength(bs);
    if (size < 0) {
        error_setg_errno(errp, (int)-size, "Failed to determine the image length");
        return NULL;
    }
    if (opts->offset > (uint64_t)size) {
        error_setg(errp, "Offset (%" PRIu64 ") cannot be greater than size of the "
                   "containing file (%" PRId64 ")", opts->offset, size);
        return NULL;
    }
    BlockDriverState *bitmap_bs = NULL;
    if (opts->bitmap && nbd_export_find_bitmap(bs, opts->bitmap, &bitmap_bs, errp) < 0) {
        return NULL;
    }
    NbdExport *exp = calloc(1, sizeof(*exp));
    if (!exp) {
        abort();
    }
    exp->name = strdup(opts->name ? opts->name : "");
    exp->description = opts->description ? strdup(opts->description) : NULL;
    bdrv_ref(bs);
    exp->bs = bs;
    exp->offset = opts->offset;
    exp->size = size - opts->offset;
    exp->read_only = opts->read_only || bs->read_only;
    exp->allocation_depth = opts->allocation_depth;
    exp->bitmap = opts->bitmap ? strdup(opts->bitmap) : NULL;
    exp->bitmap_bs = bitmap_bs;
    exp->discard = opts->discard;
    exp->detect_zeroes = opts->detect_zeroes;
    exp->flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
                 NBD_FLAG_SEND_CACHE;
    if (exp->read_only) {
        exp->flags |= NBD_FLAG_READ_ONLY;
    } else {
        exp->flags |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES |
                      NBD_FLAG_SEND_FAST_ZERO;
    }
    if (opts->multi_conn) {
        exp->flags |= NBD_FLAG_CAN_MULTI_CONN;
    }
    /*
     * The smallest request clients must respect. A format node takes any byte range
     * (the block layer does read-modify-write below it), as in QEMU where only a
     * protocol node exported bare (file with O_DIRECT) asks for alignment.
     */
    exp->min_block = bs->file || bs->request_alignment == 0 ? 1 : bs->request_alignment;
    exp->pref_block = exp->min_block > NBD_PREFERRED_BLOCK_SIZE ? exp->min_block
                                                                : NBD_PREFERRED_BLOCK_SIZE;
    exp->max_block = export_max_block(bs);
    return exp;
}

void nbd_export_free(NbdExport *exp)
{
    if (!exp) {
        return;
    }
    bdrv_unref(exp->bs);
    free(exp->name);
    free(exp->description);
    free(exp->bitmap);
    free(exp);
}

const char *nbd_export_name(const NbdExport *exp)
{
    return exp->name;
}

int64_t nbd_export_size(const NbdExport *exp)
{
    return exp->size;
}

uint16_t nbd_export_flags(const NbdExport *exp)
{
    return exp->flags;
}

/* A simple reply: the header, then (READ only) the data. */
static int send_simple(NbdClient *client, uint64_t cookie, int err, const void *data,
                       uint32_t len)
{
    NbdSimpleReply rep = {
        .magic = htobe32(NBD_SIMPLE_REPLY_MAGIC),
        .error = htobe32(nbd_errno_to_wire(err)),
        .cookie = cookie,
    };
    struct iovec iov[2] = {
        { .iov_base = &rep, .iov_len = sizeof(rep) },
        { .iov_base = (void *)data, .iov_len = len },
    };
    return nbd_conn_writev(&client->conn, iov, data ? 2 : 1);
}

/* One structured reply chunk: header, a fixed payload part, then data. */
int nbd_send_chunk(NbdClient *client, uint64_t cookie, uint16_t type, uint16_t flags,
                   const void *payload, uint32_t len, const void *data, uint32_t data_len)
{
    NbdStructuredReply rep = {
        .magic = htobe32(NBD_STRUCTURED_REPLY_MAGIC),
        .flags = htobe16(flags),
        .type = htobe16(type),
        .cookie = cookie,
        .length = htobe32(len + data_len),
    };
    struct iovec iov[3] = {
        { .iov_base = &rep, .iov_len = sizeof(rep) },
        { .iov_base = (void *)payload, .iov_len = len },
        { .iov_base = (void *)data, .iov_len = data_len },
    };
    return nbd_conn_writev(&client->conn, iov, 3);
}

/*
 * The reply to a failed request: a simple reply with the error, or with structured
 * replies an error chunk carrying msg (the final chunk of the reply).
 */
int nbd_send_error(NbdClient *client, uint64_t cookie, int err, const char *msg)
{
    if (!client->structured_reply) {
        return send_simple(client, cookie, err, NULL, 0);
    }
    char text[ERR_MSG_MAX];
    size_t mlen = msg ? strlen(msg) : 0;
    if (mlen >= sizeof(text)) {
        mlen = sizeof(text) - 1;
    }
    memcpy(text, msg ? msg : "", mlen);
    NbdChunkError ce = {
        .error = htobe32(nbd_errno_to_wire(err)),
        .message_length = htobe16(mlen),
    };
    return nbd_send_chunk(client, cookie, NBD_REPLY_TYPE_ERROR, NBD_REPLY_FLAG_DONE,
                          &ce, sizeof(ce), text, mlen);
}

/* The reply to a request that succeeded and returns no data. */
static int send_ok(NbdClient *client, uint64_t cookie)
{
    return send_simple(client, cookie, 0, NULL, 0);
}

/* Reply with ret (0 or -errno) from a request that returns no data. */
static int send_result(NbdClient *client, uint64_t cookie, int ret, const char *what)
{
    return ret < 0 ? nbd_send_error(client, cookie, -ret, what) : send_ok(client, cookie);
}

/* One OFFSET_DATA chunk for [offset, offset+len) of client->buf. */
static int send_data_chunk(NbdClient *client, uint64_t cookie, uint64_t offset,
                           const void *data, uint32_t len, bool final)
{
    NbdChunkOffsetData od = { .offset = htobe64(offset) };
    return nbd_send_chunk(client, cookie, NBD_REPLY_TYPE_OFFSET_DATA,
                          final ? NBD_REPLY_FLAG_DONE : 0, &od, sizeof(od), data, len);
}

/*
 * A structured read without DF: walk the block status and send ranges that read as
 * zeroes as OFFSET_HOLE chunks, the rest as OFFSET_DATA, the last chunk DONE.
 */
static int do_sparse_read(NbdClient *client, const NbdRequest *req)
{
    NbdExport *exp = client->exp;
    uint64_t offset = req->offset;
    uint64_t end = req->offset + req->length;

    while (offset < end) {
        int64_t pnum = 0;
        int st = bdrv_block_status_above(exp->bs, NULL, exp->offset + offset, end - offset,
                                         &pnum, NULL,
                                         NULL, NULL);
        if (st < 0) {
            return nbd_send_error(client, req->cookie, -st, "unable to check for holes");
        }
        if (pnum <= 0 || (uint64_t)pnum > end - offset) {
            pnum = end - offset;
            st = 0;
        }
        bool final = offset + pnum == end;
        int ret;
        if (st & BDRV_BLOCK_ZERO) {
            NbdChunkOffsetHole hole = {
                .offset = htobe64(offset),
                .length = htobe32(pnum),
            };
            ret = nbd_send_chunk(client, req->cookie, NBD_REPLY_TYPE_OFFSET_HOLE,
                                 final ? NBD_REPLY_FLAG_DONE : 0, &hole, sizeof(hole),
                                 NULL, 0);
        } else {
            ret = bdrv_pread(exp->bs, exp->offset + offset, pnum, client->buf, 0);
            if (ret < 0) {
                return nbd_send_error(client, req->cookie, -ret, "reading from file failed");
            }
            ret = send_data_chunk(client, req->cookie, offset, client->buf, pnum, final);
        }
        if (ret < 0) {
            return ret;
        }
        offset += pnum;
    }
    return 0;
}

/* NBD_CMD_READ in any of its reply shapes. */
static int do_read(NbdClient *client, const NbdRequest *req)
{
    NbdExport *exp = client->exp;

    if (client->structured_reply && !(req->flags & NBD_CMD_FLAG_DF) && req->length) {
        return do_sparse_read(client, req);
    }
    int ret = req->length ? bdrv_pread(exp->bs, exp->offset + req->offset, req->length,
                                      client->buf, 0)
                          : 0;
    if (ret < 0) {
        return nbd_send_error(client, req->cookie, -ret, "reading from file failed");
    }
    if (!client->structured_reply) {
        return send_simple(client, req->cookie, 0, client->buf, req->length);
    }
    if (!req->length) {
        return nbd_send_chunk(client, req->cookie, NBD_REPLY_TYPE_NONE, NBD_REPLY_FLAG_DONE,
                              NULL, 0, NULL, 0);
    }
    return send_data_chunk(client, req->cookie, req->offset, client->buf, req->length,
                           true);
}

/* NBD_CMD_WRITE, its payload already in client->buf. */
static int do_write(NbdClient *client, const NbdRequest *req)
{
    NbdExport *exp = client->exp;
    int flags = req->flags & NBD_CMD_FLAG_FUA ? BDRV_REQ_FUA : 0;
    int ret;

    if (exp->detect_zeroes != NBD_DETECT_ZEROES_OFF && buffer_is_zero(client->buf,
                                                                      req->length)) {
        if (exp->detect_zeroes == NBD_DETECT_ZEROES_UNMAP) {
            flags |= BDRV_REQ_MAY_UNMAP;
        }
        ret = bdrv_pwrite_zeroes(exp->bs, exp->offset + req->offset, req->length, flags);
    } else {
        ret = bdrv_pwrite(exp->bs, exp->offset + req->offset, req->length, client->buf,
                          flags);
    }
    return send_result(client, req->cookie, ret, "writing to file failed");
}

/* NBD_CMD_WRITE_ZEROES: NO_HOLE keeps the range allocated, FAST_ZERO fails if slow. */
static int do_write_zeroes(NbdClient *client, const NbdRequest *req)
{
    int flags = 0;
    if (!(req->flags & NBD_CMD_FLAG_NO_HOLE)) {
        flags |= BDRV_REQ_MAY_UNMAP;
    }
    if (req->flags & NBD_CMD_FLAG_FUA) {
        flags |= BDRV_REQ_FUA;
    }
    if (req->flags & NBD_CMD_FLAG_FAST_ZERO) {
        flags |= BDRV_REQ_NO_FALLBACK;
    }
    NbdExport *exp = client->exp;
    int ret = bdrv_pwrite_zeroes(exp->bs, exp->offset + req->offset, req->length, flags);
    return send_result(client, req->cookie, ret, "writing to file failed");
}

/* NBD_CMD_TRIM: passed down with --discard=unmap, else a successful no-op. */
static int do_trim(NbdClient *client, const NbdRequest *req)
{
    NbdExport *exp = client->exp;
    int ret = 0;
    if (exp->discard && req->length) {
        ret = bdrv_pdiscard(exp->bs, exp->offset + req->offset, req->length);
    }
    if (ret >= 0 && (req->flags & NBD_CMD_FLAG_FUA)) {
        ret = bdrv_flush(exp->bs);
    }
    return send_result(client, req->cookie, ret, "discard failed");
}

/*
 * NBD_CMD_CACHE: prefetch the range. Over a backing chain this is copy-on-read, as in
 * qemu-nbd: what only a backing layer holds is copied into the top layer (so a
 * read-only export answers EPERM when there is something to copy).
 */
static int do_cache(NbdClient *client, const NbdRequest *req)
{
    NbdExport *exp = client->exp;
    uint64_t offset = exp->offset + req->offset, left = req->length;
    int ret = 0;

    while (left > 0 && ret >= 0) {
        int64_t pnum = left < NBD_MAX_BUFFER_SIZE ? left : NBD_MAX_BUFFER_SIZE;
        bool copy = false;
        if (exp->bs->backing) {
            ret = bdrv_is_allocated(exp->bs, offset, pnum, &pnum);
            if (ret < 0) {
                break;
            }
            if (pnum <= 0) {
                ret = -EIO;
                break;
            }
            copy = ret == 0;
            if (copy && exp->read_only) {
                ret = -EPERM;
                break;
            }
        }
        ret = bdrv_pread(exp->bs, offset, pnum, client->buf, 0);
        if (ret >= 0 && copy) {
            ret = bdrv_pwrite(exp->bs, offset, pnum, client->buf, 0);
        }
        offset += pnum;
        left -= pnum;
    }
    return send_result(client, req->cookie, ret, "caching failed");
}

/* The flags a command may carry on this connection. */
static uint16_t valid_cmd_flags(NbdClient *client, uint16_t type)
{
    uint16_t valid = NBD_CMD_FLAG_FUA;
    if (type == NBD_CMD_READ && client->structured_reply) {
        valid |= NBD_CMD_FLAG_DF;
    } else if (type == NBD_CMD_WRITE_ZEROES) {
        valid |= NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
    } else if (type == NBD_CMD_BLOCK_STATUS) {
        valid |= NBD_CMD_FLAG_REQ_ONE;
    }
    return valid;
}

/*
 * Check a request that has been read in full (payload included); returns 0 or the
 * positive errno to reply with, msg set to say why.
 */
static int check_request(NbdClient *client, const NbdRequest *req, char *msg, size_t size)
{
    NbdExport *exp = client->exp;

    if (exp->read_only && (req->type == NBD_CMD_WRITE || req->type == NBD_CMD_TRIM ||
                           req->type == NBD_CMD_WRITE_ZEROES)) {
        snprintf(msg, size, "Export is read-only");
        return EINVAL;   /* what qemu-nbd answers, though EPERM would be apter */
    }
    if (req->offset > (uint64_t)exp->size || req->length > exp->size - req->offset) {
        snprintf(msg, size, "operation past EOF; From: %" PRIu64 ", Len: %" PRIu32
                 ", Size: %" PRIu64, req->offset, req->length, (uint64_t)exp->size);
        return EINVAL;
    }
    uint16_t bad = req->flags & ~valid_cmd_flags(client, req->type);
    if (bad) {
        snprintf(msg, size, "unsupported flags for command %s (got 0x%x)",
                 nbd_cmd_name(req->type), req->flags);
        return EINVAL;
    }
    return 0;
}

/* Serve one checked request. Returns 0, or -errno when the reply could not be sent. */
static int handle_request(NbdClient *client, const NbdRequest *req)
{
    char msg[ERR_MSG_MAX];

    switch (req->type) {
    case NBD_CMD_READ:
        return do_read(client, req);
    case NBD_CMD_WRITE:
        return do_write(client, req);
    case NBD_CMD_FLUSH:
        return send_result(client, req->cookie, bdrv_flush(client->exp->bs), "flush failed");
    case NBD_CMD_TRIM:
        return do_trim(client, req);
    case NBD_CMD_CACHE:
        return do_cache(client, req);
    case NBD_CMD_WRITE_ZEROES:
        return do_write_zeroes(client, req);
    case NBD_CMD_BLOCK_STATUS:
        if (!req->length) {
            return nbd_send_error(client, req->cookie, EINVAL, "need non-zero length");
        }
        if (!client->structured_reply || client->meta.count == 0) {
            return nbd_send_error(client, req->cookie, EINVAL,
                                  "CMD_BLOCK_STATUS not negotiated");
        }
        return nbd_send_block_status(client, req, NULL);
    default:
        snprintf(msg, sizeof(msg), "invalid request type (%u) received", req->type);
        return nbd_send_error(client, req->cookie, EINVAL, msg);
    }
}

int nbd_client_reserve(NbdClient *client, size_t size)
{
    if (size <= client->buf_size && client->buf) {
        return 0;
    }
    if (size < BUF_MIN_SIZE) {
        size = BUF_MIN_SIZE;   /* never NULL, and small requests never reallocate */
    }
    size = (size + BUF_ALIGN - 1) & ~(size_t)(BUF_ALIGN - 1);
    uint8_t *buf = aligned_alloc(BUF_ALIGN, size);
    if (!buf) {
        return -ENOMEM;
    }
    free(client->buf);
    client->buf = buf;
    client->buf_size = size;
    return 0;
}

/* The buffer a request needs: its data for READ and WRITE, a piece of CACHE, extents. */
static size_t request_buf_size(const NbdRequest *req)
{
    switch (req->type) {
    case NBD_CMD_READ:
    case NBD_CMD_WRITE:
        return req->length;
    case NBD_CMD_CACHE:
        return req->length < NBD_MAX_BUFFER_SIZE ? req->length : NBD_MAX_BUFFER_SIZE;
    case NBD_CMD_BLOCK_STATUS:
        return (req->flags & NBD_CMD_FLAG_REQ_ONE ? 1 : NBD_MAX_BLOCK_STATUS_EXTENTS) *
               sizeof(NbdBlockDescriptor);
    default:
        return 0;
    }
}

/* Message for a connection cut in the middle of a request, as qemu-nbd words it. */
#define INTERMEDIATE_STATE "Request handling failed in intermediate state"

/*
 * The transmission phase: read a request, check it, serve it, reply; until the
 * client disconnects or the stream breaks. Returns 0 at a clean end (DISC or EOF
 * between requests), or -errno with errp saying why the client was cut off.
 */
static int nbd_transmission(NbdClient *client, Error **errp)
{
    for (;;) {
        NbdRequest req;
        bool eof = false;
        char msg[ERR_MSG_MAX];

        int ret = nbd_conn_read(&client->conn, &req, sizeof(req), &eof);
        if (ret < 0) {
            if (eof) {
                return 0;
            }
            if (ret == -ECONNRESET) {
                error_setg(errp, "Unexpected end-of-file before all bytes were read");
            } else {
                error_setg_errno(errp, -ret, "Failed to read request");
            }
            return ret;
        }
        if (be32toh(req.magic) != NBD_REQUEST_MAGIC) {
            /* Not a request: answer it as qemu-nbd does, then hang up (out of step). */
            snprintf(msg, sizeof(msg), "invalid magic (got 0x%" PRIx32 ")",
                     be32toh(req.magic));
            nbd_send_error(client, req.cookie, EINVAL, msg);
            error_setg(errp, INTERMEDIATE_STATE);
            return -EINVAL;
        }
        req.flags = be16toh(req.flags);
        req.type = be16toh(req.type);
        req.offset = be64toh(req.offset);
        req.length = be32toh(req.length);
        /* req.cookie stays in wire order: it is only echoed back. */

        if (req.type == NBD_CMD_DISC) {
            return 0;
        }
        bool has_payload = req.type == NBD_CMD_WRITE;
        if ((req.type == NBD_CMD_READ || has_payload) && req.length > NBD_MAX_BUFFER_SIZE) {
            snprintf(msg, sizeof(msg), "len (%" PRIu32 ") is larger than max len (%u)",
                     req.length, NBD_MAX_BUFFER_SIZE);
            ret = nbd_send_error(client, req.cookie, EINVAL, msg);
            if (ret < 0 || has_payload) {
                /* A payload that size is not read: the spec allows hanging up. */
                error_setg(errp, INTERMEDIATE_STATE);
                return -EINVAL;
            }
            continue;
        }
        if (nbd_client_reserve(client, request_buf_size(&req)) < 0) {
            if (has_payload || nbd_send_error(client, req.cookie, ENOMEM,
                                              "Cannot allocate the request buffer") < 0) {
                error_setg(errp, INTERMEDIATE_STATE);
                return -ENOMEM;
            }
            continue;
        }
        if (has_payload) {
            ret = nbd_conn_read(&client->conn, client->buf, req.length, NULL);
            if (ret < 0) {
                if (ret == -ECONNRESET) {
                    error_setg(errp, "Failed to read CMD_WRITE data: Unexpected end-of-file "
                               "before all data were read");
                } else {
                    error_setg_errno(errp, -ret, "Failed to read CMD_WRITE data");
                }
                return ret;
            }
        }
        int err = check_request(client, &req, msg, sizeof(msg));
        ret = err ? nbd_send_error(client, req.cookie, err, msg)
                  : handle_request(client, &req);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Failed to send reply");
            return ret;
        }
    }
}

int nbd_server_serve_client(NbdServer *srv, int fd, Error **errp)
{
    NbdClient *client = calloc(1, sizeof(*client));
    int one = 1;
    int ret;

    if (!client) {
        abort();
    }
    client->srv = srv;
    client->conn.fd = fd;
    /* Replies go out as soon as they are written (fails harmlessly on unix sockets). */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    ret = nbd_negotiate(client, errp);
    if (ret < 0) {
        error_prepend(errp, "option negotiation failed: ");
    } else if (ret == 1 && nbd_transmission(client, errp) < 0) {
        error_prepend(errp, "Disconnect client, due to: ");
    }
    nbd_conn_close(&client->conn);
    free(client->buf);
    free(client);
    return ret;
}
