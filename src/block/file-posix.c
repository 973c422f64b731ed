/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The file protocol: a regular file or block device on the host. Reads and
 * writes go through pread/pwrite (aio=threads) or io_uring; holes come from
 * SEEK_DATA/SEEK_HOLE; zeroes and discard use fallocate. The image is locked
 * with OFD byte-range locks on the same bytes QEMU uses, so qkit and QEMU
 * tools see each other's locks.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block-int.h"
#include "qkit/cutils.h"

/* Lock bytes: a holder of permission bit N locks byte 100+N; a user that does not let
 * others have permission N locks byte 200+N (the layout QEMU uses). */
#define FILE_LOCK_BASE_PERM   100
#define FILE_LOCK_BASE_SHARED 200

/* Number of BLK_PERM_* bits that have lock bytes. */
#define FILE_PERM_COUNT 4

static const char *const file_perm_names[FILE_PERM_COUNT] = {
    "consistent read", "write", "write unchanged", "resize",
};

/* Memory alignment of O_DIRECT buffers (covers 512 and 4096-byte sector devices). */
#define FILE_DIRECT_ALIGN 4096
/* Smallest request size tried when probing what O_DIRECT accepts. */
#define FILE_SECTOR_SIZE 512
/* A new, empty file gets its first block written (see file_allocate_first_block). */
#define FILE_FIRST_BLOCK 4096
/* Entries in the io_uring submission queue of one node. */
#define FILE_URING_ENTRIES 64

typedef struct BDRVFileState {
    int fd;
    bool is_blockdev;
    bool use_lock;
    int perm;         /* BLK_PERM_* taken */
    int unshared;     /* BLK_PERM_* kept from others */
    bool use_uring;
    bool uring_ready;
    struct io_uring ring;
    pthread_mutex_t ring_lock;
    /*
     * What fstat and SEEK_DATA/SEEK_HOLE said last, so that a request does not pay a
     * system call for each: the size of a regular file (-1 until known; any change
     * made through this node drops it and bumps size_epoch, so a size read while the
     * change ran is not kept), and a range known to hold data (empty when start ==
     * end). A stale data range is harmless: data may always read as zeroes.
     */
    pthread_mutex_t cache_lock;
    int64_t size_cache;
    uint64_t size_epoch;
    uint64_t data_start;
    uint64_t data_end;
} BDRVFileState;

/* Strip a "file:" prefix from a filename. */
static const char *file_strip_prefix(const char *filename)
{
    if (!strncmp(filename, "file:", 5)) {
        return filename + 5;
    }
    return filename;
}

/* Test whether another open file description holds a lock on byte off. */
static int file_lock_test(int fd, off_t off, bool *locked)
{
    struct flock fl = {
        .l_type = F_WRLCK,
        .l_whence = SEEK_SET,
        .l_start = off,
        .l_len = 1,
    };
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0) {
        return -errno;
    }
    *locked = fl.l_type != F_UNLCK;
    return 0;
}

static int file_lock_byte(int fd, off_t off, bool lock)
{
    struct flock fl = {
        .l_type = lock ? F_RDLCK : F_UNLCK,
        .l_whence = SEEK_SET,
        .l_start = off,
        .l_len = 1,
    };
    return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

/*
 * Take the locks for a user with permissions perm that does not share unshared,
 * after checking that nobody else holds a conflicting lock.
 */
static int file_apply_locks(int fd, const char *filename, int perm, int unshared, Error **errp)
{
    for (int i = 0; i < FILE_PERM_COUNT; i++) {
        bool locked = false;
        int ret;
        if (perm & (1 << i)) {
            ret = file_lock_test(fd, FILE_LOCK_BASE_SHARED + i, &locked);
            if (ret == 0 && locked) {
                error_setg(errp, "Failed to get \"%s\" lock", file_perm_names[i]);
                error_append_hint(errp, "Is another process using the image [%s]?\n",
                                  filename);
                return -EAGAIN;
            }
        }
        if (unshared & (1 << i)) {
            ret = file_lock_test(fd, FILE_LOCK_BASE_PERM + i, &locked);
            if (ret == 0 && locked) {
                error_setg(errp, "Failed to get shared \"%s\" lock", file_perm_names[i]);
                error_append_hint(errp, "Is another process using the image [%s]?\n",
                                  filename);
                return -EAGAIN;
            }
        }
    }
    for (int i = 0; i < FILE_PERM_COUNT; i++) {
        int ret = 0;
        if (perm & (1 << i)) {
            ret = file_lock_byte(fd, FILE_LOCK_BASE_PERM + i, true);
        }
        if (ret == 0 && (unshared & (1 << i))) {
            ret = file_lock_byte(fd, FILE_LOCK_BASE_SHARED + i, true);
        }
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Failed to lock byte %d",
                             FILE_LOCK_BASE_PERM + i);
            return ret;
        }
    }
    return 0;
}

/* Drop every lock byte this fd holds. */
static void file_unlock_all(int fd)
{
    for (int i = 0; i < FILE_PERM_COUNT; i++) {
        file_lock_byte(fd, FILE_LOCK_BASE_PERM + i, false);
        file_lock_byte(fd, FILE_LOCK_BASE_SHARED + i, false);
    }
}

/* Open the fd for flags: O_DIRECT for cache=none, read-write only when asked. */
static int file_open_fd(const char *path, int flags, Error **errp)
{
    int oflags = O_CLOEXEC | ((flags & BDRV_O_RDWR) ? O_RDWR : O_RDONLY);
    if (flags & BDRV_O_NOCACHE) {
        oflags |= O_DIRECT;
    }
    int fd = open(path, oflags);
    if (fd < 0) {
        int err = errno;
        if (err == EROFS && (flags & BDRV_O_RDWR)) {
            error_setg_errno(errp, err, "Could not open '%s'", path);
        } else {
            error_setg_errno(errp, err, "Could not open '%s'", path);
        }
        return -err;
    }
    return fd;
}

/* The smallest request size an O_DIRECT fd accepts: 512 where the device allows. */
static uint32_t file_probe_direct_align(int fd)
{
    void *buf;
    if (posix_memalign(&buf, FILE_DIRECT_ALIGN, FILE_DIRECT_ALIGN)) {
        return FILE_DIRECT_ALIGN;
    }
    uint32_t align = FILE_DIRECT_ALIGN;
    for (uint32_t sz = FILE_SECTOR_SIZE; sz < FILE_DIRECT_ALIGN; sz *= 2) {
        if (pread(fd, buf, sz, 0) >= 0 || errno != EINVAL) {
            align = sz;
            break;
        }
    }
    free(buf);
    return align;
}

/*
 * Write zeroes over the first block of a file that has just grown from empty, as
 * QEMU does: it keeps later O_DIRECT alignment probing working on that file, and
 * makes `map` of a new raw image report the same first extent as QEMU's.
 */
static int file_allocate_first_block(int fd, uint64_t size)
{
    size_t n = size < FILE_FIRST_BLOCK ? FILE_SECTOR_SIZE : FILE_FIRST_BLOCK;
    void *zero;
    if (size == 0) {
        return 0;
    }
    if (posix_memalign(&zero, FILE_DIRECT_ALIGN, n)) {
        return -ENOMEM;
    }
    memset(zero, 0, n);
    ssize_t done;
    do {
        done = pwrite(fd, zero, n, 0);
    } while (done < 0 && errno == EINTR);
    int ret = done < 0 ? -errno : 0;
    free(zero);
    return ret;
}

static int file_open(BlockDriverState *bs, json_t *options, int flags, Error **errp)
{
    BDRVFileState *s = bs->opaque;
    const char *fn = qdict_get_str(options, "filename");
    if (!fn) {
        error_setg(errp, "The 'file' block driver requires a file name");
        return -EINVAL;
    }
    fn = file_strip_prefix(fn);
    snprintf(bs->filename, sizeof(bs->filename), "%s", fn);

    const char *locking = qdict_get_str(options, "locking");
    s->use_lock = !(locking && !strcmp(locking, "off"));
    const char *aio = qdict_get_str(options, "aio");
    if (aio && bdrv_parse_aio(aio, &flags) < 0) {
        error_setg(errp, "Parameter 'aio' does not accept value '%s'", aio);
        return -EINVAL;
    }
    if ((flags & BDRV_O_NATIVE_AIO) && !(flags & BDRV_O_NOCACHE)) {
        error_setg(errp, "aio=native was specified, but it requires cache.direct=on, "
                   "which was not specified.");
        return -EINVAL;
    }
    bs->open_flags = flags;

    s->fd = file_open_fd(fn, flags, errp);
    if (s->fd < 0) {
        return s->fd;
    }
    struct stat st;
    if (fstat(s->fd, &st) == 0 && S_ISBLK(st.st_mode)) {
        s->is_blockdev = true;
    } else if (fstat(s->fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(s->fd);
        error_setg(errp, "'%s' is a directory", fn);
        return -EISDIR;
    }
    bs->request_alignment = (flags & BDRV_O_NOCACHE) ? file_probe_direct_align(s->fd) : 1;
    /* io_uring for aio=io_uring and aio=native alike; threads means plain syscalls. */
    s->use_uring = flags & (BDRV_O_IO_URING | BDRV_O_NATIVE_AIO);
    pthread_mutex_init(&s->ring_lock, NULL);
    pthread_mutex_init(&s->cache_lock, NULL);
    s->size_cache = -1;
    if (s->use_uring) {
        int ret = io_uring_queue_init(FILE_URING_ENTRIES, &s->ring, 0);
        if (ret < 0) {
            close(s->fd);
            error_setg_errno(errp, -ret, "Unable to use io_uring");
            return ret;
        }
        s->uring_ready = true;
    }
    return 0;
}

static void file_close(BlockDriverState *bs)
{
    BDRVFileState *s = bs->opaque;
    if (s->uring_ready) {
        io_uring_queue_exit(&s->ring);
    }
    pthread_mutex_destroy(&s->ring_lock);
    pthread_mutex_destroy(&s->cache_lock);
    close(s->fd);
}

/* Take perm and keep others from unshared, replacing what this node held before. */
static int file_set_perm(BlockDriverState *bs, int perm, int unshared, Error **errp)
{
    BDRVFileState *s = bs->opaque;
    if (s->use_lock) {
        file_unlock_all(s->fd);
        int ret = file_apply_locks(s->fd, bs->filename, perm, unshared, errp);
        if (ret < 0) {
            if (s->perm) {
                file_apply_locks(s->fd, bs->filename, s->perm, s->unshared, NULL);
            }
            return ret;
        }
    }
    s->perm = perm;
    s->unshared = unshared;
    return 0;
}

/* Called after anything that may have changed the file's size: forget the size. */
static void file_size_changed(BDRVFileState *s)
{
    pthread_mutex_lock(&s->cache_lock);
    __atomic_store_n(&s->size_cache, -1, __ATOMIC_RELEASE);
    s->size_epoch++;
    pthread_mutex_unlock(&s->cache_lock);
}

/* Called after a range may have become a hole: forget the known data range. */
static void file_data_changed(BDRVFileState *s)
{
    pthread_mutex_lock(&s->cache_lock);
    s->data_start = s->data_end = 0;
    pthread_mutex_unlock(&s->cache_lock);
}

/* Switch read-only/read-write: a new fd with the new mode, locks taken anew. */
static int file_reopen(BlockDriverState *bs, int flags, Error **errp)
{
    BDRVFileState *s = bs->opaque;
    int fd = file_open_fd(bs->filename, flags, errp);
    if (fd < 0) {
        return fd;
    }
    if (s->use_lock && s->perm) {
        int perm = s->perm & ~(BLK_PERM_WRITE | BLK_PERM_RESIZE);
        if (flags & BDRV_O_RDWR) {
            perm |= BLK_PERM_WRITE | BLK_PERM_RESIZE;
        }
        /* Drop our old locks first so they do not conflict with the new ones. */
        file_unlock_all(s->fd);
        int ret = file_apply_locks(fd, bs->filename, perm, s->unshared, errp);
        if (ret < 0) {
            file_apply_locks(s->fd, bs->filename, s->perm, s->unshared, NULL);
            close(fd);
            return ret;
        }
        s->perm = perm;
    }
    close(s->fd);
    s->fd = fd;
    file_data_changed(s);
    file_size_changed(s);
    return 0;
}

/* One read or write through io_uring, looping over short transfers. */
static int file_uring_rw(BDRVFileState *s, bool write, uint64_t offset, uint64_t bytes,
                         void *buf)
{
    uint64_t done = 0;
    int ret = 0;
    pthread_mutex_lock(&s->ring_lock);
    while (done < bytes) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
        if (!sqe) {
            ret = -EAGAIN;
            break;
        }
        unsigned n = (unsigned)QKIT_MIN(bytes - done, (uint64_t)1 << 30);
        if (write) {
            io_uring_prep_write(sqe, s->fd, (uint8_t *)buf + done, n, offset + done);
        } else {
            io_uring_prep_read(sqe, s->fd, (uint8_t *)buf + done, n, offset + done);
        }
        ret = io_uring_submit_and_wait(&s->ring, 1);
        if (ret < 0) {
            break;
        }
        struct io_uring_cqe *cqe;
        ret = io_uring_wait_cqe(&s->ring, &cqe);
        if (ret < 0) {
            break;
        }
        int res = cqe->res;
        io_uring_cqe_seen(&s->ring, cqe);
        if (res < 0) {
            if (res == -EINTR || res == -EAGAIN) {
                continue;
            }
            ret = res;
            break;
        }
        if (res == 0) {
            if (write) {
                ret = -EIO;
                break;
            }
            /* Reading past the end of the file gives zeroes. */
            memset((uint8_t *)buf + done, 0, bytes - done);
            done = bytes;
            break;
        }
        done += res;
        ret = 0;
    }
    pthread_mutex_unlock(&s->ring_lock);
    return ret < 0 ? ret : 0;
}

/* pread/pwrite loop with EINTR retried and a read past EOF filled with zeroes. */
static int file_sync_rw(BDRVFileState *s, bool write, uint64_t offset, uint64_t bytes,
                        void *buf)
{
    uint64_t done = 0;
    while (done < bytes) {
        ssize_t n = write ? pwrite(s->fd, (uint8_t *)buf + done, bytes - done, offset + done)
                          : pread(s->fd, (uint8_t *)buf + done, bytes - done, offset + done);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            if (write) {
                return -EIO;
            }
            memset((uint8_t *)buf + done, 0, bytes - done);
            return 0;
        }
        done += n;
    }
    return 0;
}

/* Do one transfer; with O_DIRECT a misaligned buffer goes through an aligned bounce. */
static int file_rw(BlockDriverState *bs, bool write, uint64_t offset, uint64_t bytes,
                   void *buf)
{
    BDRVFileState *s = bs->opaque;
    void *bounce = NULL;
    void *io_buf = buf;
    if ((bs->open_flags & BDRV_O_NOCACHE) && ((uintptr_t)buf % FILE_DIRECT_ALIGN)) {
        if (posix_memalign(&bounce, FILE_DIRECT_ALIGN, bytes)) {
            return -ENOMEM;
        }
        if (write) {
            memcpy(bounce, buf, bytes);
        }
        io_buf = bounce;
    }
    int ret = s->use_uring ? file_uring_rw(s, write, offset, bytes, io_buf)
                           : file_sync_rw(s, write, offset, bytes, io_buf);
    if (write && (int64_t)(offset + bytes) > __atomic_load_n(&s->size_cache,
                                                              __ATOMIC_ACQUIRE)) {
        file_size_changed(s);
    }
    if (bounce) {
        if (!write && ret == 0) {
            memcpy(buf, bounce, bytes);
        }
        free(bounce);
    }
    return ret;
}

static int file_pread(BlockDriverState *bs, uint64_t offset, uint64_t bytes, void *buf,
                      int flags)
{
    return file_rw(bs, false, offset, bytes, buf);
}

static int file_pwrite(BlockDriverState *bs, uint64_t offset, uint64_t bytes, const void *buf,
                       int flags)
{
    return file_rw(bs, true, offset, bytes, (void *)buf);
}

static int64_t file_getlength(BlockDriverState *bs)
{
    BDRVFileState *s = bs->opaque;
    if (s->is_blockdev) {
        uint64_t size;
        if (ioctl(s->fd, BLKGETSIZE64, &size) < 0) {
            return -errno;
        }
        return (int64_t)size;
    }
    pthread_mutex_lock(&s->cache_lock);
    int64_t size = s->size_cache;
    uint64_t epoch = s->size_epoch;
    pthread_mutex_unlock(&s->cache_lock);
    if (size >= 0) {
        return size;
    }
    struct stat st;
    if (fstat(s->fd, &st) < 0) {
        return -errno;
    }
    pthread_mutex_lock(&s->cache_lock);
    if (epoch == s->size_epoch) {
        __atomic_store_n(&s->size_cache, (int64_t)st.st_size, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&s->cache_lock);
    return st.st_size;
}

/* Grow the file to at least end bytes (the new area reads as zeroes). */
static int file_extend_to(BDRVFileState *s, int64_t cur_len, uint64_t end)
{
    if (!s->is_blockdev && (int64_t)end > cur_len && ftruncate(s->fd, end) < 0) {
        return -errno;
    }
    return 0;
}

static int file_do_pwrite_zeroes(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                                 int flags)
{
    BDRVFileState *s = bs->opaque;
    int64_t len = file_getlength(bs);
    if (len < 0) {
        return (int)len;
    }
    if (s->is_blockdev) {
        uint64_t range[2] = { offset, bytes };
        if (ioctl(s->fd, BLKZEROOUT, range) == 0) {
            return 0;
        }
        return -ENOTSUP;
    }
    /*
     * Without MAY_UNMAP the zeroes stay allocated (ZERO_RANGE, also past the end), as
     * QEMU leaves them: `map` then still reports data there. With it, a hole will do.
     */
    if ((flags & BDRV_REQ_MAY_UNMAP) && (int64_t)offset >= len) {
        return file_extend_to(s, len, offset + bytes);
    }
    if (flags & BDRV_REQ_MAY_UNMAP) {
        uint64_t in_file = QKIT_MIN(bytes, (uint64_t)len - offset);
        if (fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset,
                      in_file) == 0) {
            return file_extend_to(s, len, offset + bytes);
        }
    }
    if (fallocate(s->fd, FALLOC_FL_ZERO_RANGE, offset, bytes) == 0) {
        return 0;
    }
    /* Last resort past the end: plain allocation reads as zeroes too. */
    if ((int64_t)offset >= len && fallocate(s->fd, 0, offset, bytes) == 0) {
        return 0;
    }
    return -ENOTSUP;
}

/* Zeroes may punch a hole and may grow the file: both caches go. */
static int file_pwrite_zeroes(BlockDriverState *bs, uint64_t offset, uint64_t bytes, int flags)
{
    BDRVFileState *s = bs->opaque;
    int ret = file_do_pwrite_zeroes(bs, offset, bytes, flags);
    file_data_changed(s);
    file_size_changed(s);
    return ret;
}

static int file_pdiscard(BlockDriverState *bs, uint64_t offset, uint64_t bytes)
{
    BDRVFileState *s = bs->opaque;
    if (s->is_blockdev) {
        uint64_t range[2] = { offset, bytes };
        return ioctl(s->fd, BLKDISCARD, range) < 0 ? -ENOTSUP : 0;
    }
    file_data_changed(s);
    if (fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, bytes) < 0) {
        return errno == EOPNOTSUPP ? -ENOTSUP : -errno;
    }
    return 0;
}

static int file_flush(BlockDriverState *bs)
{
    BDRVFileState *s = bs->opaque;
    if (bs->open_flags & BDRV_O_NO_FLUSH) {
        return 0;
    }
    return fdatasync(s->fd) < 0 ? -errno : 0;
}

/* Data or hole at offset, from SEEK_DATA/SEEK_HOLE. */
static int file_block_status(BlockDriverState *bs, bool want_zero, uint64_t offset,
                             uint64_t bytes, uint64_t *pnum, uint64_t *map,
                             BlockDriverState **file)
{
    BDRVFileState *s = bs->opaque;
    *map = offset;
    *file = bs;
    *pnum = bytes;
    if (s->is_blockdev) {
        return BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;
    }
    pthread_mutex_lock(&s->cache_lock);
    bool known = offset >= s->data_start && offset < s->data_end;
    if (known) {
        *pnum = QKIT_MIN(bytes, s->data_end - offset);
    }
    pthread_mutex_unlock(&s->cache_lock);
    if (known) {
        return BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;
    }
    off_t data = lseek(s->fd, offset, SEEK_DATA);
    if (data < 0) {
        if (errno == ENXIO) {
            /* No data from offset to the end of the file: a hole. */
            return BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID;
        }
        return BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;
    }
    if ((uint64_t)data > offset) {
        *pnum = QKIT_MIN(bytes, (uint64_t)data - offset);
        return BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID;
    }
    off_t hole = lseek(s->fd, offset, SEEK_HOLE);
    if (hole > (off_t)offset) {
        *pnum = QKIT_MIN(bytes, (uint64_t)hole - offset);
        pthread_mutex_lock(&s->cache_lock);
        s->data_start = offset;
        s->data_end = hole;
        pthread_mutex_unlock(&s->cache_lock);
    }
    return BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;
}

/* Fill [from, to) with allocated space (falloc) or written zeroes (full). */
static int file_preallocate(BDRVFileState *s, uint64_t from, uint64_t to, PreallocMode mode,
                            Error **errp)
{
    if (to <= from) {
        return 0;
    }
    if (mode == PREALLOC_MODE_FALLOC) {
        int ret = posix_fallocate(s->fd, from, to - from);
        if (ret) {
            error_setg_errno(errp, ret, "Could not preallocate new data");
            return -ret;
        }
        return 0;
    }
    size_t chunk = 1 << 20;
    void *zero = calloc(1, chunk);
    if (!zero) {
        return -ENOMEM;
    }
    int ret = 0;
    for (uint64_t off = from; off < to && ret == 0;) {
        size_t n = QKIT_MIN((uint64_t)chunk, to - off);
        ret = file_sync_rw(s, true, off, n, zero);
        off += n;
    }
    free(zero);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not write zeros for preallocation");
    }
    return ret;
}

/* Resize; a regular file always gets exactly the size asked, as in QEMU. */
static int file_do_truncate(BlockDriverState *bs, uint64_t offset, bool exact,
                         PreallocMode prealloc, Error **errp)
{
    BDRVFileState *s = bs->opaque;
    int64_t cur = file_getlength(bs);
    if (cur < 0) {
        error_setg_errno(errp, (int)-cur, "Failed to get the current size");
        return (int)cur;
    }
    if (s->is_blockdev) {
        if ((int64_t)offset > cur || (exact && (int64_t)offset != cur)) {
            error_setg(errp, "Cannot grow device files");
            return -EINVAL;
        }
        return 0;
    }
    if (prealloc == PREALLOC_MODE_METADATA) {
        error_setg(errp, "Unsupported preallocation mode: metadata");
        return -ENOTSUP;
    }
    if (prealloc != PREALLOC_MODE_OFF && (int64_t)offset > cur) {
        int ret = file_preallocate(s, cur, offset, prealloc, errp);
        if (ret < 0) {
            return ret;
        }
    }
    if (ftruncate(s->fd, offset) < 0) {
        int err = errno;
        error_setg_errno(errp, err, "Failed to resize the file");
        return -err;
    }
    if (cur == 0 && prealloc == PREALLOC_MODE_OFF) {
        return file_allocate_first_block(s->fd, offset);
    }
    return 0;
}

/* A resize changes the size and may drop data: both caches go. */
static int file_truncate(BlockDriverState *bs, uint64_t offset, bool exact,
                         PreallocMode prealloc, Error **errp)
{
    int ret = file_do_truncate(bs, offset, exact, prealloc, errp);
    file_data_changed(bs->opaque);
    file_size_changed(bs->opaque);
    return ret;
}

static int64_t file_get_allocated_file_size(BlockDriverState *bs)
{
    BDRVFileState *s = bs->opaque;
    struct stat st;
    if (fstat(s->fd, &st) < 0) {
        return -errno;
    }
    return (int64_t)st.st_blocks * 512;
}

/* A file has no clusters and is never dirty; answering at all is what info shows. */
static int file_get_info(BlockDriverState *bs, BlockDriverInfo *bdi)
{
    return 0;
}

static bool file_has_zero_init(BlockDriverState *bs)
{
    BDRVFileState *s = bs->opaque;
    return !s->is_blockdev;
}

/* Create (or truncate) the file and size it, preallocating as asked. */
static int file_create(const char *filename, QOpts *opts, Error **errp)
{
    uint64_t size;
    bool nocow;
    PreallocMode prealloc = PREALLOC_MODE_OFF;
    int ret = qopts_get_size(opts, "size", 0, &size, errp);
    if (ret < 0) {
        return ret;
    }
    if (qopts_get_bool(opts, "nocow", false, &nocow, errp) < 0) {
        return -EINVAL;
    }
    const char *pa = qopts_get(opts, "preallocation");
    if (pa && (prealloc_mode_parse(pa, &prealloc) < 0 ||
               prealloc == PREALLOC_MODE_METADATA)) {
        error_setg(errp, "Unsupported preallocation mode: %s", pa);
        return -EINVAL;
    }
    filename = file_strip_prefix(filename);
    int fd = open(filename, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        int err = errno;
        error_setg_errno(errp, err, "Could not create '%s'", filename);
        return -err;
    }
    if (nocow) {
        int attr;
        if (ioctl(fd, FS_IOC_GETFLAGS, &attr) == 0) {
            attr |= FS_NOCOW_FL;
            ioctl(fd, FS_IOC_SETFLAGS, &attr);
        }
    }
    /* Refuse to clobber an image that someone is using, as QEMU does. */
    ret = file_apply_locks(fd, filename, BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE |
                           BLK_PERM_RESIZE, BLK_PERM_WRITE | BLK_PERM_RESIZE, errp);
    if (ret < 0) {
        close(fd);
        return ret;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && !S_ISREG(st.st_mode)) {
        close(fd);
        return 0;
    }
    /* Images are whole 512-byte sectors. */
    size = ROUND_UP(size, FILE_SECTOR_SIZE);
    if (ftruncate(fd, 0) < 0 || ftruncate(fd, size) < 0) {
        int err = errno;
        close(fd);
        error_setg_errno(errp, err, "Could not resize file");
        return -err;
    }
    if (prealloc != PREALLOC_MODE_OFF) {
        BDRVFileState tmp = { .fd = fd };
        if (ftruncate(fd, 0) < 0) {
            ret = -errno;
        } else {
            ret = file_preallocate(&tmp, 0, size, prealloc, errp);
            if (ret == 0 && ftruncate(fd, size) < 0) {
                ret = -errno;
            }
        }
    } else {
        ret = file_allocate_first_block(fd, size);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not write the first block");
        }
    }
    if (close(fd) < 0 && ret == 0) {
        ret = -errno;
        error_setg_errno(errp, -ret, "Could not close the new file");
    }
    return ret;
}

static const char *const file_open_opts[] = {
    "locking", "aio", "aio-max-batch", "pr-manager", "x-check-cache-dropped", NULL,
};

const QOptDesc file_create_opts[] = {
    { "size", QOPT_SIZE, "Virtual disk size", NULL },
    { "preallocation", QOPT_STRING,
      "Preallocation mode (allowed values: off, falloc, full)", NULL },
    { "nocow", QOPT_BOOL, "Turn off copy-on-write (valid only on btrfs)", NULL },
    { "extent_size_hint", QOPT_SIZE, "Extent size hint for the image file, 0 to disable",
      NULL },
    { NULL },
};

const BlockDriver bdrv_file = {
    .format_name = "file",
    .protocol_name = "file",
    .instance_size = sizeof(BDRVFileState),
    .thread_safe = true,
    .open_opts = file_open_opts,
    .open = file_open,
    .close = file_close,
    .set_perm = file_set_perm,
    .reopen = file_reopen,
    .pread = file_pread,
    .pwrite = file_pwrite,
    .pwrite_zeroes = file_pwrite_zeroes,
    .pdiscard = file_pdiscard,
    .flush = file_flush,
    .block_status = file_block_status,
    .truncate = file_truncate,
    .getlength = file_getlength,
    .get_allocated_file_size = file_get_allocated_file_size,
    .has_zero_init = file_has_zero_init,
    .get_info = file_get_info,
    .create = file_create,
    .create_opts = file_create_opts,
};
