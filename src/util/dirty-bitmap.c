/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A flat in-memory dirty bitmap with a granularity (see qkit/dirty-bitmap.h). */
#include "qkit/dirty-bitmap.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qkit/cutils.h"

#define BITS_PER_WORD 64
#define BYTES_PER_WORD 8
#define ALL_ONES UINT64_MAX

struct DirtyBitmap {
    uint64_t size;          /* bytes covered */
    uint32_t granularity;   /* bytes per bit */
    int gran_bits;          /* log2(granularity) */
    uint64_t nb_bits;
    uint64_t nb_words;
    uint64_t *words;        /* bit k is bit k % 64 of words[k / 64]; bits past nb_bits 0 */
};

/* Granules needed to cover size bytes. */
static uint64_t bits_for(uint64_t size, int gran_bits)
{
    return (size + (1ULL << gran_bits) - 1) >> gran_bits;
}

DirtyBitmap *dirty_bitmap_new(uint64_t size, uint32_t granularity)
{
    if (!QKIT_IS_POW2(granularity)) {
        return NULL;
    }
    DirtyBitmap *bm = calloc(1, sizeof(*bm));
    if (!bm) {
        return NULL;
    }
    bm->size = size;
    bm->granularity = granularity;
    bm->gran_bits = __builtin_ctz(granularity);
    bm->nb_bits = bits_for(size, bm->gran_bits);
    bm->nb_words = DIV_ROUND_UP(bm->nb_bits, BITS_PER_WORD);
    bm->words = calloc(bm->nb_words ? bm->nb_words : 1, BYTES_PER_WORD);
    if (!bm->words) {
        free(bm);
        return NULL;
    }
    return bm;
}

void dirty_bitmap_free(DirtyBitmap *bm)
{
    if (bm) {
        free(bm->words);
        free(bm);
    }
}

uint64_t dirty_bitmap_size(const DirtyBitmap *bm)
{
    return bm->size;
}

uint32_t dirty_bitmap_granularity(const DirtyBitmap *bm)
{
    return bm->granularity;
}

uint64_t dirty_bitmap_nb_bits(const DirtyBitmap *bm)
{
    return bm->nb_bits;
}

uint64_t dirty_bitmap_count(const DirtyBitmap *bm)
{
    uint64_t n = 0;
    for (uint64_t i = 0; i < bm->nb_words; i++) {
        n += (uint64_t)__builtin_popcountll(bm->words[i]);
    }
    return n;
}

/* Set (or clear) bits [first, last] inclusive. */
static void set_bit_range(DirtyBitmap *bm, uint64_t first, uint64_t last, bool value)
{
    uint64_t w0 = first / BITS_PER_WORD, w1 = last / BITS_PER_WORD;
    for (uint64_t w = w0; w <= w1; w++) {
        uint64_t mask = ALL_ONES;
        if (w == w0) {
            mask &= ALL_ONES << (first % BITS_PER_WORD);
        }
        if (w == w1) {
            mask &= ALL_ONES >> (BITS_PER_WORD - 1 - last % BITS_PER_WORD);
        }
        if (value) {
            bm->words[w] |= mask;
        } else {
            bm->words[w] &= ~mask;
        }
    }
}

void dirty_bitmap_set(DirtyBitmap *bm, uint64_t offset, uint64_t bytes)
{
    if (bytes == 0 || offset >= bm->size) {
        return;
    }
    uint64_t end = bytes > bm->size - offset ? bm->size : offset + bytes;
    set_bit_range(bm, offset >> bm->gran_bits, (end - 1) >> bm->gran_bits, true);
}

void dirty_bitmap_clear(DirtyBitmap *bm)
{
    memset(bm->words, 0, bm->nb_words * BYTES_PER_WORD);
}

bool dirty_bitmap_get(const DirtyBitmap *bm, uint64_t offset)
{
    if (offset >= bm->size) {
        return false;
    }
    uint64_t bit = offset >> bm->gran_bits;
    return (bm->words[bit / BITS_PER_WORD] >> (bit % BITS_PER_WORD)) & 1;
}

/* First bit at or after bit (below limit) equal to value, or limit. */
static uint64_t find_bit(const DirtyBitmap *bm, uint64_t bit, uint64_t limit, bool value)
{
    while (bit < limit) {
        uint64_t w = bm->words[bit / BITS_PER_WORD];
        if (!value) {
            w = ~w;
        }
        w &= ALL_ONES << (bit % BITS_PER_WORD);
        if (w) {
            uint64_t found = ROUND_DOWN(bit, BITS_PER_WORD) + (uint64_t)__builtin_ctzll(w);
            return found < limit ? found : limit;
        }
        bit = ROUND_DOWN(bit, BITS_PER_WORD) + BITS_PER_WORD;
    }
    return limit;
}

/* Shared by next_dirty / next_clean. */
static int64_t next_with(const DirtyBitmap *bm, uint64_t offset, uint64_t end, bool value)
{
    end = QKIT_MIN(end, bm->size);
    if (offset >= end) {
        return -1;
    }
    uint64_t first = offset >> bm->gran_bits;
    uint64_t limit = ((end - 1) >> bm->gran_bits) + 1;
    uint64_t bit = find_bit(bm, first, limit, value);
    if (bit >= limit) {
        return -1;
    }
    return bit == first ? (int64_t)offset : (int64_t)(bit << bm->gran_bits);
}

int64_t dirty_bitmap_next_dirty(const DirtyBitmap *bm, uint64_t offset, uint64_t end)
{
    return next_with(bm, offset, end, true);
}

int64_t dirty_bitmap_next_clean(const DirtyBitmap *bm, uint64_t offset, uint64_t end)
{
    return next_with(bm, offset, end, false);
}

void dirty_bitmap_merge(DirtyBitmap *dst, const DirtyBitmap *src)
{
    if (dst->granularity == src->granularity && dst->nb_words == src->nb_words) {
        for (uint64_t i = 0; i < dst->nb_words; i++) {
            dst->words[i] |= src->words[i];
        }
        return;
    }
    int64_t start = dirty_bitmap_next_dirty(src, 0, src->size);
    while (start >= 0) {
        int64_t stop = dirty_bitmap_next_clean(src, (uint64_t)start, src->size);
        uint64_t end = stop < 0 ? src->size : (uint64_t)stop;
        dirty_bitmap_set(dst, (uint64_t)start, end - (uint64_t)start);
        start = dirty_bitmap_next_dirty(src, end, src->size);
    }
}

int dirty_bitmap_truncate(DirtyBitmap *bm, uint64_t size)
{
    uint64_t nb_bits = bits_for(size, bm->gran_bits);
    uint64_t nb_words = DIV_ROUND_UP(nb_bits, BITS_PER_WORD);
    if (nb_words != bm->nb_words) {
        uint64_t *w = realloc(bm->words, (nb_words ? nb_words : 1) * BYTES_PER_WORD);
        if (!w) {
            return -ENOMEM;
        }
        if (nb_words > bm->nb_words) {
            memset(w + bm->nb_words, 0, (nb_words - bm->nb_words) * BYTES_PER_WORD);
        }
        bm->words = w;
        bm->nb_words = nb_words;
    }
    /* Forget the bits past the new end of the last word. */
    if (nb_bits % BITS_PER_WORD) {
        bm->words[nb_words - 1] &= ALL_ONES >> (BITS_PER_WORD - nb_bits % BITS_PER_WORD);
    }
    bm->size = size;
    bm->nb_bits = nb_bits;
    return 0;
}

size_t dirty_bitmap_serialized_size(uint64_t nb_bits)
{
    return (size_t)DIV_ROUND_UP(nb_bits, 8);
}

void dirty_bitmap_serialize(const DirtyBitmap *bm, uint64_t first_bit, uint64_t nb_bits,
                            uint8_t *buf)
{
    size_t len = dirty_bitmap_serialized_size(nb_bits);
    uint64_t w = first_bit / BITS_PER_WORD;
    for (size_t pos = 0; pos < len; pos += BYTES_PER_WORD, w++) {
        uint64_t le = htole64(w < bm->nb_words ? bm->words[w] : 0);
        memcpy(buf + pos, &le, QKIT_MIN((size_t)BYTES_PER_WORD, len - pos));
    }
    /* Bits of the last byte past nb_bits belong to the next range: leave them out. */
    if (nb_bits % 8) {
        buf[len - 1] &= (uint8_t)((1U << (nb_bits % 8)) - 1);
    }
}

void dirty_bitmap_deserialize(DirtyBitmap *bm, uint64_t first_bit, uint64_t nb_bits,
                              const uint8_t *buf)
{
    if (first_bit >= bm->nb_bits) {
        return;
    }
    nb_bits = QKIT_MIN(nb_bits, bm->nb_bits - first_bit);
    size_t len = dirty_bitmap_serialized_size(nb_bits);
    uint64_t w = first_bit / BITS_PER_WORD;
    for (size_t pos = 0; pos < len; pos += BYTES_PER_WORD, w++) {
        uint64_t le = 0;
        memcpy(&le, buf + pos, QKIT_MIN((size_t)BYTES_PER_WORD, len - pos));
        bm->words[w] = le64toh(le);
    }
    /* Tail bits past the range (or past the disk) must not become dirty. */
    uint64_t end_bit = first_bit + nb_bits;
    if (end_bit % BITS_PER_WORD) {
        bm->words[(end_bit - 1) / BITS_PER_WORD] &=
            ALL_ONES >> (BITS_PER_WORD - end_bit % BITS_PER_WORD);
    }
}

void dirty_bitmap_deserialize_ones(DirtyBitmap *bm, uint64_t first_bit, uint64_t nb_bits)
{
    if (first_bit >= bm->nb_bits || nb_bits == 0) {
        return;
    }
    nb_bits = QKIT_MIN(nb_bits, bm->nb_bits - first_bit);
    set_bit_range(bm, first_bit, first_bit + nb_bits - 1, true);
}
