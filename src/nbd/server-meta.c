/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Meta contexts: NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT during the
 * handshake, and the extents NBD_CMD_BLOCK_STATUS returns for each selected context
 * (base:allocation, qemu:allocation-depth, qemu:dirty-bitmap:NAME).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbd/server-int.h"

#define NS_BASE       "base:"
#define NS_QEMU       "qemu:"
#define CTX_ALLOC     "allocation"
#define CTX_DEPTH     "allocation-depth"
#define CTX_BITMAP    "dirty-bitmap:"
#define LEN_FIELD     4    /* be32 length before a name or a query */
#define COUNT_FIELD   4    /* be32 number of queries */

/* One NBD_REP_META_CONTEXT naming id (name is prefix + suffix). */
static int meta_send_context(NbdClient *client, uint32_t opt, uint32_t id,
                             const char *prefix, const char *suffix)
{
    char name[NBD_MAX_STRING_SIZE * 2];
    int n = snprintf(name, sizeof(name), "%s%s", prefix, suffix ? suffix : "");
    NbdMetaContextReply hdr = { .context_id = htobe32(id) };
    return nbd_opt_reply(client, opt, NBD_REP_META_CONTEXT, &hdr, sizeof(hdr), name, n);
}

/*
 * Match one query against what exp offers; LIST also takes bare namespaces
 * ("base:", "qemu:", "qemu:dirty-bitmap:") that select every context under them.
 */
static void meta_match(NbdExport *exp, bool list, const char *q, size_t qlen,
                       NbdMetaSelection *sel)
{
    size_t nb = strlen(NS_BASE), nq = strlen(NS_QEMU), nbm = strlen(CTX_BITMAP);

    if (qlen >= nb && !memcmp(q, NS_BASE, nb)) {
        q += nb;
        qlen -= nb;
        if ((list && qlen == 0) ||
            (qlen == strlen(CTX_ALLOC) && !memcmp(q, CTX_ALLOC, qlen))) {
            sel->base_allocation = true;
        }
        return;
    }
    if (qlen < nq || memcmp(q, NS_QEMU, nq)) {
        return;
    }
    q += nq;
    qlen -= nq;
    if (list && qlen == 0) {
        sel->allocation_depth |= exp->allocation_depth;
        sel->bitmap |= exp->bitmap != NULL;
        return;
    }
    if (qlen == strlen(CTX_DEPTH) && !memcmp(q, CTX_DEPTH, qlen)) {
        sel->allocation_depth |= exp->allocation_depth;
        return;
    }
    if (qlen >= nbm && !memcmp(q, CTX_BITMAP, nbm) && exp->bitmap) {
        q += nbm;
        qlen -= nbm;
        if ((list && qlen == 0) ||
            (qlen == strlen(exp->bitmap) && !memcmp(q, exp->bitmap, qlen))) {
            sel->bitmap = true;
        }
    }
}

int nbd_negotiate_meta_context(NbdClient *client, uint32_t opt, const uint8_t *data,
                               uint32_t len, Error **errp)
{
    bool list = opt == NBD_OPT_LIST_META_CONTEXT;
    char name[NBD_MAX_STRING_SIZE + 1];
    NbdMetaSelection sel = { 0 };
    uint32_t pos = 0;
    int ret;

    if (!list && !client->structured_reply) {
        ret = nbd_opt_reply_err(client, opt, NBD_REP_ERR_INVALID,
                                "request option '%s' when structured reply is not "
                                "negotiated", nbd_opt_name(opt));
        goto out;
    }
    if (len < LEN_FIELD) {
        ret = nbd_opt_reply_err(client, opt, NBD_REP_ERR_INVALID, "Invalid length for option");
        goto out;
    }
    uint32_t namelen = nbd_get_be32(data);
    pos = LEN_FIELD;
    if (namelen > NBD_MAX_STRING_SIZE || namelen > len - pos ||
        len - pos - namelen < COUNT_FIELD) {
        ret = nbd_opt_reply_err(client, opt, NBD_REP_ERR_INVALID, "Invalid length for option");
        goto out;
    }
    memcpy(name, data + pos, namelen);
    name[namelen] = '\0';
    pos += namelen;
    uint32_t nq = nbd_get_be32(data + pos);
    pos += COUNT_FIELD;

    NbdExport *exp = nbd_server_find_export(client->srv, name);
    if (!exp || strlen(name) != namelen) {
        ret = nbd_opt_reply_err(client, opt, NBD_REP_ERR_UNKNOWN, "export '%s' not present",
                                name);
        goto out;
    }
    for (uint32_t i = 0; i < nq; i++) {
        if (len - pos < LEN_FIELD) {
            ret = nbd_opt_reply_err(client, opt, NBD_REP_ERR_INVALID, "Invalid length for option");
            goto out;
        }
        uint32_t qlen = nbd_get_be32(data + pos);
        pos += LEN_FIELD;
        if (qlen > len - pos) {
            ret = nbd_opt_reply_err(client, opt, NBD_REP_ERR_INVALID, "Invalid length for option");
            goto out;
        }
        /* Queries longer than the spec's string limit are ignored, not errors. */
        if (qlen <= NBD_MAX_STRING_SIZE) {
            meta_match(exp, list, (const char *)data + pos, qlen, &sel);
        }
        pos += qlen;
    }
    if (pos != len) {
        ret = nbd_opt_reply_err(client, opt, NBD_REP_ERR_INVALID, "Invalid length for option");
        goto out;
    }
    if (list && nq == 0) {
        sel.base_allocation = true;
        sel.allocation_depth = exp->allocation_depth;
        sel.bitmap = exp->bitmap != NULL;
    }
    if (sel.base_allocation) {
        ret = meta_send_context(client, opt, NBD_META_ID_BASE_ALLOCATION,
                                NBD_META_BASE_ALLOCATION, NULL);
        if (ret < 0) {
            goto out;
        }
    }
    if (sel.allocation_depth) {
        ret = meta_send_context(client, opt, NBD_META_ID_ALLOC_DEPTH,
                                NBD_META_QEMU_ALLOC_DEPTH, NULL);
        if (ret < 0) {
            goto out;
        }
    }
    if (sel.bitmap) {
        ret = meta_send_context(client, opt, NBD_META_ID_DIRTY_BITMAP,
                                NBD_META_QEMU_DIRTY_BITMAP, exp->bitmap);
        if (ret < 0) {
            goto out;
        }
    }
    if (!list) {
        sel.exp = exp;
        sel.count = sel.base_allocation + sel.allocation_depth + sel.bitmap;
        client->meta = sel;
    }
    ret = nbd_opt_reply(client, opt, NBD_REP_ACK, NULL, 0, NULL, 0);
out:
    if (ret < 0) {
        error_setg_errno(errp, -ret, "write failed");
    }
    return ret;
}

/* The flags of one context for the status of a range (ret is BDRV_BLOCK_* bits). */
typedef uint32_t (*MetaFlagsFn)(int ret, int depth);

/* base:allocation: a hole is what has no data; zero is what reads as zeroes. */
static uint32_t meta_flags_alloc(int ret, int depth)
{
    return (ret & BDRV_BLOCK_DATA ? 0 : NBD_STATE_HOLE) |
           (ret & BDRV_BLOCK_ZERO ? NBD_STATE_ZERO : 0);
}

/* qemu:allocation-depth: 0 unallocated, 1 the top layer, 2 its backing, ... */
static uint32_t meta_flags_depth(int ret, int depth)
{
    return ret & BDRV_BLOCK_ALLOCATED ? (uint32_t)depth + 1 : 0;
}

/*
 * The flags of the piece of one context at offset (relative to the export, at most len
 * long) and its length in *pnum; fn NULL is the dirty bitmap. Returns flags or -errno.
 */
static int64_t meta_piece(NbdExport *exp, MetaFlagsFn fn, uint64_t offset, uint64_t len,
                          int64_t *pnum)
{
    int ret;

    if (!fn) {
        ret = bdrv_dirty_bitmap_status(exp->bitmap_bs, exp->bitmap, exp->offset + offset,
                                       len, pnum);
        if (ret < 0) {
            return ret;
        }
        if (*pnum > 0 && (uint64_t)*pnum > len) {
            *pnum = len;
        }
        return ret ? NBD_STATE_DIRTY : 0;
    }
    int depth = 0;
    ret = bdrv_block_status_above(exp->bs, NULL, exp->offset + offset, len, pnum,
                                  NULL, NULL, &depth);
    if (ret < 0) {
        return ret;
    }
    return fn(ret, depth);
}

/*
 * Fill descs with the extents of [offset, offset+len) (len < 2^32, so a merged
 * extent always fits its 32-bit length) for one context (fn NULL: the dirty bitmap),
 * merging neighbours with equal flags; at most max extents. Returns the count or -errno.
 */
static int meta_extents(NbdExport *exp, MetaFlagsFn fn, uint64_t offset, uint64_t len,
                        NbdBlockDescriptor *descs, size_t max)
{
    size_t n = 0;
    uint32_t cur_flags = 0;
    uint64_t cur_len = 0;

    while (len > 0) {
        int64_t pnum = 0;
        int64_t flags = meta_piece(exp, fn, offset, len, &pnum);
        if (flags < 0) {
            return flags;
        }
        if (pnum <= 0) {
            return -EIO;
        }
        if (cur_len && flags == cur_flags) {
            cur_len += pnum;
        } else {
            if (cur_len) {
                descs[n].length = htobe32(cur_len);
                descs[n].status_flags = htobe32(cur_flags);
                if (++n == max) {
                    return n;
                }
            }
            cur_flags = flags;
            cur_len = pnum;
        }
        offset += pnum;
        len -= pnum;
    }
    if (cur_len) {
        descs[n].length = htobe32(cur_len);
        descs[n].status_flags = htobe32(cur_flags);
        n++;
    }
    return n;
}

/* NBD_CMD_BLOCK_STATUS: one chunk per selected context, the last one flagged DONE. */
int nbd_send_block_status(NbdClient *client, const NbdRequest *req, Error **errp)
{
    NbdExport *exp = client->exp;
    NbdMetaSelection *m = &client->meta;
    struct {
        bool on;
        uint32_t id;
        MetaFlagsFn fn;
    } ctx[] = {
        { m->base_allocation, NBD_META_ID_BASE_ALLOCATION, meta_flags_alloc },
        { m->allocation_depth, NBD_META_ID_ALLOC_DEPTH, meta_flags_depth },
        { m->bitmap, NBD_META_ID_DIRTY_BITMAP, NULL },
    };
    size_t nctx = sizeof(ctx) / sizeof(ctx[0]);
    size_t max = req->flags & NBD_CMD_FLAG_REQ_ONE ? 1 : NBD_MAX_BLOCK_STATUS_EXTENTS;
    NbdBlockDescriptor *descs = (NbdBlockDescriptor *)client->buf;
    int remaining = m->count;

    for (size_t i = 0; i < nctx; i++) {
        if (!ctx[i].on) {
            continue;
        }
        int n = meta_extents(exp, ctx[i].fn, req->offset, req->length, descs, max);
        if (n < 0) {
            return nbd_send_error(client, req->cookie, -n, "can't get block status");
        }
        NbdChunkBlockStatus hdr = { .context_id = htobe32(ctx[i].id) };
        int ret = nbd_send_chunk(client, req->cookie, NBD_REPLY_TYPE_BLOCK_STATUS,
                                 --remaining == 0 ? NBD_REPLY_FLAG_DONE : 0,
                                 &hdr, sizeof(hdr), descs, n * sizeof(*descs));
        if (ret < 0) {
            error_setg_errno(errp, -ret, "write failed");
            return ret;
        }
    }
    return 0;
}
