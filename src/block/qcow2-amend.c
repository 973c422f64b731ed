/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2 amend: change options of an existing image in place.
 *
 * Order (as QEMU): validate every option first; upgrade the version (features may
 * need v3); change the refcount width; rewrite the header; lazy refcounts; resize;
 * downgrade last (zero clusters are expanded before the version drops to 2).
 *
 * Changing the refcount width builds the new refcount structure beside the old one:
 * walking the old table repeatedly allocates new blocks and a new table (allocations
 * change the counts being walked, so the walk repeats until nothing new is needed),
 * then the new blocks are written, the header is switched, and the old blocks are
 * freed through the new structure.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2.h"
#include "qkit/cutils.h"

#define REFTABLE_ENTRY_SIZE 8
#define L1E_SIZE 8
#define SECTOR_SIZE 512
#define MAX_REFCOUNT_BITS 64

/* What amend accepts (and `amend -o help` lists), as QEMU's qcow2 amend options. */
const QOptDesc qcow2_amend_opts[] = {
    { "encrypt.state", QOPT_STRING,
      "Select new state of affected keyslots (active/inactive)", NULL },
    { "encrypt.keyslot", QOPT_NUMBER, "Select a single keyslot to modify explicitly", NULL },
    { "encrypt.old-secret", QOPT_STRING, "Select all keyslots that match this password",
      NULL },
    { "encrypt.new-secret", QOPT_STRING,
      "New secret to set in the matching keyslots. Empty string to erase", NULL },
    { "encrypt.iter-time", QOPT_NUMBER, "Time to spend in PBKDF in milliseconds", NULL },
    { "size", QOPT_SIZE, "Virtual disk size", NULL },
    { "compat", QOPT_STRING, "Compatibility level (v2 [0.10] or v3 [1.1])", NULL },
    { "backing_file", QOPT_STRING, "File name of a base image", NULL },
    { "backing_fmt", QOPT_STRING, "Image format of the base image", NULL },
    { "data_file", QOPT_STRING, "File name of an external data file", NULL },
    { "data_file_raw", QOPT_BOOL, "The external data file must stay valid as a raw image",
      NULL },
    { "lazy_refcounts", QOPT_BOOL, "Postpone refcount updates", NULL },
    { "refcount_bits", QOPT_NUMBER, "Width of a reference count entry in bits", NULL },
    { NULL, QOPT_STRING, NULL, NULL },
};

/* True if name is in the NULL-name terminated table. */
static bool desc_has(const QOptDesc *desc, const char *name)
{
    for (; desc && desc->name; desc++) {
        if (strcmp(desc->name, name) == 0) {
            return true;
        }
    }
    return false;
}

/*
 * Reject keys amend does not take, like qemu-img: the first unknown key is named, with
 * a hint when every key given would be valid for image creation.
 */
static int check_amend_keys(BlockDriverState *bs, QOpts *opts, Error **errp)
{
    const char *bad = NULL;
    bool all_create = true;
    for (int i = 0; i < qopts_count(opts); i++) {
        const char *name = qopts_name_at(opts, i);
        bool amendable = desc_has(qcow2_amend_opts, name);
        if (!amendable && !bad) {
            bad = name;
        }
        if (!amendable && !desc_has(bs->drv->create_opts, name)) {
            all_create = false;
        }
    }
    if (!bad) {
        return 0;
    }
    error_setg(errp, "Invalid parameter '%s'", bad);
    if (all_create) {
        error_append_hint(errp, "This option is only supported for image creation\n");
    }
    return -EINVAL;
}

/* Store value in entry idx of a refcount block with 2^order-bit entries (big endian). */
static void refblock_set_order(void *block, uint64_t idx, uint64_t value, int order)
{
    uint8_t *p = block;
    int bits = 1 << order;
    if (bits < 8) {
        int per_byte = 8 / bits;
        int shift = (int)(idx % (uint64_t)per_byte) * bits;
        uint8_t mask = (uint8_t)(((1U << bits) - 1) << shift);
        uint8_t *b = &p[idx / (uint64_t)per_byte];
        *b = (uint8_t)((*b & ~mask) | ((value << shift) & mask));
        return;
    }
    int bytes = bits / 8;
    for (int i = 0; i < bytes; i++) {
        p[idx * (uint64_t)bytes + (uint64_t)i] = (uint8_t)(value >> (8 * (bytes - 1 - i)));
    }
}

/* The new refcount structure being built by a refcount width change. */
typedef struct NewRefs {
    int order;
    uint64_t block_entries;   /* entries per new refcount block */
    uint64_t *table;          /* new reftable, host order */
    uint64_t table_size;      /* entries */
    uint64_t index;           /* reftable index of the block being filled */
    uint8_t *block;           /* contents of that block (write pass only) */
    bool allocated;           /* the allocation pass took a new cluster */
} NewRefs;

/* Allocation pass: give a place to each new block that will hold a nonzero entry. */
static int new_block_alloc(BlockDriverState *bs, NewRefs *n, bool empty, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    if (empty) {
        return 0;
    }
    if (n->index >= n->table_size) {
        uint64_t size = ROUND_UP(n->index + 1, s->cluster_size / REFTABLE_ENTRY_SIZE);
        if (size > QCOW2_MAX_REFTABLE_BYTES / REFTABLE_ENTRY_SIZE) {
            error_setg(errp, "This operation would make the refcount table grow beyond the "
                       "maximum size supported by QEMU, aborting");
            return -ENOTSUP;
        }
        uint64_t *t = realloc(n->table, size * REFTABLE_ENTRY_SIZE);
        if (!t) {
            error_setg(errp, "Failed to increase reftable buffer size");
            return -ENOMEM;
        }
        memset(t + n->table_size, 0, (size - n->table_size) * REFTABLE_ENTRY_SIZE);
        n->table = t;
        n->table_size = size;
    }
    if (!n->table[n->index]) {
        int64_t off = qcow2_alloc_clusters(bs, s->cluster_size);
        if (off < 0) {
            error_setg_errno(errp, (int)-off, "Failed to allocate refblock");
            return (int)off;
        }
        n->table[n->index] = (uint64_t)off;
        n->allocated = true;
    }
    return 0;
}

/* Write pass: write a completed new block to its place (empty ones have none). */
static int new_block_write(BlockDriverState *bs, NewRefs *n, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    if (n->index < n->table_size && n->table[n->index]) {
        int ret = bdrv_pwrite(bs->file, (int64_t)n->table[n->index], (int64_t)s->cluster_size,
                              n->block, 0);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Failed to write refblock");
            return ret;
        }
    }
    return 0;
}

/* A new block is complete: allocate (no block buffer) or write it, move to the next. */
static int new_block_done(BlockDriverState *bs, NewRefs *n, bool empty, Error **errp)
{
    int ret = n->block ? new_block_write(bs, n, errp) : new_block_alloc(bs, n, empty, errp);
    if (ret < 0) {
        return ret;
    }
    n->index++;
    return 0;
}

/*
 * One walk over every refcount of the old structure, regrouped into blocks of the new
 * width; each completed new block goes to new_block_done.
 */
static int walk_refcounts(BlockDriverState *bs, NewRefs *n, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t new_idx = 0;
    bool new_empty = true;
    int new_bits = 1 << n->order;
    int ret;

    n->index = 0;
    for (uint64_t rt = 0; rt < s->refcount_table_size; rt++) {
        uint64_t rb_offset = s->refcount_table[rt] & REFT_OFFSET_MASK;
        void *rb = NULL;
        if (rb_offset) {
            if (qcow2_offset_into_cluster(s, rb_offset)) {
                qcow2_signal_corruption(bs, true, -1, -1, "Refblock offset %#" PRIx64
                                        " unaligned (reftable index: %#" PRIx64 ")",
                                        rb_offset, rt);
                error_setg(errp, "Image is corrupt (unaligned refblock offset)");
                return -EIO;
            }
            ret = qcow2_cache_get(bs, s->refcount_block_cache, rb_offset, &rb);
            if (ret < 0) {
                error_setg_errno(errp, -ret, "Failed to retrieve refblock");
                return ret;
            }
        }
        if (!rb) {
            /*
             * No block: all refcounts 0. Block sizes are powers of two of at least 64
             * entries, so the runs below start and end on byte boundaries.
             */
            uint64_t left = s->refcount_block_size;
            while (left) {
                if (new_idx >= n->block_entries) {
                    ret = new_block_done(bs, n, new_empty, errp);
                    if (ret < 0) {
                        return ret;
                    }
                    new_idx = 0;
                    new_empty = true;
                }
                uint64_t run = QKIT_MIN(left, n->block_entries - new_idx);
                if (n->block) {
                    memset(n->block + new_idx * (uint64_t)new_bits / 8, 0,
                           run * (uint64_t)new_bits / 8);
                }
                new_idx += run;
                left -= run;
            }
            continue;
        }
        for (uint64_t i = 0; i < s->refcount_block_size; i++) {
            if (new_idx >= n->block_entries) {
                ret = new_block_done(bs, n, new_empty, errp);
                if (ret < 0) {
                    goto put_fail;
                }
                new_idx = 0;
                new_empty = true;
            }
            uint64_t refcount = qcow2_refblock_get(s, rb, i);
            if (new_bits < MAX_REFCOUNT_BITS && (refcount >> new_bits)) {
                uint64_t offset = ((rt << s->refcount_block_bits) + i) << s->cluster_bits;
                error_setg(errp, "Cannot decrease refcount entry width to %i bits: Cluster "
                           "at offset %#" PRIx64 " has a refcount of %" PRIu64, new_bits,
                           offset, refcount);
                ret = -EINVAL;
                goto put_fail;
            }
            if (n->block) {
                refblock_set_order(n->block, new_idx, refcount, n->order);
            }
            new_idx++;
            new_empty = new_empty && refcount == 0;
        }
        qcow2_cache_put(s->refcount_block_cache, &rb);
        continue;
put_fail:
        qcow2_cache_put(s->refcount_block_cache, &rb);
        return ret;
    }
    if (new_idx > 0) {
        /* The last new block is partly filled: the rest counts nothing. */
        if (n->block) {
            for (; new_idx < n->block_entries; new_idx++) {
                refblock_set_order(n->block, new_idx, 0, n->order);
            }
        }
        ret = new_block_done(bs, n, new_empty, errp);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* Rebuild the refcount structure with 2^order-bit entries (amend refcount_bits=). */
static int change_refcount_order(BlockDriverState *bs, int order, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    NewRefs n = { .order = order };
    int64_t new_table_offset = 0;
    uint64_t allocated_table_size = 0;
    int ret;

    /* New refcount structures go to free clusters: discard the freed ones first. */
    qcow2_process_discards(bs);
    n.block_entries = 1ULL << (s->cluster_bits - (order - 3));
    do {
        n.allocated = false;
        ret = walk_refcounts(bs, &n, errp);
        if (ret < 0) {
            goto out;
        }
        if (n.allocated) {
            /* The table needs a new place: its size or the counts may have changed. */
            if (new_table_offset) {
                qcow2_free_clusters(bs, new_table_offset,
                                    (int64_t)(allocated_table_size * REFTABLE_ENTRY_SIZE),
                                    QCOW2_DISCARD_NEVER);
            }
            new_table_offset = qcow2_alloc_clusters(bs, n.table_size * REFTABLE_ENTRY_SIZE);
            if (new_table_offset < 0) {
                error_setg_errno(errp, (int)-new_table_offset,
                                 "Failed to allocate the new reftable");
                ret = (int)new_table_offset;
                new_table_offset = 0;
                goto out;
            }
            allocated_table_size = n.table_size;
        }
    } while (n.allocated);

    n.block = malloc(s->cluster_size);
    if (!n.block) {
        ret = -ENOMEM;
        error_setg(errp, "Failed to allocate refblock buffer");
        goto out;
    }
    ret = walk_refcounts(bs, &n, errp);
    if (ret < 0) {
        goto out;
    }

    uint64_t *be = malloc(n.table_size * REFTABLE_ENTRY_SIZE);
    if (!be) {
        ret = -ENOMEM;
        error_setg(errp, "Failed to write the new reftable");
        goto out;
    }
    for (uint64_t i = 0; i < n.table_size; i++) {
        be[i] = htobe64(n.table[i]);
    }
    ret = bdrv_pwrite(bs->file, new_table_offset,
                      (int64_t)(n.table_size * REFTABLE_ENTRY_SIZE), be, 0);
    free(be);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to write the new reftable");
        goto out;
    }
    ret = qcow2_cache_flush(bs, s->refcount_block_cache);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to flush the refblock cache");
        goto out;
    }

    /* Switch the header; the in-memory state follows only once it is on disk. */
    int old_order = s->refcount_order;
    uint32_t old_size = s->refcount_table_size;
    uint64_t old_offset = s->refcount_table_offset;
    s->refcount_order = order;
    s->refcount_table_size = (uint32_t)n.table_size;
    s->refcount_table_offset = (uint64_t)new_table_offset;
    ret = qcow2_update_header(bs);
    if (ret < 0) {
        s->refcount_order = old_order;
        s->refcount_table_size = old_size;
        s->refcount_table_offset = old_offset;
        error_setg_errno(errp, -ret, "Failed to update the qcow2 header");
        goto out;
    }
    uint64_t *old_table = s->refcount_table;
    s->refcount_table = n.table;
    s->max_refcount_table_index = 0;
    for (uint64_t i = 0; i < n.table_size; i++) {
        if (n.table[i]) {
            s->max_refcount_table_index = i;
        }
    }
    qcow2_set_refcount_order(s, order);
    /* Cached blocks have the old width: drop them (they are clean after the flush). */
    qcow2_cache_empty(bs, s->refcount_block_cache);
    s->free_cluster_index = 0;

    /* Below, the old structure is freed through the new one. */
    n.table = old_table;
    n.table_size = old_size;
    new_table_offset = (int64_t)old_offset;
    ret = 0;

out:
    if (n.table) {
        /* Failure: the new blocks and table; success: the old ones. */
        for (uint64_t i = 0; i < n.table_size; i++) {
            uint64_t off = n.table[i] & REFT_OFFSET_MASK;
            if (off) {
                qcow2_free_clusters(bs, (int64_t)off, (int64_t)s->cluster_size,
                                    QCOW2_DISCARD_OTHER);
            }
        }
        if (new_table_offset > 0) {
            qcow2_free_clusters(bs, new_table_offset,
                                (int64_t)(n.table_size * REFTABLE_ENTRY_SIZE),
                                QCOW2_DISCARD_OTHER);
        }
        free(n.table);
    }
    free(n.block);
    return ret;
}

/*
 * Downgrade helper: turn the zero clusters reachable from one L1 table into data
 * clusters (v2 has no zero flag). The active table goes through the L2 cache, the
 * others are read and written directly.
 */
static int expand_zero_clusters_in_l1(BlockDriverState *bs, uint64_t *l1, uint32_t l1_size)
{
    BDRVQcow2State *s = bs->opaque;
    bool active = l1 == s->l1_table;
    uint64_t *l2 = NULL;
    uint64_t *own = NULL;
    int ret = 0;

    if (!active) {
        own = malloc(s->cluster_size);
        if (!own) {
            return -ENOMEM;
        }
    }
    for (uint32_t i = 0; i < l1_size; i++) {
        uint64_t l2_offset = l1[i] & L1E_OFFSET_MASK;
        uint64_t l2_refcount;
        bool dirty = false;

        if (!l2_offset) {
            continue;
        }
        if (qcow2_offset_into_cluster(s, l2_offset)) {
            qcow2_signal_corruption(bs, true, -1, -1, "L2 table offset %#" PRIx64
                                    " unaligned (L1 index: %#x)", l2_offset, i);
            ret = -EIO;
            goto out;
        }
        ret = qcow2_get_refcount(bs, l2_offset >> s->cluster_bits, &l2_refcount);
        if (ret < 0) {
            goto out;
        }
        if (active) {
            ret = qcow2_cache_get(bs, s->l2_table_cache, l2_offset, (void **)&l2);
        } else {
            l2 = own;
            ret = bdrv_pread(bs->file, (int64_t)l2_offset, (int64_t)s->cluster_size, l2, 0);
        }
        if (ret < 0) {
            l2 = NULL;
            goto out;
        }
        for (int j = 0; j < s->l2_size; j++) {
            uint64_t entry = qcow2_get_l2_entry(s, l2, j);
            Qcow2ClusterType type = qcow2_get_cluster_type(bs, entry);
            int64_t offset = (int64_t)(entry & L2E_OFFSET_MASK);

            if (type != QCOW2_CLUSTER_ZERO_PLAIN && type != QCOW2_CLUSTER_ZERO_ALLOC) {
                continue;
            }
            if (type == QCOW2_CLUSTER_ZERO_PLAIN) {
                if (!bs->backing) {
                    /* Nothing below: unallocated reads as zeroes too. */
                    qcow2_set_l2_entry(s, l2, j, 0);
                    dirty = true;
                    continue;
                }
                offset = qcow2_alloc_clusters(bs, s->cluster_size);
                if (offset < 0) {
                    ret = (int)offset;
                    goto out;
                }
                if (l2_refcount > 1) {
                    /* A shared L2 table: the new cluster is shared as widely. */
                    int64_t r = qcow2_update_cluster_refcount(bs, (uint64_t)offset >>
                                                              s->cluster_bits,
                                                              l2_refcount - 1, false,
                                                              QCOW2_DISCARD_OTHER);
                    if (r < 0) {
                        qcow2_free_clusters(bs, offset, (int64_t)s->cluster_size,
                                            QCOW2_DISCARD_OTHER);
                        ret = (int)r;
                        goto out;
                    }
                }
            }
            if (qcow2_offset_into_cluster(s, (uint64_t)offset)) {
                qcow2_signal_corruption(bs, true, -1, -1, "Cluster allocation offset %#"
                                        PRIx64 " unaligned (L2 offset: %#" PRIx64
                                        ", L2 index: %#x)", (uint64_t)offset, l2_offset, j);
                if (type == QCOW2_CLUSTER_ZERO_PLAIN) {
                    qcow2_free_clusters(bs, offset, (int64_t)s->cluster_size,
                                        QCOW2_DISCARD_ALWAYS);
                }
                ret = -EIO;
                goto out;
            }
            ret = bdrv_pwrite_zeroes(bs->file, offset, (int64_t)s->cluster_size, 0);
            if (ret < 0) {
                if (type == QCOW2_CLUSTER_ZERO_PLAIN) {
                    qcow2_free_clusters(bs, offset, (int64_t)s->cluster_size,
                                        QCOW2_DISCARD_ALWAYS);
                }
                goto out;
            }
            qcow2_set_l2_entry(s, l2, j, (uint64_t)offset |
                               (l2_refcount == 1 ? QCOW_OFLAG_COPIED : 0));
            dirty = true;
        }
        if (dirty) {
            /* The zeroes must be on disk before an L2 entry points at them. */
            ret = bdrv_flush(bs->file);
            if (ret < 0) {
                goto out;
            }
        }
        if (active) {
            if (dirty) {
                qcow2_cache_entry_mark_dirty(s->l2_table_cache, l2);
            }
            qcow2_cache_put(s->l2_table_cache, (void **)&l2);
        } else if (dirty) {
            ret = bdrv_pwrite(bs->file, (int64_t)l2_offset, (int64_t)s->cluster_size, l2, 0);
            if (ret < 0) {
                l2 = NULL;
                goto out;
            }
        }
        l2 = NULL;
    }
    ret = 0;
out:
    if (active && l2) {
        qcow2_cache_put(s->l2_table_cache, (void **)&l2);
    }
    free(own);
    return ret;
}

/* Expand the zero clusters of the active image and of every snapshot. */
static int expand_zero_clusters(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t *l1 = NULL;
    int ret = expand_zero_clusters_in_l1(bs, s->l1_table, s->l1_size);
    if (ret < 0) {
        return ret;
    }
    /* Snapshot L1 tables may share L2 tables with the active one, written directly. */
    ret = qcow2_cache_empty(bs, s->l2_table_cache);
    if (ret < 0) {
        return ret;
    }
    for (int i = 0; i < s->nb_snapshots; i++) {
        const Qcow2Snapshot *sn = &s->snapshots[i];
        ret = qcow2_validate_table(bs, sn->l1_table_offset, sn->l1_size, L1E_SIZE,
                                   QCOW2_MAX_L1_BYTES, "Snapshot L1 table", NULL);
        if (ret < 0) {
            goto out;
        }
        free(l1);
        l1 = calloc(sn->l1_size ? sn->l1_size : 1, L1E_SIZE);
        if (!l1) {
            ret = -ENOMEM;
            goto out;
        }
        ret = qcow2_read_l1_table(bs, sn->l1_table_offset, sn->l1_size, l1);
        if (ret < 0) {
            goto out;
        }
        ret = expand_zero_clusters_in_l1(bs, l1, sn->l1_size);
        if (ret < 0) {
            goto out;
        }
    }
    ret = 0;
out:
    free(l1);
    return ret;
}

/* 1 if the active image has a compressed cluster, 0 if not, -errno. */
static int has_compressed_clusters(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t offset = 0;
    while (offset < s->size) {
        uint64_t bytes = QKIT_MIN(s->size - offset, (uint64_t)INT32_MAX);
        uint64_t host;
        Qcow2SubclusterType type;
        int ret = qcow2_get_host_offset(bs, offset, &bytes, &host, &type);
        if (ret < 0) {
            return ret;
        }
        if (type == QCOW2_SUBCLUSTER_COMPRESSED) {
            return 1;
        }
        if (bytes == 0) {
            return -EIO;
        }
        offset += bytes;
    }
    return 0;
}

/* compat=1.1 on a v2 image: complete old snapshot entries, then bump the version. */
static int qcow2_upgrade(BlockDriverState *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint32_t old_version = s->qcow_version;
    bool update_snapshots = false;
    int ret;

    for (int i = 0; i < s->nb_snapshots; i++) {
        if (s->snapshots[i].extra_data_size < sizeof(uint64_t) * 2) {
            update_snapshots = true;
            break;
        }
    }
    if (update_snapshots) {
        ret = qcow2_write_snapshots(bs);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Failed to update the snapshot table");
            return ret;
        }
    }
    s->qcow_version = 3;
    ret = qcow2_update_header(bs);
    if (ret < 0) {
        s->qcow_version = old_version;
        error_setg_errno(errp, -ret, "Failed to update the image header");
        return ret;
    }
    return 0;
}

/* compat=0.10 on a v3 image, refused when a v3-only feature is in use. */
static int qcow2_downgrade(BlockDriverState *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint32_t old_version = s->qcow_version;
    int ret;

    if (s->refcount_order != QCOW2_DEFAULT_REFCOUNT_ORDER) {
        error_setg(errp, "compat=0.10 requires refcount_bits=16");
        return -ENOTSUP;
    }
    if (qcow2_has_data_file(s)) {
        error_setg(errp, "Cannot downgrade an image with a data file");
        return -ENOTSUP;
    }
    /* v2 readers would not know the extra fields matter. */
    for (int i = 0; i < s->nb_snapshots; i++) {
        if (s->snapshots[i].vm_state_size > UINT32_MAX ||
            s->snapshots[i].disk_size != ROUND_UP(s->size, SECTOR_SIZE)) {
            error_setg(errp, "Internal snapshots prevent downgrade of image");
            return -ENOTSUP;
        }
    }
    if (s->incompatible_features & QCOW2_INCOMPAT_DIRTY) {
        ret = qcow2_mark_clean(bs);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Failed to make the image clean");
            return ret;
        }
    }
    if (s->incompatible_features & ~QCOW2_INCOMPAT_COMPRESSION) {
        error_setg(errp, "Cannot downgrade an image with incompatible features 0x%" PRIx64
                   " set", (uint64_t)(s->incompatible_features & ~QCOW2_INCOMPAT_COMPRESSION));
        return -ENOTSUP;
    }
    /* Compatible and autoclear features may simply be dropped. */
    s->compatible_features = 0;
    s->autoclear_features = 0;

    ret = expand_zero_clusters(bs);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to turn zero into data clusters");
        return ret;
    }
    if (s->incompatible_features & QCOW2_INCOMPAT_COMPRESSION) {
        ret = has_compressed_clusters(bs);
        if (ret < 0) {
            error_setg(errp, "Failed to check block status");
            return -EINVAL;
        }
        if (ret) {
            error_setg(errp, "Cannot downgrade an image with zstd compression type and "
                       "existing compressed clusters");
            return -ENOTSUP;
        }
        /* No compressed cluster yet: fall back to zlib, which v2 implies. */
        s->incompatible_features &= ~QCOW2_INCOMPAT_COMPRESSION;
        s->compression_type = QCOW2_COMPRESSION_ZLIB;
    }
    s->qcow_version = 2;
    ret = qcow2_update_header(bs);
    if (ret < 0) {
        s->qcow_version = old_version;
        error_setg_errno(errp, -ret, "Failed to update the image header");
        return ret;
    }
    return 0;
}

/* Compare two optional strings, NULL sorting first. */
static int strcmp0(const char *a, const char *b)
{
    if (!a || !b) {
        return !a && !b ? 0 : (!a ? -1 : 1);
    }
    return strcmp(a, b);
}

/* The amend driver callback (`qemu-img amend -o ...`). */
int qcow2_amend(BlockDriverState *bs, QOpts *opts, bool force, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint32_t old_version = s->qcow_version;
    uint32_t new_version = old_version;
    uint64_t new_size = 0;
    const char *backing_file = NULL, *backing_fmt = NULL, *data_file = NULL;
    bool lazy_refcounts = s->use_lazy_refcounts;
    bool data_file_raw = (s->autoclear_features & QCOW2_AUTOCLEAR_DATA_FILE_RAW) != 0;
    uint64_t refcount_bits = (uint64_t)s->refcount_bits;
    int ret;
    (void)force;

    ret = check_amend_keys(bs, opts, errp);
    if (ret < 0) {
        return ret;
    }
    /* Only what was given changes; options are looked at in the table's order. */
    for (const QOptDesc *d = qcow2_amend_opts; d->name; d++) {
        const char *v = qopts_get(opts, d->name);
        if (!v) {
            continue;
        }
        if (strncmp(d->name, "encrypt.", strlen("encrypt.")) == 0) {
            if (s->crypt_method == QCOW2_CRYPT_NONE) {
                error_setg(errp, "Can't amend encryption options - encryption not present");
                return -EINVAL;
            }
            if (s->crypt_method != QCOW2_CRYPT_LUKS) {
                error_setg(errp, "Only LUKS encryption options can be amended");
                return -ENOTSUP;
            }
            error_setg(errp, "Amending LUKS encryption options is not supported");
            return -ENOTSUP;
        } else if (strcmp(d->name, "compat") == 0) {
            if (!strcmp(v, "0.10") || !strcmp(v, "v2")) {
                new_version = 2;
            } else if (!strcmp(v, "1.1") || !strcmp(v, "v3")) {
                new_version = 3;
            } else {
                error_setg(errp, "Unknown compatibility level %s", v);
                return -EINVAL;
            }
        } else if (strcmp(d->name, "size") == 0) {
            ret = qopts_get_size(opts, "size", 0, &new_size, errp);
            if (ret < 0) {
                return ret;
            }
        } else if (strcmp(d->name, "backing_file") == 0) {
            backing_file = v;
        } else if (strcmp(d->name, "backing_fmt") == 0) {
            backing_fmt = v;
        } else if (strcmp(d->name, "lazy_refcounts") == 0) {
            ret = qopts_get_bool(opts, "lazy_refcounts", lazy_refcounts, &lazy_refcounts,
                                 errp);
            if (ret < 0) {
                return ret;
            }
        } else if (strcmp(d->name, "refcount_bits") == 0) {
            ret = qopts_get_number(opts, "refcount_bits", refcount_bits, &refcount_bits,
                                   errp);
            if (ret < 0) {
                return ret;
            }
            if (refcount_bits == 0 || refcount_bits > MAX_REFCOUNT_BITS ||
                !QKIT_IS_POW2(refcount_bits)) {
                error_setg(errp, "Refcount width must be a power of two and may not exceed "
                           "64 bits");
                return -EINVAL;
            }
        } else if (strcmp(d->name, "data_file") == 0) {
            data_file = v;
            if (!qcow2_has_data_file(s)) {
                error_setg(errp, "data-file can only be set for images that use an external "
                           "data file");
                return -EINVAL;
            }
        } else if (strcmp(d->name, "data_file_raw") == 0) {
            ret = qopts_get_bool(opts, "data_file_raw", data_file_raw, &data_file_raw, errp);
            if (ret < 0) {
                return ret;
            }
            if (data_file_raw &&
                !(s->autoclear_features & QCOW2_AUTOCLEAR_DATA_FILE_RAW)) {
                error_setg(errp, "data-file-raw cannot be set on existing images");
                return -EINVAL;
            }
        }
    }

    /* Upgrade first: what follows may need v3. */
    if (new_version > old_version) {
        ret = qcow2_upgrade(bs, errp);
        if (ret < 0) {
            return ret;
        }
    }
    if ((uint64_t)s->refcount_bits != refcount_bits) {
        if (new_version < 3 && refcount_bits != 16) {
            error_setg(errp, "Refcount widths other than 16 bits require compatibility level "
                       "1.1 or above (use compat=1.1 or greater)");
            return -EINVAL;
        }
        ret = change_refcount_order(bs, __builtin_ctzll(refcount_bits), errp);
        if (ret < 0) {
            return ret;
        }
    }

    if (data_file_raw) {
        s->autoclear_features |= QCOW2_AUTOCLEAR_DATA_FILE_RAW;
    } else {
        s->autoclear_features &= ~QCOW2_AUTOCLEAR_DATA_FILE_RAW;
    }
    if (data_file) {
        free(s->image_data_file);
        s->image_data_file = *data_file ? strdup(data_file) : NULL;
    }
    ret = qcow2_update_header(bs);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to update the image header");
        return ret;
    }

    if (backing_file || backing_fmt) {
        if (strcmp0(backing_file, s->image_backing_file) ||
            strcmp0(backing_fmt, s->image_backing_format)) {
            error_setg(errp, "Cannot amend the backing file");
            error_append_hint(errp, "You can use 'qemu-img rebase' instead.\n");
            return -EINVAL;
        }
    }

    if (s->use_lazy_refcounts != lazy_refcounts) {
        if (lazy_refcounts) {
            if (new_version < 3) {
                error_setg(errp, "Lazy refcounts only supported with compatibility level 1.1 "
                           "and above (use compat=1.1 or greater)");
                return -EINVAL;
            }
            s->compatible_features |= QCOW2_COMPAT_LAZY_REFCOUNTS;
            ret = qcow2_update_header(bs);
            if (ret < 0) {
                s->compatible_features &= ~QCOW2_COMPAT_LAZY_REFCOUNTS;
                error_setg_errno(errp, -ret, "Failed to update the image header");
                return ret;
            }
            s->use_lazy_refcounts = true;
        } else {
            /* The refcounts must be right before they stop being lazy. */
            ret = qcow2_mark_clean(bs);
            if (ret < 0) {
                error_setg_errno(errp, -ret, "Failed to make the image clean");
                return ret;
            }
            s->compatible_features &= ~QCOW2_COMPAT_LAZY_REFCOUNTS;
            ret = qcow2_update_header(bs);
            if (ret < 0) {
                s->compatible_features |= QCOW2_COMPAT_LAZY_REFCOUNTS;
                error_setg_errno(errp, -ret, "Failed to update the image header");
                return ret;
            }
            s->use_lazy_refcounts = false;
        }
    }

    if (new_size) {
        /* Amend sets exactly the size asked for (no --shrink needed). */
        ret = bdrv_truncate(bs, (int64_t)new_size, true, PREALLOC_MODE_OFF, errp);
        if (ret < 0) {
            return ret;
        }
    }

    /* Downgrade last, once the features it cannot keep were removed. */
    if (new_version < old_version) {
        ret = qcow2_downgrade(bs, errp);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}
