/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * An in-memory dirty bitmap over a byte range: one bit per granularity bytes (a power
 * of two), bit k covering [k * granularity, (k + 1) * granularity) clamped to the
 * size. Flat (one bit per granule in one array): a 1 TiB disk at 64 KiB granularity
 * takes 2 MiB. The serialized form is the one qcow2 stores: bit k is bit (k % 8) of
 * byte k / 8, least significant bit first.
 */
#ifndef QKIT_DIRTY_BITMAP_H
#define QKIT_DIRTY_BITMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct DirtyBitmap DirtyBitmap;

/* A clean bitmap covering size bytes; NULL if out of memory or granularity is bad. */
DirtyBitmap *dirty_bitmap_new(uint64_t size, uint32_t granularity);
void dirty_bitmap_free(DirtyBitmap *bm);

uint64_t dirty_bitmap_size(const DirtyBitmap *bm);
uint32_t dirty_bitmap_granularity(const DirtyBitmap *bm);
/* Number of bits (granules) the bitmap has. */
uint64_t dirty_bitmap_nb_bits(const DirtyBitmap *bm);
/* Number of set bits; dirty bytes are this times the granularity, as QEMU counts. */
uint64_t dirty_bitmap_count(const DirtyBitmap *bm);

/* Mark every granule touching [offset, offset + bytes) dirty (clamped to the size). */
void dirty_bitmap_set(DirtyBitmap *bm, uint64_t offset, uint64_t bytes);
/* Make the whole bitmap clean. */
void dirty_bitmap_clear(DirtyBitmap *bm);
/* True if the granule holding byte offset is dirty. */
bool dirty_bitmap_get(const DirtyBitmap *bm, uint64_t offset);
/*
 * First byte offset at or after offset (below end) whose granule is dirty (or clean),
 * or -1 if there is none. The result is offset itself or the start of a granule.
 */
int64_t dirty_bitmap_next_dirty(const DirtyBitmap *bm, uint64_t offset, uint64_t end);
int64_t dirty_bitmap_next_clean(const DirtyBitmap *bm, uint64_t offset, uint64_t end);
/* OR src into dst; both cover the same size (granularities may differ). */
void dirty_bitmap_merge(DirtyBitmap *dst, const DirtyBitmap *src);
/* Change the covered size: new granules are clean, dropped ones are forgotten. -ENOMEM. */
int dirty_bitmap_truncate(DirtyBitmap *bm, uint64_t size);

/*
 * Serialized bytes for nb_bits bits from bit first_bit (a multiple of 64), and the
 * conversions. deserialize_ones sets the bits (a qcow2 "all ones" cluster).
 */
size_t dirty_bitmap_serialized_size(uint64_t nb_bits);
void dirty_bitmap_serialize(const DirtyBitmap *bm, uint64_t first_bit, uint64_t nb_bits,
                            uint8_t *buf);
void dirty_bitmap_deserialize(DirtyBitmap *bm, uint64_t first_bit, uint64_t nb_bits,
                              const uint8_t *buf);
void dirty_bitmap_deserialize_ones(DirtyBitmap *bm, uint64_t first_bit, uint64_t nb_bits);

#endif
