/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2 refcounts: the two-level refcount structure (refcount table -> refcount blocks
 * of 1..64-bit entries) and host cluster allocation on top of it.
 *
 * Allocation is two-step: find free clusters (refcount 0, or no refcount block yet),
 * then raise their refcounts. Raising a refcount may need a new refcount block, which
 * itself needs a cluster; that changes what is free, so the step returns -EAGAIN and
 * the caller searches again. Placement follows qemu-img exactly so that images created
 * by both tools are byte-identical.
 */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2.h"
#include "qkit/cutils.h"

#define REFTABLE_ENTRY_SIZE 8
/* Largest host offset a cluster may have (L2 entries hold 56 bits). */
#define QCOW2_MAX_CLUSTER_OFFSET ((1ULL << 56) - 1)

/* Called at open: read the refcount table into memory. */
int qcow2_refcount_init(BlockDriverState *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    size_t n = s->refcount_table_size;
    s->refcount_table = calloc(n ? n : 1, REFTABLE_ENTRY_SIZE);
    if (!s->refcount_table) {
        error_setg(errp, "Could not allocate refcount table");
        return -ENOMEM;
    }
    if (n) {
        int ret = bdrv_pread(bs->file, (int64_t)s->refcount_table_offset,
                             (int64_t)(n * REFTABLE_ENTRY_SIZE), s->refcount_table, 0);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not read refcount table");
            return ret;
        }
    }
    s->max_refcount_table_index = 0;
    for (size_t i = 0; i < n; i++) {
        s->refcount_table[i] = be64toh(s->refcount_table[i]);
        if (s->refcount_table[i]) {
            s->max_refcount_table_index = i;
        }
    }
    return 0;
}

/* Called at close. */
void qcow2_refcount_close(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    free(s->refcount_table);
    s->refcount_table = NULL;
}

/* First queue size, in regions; it doubles as needed. */
#define QCOW2_DISCARDS_INITIAL 16

/* Called when a cluster's refcount drops to 0: queue it for discarding in bs->file. */
static int queue_discard(BDRVQcow2State *s, uint64_t offset, uint64_t bytes)
{
    if (s->nb_discards) {
        Qcow2DiscardRegion *last = &s->discards[s->nb_discards - 1];
        if (last->offset + last->bytes == offset) {
            last->bytes += bytes;
            return 0;
        }
        if (offset + bytes == last->offset) {
            last->offset = offset;
            last->bytes += bytes;
            return 0;
        }
    }
    if (s->nb_discards == s->discards_alloc) {
        size_t n = s->discards_alloc ? s->discards_alloc * 2 : QCOW2_DISCARDS_INITIAL;
        Qcow2DiscardRegion *p = realloc(s->discards, n * sizeof(*p));
        if (!p) {
            return -ENOMEM;
        }
        s->discards = p;
        s->discards_alloc = n;
    }
    s->discards[s->nb_discards++] = (Qcow2DiscardRegion){ offset, bytes };
    return 0;
}

/*
 * Called when a cluster is allocated again (refcount 0 -> n): it must leave the queue,
 * or the discard would wipe its new contents.
 */
static void unqueue_discard(BDRVQcow2State *s, uint64_t offset, uint64_t bytes)
{
    for (size_t i = 0; i < s->nb_discards; i++) {
        Qcow2DiscardRegion *d = &s->discards[i];
        uint64_t end = d->offset + d->bytes;
        if (offset >= end || offset + bytes <= d->offset) {
            continue;
        }
        if (offset <= d->offset && offset + bytes >= end) {
            /* Covered: drop it (order does not matter). */
            *d = s->discards[--s->nb_discards];
            i--;
        } else if (offset <= d->offset) {
            d->bytes = end - (offset + bytes);
            d->offset = offset + bytes;
        } else if (offset + bytes >= end) {
            d->bytes = offset - d->offset;
        } else {
            /* The middle goes: keep the head here, queue the tail (or lose it). */
            d->bytes = offset - d->offset;
            if (queue_discard(s, offset + bytes, end - (offset + bytes)) < 0) {
                /* Not discarding is always safe. */
            }
        }
    }
}

void qcow2_drop_discards(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    free(s->discards);
    s->discards = NULL;
    s->nb_discards = 0;
    s->discards_alloc = 0;
}

void qcow2_process_discards(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    if (!s->nb_discards) {
        return;
    }
    /* The L2 tables (and refcount blocks) that dropped the clusters go to disk first. */
    if (qcow2_flush_caches(bs) == 0) {
        for (size_t i = 0; i < s->nb_discards; i++) {
            /* Best effort: a failed discard leaves the space allocated, nothing worse. */
            bdrv_pdiscard(bs->file, (int64_t)s->discards[i].offset,
                          (int64_t)s->discards[i].bytes);
        }
    }
    qcow2_drop_discards(bs);
}

/* Remember the highest refcount table entry in use. */
static void update_max_refcount_table_index(BDRVQcow2State *s)
{
    uint64_t i = s->refcount_table_size ? s->refcount_table_size - 1 : 0;
    while (i > 0 && (s->refcount_table[i] & REFT_OFFSET_MASK) == 0) {
        i--;
    }
    s->max_refcount_table_index = i;
}

/* Entry idx of a cached refcount block, whatever the entry width. */
uint64_t qcow2_refblock_get(const BDRVQcow2State *s, const void *refblock, uint64_t idx)
{
    const uint8_t *p = refblock;
    switch (s->refcount_order) {
    case 0:
        return (p[idx / 8] >> (idx % 8)) & 0x1;
    case 1:
        return (p[idx / 4] >> (2 * (idx % 4))) & 0x3;
    case 2:
        return (p[idx / 2] >> (4 * (idx % 2))) & 0xf;
    case 3:
        return p[idx];
    case 4: {
        uint16_t v;
        memcpy(&v, p + idx * 2, 2);
        return be16toh(v);
    }
    case 5: {
        uint32_t v;
        memcpy(&v, p + idx * 4, 4);
        return be32toh(v);
    }
    default: {
        uint64_t v;
        memcpy(&v, p + idx * 8, 8);
        return be64toh(v);
    }
    }
}

/* Store value (already checked against refcount_max) in entry idx. */
void qcow2_refblock_set(BDRVQcow2State *s, void *refblock, uint64_t idx, uint64_t value)
{
    uint8_t *p = refblock;
    switch (s->refcount_order) {
    case 0:
    case 1:
    case 2: {
        int bits = 1 << s->refcount_order;
        int per_byte = 8 / bits;
        int shift = (int)(idx % (uint64_t)per_byte) * bits;
        uint8_t mask = (uint8_t)(((1U << bits) - 1) << shift);
        p[idx / per_byte] = (uint8_t)((p[idx / per_byte] & ~mask) | ((value << shift) & mask));
        break;
    }
    case 3:
        p[idx] = (uint8_t)value;
        break;
    case 4: {
        uint16_t v = htobe16((uint16_t)value);
        memcpy(p + idx * 2, &v, 2);
        break;
    }
    case 5: {
        uint32_t v = htobe32((uint32_t)value);
        memcpy(p + idx * 4, &v, 4);
        break;
    }
    default: {
        uint64_t v = htobe64(value);
        memcpy(p + idx * 8, &v, 8);
        break;
    }
    }
}

/* Look up a refcount; clusters past the refcount table or without a block count 0. */
int qcow2_get_refcount(BlockDriverState *bs, uint64_t cluster_index, uint64_t *refcount)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t rt_index = cluster_index >> s->refcount_block_bits;
    *refcount = 0;
    if (rt_index >= s->refcount_table_size) {
        return 0;
    }
    uint64_t rb_offset = s->refcount_table[rt_index] & REFT_OFFSET_MASK;
    if (!rb_offset) {
        return 0;
    }
    if (qcow2_offset_into_cluster(s, rb_offset)) {
        qcow2_signal_corruption(bs, true, -1, -1, "Refblock offset %#" PRIx64
                                " unaligned (reftable index: %#" PRIx64 ")",
                                rb_offset, rt_index);
        return -EIO;
    }
    void *rb;
    int ret = qcow2_cache_get(bs, s->refcount_block_cache, rb_offset, &rb);
    if (ret < 0) {
        return ret;
    }
    *refcount = qcow2_refblock_get(s, rb, cluster_index & (s->refcount_block_size - 1));
    qcow2_cache_put(s->refcount_block_cache, &rb);
    return 0;
}

/* True if both host offsets are described by the same refcount block. */
static bool in_same_refcount_block(const BDRVQcow2State *s, uint64_t a, uint64_t b)
{
    int shift = s->cluster_bits + s->refcount_block_bits;
    return (a >> shift) == (b >> shift);
}

/*
 * Find nb free clusters in a row from free_cluster_index on, without taking them.
 * Returns their host offset or -errno.
 */
static int64_t alloc_clusters_noref(BlockDriverState *bs, uint64_t size, uint64_t max)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t nb = qcow2_size_to_clusters(s, size);
    uint64_t found = 0;
    while (found < nb) {
        uint64_t refcount;
        int ret = qcow2_get_refcount(bs, s->free_cluster_index++, &refcount);
        if (ret < 0) {
            return ret;
        }
        found = refcount ? 0 : found + 1;
    }
    if (s->free_cluster_index > 0 && s->free_cluster_index - 1 > (max >> s->cluster_bits)) {
        return -EFBIG;
    }
    return (int64_t)((s->free_cluster_index - nb) << s->cluster_bits);
}

/*
 * Compute how much refcount metadata (blocks + table) a file of clusters clusters needs,
 * counting the metadata itself. generous adds room for growth the way qemu-img does
 * when it enlarges the refcount table. Returns bytes; *refblock_count gets the blocks.
 */
static int64_t refcount_metadata_size(int64_t clusters, uint64_t cluster_size,
                                      int refcount_order, bool generous,
                                      uint64_t *refblock_count)
{
    int64_t per_table_cluster = (int64_t)(cluster_size / REFTABLE_ENTRY_SIZE);
    int64_t per_block = (int64_t)(cluster_size * 8 / (1ULL << refcount_order));
    int64_t table = 0, blocks = 0, n = 0, last;
    do {
        last = n;
        blocks = DIV_ROUND_UP(clusters + table + blocks, per_block);
        table = DIV_ROUND_UP(blocks, per_table_cluster);
        n = clusters + blocks + table;
        if (n == last && generous) {
            clusters += DIV_ROUND_UP(table, 2);
            n = 0;
            generous = false;
        }
    } while (n != last);
    if (refblock_count) {
        *refblock_count = (uint64_t)blocks;
    }
    return (blocks + table) * (int64_t)cluster_size;
}

/* Exported wrapper for measure and preallocation size estimates. */
int64_t qcow2_refcount_metadata_size(int64_t clusters, uint64_t cluster_size,
                                     int refcount_order, bool generous,
                                     uint64_t *refblock_count)
{
    return refcount_metadata_size(clusters, cluster_size, refcount_order, generous,
                                  refblock_count);
}

/*
 * Build a new refcount table plus the refcount blocks it needs at start_offset (free
 * space up to the end of the file), covering the current file plus additional_clusters,
 * and switch the header to it. new_refblock_offset (if nonzero) is a block already
 * made for table index new_refblock_index. Returns the end of the new structures.
 */
int64_t qcow2_refcount_area(BlockDriverState *bs, uint64_t start_offset,
                            uint64_t additional_clusters, bool exact_size,
                            uint64_t new_refblock_index, uint64_t new_refblock_offset)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t total_blocks;
    refcount_metadata_size((int64_t)((start_offset >> s->cluster_bits) + additional_clusters),
                           s->cluster_size, s->refcount_order, !exact_size, &total_blocks);
    if (total_blocks > QCOW2_MAX_REFTABLE_BYTES / REFTABLE_ENTRY_SIZE) {
        return -EFBIG;
    }
    uint64_t area_index = (start_offset >> s->cluster_bits) >> s->refcount_block_bits;
    /* Growing (not exact): leave half as much room again, as qemu-img does. */
    uint64_t table_size = exact_size ? total_blocks : total_blocks + DIV_ROUND_UP(total_blocks, 2);
    table_size = ROUND_UP(table_size, s->cluster_size / REFTABLE_ENTRY_SIZE);
    uint64_t table_clusters = table_size * REFTABLE_ENTRY_SIZE / s->cluster_size;
    if (table_size > QCOW2_MAX_REFTABLE_BYTES / REFTABLE_ENTRY_SIZE) {
        return -EFBIG;
    }
    uint64_t *new_table = calloc(table_size, REFTABLE_ENTRY_SIZE);
    if (!new_table) {
        return -ENOMEM;
    }
    uint64_t keep = QKIT_MIN(table_size, s->max_refcount_table_index + 1);
    keep = QKIT_MIN(keep, (uint64_t)s->refcount_table_size);
    memcpy(new_table, s->refcount_table, keep * REFTABLE_ENTRY_SIZE);
    if (new_refblock_offset) {
        new_table[new_refblock_index] = new_refblock_offset;
    }

    uint64_t additional_blocks = 0;
    for (uint64_t i = area_index; i < total_blocks; i++) {
        if (!new_table[i]) {
            additional_blocks++;
        }
    }
    uint64_t table_offset = start_offset + additional_blocks * s->cluster_size;
    uint64_t end_offset = table_offset + table_clusters * s->cluster_size;
    /* The area is written directly: freed clusters there must not be discarded later. */
    if (s->nb_discards) {
        unqueue_discard(s, start_offset, end_offset - start_offset);
    }

    int ret = 0;
    uint64_t block_offset = start_offset;
    for (uint64_t i = area_index; i < total_blocks; i++) {
        void *rb;
        if (new_table[i]) {
            ret = qcow2_cache_get(bs, s->refcount_block_cache, new_table[i], &rb);
            if (ret < 0) {
                goto out;
            }
        } else {
            ret = qcow2_cache_get_empty(bs, s->refcount_block_cache, block_offset, &rb);
            if (ret < 0) {
                goto out;
            }
            memset(rb, 0, s->cluster_size);
            qcow2_cache_entry_mark_dirty(s->refcount_block_cache, rb);
            new_table[i] = block_offset;
            block_offset += s->cluster_size;
        }
        uint64_t first_covered = (i << s->refcount_block_bits) << s->cluster_bits;
        if (first_covered < end_offset) {
            uint64_t j = first_covered < start_offset
                             ? (start_offset - first_covered) >> s->cluster_bits : 0;
            uint64_t end_idx = QKIT_MIN((end_offset - first_covered) >> s->cluster_bits,
                                        s->refcount_block_size);
            for (; j < end_idx; j++) {
                qcow2_refblock_set(s, rb, j, 1);
            }
            qcow2_cache_entry_mark_dirty(s->refcount_block_cache, rb);
        }
        qcow2_cache_put(s->refcount_block_cache, &rb);
    }

    ret = qcow2_cache_flush(bs, s->refcount_block_cache);
    if (ret < 0) {
        goto out;
    }
    for (uint64_t i = 0; i < table_size; i++) {
        new_table[i] = htobe64(new_table[i]);
    }
    ret = bdrv_pwrite(bs->file, (int64_t)table_offset, (int64_t)(table_size * REFTABLE_ENTRY_SIZE),
                      new_table, 0);
    for (uint64_t i = 0; i < table_size; i++) {
        new_table[i] = be64toh(new_table[i]);
    }
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    if (ret < 0) {
        goto out;
    }

    /* Point the header at the new table: offset (8 bytes) and cluster count (4 bytes). */
    uint8_t hdr[12];
    uint64_t off_be = htobe64(table_offset);
    uint32_t clusters_be = htobe32((uint32_t)table_clusters);
    memcpy(hdr, &off_be, 8);
    memcpy(hdr + 8, &clusters_be, 4);
    ret = bdrv_pwrite(bs->file, offsetof(Qcow2Header, refcount_table_offset), sizeof(hdr),
                      hdr, 0);
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    if (ret < 0) {
        goto out;
    }

    uint64_t old_offset = s->refcount_table_offset;
    uint64_t old_size = s->refcount_table_size;
    free(s->refcount_table);
    s->refcount_table = new_table;
    new_table = NULL;
    s->refcount_table_size = (uint32_t)table_size;
    s->refcount_table_offset = table_offset;
    update_max_refcount_table_index(s);
    qcow2_free_clusters(bs, (int64_t)old_offset, (int64_t)(old_size * REFTABLE_ENTRY_SIZE),
                        QCOW2_DISCARD_OTHER);
    ret = 0;
out:
    free(new_table);
    return ret < 0 ? ret : (int64_t)end_offset;
}

/*
 * Get the refcount block for cluster_index, creating it if missing. Returns 0 with
 * *refblock pinned, -EAGAIN when a block was created (allocation state changed: the
 * caller must start over), or -errno.
 */
static int alloc_refcount_block(BlockDriverState *bs, uint64_t cluster_index, void **refblock)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t rt_index = cluster_index >> s->refcount_block_bits;
    *refblock = NULL;
    if (rt_index < s->refcount_table_size) {
        uint64_t rb_offset = s->refcount_table[rt_index] & REFT_OFFSET_MASK;
        if (rb_offset) {
            if (qcow2_offset_into_cluster(s, rb_offset)) {
                qcow2_signal_corruption(bs, true, -1, -1, "Refblock offset %#" PRIx64
                                        " unaligned (reftable index: %#" PRIx64 ")",
                                        rb_offset, rt_index);
                return -EIO;
            }
            return qcow2_cache_get(bs, s->refcount_block_cache, rb_offset, refblock);
        }
    }

    /* L2 tables may reference clusters whose counts we are about to move around. */
    int ret = qcow2_cache_flush(bs, s->l2_table_cache);
    if (ret < 0) {
        return ret;
    }
    int64_t new_block = alloc_clusters_noref(bs, s->cluster_size, QCOW2_MAX_CLUSTER_OFFSET);
    if (new_block < 0) {
        return (int)new_block;
    }
    if (new_block == 0) {
        qcow2_signal_corruption(bs, true, (int64_t)new_block, (int64_t)s->cluster_size,
                                "Preventing invalid allocation of refcount block at "
                                "offset 0");
        return -EIO;
    }

    void *rb;
    if (in_same_refcount_block(s, (uint64_t)new_block, cluster_index << s->cluster_bits)) {
        /* The new block describes itself. */
        ret = qcow2_cache_get_empty(bs, s->refcount_block_cache, (uint64_t)new_block, &rb);
        if (ret < 0) {
            return ret;
        }
        memset(rb, 0, s->cluster_size);
        qcow2_refblock_set(s, rb, ((uint64_t)new_block >> s->cluster_bits) &
                           (s->refcount_block_size - 1), 1);
    } else {
        /* Another block describes the new one: count it there first. */
        ret = qcow2_update_refcount(bs, new_block, (int64_t)s->cluster_size, 1, false,
                                    QCOW2_DISCARD_NEVER);
        if (ret < 0) {
            return ret;
        }
        ret = qcow2_cache_flush(bs, s->refcount_block_cache);
        if (ret < 0) {
            return ret;
        }
        ret = qcow2_cache_get_empty(bs, s->refcount_block_cache, (uint64_t)new_block, &rb);
        if (ret < 0) {
            return ret;
        }
        memset(rb, 0, s->cluster_size);
    }
    qcow2_cache_entry_mark_dirty(s->refcount_block_cache, rb);
    ret = qcow2_cache_flush(bs, s->refcount_block_cache);
    qcow2_cache_put(s->refcount_block_cache, &rb);
    if (ret < 0) {
        return ret;
    }

    if (rt_index < s->refcount_table_size) {
        /* Hook the block into the table on disk, then in memory. */
        uint64_t be = htobe64((uint64_t)new_block);
        ret = bdrv_pwrite(bs->file, (int64_t)(s->refcount_table_offset +
                                              rt_index * REFTABLE_ENTRY_SIZE),
                          REFTABLE_ENTRY_SIZE, &be, 0);
        if (ret == 0) {
            ret = bdrv_flush(bs->file);
        }
        if (ret < 0) {
            return ret;
        }
        s->refcount_table[rt_index] = (uint64_t)new_block;
        if (rt_index > s->max_refcount_table_index) {
            s->max_refcount_table_index = rt_index;
        }
        return -EAGAIN;
    }

    /*
     * The table is full: put a bigger table and the blocks describing it past
     * everything in use, where they describe themselves, and switch to it at once.
     */
    uint64_t blocks_used = DIV_ROUND_UP(QKIT_MAX(cluster_index + 1,
                                                 ((uint64_t)new_block >> s->cluster_bits) + 1),
                                        s->refcount_block_size);
    uint64_t meta_offset = (blocks_used * s->refcount_block_size) << s->cluster_bits;
    int64_t r = qcow2_refcount_area(bs, meta_offset, 0, false, rt_index, (uint64_t)new_block);
    if (r < 0) {
        return (int)r;
    }
    return -EAGAIN;
}

int qcow2_update_refcount(BlockDriverState *bs, int64_t offset, int64_t length,
                          uint64_t addend, bool decrease, Qcow2DiscardType type)
{
    BDRVQcow2State *s = bs->opaque;
    if (length < 0) {
        return -EINVAL;
    }
    if (length == 0) {
        return 0;
    }
    int ret;
    if (decrease) {
        /* L2 tables that stopped pointing at these clusters must be on disk first. */
        ret = qcow2_cache_set_dependency(bs, s->refcount_block_cache, s->l2_table_cache);
        if (ret < 0) {
            return ret;
        }
    }
    uint64_t start = qcow2_start_of_cluster(s, (uint64_t)offset);
    uint64_t last = qcow2_start_of_cluster(s, (uint64_t)offset + (uint64_t)length - 1);
    uint64_t old_rt_index = UINT64_MAX;
    void *rb = NULL;
    uint64_t cluster_offset;
    ret = 0;
    for (cluster_offset = start; cluster_offset <= last; cluster_offset += s->cluster_size) {
        uint64_t cluster_index = cluster_offset >> s->cluster_bits;
        uint64_t rt_index = cluster_index >> s->refcount_block_bits;
        if (rt_index != old_rt_index) {
            if (rb) {
                qcow2_cache_put(s->refcount_block_cache, &rb);
            }
            ret = alloc_refcount_block(bs, cluster_index, &rb);
            if (ret == -EAGAIN && s->free_cluster_index > (start >> s->cluster_bits)) {
                /* The caller searches again: the same clusters may still be free. */
                s->free_cluster_index = start >> s->cluster_bits;
            }
            if (ret < 0) {
                rb = NULL;
                goto fail;
            }
            old_rt_index = rt_index;
        }
        qcow2_cache_entry_mark_dirty(s->refcount_block_cache, rb);
        uint64_t idx = cluster_index & (s->refcount_block_size - 1);
        uint64_t refcount = qcow2_refblock_get(s, rb, idx);
        if (decrease ? refcount < addend
                     : (refcount + addend < refcount || refcount + addend > s->refcount_max)) {
            ret = -EINVAL;
            goto fail;
        }
        if (!decrease && refcount == 0 && s->nb_discards) {
            unqueue_discard(s, cluster_offset, s->cluster_size);
        }
        refcount = decrease ? refcount - addend : refcount + addend;
        if (refcount == 0 && cluster_index < s->free_cluster_index) {
            s->free_cluster_index = cluster_index;
        }
        qcow2_refblock_set(s, rb, idx, refcount);
        if (refcount == 0) {
            /* A freed metadata cluster must not be written back from a cache later. */
            if (qcow2_cache_is_table_offset(s->refcount_block_cache, cluster_offset) &&
                qcow2_cache_is_table_offset(s->refcount_block_cache, cluster_offset) != rb) {
                qcow2_cache_discard(s->refcount_block_cache, cluster_offset);
            }
            qcow2_cache_discard(s->l2_table_cache, cluster_offset);
            /* Not now: the tables that pointed here may not be on disk yet. */
            if (s->discard_passthrough[type] && !s->unusable) {
                /* Without memory the cluster simply stays in the file. */
                (void)queue_discard(s, cluster_offset, s->cluster_size);
            }
        }
    }
    ret = 0;
fail:
    if (rb) {
        qcow2_cache_put(s->refcount_block_cache, &rb);
    }
    if (ret < 0 && cluster_offset > start) {
        /* Undo what was changed before the failure. */
        qcow2_update_refcount(bs, (int64_t)start, (int64_t)(cluster_offset - start), addend,
                              !decrease, QCOW2_DISCARD_NEVER);
    }
    return ret;
}

int64_t qcow2_update_cluster_refcount(BlockDriverState *bs, uint64_t cluster_index,
                                      uint64_t addend, bool decrease, Qcow2DiscardType type)
{
    BDRVQcow2State *s = bs->opaque;
    int ret = qcow2_update_refcount(bs, (int64_t)(cluster_index << s->cluster_bits), 1, addend,
                                    decrease, type);
    if (ret < 0) {
        return ret;
    }
    uint64_t refcount;
    ret = qcow2_get_refcount(bs, cluster_index, &refcount);
    return ret < 0 ? ret : (int64_t)refcount;
}

int64_t qcow2_alloc_clusters(BlockDriverState *bs, uint64_t size)
{
    int64_t offset;
    int ret;
    do {
        offset = alloc_clusters_noref(bs, size, QCOW2_MAX_CLUSTER_OFFSET);
        if (offset < 0) {
            return offset;
        }
        ret = qcow2_update_refcount(bs, offset, (int64_t)size, 1, false, QCOW2_DISCARD_NEVER);
    } while (ret == -EAGAIN);
    return ret < 0 ? ret : offset;
}

int64_t qcow2_alloc_clusters_at(BlockDriverState *bs, uint64_t offset, int64_t nb_clusters)
{
    BDRVQcow2State *s = bs->opaque;
    if (nb_clusters <= 0) {
        return 0;
    }
    int64_t i;
    int ret;
    do {
        uint64_t ci = offset >> s->cluster_bits;
        for (i = 0; i < nb_clusters; i++) {
            uint64_t refcount;
            ret = qcow2_get_refcount(bs, ci++, &refcount);
            if (ret < 0) {
                return ret;
            }
            if (refcount) {
                break;
            }
        }
        ret = qcow2_update_refcount(bs, (int64_t)offset, i << s->cluster_bits, 1, false,
                                    QCOW2_DISCARD_NEVER);
    } while (ret == -EAGAIN);
    return ret < 0 ? ret : i;
}

int64_t qcow2_alloc_bytes(BlockDriverState *bs, int size)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t offset = s->free_byte_offset;
    int ret;
    if (offset) {
        uint64_t refcount;
        ret = qcow2_get_refcount(bs, offset >> s->cluster_bits, &refcount);
        if (ret < 0) {
            return ret;
        }
        if (refcount == s->refcount_max) {
            offset = 0;
        }
    }
    uint64_t free_in_cluster = s->cluster_size - qcow2_offset_into_cluster(s, offset);
    do {
        if (!offset || free_in_cluster < (uint64_t)size) {
            int64_t nc = alloc_clusters_noref(bs, s->cluster_size, QCOW2_MAX_CLUSTER_OFFSET);
            if (nc < 0) {
                return nc;
            }
            if (nc == 0) {
                qcow2_signal_corruption(bs, true, nc, (int64_t)s->cluster_size,
                                        "Preventing invalid allocation of compressed "
                                        "cluster at offset 0");
                return -EIO;
            }
            if (!offset || ROUND_UP(offset, s->cluster_size) != (uint64_t)nc) {
                offset = (uint64_t)nc;
                free_in_cluster = s->cluster_size;
            } else {
                free_in_cluster += s->cluster_size;
            }
        }
        ret = qcow2_update_refcount(bs, (int64_t)offset, size, 1, false, QCOW2_DISCARD_NEVER);
        if (ret < 0) {
            offset = 0;
        }
    } while (ret == -EAGAIN);
    if (ret < 0) {
        return ret;
    }
    ret = qcow2_cache_set_dependency(bs, s->l2_table_cache, s->refcount_block_cache);
    if (ret < 0) {
        return ret;
    }
    s->free_byte_offset = offset + (uint64_t)size;
    if (!qcow2_offset_into_cluster(s, s->free_byte_offset)) {
        s->free_byte_offset = 0;
    }
    return (int64_t)offset;
}

void qcow2_free_clusters(BlockDriverState *bs, int64_t offset, int64_t size,
                         Qcow2DiscardType type)
{
    /* A failure only leaks the clusters, which check can repair; QEMU says so on stderr. */
    int ret = qcow2_update_refcount(bs, offset, size, 1, true, type);
    if (ret < 0) {
        fprintf(stderr, "qcow2_free_clusters failed: %s\n", strerror(-ret));
    }
}

void qcow2_free_any_cluster(BlockDriverState *bs, uint64_t l2_entry, Qcow2DiscardType type)
{
    BDRVQcow2State *s = bs->opaque;
    switch (qcow2_get_cluster_type(bs, l2_entry)) {
    case QCOW2_CLUSTER_COMPRESSED: {
        uint64_t coffset, csize;
        qcow2_parse_compressed_l2_entry(bs, l2_entry, &coffset, &csize);
        qcow2_free_clusters(bs, (int64_t)coffset, (int64_t)csize, type);
        break;
    }
    case QCOW2_CLUSTER_NORMAL:
    case QCOW2_CLUSTER_ZERO_ALLOC: {
        uint64_t off = l2_entry & L2E_OFFSET_MASK;
        if (qcow2_offset_into_cluster(s, off)) {
            qcow2_signal_corruption(bs, false, -1, -1, "Cannot free unaligned cluster %#"
                                    PRIx64, off);
        } else {
            qcow2_free_clusters(bs, (int64_t)off, (int64_t)s->cluster_size, type);
        }
        break;
    }
    default:
        break;
    }
}

int64_t qcow2_get_last_cluster(BlockDriverState *bs, int64_t size)
{
    for (int64_t i = size - 1; i >= 0; i--) {
        uint64_t refcount;
        int ret = qcow2_get_refcount(bs, (uint64_t)i, &refcount);
        if (ret < 0) {
            return ret;
        }
        if (refcount > 0) {
            return i;
        }
    }
    return -EIO;
}

int qcow2_shrink_reftable(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t n = s->refcount_table_size;
    uint64_t *tmp = calloc(n ? n : 1, REFTABLE_ENTRY_SIZE);
    if (!tmp) {
        return -ENOMEM;
    }
    int ret = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t rb_offset = s->refcount_table[i] & REFT_OFFSET_MASK;
        if (!rb_offset) {
            continue;
        }
        void *rb;
        ret = qcow2_cache_get(bs, s->refcount_block_cache, rb_offset, &rb);
        if (ret < 0) {
            goto out;
        }
        bool unused;
        if (((rb_offset >> s->cluster_bits) >> s->refcount_block_bits) == i) {
            /* The block counts itself: ignore that one reference. */
            uint64_t idx = (rb_offset >> s->cluster_bits) & (s->refcount_block_size - 1);
            uint64_t self = qcow2_refblock_get(s, rb, idx);
            qcow2_refblock_set(s, rb, idx, 0);
            unused = buffer_is_zero(rb, s->cluster_size);
            qcow2_refblock_set(s, rb, idx, self);
        } else {
            unused = buffer_is_zero(rb, s->cluster_size);
        }
        qcow2_cache_put(s->refcount_block_cache, &rb);
        tmp[i] = unused ? 0 : htobe64(s->refcount_table[i]);
    }
    ret = bdrv_pwrite(bs->file, (int64_t)s->refcount_table_offset,
                      (int64_t)(n * REFTABLE_ENTRY_SIZE), tmp, 0);
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    for (uint64_t i = 0; i < n; i++) {
        uint64_t rb_offset = s->refcount_table[i] & REFT_OFFSET_MASK;
        if (!rb_offset || tmp[i]) {
            continue;
        }
        s->refcount_table[i] = 0;
        if (ret < 0) {
            continue;
        }
        /* Release the block's own cluster in whichever block counts it now. */
        qcow2_cache_discard(s->refcount_block_cache, rb_offset);
        uint64_t ci = rb_offset >> s->cluster_bits;
        if ((ci >> s->refcount_block_bits) != i) {
            qcow2_update_refcount(bs, (int64_t)rb_offset, (int64_t)s->cluster_size, 1, true,
                                  QCOW2_DISCARD_ALWAYS);
        } else {
            if (ci < s->free_cluster_index) {
                s->free_cluster_index = ci;
            }
            bdrv_pdiscard(bs->file, (int64_t)rb_offset, (int64_t)s->cluster_size);
        }
    }
    update_max_refcount_table_index(s);
out:
    free(tmp);
    return ret;
}

/* Header fields rewritten together when the image is laid out anew (contiguous). */
typedef struct __attribute__((packed)) Qcow2EmptyLayout {
    uint64_t l1_table_offset;
    uint64_t refcount_table_offset;
    uint32_t refcount_table_clusters;
} Qcow2EmptyLayout;
_Static_assert(offsetof(Qcow2Header, refcount_table_offset) ==
               offsetof(Qcow2Header, l1_table_offset) + 8 &&
               offsetof(Qcow2Header, refcount_table_clusters) ==
               offsetof(Qcow2Header, l1_table_offset) + 16, "qcow2 header layout");

/* Clusters of the emptied layout before the L1 table: header, reftable, one refblock. */
#define QCOW2_EMPTY_FIXED_CLUSTERS 3

/*
 * Called by make_empty (commit) on v3 images with nothing but guest data besides the
 * fixed structures: lay the file out as a fresh image (header, refcount table, one
 * refcount block, an all-zero L1 table of the same size) and cut it there, as QEMU
 * does. The dirty bit covers the steps where refcounts on disk do not match; a crash
 * in between leaves an image that open repairs (and whose data is meant to go).
 */
int qcow2_make_completely_empty(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t l1_bytes = (uint64_t)s->l1_size * sizeof(uint64_t);
    uint64_t l1_clusters = DIV_ROUND_UP(l1_bytes, cs);
    uint64_t reftable_entries = cs / REFTABLE_ENTRY_SIZE;
    int ret;

    /* Freed ranges refer to the old layout: discard them before it is replaced. */
    qcow2_process_discards(bs);
    /* Whatever the caches hold describes clusters about to go: write and drop it. */
    ret = qcow2_cache_empty(bs, s->l2_table_cache);
    if (ret == 0) {
        ret = qcow2_cache_empty(bs, s->refcount_block_cache);
    }
    if (ret == 0) {
        ret = qcow2_mark_dirty(bs);
    }
    if (ret < 0) {
        return ret;
    }
    if (l1_clusters) {
        ret = bdrv_pwrite_zeroes(bs->file, (int64_t)s->l1_table_offset,
                                 (int64_t)(l1_clusters * cs), 0);
        if (ret < 0) {
            return ret;
        }
        memset(s->l1_table, 0, l1_bytes);
    }
    /* From here on the refcounts on disk and in memory no longer match the image. */
    ret = bdrv_pwrite_zeroes(bs->file, (int64_t)cs, (int64_t)((2 + l1_clusters) * cs), 0);
    if (ret < 0) {
        return ret;
    }
    uint64_t *reftable = calloc(reftable_entries, REFTABLE_ENTRY_SIZE);
    if (!reftable) {
        return -ENOMEM;
    }
    Qcow2EmptyLayout layout = {
        .l1_table_offset = htobe64(QCOW2_EMPTY_FIXED_CLUSTERS * cs),
        .refcount_table_offset = htobe64(cs),
        .refcount_table_clusters = htobe32(1),
    };
    ret = bdrv_pwrite(bs->file, offsetof(Qcow2Header, l1_table_offset), sizeof(layout),
                      &layout, 0);
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    if (ret < 0) {
        free(reftable);
        return ret;
    }
    s->l1_table_offset = QCOW2_EMPTY_FIXED_CLUSTERS * cs;
    free(s->refcount_table);
    s->refcount_table = reftable;
    s->refcount_table_offset = cs;
    s->refcount_table_size = (uint32_t)reftable_entries;
    s->max_refcount_table_index = 0;

    /* The first refcount block sits right after the table. */
    uint64_t rt_entry = htobe64(2 * cs);
    ret = bdrv_pwrite(bs->file, (int64_t)cs, sizeof(rt_entry), &rt_entry, 0);
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    if (ret < 0) {
        return ret;
    }
    s->refcount_table[0] = 2 * cs;
    s->free_cluster_index = 0;
    s->free_byte_offset = 0;

    /* Count the fixed structures and the L1 table: they must come out at offset 0. */
    int64_t offset = qcow2_alloc_clusters(bs, QCOW2_EMPTY_FIXED_CLUSTERS * cs + l1_bytes);
    if (offset < 0) {
        return (int)offset;
    }
    if (offset > 0) {
        qcow2_signal_corruption(bs, true, -1, -1, "First cluster in emptied image is in use");
        return -EIO;
    }
    ret = qcow2_mark_clean(bs);
    if (ret < 0) {
        return ret;
    }
    Error *local_err = NULL;
    ret = bdrv_truncate(bs->file, (int64_t)((QCOW2_EMPTY_FIXED_CLUSTERS + l1_clusters) * cs),
                        false, PREALLOC_MODE_OFF, &local_err);
    error_free(local_err);
    return ret;
}
