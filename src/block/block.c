/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Block layer core: opening the node graph (protocol, format, backing chain),
 * and the request path every tool uses. Alignment, splitting, bounds checks,
 * write-through and the per-node lock live here, once, so drivers stay simple.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "block-int.h"
#include "qkit/cutils.h"

/* How many bytes of an image are read to guess its format. */
#define BDRV_PROBE_BYTES 2048
/* Deepest backing chain we open; a deeper one is almost surely a loop. */
#define BDRV_MAX_CHAIN_DEPTH 256
/* Unit of every node's length. */
#define BDRV_SECTOR_SIZE 512
/* Bytes handled per step when write_zeroes falls back to writing a zero buffer. */
#define BDRV_ZERO_CHUNK (1 << 20)

const BlockDriver *bdrv_find_format(const char *format_name)
{
    for (int i = 0; bdrv_drivers[i]; i++) {
        if (!strcmp(bdrv_drivers[i]->format_name, format_name)) {
            return bdrv_drivers[i];
        }
    }
    return NULL;
}

const BlockDriver *bdrv_find_protocol(const char *filename)
{
    const char *colon = strchr(filename, ':');
    const char *slash = strchr(filename, '/');
    if (colon && (!slash || colon < slash)) {
        size_t len = colon - filename;
        for (int i = 0; bdrv_drivers[i]; i++) {
            const char *p = bdrv_drivers[i]->protocol_name;
            if (p && strlen(p) <= len && !strncmp(filename, p, strlen(p)) &&
                (filename[strlen(p)] == ':' || filename[strlen(p)] == '+')) {
                return bdrv_drivers[i];
            }
        }
    }
    return &bdrv_file;
}

void bdrv_iterate_format(void (*fn)(void *opaque, const char *name), void *opaque)
{
    for (int i = 0; bdrv_drivers[i]; i++) {
        fn(opaque, bdrv_drivers[i]->format_name);
    }
}

static bool drv_is_protocol(const BlockDriver *drv)
{
    return drv->protocol_name != NULL;
}

/* Allocate a node for drv with its zeroed driver state. */
static BlockDriverState *bdrv_new(const BlockDriver *drv, const char *filename, int flags)
{
    BlockDriverState *bs = calloc(1, sizeof(*bs));
    if (!bs) {
        abort();
    }
    bs->drv = drv;
    bs->opaque = drv->instance_size ? calloc(1, drv->instance_size) : NULL;
    if (drv->instance_size && !bs->opaque) {
        abort();
    }
    snprintf(bs->filename, sizeof(bs->filename), "%s", filename ? filename : "");
    bs->open_flags = flags;
    bs->read_only = !(flags & BDRV_O_RDWR);
    bs->request_alignment = 1;
    bs->refcnt = 1;
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&bs->lock, &attr);
    pthread_mutexattr_destroy(&attr);
    return bs;
}

static void bdrv_free(BlockDriverState *bs)
{
    pthread_mutex_destroy(&bs->lock);
    free(bs->opaque);
    free(bs);
}

/* Options every node takes, whatever its driver (handled here in the core). */
static const char *const bdrv_common_opts[] = {
    "driver", "node-name", "read-only", "auto-read-only", "force-share", "cache",
    "discard", "detect-zeroes", NULL,
};

static bool bdrv_opt_listed(const char *const *list, const char *key)
{
    for (; list && *list; list++) {
        if (!strcmp(*list, key)) {
            return true;
        }
    }
    return false;
}

/* Refuse an option the driver does not know, worded as QEMU words it. */
static int bdrv_check_open_opts(const BlockDriver *drv, json_t *options, bool format,
                                Error **errp)
{
    const char *key;
    json_t *val;
    if (!drv->open_opts) {
        return 0;
    }
    json_object_foreach(options, key, val) {
        if (bdrv_opt_listed(bdrv_common_opts, key) || bdrv_opt_listed(drv->open_opts, key) ||
            (format && (!strcmp(key, "file") || !strcmp(key, "backing"))) ||
            (!format && !strcmp(key, "filename"))) {
            continue;
        }
        if (format) {
            error_setg(errp, "Block format '%s' does not support the option '%s'",
                       drv->format_name, key);
        } else {
            error_setg(errp, "Block protocol '%s' doesn't support the option '%s'",
                       drv->format_name, key);
        }
        return -EINVAL;
    }
    return 0;
}

/* Turn the common options (read-only, cache.*, discard, force-share) into flags. */
static int bdrv_apply_common_opts(json_t *options, int *flags, Error **errp)
{
    bool b;
    json_t *cache = json_object_get(options, "cache");
    if (qdict_get_bool_opt(options, "read-only", false, &b, errp) < 0) {
        return -EINVAL;
    }
    if (b) {
        *flags &= ~BDRV_O_RDWR;
    }
    if (qdict_get_bool_opt(options, "force-share", false, &b, errp) < 0) {
        return -EINVAL;
    }
    if (b) {
        *flags |= BDRV_O_FORCE_SHARE;
    }
    if (json_is_object(cache)) {
        if (qdict_get_bool_opt(cache, "direct", !!(*flags & BDRV_O_NOCACHE), &b, errp) < 0) {
            return -EINVAL;
        }
        *flags = b ? (*flags | BDRV_O_NOCACHE) : (*flags & ~BDRV_O_NOCACHE);
        if (qdict_get_bool_opt(cache, "no-flush", !!(*flags & BDRV_O_NO_FLUSH), &b,
                               errp) < 0) {
            return -EINVAL;
        }
        *flags = b ? (*flags | BDRV_O_NO_FLUSH) : (*flags & ~BDRV_O_NO_FLUSH);
    }
    const char *discard = qdict_get_str(options, "discard");
    if (discard && bdrv_parse_discard(discard, flags) < 0) {
        error_setg(errp, "Invalid discard option");
        return -EINVAL;
    }
    return 0;
}

/* Open a protocol node (file, nbd, ...) named by filename and/or options. */
static BlockDriverState *bdrv_open_protocol(const char *filename, const BlockDriver *drv,
                                            json_t *options, int flags, Error **errp)
{
    const char *fn = qdict_get_str(options, "filename");
    if (!fn) {
        fn = filename;
    }
    if (!drv) {
        if (!fn) {
            error_setg(errp, "A block device must be specified for \"file\"");
            return NULL;
        }
        drv = bdrv_find_protocol(fn);
    }
    if (fn && !qdict_get_str(options, "filename")) {
        json_object_set_new(options, "filename", json_string(fn));
    }
    if (bdrv_apply_common_opts(options, &flags, errp) < 0 ||
        bdrv_check_open_opts(drv, options, false, errp) < 0) {
        return NULL;
    }
    BlockDriverState *bs = bdrv_new(drv, fn, flags);
    int ret = drv->open(bs, options, flags, errp);
    if (ret < 0) {
        bdrv_free(bs);
        return NULL;
    }
    if (bs->request_alignment == 0) {
        bs->request_alignment = 1;
    }
    return bs;
}

/* Guess the format from the first bytes of the protocol node; raw when nothing fits. */
static const BlockDriver *bdrv_probe(BlockDriverState *file, const char *filename,
                                     Error **errp)
{
    uint8_t buf[BDRV_PROBE_BYTES];
    int64_t len = bdrv_getlength(file);
    int n = len < 0 ? 0 : (int)QKIT_MIN((int64_t)sizeof(buf), len);
    memset(buf, 0, sizeof(buf));
    if (n > 0) {
        int ret = bdrv_pread(file, 0, n, buf, 0);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not read image for determining its format");
            return NULL;
        }
    }
    const BlockDriver *best = &bdrv_raw;
    int best_score = 0;
    for (int i = 0; bdrv_drivers[i]; i++) {
        const BlockDriver *d = bdrv_drivers[i];
        if (d->probe) {
            int score = d->probe(buf, n, filename);
            if (score > best_score) {
                best_score = score;
                best = d;
            }
        }
    }
    return best;
}

/* The images above the one being opened, to catch a backing chain that loops. */
typedef struct OpenChain {
    const struct OpenChain *up;
    dev_t dev;
    ino_t ino;
} OpenChain;

static BlockDriverState *bdrv_open_depth(const char *filename, const char *fmt,
                                         json_t *options, int flags, int depth,
                                         const OpenChain *chain, Error **errp);

/*
 * Take the permissions a user of format fmt_drv (NULL: the protocol itself) needs on
 * the protocol node file: read, plus write and resize when writable. Others may not
 * write or resize unless -U was given or the format shares (raw and bare protocols do,
 * as in QEMU: two qemu-io writers of one raw file are allowed).
 */
static int bdrv_take_perm(BlockDriverState *file, const BlockDriver *fmt_drv, int flags,
                          Error **errp)
{
    if (!file->drv->set_perm) {
        return 0;
    }
    int perm = BLK_PERM_CONSISTENT_READ;
    int unshared = BLK_PERM_WRITE | BLK_PERM_RESIZE;
    if (flags & BDRV_O_RDWR) {
        perm |= BLK_PERM_WRITE | BLK_PERM_RESIZE;
    }
    if ((flags & BDRV_O_FORCE_SHARE) ||
        (!(flags & BDRV_O_NO_SHARE) && (!fmt_drv || fmt_drv->shares_write))) {
        unshared = 0;
    }
    return file->drv->set_perm(file, perm, unshared, errp);
}

/* Resolve and open the backing file a format driver named in bs->backing_file. */
static int bdrv_open_backing(BlockDriverState *bs, json_t *options, int depth,
                             const OpenChain *chain, Error **errp)
{
    json_t *bopts = json_object_get(options, "backing");
    if (json_is_null(bopts)) {
        return 0;
    }
    if (depth >= BDRV_MAX_CHAIN_DEPTH) {
        error_setg(errp, "Backing chain is too deep (more than %d images); is there a loop?",
                   BDRV_MAX_CHAIN_DEPTH);
        return -ELOOP;
    }
    /* A backing file that is this image or one above it would loop forever. */
    OpenChain here = { .up = chain };
    struct stat st;
    if (stat(bs->filename, &st) == 0) {
        here.dev = st.st_dev;
        here.ino = st.st_ino;
    }
    if (stat(bs->full_backing_filename, &st) == 0) {
        for (const OpenChain *c = &here; c; c = c->up) {
            if (c->ino && c->dev == st.st_dev && c->ino == st.st_ino) {
                error_setg(errp, "Backing file '%s' creates an infinite loop.",
                           bs->full_backing_filename);
                return -ELOOP;
            }
        }
    }
    json_t *child_opts = json_is_object(bopts) ? json_deep_copy(bopts) : json_object();
    const char *fmt = bs->backing_format[0] ? bs->backing_format : NULL;
    if (qdict_get_str(child_opts, "driver")) {
        fmt = NULL;
    }
    /* Backing files are opened read-only and let others write them, as QEMU does. */
    int bflags = (bs->open_flags & ~(BDRV_O_RDWR | BDRV_O_WRITETHROUGH | BDRV_O_CHECK)) |
                 BDRV_O_FORCE_SHARE;
    Error *local = NULL;
    BlockDriverState *backing = bdrv_open_depth(bs->full_backing_filename, fmt, child_opts,
                                                bflags, depth + 1, &here, &local);
    if (!backing) {
        error_propagate(errp, local);
        error_prepend(errp, "Could not open backing file: ");
        return -EINVAL;
    }
    bs->backing = backing;
    return 0;
}

static BlockDriverState *bdrv_open_depth(const char *filename, const char *fmt,
                                         json_t *options, int flags, int depth,
                                         const OpenChain *chain, Error **errp)
{
    if (!options) {
        options = json_object();
    }
    if (filename && !strncmp(filename, "json:", 5)) {
        json_t *jopts = qdict_from_json_filename(filename, errp);
        if (!jopts) {
            json_decref(options);
            return NULL;
        }
        json_object_update_missing(jopts, options);
        json_decref(options);
        options = jopts;
        filename = NULL;
    }
    const char *dname = qdict_get_str(options, "driver");
    if (dname) {
        fmt = dname;
    }
    const BlockDriver *drv = NULL;
    if (fmt) {
        drv = bdrv_find_format(fmt);
        if (!drv) {
            error_setg(errp, "Unknown driver '%s'", fmt);
            json_decref(options);
            return NULL;
        }
    }
    if (!filename) {
        filename = qdict_get_str(options, "filename");
    }

    BlockDriverState *bs = NULL;
    if ((drv && drv_is_protocol(drv)) || (!drv && (flags & BDRV_O_PROTOCOL))) {
        bs = bdrv_open_protocol(filename, drv, options, flags & ~BDRV_O_WRITETHROUGH, errp);
        if (bs && bdrv_take_perm(bs, NULL, bs->open_flags, errp) < 0) {
            bdrv_unref(bs);
            bs = NULL;
        }
        if (bs && (flags & BDRV_O_WRITETHROUGH)) {
            bs->open_flags |= BDRV_O_WRITETHROUGH;
        }
        json_decref(options);
        return bs;
    }

    /* A format node: its common options apply to its child too; open the child first. */
    if (bdrv_apply_common_opts(options, &flags, errp) < 0) {
        json_decref(options);
        return NULL;
    }
    json_t *fopts = json_object_get(options, "file");
    json_t *child_opts;
    const char *child_name = filename;
    if (json_is_string(fopts)) {
        child_name = json_string_value(fopts);
        child_opts = json_object();
    } else if (json_is_object(fopts)) {
        child_opts = json_deep_copy(fopts);
    } else {
        child_opts = json_object();
    }
    if (!child_name && !qdict_get_str(child_opts, "filename") &&
        !qdict_get_str(child_opts, "driver")) {
        error_setg(errp, "A block device must be specified for \"file\"");
        json_decref(child_opts);
        json_decref(options);
        return NULL;
    }
    const BlockDriver *pdrv = NULL;
    const char *pname = qdict_get_str(child_opts, "driver");
    if (pname) {
        pdrv = bdrv_find_format(pname);
        if (!pdrv || !drv_is_protocol(pdrv)) {
            error_setg(errp, "Unknown protocol '%s'", pname);
            json_decref(child_opts);
            json_decref(options);
            return NULL;
        }
    }
    /* A format's file child passes discards down (QEMU's discard=unmap default there). */
    BlockDriverState *file = bdrv_open_protocol(child_name, pdrv, child_opts,
                                                (flags & ~BDRV_O_WRITETHROUGH) | BDRV_O_UNMAP,
                                                errp);
    json_decref(child_opts);
    if (!file) {
        json_decref(options);
        return NULL;
    }
    file->growable = true;
    if (!drv) {
        drv = bdrv_probe(file, file->filename, errp);
        if (!drv) {
            bdrv_unref(file);
            json_decref(options);
            return NULL;
        }
    }
    if (drv_is_protocol(drv)) {
        /* Probing never picks a protocol; a protocol named as format was handled above. */
        bdrv_unref(file);
        json_decref(options);
        error_setg(errp, "Driver '%s' is not a format", drv->format_name);
        return NULL;
    }
    if (bdrv_check_open_opts(drv, options, true, errp) < 0 ||
        bdrv_take_perm(file, drv, flags, errp) < 0) {
        bdrv_unref(file);
        json_decref(options);
        return NULL;
    }
    bs = bdrv_new(drv, file->filename, flags);
    bs->file = file;
    int ret = drv->open(bs, options, flags, errp);
    if (ret < 0) {
        bs->file = NULL;
        bdrv_free(bs);
        bdrv_unref(file);
        json_decref(options);
        return NULL;
    }
    if (bs->request_alignment == 0) {
        bs->request_alignment = 1;
    }
    if (bs->backing_file[0]) {
        char *full = path_combine(bs->filename, bs->backing_file);
        snprintf(bs->full_backing_filename, sizeof(bs->full_backing_filename), "%s", full);
        free(full);
        if (!(flags & BDRV_O_NO_BACKING) &&
            bdrv_open_backing(bs, options, depth, chain, errp) < 0) {
            bdrv_unref(bs);
            json_decref(options);
            return NULL;
        }
    }
    json_decref(options);
    return bs;
}

BlockDriverState *bdrv_open(const char *filename, const char *fmt, json_t *options,
                            int flags, Error **errp)
{
    return bdrv_open_depth(filename, fmt, options, flags, 0, NULL, errp);
}

void bdrv_ref(BlockDriverState *bs)
{
    __atomic_add_fetch(&bs->refcnt, 1, __ATOMIC_SEQ_CST);
}

void bdrv_unref(BlockDriverState *bs)
{
    if (!bs || __atomic_sub_fetch(&bs->refcnt, 1, __ATOMIC_SEQ_CST) > 0) {
        return;
    }
    if (!bs->read_only) {
        bdrv_flush(bs);
    }
    if (bs->drv->close) {
        bs->drv->close(bs);
    }
    if (bs->backing) {
        bdrv_unref(bs->backing);
    }
    if (bs->file) {
        bdrv_unref(bs->file);
    }
    bdrv_free(bs);
}

int bdrv_reopen(BlockDriverState *bs, bool rw, Error **errp)
{
    int flags = rw ? (bs->open_flags | BDRV_O_RDWR) : (bs->open_flags & ~BDRV_O_RDWR);
    int ret;
    if (rw == !bs->read_only) {
        return 0;
    }
    /* Going read-write: children first; going read-only: write back caches first. */
    if (!rw) {
        ret = bdrv_flush(bs);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not flush before reopening");
            return ret;
        }
    }
    if (rw && bs->file && (ret = bdrv_reopen(bs->file, rw, errp)) < 0) {
        return ret;
    }
    if (bs->drv->reopen) {
        ret = bs->drv->reopen(bs, flags, errp);
        if (ret < 0) {
            return ret;
        }
    } else if (drv_is_protocol(bs->drv)) {
        error_setg(errp, "Driver '%s' cannot be reopened", bs->drv->format_name);
        return -ENOTSUP;
    }
    bs->open_flags = flags;
    bs->read_only = !rw;
    if (!rw && bs->file && (ret = bdrv_reopen(bs->file, rw, errp)) < 0) {
        return ret;
    }
    return 0;
}

static void bdrv_lock(BlockDriverState *bs)
{
    if (!bs->drv->thread_safe) {
        pthread_mutex_lock(&bs->lock);
    }
}

static void bdrv_unlock(BlockDriverState *bs)
{
    if (!bs->drv->thread_safe) {
        pthread_mutex_unlock(&bs->lock);
    }
}

/*
 * Length of a node. Like QEMU, lengths are whole 512-byte sectors: a 1000-byte raw
 * file is a 1024-byte disk whose tail reads as zeroes.
 */
int64_t bdrv_getlength(BlockDriverState *bs)
{
    if (!bs->drv->getlength) {
        return -ENOTSUP;
    }
    bdrv_lock(bs);
    int64_t len = bs->drv->getlength(bs);
    bdrv_unlock(bs);
    if (len > 0 && len % BDRV_SECTOR_SIZE) {
        len = ROUND_UP(len, BDRV_SECTOR_SIZE);
    }
    return len;
}

/* Reject requests that are negative or, for a node that is not growable, past its end. */
static int bdrv_check_request(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    if (offset < 0 || bytes < 0 || offset > INT64_MAX - bytes) {
        return -EIO;
    }
    if (!bs->growable) {
        int64_t len = bdrv_getlength(bs);
        if (len < 0) {
            return (int)len;
        }
        if (offset + bytes > len) {
            return -EIO;
        }
    }
    return 0;
}

/* Largest piece of a request that the driver takes at once. */
static uint64_t bdrv_max_piece(BlockDriverState *bs)
{
    uint64_t max = bs->max_transfer ? bs->max_transfer : (1ULL << 30);
    uint64_t piece = ROUND_DOWN(max, (uint64_t)bs->request_alignment);
    return piece != 0 ? piece : bs->request_alignment;
}

/*
 * Ask a driver that is not thread-safe whether [offset, offset + *pnum) lies as-is in
 * its file child; then the I/O runs there without the node lock, so requests to
 * different places of one image go to the disk in parallel. Called with the lock held;
 * 1 with *host set, 0 when the driver must do the request itself, or -errno.
 */
static int bdrv_map_direct(BlockDriverState *bs, bool write, uint64_t offset, uint64_t *pnum,
                           uint64_t *host, int flags)
{
    if (!bs->drv->map_io || !bs->file || (flags & BDRV_REQ_WRITE_COMPRESSED)) {
        return 0;
    }
    uint64_t want = *pnum;
    int ret = bs->drv->map_io(bs, write, offset, want, pnum, host);
    if (ret <= 0) {
        return ret;
    }
    /* Only requests the file takes without read-modify-write, which is not locked. */
    uint32_t fa = bs->file->request_alignment;
    if (*pnum == 0 || *pnum > want || *host % fa || *pnum % fa) {
        return 0;
    }
    return 1;
}

/* Aligned read or write, split by max_transfer; the fast path is in bdrv_map_direct. */
static int bdrv_rw_aligned(BlockDriverState *bs, bool write, uint64_t offset, uint64_t bytes,
                           void *buf, int flags)
{
    uint64_t piece = bdrv_max_piece(bs);
    while (bytes) {
        uint64_t n = QKIT_MIN(bytes, piece), host;
        int ret;
        bdrv_lock(bs);
        uint64_t pnum = n;
        int direct = bdrv_map_direct(bs, write, offset, &pnum, &host, flags);
        if (direct > 0) {
            bdrv_unlock(bs);
            n = pnum;
            ret = write ? bdrv_pwrite(bs->file, host, n, buf, 0)
                        : bdrv_pread(bs->file, host, n, buf, 0);
        } else {
            ret = direct < 0 ? direct
                  : write ? bs->drv->pwrite(bs, offset, n, buf, flags)
                          : bs->drv->pread(bs, offset, n, buf, flags);
            bdrv_unlock(bs);
        }
        if (ret < 0) {
            return ret;
        }
        offset += n;
        bytes -= n;
        buf = (uint8_t *)buf + n;
    }
    return 0;
}

static int bdrv_read_aligned(BlockDriverState *bs, uint64_t offset, uint64_t bytes, void *buf,
                             int flags)
{
    return bdrv_rw_aligned(bs, false, offset, bytes, buf, flags);
}

static int bdrv_write_aligned(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                              const void *buf, int flags)
{
    return bdrv_rw_aligned(bs, true, offset, bytes, (void *)buf, flags);
}

static void *bdrv_bounce_alloc(BlockDriverState *bs, size_t len)
{
    void *p = NULL;
    size_t align = QKIT_MAX((size_t)bs->request_alignment, (size_t)4096);
    if (posix_memalign(&p, align, len ? len : align)) {
        return NULL;
    }
    return p;
}

int bdrv_pread(BlockDriverState *bs, int64_t offset, int64_t bytes, void *buf, int flags)
{
    int ret = bdrv_check_request(bs, offset, bytes);
    if (ret < 0 || bytes == 0) {
        return ret;
    }
    if (!bs->drv->pread) {
        return -ENOTSUP;
    }
    uint32_t align = bs->request_alignment;
    if (align <= 1 || (offset % align == 0 && bytes % align == 0)) {
        return bdrv_read_aligned(bs, offset, bytes, buf, flags);
    }
    /* Unaligned: read the covering aligned range into a bounce buffer. */
    uint64_t start = ROUND_DOWN((uint64_t)offset, align);
    uint64_t end = ROUND_UP((uint64_t)offset + bytes, align);
    uint8_t *bounce = bdrv_bounce_alloc(bs, end - start);
    if (!bounce) {
        return -ENOMEM;
    }
    ret = bdrv_read_aligned(bs, start, end - start, bounce, flags);
    if (ret == 0) {
        memcpy(buf, bounce + (offset - start), bytes);
    }
    free(bounce);
    return ret;
}

/* Write to a node, then flush if the node is write-through or the request asked for FUA. */
static int bdrv_write_done(BlockDriverState *bs, int ret, int flags)
{
    if (ret == 0 && ((flags & BDRV_REQ_FUA) || (bs->open_flags & BDRV_O_WRITETHROUGH))) {
        ret = bdrv_flush(bs);
    }
    return ret;
}

int bdrv_pwrite(BlockDriverState *bs, int64_t offset, int64_t bytes, const void *buf,
                int flags)
{
    if (bs->read_only) {
        return -EACCES;
    }
    int ret = bdrv_check_request(bs, offset, bytes);
    if (ret < 0 || bytes == 0) {
        return ret;
    }
    if (!bs->drv->pwrite) {
        return -ENOTSUP;
    }
    /* FUA goes down to a driver that honours it; for others the core flushes after. */
    int dflags = flags & ~BDRV_REQ_FUA;
    if ((flags & BDRV_REQ_FUA) && (bs->supported_write_flags & BDRV_REQ_FUA)) {
        dflags |= BDRV_REQ_FUA;
        flags &= ~BDRV_REQ_FUA;
    }
    uint32_t align = bs->request_alignment;
    if (align <= 1 || (offset % align == 0 && bytes % align == 0)) {
        return bdrv_write_done(bs, bdrv_write_aligned(bs, offset, bytes, buf, dflags), flags);
    }
    /* Unaligned: read-modify-write of the covering aligned range. */
    uint64_t start = ROUND_DOWN((uint64_t)offset, align);
    uint64_t end = ROUND_UP((uint64_t)offset + bytes, align);
    uint8_t *bounce = bdrv_bounce_alloc(bs, end - start);
    if (!bounce) {
        return -ENOMEM;
    }
    bdrv_lock(bs);
    ret = bdrv_read_aligned(bs, start, align, bounce, 0);
    if (ret == 0 && end - start > align) {
        ret = bdrv_read_aligned(bs, end - align, align, bounce + (end - align - start), 0);
    }
    if (ret == 0) {
        memcpy(bounce + (offset - start), buf, bytes);
        ret = bdrv_write_aligned(bs, start, end - start, bounce, dflags);
    }
    bdrv_unlock(bs);
    free(bounce);
    return bdrv_write_done(bs, ret, flags);
}

/* Write zeroes by writing a zero buffer, for drivers that cannot do better. */
static int bdrv_write_zero_buffer(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    size_t chunk = QKIT_MIN((int64_t)BDRV_ZERO_CHUNK, bytes);
    void *zero = bdrv_bounce_alloc(bs, chunk);
    if (!zero) {
        return -ENOMEM;
    }
    memset(zero, 0, chunk);
    int ret = 0;
    while (bytes > 0 && ret == 0) {
        int64_t n = QKIT_MIN((int64_t)chunk, bytes);
        ret = bdrv_pwrite(bs, offset, n, zero, 0);
        offset += n;
        bytes -= n;
    }
    free(zero);
    return ret;
}

int bdrv_pwrite_zeroes(BlockDriverState *bs, int64_t offset, int64_t bytes, int flags)
{
    if (bs->read_only) {
        return -EACCES;
    }
    int ret = bdrv_check_request(bs, offset, bytes);
    if (ret < 0 || bytes == 0) {
        return ret;
    }
    if (!(bs->open_flags & BDRV_O_UNMAP)) {
        flags &= ~BDRV_REQ_MAY_UNMAP;
    }
    uint32_t align = bs->request_alignment;
    uint64_t head = 0;
    if (align > 1) {
        head = QKIT_MIN((uint64_t)bytes, (uint64_t)((align - offset % align) % align));
    }
    if (head) {
        if (flags & BDRV_REQ_NO_FALLBACK) {
            return -ENOTSUP;
        }
        ret = bdrv_write_zero_buffer(bs, offset, head);
        if (ret < 0) {
            return ret;
        }
        offset += head;
        bytes -= head;
    }
    uint64_t body = align > 1 ? ROUND_DOWN((uint64_t)bytes, align) : (uint64_t)bytes;
    ret = -ENOTSUP;
    if (body && bs->drv->pwrite_zeroes) {
        bdrv_lock(bs);
        ret = bs->drv->pwrite_zeroes(bs, offset, body, flags & ~BDRV_REQ_FUA);
        bdrv_unlock(bs);
    }
    if (body && ret == -ENOTSUP) {
        if (flags & BDRV_REQ_NO_FALLBACK) {
            return -ENOTSUP;
        }
        ret = bdrv_write_zero_buffer(bs, offset, body);
    } else if (!body) {
        ret = 0;
    }
    if (ret == 0 && (uint64_t)bytes > body) {
        if (flags & BDRV_REQ_NO_FALLBACK) {
            return -ENOTSUP;
        }
        ret = bdrv_write_zero_buffer(bs, offset + body, bytes - body);
    }
    return bdrv_write_done(bs, ret, flags);
}

int bdrv_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    if (bs->read_only) {
        return -EACCES;
    }
    int ret = bdrv_check_request(bs, offset, bytes);
    if (ret < 0 || bytes == 0) {
        return ret;
    }
    if (!bs->drv->pdiscard || !(bs->open_flags & BDRV_O_UNMAP)) {
        return 0;
    }
    /* Discard is advisory: the unaligned head and tail are simply left alone. */
    uint32_t align = bs->request_alignment;
    uint64_t start = ROUND_UP((uint64_t)offset, align);
    uint64_t end = ROUND_DOWN((uint64_t)offset + bytes, align);
    if (end <= start) {
        return 0;
    }
    bdrv_lock(bs);
    ret = bs->drv->pdiscard(bs, start, end - start);
    bdrv_unlock(bs);
    return ret == -ENOTSUP ? 0 : ret;
}

int bdrv_flush(BlockDriverState *bs)
{
    int ret = 0;
    if (!bs || bs->read_only) {
        return 0;
    }
    if (bs->drv->flush) {
        bdrv_lock(bs);
        ret = bs->drv->flush(bs);
        bdrv_unlock(bs);
    }
    if (ret == 0 && bs->file) {
        ret = bdrv_flush(bs->file);
    }
    return ret;
}

int64_t bdrv_get_allocated_file_size(BlockDriverState *bs)
{
    if (bs->drv->get_allocated_file_size) {
        bdrv_lock(bs);
        int64_t r = bs->drv->get_allocated_file_size(bs);
        bdrv_unlock(bs);
        return r;
    }
    if (bs->file) {
        return bdrv_get_allocated_file_size(bs->file);
    }
    return -ENOTSUP;
}

int bdrv_truncate(BlockDriverState *bs, int64_t offset, bool exact, PreallocMode prealloc,
                  Error **errp)
{
    if (offset < 0) {
        error_setg(errp, "Image size cannot be negative");
        return -EINVAL;
    }
    if (bs->read_only) {
        error_setg(errp, "Image is read-only");
        return -EACCES;
    }
    if (!bs->drv->truncate) {
        error_setg(errp, "Image format driver does not support resize");
        return -ENOTSUP;
    }
    bdrv_lock(bs);
    int ret = bs->drv->truncate(bs, offset, exact, prealloc, errp);
    bdrv_unlock(bs);
    return ret;
}

bool bdrv_has_zero_init(BlockDriverState *bs)
{
    if (bs->drv->has_zero_init) {
        return bs->drv->has_zero_init(bs);
    }
    return false;
}

/* Status from the driver, with RAW followed into the child and ZERO inferred for formats. */
static int bdrv_status_one(BlockDriverState *bs, int64_t offset, int64_t bytes, int64_t *pnum,
                           int64_t *map, BlockDriverState **file)
{
    int64_t len = bdrv_getlength(bs);
    if (len < 0) {
        return (int)len;
    }
    *map = 0;
    *file = NULL;
    if (offset >= len) {
        *pnum = 0;
        return BDRV_BLOCK_EOF;
    }
    bytes = QKIT_MIN(bytes, len - offset);
    int ret;
    uint64_t dpnum = bytes, dmap = 0;
    BlockDriverState *dfile = NULL;
    if (!bs->drv->block_status) {
        ret = BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED;
        if (drv_is_protocol(bs->drv)) {
            ret |= BDRV_BLOCK_OFFSET_VALID;
            dmap = offset;
            dfile = bs;
        }
    } else {
        bdrv_lock(bs);
        ret = bs->drv->block_status(bs, true, offset, bytes, &dpnum, &dmap, &dfile);
        bdrv_unlock(bs);
        if (ret < 0) {
            return ret;
        }
        if (dpnum == 0 || dpnum > (uint64_t)bytes) {
            dpnum = bytes;
        }
    }
    *pnum = dpnum;
    if (ret & BDRV_BLOCK_RAW) {
        /* The driver passes the range through to its child at dmap. */
        int64_t cpnum;
        ret = bdrv_status_one(dfile, dmap, *pnum, &cpnum, map, file);
        if (ret < 0) {
            return ret;
        }
        if (cpnum > 0) {
            *pnum = cpnum;
        }
        /* The child's EOF is not ours: a raw node may be shorter than its file. */
        ret &= ~BDRV_BLOCK_EOF;
        ret |= BDRV_BLOCK_ALLOCATED;
        goto out;
    }
    *map = dmap;
    *file = dfile;
    if (ret & (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO)) {
        ret |= BDRV_BLOCK_ALLOCATED;
    } else if (bs->drv->supports_backing) {
        /* Unallocated in a layer without a backing layer underneath reads as zeroes. */
        if (!bs->backing) {
            ret |= BDRV_BLOCK_ZERO;
        } else {
            int64_t blen = bdrv_getlength(bs->backing);
            if (blen >= 0 && offset >= blen) {
                ret |= BDRV_BLOCK_ZERO;
            }
        }
    }
    if ((ret & BDRV_BLOCK_RECURSE) && dfile && dfile != bs && (ret & BDRV_BLOCK_DATA) &&
        !(ret & BDRV_BLOCK_ZERO) && (ret & BDRV_BLOCK_OFFSET_VALID)) {
        /* Preallocated metadata: the data clusters may still be holes in the file. */
        int64_t fpnum, fmap;
        BlockDriverState *ffile;
        int r2 = bdrv_status_one(dfile, dmap, *pnum, &fpnum, &fmap, &ffile);
        if (r2 >= 0) {
            if ((r2 & BDRV_BLOCK_EOF) && (!fpnum || (r2 & BDRV_BLOCK_ZERO))) {
                ret |= BDRV_BLOCK_ZERO;
            } else if (r2 & BDRV_BLOCK_ZERO) {
                ret |= BDRV_BLOCK_ZERO;
                *pnum = fpnum;
            } else if (fpnum > 0 && fpnum < *pnum) {
                *pnum = fpnum;
            }
        }
    }
    ret &= ~BDRV_BLOCK_RECURSE;
out:
    if (offset + *pnum >= len) {
        ret |= BDRV_BLOCK_EOF;
    }
    return ret;
}

int bdrv_block_status(BlockDriverState *bs, int64_t offset, int64_t bytes, int64_t *pnum,
                      int64_t *map, BlockDriverState **file)
{
    int64_t lmap;
    BlockDriverState *lfile;
    return bdrv_status_one(bs, offset, bytes, pnum, map ? map : &lmap, file ? file : &lfile);
}

int bdrv_block_status_above(BlockDriverState *bs, BlockDriverState *base, int64_t offset,
                            int64_t bytes, int64_t *pnum, int64_t *map,
                            BlockDriverState **file, int *depth)
{
    int64_t lmap;
    BlockDriverState *lfile;
    int d = 0;
    int ret = 0;
    int64_t top_len = bdrv_getlength(bs);
    if (!map) {
        map = &lmap;
    }
    if (!file) {
        file = &lfile;
    }
    if (top_len < 0) {
        return (int)top_len;
    }
    if (offset >= top_len) {
        *pnum = 0;
        if (depth) {
            *depth = 0;
        }
        return BDRV_BLOCK_EOF;
    }
    bytes = QKIT_MIN(bytes, top_len - offset);
    for (BlockDriverState *p = bs; p && p != base; p = p->backing, d++) {
        int64_t n;
        ret = bdrv_status_one(p, offset, bytes, &n, map, file);
        if (ret < 0) {
            return ret;
        }
        if (n == 0) {
            /* This layer ends before offset: the rest of the chain reads as zeroes. */
            ret = BDRV_BLOCK_ZERO;
            *map = 0;
            *file = NULL;
            break;
        }
        bytes = n;
        if ((ret & BDRV_BLOCK_ALLOCATED) || !p->backing || p->backing == base) {
            break;
        }
    }
    *pnum = bytes;
    if (depth) {
        *depth = d;
    }
    ret &= ~BDRV_BLOCK_EOF;
    if (offset + bytes >= top_len) {
        ret |= BDRV_BLOCK_EOF;
    }
    return ret;
}

int bdrv_is_allocated(BlockDriverState *bs, int64_t offset, int64_t bytes, int64_t *pnum)
{
    int ret = bdrv_block_status(bs, offset, bytes, pnum, NULL, NULL);
    if (ret < 0) {
        return ret;
    }
    return !!(ret & BDRV_BLOCK_ALLOCATED);
}

int bdrv_is_allocated_above(BlockDriverState *top, BlockDriverState *base, bool include_base,
                            int64_t offset, int64_t bytes, int64_t *pnum)
{
    BlockDriverState *stop = include_base && base ? base->backing : base;
    int64_t n = bytes;
    for (BlockDriverState *p = top; p && p != stop; p = p->backing) {
        int64_t pn;
        int64_t len = bdrv_getlength(p);
        if (len < 0) {
            return (int)len;
        }
        if (offset >= len) {
            /* Beyond this layer's end nothing below is visible either. */
            break;
        }
        int ret = bdrv_is_allocated(p, offset, n, &pn);
        if (ret < 0) {
            return ret;
        }
        if (ret) {
            *pnum = pn;
            return 1;
        }
        n = QKIT_MIN(n, pn);
    }
    *pnum = n;
    return 0;
}

int bdrv_create(const BlockDriver *drv, const char *filename, QOpts *opts, Error **errp)
{
    if (!drv->create) {
        error_setg(errp, "Driver '%s' does not support image creation", drv->format_name);
        return -ENOTSUP;
    }
    if (drv->create_opts) {
        /* Options of the protocol underneath (nocow, ...) pass through the format. */
        const BlockDriver *proto = bdrv_find_protocol(filename);
        const QOptDesc *tables[] = { drv->create_opts, proto->create_opts, NULL };
        int ret = qopts_validate(opts, tables, errp);
        if (ret < 0) {
            return ret;
        }
    }
    return drv->create(filename, opts, errp);
}

int bdrv_create_file(const char *filename, QOpts *opts, Error **errp)
{
    const BlockDriver *drv = bdrv_find_protocol(filename);
    /* The protocol takes only the options it knows; the format kept the rest. */
    QOpts *popts = qopts_new();
    for (int i = 0; i < qopts_count(opts); i++) {
        for (const QOptDesc *d = drv->create_opts; d && d->name; d++) {
            if (!strcmp(d->name, qopts_name_at(opts, i))) {
                qopts_set(popts, d->name, qopts_value_at(opts, i));
            }
        }
    }
    int ret = drv->create ? drv->create(filename, popts, errp) : -ENOTSUP;
    if (ret == -ENOTSUP && !drv->create) {
        error_setg(errp, "Protocol driver '%s' does not support image creation",
                   drv->format_name);
    }
    qopts_free(popts);
    return ret;
}

int bdrv_get_info(BlockDriverState *bs, BlockDriverInfo *bdi)
{
    memset(bdi, 0, sizeof(*bdi));
    if (!bs->drv->get_info) {
        return -ENOTSUP;
    }
    bdrv_lock(bs);
    int ret = bs->drv->get_info(bs, bdi);
    bdrv_unlock(bs);
    return ret;
}

const char *bdrv_get_format_name(BlockDriverState *bs)
{
    return bs->drv->format_name;
}

BlockDriverState *bdrv_get_protocol(BlockDriverState *bs)
{
    while (bs->file) {
        bs = bs->file;
    }
    return bs;
}

BlockDriverState *bdrv_chain_bottom(BlockDriverState *bs)
{
    while (bs->backing) {
        bs = bs->backing;
    }
    return bs;
}

int bdrv_parse_cache_mode(const char *mode, int *flags)
{
    *flags &= ~(BDRV_O_NOCACHE | BDRV_O_NO_FLUSH | BDRV_O_WRITETHROUGH);
    if (!strcmp(mode, "off") || !strcmp(mode, "none")) {
        *flags |= BDRV_O_NOCACHE;
    } else if (!strcmp(mode, "directsync")) {
        *flags |= BDRV_O_NOCACHE | BDRV_O_WRITETHROUGH;
    } else if (!strcmp(mode, "writeback")) {
        /* the default */
    } else if (!strcmp(mode, "unsafe")) {
        *flags |= BDRV_O_NO_FLUSH;
    } else if (!strcmp(mode, "writethrough")) {
        *flags |= BDRV_O_WRITETHROUGH;
    } else {
        return -EINVAL;
    }
    return 0;
}

int bdrv_parse_aio(const char *mode, int *flags)
{
    *flags &= ~(BDRV_O_NATIVE_AIO | BDRV_O_IO_URING);
    if (!strcmp(mode, "threads")) {
        /* the default */
    } else if (!strcmp(mode, "native")) {
        *flags |= BDRV_O_NATIVE_AIO;
    } else if (!strcmp(mode, "io_uring")) {
        *flags |= BDRV_O_IO_URING;
    } else {
        return -EINVAL;
    }
    return 0;
}

int bdrv_parse_discard(const char *mode, int *flags)
{
    if (!strcmp(mode, "off") || !strcmp(mode, "ignore")) {
        *flags &= ~BDRV_O_UNMAP;
    } else if (!strcmp(mode, "on") || !strcmp(mode, "unmap")) {
        *flags |= BDRV_O_UNMAP;
    } else {
        return -EINVAL;
    }
    return 0;
}

static const char *const prealloc_names[] = {
    [PREALLOC_MODE_OFF] = "off",
    [PREALLOC_MODE_METADATA] = "metadata",
    [PREALLOC_MODE_FALLOC] = "falloc",
    [PREALLOC_MODE_FULL] = "full",
};

const char *prealloc_mode_str(PreallocMode m)
{
    return prealloc_names[m];
}

int prealloc_mode_parse(const char *s, PreallocMode *m)
{
    for (size_t i = 0; i < ARRAY_SIZE(prealloc_names); i++) {
        if (!strcmp(s, prealloc_names[i])) {
            *m = (PreallocMode)i;
            return 0;
        }
    }
    return -EINVAL;
}
