/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2 persistent dirty bitmaps: the bitmaps header extension, the bitmap directory,
 * bitmap tables and bitmap data clusters (qcow2.txt "Bitmaps"), and the in-memory
 * bitmaps of an open image.
 *
 * Life cycle, as QEMU 7.2 does it (so that images pass between the two tools):
 *   open     every bitmap is loaded into memory; one found "in-use" is inconsistent
 *            (its data is not read and it may only be removed). On a writable node the
 *            others get the in-use flag on disk at once (directory rewritten in place),
 *            since from now on only memory is current.
 *   writes   mark the enabled bitmaps dirty (hooks in the qcow2 write paths).
 *   close    (and reopen read-only) every bitmap is stored again: new data clusters
 *            and tables, a new directory without in-use flags, then the old clusters
 *            are freed. Inconsistent bitmaps stay in the directory unchanged.
 *   remove   rewrites the directory at once and frees the bitmap's clusters.
 * The in-memory list is kept newest first, the order QEMU walks its bitmaps in, since
 * that order decides the directory order of new bitmaps.
 *
 * Crash safety: the header only ever points at a directory whose tables and data are
 * on disk with their refcounts; while the directory is rewritten in place the
 * autoclear bit is off, so a crash leaves bitmaps that are dropped, never wrong.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2.h"
#include "qkit/cutils.h"
#include "qkit/dirty-bitmap.h"

/* Limits QEMU enforces (block/qcow2.h and qcow2-bitmap.c there). */
#define QCOW2_MAX_BITMAPS 65535
#define QCOW2_MAX_BITMAP_DIRECTORY_SIZE (1024 * QCOW2_MAX_BITMAPS)
#define BME_MAX_TABLE_SIZE 0x8000000U
#define BME_MAX_PHYS_SIZE 0x20000000U
#define BME_MAX_GRANULARITY_BITS 31
#define BME_MIN_GRANULARITY_BITS 9
#define BME_MAX_NAME_SIZE 1023

/* Directory entry flags. */
#define BME_FLAG_IN_USE (1U << 0)
#define BME_FLAG_AUTO (1U << 1)
#define BME_RESERVED_FLAGS 0xfffffffcU

/* Bitmap table entries. */
#define BME_TABLE_ENTRY_SIZE 8
#define BME_TABLE_ENTRY_RESERVED_MASK 0xff000000000001feULL
#define BME_TABLE_ENTRY_OFFSET_MASK 0x00fffffffffffe00ULL
#define BME_TABLE_ENTRY_FLAG_ALL_ONES 1ULL

#define BT_DIRTY_TRACKING_BITMAP 1
#define BME_ENTRY_ALIGN 8

/* The fixed part of a directory entry; extra data, the name and padding follow. */
typedef struct __attribute__((packed)) Qcow2BitmapDirEntry {
    uint64_t bitmap_table_offset;
    uint32_t bitmap_table_size;
    uint32_t flags;
    uint8_t type;
    uint8_t granularity_bits;
    uint16_t name_size;
    uint32_t extra_data_size;
} Qcow2BitmapDirEntry;
_Static_assert(sizeof(Qcow2BitmapDirEntry) == 24, "qcow2 bitmap directory entry layout");

/* An in-memory bitmap of the open image (QEMU's BdrvDirtyBitmap). */
typedef struct Qcow2DirtyBitmap {
    char *name;
    DirtyBitmap *bm;
    bool enabled;
    bool inconsistent;   /* in-use when loaded: data never read, never stored again */
    bool readonly;       /* the node is read-only */
    struct Qcow2DirtyBitmap *next;
} Qcow2DirtyBitmap;

/* One directory entry as decoded (host byte order). */
typedef struct Qcow2BitmapEntry {
    char *name;
    uint64_t table_offset;
    uint32_t table_size;
    uint32_t flags;
    uint8_t granularity_bits;
    Qcow2DirtyBitmap *mem;   /* while storing: the bitmap whose data goes here */
} Qcow2BitmapEntry;

/* The directory as a list of entries, in stored order. */
typedef struct Qcow2BitmapDir {
    Qcow2BitmapEntry *e;
    size_t n;
    size_t cap;
} Qcow2BitmapDir;

/* A bitmap table to free once the new directory is on disk. */
typedef struct Qcow2BitmapTable {
    uint64_t offset;
    uint32_t size;
} Qcow2BitmapTable;

/* ---- Small helpers ---- */

/* Bytes of a directory entry with a name and extra data of these sizes. */
static uint64_t dir_entry_size(size_t name_size, uint32_t extra_data_size)
{
    return ROUND_UP(sizeof(Qcow2BitmapDirEntry) + name_size + (uint64_t)extra_data_size,
                    BME_ENTRY_ALIGN);
}

/* The size bitmaps cover: the disk length as the block layer reports it. */
static uint64_t bitmap_disk_size(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    return ROUND_DOWN(s->size, 512);
}

/* Disk bytes one cluster of bitmap data describes. */
static uint64_t bytes_per_data_cluster(const BDRVQcow2State *s, uint32_t granularity)
{
    return s->cluster_size * 8 * granularity;
}

/* Bitmap table entries needed for a bitmap of size bytes. */
static uint64_t table_entries_for(const BDRVQcow2State *s, uint64_t size, int gran_bits)
{
    uint64_t bits = DIV_ROUND_UP(size, 1ULL << gran_bits);
    return DIV_ROUND_UP(bits, s->cluster_size * 8);
}

/* Free a loaded or built directory. */
static void dir_free(Qcow2BitmapDir *dir)
{
    for (size_t i = 0; i < dir->n; i++) {
        free(dir->e[i].name);
    }
    free(dir->e);
    memset(dir, 0, sizeof(*dir));
}

/* Append an entry (taking name); -ENOMEM. */
static int dir_append(Qcow2BitmapDir *dir, const Qcow2BitmapEntry *e)
{
    if (dir->n == dir->cap) {
        size_t cap = dir->cap ? dir->cap * 2 : 8;
        Qcow2BitmapEntry *ne = realloc(dir->e, cap * sizeof(*ne));
        if (!ne) {
            return -ENOMEM;
        }
        dir->e = ne;
        dir->cap = cap;
    }
    dir->e[dir->n++] = *e;
    return 0;
}

/* The directory entry called name, or NULL. */
static Qcow2BitmapEntry *dir_find(Qcow2BitmapDir *dir, const char *name)
{
    for (size_t i = 0; i < dir->n; i++) {
        if (!strcmp(dir->e[i].name, name)) {
            return &dir->e[i];
        }
    }
    return NULL;
}

/* The in-memory bitmap called name, or NULL. */
static Qcow2DirtyBitmap *mem_find(BDRVQcow2State *s, const char *name)
{
    for (Qcow2DirtyBitmap *b = s->dirty_bitmaps; b; b = b->next) {
        if (!strcmp(b->name, name)) {
            return b;
        }
    }
    return NULL;
}

/* Free one in-memory bitmap (already unlinked). */
static void mem_free_one(Qcow2DirtyBitmap *b)
{
    dirty_bitmap_free(b->bm);
    free(b->name);
    free(b);
}

/* Unlink b from the in-memory list and free it. */
static void mem_release(BDRVQcow2State *s, Qcow2DirtyBitmap *b)
{
    for (Qcow2DirtyBitmap **p = &s->dirty_bitmaps; *p; p = &(*p)->next) {
        if (*p == b) {
            *p = b->next;
            mem_free_one(b);
            return;
        }
    }
}

/* A new in-memory bitmap, put first in the list; NULL with errp set. */
static Qcow2DirtyBitmap *mem_create(BlockDriverState *bs, const char *name,
                                    uint32_t granularity, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    if (mem_find(s, name)) {
        error_setg(errp, "Bitmap already exists: %s", name);
        return NULL;
    }
    Qcow2DirtyBitmap *b = calloc(1, sizeof(*b));
    if (b) {
        b->name = strdup(name);
        b->bm = dirty_bitmap_new(bitmap_disk_size(bs), granularity);
    }
    if (!b || !b->name || !b->bm) {
        if (b) {
            mem_free_one(b);
        }
        error_setg(errp, "Could not allocate bitmap '%s'", name);
        return NULL;
    }
    b->enabled = true;
    b->readonly = bs->read_only;
    b->next = s->dirty_bitmaps;
    s->dirty_bitmaps = b;
    return b;
}

void qcow2_bitmaps_free(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    while (s->dirty_bitmaps) {
        Qcow2DirtyBitmap *b = s->dirty_bitmaps;
        s->dirty_bitmaps = b->next;
        mem_free_one(b);
    }
}

/* ---- The header extension ---- */

int qcow2_bitmaps_read_ext(BlockDriverState *bs, const void *data, uint32_t len,
                           Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2BitmapHeaderExt ext;
    if (len != sizeof(ext)) {
        error_setg(errp, "bitmaps_ext: Invalid extension length");
        return -EINVAL;
    }
    if (!(s->autoclear_features & QCOW2_AUTOCLEAR_BITMAPS)) {
        /* Someone wrote the image without keeping the bitmaps: they are stale. */
        if (s->qcow_version < 3) {
            error_report("warning: This qcow2 v2 image contains bitmaps, but they may "
                         "have been modified by a program without persistent bitmap "
                         "support; so now they must all be considered inconsistent");
        } else {
            error_report("warning: a program lacking bitmap support modified this file, "
                         "so all bitmaps are now considered inconsistent");
        }
        /* QEMU prints this without a newline. */
        fprintf(stderr, "Some clusters may be leaked, run 'qemu-img check -r' on the "
                "image file to fix.");
        s->has_bitmaps_ext = false;
        s->stale_bitmaps_ext = true;
        return 0;
    }
    memcpy(&ext, data, sizeof(ext));
    if (ext.reserved32 != 0) {
        error_setg(errp, "bitmaps_ext: Reserved field is not zero");
        return -EINVAL;
    }
    ext.nb_bitmaps = be32toh(ext.nb_bitmaps);
    ext.bitmap_directory_size = be64toh(ext.bitmap_directory_size);
    ext.bitmap_directory_offset = be64toh(ext.bitmap_directory_offset);
    if (ext.nb_bitmaps > QCOW2_MAX_BITMAPS) {
        error_setg(errp, "bitmaps_ext: Image has %" PRIu32 " bitmaps, exceeding the QEMU "
                   "supported maximum of %d", ext.nb_bitmaps, QCOW2_MAX_BITMAPS);
        return -EINVAL;
    }
    if (ext.nb_bitmaps == 0) {
        error_setg(errp, "found bitmaps extension with zero bitmaps");
        return -EINVAL;
    }
    if (qcow2_offset_into_cluster(s, ext.bitmap_directory_offset)) {
        error_setg(errp, "bitmaps_ext: invalid bitmap directory offset");
        return -EINVAL;
    }
    if (ext.bitmap_directory_size > QCOW2_MAX_BITMAP_DIRECTORY_SIZE) {
        error_setg(errp, "bitmaps_ext: bitmap directory size (%" PRIu64 ") exceeds the "
                   "maximum supported size (%d)", ext.bitmap_directory_size,
                   QCOW2_MAX_BITMAP_DIRECTORY_SIZE);
        return -EINVAL;
    }
    s->bitmaps_ext = ext;
    s->has_bitmaps_ext = true;
    return 0;
}

/* Bitmaps in the image as the header describes them (0 when none or stale). */
static uint32_t nb_stored_bitmaps(const BDRVQcow2State *s)
{
    return s->has_bitmaps_ext ? s->bitmaps_ext.nb_bitmaps : 0;
}

/* Write the header and make it durable. */
static int update_header_sync(BlockDriverState *bs)
{
    int ret = qcow2_update_header(bs);
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    return ret;
}

/* ---- The directory ---- */

/* The checks QEMU makes on each directory entry it reads or writes; -EINVAL if bad. */
static int check_dir_entry(BlockDriverState *bs, const Qcow2BitmapEntry *e, uint32_t type,
                           size_t name_size)
{
    BDRVQcow2State *s = bs->opaque;
    if (e->table_size == 0 || e->table_offset == 0 ||
        qcow2_offset_into_cluster(s, e->table_offset) ||
        e->table_size > BME_MAX_TABLE_SIZE ||
        e->granularity_bits > BME_MAX_GRANULARITY_BITS ||
        e->granularity_bits < BME_MIN_GRANULARITY_BITS ||
        (e->flags & BME_RESERVED_FLAGS) || name_size > BME_MAX_NAME_SIZE ||
        type != BT_DIRTY_TRACKING_BITMAP) {
        return -EINVAL;
    }
    uint64_t phys_bytes = (uint64_t)e->table_size * s->cluster_size;
    uint64_t len = bitmap_disk_size(bs);
    if (phys_bytes > BME_MAX_PHYS_SIZE || len > ((phys_bytes * 8) << e->granularity_bits)) {
        return -EINVAL;
    }
    return 0;
}

/* Read and check the directory at offset (size bytes) into dir. Errors as QEMU's. */
static int dir_load(BlockDriverState *bs, uint64_t offset, uint64_t size, Qcow2BitmapDir *dir,
                    Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint8_t *buf = NULL;
    uint32_t nb = 0;
    uint64_t pos = 0;
    int ret = -EINVAL;

    memset(dir, 0, sizeof(*dir));
    if (size == 0) {
        error_setg(errp, "Requested bitmap directory size is zero");
        return -EINVAL;
    }
    if (size > QCOW2_MAX_BITMAP_DIRECTORY_SIZE) {
        error_setg(errp, "Requested bitmap directory size is too big");
        return -EINVAL;
    }
    buf = malloc(size);
    if (!buf) {
        error_setg(errp, "Failed to allocate space for bitmap directory");
        return -ENOMEM;
    }
    ret = bdrv_pread(bs->file, (int64_t)offset, (int64_t)size, buf, 0);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to read bitmap directory");
        goto fail;
    }
    ret = -EINVAL;
    while (pos < size) {
        Qcow2BitmapDirEntry de;
        if (size - pos < sizeof(de)) {
            goto broken;
        }
        if (++nb > nb_stored_bitmaps(s)) {
            error_setg(errp, "More bitmaps found than specified in header extension");
            goto fail;
        }
        memcpy(&de, buf + pos, sizeof(de));
        Qcow2BitmapEntry e = {
            .table_offset = be64toh(de.bitmap_table_offset),
            .table_size = be32toh(de.bitmap_table_size),
            .flags = be32toh(de.flags),
            .granularity_bits = de.granularity_bits,
        };
        uint16_t name_size = be16toh(de.name_size);
        uint32_t extra = be32toh(de.extra_data_size);
        uint64_t esize = dir_entry_size(name_size, extra);
        if (esize > size - pos) {
            goto broken;
        }
        const char *name = (const char *)buf + pos + sizeof(de) + extra;
        if (extra != 0) {
            error_setg(errp, "Bitmap extra data is not supported");
            goto fail;
        }
        if (check_dir_entry(bs, &e, de.type, name_size) < 0) {
            error_setg(errp, "Bitmap '%.*s' doesn't satisfy the constraints", (int)name_size,
                       name);
            goto fail;
        }
        e.name = strndup(name, name_size);
        if (!e.name || dir_append(dir, &e) < 0) {
            free(e.name);
            error_setg(errp, "Could not allocate the bitmap directory");
            ret = -ENOMEM;
            goto fail;
        }
        pos += esize;
    }
    if (nb != nb_stored_bitmaps(s)) {
        error_setg(errp, "Less bitmaps found than specified in header extension");
        goto fail;
    }
    free(buf);
    return 0;
broken:
    error_setg(errp, "Broken bitmap directory");
fail:
    free(buf);
    dir_free(dir);
    return ret;
}

/*
 * Write dir as a directory: at *offset when in_place (same size as before), else in
 * newly allocated clusters. *offset and *size get where it went.
 */
static int dir_store(BlockDriverState *bs, const Qcow2BitmapDir *dir, uint64_t *offset,
                     uint64_t *size, bool in_place)
{
    uint64_t dir_size = 0, pos = 0;
    int64_t dir_offset = 0;
    int ret;
    for (size_t i = 0; i < dir->n; i++) {
        dir_size += dir_entry_size(strlen(dir->e[i].name), 0);
    }
    if (dir_size == 0 || dir_size > QCOW2_MAX_BITMAP_DIRECTORY_SIZE) {
        return -EINVAL;
    }
    if (in_place) {
        if (*size != dir_size || *offset == 0) {
            return -EINVAL;
        }
        dir_offset = (int64_t)*offset;
    }
    uint8_t *buf = calloc(1, dir_size);
    if (!buf) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < dir->n; i++) {
        const Qcow2BitmapEntry *e = &dir->e[i];
        size_t name_size = strlen(e->name);
        if (check_dir_entry(bs, e, BT_DIRTY_TRACKING_BITMAP, name_size) < 0) {
            ret = -EINVAL;
            goto out;
        }
        Qcow2BitmapDirEntry de = {
            .bitmap_table_offset = htobe64(e->table_offset),
            .bitmap_table_size = htobe32(e->table_size),
            .flags = htobe32(e->flags),
            .type = BT_DIRTY_TRACKING_BITMAP,
            .granularity_bits = e->granularity_bits,
            .name_size = htobe16((uint16_t)name_size),
            .extra_data_size = 0,
        };
        memcpy(buf + pos, &de, sizeof(de));
        memcpy(buf + pos + sizeof(de), e->name, name_size);
        pos += dir_entry_size(name_size, 0);
    }
    if (!in_place) {
        dir_offset = qcow2_alloc_clusters(bs, dir_size);
        if (dir_offset < 0) {
            ret = (int)dir_offset;
            goto out;
        }
    }
    ret = bdrv_pwrite(bs->file, dir_offset, (int64_t)dir_size, buf, 0);
    if (ret < 0) {
        if (!in_place) {
            qcow2_free_clusters(bs, dir_offset, (int64_t)dir_size, QCOW2_DISCARD_OTHER);
        }
        goto out;
    }
    *size = dir_size;
    *offset = (uint64_t)dir_offset;
out:
    free(buf);
    return ret;
}

/* Point the header at a new directory for dir (none if empty); free the old one. */
static int update_ext_header_and_dir(BlockDriverState *bs, const Qcow2BitmapDir *dir)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2BitmapHeaderExt old_ext = s->bitmaps_ext;
    bool old_has = s->has_bitmaps_ext;
    uint64_t old_autoclear = s->autoclear_features;
    uint64_t new_offset = 0, new_size = 0;
    int ret;

    if (dir->n > 0) {
        if (dir->n > QCOW2_MAX_BITMAPS) {
            return -EINVAL;
        }
        ret = dir_store(bs, dir, &new_offset, &new_size, false);
        if (ret < 0) {
            return ret;
        }
        /* The refcounts of the new clusters before the header that reaches them. */
        ret = qcow2_flush_caches(bs);
        if (ret < 0) {
            goto fail;
        }
        s->autoclear_features |= QCOW2_AUTOCLEAR_BITMAPS;
    } else {
        s->autoclear_features &= ~QCOW2_AUTOCLEAR_BITMAPS;
    }
    s->bitmaps_ext.nb_bitmaps = (uint32_t)dir->n;
    s->bitmaps_ext.reserved32 = 0;
    s->bitmaps_ext.bitmap_directory_offset = new_offset;
    s->bitmaps_ext.bitmap_directory_size = new_size;
    s->has_bitmaps_ext = dir->n > 0;
    ret = update_header_sync(bs);
    if (ret < 0) {
        goto fail;
    }
    if (old_has && old_ext.bitmap_directory_size > 0) {
        qcow2_free_clusters(bs, (int64_t)old_ext.bitmap_directory_offset,
                            (int64_t)old_ext.bitmap_directory_size, QCOW2_DISCARD_OTHER);
    }
    return 0;
fail:
    if (new_offset) {
        qcow2_free_clusters(bs, (int64_t)new_offset, (int64_t)new_size, QCOW2_DISCARD_OTHER);
    }
    s->bitmaps_ext = old_ext;
    s->has_bitmaps_ext = old_has;
    s->autoclear_features = old_autoclear;
    return ret;
}

/*
 * Rewrite the directory where it is (only flags changed). The autoclear bit is off
 * meanwhile, so a crash in between leaves bitmaps that are dropped, not trusted.
 */
static int update_ext_header_and_dir_in_place(BlockDriverState *bs, const Qcow2BitmapDir *dir)
{
    BDRVQcow2State *s = bs->opaque;
    if (!(s->autoclear_features & QCOW2_AUTOCLEAR_BITMAPS) || dir->n == 0 ||
        dir->n != nb_stored_bitmaps(s)) {
        return -EINVAL;
    }
    s->autoclear_features &= ~QCOW2_AUTOCLEAR_BITMAPS;
    int ret = update_header_sync(bs);
    if (ret < 0) {
        return ret;
    }
    uint64_t offset = s->bitmaps_ext.bitmap_directory_offset;
    uint64_t size = s->bitmaps_ext.bitmap_directory_size;
    ret = dir_store(bs, dir, &offset, &size, true);
    if (ret < 0) {
        return ret;
    }
    s->autoclear_features |= QCOW2_AUTOCLEAR_BITMAPS;
    return update_header_sync(bs);
}

/* ---- Bitmap tables and data ---- */

/* QEMU's check of one table entry: reserved bits clear, data cluster aligned. */
static int check_table_entry(uint64_t entry, uint64_t cluster_size)
{
    if (entry & BME_TABLE_ENTRY_RESERVED_MASK) {
        return -EINVAL;
    }
    uint64_t off = entry & BME_TABLE_ENTRY_OFFSET_MASK;
    if (off && ((entry & BME_TABLE_ENTRY_FLAG_ALL_ONES) || off % cluster_size)) {
        return -EINVAL;
    }
    return 0;
}

/* Read a bitmap table (host byte order, checked) into *ptable (caller frees). */
static int table_load(BlockDriverState *bs, uint64_t offset, uint32_t size, uint64_t **ptable)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t *t = malloc((size_t)size * BME_TABLE_ENTRY_SIZE);
    *ptable = NULL;
    if (!t) {
        return -ENOMEM;
    }
    int ret = bdrv_pread(bs->file, (int64_t)offset, (int64_t)size * BME_TABLE_ENTRY_SIZE, t, 0);
    if (ret < 0) {
        free(t);
        return ret;
    }
    for (uint32_t i = 0; i < size; i++) {
        t[i] = be64toh(t[i]);
        if (check_table_entry(t[i], s->cluster_size) < 0) {
            free(t);
            return -EINVAL;
        }
    }
    *ptable = t;
    return 0;
}

/* Fill bm from the data clusters a table points at. */
static int load_bitmap_data(BlockDriverState *bs, const uint64_t *table, uint32_t size,
                            DirtyBitmap *bm)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t nb_bits = dirty_bitmap_nb_bits(bm);
    uint64_t bits_per_cluster = s->cluster_size * 8;
    if (size != DIV_ROUND_UP(nb_bits, bits_per_cluster)) {
        return -EINVAL;
    }
    uint8_t *buf = malloc(s->cluster_size);
    if (!buf) {
        return -ENOMEM;
    }
    int ret = 0;
    for (uint32_t i = 0; i < size; i++) {
        uint64_t first = (uint64_t)i * bits_per_cluster;
        uint64_t count = QKIT_MIN(bits_per_cluster, nb_bits - first);
        uint64_t off = table[i] & BME_TABLE_ENTRY_OFFSET_MASK;
        if (!off) {
            if (table[i] & BME_TABLE_ENTRY_FLAG_ALL_ONES) {
                dirty_bitmap_deserialize_ones(bm, first, count);
            }
            continue;
        }
        ret = bdrv_pread(bs->file, (int64_t)off, (int64_t)s->cluster_size, buf, 0);
        if (ret < 0) {
            break;
        }
        dirty_bitmap_deserialize(bm, first, count, buf);
    }
    free(buf);
    return ret;
}

/* Drop the data clusters a table points at, then the table's own clusters. */
static int free_bitmap_clusters(BlockDriverState *bs, uint64_t offset, uint32_t size)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t *table;
    int ret = table_load(bs, offset, size, &table);
    if (ret < 0) {
        return ret;
    }
    for (uint32_t i = 0; i < size; i++) {
        uint64_t off = table[i] & BME_TABLE_ENTRY_OFFSET_MASK;
        if (off) {
            /* Bitmap data is dropped from the file too (QEMU discards it always). */
            qcow2_free_clusters(bs, (int64_t)off, (int64_t)s->cluster_size,
                                QCOW2_DISCARD_ALWAYS);
        }
    }
    qcow2_free_clusters(bs, (int64_t)offset, (int64_t)size * BME_TABLE_ENTRY_SIZE,
                        QCOW2_DISCARD_OTHER);
    free(table);
    return 0;
}

/* Free the data clusters listed in a table being built (store failed). */
static void free_table_data(BlockDriverState *bs, const uint64_t *table, uint64_t size)
{
    BDRVQcow2State *s = bs->opaque;
    for (uint64_t i = 0; i < size; i++) {
        if (table[i]) {
            qcow2_free_clusters(bs, (int64_t)table[i], (int64_t)s->cluster_size,
                                QCOW2_DISCARD_ALWAYS);
        }
    }
}

/*
 * Write the data of b into new clusters (only those holding a dirty bit) and a new
 * table pointing at them; e gets the table's place.
 */
static int store_bitmap(BlockDriverState *bs, Qcow2BitmapEntry *e, const Qcow2DirtyBitmap *b,
                        Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    const DirtyBitmap *bm = b->bm;
    uint64_t size = dirty_bitmap_size(bm);
    uint32_t gran = dirty_bitmap_granularity(bm);
    uint64_t tb_size = table_entries_for(s, size, __builtin_ctz(gran));
    uint64_t limit = bytes_per_data_cluster(s, gran);
    uint8_t *buf = NULL;
    int64_t tb_offset = -1;
    int ret;

    if (tb_size > BME_MAX_TABLE_SIZE || tb_size * s->cluster_size > BME_MAX_PHYS_SIZE) {
        error_setg(errp, "Bitmap '%s' is too big", b->name);
        return -EINVAL;
    }
    uint64_t *tb = calloc(tb_size ? tb_size : 1, BME_TABLE_ENTRY_SIZE);
    buf = malloc(s->cluster_size);
    if (!tb || !buf) {
        error_setg(errp, "No memory");
        ret = -ENOMEM;
        goto fail;
    }
    int64_t offset = dirty_bitmap_next_dirty(bm, 0, size);
    while (offset >= 0) {
        uint64_t start = ROUND_DOWN((uint64_t)offset, limit);
        uint64_t end = QKIT_MIN(size, start + limit);
        uint64_t first_bit = start / gran;
        uint64_t nb_bits = DIV_ROUND_UP(end - start, gran);
        int64_t off = qcow2_alloc_clusters(bs, s->cluster_size);
        if (off < 0) {
            error_setg_errno(errp, (int)-off, "Failed to allocate clusters for bitmap '%s'",
                             b->name);
            ret = (int)off;
            goto fail;
        }
        tb[start / limit] = (uint64_t)off;
        memset(buf, 0, s->cluster_size);
        dirty_bitmap_serialize(bm, first_bit, nb_bits, buf);
        ret = bdrv_pwrite(bs->file, off, (int64_t)s->cluster_size, buf, 0);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Failed to write bitmap '%s' to file", b->name);
            goto fail;
        }
        offset = dirty_bitmap_next_dirty(bm, end, size);
    }

    tb_offset = qcow2_alloc_clusters(bs, tb_size * BME_TABLE_ENTRY_SIZE);
    if (tb_offset < 0) {
        error_setg_errno(errp, (int)-tb_offset, "Failed to allocate clusters for bitmap '%s'",
                         b->name);
        ret = (int)tb_offset;
        goto fail;
    }
    for (uint64_t i = 0; i < tb_size; i++) {
        tb[i] = htobe64(tb[i]);
    }
    ret = bdrv_pwrite(bs->file, tb_offset, (int64_t)(tb_size * BME_TABLE_ENTRY_SIZE), tb, 0);
    for (uint64_t i = 0; i < tb_size; i++) {
        tb[i] = be64toh(tb[i]);
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to write bitmap '%s' to file", b->name);
        qcow2_free_clusters(bs, tb_offset, (int64_t)(tb_size * BME_TABLE_ENTRY_SIZE),
                            QCOW2_DISCARD_OTHER);
        goto fail;
    }
    e->table_offset = (uint64_t)tb_offset;
    e->table_size = (uint32_t)tb_size;
    free(tb);
    free(buf);
    return 0;
fail:
    if (tb) {
        free_table_data(bs, tb, tb_size);
    }
    free(tb);
    free(buf);
    return ret;
}

/* ---- Open, store, close ---- */

/* Create the in-memory bitmap for directory entry e and read its data unless in use. */
static Qcow2DirtyBitmap *load_bitmap(BlockDriverState *bs, const Qcow2BitmapEntry *e,
                                     Error **errp)
{
    uint64_t *table = NULL;
    Qcow2DirtyBitmap *b = mem_create(bs, e->name, 1U << e->granularity_bits, errp);
    if (!b) {
        return NULL;
    }
    if (e->flags & BME_FLAG_IN_USE) {
        /* Its data is not trustworthy: leave it unread. */
        return b;
    }
    int ret = table_load(bs, e->table_offset, e->table_size, &table);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not read bitmap_table table from image for "
                         "bitmap '%s'", e->name);
        goto fail;
    }
    ret = load_bitmap_data(bs, table, e->table_size, b->bm);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not read bitmap '%s' from image", e->name);
        goto fail;
    }
    free(table);
    return b;
fail:
    free(table);
    mem_release(bs->opaque, b);
    return NULL;
}

int qcow2_bitmaps_load(BlockDriverState *bs, bool *header_updated, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2BitmapDir dir;
    bool needs_update = false;
    int ret;

    *header_updated = false;
    if (s->stale_bitmaps_ext && !bs->read_only) {
        /* A writer drops the stale extension (its clusters stay leaked for check). */
        ret = qcow2_update_header(bs);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not update qcow2 header");
            return ret;
        }
        s->stale_bitmaps_ext = false;
        *header_updated = true;
    }
    if (nb_stored_bitmaps(s) == 0) {
        return 0;
    }
    ret = dir_load(bs, s->bitmaps_ext.bitmap_directory_offset,
                   s->bitmaps_ext.bitmap_directory_size, &dir, errp);
    if (ret < 0) {
        return ret;
    }
    for (size_t i = 0; i < dir.n; i++) {
        Qcow2BitmapEntry *e = &dir.e[i];
        Qcow2DirtyBitmap *b = load_bitmap(bs, e, errp);
        if (!b) {
            ret = -EINVAL;
            goto fail;
        }
        if (e->flags & BME_FLAG_IN_USE) {
            b->inconsistent = true;
        } else {
            e->flags |= BME_FLAG_IN_USE;
            needs_update = true;
        }
        b->enabled = (e->flags & BME_FLAG_AUTO) != 0;
    }
    if (needs_update && !bs->read_only) {
        ret = update_ext_header_and_dir_in_place(bs, &dir);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Can't update bitmap directory");
            goto fail;
        }
        *header_updated = true;
    }
    dir_free(&dir);
    return 0;
fail:
    dir_free(&dir);
    qcow2_bitmaps_free(bs);
    return ret;
}

/* QEMU's limits for a bitmap to be stored in this image; errors as its messages. */
static int check_constraints(BlockDriverState *bs, const char *name, uint32_t granularity,
                             Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    int gran_bits = __builtin_ctz(granularity);
    uint64_t len = bitmap_disk_size(bs);
    if (gran_bits > BME_MAX_GRANULARITY_BITS) {
        error_setg(errp, "Granularity exceeds maximum (%llu bytes)",
                   1ULL << BME_MAX_GRANULARITY_BITS);
        return -EINVAL;
    }
    if (gran_bits < BME_MIN_GRANULARITY_BITS) {
        error_setg(errp, "Granularity is under minimum (%llu bytes)",
                   1ULL << BME_MIN_GRANULARITY_BITS);
        return -EINVAL;
    }
    uint64_t bitmap_bytes = DIV_ROUND_UP(DIV_ROUND_UP(len, granularity), 8);
    if (bitmap_bytes > BME_MAX_PHYS_SIZE ||
        bitmap_bytes > (uint64_t)BME_MAX_TABLE_SIZE * s->cluster_size) {
        error_setg(errp, "Too much space will be occupied by the bitmap. Use larger "
                   "granularity");
        return -EINVAL;
    }
    if (strlen(name) > BME_MAX_NAME_SIZE) {
        error_setg(errp, "Name length exceeds maximum (%u characters)", BME_MAX_NAME_SIZE);
        return -EINVAL;
    }
    return 0;
}

int qcow2_bitmaps_store(BlockDriverState *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2BitmapDir dir = { 0 };
    Qcow2BitmapTable *drop = NULL;
    size_t nb_drop = 0;
    uint32_t new_nb = nb_stored_bitmaps(s);
    uint64_t new_dir_size = new_nb ? s->bitmaps_ext.bitmap_directory_size : 0;
    bool need_write = false;
    int ret;

    if (!s->dirty_bitmaps) {
        return 0;
    }
    if (new_nb) {
        ret = dir_load(bs, s->bitmaps_ext.bitmap_directory_offset,
                       s->bitmaps_ext.bitmap_directory_size, &dir, errp);
        if (ret < 0) {
            return ret;
        }
    }
    ret = -EINVAL;
    for (Qcow2DirtyBitmap *b = s->dirty_bitmaps; b; b = b->next) {
        if (b->inconsistent || b->readonly) {
            continue;
        }
        need_write = true;
        uint32_t gran = dirty_bitmap_granularity(b->bm);
        if (check_constraints(bs, b->name, gran, errp) < 0) {
            error_prepend(errp, "Bitmap '%s' doesn't satisfy the constraints: ", b->name);
            goto out;
        }
        Qcow2BitmapEntry *e = dir_find(&dir, b->name);
        if (!e) {
            if (++new_nb > QCOW2_MAX_BITMAPS) {
                error_setg(errp, "Too many persistent bitmaps");
                goto out;
            }
            new_dir_size += dir_entry_size(strlen(b->name), 0);
            if (new_dir_size > QCOW2_MAX_BITMAP_DIRECTORY_SIZE) {
                error_setg(errp, "Bitmap directory is too large");
                goto out;
            }
            Qcow2BitmapEntry ne = { .name = strdup(b->name) };
            if (!ne.name || dir_append(&dir, &ne) < 0) {
                free(ne.name);
                error_setg(errp, "No memory");
                ret = -ENOMEM;
                goto out;
            }
            e = &dir.e[dir.n - 1];
        } else {
            if (!(e->flags & BME_FLAG_IN_USE)) {
                error_setg(errp, "Bitmap '%s' already exists in the image", b->name);
                goto out;
            }
            Qcow2BitmapTable *nd = realloc(drop, (nb_drop + 1) * sizeof(*nd));
            if (!nd) {
                error_setg(errp, "No memory");
                ret = -ENOMEM;
                goto out;
            }
            drop = nd;
            drop[nb_drop++] = (Qcow2BitmapTable){ e->table_offset, e->table_size };
            e->table_offset = 0;
            e->table_size = 0;
        }
        e->flags = b->enabled ? BME_FLAG_AUTO : 0;
        e->granularity_bits = (uint8_t)__builtin_ctz(gran);
        e->mem = b;
    }
    if (!need_write) {
        ret = 0;
        goto out;
    }
    if (bs->read_only) {
        error_setg(errp, "No write access");
        goto out;
    }
    for (size_t i = 0; i < dir.n; i++) {
        if (dir.e[i].mem && (ret = store_bitmap(bs, &dir.e[i], dir.e[i].mem, errp)) < 0) {
            goto out;
        }
    }
    ret = update_ext_header_and_dir(bs, &dir);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to update bitmap extension");
        goto out;
    }
    /* The new directory is on disk: the tables it replaced can go. */
    for (size_t i = 0; i < nb_drop; i++) {
        free_bitmap_clusters(bs, drop[i].offset, drop[i].size);
    }
    ret = 0;
out:
    free(drop);
    dir_free(&dir);
    return ret;
}

int qcow2_bitmaps_close(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    Error *err = NULL;
    int ret = 0;
    /* An image found corrupt meanwhile gets no more metadata writes (QEMU drops it). */
    if (!bs->read_only && !(s->incompatible_features & QCOW2_INCOMPAT_CORRUPT)) {
        ret = qcow2_bitmaps_store(bs, &err);
        if (ret < 0) {
            error_prepend(&err, "Lost persistent bitmaps during inactivation of node '%s': ",
                          bs->filename);
            error_report_err(err);
        }
    }
    qcow2_bitmaps_free(bs);
    return ret;
}

int qcow2_bitmaps_reopen(BlockDriverState *bs, bool rw, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2BitmapDir dir;
    bool changed = false;
    int ret;

    if (!rw) {
        ret = qcow2_bitmaps_store(bs, errp);
        if (ret < 0) {
            return ret;
        }
        for (Qcow2DirtyBitmap *b = s->dirty_bitmaps; b; b = b->next) {
            b->readonly = true;
        }
        return 0;
    }
    /* Going read-write: the bitmaps become current in memory only, so mark them. */
    if (nb_stored_bitmaps(s) == 0) {
        goto writable;
    }
    ret = dir_load(bs, s->bitmaps_ext.bitmap_directory_offset,
                   s->bitmaps_ext.bitmap_directory_size, &dir, errp);
    if (ret < 0) {
        return ret;
    }
    for (size_t i = 0; i < dir.n; i++) {
        if (!(dir.e[i].flags & BME_FLAG_IN_USE) && mem_find(s, dir.e[i].name)) {
            dir.e[i].flags |= BME_FLAG_IN_USE;
            changed = true;
        }
    }
    if (changed) {
        ret = update_ext_header_and_dir_in_place(bs, &dir);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Can't update bitmap directory");
            dir_free(&dir);
            return ret;
        }
    }
    dir_free(&dir);
writable:
    for (Qcow2DirtyBitmap *b = s->dirty_bitmaps; b; b = b->next) {
        b->readonly = false;
    }
    return 0;
}

int qcow2_bitmaps_truncate(BlockDriverState *bs, uint64_t new_size)
{
    BDRVQcow2State *s = bs->opaque;
    for (Qcow2DirtyBitmap *b = s->dirty_bitmaps; b; b = b->next) {
        int ret = dirty_bitmap_truncate(b->bm, ROUND_DOWN(new_size, 512));
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

void qcow2_bitmaps_mark_dirty(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                              int flags)
{
    BDRVQcow2State *s = bs->opaque;
    if (flags & BDRV_REQ_WRITE_UNCHANGED) {
        return;
    }
    for (Qcow2DirtyBitmap *b = s->dirty_bitmaps; b; b = b->next) {
        if (b->enabled) {
            dirty_bitmap_set(b->bm, offset, bytes);
        }
    }
}

/* ---- Information ---- */

json_t *qcow2_get_bitmap_info(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2BitmapDir dir;
    if (nb_stored_bitmaps(s) == 0 ||
        dir_load(bs, s->bitmaps_ext.bitmap_directory_offset,
                 s->bitmaps_ext.bitmap_directory_size, &dir, NULL) < 0) {
        return NULL;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < dir.n; i++) {
        json_t *flags = json_array();
        if (dir.e[i].flags & BME_FLAG_IN_USE) {
            json_array_append_new(flags, json_string("in-use"));
        }
        if (dir.e[i].flags & BME_FLAG_AUTO) {
            json_array_append_new(flags, json_string("auto"));
        }
        json_t *b = json_object();
        json_object_set_new(b, "flags", flags);
        json_object_set_new(b, "name", json_string(dir.e[i].name));
        json_object_set_new(b, "granularity", json_integer(1LL << dir.e[i].granularity_bits));
        json_array_append_new(list, b);
    }
    dir_free(&dir);
    return list;
}

uint64_t qcow2_bitmaps_measure(BlockDriverState *in_bs, uint64_t cluster_size)
{
    BdrvDirtyBitmapInfo *list;
    int n = bdrv_dirty_bitmap_list(in_bs, &list);
    int64_t len = bdrv_getlength(in_bs);
    uint64_t total = 0, dir_size = 0;
    for (int i = 0; i < n && len >= 0; i++) {
        uint64_t bytes = DIV_ROUND_UP(DIV_ROUND_UP((uint64_t)len, list[i].granularity), 8);
        uint64_t clusters = DIV_ROUND_UP(bytes, cluster_size);
        /* Every data cluster allocated, the table, and the directory entry. */
        total += clusters * cluster_size;
        total += ROUND_UP(clusters * BME_TABLE_ENTRY_SIZE, cluster_size);
        dir_size += dir_entry_size(strlen(list[i].name), 0);
    }
    bdrv_dirty_bitmap_list_free(list, n);
    return total + ROUND_UP(dir_size, cluster_size);
}

/* ---- Driver callbacks (through the block layer wrappers) ---- */

bool qcow2_bitmap_supported(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    return s->qcow_version >= 3;
}

int qcow2_bitmap_list(BlockDriverState *bs, BdrvDirtyBitmapInfo **plist)
{
    BDRVQcow2State *s = bs->opaque;
    int n = 0;
    for (Qcow2DirtyBitmap *b = s->dirty_bitmaps; b; b = b->next) {
        n++;
    }
    BdrvDirtyBitmapInfo *list = calloc(n ? (size_t)n : 1, sizeof(*list));
    if (!list) {
        return -ENOMEM;
    }
    int i = 0;
    for (Qcow2DirtyBitmap *b = s->dirty_bitmaps; b; b = b->next, i++) {
        list[i].name = strdup(b->name);
        if (!list[i].name) {
            bdrv_dirty_bitmap_list_free(list, i);
            return -ENOMEM;
        }
        list[i].granularity = dirty_bitmap_granularity(b->bm);
        list[i].enabled = b->enabled;
        list[i].inconsistent = b->inconsistent;
        list[i].readonly = b->readonly;
        list[i].count = dirty_bitmap_count(b->bm) * list[i].granularity;
    }
    *plist = list;
    return n;
}

int qcow2_bitmap_can_store(BlockDriverState *bs, const char *name, uint32_t granularity,
                           Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    if (s->qcow_version < 3) {
        /* v2 has no autoclear bits: nothing would tell that a bitmap went stale. */
        error_setg(errp, "Cannot store dirty bitmaps in qcow2 v2 files");
        return -ENOTSUP;
    }
    int ret = check_constraints(bs, name, granularity, errp);
    if (ret < 0) {
        return ret;
    }
    uint64_t nb = 1, dir_size = dir_entry_size(strlen(name), 0);
    for (Qcow2DirtyBitmap *b = s->dirty_bitmaps; b; b = b->next) {
        nb++;
        dir_size += dir_entry_size(strlen(b->name), 0);
    }
    if (nb > QCOW2_MAX_BITMAPS) {
        error_setg(errp, "Maximum number of persistent bitmaps is already reached");
        return -EINVAL;
    }
    if (dir_size > QCOW2_MAX_BITMAP_DIRECTORY_SIZE) {
        error_setg(errp, "Not enough space in the bitmap directory");
        return -EINVAL;
    }
    return 0;
}

int qcow2_bitmap_add(BlockDriverState *bs, const char *name, uint32_t granularity,
                     bool disabled, Error **errp)
{
    Qcow2DirtyBitmap *b = mem_create(bs, name, granularity, errp);
    if (!b) {
        return -EINVAL;
    }
    b->enabled = !disabled;
    return 0;
}

int qcow2_bitmap_remove(BlockDriverState *bs, const char *name, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2DirtyBitmap *b = mem_find(s, name);
    Qcow2BitmapDir dir;
    int ret;
    if (nb_stored_bitmaps(s) > 0) {
        ret = dir_load(bs, s->bitmaps_ext.bitmap_directory_offset,
                       s->bitmaps_ext.bitmap_directory_size, &dir, errp);
        if (ret < 0) {
            return -EIO;
        }
        Qcow2BitmapEntry *e = dir_find(&dir, name);
        if (e) {
            Qcow2BitmapEntry gone = *e;
            memmove(e, e + 1, (size_t)(dir.e + dir.n - (e + 1)) * sizeof(*e));
            dir.n--;
            ret = update_ext_header_and_dir(bs, &dir);
            if (ret < 0) {
                error_setg_errno(errp, -ret, "Failed to update bitmap extension");
                free(gone.name);
                dir_free(&dir);
                return ret;
            }
            free_bitmap_clusters(bs, gone.table_offset, gone.table_size);
            free(gone.name);
        }
        dir_free(&dir);
    }
    if (b) {
        mem_release(s, b);
    }
    return 0;
}

int qcow2_bitmap_clear(BlockDriverState *bs, const char *name, Error **errp)
{
    Qcow2DirtyBitmap *b = mem_find(bs->opaque, name);
    if (!b) {
        error_setg(errp, "Dirty bitmap '%s' not found", name);
        return -ENOENT;
    }
    dirty_bitmap_clear(b->bm);
    return 0;
}

int qcow2_bitmap_set_enabled(BlockDriverState *bs, const char *name, bool enabled,
                             Error **errp)
{
    Qcow2DirtyBitmap *b = mem_find(bs->opaque, name);
    if (!b) {
        error_setg(errp, "Dirty bitmap '%s' not found", name);
        return -ENOENT;
    }
    b->enabled = enabled;
    return 0;
}

int qcow2_bitmap_merge(BlockDriverState *bs, const char *name, BlockDriverState *src,
                       const char *src_name, Error **errp)
{
    Qcow2DirtyBitmap *dst = mem_find(bs->opaque, name);
    if (!dst) {
        error_setg(errp, "Dirty bitmap '%s' not found", name);
        return -ENOENT;
    }
    if (src->drv == bs->drv) {
        Qcow2DirtyBitmap *sb = mem_find(src->opaque, src_name);
        if (!sb) {
            error_setg(errp, "Dirty bitmap '%s' not found", src_name);
            return -ENOENT;
        }
        dirty_bitmap_merge(dst->bm, sb->bm);
        return 0;
    }
    /* Another format: collect its dirty ranges first, so a failure changes nothing. */
    DirtyBitmap *tmp = dirty_bitmap_new(dirty_bitmap_size(dst->bm),
                                        dirty_bitmap_granularity(dst->bm));
    if (!tmp) {
        error_setg(errp, "No memory");
        return -ENOMEM;
    }
    int64_t len = (int64_t)dirty_bitmap_size(dst->bm), pnum;
    for (int64_t off = 0; off < len; off += pnum) {
        int ret = bdrv_dirty_bitmap_status(src, src_name, off, len - off, &pnum);
        if (ret < 0 || pnum <= 0) {
            error_setg_errno(errp, ret < 0 ? -ret : EIO, "Could not read bitmap '%s'",
                             src_name);
            dirty_bitmap_free(tmp);
            return ret < 0 ? ret : -EIO;
        }
        if (ret) {
            dirty_bitmap_set(tmp, (uint64_t)off, (uint64_t)pnum);
        }
    }
    dirty_bitmap_merge(dst->bm, tmp);
    dirty_bitmap_free(tmp);
    return 0;
}

int qcow2_bitmap_status(BlockDriverState *bs, const char *name, uint64_t offset,
                        uint64_t bytes, uint64_t *pnum)
{
    Qcow2DirtyBitmap *b = mem_find(bs->opaque, name);
    *pnum = 0;
    if (!b) {
        return -ENOENT;
    }
    uint64_t size = dirty_bitmap_size(b->bm);
    if (offset >= size) {
        return -EINVAL;
    }
    uint64_t end = bytes > size - offset ? size : offset + bytes;
    bool dirty = dirty_bitmap_get(b->bm, offset);
    int64_t next = dirty ? dirty_bitmap_next_clean(b->bm, offset, end)
                         : dirty_bitmap_next_dirty(b->bm, offset, end);
    *pnum = (next < 0 ? end : (uint64_t)next) - offset;
    return dirty;
}
