/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The image copy engine behind `qkit-img convert`: copies one or more source nodes,
 * concatenated, into a target node with worker threads, skipping holes and zeroes
 * found through block status and by scanning the data, optionally writing
 * compressed clusters. Any tool that copies images (convert, an NBD server's copy
 * path, a VM's drive mirror) calls block_convert() instead of looping itself.
 */
#ifndef QKIT_CONVERT_H
#define QKIT_CONVERT_H

#include <stdbool.h>
#include <stdint.h>

#include "qkit/block.h"
#include "qkit/error.h"

/* Default -S: a run of this many zero bytes inside data becomes a hole. */
#define BLOCK_CONVERT_DEFAULT_MIN_SPARSE 4096
/* Largest -S value (and largest copy buffer), as qemu-img allows. */
#define BLOCK_CONVERT_MAX_BUF_BYTES (16 * 1024 * 1024)
/* Default and largest number of parallel requests (-m). */
#define BLOCK_CONVERT_DEFAULT_REQUESTS 8
#define BLOCK_CONVERT_MAX_REQUESTS 16

typedef struct BlockConvertParams {
    BlockDriverState *const *src;  /* sources, copied one after the other */
    int src_num;
    BlockDriverState *target;
    /*
     * Bytes of zeroes (a multiple of 512) that make a hole inside data; 0 copies
     * everything and leaves the target fully allocated (-S 0).
     */
    int64_t min_sparse;
    bool compressed;          /* write compressed clusters (-c) */
    /*
     * The target has a backing file: ranges the source takes from its own backing
     * chain are left unallocated in the target.
     */
    bool target_has_backing;
    bool target_is_new;       /* the target was just created by the caller */
    bool target_is_zero;      /* the caller promises the target reads as zeroes */
    bool in_order;            /* write strictly sequentially (qemu-img without -W) */
    int num_requests;         /* parallel requests (-m), 1..BLOCK_CONVERT_MAX_REQUESTS */
    bool salvage;             /* treat unreadable source ranges as zeroes (--salvage) */
    /*
     * Copy offload (-C): data ranges are copied as they are, without scanning them
     * for zeroes (done as a plain copy here; the result is laid out the same).
     */
    bool copy_range;
    uint64_t rate_limit;      /* bytes per second written to the target, 0 = no limit */
    /* Called with the share of data copied so far (done of total), may be NULL. */
    void (*progress)(void *opaque, float done, float total);
    /* Called for each error --salvage skips over, with the message; may be NULL. */
    void (*warn)(void *opaque, const char *msg);
    void *opaque;
} BlockConvertParams;

/*
 * Copy the sources into the target (which is at least as large as their sum,
 * rounded up to 512 bytes each). Returns 0, or -errno with *errp holding the
 * message qemu-img prints ("error while writing at byte N: ...").
 */
int block_convert(const BlockConvertParams *p, Error **errp);

#endif
