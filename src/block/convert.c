/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The copy engine of `convert`. Work is cut into chunks of at most one buffer
 * (2 MiB, or one cluster when compressing); each chunk has one status, found
 * through the block status of the sources:
 *   DATA    read it, then write what is not a long enough run of zeroes;
 *   ZERO    nothing to read: write zeroes, or nothing when the target reads as
 *           zeroes already (new image with zero init, --target-is-zero);
 *   BACKING the source takes it from its backing chain and so does the target:
 *           leave it unallocated.
 * Worker threads take chunks in order under one lock and read, scan and (when
 * compressing) compress them in parallel, each into a slot of a ring of buffers:
 * the reorder window. Writes go either in order (the default, as qemu-img does,
 * so the target is laid out sequentially) or as soon as a chunk is ready. In order,
 * a finished chunk waits in its slot; whoever finishes the lowest pending chunk
 * writes it and every consecutive ready one after it, so the other workers keep
 * reading and compressing instead of waiting for their turn. A worker waits only
 * when the window is full. When compressing, the window is several times deeper
 * than the number of workers (one per core), so one slow cluster (data that does
 * not compress) does not idle a core; a plain copy, bound by the kernel's copying,
 * keeps a short window so that what is written is still in the CPU caches.
 *
 * Chunk boundaries and the zero scan follow qemu-img exactly, so that the holes
 * of a converted image (what `map` shows) match those of qemu-img's output.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qkit/convert.h"
#include "qkit/cutils.h"

#define CONVERT_SECTOR_BITS 9
#define CONVERT_SECTOR_SIZE (1 << CONVERT_SECTOR_BITS)
/* Default buffer per request: 2 MiB. */
#define CONVERT_BUF_SECTORS ((2 * 1024 * 1024) >> CONVERT_SECTOR_BITS)
/* Largest range asked about in one block status call (qemu's request limit). */
#define CONVERT_MAX_STATUS_SECTORS ((int64_t)(INT32_MAX >> CONVERT_SECTOR_BITS))
/* Buffers are aligned for O_DIRECT targets (-t none). */
#define CONVERT_BUF_ALIGN 4096
#define NSEC_PER_SEC 1000000000LL
/*
 * The reorder window when compressing: at least this many clusters per worker, or
 * as many as fit in CONVERT_WINDOW_BYTES (data and compressed buffers), up to
 * CONVERT_MAX_SLOTS. A plain copy holds at most CONVERT_COPY_WINDOW_BYTES.
 */
#define CONVERT_SLOTS_PER_WORKER 2
#define CONVERT_WINDOW_BYTES ((size_t)16 * 1024 * 1024)
#define CONVERT_MAX_SLOTS ((size_t)128)
#define CONVERT_COPY_WINDOW_BYTES ((size_t)8 * 1024 * 1024)
/* Most compressing workers, however many cores there are. */
#define CONVERT_MAX_COMPRESS_WORKERS 64

typedef enum { CONVERT_DATA, CONVERT_ZERO, CONVERT_BACKING } ConvertStatus;

/* What a slot of the window holds. */
typedef enum {
    CONVERT_SLOT_FREE,         /* no chunk */
    CONVERT_SLOT_BUSY,         /* a worker is reading or compressing it */
    CONVERT_SLOT_READY,        /* in order: waiting to be written */
    CONVERT_SLOT_DONE,         /* written (or failed): the window may move past it */
} ConvertSlotState;

/* One chunk in flight and its buffers, allocated once before the copy starts. */
typedef struct ConvertSlot {
    ConvertSlotState state;
    int64_t sector_num;
    int64_t nb_sectors;
    ConvertStatus status;
    uint8_t *buf;              /* buf_sectors of data */
    uint8_t *cbuf;             /* compressed cluster (split_compress) */
    ssize_t clen;              /* compressed length, or -ENOSPC to store it plain */
    bool is_zero;              /* compressed mode: the chunk is all zeroes */
} ConvertSlot;

typedef struct ConvertState {
    const BlockConvertParams *p;
    BlockDriverState *target;
    int64_t *src_sectors;      /* length of each source in sectors (rounded up) */
    int64_t *src_bytes;        /* exact length of each source */
    int64_t *src_alignment;    /* request alignment of each source, in sectors */
    int64_t total_sectors;
    int64_t buf_sectors;       /* largest chunk of data */
    int64_t cluster_sectors;   /* target cluster size, 0 if none */
    int64_t min_sparse;        /* sectors; 0 = fully allocate */
    int64_t alignment;         /* sectors the zero scan aligns holes to (power of 2) */
    int64_t target_backing_sectors; /* length of the target's backing node, -1 = none */
    bool has_zero_init;        /* zero ranges need no write */
    bool compressed;
    bool split_compress;       /* the driver compresses outside its lock */

    pthread_mutex_t lock;
    pthread_cond_t turn;       /* signalled when the window moves or the copy fails */
    int64_t next_sector;       /* first sector not yet handed to a worker */
    ConvertSlot *slots;        /* the reorder window, a ring of num_slots */
    int64_t num_slots;
    int64_t next_seq;          /* number of chunks handed out so far */
    int64_t done_seq;          /* chunks before this one are written: the window start */
    bool writing;              /* in order: a worker is writing ready chunks */
    int window_waiters;        /* workers waiting for a free slot */
    int64_t allocated_sectors; /* sectors counted by the progress line */
    int64_t allocated_done;
    int ret;                   /* -EINPROGRESS while copying, then 0 or -errno */
    Error *err;                /* the first error */
    int64_t rl_next_ns;        /* rate limit: when the next write may start */
} ConvertState;

/* Called when a copy step fails: keep the first error, stop everyone. */
static void convert_fail(ConvertState *s, int ret, Error *err)
{
    pthread_mutex_lock(&s->lock);
    if (s->ret == -EINPROGRESS) {
        s->ret = ret;
        s->err = err;
        err = NULL;
    }
    pthread_cond_broadcast(&s->turn);
    pthread_mutex_unlock(&s->lock);
    error_free(err);
}

/* Lock-free peek at whether the copy is still going, for the hot path. */
static bool convert_running(ConvertState *s)
{
    return __atomic_load_n(&s->ret, __ATOMIC_ACQUIRE) == -EINPROGRESS;
}

/* Which source holds sector_num, and the sector where that source starts. */
static void convert_select_part(const ConvertState *s, int64_t sector_num, int *src_cur,
                                int64_t *src_cur_offset)
{
    *src_cur = 0;
    *src_cur_offset = 0;
    while (sector_num - *src_cur_offset >= s->src_sectors[*src_cur] &&
           *src_cur < s->p->src_num - 1) {
        *src_cur_offset += s->src_sectors[*src_cur];
        (*src_cur)++;
    }
}

/* Report a salvaged error through the caller's warning hook. */
static void convert_warn(ConvertState *s, const char *fmt, uint64_t offset, int err)
{
    if (!s->p->warn) {
        return;
    }
    char msg[256];
    snprintf(msg, sizeof(msg), fmt, offset, strerror(err));
    s->p->warn(s->p->opaque, msg);
}

/*
 * Called with the lock held for the chunk that starts at sector_num: find its
 * status and length (qemu-img's rules, so holes land where qemu-img puts them).
 */
static int convert_next_chunk(ConvertState *s, int64_t sector_num, int64_t *pn,
                              ConvertStatus *pstatus, Error **errp)
{
    int src_cur;
    int64_t src_cur_offset;
    bool post_backing_zero = false;
    ConvertStatus status;

    convert_select_part(s, sector_num, &src_cur, &src_cur_offset);
    int64_t n = QKIT_MIN(s->total_sectors - sector_num, CONVERT_MAX_STATUS_SECTORS);
    if (s->target_backing_sectors >= 0) {
        if (sector_num >= s->target_backing_sectors) {
            post_backing_zero = true;
        } else if (sector_num + n > s->target_backing_sectors) {
            /* Past the backing file's end zeroes are implicit: split there. */
            n = s->target_backing_sectors - sector_num;
        }
    }

    BlockDriverState *src_bs = s->p->src[src_cur];
    BlockDriverState *base = s->p->target_has_backing ? src_bs->backing : NULL;
    int64_t offset = (sector_num - src_cur_offset) << CONVERT_SECTOR_BITS;
    int64_t count;
    int ret;
    for (;;) {
        ret = bdrv_block_status_above(src_bs, base, offset, n << CONVERT_SECTOR_BITS,
                                      &count, NULL, NULL, NULL);
        if (ret >= 0) {
            break;
        }
        if (!s->p->salvage) {
            error_setg(errp, "error while reading block status at offset %" PRId64 ": %s",
                       offset, strerror(-ret));
            return ret;
        }
        if (n == 1) {
            convert_warn(s, "error while reading block status at offset %" PRIu64 ": %s",
                         (uint64_t)offset, -ret);
            ret = BDRV_BLOCK_DATA;
            count = CONVERT_SECTOR_SIZE;
            break;
        }
        n = DIV_ROUND_UP(n, 4);
    }
    if (count == 0) {
        /* The padding of a source whose length is not a sector multiple. */
        ret = BDRV_BLOCK_ZERO;
        count = (src_cur_offset + s->src_sectors[src_cur] - sector_num) << CONVERT_SECTOR_BITS;
    }
    n = DIV_ROUND_UP(count, CONVERT_SECTOR_SIZE);

    /* Keep chunk ends aligned to the source's request alignment. */
    int64_t tail = (sector_num - src_cur_offset + n) % s->src_alignment[src_cur];
    if (n > tail) {
        n -= tail;
    }

    if (ret & BDRV_BLOCK_ZERO) {
        status = post_backing_zero ? CONVERT_BACKING : CONVERT_ZERO;
    } else if (ret & BDRV_BLOCK_DATA) {
        status = CONVERT_DATA;
    } else {
        status = s->p->target_has_backing ? CONVERT_BACKING : CONVERT_DATA;
    }
    if (status == CONVERT_DATA || (!s->min_sparse && status == CONVERT_ZERO)) {
        /* Both go through the buffer. */
        n = QKIT_MIN(n, s->buf_sectors);
    }
    if (s->compressed) {
        /* Compressed clusters are written whole: round short runs up to data. */
        if (n < s->cluster_sectors) {
            n = QKIT_MIN(s->cluster_sectors, s->total_sectors - sector_num);
            status = CONVERT_DATA;
        } else {
            n = ROUND_DOWN(n, s->cluster_sectors);
        }
    }
    *pn = n;
    *pstatus = status;
    return 0;
}

/* Read nb_sectors at sector_num from the concatenated sources into buf. */
static int convert_read(ConvertState *s, int64_t sector_num, int64_t nb_sectors, uint8_t *buf)
{
    int64_t single_read_until = 0;
    while (nb_sectors > 0) {
        int src_cur;
        int64_t src_cur_offset;
        convert_select_part(s, sector_num, &src_cur, &src_cur_offset);
        BlockDriverState *bs = s->p->src[src_cur];
        int64_t offset = (sector_num - src_cur_offset) << CONVERT_SECTOR_BITS;
        int64_t n = QKIT_MIN(nb_sectors, s->src_sectors[src_cur] - (sector_num - src_cur_offset));
        if (single_read_until > offset) {
            n = 1;
        }
        int64_t bytes = n << CONVERT_SECTOR_BITS;
        int64_t avail = QKIT_MAX((int64_t)0, s->src_bytes[src_cur] - offset);
        int64_t rd = QKIT_MIN(bytes, avail);
        int ret = rd > 0 ? bdrv_pread(bs, offset, rd, buf, 0) : 0;
        if (ret < 0) {
            if (!s->p->salvage) {
                return ret;
            }
            if (n > 1) {
                /* Retry sector by sector to save what can be read. */
                single_read_until = offset + bytes;
                continue;
            }
            convert_warn(s, "error while reading offset %" PRIu64 ": %s", (uint64_t)offset,
                         -ret);
            rd = 0;
        }
        if (rd < bytes) {
            memset(buf + rd, 0, bytes - rd);
        }
        sector_num += n;
        nb_sectors -= n;
        buf += bytes;
    }
    return 0;
}

/*
 * Whether the first sector of buf holds data; *pnum is the number of sectors that
 * share its verdict. A boundary is moved to an alignment multiple when that avoids
 * a partial write of an aligned block.
 */
static bool convert_sectors_allocated(const uint8_t *buf, int64_t n, int64_t *pnum,
                                      int64_t sector_num, int64_t alignment)
{
    if (n <= 0) {
        *pnum = 0;
        return false;
    }
    bool is_zero = buffer_is_zero(buf, CONVERT_SECTOR_SIZE);
    int64_t i;
    for (i = 1; i < n; i++) {
        if (is_zero != buffer_is_zero(buf + (i << CONVERT_SECTOR_BITS), CONVERT_SECTOR_SIZE)) {
            break;
        }
    }
    if (i == n) {
        *pnum = n;
        return !is_zero;
    }
    int64_t tail = (sector_num + i) & (alignment - 1);
    if (tail) {
        if (is_zero && i <= tail) {
            /* The data that follows rewrites this block anyway: write it as data. */
            is_zero = false;
        }
        if (!is_zero) {
            i = QKIT_MIN(i + alignment - tail, n);
        } else {
            i -= tail;
        }
    }
    *pnum = i;
    return !is_zero;
}

/*
 * Like convert_sectors_allocated, but once data starts, zero runs shorter than min
 * sectors are swallowed into it so that writes are not split for tiny holes.
 */
static bool convert_sectors_allocated_min(const uint8_t *buf, int64_t n, int64_t *pnum,
                                          int64_t min, int64_t sector_num, int64_t alignment)
{
    if (n < min) {
        min = n;
    }
    if (!convert_sectors_allocated(buf, n, pnum, sector_num, alignment)) {
        return false;
    }
    int64_t num_used = *pnum;
    int64_t num_checked = num_used;
    buf += *pnum << CONVERT_SECTOR_BITS;
    n -= *pnum;
    sector_num += *pnum;
    while (n > 0) {
        int64_t run;
        bool data = convert_sectors_allocated(buf, n, &run, sector_num, alignment);
        buf += run << CONVERT_SECTOR_BITS;
        n -= run;
        sector_num += run;
        num_checked += run;
        if (data) {
            num_used = num_checked;
        } else if (run >= min) {
            break;
        }
    }
    *pnum = num_used;
    return true;
}

/* Called before each write: sleep so writes stay under the -r rate. */
static void convert_throttle(ConvertState *s, int64_t bytes)
{
    if (!s->p->rate_limit) {
        return;
    }
    int64_t now = qkit_clock_ns();
    pthread_mutex_lock(&s->lock);
    int64_t start = QKIT_MAX(now, s->rl_next_ns);
    s->rl_next_ns = start + (int64_t)((double)bytes * NSEC_PER_SEC / (double)s->p->rate_limit);
    pthread_mutex_unlock(&s->lock);
    if (start > now) {
        struct timespec ts = {
            .tv_sec = (start - now) / NSEC_PER_SEC,
            .tv_nsec = (start - now) % NSEC_PER_SEC,
        };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
        }
    }
}

/* Node lock for driver calls the core has no wrapper for (split compression). */
static void convert_node_lock(BlockDriverState *bs)
{
    if (!bs->drv->thread_safe) {
        pthread_mutex_lock(&bs->lock);
    }
}

static void convert_node_unlock(BlockDriverState *bs)
{
    if (!bs->drv->thread_safe) {
        pthread_mutex_unlock(&bs->lock);
    }
}

/* Store a cluster compressed by a worker, as a compressed write would. */
static int convert_write_precompressed(ConvertState *s, ConvertSlot *w, int64_t offset,
                                       int64_t bytes, const uint8_t *buf)
{
    BlockDriverState *bs = s->target;
    if (w->clen < 0) {
        /* It did not shrink: the driver would have stored it plain too. */
        return bdrv_pwrite(bs, offset, bytes, buf, 0);
    }
    convert_node_lock(bs);
    int ret = bs->drv->pwrite_compressed_cluster(bs, (uint64_t)offset, w->cbuf,
                                                 (size_t)w->clen);
    convert_node_unlock(bs);
    if (ret == 0 && (bs->open_flags & BDRV_O_WRITETHROUGH)) {
        ret = bdrv_flush(bs);
    }
    return ret;
}

/* Write one chunk to the target according to its status (qemu-img's rules). */
static int convert_write(ConvertState *s, ConvertSlot *w, int64_t sector_num,
                         int64_t nb_sectors, const uint8_t *buf, ConvertStatus status)
{
    while (nb_sectors > 0) {
        int64_t n = nb_sectors;
        int64_t offset = sector_num << CONVERT_SECTOR_BITS;
        int ret;
        switch (status) {
        case CONVERT_BACKING:
            /* The target's backing file provides it: leave it unallocated. */
            break;
        case CONVERT_DATA:
            if (!s->min_sparse || s->p->copy_range ||
                (!s->compressed &&
                 convert_sectors_allocated_min(buf, n, &n, s->min_sparse, sector_num,
                                               s->alignment)) ||
                (s->compressed && !w->is_zero)) {
                convert_throttle(s, n << CONVERT_SECTOR_BITS);
                if (s->compressed && s->split_compress) {
                    ret = convert_write_precompressed(s, w, offset, n << CONVERT_SECTOR_BITS,
                                                      buf);
                } else {
                    ret = bdrv_pwrite(s->target, offset, n << CONVERT_SECTOR_BITS, buf,
                                      s->compressed ? BDRV_REQ_WRITE_COMPRESSED : 0);
                }
                if (ret < 0) {
                    return ret;
                }
                break;
            }
            /* A run of zeroes inside data: handled like a zero range. */
            /* fallthrough */
        case CONVERT_ZERO:
            if (s->has_zero_init) {
                break;
            }
            convert_throttle(s, n << CONVERT_SECTOR_BITS);
            ret = bdrv_pwrite_zeroes(s->target, offset, n << CONVERT_SECTOR_BITS,
                                     BDRV_REQ_MAY_UNMAP);
            if (ret < 0) {
                return ret;
            }
            break;
        }
        sector_num += n;
        nb_sectors -= n;
        buf += n << CONVERT_SECTOR_BITS;
    }
    return 0;
}

/* Called with the lock held when a chunk is handed out: advance the -p line. */
static void convert_account(ConvertState *s, int64_t n, ConvertStatus status)
{
    if (status == CONVERT_DATA || (!s->min_sparse && status == CONVERT_ZERO)) {
        s->allocated_done += n;
        if (s->p->progress && s->allocated_sectors > 0) {
            s->p->progress(s->p->opaque, (float)s->allocated_done,
                           (float)s->allocated_sectors);
        }
    }
}

/* Compressed mode, in the worker that read the cluster: scan and compress it. */
static void convert_prepare_compressed(ConvertState *s, ConvertSlot *w, int64_t nb_sectors)
{
    int64_t bytes = nb_sectors << CONVERT_SECTOR_BITS;
    w->is_zero = buffer_is_zero(w->buf, bytes);
    if ((s->min_sparse && w->is_zero) || !s->split_compress) {
        /* Zero clusters become holes (unless -S 0); the fallback compresses later. */
        return;
    }
    int64_t cluster_bytes = s->cluster_sectors << CONVERT_SECTOR_BITS;
    if (bytes < cluster_bytes) {
        /* The disk's last cluster is compressed as a whole, zero padded. */
        memset(w->buf + bytes, 0, cluster_bytes - bytes);
    }
    w->clen = s->target->drv->compress_cluster(s->target, w->cbuf, cluster_bytes - 1, w->buf,
                                               cluster_bytes);
}

/* Called with the lock held: the slot of the seq-th chunk. */
static ConvertSlot *convert_slot(ConvertState *s, int64_t seq)
{
    return &s->slots[seq % s->num_slots];
}

/* Called with the lock held after a chunk is written: move the window past it. */
static void convert_advance(ConvertState *s)
{
    int freed = 0;
    while (s->done_seq < s->next_seq &&
           convert_slot(s, s->done_seq)->state == CONVERT_SLOT_DONE) {
        convert_slot(s, s->done_seq)->state = CONVERT_SLOT_FREE;
        s->done_seq++;
        freed++;
    }
    /* Wake one waiter per freed slot: waking them all would only put most back to sleep. */
    for (int i = 0; i < QKIT_MIN(freed, s->window_waiters); i++) {
        pthread_cond_signal(&s->turn);
    }
}

/* Called without the lock for a handed-out chunk: read, scan and compress it. */
static void convert_fill(ConvertState *s, ConvertSlot *slot)
{
    if (slot->status == CONVERT_DATA) {
        int ret = convert_read(s, slot->sector_num, slot->nb_sectors, slot->buf);
        if (ret < 0) {
            Error *err = NULL;
            error_setg(&err, "error while reading at byte %" PRId64 ": %s",
                       slot->sector_num << CONVERT_SECTOR_BITS, strerror(-ret));
            convert_fail(s, ret, err);
        } else if (s->compressed) {
            convert_prepare_compressed(s, slot, slot->nb_sectors);
        }
    } else if (!s->min_sparse && slot->status == CONVERT_ZERO) {
        /* -S 0: zero ranges are written as data to allocate them. */
        slot->status = CONVERT_DATA;
        memset(slot->buf, 0, slot->nb_sectors << CONVERT_SECTOR_BITS);
        if (s->compressed) {
            convert_prepare_compressed(s, slot, slot->nb_sectors);
        }
    }
}

/* Called without the lock: write a filled chunk, unless the copy already failed. */
static void convert_write_slot(ConvertState *s, ConvertSlot *slot)
{
    if (!convert_running(s)) {
        return;
    }
    int ret = convert_write(s, slot, slot->sector_num, slot->nb_sectors, slot->buf,
                            slot->status);
    if (ret < 0) {
        Error *err = NULL;
        error_setg(&err, "error while writing at byte %" PRId64 ": %s",
                   slot->sector_num << CONVERT_SECTOR_BITS, strerror(-ret));
        convert_fail(s, ret, err);
    }
}

/*
 * In order, called with the lock held when the chunk at the window start is ready:
 * write it and every consecutive ready one, dropping the lock during each write.
 */
static void convert_drain(ConvertState *s)
{
    s->writing = true;
    while (s->done_seq < s->next_seq) {
        ConvertSlot *slot = convert_slot(s, s->done_seq);
        if (slot->state != CONVERT_SLOT_READY) {
            break;
        }
        pthread_mutex_unlock(&s->lock);
        convert_write_slot(s, slot);
        pthread_mutex_lock(&s->lock);
        slot->state = CONVERT_SLOT_DONE;
        convert_advance(s);
    }
    s->writing = false;
}

/* Called with the lock held: whether the chunk at the window start waits for a writer. */
static bool convert_can_drain(ConvertState *s)
{
    return s->p->in_order && !s->writing && s->done_seq < s->next_seq &&
           convert_slot(s, s->done_seq)->state == CONVERT_SLOT_READY;
}

/*
 * Called with the lock held: hand out the next chunk in a free slot, or return NULL
 * (with the copy failed) when its status cannot be found.
 */
static ConvertSlot *convert_take(ConvertState *s)
{
    int64_t sector_num = s->next_sector, n;
    ConvertStatus status;
    Error *err = NULL;
    int ret = convert_next_chunk(s, sector_num, &n, &status, &err);
    if (ret < 0) {
        pthread_mutex_unlock(&s->lock);
        convert_fail(s, ret, err);
        pthread_mutex_lock(&s->lock);
        return NULL;
    }
    ConvertSlot *slot = convert_slot(s, s->next_seq++);
    slot->state = CONVERT_SLOT_BUSY;
    slot->sector_num = sector_num;
    slot->nb_sectors = n;
    slot->status = status;
    s->next_sector = sector_num + n;
    convert_account(s, n, status);
    if (s->next_sector >= s->total_sectors) {
        /* Nothing left to hand out: workers waiting for a slot can stop. */
        pthread_cond_broadcast(&s->turn);
    }
    return slot;
}

/* Body of each worker thread: fill and write chunks until the end or an error. */
static void *convert_worker(void *opaque)
{
    ConvertState *s = opaque;
    pthread_mutex_lock(&s->lock);
    while (s->ret == -EINPROGRESS) {
        if (convert_can_drain(s)) {
            convert_drain(s);
            continue;
        }
        if (s->next_sector >= s->total_sectors) {
            /* Whoever fills the chunks still in flight writes them. */
            break;
        }
        if (s->next_seq - s->done_seq >= s->num_slots) {
            s->window_waiters++;
            pthread_cond_wait(&s->turn, &s->lock);
            s->window_waiters--;
            continue;
        }
        ConvertSlot *slot = convert_take(s);
        if (!slot) {
            break;
        }
        pthread_mutex_unlock(&s->lock);
        convert_fill(s, slot);
        if (!s->p->in_order) {
            convert_write_slot(s, slot);
        }
        pthread_mutex_lock(&s->lock);
        if (s->p->in_order) {
            slot->state = CONVERT_SLOT_READY;
        } else {
            slot->state = CONVERT_SLOT_DONE;
            convert_advance(s);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* Largest power of two not above x (x >= 1). */
static int64_t convert_pow2floor(int64_t x)
{
    int64_t p = 1;
    while (p <= x / 2) {
        p *= 2;
    }
    return p;
}

/* Fill in the sizes, limits and modes of s from p; 0 or -errno with *errp. */
static int convert_setup(ConvertState *s, const BlockConvertParams *p, Error **errp)
{
    s->p = p;
    s->target = p->target;
    s->src_sectors = calloc(p->src_num, sizeof(int64_t));
    s->src_bytes = calloc(p->src_num, sizeof(int64_t));
    s->src_alignment = calloc(p->src_num, sizeof(int64_t));
    if (!s->src_sectors || !s->src_bytes || !s->src_alignment) {
        error_setg(errp, "Out of memory");
        return -ENOMEM;
    }
    for (int i = 0; i < p->src_num; i++) {
        int64_t len = bdrv_getlength(p->src[i]);
        if (len < 0) {
            error_setg_errno(errp, (int)-len, "Could not get size of source %d", i);
            return (int)len;
        }
        s->src_bytes[i] = len;
        s->src_sectors[i] = DIV_ROUND_UP(len, CONVERT_SECTOR_SIZE);
        s->src_alignment[i] = DIV_ROUND_UP((int64_t)p->src[i]->request_alignment,
                                           CONVERT_SECTOR_SIZE);
        s->total_sectors += s->src_sectors[i];
    }

    s->min_sparse = p->min_sparse >> CONVERT_SECTOR_BITS;
    s->compressed = p->compressed;
    s->buf_sectors = CONVERT_BUF_SECTORS;
    s->alignment = QKIT_MAX(s->min_sparse ? convert_pow2floor(s->min_sparse) : 1,
                            DIV_ROUND_UP((int64_t)s->target->request_alignment,
                                         CONVERT_SECTOR_SIZE));
    s->has_zero_init = p->target_is_zero;
    if (!s->has_zero_init && p->target_is_new && s->min_sparse && !p->target_has_backing) {
        s->has_zero_init = bdrv_has_zero_init(s->target);
    }
    s->target_backing_sectors = -1;
    if (p->target_has_backing && p->target_is_new && s->target->backing) {
        int64_t blen = bdrv_getlength(s->target->backing);
        if (blen >= 0) {
            s->target_backing_sectors = DIV_ROUND_UP(blen, CONVERT_SECTOR_SIZE);
        }
    }


    BlockDriverInfo bdi;
    memset(&bdi, 0, sizeof(bdi));
    int ret = bdrv_get_info(s->target, &bdi);
    if (ret < 0) {
        if (s->compressed) {
            error_setg(errp, "could not get block driver info");
            return ret;
        }
    } else {
        s->cluster_sectors = bdi.cluster_size >> CONVERT_SECTOR_BITS;
    }
    if (s->compressed) {
        /* Only whole clusters can be compressed: one cluster per request. */
        if (s->cluster_sectors <= 0 || s->cluster_sectors > s->buf_sectors) {
            error_setg(errp, "invalid cluster size");
            return -EINVAL;
        }
        s->buf_sectors = s->cluster_sectors;
        s->split_compress = s->target->drv->compress_cluster &&
                            s->target->drv->pwrite_compressed_cluster;
    }
    return 0;
}

/* Count the sectors the progress line measures (data, and zeroes with -S 0). */
static int convert_count_allocated(ConvertState *s, Error **errp)
{
    int64_t sector_num = 0;
    while (sector_num < s->total_sectors) {
        int64_t n;
        ConvertStatus status;
        int ret = convert_next_chunk(s, sector_num, &n, &status, errp);
        if (ret < 0) {
            return ret;
        }
        if (status == CONVERT_DATA || (!s->min_sparse && status == CONVERT_ZERO)) {
            s->allocated_sectors += n;
        }
        sector_num += n;
    }
    return 0;
}

/*
 * How many worker threads copy and how many chunks the window holds.
 * Compressing is CPU-bound: one worker per core (more would only take turns on
 * the cores), and a window deep enough that a cluster which is slow to compress
 * does not leave the other cores waiting. A plain copy keeps -m chunks in flight,
 * but no more than CONVERT_COPY_WINDOW_BYTES: the writer takes chunks the readers
 * left behind, and the shorter that distance the more of them is still in cache.
 */
static void convert_plan(ConvertState *s, int *nworkers)
{
    size_t bytes = (size_t)s->buf_sectors << CONVERT_SECTOR_BITS;
    int n = s->p->num_requests > 0 ? s->p->num_requests : BLOCK_CONVERT_DEFAULT_REQUESTS;
    if (s->compressed && s->split_compress) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = (int)QKIT_MAX(1L, QKIT_MIN(cpus, (long)CONVERT_MAX_COMPRESS_WORKERS));
        s->num_slots = QKIT_MAX((int64_t)n * CONVERT_SLOTS_PER_WORKER,
                                (int64_t)QKIT_MIN(CONVERT_WINDOW_BYTES / (2 * bytes),
                                                  CONVERT_MAX_SLOTS));
    } else {
        int64_t fit = (int64_t)(CONVERT_COPY_WINDOW_BYTES / bytes);
        s->num_slots = QKIT_MAX((int64_t)1, QKIT_MIN((int64_t)n, fit));
        n = (int)s->num_slots;
    }
    *nworkers = n;
}

/* Allocate the window's buffers up front: the copy loop itself never allocates. */
static int convert_alloc_slots(ConvertState *s)
{
    size_t bytes = (size_t)s->buf_sectors << CONVERT_SECTOR_BITS;
    s->slots = calloc(s->num_slots, sizeof(*s->slots));
    if (!s->slots) {
        return -ENOMEM;
    }
    for (int64_t i = 0; i < s->num_slots; i++) {
        ConvertSlot *slot = &s->slots[i];
        slot->clen = -ENOSPC;
        if (posix_memalign((void **)&slot->buf, CONVERT_BUF_ALIGN, bytes)) {
            slot->buf = NULL;
            return -ENOMEM;
        }
        if (s->split_compress &&
            posix_memalign((void **)&slot->cbuf, CONVERT_BUF_ALIGN, bytes)) {
            slot->cbuf = NULL;
            return -ENOMEM;
        }
    }
    return 0;
}

/*
 * After compressed writes the image file may end mid-sector; like qemu-img, round
 * it up so that sector-based readers see whole sectors.
 */
static int convert_align_file_end(ConvertState *s, Error **errp)
{
    BlockDriverState *file = bdrv_get_protocol(s->target);
    if (file == s->target) {
        return 0;
    }
    /* The length may already read as rounded up while the file is not: truncate anyway. */
    int64_t len = bdrv_getlength(file);
    if (len < 0) {
        return 0;
    }
    return bdrv_truncate(file, ROUND_UP(len, CONVERT_SECTOR_SIZE), false, PREALLOC_MODE_OFF,
                         errp);
}

int block_convert(const BlockConvertParams *p, Error **errp)
{
    ConvertState s;
    memset(&s, 0, sizeof(s));
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.turn, NULL);
    s.ret = -EINPROGRESS;

    pthread_t *threads = NULL;
    int nworkers = 0, started = 0;
    int ret = convert_setup(&s, p, errp);
    if (ret < 0) {
        goto out;
    }
    if (p->progress) {
        ret = convert_count_allocated(&s, errp);
        if (ret < 0) {
            goto out;
        }
    }

    convert_plan(&s, &nworkers);
    threads = calloc(nworkers, sizeof(*threads));
    if (!threads || convert_alloc_slots(&s) < 0) {
        error_setg(errp, "Out of memory");
        ret = -ENOMEM;
        goto out;
    }
    for (started = 0; started < nworkers; started++) {
        if (pthread_create(&threads[started], NULL, convert_worker, &s)) {
            convert_fail(&s, -EAGAIN, NULL);
            break;
        }
    }
    for (int i = 0; i < started; i++) {
        pthread_join(threads[i], NULL);
    }
    if (s.ret == -EINPROGRESS) {
        s.ret = 0;
    }
    ret = s.ret;
    if (ret < 0) {
        if (s.err) {
            error_propagate(errp, s.err);
            s.err = NULL;
        } else {
            error_setg_errno(errp, -ret, "Could not start the copy");
        }
    } else if (s.compressed) {
        ret = convert_align_file_end(&s, errp);
    }
out:
    for (int64_t i = 0; s.slots && i < s.num_slots; i++) {
        free(s.slots[i].buf);
        free(s.slots[i].cbuf);
    }
    free(s.slots);
    free(threads);
    error_free(s.err);
    free(s.src_sectors);
    free(s.src_bytes);
    free(s.src_alignment);
    pthread_cond_destroy(&s.turn);
    pthread_mutex_destroy(&s.lock);
    return ret;
}
