/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2 metadata cache: a fixed number of cluster-sized tables (L2 tables or refcount
 * blocks) kept in memory in their on-disk byte order, written back lazily.
 *
 * A cache may depend on another one: before any dirty entry of the dependent cache is
 * written, every dirty entry of the dependency is written and bs->file flushed. The L2
 * cache depends on the refcount cache so that a cluster's refcount reaches the disk
 * before the first L2 entry pointing at it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2.h"
#include "qkit/cutils.h"

#define QCOW2_CACHE_ALIGN 4096

typedef struct Qcow2CacheEntry {
    uint64_t offset;   /* host offset of the table, 0 = free slot */
    int ref;           /* pins taken by qcow2_cache_get */
    bool dirty;
    uint64_t lru;      /* last use, for eviction */
} Qcow2CacheEntry;

struct Qcow2Cache {
    int size;                  /* number of slots */
    int table_size;            /* bytes per table */
    uint8_t *tables;           /* size * table_size bytes */
    Qcow2CacheEntry *entries;
    Qcow2Cache *depends;       /* flush this one first */
    uint64_t lru_counter;
};

/* Called at open: one buffer for all tables, sized num_tables x table_size. */
Qcow2Cache *qcow2_cache_create(BlockDriverState *bs, int num_tables, int table_size)
{
    Qcow2Cache *c = calloc(1, sizeof(*c));
    if (!c) {
        return NULL;
    }
    c->size = num_tables;
    c->table_size = table_size;
    c->entries = calloc((size_t)num_tables, sizeof(*c->entries));
    void *p = NULL;
    if (!c->entries ||
        posix_memalign(&p, QCOW2_CACHE_ALIGN, (size_t)num_tables * (size_t)table_size)) {
        free(c->entries);
        free(c);
        return NULL;
    }
    c->tables = p;
    return c;
}

/* Called at close, after the caches were flushed. */
void qcow2_cache_destroy(Qcow2Cache *c)
{
    if (!c) {
        return;
    }
    free(c->tables);
    free(c->entries);
    free(c);
}

static void *cache_table(Qcow2Cache *c, int i)
{
    return c->tables + (size_t)i * (size_t)c->table_size;
}

static int cache_index_of(Qcow2Cache *c, const void *table)
{
    ptrdiff_t d = (const uint8_t *)table - c->tables;
    return (int)(d / c->table_size);
}

/* Write back every dirty entry of the dependency and make it durable. */
static int cache_flush_dependency(BlockDriverState *bs, Qcow2Cache *c)
{
    int ret = qcow2_cache_flush(bs, c->depends);
    if (ret < 0) {
        return ret;
    }
    c->depends = NULL;
    return 0;
}

/* Write one dirty entry to disk (its dependency first). */
static int cache_entry_flush(BlockDriverState *bs, Qcow2Cache *c, int i)
{
    Qcow2CacheEntry *e = &c->entries[i];
    if (!e->dirty || !e->offset) {
        return 0;
    }
    if (((BDRVQcow2State *)bs->opaque)->unusable) {
        return -ENOMEDIUM;
    }
    if (c->depends) {
        int ret = cache_flush_dependency(bs, c);
        if (ret < 0) {
            return ret;
        }
    }
    int ret = bdrv_pwrite(bs->file, (int64_t)e->offset, c->table_size, cache_table(c, i), 0);
    if (ret < 0) {
        return ret;
    }
    e->dirty = false;
    return 0;
}

/* Called before a flush and when the caller needs metadata on disk. */
int qcow2_cache_write(BlockDriverState *bs, Qcow2Cache *c)
{
    int result = 0;
    for (int i = 0; i < c->size; i++) {
        int ret = cache_entry_flush(bs, c, i);
        if (ret < 0 && result != -ENOSPC) {
            result = ret;
        }
    }
    return result;
}

/* Write back and make durable. */
int qcow2_cache_flush(BlockDriverState *bs, Qcow2Cache *c)
{
    int ret = qcow2_cache_write(bs, c);
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    return ret;
}

/* Called when an L2 table is about to reference clusters just counted in dependency. */
int qcow2_cache_set_dependency(BlockDriverState *bs, Qcow2Cache *c, Qcow2Cache *dependency)
{
    if (dependency->depends) {
        int ret = cache_flush_dependency(bs, dependency);
        if (ret < 0) {
            return ret;
        }
    }
    if (c->depends && c->depends != dependency) {
        int ret = cache_flush_dependency(bs, c);
        if (ret < 0) {
            return ret;
        }
    }
    c->depends = dependency;
    return 0;
}

/* Called after tables were rewritten behind the cache's back (snapshots, repair). */
int qcow2_cache_empty(BlockDriverState *bs, Qcow2Cache *c)
{
    int ret = qcow2_cache_flush(bs, c);
    if (ret < 0) {
        return ret;
    }
    for (int i = 0; i < c->size; i++) {
        c->entries[i].offset = 0;
        c->entries[i].lru = 0;
    }
    return 0;
}

/* Find the slot for offset or pick one to evict (writing it back if dirty). */
static int cache_do_get(BlockDriverState *bs, Qcow2Cache *c, uint64_t offset, void **table,
                        bool read_from_disk)
{
    int victim = -1;
    uint64_t min_lru = UINT64_MAX;
    for (int i = 0; i < c->size; i++) {
        Qcow2CacheEntry *e = &c->entries[i];
        if (e->offset == offset && offset) {
            e->ref++;
            e->lru = ++c->lru_counter;
            *table = cache_table(c, i);
            return 0;
        }
        if (e->ref == 0 && (e->offset == 0 ? 0 : e->lru) < min_lru) {
            min_lru = e->offset == 0 ? 0 : e->lru;
            victim = i;
        }
    }
    if (victim < 0) {
        /* Every slot is pinned: callers never hold more than a few at once. */
        return -ENOSPC;
    }
    int ret = cache_entry_flush(bs, c, victim);
    if (ret < 0) {
        return ret;
    }
    Qcow2CacheEntry *e = &c->entries[victim];
    e->offset = 0;
    if (read_from_disk) {
        ret = bdrv_pread(bs->file, (int64_t)offset, c->table_size, cache_table(c, victim), 0);
        if (ret < 0) {
            return ret;
        }
    }
    e->offset = offset;
    e->ref = 1;
    e->dirty = false;
    e->lru = ++c->lru_counter;
    *table = cache_table(c, victim);
    return 0;
}

/* Called to look at or modify the table at offset; pins it until qcow2_cache_put. */
int qcow2_cache_get(BlockDriverState *bs, Qcow2Cache *c, uint64_t offset, void **table)
{
    return cache_do_get(bs, c, offset, table, true);
}

/* Called for a table in a freshly allocated cluster: its contents are set by the caller. */
int qcow2_cache_get_empty(BlockDriverState *bs, Qcow2Cache *c, uint64_t offset, void **table)
{
    return cache_do_get(bs, c, offset, table, false);
}

/* Called when the caller is done with a table it got; clears the caller's pointer. */
void qcow2_cache_put(Qcow2Cache *c, void **table)
{
    int i = cache_index_of(c, *table);
    if (c->entries[i].ref > 0) {
        c->entries[i].ref--;
    }
    *table = NULL;
}

/* Called after changing a pinned table. */
void qcow2_cache_entry_mark_dirty(Qcow2Cache *c, void *table)
{
    c->entries[cache_index_of(c, table)].dirty = true;
}

/* Called when the cluster holding a cached table is freed: drop it unwritten. */
void qcow2_cache_discard(Qcow2Cache *c, uint64_t offset)
{
    for (int i = 0; i < c->size; i++) {
        Qcow2CacheEntry *e = &c->entries[i];
        if (e->offset == offset && e->ref == 0) {
            e->offset = 0;
            e->dirty = false;
            e->lru = 0;
        }
    }
}

/* Called every cache-clean-interval: forget clean tables nobody holds. */
void qcow2_cache_clean_unused(Qcow2Cache *c)
{
    for (int i = 0; i < c->size; i++) {
        Qcow2CacheEntry *e = &c->entries[i];
        if (e->ref == 0 && !e->dirty) {
            e->offset = 0;
            e->lru = 0;
        }
    }
}

/* Called by code that must know whether a freed cluster is still cached. */
void *qcow2_cache_is_table_offset(Qcow2Cache *c, uint64_t offset)
{
    for (int i = 0; i < c->size; i++) {
        if (c->entries[i].offset == offset && offset) {
            return cache_table(c, i);
        }
    }
    return NULL;
}
