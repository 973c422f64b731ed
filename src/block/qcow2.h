/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2 format driver: private state and the functions the driver's files share.
 *
 * Files:
 *   qcow2.c          open/close/create/probe, header and header extensions, driver table
 *   qcow2-cluster.c  L1/L2 lookup and allocation, guest I/O, compressed clusters
 *   qcow2-prealloc.c preallocation on create/resize, make_empty
 *   qcow2-refcount.c refcount table and blocks, host cluster allocation and freeing
 *   qcow2-cache.c    cache of L2 tables and refcount blocks
 *   qcow2-check.c    check/repair                    (qcow2_check)
 *   qcow2-snapshot.c internal snapshots              (qcow2_snapshot_*, snapshot table)
 *   qcow2-amend.c    amend                           (qcow2_amend)
 *   qcow2-bitmap.c   persistent dirty bitmaps        (qcow2_bitmaps_*, qcow2_bitmap_*)
 *   qcow2-vmstate.c  snapshot read in place, VM state (qcow2_snapshot_load_tmp, *_vmstate)
 *
 * In memory, the L1 table and the refcount table are kept in host byte order; cached
 * L2 tables and refcount blocks are kept exactly as on disk (big endian).
 *
 * Crash safety: a new cluster is referenced only after its refcount is on disk, and
 * a cluster is freed only after the last reference to it is on disk. The caches carry
 * a dependency (L2 cache depends on the refcount cache) so that flushing writes
 * refcount blocks before the L2 tables that use them; the L1 table is written after.
 * Freed clusters are queued, and discarded in bs->file only at the end of the operation
 * once the caches are written and flushed (qcow2_process_discards); a cluster allocated
 * again before that leaves the queue.
 */
#ifndef QKIT_QCOW2_H
#define QKIT_QCOW2_H

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "qkit/block.h"
#include "qkit/error.h"

/* ---- On-disk constants ---- */

#define QCOW2_MAGIC 0x514649fbU          /* "QFI\xfb" */
#define QCOW2_VERSION_MIN 2
#define QCOW2_VERSION_MAX 3

#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define QCOW2_DEFAULT_CLUSTER_BITS 16
#define QCOW2_MIN_EXTL2_CLUSTER_BITS 14

#define QCOW2_V2_HEADER_LENGTH 72
#define QCOW2_V3_MIN_HEADER_LENGTH 104
#define QCOW2_HEADER_LENGTH 112           /* header_length qemu-img 7.2 writes for v3 */

#define QCOW2_MAX_BACKING_FILE_NAME 1023
#define QCOW2_MAX_BACKING_FORMAT_LEN 31  /* what fits bs->backing_format */
#define QCOW2_MAX_L1_BYTES (32 * 1024 * 1024)       /* implementation limit */
#define QCOW2_MAX_REFTABLE_BYTES (8 * 1024 * 1024)  /* implementation limit */
#define QCOW2_MAX_SNAPSHOTS 65536
#define QCOW2_MAX_REFCOUNT_ORDER 6
#define QCOW2_DEFAULT_REFCOUNT_ORDER 4

#define QCOW2_CRYPT_NONE 0
#define QCOW2_CRYPT_AES 1
#define QCOW2_CRYPT_LUKS 2

#define QCOW2_COMPRESSION_ZLIB 0
#define QCOW2_COMPRESSION_ZSTD 1

/* Incompatible feature bits. */
#define QCOW2_INCOMPAT_DIRTY       (1ULL << 0)
#define QCOW2_INCOMPAT_CORRUPT     (1ULL << 1)
#define QCOW2_INCOMPAT_DATA_FILE   (1ULL << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ULL << 3)
#define QCOW2_INCOMPAT_EXTL2       (1ULL << 4)
#define QCOW2_INCOMPAT_MASK        0x1fULL
/* Compatible feature bits. */
#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ULL << 0)
#define QCOW2_COMPAT_MASK           0x1ULL
/* Autoclear feature bits. */
#define QCOW2_AUTOCLEAR_BITMAPS       (1ULL << 0)
#define QCOW2_AUTOCLEAR_DATA_FILE_RAW (1ULL << 1)
#define QCOW2_AUTOCLEAR_MASK          0x3ULL

/* Feature name table entry types. */
#define QCOW2_FEAT_TYPE_INCOMPATIBLE 0
#define QCOW2_FEAT_TYPE_COMPATIBLE   1
#define QCOW2_FEAT_TYPE_AUTOCLEAR    2

/* Header extension types. */
#define QCOW2_EXT_END            0x00000000U
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acaU
#define QCOW2_EXT_FEATURE_TABLE  0x6803f857U
#define QCOW2_EXT_BITMAPS        0x23852875U
#define QCOW2_EXT_CRYPTO_HEADER  0x0537be77U
#define QCOW2_EXT_DATA_FILE      0x44415441U

/* L1 / L2 / refcount table entry bits. */
#define QCOW_OFLAG_COPIED     (1ULL << 63)  /* refcount is exactly one */
#define QCOW_OFLAG_COMPRESSED (1ULL << 62)
#define QCOW_OFLAG_ZERO       (1ULL << 0)   /* standard cluster reads as zeroes (v3) */
#define L1E_OFFSET_MASK       0x00fffffffffffe00ULL
#define L2E_OFFSET_MASK       0x00fffffffffffe00ULL
#define L1E_RESERVED_MASK     0x7f000000000001ffULL
#define L2E_STD_RESERVED_MASK 0x3f000000000001feULL
#define REFT_OFFSET_MASK      0xfffffffffffffe00ULL
#define REFT_RESERVED_MASK    0x1ffULL

/* Compressed descriptors count 512-byte sectors. */
#define QCOW2_COMPRESSED_SECTOR_SIZE 512U
#define QCOW2_COMPRESSED_SECTOR_MASK (~(QCOW2_COMPRESSED_SECTOR_SIZE - 1ULL))

/* Extended L2: 32 subclusters per cluster; bitmap = alloc bits 0-31, zero bits 32-63. */
#define QCOW2_SUBCLUSTERS_PER_CLUSTER 32
#define QCOW2_L2_BITMAP_ALL_ALLOC 0x00000000ffffffffULL
#define QCOW2_L2_BITMAP_ALL_ZEROES 0xffffffff00000000ULL
#define QCOW_OFLAG_SUB_ALLOC(x)  (1ULL << (x))
#define QCOW_OFLAG_SUB_ZERO(x)   (1ULL << (32 + (x)))
/* Bits x .. y-1 (0 <= x <= y <= 32) of the allocation half / the zero half. */
#define QCOW_OFLAG_SUB_ALLOC_RANGE(x, y) \
    (((y) >= 32 ? 0xffffffffULL : ((1ULL << (y)) - 1)) & ~((1ULL << (x)) - 1))
#define QCOW_OFLAG_SUB_ZERO_RANGE(x, y) (QCOW_OFLAG_SUB_ALLOC_RANGE(x, y) << 32)

/* The fixed part of the header (v3 layout; v2 stops at refcount_order). */
typedef struct __attribute__((packed)) Qcow2Header {
    uint32_t magic;
    uint32_t version;
    uint64_t backing_file_offset;
    uint32_t backing_file_size;
    uint32_t cluster_bits;
    uint64_t size;
    uint32_t crypt_method;
    uint32_t l1_size;
    uint64_t l1_table_offset;
    uint64_t refcount_table_offset;
    uint32_t refcount_table_clusters;
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
    /* version 3 */
    uint64_t incompatible_features;
    uint64_t compatible_features;
    uint64_t autoclear_features;
    uint32_t refcount_order;
    uint32_t header_length;
    /* additional fields */
    uint8_t compression_type;
    uint8_t padding[7];
} Qcow2Header;
_Static_assert(sizeof(Qcow2Header) == QCOW2_HEADER_LENGTH, "qcow2 header layout");

/* One header extension's 8-byte prefix. */
typedef struct __attribute__((packed)) Qcow2ExtHeader {
    uint32_t magic;
    uint32_t len;
} Qcow2ExtHeader;
_Static_assert(sizeof(Qcow2ExtHeader) == 8, "qcow2 extension header layout");

#define QCOW2_FEATURE_NAME_LEN 46

/* One entry of the feature name table extension. */
typedef struct __attribute__((packed)) Qcow2Feature {
    uint8_t type;
    uint8_t bit;
    char name[QCOW2_FEATURE_NAME_LEN];
} Qcow2Feature;
_Static_assert(sizeof(Qcow2Feature) == 48, "qcow2 feature table entry layout");

/* The fixed part of a snapshot table entry (then extra data, id, name, padding). */
typedef struct __attribute__((packed)) Qcow2SnapshotHeader {
    uint64_t l1_table_offset;
    uint32_t l1_size;
    uint16_t id_str_size;
    uint16_t name_size;
    uint32_t date_sec;
    uint32_t date_nsec;
    uint64_t vm_clock_nsec;
    uint32_t vm_state_size;
    uint32_t extra_data_size;
} Qcow2SnapshotHeader;
_Static_assert(sizeof(Qcow2SnapshotHeader) == 40, "qcow2 snapshot header layout");

/* Known snapshot extra data (bytes 40..63 of an entry). */
typedef struct __attribute__((packed)) Qcow2SnapshotExtra {
    uint64_t vm_state_size_large;
    uint64_t disk_size;
    uint64_t icount;
} Qcow2SnapshotExtra;
_Static_assert(sizeof(Qcow2SnapshotExtra) == 24, "qcow2 snapshot extra layout");

/* The bitmaps header extension's data (kept as read, to be rewritten unchanged). */
typedef struct __attribute__((packed)) Qcow2BitmapHeaderExt {
    uint32_t nb_bitmaps;
    uint32_t reserved32;
    uint64_t bitmap_directory_size;
    uint64_t bitmap_directory_offset;
} Qcow2BitmapHeaderExt;
_Static_assert(sizeof(Qcow2BitmapHeaderExt) == 24, "qcow2 bitmaps extension layout");

/* ---- In-memory state ---- */

/* One internal snapshot, decoded from the snapshot table (host byte order). */
typedef struct Qcow2Snapshot {
    uint64_t l1_table_offset;
    uint32_t l1_size;
    char *id_str;
    char *name;
    uint64_t disk_size;
    uint64_t vm_state_size;
    uint32_t date_sec;
    uint32_t date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t icount;            /* -1ULL when not stored */
    uint32_t extra_data_size;   /* as read; extra data beyond what we know is kept */
    uint8_t *unknown_extra_data;
} Qcow2Snapshot;

/* A header extension this driver does not interpret, preserved on header rewrites. */
typedef struct Qcow2UnknownExt {
    uint32_t magic;
    uint32_t len;
    uint8_t *data;
    struct Qcow2UnknownExt *next;
} Qcow2UnknownExt;

/* What a guest cluster (or subcluster) maps to. */
typedef enum Qcow2ClusterType {
    QCOW2_CLUSTER_UNALLOCATED,
    QCOW2_CLUSTER_ZERO_PLAIN,   /* zero flag, no host cluster */
    QCOW2_CLUSTER_ZERO_ALLOC,   /* zero flag, host cluster kept (preallocated) */
    QCOW2_CLUSTER_NORMAL,
    QCOW2_CLUSTER_COMPRESSED,
} Qcow2ClusterType;

typedef enum Qcow2SubclusterType {
    QCOW2_SUBCLUSTER_UNALLOCATED_PLAIN, /* no host cluster, read from backing */
    QCOW2_SUBCLUSTER_UNALLOCATED_ALLOC, /* host cluster exists, subcluster not used */
    QCOW2_SUBCLUSTER_ZERO_PLAIN,
    QCOW2_SUBCLUSTER_ZERO_ALLOC,
    QCOW2_SUBCLUSTER_NORMAL,
    QCOW2_SUBCLUSTER_COMPRESSED,
    QCOW2_SUBCLUSTER_INVALID,           /* bitmap contradicts itself or the entry */
} Qcow2SubclusterType;

/* Why clusters are freed: decides whether the freed range is discarded in bs->file. */
typedef enum Qcow2DiscardType {
    QCOW2_DISCARD_NEVER,
    QCOW2_DISCARD_ALWAYS,
    QCOW2_DISCARD_REQUEST,   /* guest discard / write_zeroes with MAY_UNMAP */
    QCOW2_DISCARD_SNAPSHOT,  /* snapshot deletion */
    QCOW2_DISCARD_OTHER,     /* everything else (COW of shared clusters, ...) */
    QCOW2_DISCARD_MAX,
} Qcow2DiscardType;

typedef struct Qcow2Cache Qcow2Cache;

/* A freed range of bs->file waiting to be discarded (see qcow2_process_discards). */
typedef struct Qcow2DiscardRegion {
    uint64_t offset;
    uint64_t bytes;
} Qcow2DiscardRegion;

typedef struct BDRVQcow2State {
    /* Header fields, host byte order. */
    uint32_t qcow_version;
    uint32_t header_length;         /* 72 for v2 */
    uint32_t crypt_method;
    uint64_t incompatible_features;
    uint64_t compatible_features;
    uint64_t autoclear_features;
    uint8_t compression_type;       /* QCOW2_COMPRESSION_* */
    uint8_t *unknown_header_fields; /* header bytes beyond what we know (v3), kept */
    uint32_t unknown_header_fields_size;

    /* Geometry. */
    int cluster_bits;
    uint64_t cluster_size;
    uint64_t cluster_offset_mask;   /* host offset mask of a compressed descriptor */
    int csize_shift;                /* position of the sector count in a descriptor */
    uint64_t csize_mask;
    bool extended_l2;
    int l2_bits;                    /* log2(entries per L2 table) */
    int l2_size;                    /* entries per L2 table */
    int l2_entry_size;              /* 8, or 16 with extended_l2 */
    int subcluster_bits;
    uint64_t subcluster_size;
    int subclusters_per_cluster;    /* 1, or 32 with extended_l2 */
    uint64_t size;                  /* virtual disk size */

    /* Active L1 table (host byte order). */
    uint64_t l1_table_offset;
    uint32_t l1_size;               /* entries in use */
    uint32_t l1_vm_state_index;     /* first L1 index past the guest disk */
    uint64_t *l1_table;             /* l1_size entries (allocated rounded to a cluster) */

    /* Refcounts. */
    int refcount_order;
    int refcount_bits;
    uint64_t refcount_max;
    int refcount_block_bits;        /* log2(entries per refcount block) */
    uint64_t refcount_block_size;   /* entries per refcount block */
    uint64_t refcount_table_offset;
    uint32_t refcount_table_size;   /* entries */
    uint64_t *refcount_table;       /* host byte order */
    uint64_t max_refcount_table_index; /* highest used entry, for allocation */
    uint64_t free_cluster_index;    /* lowest cluster that may be free */
    uint64_t free_byte_offset;      /* tail of the last compressed allocation, or 0 */

    /* Caches. */
    Qcow2Cache *l2_table_cache;
    Qcow2Cache *refcount_block_cache;
    uint64_t l2_cache_size;         /* bytes */
    uint64_t refcount_cache_size;   /* bytes */
    uint64_t cache_clean_interval;  /* seconds; 0 = never */
    int64_t last_cache_clean_ns;

    /* Open state. */
    int flags;                      /* BDRV_O_* given to open */
    bool use_lazy_refcounts;
    bool signaled_corruption;       /* print the "marking corrupt" message once */
    bool unusable;                  /* fatal corruption: no more I/O or metadata writes */
    bool discard_passthrough[QCOW2_DISCARD_MAX];
    /* Freed clusters to discard once no metadata on disk points at them. */
    Qcow2DiscardRegion *discards;
    size_t nb_discards;
    size_t discards_alloc;
    bool metadata_preallocation_checked;
    bool metadata_preallocation;    /* block_status asks the file whether data is zero */

    /* Header extensions. */
    char *image_backing_file;       /* as stored, or NULL */
    char *image_backing_format;     /* backing format extension, or NULL */
    Qcow2UnknownExt *unknown_exts;  /* in file order */
    bool has_bitmaps_ext;
    Qcow2BitmapHeaderExt bitmaps_ext; /* host byte order */
    uint64_t crypto_header_offset;
    uint64_t crypto_header_length;
    char *image_data_file;          /* data file name extension, or NULL */

    /* Persistent dirty bitmaps in memory, newest first (qcow2-bitmap.c). */
    struct Qcow2DirtyBitmap *dirty_bitmaps;
    bool stale_bitmaps_ext;         /* found without its autoclear bit: to be dropped */

    /* Internal snapshots (read and written by qcow2-snapshot.c). */
    uint64_t snapshots_offset;
    uint32_t snapshots_size;        /* bytes of the table on disk */
    int nb_snapshots;
    Qcow2Snapshot *snapshots;
} BDRVQcow2State;

/* ---- Helpers on the geometry (inline, used by every file) ---- */

static inline uint64_t qcow2_start_of_cluster(const BDRVQcow2State *s, uint64_t off)
{
    return off & ~(s->cluster_size - 1);
}

static inline uint64_t qcow2_offset_into_cluster(const BDRVQcow2State *s, uint64_t off)
{
    return off & (s->cluster_size - 1);
}

static inline uint64_t qcow2_offset_into_subcluster(const BDRVQcow2State *s, uint64_t off)
{
    return off & (s->subcluster_size - 1);
}

static inline uint64_t qcow2_size_to_clusters(const BDRVQcow2State *s, uint64_t size)
{
    return (size + s->cluster_size - 1) >> s->cluster_bits;
}

static inline uint64_t qcow2_align_offset(uint64_t off, uint64_t n)
{
    return (off + n - 1) & ~(n - 1);
}

static inline uint32_t qcow2_offset_to_l1_index(const BDRVQcow2State *s, uint64_t off)
{
    return (uint32_t)(off >> (s->l2_bits + s->cluster_bits));
}

static inline int qcow2_offset_to_l2_index(const BDRVQcow2State *s, uint64_t off)
{
    return (int)((off >> s->cluster_bits) & (uint64_t)(s->l2_size - 1));
}

static inline int qcow2_offset_to_sc_index(const BDRVQcow2State *s, uint64_t off)
{
    return (int)((off >> s->subcluster_bits) & (uint64_t)(s->subclusters_per_cluster - 1));
}

/* Entries of L1 needed for a disk of size bytes. */
static inline uint64_t qcow2_l1_size_for(int cluster_bits, int l2_bits, uint64_t size)
{
    int shift = cluster_bits + l2_bits;
    return (size + (1ULL << shift) - 1) >> shift;
}

static inline bool qcow2_has_data_file(const BDRVQcow2State *s)
{
    return (s->incompatible_features & QCOW2_INCOMPAT_DATA_FILE) != 0;
}

/* Entry i of an L2 table as cached (big endian on disk); the bitmap is extended_l2 only. */
uint64_t qcow2_get_l2_entry(const BDRVQcow2State *s, const uint64_t *l2, int idx);
void qcow2_set_l2_entry(BDRVQcow2State *s, uint64_t *l2, int idx, uint64_t entry);
uint64_t qcow2_get_l2_bitmap(const BDRVQcow2State *s, const uint64_t *l2, int idx);
void qcow2_set_l2_bitmap(BDRVQcow2State *s, uint64_t *l2, int idx, uint64_t bitmap);

/* ---- qcow2.c ---- */

/* Rewrite the header cluster (fields, extensions, backing file name) from s. */
int qcow2_update_header(BlockDriverState *bs);
/* Set / clear the dirty bit on disk (lazy refcounts); clean flushes first. */
int qcow2_mark_dirty(BlockDriverState *bs);
int qcow2_mark_clean(BlockDriverState *bs);
/* Set the corrupt bit on disk; the image stays read-only until repaired. */
int qcow2_mark_corrupt(BlockDriverState *bs);
/* Clear the corrupt bit after a repair that fixed everything. */
int qcow2_mark_consistent(BlockDriverState *bs);
/*
 * Metadata inconsistency found during I/O: print "qcow2: Marking image as corrupt: ..."
 * once (or "Image is corrupt: ..." when not fatal), mark the image corrupt if fatal.
 */
void qcow2_signal_corruption(BlockDriverState *bs, bool fatal, int64_t offset, int64_t size,
                             const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Write back the L2 and refcount caches (refcount first) without flushing bs->file. */
int qcow2_write_caches(BlockDriverState *bs);
/* qcow2_write_caches + flush of bs->file. */
int qcow2_flush_caches(BlockDriverState *bs);
/*
 * Check a table described by the header or a snapshot: entries * entry_len must fit
 * max_size_bytes and offset must be cluster aligned. Errors "<table_name> too large"
 * / "<table_name> offset invalid" like QEMU's.
 */
int qcow2_validate_table(BlockDriverState *bs, uint64_t offset, uint64_t entries,
                         size_t entry_len, uint64_t max_size_bytes, const char *table_name,
                         Error **errp);
/* Compute refcount_bits / limits in s from s->refcount_order. */
void qcow2_set_refcount_order(BDRVQcow2State *s, int refcount_order);


/* ---- qcow2-bitmap.c ---- */

/* Open: check the bitmaps header extension's data (len bytes as read). */
int qcow2_bitmaps_read_ext(BlockDriverState *bs, const void *data, uint32_t len,
                           Error **errp);
/*
 * Open: load every bitmap; on a writable node mark them in-use on disk (then
 * *header_updated is true). Errors read like QEMU's open errors.
 */
int qcow2_bitmaps_load(BlockDriverState *bs, bool *header_updated, Error **errp);
/* Write every changed bitmap back (new tables and directory, in-use flags cleared). */
int qcow2_bitmaps_store(BlockDriverState *bs, Error **errp);
/* Close: store (writable nodes; a failure is reported, as QEMU does) and free. */
int qcow2_bitmaps_close(BlockDriverState *bs);
/* Free the in-memory bitmaps without storing them (failed open). */
void qcow2_bitmaps_free(BlockDriverState *bs);
/* Reopen: store them before going read-only; mark them in-use going read-write. */
int qcow2_bitmaps_reopen(BlockDriverState *bs, bool rw, Error **errp);
/* Resize: the bitmaps follow the new disk size. */
int qcow2_bitmaps_truncate(BlockDriverState *bs, uint64_t new_size);
/*
 * Guest write, zero write or discard of [offset, offset+bytes) with request flags:
 * mark the enabled bitmaps (not for BDRV_REQ_WRITE_UNCHANGED).
 */
void qcow2_bitmaps_mark_dirty(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                              int flags);
/* Called by info: the "bitmaps" list of format-specific data, or NULL when none. */
json_t *qcow2_get_bitmap_info(BlockDriverState *bs);
/* Called by measure: bytes the persistent bitmaps of in_bs take in a new image. */
uint64_t qcow2_bitmaps_measure(BlockDriverState *in_bs, uint64_t cluster_size);
/* Driver callbacks behind the bdrv_dirty_bitmap_* functions. */
bool qcow2_bitmap_supported(BlockDriverState *bs);
int qcow2_bitmap_list(BlockDriverState *bs, BdrvDirtyBitmapInfo **plist);
int qcow2_bitmap_can_store(BlockDriverState *bs, const char *name, uint32_t granularity,
                           Error **errp);
int qcow2_bitmap_add(BlockDriverState *bs, const char *name, uint32_t granularity,
                     bool disabled, Error **errp);
int qcow2_bitmap_remove(BlockDriverState *bs, const char *name, Error **errp);
int qcow2_bitmap_clear(BlockDriverState *bs, const char *name, Error **errp);
int qcow2_bitmap_set_enabled(BlockDriverState *bs, const char *name, bool enabled,
                             Error **errp);
int qcow2_bitmap_merge(BlockDriverState *bs, const char *name, BlockDriverState *src,
                       const char *src_name, Error **errp);
int qcow2_bitmap_status(BlockDriverState *bs, const char *name, uint64_t offset,
                        uint64_t bytes, uint64_t *pnum);

/* ---- qcow2-create.c ---- */

extern const QOptDesc qcow2_create_opts[];
int qcow2_create(const char *filename, QOpts *opts, Error **errp);
int qcow2_measure(QOpts *opts, BlockDriverState *in_bs, BlockMeasureInfo *info,
                  Error **errp);

/* ---- qcow2-cluster.c ---- */

Qcow2ClusterType qcow2_get_cluster_type(BlockDriverState *bs, uint64_t l2_entry);
/* Type of subcluster sc_index given an L2 entry and its bitmap (0 without extended_l2). */
Qcow2SubclusterType qcow2_get_subcluster_type(BlockDriverState *bs, uint64_t l2_entry,
                                              uint64_t l2_bitmap, int sc_index);
/* Host offset and byte length of the compressed data a descriptor points at. */
void qcow2_parse_compressed_l2_entry(BlockDriverState *bs, uint64_t l2_entry,
                                     uint64_t *coffset, uint64_t *csize);
/* Make the L1 table at least min_size entries (exact_size: exactly), moving it if needed. */
int qcow2_grow_l1_table(BlockDriverState *bs, uint64_t min_size, bool exact_size);
/* Shrink: zero L1 entries from new_l1_size on (after freeing their L2 tables). */
int qcow2_shrink_l1_table(BlockDriverState *bs, uint64_t new_l1_size);
/* Write entries around l1_index (one sector's worth) of the active L1 table to disk. */
int qcow2_write_l1_entry(BlockDriverState *bs, int l1_index);
/* Read n entries of an L1 table from disk into tab, converted to host byte order. */
int qcow2_read_l1_table(BlockDriverState *bs, uint64_t offset, uint32_t n, uint64_t *tab);
/* Write n host-order entries to an L1 table on disk. */
int qcow2_write_l1_table(BlockDriverState *bs, uint64_t offset, uint32_t n,
                         const uint64_t *tab);
/* Get the L2 table at l2_offset through the cache (release with qcow2_cache_put). */
int qcow2_get_l2_table(BlockDriverState *bs, uint64_t l2_offset, uint64_t **l2_table);
/*
 * Map guest offset: *bytes is cut to the run that shares one subcluster type and
 * contiguous host mapping; *host_offset is the host byte (normal/zero_alloc) or the
 * raw compressed descriptor (compressed).
 */
int qcow2_get_host_offset(BlockDriverState *bs, uint64_t offset, uint64_t *bytes,
                          uint64_t *host_offset, Qcow2SubclusterType *sctype);
/* Zero [offset, offset+bytes) (cluster aligned except at the disk end) in L2 entries. */
int qcow2_subcluster_zeroize(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                             int flags);
/* Discard whole clusters of [offset, offset+bytes): unallocate (full_discard) or zero. */
int qcow2_cluster_discard(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                          Qcow2DiscardType type, bool full_discard);
/* Driver entry points implemented in qcow2-cluster.c. */
int qcow2_pread(BlockDriverState *bs, uint64_t offset, uint64_t bytes, void *buf, int flags);
int qcow2_map_io(BlockDriverState *bs, bool write, uint64_t offset, uint64_t bytes,
                 uint64_t *pnum, uint64_t *host_offset);
ssize_t qcow2_compress_cluster(BlockDriverState *bs, void *dest, size_t dest_size,
                               const void *src, size_t src_size);
int qcow2_pwrite_compressed_cluster(BlockDriverState *bs, uint64_t offset, const void *data,
                                    size_t len);
int qcow2_pwrite(BlockDriverState *bs, uint64_t offset, uint64_t bytes, const void *buf,
                 int flags);
int qcow2_pwrite_zeroes(BlockDriverState *bs, uint64_t offset, uint64_t bytes, int flags);
int qcow2_pdiscard(BlockDriverState *bs, uint64_t offset, uint64_t bytes);
int qcow2_block_status(BlockDriverState *bs, bool want_zero, uint64_t offset, uint64_t bytes,
                       uint64_t *pnum, uint64_t *map, BlockDriverState **file);
/*
 * Get the L2 table covering guest offset for modification (growing the L1 table and
 * allocating or unsharing the L2 table as needed); release with qcow2_cache_put.
 */
int qcow2_get_cluster_table(BlockDriverState *bs, uint64_t offset, uint64_t **l2,
                            int *l2_index);
/* True for an L2 entry of a cluster we own alone (refcount 1) and may write in place. */
bool qcow2_cluster_reusable(BlockDriverState *bs, uint64_t entry);
/* Fill host [host, host+len) with the current guest content of [guest, guest+len). */
int qcow2_do_cow(BlockDriverState *bs, uint64_t guest, uint64_t host, uint64_t len);

/* ---- qcow2-prealloc.c ---- */

/* Allocate host clusters for all of [offset, offset+bytes) (preallocation=metadata). */
int qcow2_preallocate(BlockDriverState *bs, uint64_t offset, uint64_t bytes);
/*
 * Preallocation falloc/full on growth from old_length to new_length: new refcount
 * structures, then data clusters in one run at the end of the file, then L2 entries.
 */
int qcow2_preallocate_data(BlockDriverState *bs, uint64_t old_length, uint64_t new_length,
                           PreallocMode prealloc, Error **errp);
/* Drop every L2 table of the active L1 (make_empty for commit). */
int qcow2_make_empty(BlockDriverState *bs);

/* ---- qcow2-refcount.c ---- */

/* Load the refcount table at open; free it at close. */
int qcow2_refcount_init(BlockDriverState *bs, Error **errp);
void qcow2_refcount_close(BlockDriverState *bs);
/* Read / write entry idx of a refcount block as cached (any refcount_order). */
uint64_t qcow2_refblock_get(const BDRVQcow2State *s, const void *refblock, uint64_t idx);
void qcow2_refblock_set(BDRVQcow2State *s, void *refblock, uint64_t idx, uint64_t value);
/* Refcount of host cluster cluster_index (0 beyond the refcount table). */
int qcow2_get_refcount(BlockDriverState *bs, uint64_t cluster_index, uint64_t *refcount);
/*
 * Add addend to (or with decrease, subtract it from) the refcount of every cluster
 * touching [offset, offset+length), allocating refcount blocks as needed. Clusters
 * that drop to 0 are discarded in bs->file according to type. On failure the
 * changes already made are undone.
 */
int qcow2_update_refcount(BlockDriverState *bs, int64_t offset, int64_t length,
                          uint64_t addend, bool decrease, Qcow2DiscardType type);
/* qcow2_update_refcount for one cluster; returns the new refcount or -errno. */
int64_t qcow2_update_cluster_refcount(BlockDriverState *bs, uint64_t cluster_index,
                                      uint64_t addend, bool decrease, Qcow2DiscardType type);
/* Allocate size bytes of contiguous new clusters; returns the host offset or -errno. */
int64_t qcow2_alloc_clusters(BlockDriverState *bs, uint64_t size);
/*
 * Try to allocate nb_clusters clusters starting exactly at offset; returns how many
 * of them were free and are now allocated (possibly 0), or -errno.
 */
int64_t qcow2_alloc_clusters_at(BlockDriverState *bs, uint64_t offset, int64_t nb_clusters);
/* Allocate size (<= cluster) bytes for compressed data, packed after the last ones. */
int64_t qcow2_alloc_bytes(BlockDriverState *bs, int size);
/*
 * Discard the freed ranges queued by qcow2_update_refcount in bs->file, after writing
 * the caches and flushing bs->file, so that no metadata on disk still points at them
 * when they go (a crash in between must not leave a table pointing at a hole). Called
 * at the end of each driver operation that frees clusters, at flush and at close.
 * Discarding is advisory: on failure the queue is dropped and the space stays in use.
 */
void qcow2_process_discards(BlockDriverState *bs);
/* Forget the queued discards without doing them (the file is being laid out anew). */
void qcow2_drop_discards(BlockDriverState *bs);
/* Drop one reference from every cluster of [offset, offset+size). */
void qcow2_free_clusters(BlockDriverState *bs, int64_t offset, int64_t size,
                         Qcow2DiscardType type);
/* Free whatever an L2 entry points at (normal, zero-alloc or compressed). */
void qcow2_free_any_cluster(BlockDriverState *bs, uint64_t l2_entry, Qcow2DiscardType type);
/* Index of the last cluster below size (in clusters) with a nonzero refcount. */
int64_t qcow2_get_last_cluster(BlockDriverState *bs, int64_t size);
/*
 * Refcount metadata (blocks + table, bytes) needed to count clusters clusters including
 * itself; generous adds the growth margin used when the table is enlarged.
 */
int64_t qcow2_refcount_metadata_size(int64_t clusters, uint64_t cluster_size,
                                     int refcount_order, bool generous,
                                     uint64_t *refblock_count);
/*
 * Put a new refcount table and the blocks it needs at start_offset (free space up to
 * the end of the file) covering the file plus additional_clusters, and switch to it.
 * Returns the offset just past the new structures, or -errno.
 */
int64_t qcow2_refcount_area(BlockDriverState *bs, uint64_t start_offset,
                            uint64_t additional_clusters, bool exact_size,
                            uint64_t new_refblock_index, uint64_t new_refblock_offset);
/* Lay a v3 image without snapshots or bitmaps out empty and cut the file (make_empty). */
int qcow2_make_completely_empty(BlockDriverState *bs);
/* Drop refcount blocks that count nothing but themselves (after shrinking). */
int qcow2_shrink_reftable(BlockDriverState *bs);
/*
 * Used by snapshots: add addend (+1/-1) to the refcounts of everything reachable from
 * the L1 table at l1_table_offset and fix the COPIED flags of the active L1/L2 tables.
 * Implemented in qcow2-snapshot.c.
 */
int qcow2_update_snapshot_refcount(BlockDriverState *bs, int64_t l1_table_offset,
                                   int l1_size, int addend);

/* ---- qcow2-compress.c ---- */

/* Compress src into dest; -ENOMEM when the result would not fit in dest_size. */
ssize_t qcow2_compress(const BDRVQcow2State *s, void *dest, size_t dest_size,
                       const void *src, size_t src_size);
/* Decompress src until dest_size bytes are produced; -EIO on bad data. */
int qcow2_decompress(const BDRVQcow2State *s, void *dest, size_t dest_size, const void *src,
                     size_t src_size);

/* ---- qcow2-cache.c ---- */

/* A cache of num_tables cluster-sized tables read from bs->file. */
Qcow2Cache *qcow2_cache_create(BlockDriverState *bs, int num_tables, int table_size);
/* Free the cache; dirty entries must have been flushed. */
void qcow2_cache_destroy(Qcow2Cache *c);
/* Table at offset, read from disk if not cached; pins it until qcow2_cache_put. */
int qcow2_cache_get(BlockDriverState *bs, Qcow2Cache *c, uint64_t offset, void **table);
/* Like qcow2_cache_get for a newly allocated table: no read, contents undefined. */
int qcow2_cache_get_empty(BlockDriverState *bs, Qcow2Cache *c, uint64_t offset, void **table);
void qcow2_cache_put(Qcow2Cache *c, void **table);
void qcow2_cache_entry_mark_dirty(Qcow2Cache *c, void *table);
/* Before writing any dirty entry of c, flush dependency (refcounts before L2 tables). */
int qcow2_cache_set_dependency(BlockDriverState *bs, Qcow2Cache *c, Qcow2Cache *dependency);
/* Write back dirty entries (without flushing bs->file) / and flush bs->file. */
int qcow2_cache_write(BlockDriverState *bs, Qcow2Cache *c);
int qcow2_cache_flush(BlockDriverState *bs, Qcow2Cache *c);
/* Write back and drop every entry (after metadata was rewritten behind the cache). */
int qcow2_cache_empty(BlockDriverState *bs, Qcow2Cache *c);
/* Forget the entry for offset without writing it (its cluster was freed). */
void qcow2_cache_discard(Qcow2Cache *c, uint64_t offset);
/* Drop clean, unpinned entries (cache-clean-interval). */
void qcow2_cache_clean_unused(Qcow2Cache *c);
/* The cached table for offset if present (not pinned), else NULL. */
void *qcow2_cache_is_table_offset(Qcow2Cache *c, uint64_t offset);

/* ---- qcow2-snapshot.c ---- */

/* Read the snapshot table at open (fills s->snapshots); free it at close. */
int qcow2_read_snapshots(BlockDriverState *bs, Error **errp);
void qcow2_free_snapshots(BlockDriverState *bs);
int qcow2_snapshot_create(BlockDriverState *bs, QkitSnapshotInfo *sn, Error **errp);
int qcow2_snapshot_goto(BlockDriverState *bs, const char *snapshot_id, Error **errp);
int qcow2_snapshot_delete(BlockDriverState *bs, const char *snapshot_id, const char *name,
                          Error **errp);
int qcow2_snapshot_list(BlockDriverState *bs, QkitSnapshotInfo **psn);
/* Write s->snapshots as a new table, point the header at it, free the old one. */
int qcow2_write_snapshots(BlockDriverState *bs);
/*
 * For check: re-read the snapshot table from the header (repairing what fix allows,
 * counting problems in res), and after the refcount check rewrite it if it was fixed.
 */
int qcow2_check_read_snapshot_table(BlockDriverState *bs, BdrvCheckResult *res, int fix);
int qcow2_check_fix_snapshot_table(BlockDriverState *bs, BdrvCheckResult *res, int fix);

/* ---- qcow2-vmstate.c ---- */

/* Driver callbacks: read a snapshot in place (read-only node); the VM state area. */
int qcow2_snapshot_load_tmp(BlockDriverState *bs, const char *snapshot_id, const char *name,
                            Error **errp);
int qcow2_save_vmstate(BlockDriverState *bs, const void *buf, uint64_t pos, uint64_t bytes);
int qcow2_load_vmstate(BlockDriverState *bs, void *buf, uint64_t pos, uint64_t bytes);

/* ---- qcow2-check.c ---- */

/*
 * Before metadata is written to [offset, offset+size): refuse with -EIO (and mark the
 * image corrupt, as QEMU does) when that would land on metadata of a kind not in ign
 * (a mask of the kinds check knows; 0 checks all but inactive L2 tables).
 */
int qcow2_pre_write_overlap_check(BlockDriverState *bs, int ign, uint64_t offset,
                                  uint64_t size);

/*
 * Check (and with fix, repair) refcounts and L1/L2 tables. Also called by open for a
 * dirty image with lazy refcounts (fix = BDRV_FIX_LEAKS | BDRV_FIX_ERRORS).
 */
int qcow2_check(BlockDriverState *bs, BdrvCheckResult *res, int fix);

/* ---- qcow2-amend.c ---- */

int qcow2_amend(BlockDriverState *bs, QOpts *opts, bool force, Error **errp);
/* The options amend takes, in QEMU's order (for `amend -o help`). */
extern const QOptDesc qcow2_amend_opts[];

#endif
