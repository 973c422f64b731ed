/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2 cluster mapping: L1/L2 tables, guest reads and writes, zeroing, discard,
 * block status and compressed clusters.
 *
 * A write to clusters that are not exclusively ours (unallocated, zero, compressed, or
 * shared with a snapshot) allocates new host clusters: their refcount goes to disk
 * first (cache dependency), then the data including the copied-on-write head and tail,
 * then the L2 entries; the old clusters are released last. A crash in between leaks
 * clusters at worst.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2.h"
#include "qkit/cutils.h"

#define L1E_SIZE 8
#define L1_ENTRIES_PER_WRITE 64  /* write L1 updates a 512-byte sector at a time */

uint64_t qcow2_get_l2_entry(const BDRVQcow2State *s, const uint64_t *l2, int idx)
{
    return be64toh(l2[(size_t)idx * (size_t)(s->l2_entry_size / 8)]);
}

void qcow2_set_l2_entry(BDRVQcow2State *s, uint64_t *l2, int idx, uint64_t entry)
{
    l2[(size_t)idx * (size_t)(s->l2_entry_size / 8)] = htobe64(entry);
}

uint64_t qcow2_get_l2_bitmap(const BDRVQcow2State *s, const uint64_t *l2, int idx)
{
    return s->extended_l2 ? be64toh(l2[(size_t)idx * 2 + 1]) : 0;
}

void qcow2_set_l2_bitmap(BDRVQcow2State *s, uint64_t *l2, int idx, uint64_t bitmap)
{
    if (s->extended_l2) {
        l2[(size_t)idx * 2 + 1] = htobe64(bitmap);
    }
}

Qcow2ClusterType qcow2_get_cluster_type(BlockDriverState *bs, uint64_t l2_entry)
{
    BDRVQcow2State *s = bs->opaque;
    if (l2_entry & QCOW_OFLAG_COMPRESSED) {
        return QCOW2_CLUSTER_COMPRESSED;
    }
    if ((l2_entry & QCOW_OFLAG_ZERO) && !s->extended_l2) {
        return (l2_entry & L2E_OFFSET_MASK) ? QCOW2_CLUSTER_ZERO_ALLOC
                                            : QCOW2_CLUSTER_ZERO_PLAIN;
    }
    if (!(l2_entry & L2E_OFFSET_MASK)) {
        return QCOW2_CLUSTER_UNALLOCATED;
    }
    return QCOW2_CLUSTER_NORMAL;
}

Qcow2SubclusterType qcow2_get_subcluster_type(BlockDriverState *bs, uint64_t l2_entry,
                                              uint64_t l2_bitmap, int sc_index)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2ClusterType type = qcow2_get_cluster_type(bs, l2_entry);
    if (!s->extended_l2) {
        switch (type) {
        case QCOW2_CLUSTER_COMPRESSED:
            return QCOW2_SUBCLUSTER_COMPRESSED;
        case QCOW2_CLUSTER_ZERO_PLAIN:
            return QCOW2_SUBCLUSTER_ZERO_PLAIN;
        case QCOW2_CLUSTER_ZERO_ALLOC:
            return QCOW2_SUBCLUSTER_ZERO_ALLOC;
        case QCOW2_CLUSTER_NORMAL:
            return QCOW2_SUBCLUSTER_NORMAL;
        default:
            return QCOW2_SUBCLUSTER_UNALLOCATED_PLAIN;
        }
    }
    switch (type) {
    case QCOW2_CLUSTER_COMPRESSED:
        return QCOW2_SUBCLUSTER_COMPRESSED;
    case QCOW2_CLUSTER_NORMAL:
        if ((l2_bitmap >> 32) & l2_bitmap) {
            return QCOW2_SUBCLUSTER_INVALID;
        }
        if (l2_bitmap & QCOW_OFLAG_SUB_ZERO(sc_index)) {
            return QCOW2_SUBCLUSTER_ZERO_ALLOC;
        }
        if (l2_bitmap & QCOW_OFLAG_SUB_ALLOC(sc_index)) {
            return QCOW2_SUBCLUSTER_NORMAL;
        }
        return QCOW2_SUBCLUSTER_UNALLOCATED_ALLOC;
    default:
        if (l2_bitmap & QCOW2_L2_BITMAP_ALL_ALLOC) {
            return QCOW2_SUBCLUSTER_INVALID;
        }
        if (l2_bitmap & QCOW_OFLAG_SUB_ZERO(sc_index)) {
            return QCOW2_SUBCLUSTER_ZERO_PLAIN;
        }
        return QCOW2_SUBCLUSTER_UNALLOCATED_PLAIN;
    }
}

void qcow2_parse_compressed_l2_entry(BlockDriverState *bs, uint64_t l2_entry,
                                     uint64_t *coffset, uint64_t *csize)
{
    BDRVQcow2State *s = bs->opaque;
    *coffset = l2_entry & s->cluster_offset_mask;
    uint64_t nb_csectors = ((l2_entry >> s->csize_shift) & s->csize_mask) + 1;
    *csize = nb_csectors * QCOW2_COMPRESSED_SECTOR_SIZE -
             (*coffset & (QCOW2_COMPRESSED_SECTOR_SIZE - 1));
}

/* ---- L1 table ---- */

int qcow2_read_l1_table(BlockDriverState *bs, uint64_t offset, uint32_t n, uint64_t *tab)
{
    if (!n) {
        return 0;
    }
    int ret = bdrv_pread(bs->file, (int64_t)offset, (int64_t)n * L1E_SIZE, tab, 0);
    if (ret < 0) {
        return ret;
    }
    for (uint32_t i = 0; i < n; i++) {
        tab[i] = be64toh(tab[i]);
    }
    return 0;
}

int qcow2_write_l1_table(BlockDriverState *bs, uint64_t offset, uint32_t n,
                         const uint64_t *tab)
{
    if (!n) {
        return 0;
    }
    uint64_t *be = malloc((size_t)n * L1E_SIZE);
    if (!be) {
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        be[i] = htobe64(tab[i]);
    }
    int ret = bdrv_pwrite(bs->file, (int64_t)offset, (int64_t)n * L1E_SIZE, be, 0);
    free(be);
    return ret;
}

int qcow2_write_l1_entry(BlockDriverState *bs, int l1_index)
{
    BDRVQcow2State *s = bs->opaque;
    uint32_t start = (uint32_t)ROUND_DOWN(l1_index, L1_ENTRIES_PER_WRITE);
    uint32_t n = QKIT_MIN((uint32_t)L1_ENTRIES_PER_WRITE, s->l1_size - start);
    int ret = qcow2_write_l1_table(bs, s->l1_table_offset + (uint64_t)start * L1E_SIZE, n,
                                   s->l1_table + start);
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    return ret;
}

int qcow2_grow_l1_table(BlockDriverState *bs, uint64_t min_size, bool exact_size)
{
    BDRVQcow2State *s = bs->opaque;
    if (min_size <= s->l1_size) {
        return 0;
    }
    uint64_t new_size;
    if (exact_size) {
        new_size = min_size;
    } else {
        /* Grow by half at a time so repeated small growth stays cheap. */
        new_size = s->l1_size ? s->l1_size : 1;
        while (min_size > new_size) {
            new_size = DIV_ROUND_UP(new_size * 3, 2);
        }
    }
    if (new_size > QCOW2_MAX_L1_BYTES / L1E_SIZE) {
        return -EFBIG;
    }
    uint64_t new_bytes = new_size * L1E_SIZE;
    uint64_t *new_table = calloc(1, ROUND_UP(new_bytes, s->cluster_size));
    if (!new_table) {
        return -ENOMEM;
    }
    memcpy(new_table, s->l1_table, (size_t)s->l1_size * L1E_SIZE);

    int ret;
    int64_t new_offset = qcow2_alloc_clusters(bs, new_bytes);
    if (new_offset < 0) {
        ret = (int)new_offset;
        goto fail;
    }
    ret = qcow2_cache_flush(bs, s->refcount_block_cache);
    if (ret < 0) {
        goto fail_free;
    }
    ret = qcow2_write_l1_table(bs, (uint64_t)new_offset, (uint32_t)new_size, new_table);
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    if (ret < 0) {
        goto fail_free;
    }
    /* Switch the header to the new table: l1_size (4 bytes) then l1_table_offset (8). */
    uint8_t data[12];
    uint32_t size_be = htobe32((uint32_t)new_size);
    uint64_t off_be = htobe64((uint64_t)new_offset);
    memcpy(data, &size_be, 4);
    memcpy(data + 4, &off_be, 8);
    ret = bdrv_pwrite(bs->file, offsetof(Qcow2Header, l1_size), sizeof(data), data, 0);
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    if (ret < 0) {
        goto fail_free;
    }
    uint64_t old_offset = s->l1_table_offset;
    uint64_t old_size = s->l1_size;
    free(s->l1_table);
    s->l1_table = new_table;
    s->l1_table_offset = (uint64_t)new_offset;
    s->l1_size = (uint32_t)new_size;
    qcow2_free_clusters(bs, (int64_t)old_offset, (int64_t)(old_size * L1E_SIZE),
                        QCOW2_DISCARD_OTHER);
    return 0;
fail_free:
    qcow2_free_clusters(bs, new_offset, (int64_t)new_bytes, QCOW2_DISCARD_OTHER);
fail:
    free(new_table);
    return ret;
}

int qcow2_shrink_l1_table(BlockDriverState *bs, uint64_t new_l1_size)
{
    BDRVQcow2State *s = bs->opaque;
    if (new_l1_size >= s->l1_size) {
        return 0;
    }
    int ret = qcow2_cache_flush(bs, s->l2_table_cache);
    if (ret < 0) {
        return ret;
    }
    ret = bdrv_pwrite_zeroes(bs->file, (int64_t)(s->l1_table_offset + new_l1_size * L1E_SIZE),
                             (int64_t)((s->l1_size - new_l1_size) * L1E_SIZE), 0);
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    if (ret < 0) {
        return ret;
    }
    for (uint64_t i = new_l1_size; i < s->l1_size; i++) {
        uint64_t l2 = s->l1_table[i] & L1E_OFFSET_MASK;
        if (l2) {
            qcow2_free_clusters(bs, (int64_t)l2, (int64_t)s->cluster_size,
                                QCOW2_DISCARD_ALWAYS);
        }
        s->l1_table[i] = 0;
    }
    return 0;
}

/* ---- L2 tables ---- */

int qcow2_get_l2_table(BlockDriverState *bs, uint64_t l2_offset, uint64_t **l2_table)
{
    BDRVQcow2State *s = bs->opaque;
    void *t;
    int ret = qcow2_cache_get(bs, s->l2_table_cache, l2_offset, &t);
    *l2_table = ret < 0 ? NULL : t;
    return ret;
}

/*
 * Give L1 entry l1_index a new L2 table of its own: empty, or a copy of a shared one.
 * The table reaches the disk before the L1 entry that points at it.
 */
static int l2_allocate(BlockDriverState *bs, uint32_t l1_index)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t old_l2 = s->l1_table[l1_index] & L1E_OFFSET_MASK;
    int64_t l2_offset = qcow2_alloc_clusters(bs, s->cluster_size);
    if (l2_offset < 0) {
        return (int)l2_offset;
    }
    if (l2_offset == 0) {
        qcow2_signal_corruption(bs, true, l2_offset, (int64_t)s->cluster_size,
                                "Preventing invalid allocation of L2 table at offset 0");
        return -EIO;
    }
    int ret = qcow2_cache_flush(bs, s->refcount_block_cache);
    if (ret < 0) {
        goto fail;
    }
    void *table;
    if (old_l2) {
        void *old;
        ret = qcow2_cache_get(bs, s->l2_table_cache, old_l2, &old);
        if (ret < 0) {
            goto fail;
        }
        uint8_t *copy = malloc(s->cluster_size);
        if (!copy) {
            qcow2_cache_put(s->l2_table_cache, &old);
            ret = -ENOMEM;
            goto fail;
        }
        memcpy(copy, old, s->cluster_size);
        qcow2_cache_put(s->l2_table_cache, &old);
        ret = qcow2_cache_get_empty(bs, s->l2_table_cache, (uint64_t)l2_offset, &table);
        if (ret == 0) {
            memcpy(table, copy, s->cluster_size);
        }
        free(copy);
    } else {
        ret = qcow2_cache_get_empty(bs, s->l2_table_cache, (uint64_t)l2_offset, &table);
        if (ret == 0) {
            memset(table, 0, s->cluster_size);
        }
    }
    if (ret < 0) {
        goto fail;
    }
    qcow2_cache_entry_mark_dirty(s->l2_table_cache, table);
    qcow2_cache_put(s->l2_table_cache, &table);
    ret = qcow2_cache_flush(bs, s->l2_table_cache);
    if (ret < 0) {
        goto fail;
    }
    s->l1_table[l1_index] = (uint64_t)l2_offset | QCOW_OFLAG_COPIED;
    ret = qcow2_write_l1_entry(bs, (int)l1_index);
    if (ret < 0) {
        s->l1_table[l1_index] = old_l2 ? old_l2 : 0;
        goto fail;
    }
    if (old_l2) {
        qcow2_free_clusters(bs, (int64_t)old_l2, (int64_t)s->cluster_size,
                            QCOW2_DISCARD_OTHER);
    }
    return 0;
fail:
    qcow2_cache_discard(s->l2_table_cache, (uint64_t)l2_offset);
    qcow2_free_clusters(bs, l2_offset, (int64_t)s->cluster_size, QCOW2_DISCARD_ALWAYS);
    return ret;
}

/*
 * Get the L2 table covering guest offset for modification (growing the L1 table and
 * allocating or unsharing the L2 table as needed).
 */
int qcow2_get_cluster_table(BlockDriverState *bs, uint64_t offset, uint64_t **l2,
                            int *l2_index)
{
    BDRVQcow2State *s = bs->opaque;
    uint32_t l1_index = qcow2_offset_to_l1_index(s, offset);
    int ret;
    if (l1_index >= s->l1_size) {
        ret = qcow2_grow_l1_table(bs, (uint64_t)l1_index + 1, false);
        if (ret < 0) {
            return ret;
        }
    }
    uint64_t l2_offset = s->l1_table[l1_index] & L1E_OFFSET_MASK;
    if (qcow2_offset_into_cluster(s, l2_offset)) {
        qcow2_signal_corruption(bs, true, -1, -1, "L2 table offset %#" PRIx64
                                " unaligned (L1 index: %#" PRIx32 ")", l2_offset, l1_index);
        return -EIO;
    }
    if (!(s->l1_table[l1_index] & QCOW_OFLAG_COPIED)) {
        ret = l2_allocate(bs, l1_index);
        if (ret < 0) {
            return ret;
        }
        l2_offset = s->l1_table[l1_index] & L1E_OFFSET_MASK;
    }
    ret = qcow2_get_l2_table(bs, l2_offset, l2);
    if (ret < 0) {
        return ret;
    }
    *l2_index = qcow2_offset_to_l2_index(s, offset);
    return 0;
}

static bool sctype_has_host(Qcow2SubclusterType t)
{
    return t == QCOW2_SUBCLUSTER_NORMAL || t == QCOW2_SUBCLUSTER_ZERO_ALLOC ||
           t == QCOW2_SUBCLUSTER_UNALLOCATED_ALLOC;
}

int qcow2_get_host_offset(BlockDriverState *bs, uint64_t offset, uint64_t *bytes,
                          uint64_t *host_offset, Qcow2SubclusterType *sctype)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t coverage = (uint64_t)s->l2_size << s->cluster_bits;
    uint64_t l2_end = ROUND_DOWN(offset, coverage) + coverage;
    uint64_t want_end = offset + *bytes;
    uint64_t max_end = QKIT_MIN(want_end, l2_end);
    uint32_t l1_index = qcow2_offset_to_l1_index(s, offset);
    *host_offset = 0;
    if (l1_index >= s->l1_size || !(s->l1_table[l1_index] & L1E_OFFSET_MASK)) {
        *sctype = QCOW2_SUBCLUSTER_UNALLOCATED_PLAIN;
        *bytes = max_end - offset;
        return 0;
    }
    uint64_t l2_offset = s->l1_table[l1_index] & L1E_OFFSET_MASK;
    if (qcow2_offset_into_cluster(s, l2_offset)) {
        qcow2_signal_corruption(bs, true, -1, -1, "L2 table offset %#" PRIx64
                                " unaligned (L1 index: %#" PRIx32 ")", l2_offset, l1_index);
        return -EIO;
    }
    uint64_t *l2;
    int ret = qcow2_get_l2_table(bs, l2_offset, &l2);
    if (ret < 0) {
        return ret;
    }
    int l2_index = qcow2_offset_to_l2_index(s, offset);
    uint64_t entry = qcow2_get_l2_entry(s, l2, l2_index);
    uint64_t bitmap = qcow2_get_l2_bitmap(s, l2, l2_index);
    Qcow2SubclusterType type = qcow2_get_subcluster_type(bs, entry, bitmap,
                                                          qcow2_offset_to_sc_index(s, offset));
    if (type == QCOW2_SUBCLUSTER_INVALID) {
        qcow2_signal_corruption(bs, true, -1, -1, "Invalid cluster entry found (L2 offset: %#"
                                PRIx64 ", L2 index: %#x)", l2_offset, l2_index);
        ret = -EIO;
        goto out;
    }
    uint64_t guest_cluster = qcow2_start_of_cluster(s, offset);
    uint64_t host_base = entry & L2E_OFFSET_MASK;
    bool has_host = sctype_has_host(type);
    if (has_host) {
        if (qcow2_offset_into_cluster(s, host_base)) {
            qcow2_signal_corruption(bs, true, -1, -1, "Cluster allocation offset %#" PRIx64
                                    " unaligned (L2 offset: %#" PRIx64 ", L2 index: %#x)",
                                    host_base, l2_offset, l2_index);
            ret = -EIO;
            goto out;
        }
        *host_offset = host_base + (offset - guest_cluster);
    } else if (type == QCOW2_SUBCLUSTER_COMPRESSED) {
        *host_offset = entry;
    }

    uint64_t pos;
    if (type == QCOW2_SUBCLUSTER_COMPRESSED) {
        pos = guest_cluster + s->cluster_size;
    } else {
        pos = ROUND_DOWN(offset, s->subcluster_size) + s->subcluster_size;
        while (pos < max_end) {
            int i = qcow2_offset_to_l2_index(s, pos);
            uint64_t e = qcow2_get_l2_entry(s, l2, i);
            uint64_t b = qcow2_get_l2_bitmap(s, l2, i);
            if (qcow2_get_subcluster_type(bs, e, b, qcow2_offset_to_sc_index(s, pos)) != type) {
                break;
            }
            if (has_host && (e & L2E_OFFSET_MASK) + qcow2_offset_into_cluster(s, pos) !=
                                host_base + (pos - guest_cluster)) {
                break;
            }
            pos += s->subcluster_size;
        }
    }
    *bytes = QKIT_MIN(pos, want_end) - offset;
    *sctype = type;
    ret = 0;
out:
    qcow2_cache_put(s->l2_table_cache, (void **)&l2);
    return ret;
}

/* ---- Reads ---- */

/* Unallocated range: the backing file where it reaches, zeroes elsewhere. */
static int read_unallocated(BlockDriverState *bs, uint64_t offset, uint64_t n, uint8_t *buf)
{
    uint64_t avail = 0;
    if (bs->backing) {
        int64_t blen = bdrv_getlength(bs->backing);
        if (blen < 0) {
            return (int)blen;
        }
        if (offset < (uint64_t)blen) {
            avail = QKIT_MIN(n, (uint64_t)blen - offset);
            int ret = bdrv_pread(bs->backing, (int64_t)offset, (int64_t)avail, buf, 0);
            if (ret < 0) {
                return ret;
            }
        }
    }
    memset(buf + avail, 0, n - avail);
    return 0;
}

/* Decompress the cluster a compressed descriptor points at into out (cluster_size). */
static int read_compressed_cluster(BlockDriverState *bs, uint64_t desc, uint8_t *out)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t coffset, csize;
    qcow2_parse_compressed_l2_entry(bs, desc, &coffset, &csize);
    uint8_t *in = malloc(csize);
    if (!in) {
        return -ENOMEM;
    }
    int ret = bdrv_pread(bs->file, (int64_t)coffset, (int64_t)csize, in, 0);
    if (ret == 0) {
        ret = qcow2_decompress(s, out, s->cluster_size, in, csize);
    }
    free(in);
    return ret;
}

int qcow2_pread(BlockDriverState *bs, uint64_t offset, uint64_t bytes, void *vbuf, int flags)
{
    BDRVQcow2State *s = bs->opaque;
    uint8_t *buf = vbuf;
    uint8_t *cbuf = NULL;
    int ret = 0;
    if (s->unusable) {
        return -ENOMEDIUM;
    }
    while (bytes) {
        uint64_t cur = bytes, host;
        Qcow2SubclusterType type;
        ret = qcow2_get_host_offset(bs, offset, &cur, &host, &type);
        if (ret < 0) {
            break;
        }
        switch (type) {
        case QCOW2_SUBCLUSTER_UNALLOCATED_PLAIN:
        case QCOW2_SUBCLUSTER_UNALLOCATED_ALLOC:
            ret = read_unallocated(bs, offset, cur, buf);
            break;
        case QCOW2_SUBCLUSTER_ZERO_PLAIN:
        case QCOW2_SUBCLUSTER_ZERO_ALLOC:
            memset(buf, 0, cur);
            break;
        case QCOW2_SUBCLUSTER_NORMAL:
            ret = bdrv_pread(bs->file, (int64_t)host, (int64_t)cur, buf, 0);
            break;
        case QCOW2_SUBCLUSTER_COMPRESSED:
            if (!cbuf) {
                cbuf = malloc(s->cluster_size);
                if (!cbuf) {
                    ret = -ENOMEM;
                    break;
                }
            }
            ret = read_compressed_cluster(bs, host, cbuf);
            if (ret == 0) {
                memcpy(buf, cbuf + qcow2_offset_into_cluster(s, offset), cur);
            }
            break;
        default:
            ret = -EIO;
            break;
        }
        if (ret < 0) {
            break;
        }
        offset += cur;
        bytes -= cur;
        buf += cur;
    }
    free(cbuf);
    return ret;
}

/*
 * True if the guest cluster at offset maps to a cluster with OFLAG_COPIED (refcount 1)
 * through sane tables (aligned offsets); anything else is for the slow path.
 */
static bool guest_cluster_copied(BlockDriverState *bs, uint64_t offset)
{
    BDRVQcow2State *s = bs->opaque;
    uint32_t l1_index = qcow2_offset_to_l1_index(s, offset);
    uint64_t *l2;
    if (l1_index >= s->l1_size) {
        return false;
    }
    uint64_t l2_offset = s->l1_table[l1_index] & L1E_OFFSET_MASK;
    if (!l2_offset || qcow2_offset_into_cluster(s, l2_offset) ||
        qcow2_get_l2_table(bs, l2_offset, &l2) < 0) {
        return false;
    }
    uint64_t entry = qcow2_get_l2_entry(s, l2, qcow2_offset_to_l2_index(s, offset));
    qcow2_cache_put(s->l2_table_cache, (void **)&l2);
    return (entry & QCOW_OFLAG_COPIED) && !qcow2_offset_into_cluster(s, entry & L2E_OFFSET_MASK);
}

/*
 * Called by the core with the node lock held: data that is stored plainly (and, for
 * a write, owned by this cluster alone) can be read or overwritten in the file
 * without the lock. Anything else (holes, zeroes, compressed, shared or new
 * clusters) goes through qcow2_pread/qcow2_pwrite.
 */
int qcow2_map_io(BlockDriverState *bs, bool write, uint64_t offset, uint64_t bytes,
                 uint64_t *pnum, uint64_t *host_offset)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2SubclusterType type;
    uint64_t cur = bytes;
    /* An unusable node answers through qcow2_pread / qcow2_pwrite (-ENOMEDIUM). */
    if (qcow2_has_data_file(s) || s->unusable ||
        (write && (s->incompatible_features & QCOW2_INCOMPAT_CORRUPT))) {
        return 0;
    }
    /* Writes to clusters not owned alone (or damaged) take the slow path, which reports. */
    if (write && !guest_cluster_copied(bs, offset)) {
        return 0;
    }
    int ret = qcow2_get_host_offset(bs, offset, &cur, host_offset, &type);
    if (ret < 0 || type != QCOW2_SUBCLUSTER_NORMAL) {
        return ret;
    }
    if (write) {
        /* One cluster at a time: each must be owned alone to be written in place. */
        cur = QKIT_MIN(cur, s->cluster_size - qcow2_offset_into_cluster(s, offset));
        ret = qcow2_pre_write_overlap_check(bs, 0, *host_offset, cur);
        if (ret < 0) {
            return ret;
        }
        qcow2_bitmaps_mark_dirty(bs, offset, cur, 0);
    }
    *pnum = cur;
    return 1;
}

/* ---- Writes ---- */

/* A cluster we own alone (refcount 1) and may write in place. */
bool qcow2_cluster_reusable(BlockDriverState *bs, uint64_t entry)
{
    Qcow2ClusterType t = qcow2_get_cluster_type(bs, entry);
    return (t == QCOW2_CLUSTER_NORMAL || t == QCOW2_CLUSTER_ZERO_ALLOC) &&
           (entry & QCOW_OFLAG_COPIED);
}

static int ctz32_or_32(uint32_t v)
{
    return v ? __builtin_ctz(v) : 32;
}

static int clz32_or_32(uint32_t v)
{
    return v ? __builtin_clz(v) : 32;
}

/*
 * Copy-on-write bounds of a write of [from, to) (relative to the first cluster of a
 * run of nb clusters): *cow_from .. from and to .. *cow_to must be filled with the old
 * guest-visible content.
 */
static void compute_cow(BlockDriverState *bs, uint64_t *l2, int l2_index, int nb,
                        uint64_t guest0, uint64_t from, uint64_t to, bool keep_old,
                        uint64_t *cow_from, uint64_t *cow_to)
{
    BDRVQcow2State *s = bs->opaque;
    int sc_bits = s->subcluster_bits;
    uint64_t e = qcow2_get_l2_entry(s, l2, l2_index);
    uint64_t b = qcow2_get_l2_bitmap(s, l2, l2_index);
    int sc = qcow2_offset_to_sc_index(s, guest0 + from);
    Qcow2SubclusterType t = qcow2_get_subcluster_type(bs, e, b, sc);
    switch (t) {
    case QCOW2_SUBCLUSTER_NORMAL:
        if (keep_old) {
            *cow_from = from;
        } else if (s->extended_l2) {
            *cow_from = (uint64_t)QKIT_MIN(sc, ctz32_or_32((uint32_t)b)) << sc_bits;
        } else {
            *cow_from = 0;
        }
        break;
    case QCOW2_SUBCLUSTER_ZERO_ALLOC:
    case QCOW2_SUBCLUSTER_UNALLOCATED_ALLOC:
        if (keep_old) {
            *cow_from = (uint64_t)sc << sc_bits;
        } else if (s->extended_l2) {
            *cow_from = (uint64_t)QKIT_MIN(sc, ctz32_or_32((uint32_t)b)) << sc_bits;
        } else {
            *cow_from = 0;
        }
        break;
    case QCOW2_SUBCLUSTER_COMPRESSED:
        *cow_from = 0;
        break;
    default:
        *cow_from = (uint64_t)sc << sc_bits;
        break;
    }

    int last = l2_index + nb - 1;
    e = qcow2_get_l2_entry(s, l2, last);
    b = qcow2_get_l2_bitmap(s, l2, last);
    sc = qcow2_offset_to_sc_index(s, guest0 + to - 1);
    t = qcow2_get_subcluster_type(bs, e, b, sc);
    uint64_t cluster_end = ROUND_UP(to, s->cluster_size);
    switch (t) {
    case QCOW2_SUBCLUSTER_NORMAL:
    case QCOW2_SUBCLUSTER_ZERO_ALLOC:
    case QCOW2_SUBCLUSTER_UNALLOCATED_ALLOC:
        if (keep_old) {
            *cow_to = t == QCOW2_SUBCLUSTER_NORMAL ? to : ROUND_UP(to, s->subcluster_size);
        } else {
            *cow_to = cluster_end;
            if (s->extended_l2) {
                int skip = QKIT_MIN(s->subclusters_per_cluster - sc - 1,
                                    clz32_or_32((uint32_t)b));
                *cow_to -= (uint64_t)skip << sc_bits;
            }
        }
        break;
    case QCOW2_SUBCLUSTER_COMPRESSED:
        *cow_to = cluster_end;
        break;
    default:
        *cow_to = ROUND_UP(to, s->subcluster_size);
        break;
    }
}

/* Fill host [host, host+len) with the current guest content at guest [guest, guest+len). */
int qcow2_do_cow(BlockDriverState *bs, uint64_t guest, uint64_t host, uint64_t len)
{
    if (!len) {
        return 0;
    }
    uint8_t *tmp = malloc(len);
    if (!tmp) {
        return -ENOMEM;
    }
    int ret = qcow2_pread(bs, guest, len, tmp, 0);
    if (ret == 0 && buffer_is_zero(tmp, len)) {
        /*
         * Zeroes (a new cluster with nothing below it): let the file zero the range
         * cheaply (fallocate) instead of writing a zero buffer, as QEMU does.
         */
        ret = bdrv_pwrite_zeroes(bs->file, (int64_t)host, (int64_t)len,
                                 BDRV_REQ_NO_FALLBACK);
        if (ret == 0) {
            free(tmp);
            return 0;
        }
        ret = 0;
    }
    if (ret == 0) {
        ret = bdrv_pwrite(bs->file, (int64_t)host, (int64_t)len, tmp, 0);
    }
    free(tmp);
    return ret;
}

/*
 * Write the start of [offset, offset+bytes) that fits one L2 table and one kind of
 * target (clusters we own, or clusters that need allocating). *done gets the bytes.
 */
static int write_run(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                     const uint8_t *buf, uint64_t *done)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t *l2;
    int l2_index;
    int ret = qcow2_get_cluster_table(bs, offset, &l2, &l2_index);
    if (ret < 0) {
        return ret;
    }
    uint64_t cs = s->cluster_size;
    uint64_t in_cluster = qcow2_offset_into_cluster(s, offset);
    uint64_t nb = qcow2_size_to_clusters(s, in_cluster + bytes);
    nb = QKIT_MIN(nb, (uint64_t)(s->l2_size - l2_index));
    uint64_t e0 = qcow2_get_l2_entry(s, l2, l2_index);
    bool keep_old = qcow2_cluster_reusable(bs, e0);
    uint64_t host_start = e0 & L2E_OFFSET_MASK;
    uint64_t k;
    if (keep_old && qcow2_offset_into_cluster(s, host_start)) {
        qcow2_signal_corruption(bs, true, -1, -1, "%s cluster offset %#" PRIx64
                                " unaligned (guest offset: %#" PRIx64 ")",
                                (e0 & QCOW_OFLAG_ZERO) ? "Preallocated zero" : "Data",
                                host_start, offset);
        ret = -EIO;
        goto out;
    }
    for (k = 1; k < nb; k++) {
        uint64_t e = qcow2_get_l2_entry(s, l2, l2_index + (int)k);
        bool reusable = qcow2_cluster_reusable(bs, e);
        if (keep_old ? (!reusable || (e & L2E_OFFSET_MASK) != host_start + k * cs)
                     : reusable) {
            break;
        }
    }
    uint64_t cur = QKIT_MIN(bytes, k * cs - in_cluster);
    uint64_t guest0 = qcow2_start_of_cluster(s, offset);
    uint64_t cow_from, cow_to;
    compute_cow(bs, l2, l2_index, (int)k, guest0, in_cluster, in_cluster + cur, keep_old,
                &cow_from, &cow_to);

    if (!keep_old) {
        int64_t h = qcow2_alloc_clusters(bs, k * cs);
        if (h < 0) {
            ret = (int)h;
            goto out;
        }
        if (h == 0) {
            qcow2_signal_corruption(bs, true, h, (int64_t)(k * cs),
                                    "Preventing invalid allocation of data cluster at "
                                    "offset 0");
            ret = -EIO;
            goto out;
        }
        host_start = (uint64_t)h;
    }

    /* A damaged table may point guest data at metadata: refuse, as QEMU does. */
    ret = qcow2_pre_write_overlap_check(bs, 0, host_start + cow_from, cow_to - cow_from);
    /* Data first: COW head, the guest data, COW tail. */
    if (ret == 0) {
        ret = qcow2_do_cow(bs, guest0 + cow_from, host_start + cow_from, in_cluster - cow_from);
    }
    if (ret == 0) {
        ret = bdrv_pwrite(bs->file, (int64_t)(host_start + in_cluster), (int64_t)cur, buf, 0);
    }
    if (ret == 0) {
        ret = qcow2_do_cow(bs, guest0 + in_cluster + cur, host_start + in_cluster + cur,
                     cow_to - (in_cluster + cur));
    }
    if (ret < 0) {
        if (!keep_old) {
            qcow2_free_clusters(bs, (int64_t)host_start, (int64_t)(k * cs),
                                QCOW2_DISCARD_ALWAYS);
        }
        goto out;
    }

    /* Then the mapping; refcounts of new clusters must be on disk before it. */
    if (s->use_lazy_refcounts) {
        ret = qcow2_mark_dirty(bs);
        if (ret < 0) {
            goto out;
        }
    }
    if (!(s->incompatible_features & QCOW2_INCOMPAT_DIRTY)) {
        ret = qcow2_cache_set_dependency(bs, s->l2_table_cache, s->refcount_block_cache);
        if (ret < 0) {
            goto out;
        }
    }
    uint64_t old_entries_stack[64];
    uint64_t *old_entries = k <= 64 ? old_entries_stack : malloc(k * sizeof(uint64_t));
    if (!old_entries) {
        ret = -ENOMEM;
        goto out;
    }
    for (uint64_t i = 0; i < k; i++) {
        int idx = l2_index + (int)i;
        uint64_t old = qcow2_get_l2_entry(s, l2, idx);
        uint64_t new_entry = (host_start + i * cs) | QCOW_OFLAG_COPIED;
        old_entries[i] = old;
        if (s->extended_l2) {
            uint64_t bm = qcow2_get_l2_bitmap(s, l2, idx);
            uint64_t wfrom = QKIT_MAX(cow_from, i * cs);
            uint64_t wto = QKIT_MIN(cow_to, (i + 1) * cs);
            int first_sc = qcow2_offset_to_sc_index(s, wfrom);
            int last_sc = qcow2_offset_to_sc_index(s, wto - 1);
            bm |= QCOW_OFLAG_SUB_ALLOC_RANGE(first_sc, last_sc + 1);
            bm &= ~QCOW_OFLAG_SUB_ZERO_RANGE(first_sc, last_sc + 1);
            qcow2_set_l2_bitmap(s, l2, idx, bm);
        }
        qcow2_set_l2_entry(s, l2, idx, new_entry);
    }
    qcow2_cache_entry_mark_dirty(s->l2_table_cache, l2);
    qcow2_cache_put(s->l2_table_cache, (void **)&l2);
    if (!keep_old) {
        /* The old clusters are no longer referenced by this table. */
        for (uint64_t i = 0; i < k; i++) {
            qcow2_free_any_cluster(bs, old_entries[i], QCOW2_DISCARD_NEVER);
        }
    }
    if (old_entries != old_entries_stack) {
        free(old_entries);
    }
    *done = cur;
    return 0;
out:
    if (l2) {
        qcow2_cache_put(s->l2_table_cache, (void **)&l2);
    }
    return ret;
}

/*
 * Compress one cluster of guest data (src_size is the cluster size). Called by
 * convert's worker threads without the node lock: it reads only state fixed at open.
 * -ENOSPC when the result would not fit in dest_size.
 */
ssize_t qcow2_compress_cluster(BlockDriverState *bs, void *dest, size_t dest_size,
                               const void *src, size_t src_size)
{
    BDRVQcow2State *s = bs->opaque;
    ssize_t len = qcow2_compress(s, dest, dest_size, src, src_size);
    return len == -ENOMEM ? -ENOSPC : len;
}

/*
 * Store len bytes made by qcow2_compress_cluster as the guest cluster at offset,
 * which must be unallocated (compression never overwrites). The data goes to the
 * file before the L2 entry points at it, so a crash leaves at worst a leak.
 */
int qcow2_pwrite_compressed_cluster(BlockDriverState *bs, uint64_t offset, const void *data,
                                    size_t len)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t *l2;
    int l2_index;
    if (qcow2_has_data_file(s) || qcow2_offset_into_cluster(s, offset)) {
        return -EINVAL;
    }
    int ret = qcow2_get_cluster_table(bs, offset, &l2, &l2_index);
    if (ret < 0) {
        return ret;
    }
    if (qcow2_get_l2_entry(s, l2, l2_index) & L2E_OFFSET_MASK) {
        qcow2_cache_put(s->l2_table_cache, (void **)&l2);
        return -EIO;
    }
    int64_t h = qcow2_alloc_bytes(bs, (int)len);
    if (h < 0) {
        qcow2_cache_put(s->l2_table_cache, (void **)&l2);
        return (int)h;
    }
    ret = bdrv_pwrite(bs->file, h, len, data, 0);
    if (ret < 0) {
        qcow2_cache_put(s->l2_table_cache, (void **)&l2);
        return ret;
    }
    uint64_t nb_csectors = ((uint64_t)h + (uint64_t)len - 1) / QCOW2_COMPRESSED_SECTOR_SIZE -
                           (uint64_t)h / QCOW2_COMPRESSED_SECTOR_SIZE;
    uint64_t desc = (uint64_t)h | QCOW_OFLAG_COMPRESSED | (nb_csectors << s->csize_shift);
    qcow2_cache_entry_mark_dirty(s->l2_table_cache, l2);
    qcow2_set_l2_entry(s, l2, l2_index, desc);
    qcow2_set_l2_bitmap(s, l2, l2_index, 0);
    qcow2_cache_put(s->l2_table_cache, (void **)&l2);
    qcow2_bitmaps_mark_dirty(bs, offset, s->cluster_size, 0);
    return 0;
}

/* Compressed write of whole clusters (or the last, partial cluster of the disk). */
static int write_compressed(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                            const uint8_t *buf)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    if (qcow2_has_data_file(s)) {
        return -ENOTSUP;
    }
    if (qcow2_offset_into_cluster(s, offset)) {
        return -EINVAL;
    }
    if (qcow2_offset_into_cluster(s, bytes) && offset + bytes != s->size) {
        return -EINVAL;
    }
    uint8_t *in = malloc(cs);
    uint8_t *out = malloc(cs);
    int ret = 0;
    if (!in || !out) {
        ret = -ENOMEM;
        goto out;
    }
    while (bytes) {
        uint64_t chunk = QKIT_MIN(bytes, cs);
        memset(in, 0, cs);
        memcpy(in, buf, chunk);
        ssize_t len = qcow2_compress(s, out, cs - 1, in, cs);
        if (len == -ENOMEM) {
            /* Does not shrink: store it uncompressed. */
            ret = qcow2_pwrite(bs, offset, chunk, buf, 0);
        } else if (len < 0) {
            ret = -EINVAL;
        } else {
            ret = qcow2_pwrite_compressed_cluster(bs, offset, out, (size_t)len);
        }
        if (ret < 0) {
            break;
        }
        offset += chunk;
        bytes -= chunk;
        buf += chunk;
    }
out:
    free(in);
    free(out);
    return ret;
}

int qcow2_pwrite(BlockDriverState *bs, uint64_t offset, uint64_t bytes, const void *vbuf,
                 int flags)
{
    BDRVQcow2State *s = bs->opaque;
    const uint8_t *buf = vbuf;
    if (s->unusable) {
        return -ENOMEDIUM;
    }
    qcow2_bitmaps_mark_dirty(bs, offset, bytes, flags);
    if (s->incompatible_features & QCOW2_INCOMPAT_CORRUPT) {
        return -EIO;
    }
    if (flags & BDRV_REQ_WRITE_COMPRESSED) {
        return write_compressed(bs, offset, bytes, buf);
    }
    while (bytes) {
        uint64_t done = 0;
        int ret = write_run(bs, offset, bytes, buf, &done);
        if (ret < 0) {
            return ret;
        }
        offset += done;
        bytes -= done;
        buf += done;
    }
    return 0;
}

/* ---- Zeroing and discard ---- */

static bool cluster_type_allocated(Qcow2ClusterType t)
{
    return t == QCOW2_CLUSTER_COMPRESSED || t == QCOW2_CLUSTER_NORMAL ||
           t == QCOW2_CLUSTER_ZERO_ALLOC;
}

/* Mark nb whole clusters from offset (within one L2 table) as zero; returns how many. */
static int64_t zero_in_l2(BlockDriverState *bs, uint64_t offset, uint64_t nb, int flags)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t *l2;
    int l2_index;
    int ret = qcow2_get_cluster_table(bs, offset, &l2, &l2_index);
    if (ret < 0) {
        return ret;
    }
    nb = QKIT_MIN(nb, (uint64_t)(s->l2_size - l2_index));
    for (uint64_t i = 0; i < nb; i++) {
        int idx = l2_index + (int)i;
        uint64_t old = qcow2_get_l2_entry(s, l2, idx);
        uint64_t old_bm = qcow2_get_l2_bitmap(s, l2, idx);
        Qcow2ClusterType t = qcow2_get_cluster_type(bs, old);
        bool unmap = t == QCOW2_CLUSTER_COMPRESSED ||
                     ((flags & BDRV_REQ_MAY_UNMAP) && cluster_type_allocated(t));
        uint64_t new_entry = unmap ? 0 : old;
        uint64_t new_bm = old_bm;
        if (s->extended_l2) {
            new_bm = QCOW2_L2_BITMAP_ALL_ZEROES;
        } else {
            new_entry |= QCOW_OFLAG_ZERO;
        }
        if (old == new_entry && old_bm == new_bm) {
            continue;
        }
        qcow2_cache_entry_mark_dirty(s->l2_table_cache, l2);
        qcow2_set_l2_entry(s, l2, idx, new_entry);
        qcow2_set_l2_bitmap(s, l2, idx, new_bm);
        if (unmap) {
            qcow2_free_any_cluster(bs, old, QCOW2_DISCARD_REQUEST);
        }
    }
    qcow2_cache_put(s->l2_table_cache, (void **)&l2);
    return (int64_t)nb;
}

/* Mark nb subclusters from offset (inside one cluster) as zero (extended L2 only). */
static int zero_subclusters(BlockDriverState *bs, uint64_t offset, int nb)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t *l2;
    int l2_index;
    int ret = qcow2_get_cluster_table(bs, offset, &l2, &l2_index);
    if (ret < 0) {
        return ret;
    }
    uint64_t e = qcow2_get_l2_entry(s, l2, l2_index);
    Qcow2ClusterType t = qcow2_get_cluster_type(bs, e);
    if (t == QCOW2_CLUSTER_COMPRESSED) {
        /* A compressed cluster cannot be zeroed in part. */
        ret = -ENOTSUP;
    } else {
        int sc = qcow2_offset_to_sc_index(s, offset);
        uint64_t old_bm = qcow2_get_l2_bitmap(s, l2, l2_index);
        uint64_t bm = old_bm | QCOW_OFLAG_SUB_ZERO_RANGE(sc, sc + nb);
        bm &= ~QCOW_OFLAG_SUB_ALLOC_RANGE(sc, sc + nb);
        if (bm != old_bm) {
            qcow2_set_l2_bitmap(s, l2, l2_index, bm);
            qcow2_cache_entry_mark_dirty(s->l2_table_cache, l2);
        }
    }
    qcow2_cache_put(s->l2_table_cache, (void **)&l2);
    return ret;
}

int qcow2_subcluster_zeroize(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                             int flags)
{
    BDRVQcow2State *s = bs->opaque;
    if (s->qcow_version < 3) {
        /*
         * No zero flag before v3; without a backing file an unallocated cluster
         * reads as zeroes, so (as QEMU does) the clusters are discarded instead.
         */
        if (bs->backing) {
            return -ENOTSUP;
        }
        return qcow2_cluster_discard(bs, offset, bytes, QCOW2_DISCARD_REQUEST, false);
    }
    uint64_t end = offset + bytes;
    uint64_t head = QKIT_MIN(end, ROUND_UP(offset, s->cluster_size)) - offset;
    offset += head;
    uint64_t tail = end >= s->size ? 0 : end - QKIT_MAX(offset, qcow2_start_of_cluster(s, end));
    end -= tail;
    int ret;
    if (head) {
        ret = zero_subclusters(bs, offset - head, (int)DIV_ROUND_UP(head, s->subcluster_size));
        if (ret < 0) {
            return ret;
        }
    }
    uint64_t nb = end > offset ? qcow2_size_to_clusters(s, end - offset) : 0;
    while (nb > 0) {
        int64_t n = zero_in_l2(bs, offset, nb, flags);
        if (n < 0) {
            return (int)n;
        }
        nb -= (uint64_t)n;
        offset += (uint64_t)n * s->cluster_size;
    }
    if (tail) {
        ret = zero_subclusters(bs, end, (int)DIV_ROUND_UP(tail, s->subcluster_size));
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* True if [offset, offset+bytes) of the guest view reads as zeroes (cheap check only). */
static bool range_is_zero(BlockDriverState *bs, uint64_t offset, uint64_t bytes)
{
    while (bytes) {
        int64_t pnum;
        int ret = bdrv_block_status_above(bs, NULL, (int64_t)offset, (int64_t)bytes, &pnum,
                                          NULL, NULL, NULL);
        if (ret < 0 || !(ret & BDRV_BLOCK_ZERO) || pnum <= 0) {
            return false;
        }
        offset += (uint64_t)pnum;
        bytes -= QKIT_MIN(bytes, (uint64_t)pnum);
    }
    return true;
}

/* Write a zero buffer through the normal write path (fallback for zeroing). */
static int write_zero_buffer(BlockDriverState *bs, uint64_t offset, uint64_t bytes)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t chunk = QKIT_MIN(bytes, QKIT_MAX(s->cluster_size, 1ULL << 20));
    uint8_t *z = calloc(1, chunk);
    if (!z) {
        return -ENOMEM;
    }
    int ret = 0;
    while (bytes && ret == 0) {
        uint64_t n = QKIT_MIN(bytes, chunk);
        ret = qcow2_pwrite(bs, offset, n, z, 0);
        offset += n;
        bytes -= n;
    }
    free(z);
    return ret;
}

/* Zero a piece smaller than a subcluster: only if the rest of it already reads as zero. */
static int zero_partial(BlockDriverState *bs, uint64_t offset, uint64_t bytes, int flags)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t start = ROUND_DOWN(offset, s->subcluster_size);
    uint64_t end = QKIT_MIN(start + s->subcluster_size, s->size);
    bool ok = (s->qcow_version >= 3 || !bs->backing) &&
              range_is_zero(bs, start, offset - start) &&
              range_is_zero(bs, offset + bytes, end - (offset + bytes));
    if (ok) {
        uint64_t n = end - start, host;
        Qcow2SubclusterType t;
        int ret = qcow2_get_host_offset(bs, start, &n, &host, &t);
        if (ret < 0) {
            return ret;
        }
        ok = t == QCOW2_SUBCLUSTER_UNALLOCATED_PLAIN || t == QCOW2_SUBCLUSTER_UNALLOCATED_ALLOC ||
             t == QCOW2_SUBCLUSTER_ZERO_PLAIN || t == QCOW2_SUBCLUSTER_ZERO_ALLOC;
    }
    if (ok && qcow2_subcluster_zeroize(bs, start, end - start, flags) == 0) {
        return 0;
    }
    if (flags & BDRV_REQ_NO_FALLBACK) {
        return -ENOTSUP;
    }
    return write_zero_buffer(bs, offset, bytes);
}

int qcow2_pwrite_zeroes(BlockDriverState *bs, uint64_t offset, uint64_t bytes, int flags)
{
    BDRVQcow2State *s = bs->opaque;
    if (s->unusable) {
        return -ENOMEDIUM;
    }
    qcow2_bitmaps_mark_dirty(bs, offset, bytes, flags);
    if (s->incompatible_features & QCOW2_INCOMPAT_CORRUPT) {
        return -EIO;
    }
    uint64_t end = offset + bytes;
    uint64_t sc = s->subcluster_size;
    uint64_t astart = ROUND_UP(offset, sc);
    uint64_t aend = end >= s->size ? end : ROUND_DOWN(end, sc);
    int ret;
    if (astart >= aend) {
        /* Everything inside one subcluster. */
        return zero_partial(bs, offset, bytes, flags);
    }
    if (astart > offset) {
        ret = zero_partial(bs, offset, astart - offset, flags);
        if (ret < 0) {
            return ret;
        }
    }
    ret = qcow2_subcluster_zeroize(bs, astart, aend - astart, flags);
    if (ret == -ENOTSUP) {
        if (flags & BDRV_REQ_NO_FALLBACK) {
            return ret;
        }
        ret = write_zero_buffer(bs, astart, aend - astart);
    }
    if (ret < 0) {
        return ret;
    }
    if (end > aend) {
        ret = zero_partial(bs, aend, end - aend, flags);
    }
    return ret;
}

/* Discard nb whole clusters from offset within one L2 table; returns how many. */
static int64_t discard_in_l2(BlockDriverState *bs, uint64_t offset, uint64_t nb,
                             Qcow2DiscardType type, bool full_discard)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t *l2;
    int l2_index;
    int ret = qcow2_get_cluster_table(bs, offset, &l2, &l2_index);
    if (ret < 0) {
        return ret;
    }
    nb = QKIT_MIN(nb, (uint64_t)(s->l2_size - l2_index));
    for (uint64_t i = 0; i < nb; i++) {
        int idx = l2_index + (int)i;
        uint64_t old = qcow2_get_l2_entry(s, l2, idx);
        uint64_t old_bm = qcow2_get_l2_bitmap(s, l2, idx);
        uint64_t new_entry = old, new_bm = old_bm;
        Qcow2ClusterType t = qcow2_get_cluster_type(bs, old);
        if (full_discard) {
            new_entry = 0;
            new_bm = 0;
        } else if (bs->backing || cluster_type_allocated(t)) {
            /* The discarded range must read as zeroes, not as the backing file. */
            if (s->extended_l2) {
                new_entry = 0;
                new_bm = QCOW2_L2_BITMAP_ALL_ZEROES;
            } else {
                new_entry = s->qcow_version >= 3 ? QCOW_OFLAG_ZERO : 0;
            }
        }
        if (old == new_entry && old_bm == new_bm) {
            continue;
        }
        qcow2_cache_entry_mark_dirty(s->l2_table_cache, l2);
        qcow2_set_l2_entry(s, l2, idx, new_entry);
        qcow2_set_l2_bitmap(s, l2, idx, new_bm);
        qcow2_free_any_cluster(bs, old, type);
    }
    qcow2_cache_put(s->l2_table_cache, (void **)&l2);
    return (int64_t)nb;
}

int qcow2_cluster_discard(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                          Qcow2DiscardType type, bool full_discard)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t nb = qcow2_size_to_clusters(s, bytes);
    while (nb > 0) {
        int64_t n = discard_in_l2(bs, offset, nb, type, full_discard);
        if (n < 0) {
            return (int)n;
        }
        nb -= (uint64_t)n;
        offset += (uint64_t)n * s->cluster_size;
    }
    return 0;
}

int qcow2_pdiscard(BlockDriverState *bs, uint64_t offset, uint64_t bytes)
{
    BDRVQcow2State *s = bs->opaque;
    if (s->unusable) {
        return -ENOMEDIUM;
    }
    qcow2_bitmaps_mark_dirty(bs, offset, bytes, 0);
    if (s->incompatible_features & QCOW2_INCOMPAT_CORRUPT) {
        return -EIO;
    }
    /* Without the zero flag (v2), a discarded cluster would show the backing file. */
    if (s->qcow_version < 3 && bs->backing) {
        return -ENOTSUP;
    }
    uint64_t end = offset + bytes;
    uint64_t start = ROUND_UP(offset, s->cluster_size);
    /* Partial clusters are left alone, except the partial last cluster of the disk. */
    uint64_t aend = end >= s->size ? end : ROUND_DOWN(end, s->cluster_size);
    if (aend <= start) {
        return 0;
    }
    return qcow2_cluster_discard(bs, start, aend - start, QCOW2_DISCARD_REQUEST, false);
}

/* ---- Block status ---- */

/*
 * True when far more clusters are allocated than the file really holds: metadata
 * preallocation, where data clusters may be holes that read as zeroes.
 */
static bool detect_metadata_preallocation(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    int64_t file_length = bdrv_getlength(bs->file);
    int64_t real = bdrv_get_allocated_file_size(bs->file);
    if (file_length < 0 || real < 0) {
        return false;
    }
    int64_t real_clusters = real / (int64_t)s->cluster_size;
    int64_t threshold = QKIT_MAX(real_clusters * 10 / 9, real_clusters + 2);
    int64_t end = (int64_t)qcow2_size_to_clusters(s, (uint64_t)file_length);
    int64_t count = 0;
    for (int64_t i = 0; i < end && count < threshold; i++) {
        uint64_t refcount;
        if (qcow2_get_refcount(bs, (uint64_t)i, &refcount) < 0) {
            return false;
        }
        count += refcount != 0;
    }
    return count >= threshold;
}

int qcow2_block_status(BlockDriverState *bs, bool want_zero, uint64_t offset, uint64_t bytes,
                       uint64_t *pnum, uint64_t *map, BlockDriverState **file)
{
    BDRVQcow2State *s = bs->opaque;
    if (!s->metadata_preallocation_checked) {
        s->metadata_preallocation = detect_metadata_preallocation(bs);
        s->metadata_preallocation_checked = true;
    }
    uint64_t n = QKIT_MIN(bytes, (uint64_t)INT32_MAX);
    uint64_t host;
    Qcow2SubclusterType type;
    int ret = qcow2_get_host_offset(bs, offset, &n, &host, &type);
    if (ret < 0) {
        return ret;
    }
    *pnum = n;
    int status = 0;
    if (sctype_has_host(type)) {
        *map = host;
        *file = bs->file;
        status |= BDRV_BLOCK_OFFSET_VALID;
    }
    if (type == QCOW2_SUBCLUSTER_ZERO_PLAIN || type == QCOW2_SUBCLUSTER_ZERO_ALLOC) {
        status |= BDRV_BLOCK_ZERO;
    } else if (type != QCOW2_SUBCLUSTER_UNALLOCATED_PLAIN &&
               type != QCOW2_SUBCLUSTER_UNALLOCATED_ALLOC) {
        status |= BDRV_BLOCK_DATA;
    }
    if (s->metadata_preallocation && (status & BDRV_BLOCK_DATA) &&
        (status & BDRV_BLOCK_OFFSET_VALID)) {
        status |= BDRV_BLOCK_RECURSE;
    }
    if (type == QCOW2_SUBCLUSTER_COMPRESSED) {
        status |= BDRV_BLOCK_COMPRESSED;
    }
    return status;
}
