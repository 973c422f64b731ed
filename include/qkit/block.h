/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The block layer: a graph of nodes (BlockDriverState), each driven by one
 * BlockDriver table. Format drivers (raw, qcow2) read and write through their
 * protocol child bs->file and may have a backing node bs->backing; protocol
 * drivers (file, nbd) talk to the outside world.
 *
 * Every call is synchronous and byte-granular: the core splits and aligns
 * requests to bs->request_alignment (read-modify-write) so drivers see only
 * aligned requests. Drivers that are not thread_safe are serialised by a
 * per-node lock held around each callback.
 */
#ifndef QKIT_BLOCK_H
#define QKIT_BLOCK_H

#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "qkit/error.h"
#include "qkit/opts.h"

/* Flags for bdrv_open(). */
#define BDRV_O_RDWR         0x0002  /* open for writing */
#define BDRV_O_NOCACHE      0x0020  /* bypass the host page cache (O_DIRECT) */
#define BDRV_O_NO_BACKING   0x0100  /* do not open the backing file */
#define BDRV_O_NO_FLUSH     0x0200  /* cache=unsafe: flushes are no-ops */
#define BDRV_O_WRITETHROUGH 0x0400  /* flush after every write */
#define BDRV_O_CHECK        0x1000  /* opened by check: tolerate a corrupt or dirty image */
#define BDRV_O_UNMAP        0x4000  /* discard requests are passed down */
#define BDRV_O_IO_URING     0x8000  /* aio=io_uring in the file protocol */
#define BDRV_O_NATIVE_AIO   0x10000 /* aio=native (served like io_uring here) */
#define BDRV_O_FORCE_SHARE  0x20000 /* -U: take no locks that would stop other users */
#define BDRV_O_NO_IO        0x40000 /* metadata only (info): no data will be read */
#define BDRV_O_PROTOCOL     0x80000 /* the filename names a protocol node, no format */
#define BDRV_O_NO_SHARE     0x100000 /* let nobody else write, even where the format shares */

/* Flags for read/write requests. */
#define BDRV_REQ_FUA              0x01 /* the write is durable when the call returns */
#define BDRV_REQ_MAY_UNMAP        0x02 /* write_zeroes may deallocate */
#define BDRV_REQ_NO_FALLBACK      0x04 /* write_zeroes: fail with -ENOTSUP unless cheap */
#define BDRV_REQ_WRITE_COMPRESSED 0x08 /* write compressed clusters (qcow2) */
/* The write stores what reads already return (copy-on-read): dirty bitmaps ignore it. */
#define BDRV_REQ_WRITE_UNCHANGED  0x10

/* Block status bits, as QEMU defines them (map output depends on their meaning). */
#define BDRV_BLOCK_DATA         0x01 /* reads return data from this layer or below */
#define BDRV_BLOCK_ZERO         0x02 /* reads return zeroes */
#define BDRV_BLOCK_OFFSET_VALID 0x04 /* *map is the offset in *file */
#define BDRV_BLOCK_RAW          0x08 /* driver: ask *file at *map for the real status */
#define BDRV_BLOCK_ALLOCATED    0x10 /* the content comes from this layer */
#define BDRV_BLOCK_EOF          0x20 /* the range reaches the end of the node */
#define BDRV_BLOCK_RECURSE      0x40 /* driver: also ask *file whether it reads as zero */
#define BDRV_BLOCK_COMPRESSED   0x80 /* the data is stored compressed */

/*
 * Permissions a user of a node takes, and may keep others from taking; the file
 * protocol turns them into byte-range locks that QEMU's tools see too.
 */
#define BLK_PERM_CONSISTENT_READ 0x01
#define BLK_PERM_WRITE           0x02
#define BLK_PERM_WRITE_UNCHANGED 0x04
#define BLK_PERM_RESIZE          0x08
#define BLK_PERM_ALL             0x0f

/* check() repair flags. */
#define BDRV_FIX_LEAKS  0x1
#define BDRV_FIX_ERRORS 0x2

typedef enum {
    PREALLOC_MODE_OFF,
    PREALLOC_MODE_METADATA,
    PREALLOC_MODE_FALLOC,
    PREALLOC_MODE_FULL,
} PreallocMode;

typedef struct BlockDriver BlockDriver;
typedef struct BlockDriverState BlockDriverState;

/* What `check` found; fields and meaning as in QEMU's ImageCheck. */
typedef struct BdrvCheckResult {
    int corruptions;
    int leaks;
    int check_errors;
    int corruptions_fixed;
    int leaks_fixed;
    int64_t image_end_offset;
    uint64_t total_clusters;
    uint64_t allocated_clusters;
    uint64_t fragmented_clusters;
    uint64_t compressed_clusters;
} BdrvCheckResult;

typedef struct BlockDriverInfo {
    int cluster_size;      /* 0 if the format has no clusters */
    int64_t vm_state_offset;
    bool is_dirty;
} BlockDriverInfo;

/* One internal snapshot, as `snapshot -l` and `info` list it. */
typedef struct QkitSnapshotInfo {
    char id_str[128];
    char name[256];
    uint64_t vm_state_size;
    uint32_t date_sec;
    uint32_t date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t icount;        /* -1ULL when not stored */
} QkitSnapshotInfo;

/*
 * Persistent dirty bitmaps (qcow2 keeps them; `qkit-img bitmap`, `info`, convert
 * --bitmaps and the NBD qemu:dirty-bitmap context use them). A bitmap records which
 * ranges of the disk were written while it was enabled, one bit per granularity bytes.
 */
#define BDRV_BITMAP_MAX_NAME_SIZE 1023
#define BDRV_BITMAP_MIN_GRANULARITY 512

/* One dirty bitmap of a node, as bdrv_dirty_bitmap_list reports it. */
typedef struct BdrvDirtyBitmapInfo {
    char *name;
    uint32_t granularity;  /* bytes per bit */
    bool enabled;          /* records writes ("auto" in qcow2) */
    bool inconsistent;     /* found "in-use" at open: data unusable, may only be removed */
    bool readonly;         /* the node is read-only: the bitmap cannot change */
    uint64_t count;        /* dirty bytes (dirty bits times the granularity) */
} BdrvDirtyBitmapInfo;

typedef struct BlockMeasureInfo {
    uint64_t required;
    uint64_t fully_allocated;
    uint64_t bitmaps;
    bool has_bitmaps;
} BlockMeasureInfo;

struct BlockDriver {
    const char *format_name;      /* "raw", "qcow2", "file" */
    const char *protocol_name;    /* protocols only: the URI/prefix name ("file", "nbd") */
    size_t instance_size;         /* bytes of bs->opaque */
    bool thread_safe;             /* callbacks may run concurrently on one node */
    bool supports_backing;
    /* Users let others write too (raw does, as in QEMU; formats with metadata don't). */
    bool shares_write;
    /*
     * Names of the open options the driver reads (NULL-terminated); any other key
     * is refused, as QEMU does. NULL: the driver takes anything.
     */
    const char *const *open_opts;

    /* Score 0..100 for how sure the driver is that buf (first bytes) is its format. */
    int (*probe)(const uint8_t *buf, int buf_size, const char *filename);
    /*
     * Open. Protocols take options["filename"]; formats find bs->file already open.
     * A format that has a backing file fills bs->backing_file (and backing_format);
     * the core then opens bs->backing.
     */
    int (*open)(BlockDriverState *bs, json_t *options, int flags, Error **errp);
    void (*close)(BlockDriverState *bs);
    /*
     * Protocols: take permissions perm and keep others from the unshared ones (locks);
     * called by the core once the format above is known, before the format opens.
     */
    int (*set_perm)(BlockDriverState *bs, int perm, int unshared, Error **errp);
    /* Switch between read-only and read-write (for commit and rebase). */
    int (*reopen)(BlockDriverState *bs, int flags, Error **errp);

    int (*pread)(BlockDriverState *bs, uint64_t offset, uint64_t bytes, void *buf, int flags);
    int (*pwrite)(BlockDriverState *bs, uint64_t offset, uint64_t bytes, const void *buf,
                  int flags);
    int (*pwrite_zeroes)(BlockDriverState *bs, uint64_t offset, uint64_t bytes, int flags);
    /*
     * Optional, for drivers that are not thread_safe: called with the node lock held,
     * return 1 if [offset, offset + *pnum) (*pnum <= bytes on return) is stored as-is
     * in bs->file at *host_offset and may be read (or, with write, overwritten in
     * place) there without the lock; 0 to have pread/pwrite do it; -errno.
     */
    int (*map_io)(BlockDriverState *bs, bool write, uint64_t offset, uint64_t bytes,
                  uint64_t *pnum, uint64_t *host_offset);
    int (*pdiscard)(BlockDriverState *bs, uint64_t offset, uint64_t bytes);
    /* Write back the driver's own caches; the core then flushes the children. */
    int (*flush)(BlockDriverState *bs);
    /*
     * Status of [offset, offset+bytes): returns BDRV_BLOCK_* bits (or -errno) for the
     * first *pnum bytes, which all share it. *map and *file are set with OFFSET_VALID.
     */
    int (*block_status)(BlockDriverState *bs, bool want_zero, uint64_t offset,
                        uint64_t bytes, uint64_t *pnum, uint64_t *map,
                        BlockDriverState **file);
    int (*truncate)(BlockDriverState *bs, uint64_t offset, bool exact, PreallocMode prealloc,
                    Error **errp);
    int64_t (*getlength)(BlockDriverState *bs);
    /* Bytes used on the host; NULL means the sum over the children. */
    int64_t (*get_allocated_file_size)(BlockDriverState *bs);
    /* True if a new image of this format reads as zeroes everywhere. */
    bool (*has_zero_init)(BlockDriverState *bs);

    int (*create)(const char *filename, QOpts *opts, Error **errp);
    const QOptDesc *create_opts;  /* NULL-name terminated; amend takes the same names */

    int (*get_info)(BlockDriverState *bs, BlockDriverInfo *bdi);
    /* The "format-specific" object of `info --output=json` ({"type":..,"data":{..}}). */
    json_t *(*get_specific_info)(BlockDriverState *bs, Error **errp);
    int (*check)(BlockDriverState *bs, BdrvCheckResult *res, int fix);
    int (*amend)(BlockDriverState *bs, QOpts *opts, bool force, Error **errp);
    int (*make_empty)(BlockDriverState *bs);
    int (*change_backing_file)(BlockDriverState *bs, const char *backing_file,
                               const char *backing_fmt);
    int (*measure)(QOpts *opts, BlockDriverState *in_bs, BlockMeasureInfo *info,
                   Error **errp);

    int (*snapshot_create)(BlockDriverState *bs, QkitSnapshotInfo *sn, Error **errp);
    int (*snapshot_goto)(BlockDriverState *bs, const char *snapshot_id, Error **errp);
    int (*snapshot_delete)(BlockDriverState *bs, const char *snapshot_id,
                           const char *name, Error **errp);
    /* Allocates *psn (caller frees); returns the count or -errno. */
    int (*snapshot_list)(BlockDriverState *bs, QkitSnapshotInfo **psn);
    /*
     * On a read-only node: make reads see the snapshot matching snapshot_id and/or name
     * (either may be NULL, not both) until the node is closed; the image is not
     * changed and the disk keeps its current size.
     */
    int (*snapshot_load_tmp)(BlockDriverState *bs, const char *snapshot_id,
                             const char *name, Error **errp);
    /*
     * The VM state area (where savevm stores the RAM): write or read bytes at pos
     * within it. Optional; without them the request goes to bs->file.
     */
    int (*save_vmstate)(BlockDriverState *bs, const void *buf, uint64_t pos, uint64_t bytes);
    int (*load_vmstate)(BlockDriverState *bs, void *buf, uint64_t pos, uint64_t bytes);

    /*
     * Persistent dirty bitmaps; NULL callbacks mean the format has none. The block
     * layer wrappers check the common cases (names, granularity, unknown, inconsistent
     * or read-only bitmaps) before calling these. bitmap_supported: this image can
     * hold them (qcow2 v3).
     * bitmap_list allocates *plist (free with bdrv_dirty_bitmap_list_free) and returns
     * the count, newest first (as bdrv_dirty_bitmap_list).
     * bitmap_can_store: whether a new persistent bitmap fits the image (no change made).
     * bitmap_add creates it (stored when the image is flushed or closed).
     * bitmap_merge ORs bitmap src_name of node src (any format, same size) into name.
     * bitmap_status: 1 if [offset, offset + *pnum) is dirty, 0 if clean, -errno;
     * 0 < *pnum <= bytes (clamped to the disk end, which offset must be below).
     */
    bool (*bitmap_supported)(BlockDriverState *bs);
    int (*bitmap_list)(BlockDriverState *bs, BdrvDirtyBitmapInfo **plist);
    int (*bitmap_can_store)(BlockDriverState *bs, const char *name, uint32_t granularity,
                            Error **errp);
    int (*bitmap_add)(BlockDriverState *bs, const char *name, uint32_t granularity,
                      bool disabled, Error **errp);
    int (*bitmap_remove)(BlockDriverState *bs, const char *name, Error **errp);
    int (*bitmap_clear)(BlockDriverState *bs, const char *name, Error **errp);
    int (*bitmap_set_enabled)(BlockDriverState *bs, const char *name, bool enabled,
                              Error **errp);
    int (*bitmap_merge)(BlockDriverState *bs, const char *name, BlockDriverState *src,
                        const char *src_name, Error **errp);
    int (*bitmap_status)(BlockDriverState *bs, const char *name, uint64_t offset,
                         uint64_t bytes, uint64_t *pnum);

    /*
     * Optional pair that lets a caller compress on many threads and still write in
     * order (convert -c). compress_cluster() turns one cluster of guest data
     * (src_size is the cluster size) into what a BDRV_REQ_WRITE_COMPRESSED write
     * would store; it runs without the node lock, so it may only read state fixed at
     * open. It returns the length, or -ENOSPC when the result would not fit in
     * dest_size (the caller then writes the data uncompressed).
     * pwrite_compressed_cluster() stores len such bytes as the guest cluster at offset.
     */
    ssize_t (*compress_cluster)(BlockDriverState *bs, void *dest, size_t dest_size,
                                const void *src, size_t src_size);
    int (*pwrite_compressed_cluster)(BlockDriverState *bs, uint64_t offset, const void *data,
                                     size_t len);
};

struct BlockDriverState {
    const BlockDriver *drv;
    void *opaque;                 /* driver state, drv->instance_size bytes, zeroed */
    char filename[PATH_MAX];      /* file path or URI as opened */
    int open_flags;
    bool read_only;
    bool growable;                /* a child of a format: requests may pass its end */
    BlockDriverState *file;       /* protocol child of a format node */
    BlockDriverState *backing;    /* backing node, or NULL */
    char backing_file[PATH_MAX];  /* as stored in the image */
    char backing_format[32];      /* as stored in the image ("" if none) */
    char full_backing_filename[PATH_MAX]; /* backing_file resolved against filename */
    uint32_t request_alignment;   /* smallest I/O unit the driver takes (>= 1) */
    uint64_t max_transfer;        /* largest single request, 0 = no limit */
    int supported_write_flags;    /* BDRV_REQ_FUA if the driver makes such writes durable */
    bool encrypted;
    int refcnt;
    pthread_mutex_t lock;         /* serialises drivers that are not thread_safe */
};

/* The driver tables, by name. */
const BlockDriver *bdrv_find_format(const char *format_name);
const BlockDriver *bdrv_find_protocol(const char *filename);
/* Call fn for each registered format name (for --help). */
void bdrv_iterate_format(void (*fn)(void *opaque, const char *name), void *opaque);

/*
 * Open filename (a path, a URI of a protocol, or "json:{...}") with the format fmt
 * (NULL = probe). options (may be NULL) is consumed; it holds per-node options such as
 * "driver", "file": {...}, "backing": null. Errors read like QEMU's open errors, without
 * the tool's "Could not open 'x': " prefix.
 */
BlockDriverState *bdrv_open(const char *filename, const char *fmt, json_t *options,
                            int flags, Error **errp);
void bdrv_ref(BlockDriverState *bs);
/* Drop a reference; the last one flushes, closes, and drops the children. */
void bdrv_unref(BlockDriverState *bs);
/* Switch the node and its file child to read-write (rw) or read-only. */
int bdrv_reopen(BlockDriverState *bs, bool rw, Error **errp);

int bdrv_pread(BlockDriverState *bs, int64_t offset, int64_t bytes, void *buf, int flags);
int bdrv_pwrite(BlockDriverState *bs, int64_t offset, int64_t bytes, const void *buf,
                int flags);
int bdrv_pwrite_zeroes(BlockDriverState *bs, int64_t offset, int64_t bytes, int flags);
int bdrv_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes);
/* Flush the node and its whole subtree: data written so far is durable on return. */
int bdrv_flush(BlockDriverState *bs);
int64_t bdrv_getlength(BlockDriverState *bs);
int64_t bdrv_get_allocated_file_size(BlockDriverState *bs);
int bdrv_truncate(BlockDriverState *bs, int64_t offset, bool exact, PreallocMode prealloc,
                  Error **errp);
bool bdrv_has_zero_init(BlockDriverState *bs);

/*
 * Block status of bs alone, with BDRV_BLOCK_RAW and RECURSE resolved through the file
 * child. pnum may be less than bytes; at EOF it is clamped and BDRV_BLOCK_EOF is set.
 */
int bdrv_block_status(BlockDriverState *bs, int64_t offset, int64_t bytes, int64_t *pnum,
                      int64_t *map, BlockDriverState **file);
/*
 * Status through the backing chain from bs down to (not including) base, base NULL =
 * the whole chain. *depth (if non-NULL) is the 0-based layer the status comes from:
 * 0 for bs itself, 1 for its backing node, ...; when no layer has the range allocated
 * it is the lowest layer looked at (as `qemu-img map` reports depth), and the status
 * lacks BDRV_BLOCK_ALLOCATED.
 */
int bdrv_block_status_above(BlockDriverState *bs, BlockDriverState *base, int64_t offset,
                            int64_t bytes, int64_t *pnum, int64_t *map,
                            BlockDriverState **file, int *depth);
/* 1 if [offset, offset+*pnum) is allocated in bs itself, 0 if not, -errno. */
int bdrv_is_allocated(BlockDriverState *bs, int64_t offset, int64_t bytes, int64_t *pnum);
/* Like bdrv_is_allocated over the chain top..base (base included if include_base). */
int bdrv_is_allocated_above(BlockDriverState *top, BlockDriverState *base, bool include_base,
                            int64_t offset, int64_t bytes, int64_t *pnum);

/* Create an image of drv at filename with -o style options (must hold "size"). */
int bdrv_create(const BlockDriver *drv, const char *filename, QOpts *opts, Error **errp);
/* Create the protocol file underneath a format's create() (file protocol by default). */
int bdrv_create_file(const char *filename, QOpts *opts, Error **errp);

int bdrv_get_info(BlockDriverState *bs, BlockDriverInfo *bdi);
const char *bdrv_get_format_name(BlockDriverState *bs);
/* The node that holds the data of a format node (bs->file), or bs for a protocol. */
BlockDriverState *bdrv_get_protocol(BlockDriverState *bs);
/* Lowest node of the backing chain. */
BlockDriverState *bdrv_chain_bottom(BlockDriverState *bs);

/*
 * Persistent dirty bitmaps (src/block/block-bitmap.c). Errors read like QEMU's QMP
 * block-dirty-bitmap-* commands. node_name is how errors name the node (QEMU's
 * "Can't store persistent bitmaps to <node>"); NULL uses the file name.
 */
/* True if the node's format can store persistent bitmaps (qcow2). */
bool bdrv_supports_persistent_dirty_bitmap(BlockDriverState *bs);
/*
 * The node's bitmaps (*plist allocated), newest first as QEMU lists them (those loaded
 * from an image count as created in their stored order); count or -errno.
 */
int bdrv_dirty_bitmap_list(BlockDriverState *bs, BdrvDirtyBitmapInfo **plist);
void bdrv_dirty_bitmap_list_free(BdrvDirtyBitmapInfo *list, int count);
/* Find name in the node's bitmaps: 1 and *info filled (name not copied), 0, -errno. */
int bdrv_dirty_bitmap_find(BlockDriverState *bs, const char *name, BdrvDirtyBitmapInfo *info);
/*
 * Add a persistent bitmap; granularity 0 picks the default (the cluster size within
 * 4 KiB..64 KiB, as QEMU does).
 */
int bdrv_dirty_bitmap_add(BlockDriverState *bs, const char *node_name, const char *name,
                          uint64_t granularity, bool disabled, Error **errp);
int bdrv_dirty_bitmap_remove(BlockDriverState *bs, const char *name, Error **errp);
int bdrv_dirty_bitmap_clear(BlockDriverState *bs, const char *name, Error **errp);
int bdrv_dirty_bitmap_set_enabled(BlockDriverState *bs, const char *name, bool enabled,
                                  Error **errp);
/* OR bitmap src_name of src (may be bs) into bitmap name of bs. */
int bdrv_dirty_bitmap_merge(BlockDriverState *bs, const char *name, BlockDriverState *src,
                            const char *src_name, Error **errp);
/*
 * Dirty status of [offset, offset + bytes) in bitmap name: 1 dirty / 0 clean for the
 * first *pnum bytes, -ENOENT for an unknown bitmap, other -errno.
 */
int bdrv_dirty_bitmap_status(BlockDriverState *bs, const char *name, int64_t offset,
                             int64_t bytes, int64_t *pnum);

/*
 * Internal snapshots and the VM state area (src/block/block-snapshot.c). Errors read
 * like QEMU's, without qemu-img's "Failed to load snapshot: " prefix.
 */
/*
 * Let reads of the read-only node bs see the internal snapshot matching snapshot_id
 * and/or name (both must match when both are given) until bs is closed.
 */
int bdrv_snapshot_load_tmp(BlockDriverState *bs, const char *snapshot_id, const char *name,
                           Error **errp);
/* bdrv_snapshot_load_tmp by ID, else by name (how `-l NAME_OR_ID` picks a snapshot). */
int bdrv_snapshot_load_tmp_by_id_or_name(BlockDriverState *bs, const char *id_or_name,
                                         Error **errp);

/* What the -l SNAPSHOT_PARAM options of the tools named; zero-initialise. */
typedef struct BdrvSnapshotParam {
    bool opts;              /* the snapshot.id=..,snapshot.name=.. form was given */
    char *id;               /* its snapshot.id, or NULL */
    char *name;             /* its snapshot.name, or NULL */
    char *id_or_name;       /* the plain -l ID_OR_NAME form, or NULL */
} BdrvSnapshotParam;

/* Record one -l argument (the last of each form wins); -EINVAL with the reason. */
int bdrv_snapshot_param_parse(BdrvSnapshotParam *p, const char *arg, Error **errp);
/* Load the snapshot p names into the read-only bs (the snapshot.* form first). */
int bdrv_snapshot_param_load(BlockDriverState *bs, const BdrvSnapshotParam *p, Error **errp);
void bdrv_snapshot_param_free(BdrvSnapshotParam *p);
/*
 * -s of qkit-io and qkit-nbd: create a temporary qcow2 overlay (in $TMPDIR, else
 * /var/tmp) whose backing file is the image (name and/or opts, format fmt, opened
 * read-only with the other open flags) and return its path for the caller to open.
 */
char *bdrv_create_temp_overlay(const char *name, json_t *opts, const char *fmt, int flags,
                               Error **errp);
/* Write / read bytes at pos of the VM state area; 0 or -errno (-ENOTSUP: none). */
int bdrv_save_vmstate(BlockDriverState *bs, const void *buf, int64_t pos, int64_t bytes);
int bdrv_load_vmstate(BlockDriverState *bs, void *buf, int64_t pos, int64_t bytes);

/* Parse -t / cache= mode into BDRV_O_* flags. 0 or -EINVAL. */
int bdrv_parse_cache_mode(const char *mode, int *flags);
/* Parse -i / aio= mode ("threads", "native", "io_uring") into BDRV_O_* flags. */
int bdrv_parse_aio(const char *mode, int *flags);
/* Parse -d / discard= mode ("ignore"/"off", "unmap"/"on") into BDRV_O_UNMAP. */
int bdrv_parse_discard(const char *mode, int *flags);
const char *prealloc_mode_str(PreallocMode m);
/* Parse "off", "metadata", "falloc", "full"; -EINVAL for others. */
int prealloc_mode_parse(const char *s, PreallocMode *m);

/* The registered drivers (defined in their own files, listed in drivers.c). */
extern const BlockDriver bdrv_file;
extern const BlockDriver bdrv_raw;
extern const BlockDriver bdrv_qcow2;
extern const BlockDriver bdrv_nbd;

#endif
