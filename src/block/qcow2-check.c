/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2 consistency check and repair.
 *
 * The check walks every structure that owns host clusters (header, L1 and L2 tables of
 * the active image and of every snapshot, data and compressed clusters, the refcount
 * table and blocks, the snapshot table, the encryption header, bitmaps) and counts the
 * references to each cluster in an in-memory refcount array laid out exactly like
 * refcount blocks. Then the stored refcounts are compared with the counted ones:
 * stored > counted is a leak, stored < counted a corruption.
 *
 * Repair: leaks and too-low refcounts are fixed in place; when a cluster in use has no
 * refcount at all, or the refcount table itself is broken, the whole refcount structure
 * is rebuilt from the in-memory array (written to free space, then the header switched
 * to it), after which the old structures show up as leaks and are freed.
 *
 * Diagnostics: QEMU's check prints one line per problem to stderr from the driver, and
 * scripts and golden outputs depend on those lines. For drop-in fidelity this file is
 * the one place in the block layer that prints: the lines go to stderr with QEMU's
 * wording. Everything else is reported through BdrvCheckResult and the return value.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2.h"
#include "qkit/cutils.h"

#define L1E_SIZE 8
#define REFTABLE_ENTRY_SIZE 8
#define SECTOR_SIZE 512
/* check_refcounts_l1 flag: count allocation and fragmentation (active image only). */
#define CHECK_FRAG_INFO 0x2

/* Bitmap directory entry: fixed part, then extra data, name, padding to 8. */
#define BME_FIXED_SIZE 24
#define BME_ALIGN 8
#define BME_TABLE_ENTRY_SIZE 8
#define BME_TABLE_ENTRY_OFFSET_MASK 0x00fffffffffffe00ULL
#define BME_TABLE_ENTRY_RESERVED_MASK 0xff000000000001feULL
#define BME_TABLE_ENTRY_FLAG_ALL_ONES 1ULL
#define BME_MAX_TABLE_BYTES (64ULL << 20)

/* State of one check run: the image and the in-memory refcount array. */
typedef struct CheckState {
    BlockDriverState *bs;
    BDRVQcow2State *s;
    uint8_t *refs;        /* refcount_bits per cluster, whole clusters of bytes */
    int64_t nb_clusters;  /* clusters the array describes */
    int64_t file_len;     /* length of bs->file, refreshed after it changes */
} CheckState;

/* Metadata kinds a repair write must not overwrite (QEMU's default "cached" checks). */
enum {
    OL_MAIN_HEADER = 1 << 0,
    OL_ACTIVE_L1 = 1 << 1,
    OL_ACTIVE_L2 = 1 << 2,
    OL_REFCOUNT_TABLE = 1 << 3,
    OL_REFCOUNT_BLOCK = 1 << 4,
    OL_SNAPSHOT_TABLE = 1 << 5,
    OL_INACTIVE_L1 = 1 << 6,
    OL_INACTIVE_L2 = 1 << 7,   /* not checked by default (needs disk reads) */
    OL_BITMAP_DIRECTORY = 1 << 8,
};
static const char *const ol_names[] = {
    "qcow2_header", "active L1 table", "active L2 table", "refcount table",
    "refcount block", "snapshot table", "inactive L1 table", "inactive L2 table",
    "bitmap directory",
};

/* True if [a, a + alen) and [b, b + blen) intersect. */
static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return alen && blen && a < b + blen && b < a + alen;
}

/* The first metadata kind (not in ign) that the clusters of the write touch, or 0. */
static int metadata_overlap(BDRVQcow2State *s, int ign, uint64_t offset, uint64_t size)
{
    int chk = ~ign & ~OL_INACTIVE_L2;
    if (!size) {
        return 0;
    }
    size = ROUND_UP(qcow2_offset_into_cluster(s, offset) + size, s->cluster_size);
    offset = qcow2_start_of_cluster(s, offset);
    if ((chk & OL_MAIN_HEADER) && offset < s->cluster_size) {
        return OL_MAIN_HEADER;
    }
    if ((chk & OL_ACTIVE_L1) &&
        ranges_overlap(offset, size, s->l1_table_offset, (uint64_t)s->l1_size * L1E_SIZE)) {
        return OL_ACTIVE_L1;
    }
    if (chk & OL_ACTIVE_L2) {
        for (uint32_t i = 0; i < s->l1_size; i++) {
            uint64_t l2 = s->l1_table[i] & L1E_OFFSET_MASK;
            if (l2 && ranges_overlap(offset, size, l2, s->cluster_size)) {
                return OL_ACTIVE_L2;
            }
        }
    }
    if ((chk & OL_REFCOUNT_TABLE) &&
        ranges_overlap(offset, size, s->refcount_table_offset,
                       (uint64_t)s->refcount_table_size * REFTABLE_ENTRY_SIZE)) {
        return OL_REFCOUNT_TABLE;
    }
    if (chk & OL_REFCOUNT_BLOCK) {
        for (uint32_t i = 0; i < s->refcount_table_size; i++) {
            uint64_t rb = s->refcount_table[i] & REFT_OFFSET_MASK;
            if (rb && ranges_overlap(offset, size, rb, s->cluster_size)) {
                return OL_REFCOUNT_BLOCK;
            }
        }
    }
    if ((chk & OL_SNAPSHOT_TABLE) &&
        ranges_overlap(offset, size, s->snapshots_offset, s->snapshots_size)) {
        return OL_SNAPSHOT_TABLE;
    }
    if (chk & OL_INACTIVE_L1) {
        for (int i = 0; i < s->nb_snapshots; i++) {
            if (ranges_overlap(offset, size, s->snapshots[i].l1_table_offset,
                               (uint64_t)s->snapshots[i].l1_size * L1E_SIZE)) {
                return OL_INACTIVE_L1;
            }
        }
    }
    if ((chk & OL_BITMAP_DIRECTORY) && (s->autoclear_features & QCOW2_AUTOCLEAR_BITMAPS) &&
        ranges_overlap(offset, size, s->bitmaps_ext.bitmap_directory_offset,
                       s->bitmaps_ext.bitmap_directory_size)) {
        return OL_BITMAP_DIRECTORY;
    }
    return 0;
}

int qcow2_pre_write_overlap_check(BlockDriverState *bs, int ign, uint64_t offset,
                                  uint64_t size)
{
    int ol = metadata_overlap(bs->opaque, ign, offset, size);
    if (!ol) {
        return 0;
    }
    qcow2_signal_corruption(bs, true, (int64_t)offset, (int64_t)size, "Preventing invalid "
                            "write on metadata (overlaps with %s)",
                            ol_names[__builtin_ctz((unsigned)ol)]);
    return -EIO;
}

/* Bytes of refcount array for n clusters, rounded to whole clusters (writable as-is). */
static uint64_t refs_bytes(const BDRVQcow2State *s, int64_t n)
{
    uint64_t bytes = DIV_ROUND_UP((uint64_t)n * (uint64_t)s->refcount_bits, 8);
    return ROUND_UP(bytes, s->cluster_size);
}

/* Make the array describe new_size clusters, zeroing what is new. */
static int refs_resize(CheckState *c, int64_t new_size)
{
    uint64_t old_bytes = refs_bytes(c->s, c->nb_clusters);
    uint64_t new_bytes = refs_bytes(c->s, new_size);
    if (c->refs && old_bytes == new_bytes) {
        c->nb_clusters = new_size;
        return 0;
    }
    if (new_bytes > SIZE_MAX) {
        return -ENOMEM;
    }
    uint8_t *p = realloc(c->refs, new_bytes ? new_bytes : c->s->cluster_size);
    if (!p) {
        return -ENOMEM;
    }
    if (!c->refs) {
        old_bytes = 0;
    }
    if (new_bytes > old_bytes) {
        memset(p + old_bytes, 0, new_bytes - old_bytes);
    }
    c->refs = p;
    c->nb_clusters = new_size;
    return 0;
}

static uint64_t refs_get(const CheckState *c, int64_t i)
{
    return qcow2_refblock_get(c->s, c->refs, (uint64_t)i);
}

static void refs_set(CheckState *c, int64_t i, uint64_t v)
{
    qcow2_refblock_set(c->s, c->refs, (uint64_t)i, v);
}

/* Re-read the file length (after the file was truncated or written past its end). */
static int refresh_file_len(CheckState *c)
{
    int64_t len = bdrv_getlength(c->bs->file);
    if (len < 0) {
        return (int)len;
    }
    c->file_len = len;
    return 0;
}

/* Count one reference to every cluster touching [offset, offset + size). */
static int inc_refcounts(CheckState *c, BdrvCheckResult *res, int64_t offset, int64_t size)
{
    BDRVQcow2State *s = c->s;
    if (size <= 0) {
        return 0;
    }
    /*
     * The last cluster may be partly past EOF; a whole cluster past it is an error
     * (and so is a range that does not fit in 63 bits, from a corrupt offset).
     */
    if (offset < 0 || size > INT64_MAX - offset ||
        offset + size - c->file_len >= (int64_t)s->cluster_size) {
        fprintf(stderr, "ERROR: counting reference for region exceeding the end of the "
                "file by one cluster or more: offset 0x%" PRIx64 " size 0x%" PRIx64 "\n",
                (uint64_t)offset, (uint64_t)size);
        res->corruptions++;
        return 0;
    }
    uint64_t start = qcow2_start_of_cluster(s, (uint64_t)offset);
    uint64_t last = qcow2_start_of_cluster(s, (uint64_t)(offset + size - 1));
    for (uint64_t off = start; off <= last; off += s->cluster_size) {
        int64_t k = (int64_t)(off >> s->cluster_bits);
        if (k >= c->nb_clusters) {
            int ret = refs_resize(c, k + 1);
            if (ret < 0) {
                res->check_errors++;
                return ret;
            }
        }
        uint64_t rc = refs_get(c, k);
        if (rc == s->refcount_max) {
            fprintf(stderr, "ERROR: overflow cluster offset=0x%" PRIx64 "\n", off);
            fprintf(stderr, "Use qemu-img amend to increase the refcount entry width or "
                    "qemu-img convert to create a clean copy if the image cannot be opened "
                    "for writing\n");
            res->corruptions++;
            continue;
        }
        refs_set(c, k, rc + 1);
    }
    return 0;
}

/* Write one L2 entry straight to disk (repair of a bad entry found by the walk). */
static int write_l2_entry(CheckState *c, uint64_t l2_offset, int idx, const uint64_t *l2)
{
    BDRVQcow2State *s = c->s;
    size_t words = (size_t)s->l2_entry_size / 8;
    int ret = bdrv_pwrite(c->bs->file, (int64_t)(l2_offset + (uint64_t)idx * s->l2_entry_size),
                          8, &l2[(size_t)idx * words], 0);
    if (ret == 0) {
        ret = bdrv_flush(c->bs->file);
    }
    qcow2_cache_discard(s->l2_table_cache, l2_offset);
    return ret;
}

/* Walk one L2 table: count the clusters it uses and check each entry. */
static int check_refcounts_l2(CheckState *c, BdrvCheckResult *res, uint64_t l2_offset,
                              int flags, int fix, bool active)
{
    BDRVQcow2State *s = c->s;
    BlockDriverState *bs = c->bs;
    uint64_t next_contiguous = 0;
    int ret;

    uint64_t *l2 = malloc(s->cluster_size);
    if (!l2) {
        res->check_errors++;
        return -ENOMEM;
    }
    ret = bdrv_pread(bs->file, (int64_t)l2_offset, (int64_t)s->cluster_size, l2, 0);
    if (ret < 0) {
        fprintf(stderr, "ERROR: I/O error in check_refcounts_l2\n");
        res->check_errors++;
        goto out;
    }

    for (int i = 0; i < s->l2_size; i++) {
        uint64_t entry = qcow2_get_l2_entry(s, l2, i);
        uint64_t bitmap = qcow2_get_l2_bitmap(s, l2, i);
        Qcow2ClusterType type = qcow2_get_cluster_type(bs, entry);

        if (type != QCOW2_CLUSTER_COMPRESSED && (entry & L2E_STD_RESERVED_MASK)) {
            fprintf(stderr, "ERROR found l2 entry with reserved bits set: %" PRIx64 "\n",
                    entry);
            res->corruptions++;
        }

        switch (type) {
        case QCOW2_CLUSTER_COMPRESSED: {
            if (entry & QCOW_OFLAG_COPIED) {
                fprintf(stderr, "ERROR: coffset=0x%" PRIx64 ": copied flag must never be "
                        "set for compressed clusters\n", entry & s->cluster_offset_mask);
                entry &= ~QCOW_OFLAG_COPIED;
                res->corruptions++;
            }
            if (qcow2_has_data_file(s)) {
                fprintf(stderr, "ERROR compressed cluster %d with data file, "
                        "entry=0x%" PRIx64 "\n", i, entry);
                res->corruptions++;
                break;
            }
            if (bitmap) {
                fprintf(stderr, "ERROR compressed cluster %d with non-zero subcluster "
                        "allocation bitmap, entry=0x%" PRIx64 "\n", i, entry);
                res->corruptions++;
                break;
            }
            uint64_t coffset, csize;
            qcow2_parse_compressed_l2_entry(bs, entry, &coffset, &csize);
            ret = inc_refcounts(c, res, (int64_t)coffset, (int64_t)csize);
            if (ret < 0) {
                goto out;
            }
            if (flags & CHECK_FRAG_INFO) {
                res->allocated_clusters++;
                res->compressed_clusters++;
                /* Compressed clusters share sectors: always count them as fragmented. */
                res->fragmented_clusters++;
            }
            break;
        }

        case QCOW2_CLUSTER_ZERO_ALLOC:
        case QCOW2_CLUSTER_NORMAL: {
            uint64_t offset = entry & L2E_OFFSET_MASK;
            if ((bitmap >> 32) & bitmap) {
                res->corruptions++;
                fprintf(stderr, "ERROR offset=%" PRIx64 ": Allocated cluster has corrupted "
                        "subcluster allocation bitmap\n", offset);
            }
            if (qcow2_offset_into_cluster(s, offset)) {
                bool has_data = s->extended_l2 ? (bitmap & QCOW2_L2_BITMAP_ALL_ALLOC) != 0
                                               : !(entry & QCOW_OFLAG_ZERO);
                res->corruptions++;
                if (!has_data) {
                    fprintf(stderr, "%s offset=%" PRIx64 ": Preallocated cluster is not "
                            "properly aligned; L2 entry corrupted.\n",
                            (fix & BDRV_FIX_ERRORS) ? "Repairing" : "ERROR", offset);
                    if (fix & BDRV_FIX_ERRORS) {
                        qcow2_set_l2_entry(s, l2, i, s->extended_l2 ? 0 : QCOW_OFLAG_ZERO);
                        ret = qcow2_pre_write_overlap_check(
                            bs, active ? OL_ACTIVE_L2 : OL_INACTIVE_L2,
                            l2_offset + (uint64_t)i * s->l2_entry_size, 8);
                        if (ret < 0) {
                            fprintf(stderr, "ERROR: Overlap check failed\n");
                            res->check_errors++;
                            /* Something is badly wrong: stop looking at this table. */
                            goto out;
                        }
                        ret = write_l2_entry(c, l2_offset, i, l2);
                        if (ret < 0) {
                            fprintf(stderr, "ERROR: Failed to overwrite L2 table entry: "
                                    "%s\n", strerror(-ret));
                            res->check_errors++;
                        } else {
                            res->corruptions--;
                            res->corruptions_fixed++;
                            /* The entry no longer references the cluster. */
                            continue;
                        }
                    }
                } else {
                    fprintf(stderr, "ERROR offset=%" PRIx64 ": Data cluster is not properly "
                            "aligned; L2 entry corrupted.\n", offset);
                }
            }
            if (flags & CHECK_FRAG_INFO) {
                res->allocated_clusters++;
                if (next_contiguous && offset != next_contiguous) {
                    res->fragmented_clusters++;
                }
                next_contiguous = offset + s->cluster_size;
            }
            if (!qcow2_has_data_file(s)) {
                ret = inc_refcounts(c, res, (int64_t)offset, (int64_t)s->cluster_size);
                if (ret < 0) {
                    goto out;
                }
            }
            break;
        }

        case QCOW2_CLUSTER_ZERO_PLAIN:
            break;

        case QCOW2_CLUSTER_UNALLOCATED:
            if (bitmap & QCOW2_L2_BITMAP_ALL_ALLOC) {
                res->corruptions++;
                fprintf(stderr, "ERROR: Unallocated cluster has non-zero subcluster "
                        "allocation map\n");
            }
            break;
        }
    }
    ret = 0;
out:
    free(l2);
    return ret;
}

/* Walk an L1 table (active or a snapshot's) and every L2 table it points at. */
static int check_refcounts_l1(CheckState *c, BdrvCheckResult *res, uint64_t l1_offset,
                              uint32_t l1_size, int flags, int fix, bool active)
{
    BDRVQcow2State *s = c->s;
    int ret;

    if (!l1_size) {
        return 0;
    }
    ret = inc_refcounts(c, res, (int64_t)l1_offset, (int64_t)l1_size * L1E_SIZE);
    if (ret < 0) {
        return ret;
    }
    uint64_t *l1 = malloc((size_t)l1_size * L1E_SIZE);
    if (!l1) {
        res->check_errors++;
        return -ENOMEM;
    }
    ret = qcow2_read_l1_table(c->bs, l1_offset, l1_size, l1);
    if (ret < 0) {
        fprintf(stderr, "ERROR: I/O error in check_refcounts_l1\n");
        res->check_errors++;
        goto out;
    }
    for (uint32_t i = 0; i < l1_size; i++) {
        if (!l1[i]) {
            continue;
        }
        if (l1[i] & L1E_RESERVED_MASK) {
            fprintf(stderr, "ERROR found L1 entry with reserved bits set: %" PRIx64 "\n",
                    l1[i]);
            res->corruptions++;
        }
        uint64_t l2_offset = l1[i] & L1E_OFFSET_MASK;
        ret = inc_refcounts(c, res, (int64_t)l2_offset, (int64_t)s->cluster_size);
        if (ret < 0) {
            goto out;
        }
        if (qcow2_offset_into_cluster(s, l2_offset)) {
            fprintf(stderr, "ERROR l2_offset=%" PRIx64 ": Table is not cluster aligned; L1 "
                    "entry corrupted\n", l2_offset);
            res->corruptions++;
        }
        ret = check_refcounts_l2(c, res, l2_offset, flags, fix, active);
        if (ret < 0) {
            goto out;
        }
    }
    ret = 0;
out:
    free(l1);
    return ret;
}

/* Count the clusters of the persistent bitmaps: directory, bitmap tables, bitmap data. */
static int check_bitmaps_refcounts(CheckState *c, BdrvCheckResult *res)
{
    BDRVQcow2State *s = c->s;
    uint8_t *dir = NULL;
    uint64_t *table = NULL;
    int ret = 0;

    /* Without the autoclear bit the extension is stale: its clusters are not in use. */
    if (!s->has_bitmaps_ext || !(s->autoclear_features & QCOW2_AUTOCLEAR_BITMAPS) ||
        s->bitmaps_ext.nb_bitmaps == 0) {
        return 0;
    }
    uint64_t dir_off = s->bitmaps_ext.bitmap_directory_offset;
    uint64_t dir_size = s->bitmaps_ext.bitmap_directory_size;
    ret = inc_refcounts(c, res, (int64_t)dir_off, (int64_t)dir_size);
    if (ret < 0) {
        return ret;
    }
    if (dir_size > BME_MAX_TABLE_BYTES || (dir = malloc(dir_size ? dir_size : 1)) == NULL ||
        bdrv_pread(c->bs->file, (int64_t)dir_off, (int64_t)dir_size, dir, 0) < 0) {
        res->corruptions++;
        ret = -EINVAL;
        goto out;
    }
    uint64_t pos = 0;
    for (uint32_t n = 0; n < s->bitmaps_ext.nb_bitmaps; n++) {
        if (pos + BME_FIXED_SIZE > dir_size) {
            res->corruptions++;
            ret = -EINVAL;
            goto out;
        }
        uint64_t table_off;
        uint32_t table_size, extra_size;
        uint16_t name_size;
        memcpy(&table_off, dir + pos, 8);
        memcpy(&table_size, dir + pos + 8, 4);
        memcpy(&name_size, dir + pos + 18, 2);
        memcpy(&extra_size, dir + pos + 20, 4);
        table_off = be64toh(table_off);
        table_size = be32toh(table_size);
        name_size = be16toh(name_size);
        extra_size = be32toh(extra_size);
        pos = ROUND_UP(pos + BME_FIXED_SIZE + extra_size + name_size, BME_ALIGN);

        uint64_t table_bytes = (uint64_t)table_size * BME_TABLE_ENTRY_SIZE;
        ret = inc_refcounts(c, res, (int64_t)table_off, (int64_t)table_bytes);
        if (ret < 0) {
            goto out;
        }
        if (table_bytes > BME_MAX_TABLE_BYTES) {
            res->corruptions++;
            ret = -EINVAL;
            goto out;
        }
        free(table);
        table = malloc(table_bytes ? table_bytes : 1);
        if (!table || bdrv_pread(c->bs->file, (int64_t)table_off, (int64_t)table_bytes,
                                 table, 0) < 0) {
            res->corruptions++;
            ret = -EINVAL;
            goto out;
        }
        for (uint32_t i = 0; i < table_size; i++) {
            uint64_t e = be64toh(table[i]);
            uint64_t off = e & BME_TABLE_ENTRY_OFFSET_MASK;
            if ((e & BME_TABLE_ENTRY_RESERVED_MASK) ||
                (off && ((e & BME_TABLE_ENTRY_FLAG_ALL_ONES) ||
                         qcow2_offset_into_cluster(s, off)))) {
                res->corruptions++;
                continue;
            }
            if (off) {
                ret = inc_refcounts(c, res, (int64_t)off, (int64_t)s->cluster_size);
                if (ret < 0) {
                    goto out;
                }
            }
        }
    }
    ret = 0;
out:
    free(table);
    free(dir);
    return ret;
}

/*
 * Check the refcount table entries and count the refcount blocks. A block past the end
 * of the file is repaired (with BDRV_FIX_ERRORS) by growing the file to hold it.
 */
static int check_refblocks(CheckState *c, BdrvCheckResult *res, int fix, bool *rebuild)
{
    BDRVQcow2State *s = c->s;
    int ret;

    for (uint64_t i = 0; i < s->refcount_table_size; i++) {
        uint64_t offset = s->refcount_table[i] & REFT_OFFSET_MASK;
        uint64_t cluster = offset >> s->cluster_bits;

        if (s->refcount_table[i] & REFT_RESERVED_MASK) {
            fprintf(stderr, "ERROR refcount table entry %" PRId64 " has reserved bits set\n",
                    (int64_t)i);
            res->corruptions++;
            *rebuild = true;
            continue;
        }
        if (qcow2_offset_into_cluster(s, offset)) {
            fprintf(stderr, "ERROR refcount block %" PRId64 " is not cluster aligned; "
                    "refcount table entry corrupted\n", (int64_t)i);
            res->corruptions++;
            *rebuild = true;
            continue;
        }
        if (cluster >= (uint64_t)c->nb_clusters) {
            res->corruptions++;
            fprintf(stderr, "%s refcount block %" PRId64 " is outside image\n",
                    (fix & BDRV_FIX_ERRORS) ? "Repairing" : "ERROR", (int64_t)i);
            if (fix & BDRV_FIX_ERRORS) {
                Error *err = NULL;
                if (offset > (uint64_t)INT64_MAX - s->cluster_size) {
                    ret = -EINVAL;
                    goto resize_fail;
                }
                ret = bdrv_truncate(c->bs->file, (int64_t)(offset + s->cluster_size), false,
                                    PREALLOC_MODE_OFF, &err);
                if (ret < 0) {
                    fprintf(stderr, "%s: %s\n", error_get_progname(), error_get_pretty(err));
                    error_free(err);
                    goto resize_fail;
                }
                ret = refresh_file_len(c);
                if (ret < 0) {
                    goto resize_fail;
                }
                int64_t new_nb = (int64_t)qcow2_size_to_clusters(s, (uint64_t)c->file_len);
                if (new_nb > c->nb_clusters) {
                    ret = refs_resize(c, new_nb);
                    if (ret < 0) {
                        res->check_errors++;
                        return ret;
                    }
                }
                if (cluster >= (uint64_t)c->nb_clusters) {
                    ret = -EINVAL;
                    goto resize_fail;
                }
                res->corruptions--;
                res->corruptions_fixed++;
                ret = inc_refcounts(c, res, (int64_t)offset, (int64_t)s->cluster_size);
                if (ret < 0) {
                    return ret;
                }
                /* The new cluster reads as zeroes: refcount exactly 1 now, nothing more. */
                continue;
resize_fail:
                *rebuild = true;
                fprintf(stderr, "ERROR could not resize image: %s\n", strerror(-ret));
            }
            continue;
        }
        if (offset) {
            ret = inc_refcounts(c, res, (int64_t)offset, (int64_t)s->cluster_size);
            if (ret < 0) {
                return ret;
            }
            uint64_t rc = refs_get(c, (int64_t)cluster);
            if (rc != 1) {
                fprintf(stderr, "ERROR refcount block %" PRId64 " refcount=%" PRIu64 "\n",
                        (int64_t)i, rc);
                res->corruptions++;
                *rebuild = true;
            }
        }
    }
    return 0;
}

/* Count every reference in the image into c->refs (which is all zero on entry). */
static int calculate_refcounts(CheckState *c, BdrvCheckResult *res, int fix, bool *rebuild)
{
    BDRVQcow2State *s = c->s;
    int ret = refresh_file_len(c);
    if (ret < 0) {
        res->check_errors++;
        return ret;
    }
    if (!c->refs) {
        ret = refs_resize(c, c->nb_clusters);
        if (ret < 0) {
            res->check_errors++;
            return ret;
        }
    }

    /* The header cluster. */
    ret = inc_refcounts(c, res, 0, (int64_t)s->cluster_size);
    if (ret < 0) {
        return ret;
    }
    ret = check_refcounts_l1(c, res, s->l1_table_offset, s->l1_size, CHECK_FRAG_INFO, fix,
                             true);
    if (ret < 0) {
        return ret;
    }

    if (qcow2_has_data_file(s) && s->nb_snapshots) {
        fprintf(stderr, "ERROR %d snapshots in image with data file\n", s->nb_snapshots);
        res->corruptions++;
    }
    for (int i = 0; i < s->nb_snapshots; i++) {
        const Qcow2Snapshot *sn = &s->snapshots[i];
        if (qcow2_offset_into_cluster(s, sn->l1_table_offset)) {
            fprintf(stderr, "ERROR snapshot %s (%s) l1_offset=%#" PRIx64 ": L1 table is not "
                    "cluster aligned; snapshot table entry corrupted\n",
                    sn->id_str, sn->name, sn->l1_table_offset);
            res->corruptions++;
            continue;
        }
        if (sn->l1_size > QCOW2_MAX_L1_BYTES / L1E_SIZE) {
            fprintf(stderr, "ERROR snapshot %s (%s) l1_size=%#" PRIx32 ": L1 table is too "
                    "large; snapshot table entry corrupted\n",
                    sn->id_str, sn->name, sn->l1_size);
            res->corruptions++;
            continue;
        }
        ret = check_refcounts_l1(c, res, sn->l1_table_offset, sn->l1_size, 0, fix, false);
        if (ret < 0) {
            return ret;
        }
    }
    ret = inc_refcounts(c, res, (int64_t)s->snapshots_offset, s->snapshots_size);
    if (ret < 0) {
        return ret;
    }
    ret = inc_refcounts(c, res, (int64_t)s->refcount_table_offset,
                        (int64_t)s->refcount_table_size * REFTABLE_ENTRY_SIZE);
    if (ret < 0) {
        return ret;
    }
    if (s->crypto_header_length) {
        ret = inc_refcounts(c, res, (int64_t)s->crypto_header_offset,
                            (int64_t)s->crypto_header_length);
        if (ret < 0) {
            return ret;
        }
    }
    ret = check_bitmaps_refcounts(c, res);
    if (ret < 0) {
        return ret;
    }
    return check_refblocks(c, res, fix, rebuild);
}

/*
 * Compare stored refcounts with the counted ones, fixing what fix allows. A cluster in
 * use whose stored refcount is 0 cannot be fixed in place: it asks for a rebuild.
 */
static void compare_refcounts(CheckState *c, BdrvCheckResult *res, int fix, bool *rebuild,
                              int64_t *highest_cluster)
{
    BDRVQcow2State *s = c->s;
    *highest_cluster = 0;
    for (int64_t i = 0; i < c->nb_clusters; i++) {
        uint64_t stored;
        int ret = qcow2_get_refcount(c->bs, (uint64_t)i, &stored);
        if (ret < 0) {
            fprintf(stderr, "Can't get refcount for cluster %" PRId64 ": %s\n", i,
                    strerror(-ret));
            res->check_errors++;
            continue;
        }
        uint64_t counted = refs_get(c, i);
        if (stored > 0 || counted > 0) {
            *highest_cluster = i;
        }
        if (stored == counted) {
            continue;
        }
        int *num_fixed = NULL;
        if (stored == 0) {
            *rebuild = true;
        } else if (stored > counted && (fix & BDRV_FIX_LEAKS)) {
            num_fixed = &res->leaks_fixed;
        } else if (stored < counted && (fix & BDRV_FIX_ERRORS)) {
            num_fixed = &res->corruptions_fixed;
        }
        fprintf(stderr, "%s cluster %" PRId64 " refcount=%" PRIu64 " reference=%" PRIu64 "\n",
                num_fixed ? "Repairing" : stored < counted ? "ERROR" : "Leaked",
                i, stored, counted);
        if (num_fixed) {
            bool decrease = stored > counted;
            uint64_t diff = decrease ? stored - counted : counted - stored;
            ret = qcow2_update_refcount(c->bs, i << s->cluster_bits, 1, diff, decrease,
                                        QCOW2_DISCARD_ALWAYS);
            if (ret >= 0) {
                (*num_fixed)++;
                continue;
            }
        }
        if (stored < counted) {
            res->corruptions++;
        } else {
            res->leaks++;
        }
    }
}

/*
 * Find cluster_count free clusters in a row in the in-memory array from
 * *first_free on (growing the array past the image end if needed), mark them used
 * and return their host offset.
 */
static int64_t alloc_clusters_imrt(CheckState *c, int64_t cluster_count, int64_t *first_free)
{
    BDRVQcow2State *s = c->s;
    int64_t cluster = *first_free;
    int64_t run = 0;
    bool first_gap = true;

    for (; cluster < c->nb_clusters && run < cluster_count; cluster++) {
        if (!refs_get(c, cluster)) {
            run++;
            if (first_gap) {
                *first_free = cluster;
                first_gap = false;
            }
        } else {
            run = 0;
        }
    }
    if (run < cluster_count) {
        /* The run continues past the end of the array: cluster is its end so far. */
        int ret = refs_resize(c, cluster + cluster_count - run);
        if (ret < 0) {
            return ret;
        }
    }
    cluster -= run;
    for (int64_t i = 0; i < cluster_count; i++) {
        refs_set(c, cluster + i, 1);
    }
    return cluster << s->cluster_bits;
}

/*
 * Rebuild helper: for every refcount block of [first_cluster, end_cluster) that has a
 * nonzero entry, make sure it has a place (allocating one in the array if needed) and
 * write the array's slice there. Returns 1 if the new reftable had to grow, 0 if not,
 * or -errno.
 */
static int write_refblocks(CheckState *c, int64_t first_cluster, int64_t end_cluster,
                           uint64_t **reftable, uint32_t *reftable_entries)
{
    BDRVQcow2State *s = c->s;
    int64_t first_free = 0;
    bool grown = false;

    for (int64_t cluster = first_cluster; cluster < end_cluster; cluster++) {
        if (!refs_get(c, cluster)) {
            continue;
        }
        int64_t rb_index = cluster >> s->refcount_block_bits;
        int64_t rb_start = rb_index << s->refcount_block_bits;
        uint64_t rb_offset;

        if ((uint64_t)rb_index < *reftable_entries && (*reftable)[rb_index]) {
            rb_offset = (*reftable)[rb_index];
        } else {
            /* Never place a block inside a block range already written. */
            if (first_free < rb_start) {
                first_free = rb_start;
            }
            int64_t off = alloc_clusters_imrt(c, 1, &first_free);
            if (off < 0) {
                fprintf(stderr, "%s: ERROR allocating refblock: %s\n", error_get_progname(),
                        strerror((int)-off));
                return (int)off;
            }
            rb_offset = (uint64_t)off;
            int64_t rb_cluster = off >> s->cluster_bits;
            if (rb_cluster >= end_cluster) {
                /* The block that counts the new block must be written too. */
                end_cluster = rb_cluster + 1;
            }
            if ((uint64_t)rb_index >= *reftable_entries) {
                uint32_t old = *reftable_entries;
                uint64_t n = ROUND_UP(((uint64_t)rb_index + 1) * REFTABLE_ENTRY_SIZE,
                                      s->cluster_size) / REFTABLE_ENTRY_SIZE;
                uint64_t *t = realloc(*reftable, n * REFTABLE_ENTRY_SIZE);
                if (!t) {
                    fprintf(stderr, "%s: ERROR allocating reftable memory\n",
                            error_get_progname());
                    return -ENOMEM;
                }
                memset(t + old, 0, (n - old) * REFTABLE_ENTRY_SIZE);
                *reftable = t;
                *reftable_entries = (uint32_t)n;
                grown = true;
            }
            (*reftable)[rb_index] = rb_offset;
        }

        int ret = qcow2_pre_write_overlap_check(c->bs, 0, rb_offset, s->cluster_size);
        if (ret < 0) {
            fprintf(stderr, "%s: ERROR writing refblock: %s\n", error_get_progname(),
                    strerror(-ret));
            return ret;
        }
        /* The block is just the array's slice for its range. */
        ret = bdrv_pwrite(c->bs->file, (int64_t)rb_offset, (int64_t)s->cluster_size,
                              c->refs + (uint64_t)rb_index * s->cluster_size, 0);
        if (ret < 0) {
            fprintf(stderr, "%s: ERROR writing refblock: %s\n", error_get_progname(),
                    strerror(-ret));
            return ret;
        }
        cluster = rb_start + (int64_t)s->refcount_block_size - 1;
    }
    return grown ? 1 : 0;
}

/*
 * Replace the refcount structure by one built from the in-memory array: refcount
 * blocks and a new table in free space, then the header switched to them. The old
 * blocks and table become leaks for the caller to free.
 */
static int rebuild_refcount_structure(CheckState *c, BdrvCheckResult *res)
{
    BDRVQcow2State *s = c->s;
    uint64_t *reftable = NULL;
    uint32_t entries = 0;
    int64_t reftable_offset = -1;
    uint64_t reftable_clusters = 0;
    int ret;

    /* New refcount structures go to free clusters: discard the freed ones first. */
    qcow2_process_discards(c->bs);
    ret = qcow2_cache_empty(c->bs, s->refcount_block_cache);
    if (ret < 0) {
        res->check_errors++;
        return ret;
    }
    ret = write_refblocks(c, 0, c->nb_clusters, &reftable, &entries);
    if (ret < 0) {
        res->check_errors++;
        goto fail;
    }

    /* Placing the table changes the counts it sits in; repeat until it stops growing. */
    for (;;) {
        int64_t first_free = 0;
        reftable_clusters = qcow2_size_to_clusters(s, (uint64_t)entries * REFTABLE_ENTRY_SIZE);
        reftable_offset = alloc_clusters_imrt(c, (int64_t)reftable_clusters, &first_free);
        if (reftable_offset < 0) {
            fprintf(stderr, "%s: ERROR allocating reftable: %s\n", error_get_progname(),
                    strerror((int)-reftable_offset));
            res->check_errors++;
            ret = (int)reftable_offset;
            goto fail;
        }
        int64_t start = reftable_offset >> s->cluster_bits;
        int64_t end = start + (int64_t)reftable_clusters;
        ret = write_refblocks(c, start, end, &reftable, &entries);
        if (ret < 0) {
            res->check_errors++;
            goto fail;
        }
        if (ret == 0) {
            break;
        }
        /* Grown: give the space back and look for a bigger one. */
        for (int64_t i = start; i < end; i++) {
            refs_set(c, i, 0);
        }
    }

    uint64_t table_bytes = (uint64_t)entries * REFTABLE_ENTRY_SIZE;
    ret = qcow2_pre_write_overlap_check(c->bs, 0, (uint64_t)reftable_offset, table_bytes);
    if (ret < 0) {
        fprintf(stderr, "%s: ERROR writing reftable: %s\n", error_get_progname(),
                strerror(-ret));
        goto fail;
    }
    for (uint32_t i = 0; i < entries; i++) {
        reftable[i] = htobe64(reftable[i]);
    }
    ret = bdrv_pwrite(c->bs->file, reftable_offset, (int64_t)table_bytes, reftable, 0);
    for (uint32_t i = 0; i < entries; i++) {
        reftable[i] = be64toh(reftable[i]);
    }
    if (ret < 0) {
        fprintf(stderr, "%s: ERROR writing reftable: %s\n", error_get_progname(),
                strerror(-ret));
        goto fail;
    }
    ret = bdrv_flush(c->bs->file);
    if (ret < 0) {
        goto fail;
    }

    /* Header: refcount_table_offset (8 bytes) and refcount_table_clusters (4 bytes). */
    uint8_t hdr[12];
    uint64_t off_be = htobe64((uint64_t)reftable_offset);
    uint32_t clusters_be = htobe32((uint32_t)reftable_clusters);
    _Static_assert(offsetof(Qcow2Header, refcount_table_clusters) ==
                   offsetof(Qcow2Header, refcount_table_offset) + 8, "reftable pointer layout");
    memcpy(hdr, &off_be, 8);
    memcpy(hdr + 8, &clusters_be, 4);
    ret = bdrv_pwrite(c->bs->file, offsetof(Qcow2Header, refcount_table_offset), sizeof(hdr),
                      hdr, 0);
    if (ret == 0) {
        ret = bdrv_flush(c->bs->file);
    }
    if (ret < 0) {
        fprintf(stderr, "%s: ERROR setting reftable: %s\n", error_get_progname(),
                strerror(-ret));
        goto fail;
    }

    free(s->refcount_table);
    s->refcount_table = reftable;
    s->refcount_table_offset = (uint64_t)reftable_offset;
    s->refcount_table_size = entries;
    s->max_refcount_table_index = 0;
    for (uint32_t i = 0; i < entries; i++) {
        if (reftable[i]) {
            s->max_refcount_table_index = i;
        }
    }
    s->free_cluster_index = 0;
    return 0;

fail:
    free(reftable);
    return ret;
}

/* Add the counters of src to out; allocation info only when asked. */
static void add_check_result(BdrvCheckResult *out, const BdrvCheckResult *src, bool alloc_info)
{
    out->corruptions += src->corruptions;
    out->leaks += src->leaks;
    out->check_errors += src->check_errors;
    out->corruptions_fixed += src->corruptions_fixed;
    out->leaks_fixed += src->leaks_fixed;
    if (alloc_info) {
        out->image_end_offset = src->image_end_offset;
        out->total_clusters = src->total_clusters;
        out->allocated_clusters = src->allocated_clusters;
        out->fragmented_clusters = src->fragmented_clusters;
        out->compressed_clusters = src->compressed_clusters;
    }
}

/*
 * OFLAG_COPIED must be set exactly on active L1/L2 entries whose cluster has refcount 1.
 * Runs after the refcounts were fixed; with only BDRV_FIX_LEAKS it repairs only if
 * everything else is clean (so the refcounts it relies on are right).
 */
static int check_oflag_copied(CheckState *c, BdrvCheckResult *res, int fix)
{
    BlockDriverState *bs = c->bs;
    BDRVQcow2State *s = c->s;
    bool repair;
    int ret = 0;

    if (fix & BDRV_FIX_ERRORS) {
        repair = true;
    } else if (fix & BDRV_FIX_LEAKS) {
        repair = !res->check_errors && !res->corruptions && !res->leaks;
    } else {
        repair = false;
    }
    uint64_t *l2 = malloc(s->cluster_size);
    if (!l2) {
        res->check_errors++;
        return -ENOMEM;
    }

    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t l1e = s->l1_table[i];
        uint64_t l2_offset = l1e & L1E_OFFSET_MASK;
        uint64_t refcount;
        int dirty = 0;

        if (!l2_offset) {
            continue;
        }
        if (qcow2_get_refcount(bs, l2_offset >> s->cluster_bits, &refcount) < 0) {
            continue;
        }
        if ((refcount == 1) != ((l1e & QCOW_OFLAG_COPIED) != 0)) {
            res->corruptions++;
            fprintf(stderr, "%s OFLAG_COPIED L2 cluster: l1_index=%d l1_entry=%" PRIx64
                    " refcount=%" PRIu64 "\n", repair ? "Repairing" : "ERROR", (int)i, l1e,
                    refcount);
            if (repair) {
                s->l1_table[i] = refcount == 1 ? l1e | QCOW_OFLAG_COPIED
                                               : l1e & ~QCOW_OFLAG_COPIED;
                ret = qcow2_write_l1_entry(bs, (int)i);
                if (ret < 0) {
                    res->check_errors++;
                    goto out;
                }
                res->corruptions--;
                res->corruptions_fixed++;
            }
        }

        ret = bdrv_pread(bs->file, (int64_t)l2_offset, (int64_t)s->cluster_size, l2, 0);
        if (ret < 0) {
            fprintf(stderr, "ERROR: Could not read L2 table: %s\n", strerror(-ret));
            res->check_errors++;
            goto out;
        }
        for (int j = 0; j < s->l2_size; j++) {
            uint64_t entry = qcow2_get_l2_entry(s, l2, j);
            Qcow2ClusterType type = qcow2_get_cluster_type(bs, entry);
            if (type != QCOW2_CLUSTER_NORMAL && type != QCOW2_CLUSTER_ZERO_ALLOC) {
                continue;
            }
            if (qcow2_has_data_file(s)) {
                refcount = 1;
            } else if (qcow2_get_refcount(bs, (entry & L2E_OFFSET_MASK) >> s->cluster_bits,
                                          &refcount) < 0) {
                continue;
            }
            if ((refcount == 1) != ((entry & QCOW_OFLAG_COPIED) != 0)) {
                res->corruptions++;
                fprintf(stderr, "%s OFLAG_COPIED data cluster: l2_entry=%" PRIx64
                        " refcount=%" PRIu64 "\n", repair ? "Repairing" : "ERROR", entry,
                        refcount);
                if (repair) {
                    qcow2_set_l2_entry(s, l2, j, refcount == 1 ? entry | QCOW_OFLAG_COPIED
                                                               : entry & ~QCOW_OFLAG_COPIED);
                    dirty++;
                }
            }
        }
        if (dirty) {
            ret = qcow2_pre_write_overlap_check(bs, OL_ACTIVE_L2, l2_offset, s->cluster_size);
            if (ret < 0) {
                fprintf(stderr, "ERROR: Could not write L2 table; metadata overlap check "
                        "failed: %s\n", strerror(-ret));
                res->check_errors++;
                goto out;
            }
            ret = bdrv_pwrite(bs->file, (int64_t)l2_offset, (int64_t)s->cluster_size, l2, 0);
            qcow2_cache_discard(s->l2_table_cache, l2_offset);
            if (ret < 0) {
                fprintf(stderr, "ERROR: Could not write L2 table: %s\n", strerror(-ret));
                res->check_errors++;
                goto out;
            }
            res->corruptions -= dirty;
            res->corruptions_fixed += dirty;
        }
    }
    ret = 0;
out:
    free(l2);
    return ret;
}

/* The refcount part of the check: count, compare, repair, then OFLAG_COPIED. */
static int check_refcounts(BlockDriverState *bs, BdrvCheckResult *res, int fix)
{
    BDRVQcow2State *s = bs->opaque;
    CheckState c = { .bs = bs, .s = s };
    BdrvCheckResult pre_compare;
    int64_t highest_cluster = 0;
    bool rebuild = false;
    int ret;

    int64_t size = bdrv_getlength(bs->file);
    if (size < 0) {
        res->check_errors++;
        return (int)size;
    }
    c.nb_clusters = (int64_t)qcow2_size_to_clusters(s, (uint64_t)size);
    if (c.nb_clusters > INT32_MAX) {
        res->check_errors++;
        return -EFBIG;
    }
    res->total_clusters = qcow2_size_to_clusters(s, ROUND_UP(s->size, SECTOR_SIZE));

    ret = calculate_refcounts(&c, res, fix, &rebuild);
    if (ret < 0) {
        goto out;
    }
    /* Without a rebuild but with fix, the comparison is redone with repair. */
    pre_compare = *res;
    compare_refcounts(&c, res, 0, &rebuild, &highest_cluster);

    if (rebuild && (fix & BDRV_FIX_ERRORS)) {
        BdrvCheckResult old = *res;
        int fresh_leaks = 0;

        fprintf(stderr, "Rebuilding refcount structure\n");
        ret = rebuild_refcount_structure(&c, res);
        if (ret < 0) {
            goto out;
        }
        res->corruptions = 0;
        res->leaks = 0;

        /* Count again against the new structure. */
        rebuild = false;
        memset(c.refs, 0, refs_bytes(s, c.nb_clusters));
        ret = calculate_refcounts(&c, res, 0, &rebuild);
        if (ret < 0) {
            goto out;
        }
        if (fix & BDRV_FIX_LEAKS) {
            /* The old structures are leaked now; free them, keep only new leaks. */
            BdrvCheckResult saved = *res;
            memset(res, 0, sizeof(*res));
            compare_refcounts(&c, res, BDRV_FIX_LEAKS, &rebuild, &highest_cluster);
            if (rebuild) {
                fprintf(stderr, "ERROR rebuilt refcount structure is still broken\n");
            }
            fresh_leaks = res->leaks;
            *res = saved;
        }
        if (res->corruptions < old.corruptions) {
            res->corruptions_fixed += old.corruptions - res->corruptions;
        }
        if (res->leaks < old.leaks) {
            res->leaks_fixed += old.leaks - res->leaks;
        }
        res->leaks += fresh_leaks;
    } else if (fix) {
        if (rebuild) {
            fprintf(stderr, "ERROR need to rebuild refcount structures\n");
            res->check_errors++;
            ret = -EIO;
            goto out;
        }
        if (res->leaks || res->corruptions) {
            *res = pre_compare;
            compare_refcounts(&c, res, fix, &rebuild, &highest_cluster);
        }
    }

    ret = check_oflag_copied(&c, res, fix);
    if (ret < 0) {
        goto out;
    }
    res->image_end_offset = (highest_cluster + 1) * (int64_t)s->cluster_size;
    ret = 0;
out:
    free(c.refs);
    return ret;
}

/*
 * Driver check callback (`qemu-img check`), also run by open on a dirty image with
 * lazy refcounts. With fix == 0 nothing is written.
 */
int qcow2_check(BlockDriverState *bs, BdrvCheckResult *res, int fix)
{
    BDRVQcow2State *s = bs->opaque;
    BdrvCheckResult snap_res, ref_res;
    int ret;

    memset(res, 0, sizeof(*res));
    memset(&snap_res, 0, sizeof(snap_res));
    memset(&ref_res, 0, sizeof(ref_res));

    if (fix) {
        /* Repairs write tables behind the caches: start with them on disk and empty. */
        ret = qcow2_cache_empty(bs, s->l2_table_cache);
        if (ret == 0) {
            ret = qcow2_cache_empty(bs, s->refcount_block_cache);
        }
        if (ret < 0) {
            res->check_errors++;
            return ret;
        }
    }

    ret = qcow2_check_read_snapshot_table(bs, &snap_res, fix);
    if (ret < 0) {
        add_check_result(res, &snap_res, false);
        return ret;
    }
    ret = check_refcounts(bs, &ref_res, fix);
    add_check_result(res, &ref_res, true);
    if (ret < 0) {
        add_check_result(res, &snap_res, false);
        return ret;
    }
    ret = qcow2_check_fix_snapshot_table(bs, &snap_res, fix);
    add_check_result(res, &snap_res, false);
    if (ret < 0) {
        return ret;
    }
    if (fix && res->check_errors == 0 && res->corruptions == 0) {
        ret = qcow2_mark_clean(bs);
        if (ret < 0) {
            return ret;
        }
        return qcow2_mark_consistent(bs);
    }
    return ret;
}
