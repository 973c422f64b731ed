/* SPDX-License-Identifier: GPL-2.0-or-later */
/* NBD helpers shared by client and server: whole-buffer socket I/O, error codes, names. */
#include "nbd/nbd-proto.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

/* Size of the scratch buffer nbd_drain() reads unwanted bytes into. */
#define NBD_DRAIN_CHUNK 4096

ssize_t nbd_read_some(int fd, void *buf, size_t len)
{
    for (;;) {
        ssize_t n = read(fd, buf, len);
        if (n > 0) {
            return n;
        }
        if (n == 0) {
            return -ECONNRESET;
        }
        if (errno != EINTR) {
            return -errno;
        }
    }
}

int nbd_read_all(int fd, void *buf, size_t len, bool *eof)
{
    uint8_t *p = buf;
    size_t done = 0;

    if (eof) {
        *eof = false;
    }
    while (done < len) {
        ssize_t n = nbd_read_some(fd, p + done, len - done);
        if (n < 0) {
            if (n == -ECONNRESET && eof && done == 0) {
                *eof = true;
            }
            return (int)n;
        }
        done += n;
    }
    return 0;
}

int nbd_write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    size_t done = 0;

    while (done < len) {
        ssize_t n = send(fd, p + done, len - done, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK) {
            /* A pipe or file in tests: plain write (SIGPIPE is the caller's concern). */
            n = write(fd, p + done, len - done);
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        done += n;
    }
    return 0;
}

int nbd_drain(int fd, uint64_t len)
{
    uint8_t scratch[NBD_DRAIN_CHUNK];

    while (len > 0) {
        size_t n = len < sizeof(scratch) ? len : sizeof(scratch);
        int ret = nbd_read_all(fd, scratch, n, NULL);
        if (ret < 0) {
            return ret;
        }
        len -= n;
    }
    return 0;
}

uint32_t nbd_errno_to_wire(int err)
{
    switch (err) {
    case 0:
        return NBD_SUCCESS;
    case EPERM:
    case EROFS:
    case EACCES:
        return NBD_EPERM;
    case EIO:
        return NBD_EIO;
    case ENOMEM:
        return NBD_ENOMEM;
#ifdef EDQUOT
    case EDQUOT:
#endif
    case EFBIG:
    case ENOSPC:
        return NBD_ENOSPC;
    case EOVERFLOW:
        return NBD_EOVERFLOW;
    case ENOTSUP:
#if EOPNOTSUPP != ENOTSUP
    case EOPNOTSUPP:
#endif
        return NBD_ENOTSUP;
    case ESHUTDOWN:
        return NBD_ESHUTDOWN;
    case EINVAL:
    default:
        return NBD_EINVAL;
    }
}

int nbd_wire_to_errno(uint32_t nbd_err)
{
    switch (nbd_err) {
    case NBD_SUCCESS:
        return 0;
    case NBD_EPERM:
        return EPERM;
    case NBD_EIO:
        return EIO;
    case NBD_ENOMEM:
        return ENOMEM;
    case NBD_ENOSPC:
        return ENOSPC;
    case NBD_EOVERFLOW:
        return EOVERFLOW;
    case NBD_ENOTSUP:
        return ENOTSUP;
    case NBD_ESHUTDOWN:
        return ESHUTDOWN;
    case NBD_EINVAL:
    default:
        return EINVAL;
    }
}

const char *nbd_opt_name(uint32_t opt)
{
    switch (opt) {
    case NBD_OPT_EXPORT_NAME: return "NBD_OPT_EXPORT_NAME";
    case NBD_OPT_ABORT: return "NBD_OPT_ABORT";
    case NBD_OPT_LIST: return "NBD_OPT_LIST";
    case NBD_OPT_PEEK_EXPORT: return "NBD_OPT_PEEK_EXPORT";
    case NBD_OPT_STARTTLS: return "NBD_OPT_STARTTLS";
    case NBD_OPT_INFO: return "NBD_OPT_INFO";
    case NBD_OPT_GO: return "NBD_OPT_GO";
    case NBD_OPT_STRUCTURED_REPLY: return "NBD_OPT_STRUCTURED_REPLY";
    case NBD_OPT_LIST_META_CONTEXT: return "NBD_OPT_LIST_META_CONTEXT";
    case NBD_OPT_SET_META_CONTEXT: return "NBD_OPT_SET_META_CONTEXT";
    case NBD_OPT_EXTENDED_HEADERS: return "NBD_OPT_EXTENDED_HEADERS";
    default: return "unknown";
    }
}

const char *nbd_rep_name(uint32_t rep)
{
    switch (rep) {
    case NBD_REP_ACK: return "NBD_REP_ACK";
    case NBD_REP_SERVER: return "NBD_REP_SERVER";
    case NBD_REP_INFO: return "NBD_REP_INFO";
    case NBD_REP_META_CONTEXT: return "NBD_REP_META_CONTEXT";
    case NBD_REP_ERR_UNSUP: return "NBD_REP_ERR_UNSUP";
    case NBD_REP_ERR_POLICY: return "NBD_REP_ERR_POLICY";
    case NBD_REP_ERR_INVALID: return "NBD_REP_ERR_INVALID";
    case NBD_REP_ERR_PLATFORM: return "NBD_REP_ERR_PLATFORM";
    case NBD_REP_ERR_TLS_REQD: return "NBD_REP_ERR_TLS_REQD";
    case NBD_REP_ERR_UNKNOWN: return "NBD_REP_ERR_UNKNOWN";
    case NBD_REP_ERR_SHUTDOWN: return "NBD_REP_ERR_SHUTDOWN";
    case NBD_REP_ERR_BLOCK_SIZE_REQD: return "NBD_REP_ERR_BLOCK_SIZE_REQD";
    case NBD_REP_ERR_TOO_BIG: return "NBD_REP_ERR_TOO_BIG";
    case NBD_REP_ERR_EXT_HEADER_REQD: return "NBD_REP_ERR_EXT_HEADER_REQD";
    default: return "unknown";
    }
}

const char *nbd_info_name(uint16_t info)
{
    switch (info) {
    case NBD_INFO_EXPORT: return "NBD_INFO_EXPORT";
    case NBD_INFO_NAME: return "NBD_INFO_NAME";
    case NBD_INFO_DESCRIPTION: return "NBD_INFO_DESCRIPTION";
    case NBD_INFO_BLOCK_SIZE: return "NBD_INFO_BLOCK_SIZE";
    default: return "unknown";
    }
}

const char *nbd_cmd_name(uint16_t cmd)
{
    switch (cmd) {
    case NBD_CMD_READ: return "NBD_CMD_READ";
    case NBD_CMD_WRITE: return "NBD_CMD_WRITE";
    case NBD_CMD_DISC: return "NBD_CMD_DISC";
    case NBD_CMD_FLUSH: return "NBD_CMD_FLUSH";
    case NBD_CMD_TRIM: return "NBD_CMD_TRIM";
    case NBD_CMD_CACHE: return "NBD_CMD_CACHE";
    case NBD_CMD_WRITE_ZEROES: return "NBD_CMD_WRITE_ZEROES";
    case NBD_CMD_BLOCK_STATUS: return "NBD_CMD_BLOCK_STATUS";
    case NBD_CMD_RESIZE: return "NBD_CMD_RESIZE";
    default: return "unknown";
    }
}

const char *nbd_reply_type_name(uint16_t type)
{
    switch (type) {
    case NBD_REPLY_TYPE_NONE: return "NBD_REPLY_TYPE_NONE";
    case NBD_REPLY_TYPE_OFFSET_DATA: return "NBD_REPLY_TYPE_OFFSET_DATA";
    case NBD_REPLY_TYPE_OFFSET_HOLE: return "NBD_REPLY_TYPE_OFFSET_HOLE";
    case NBD_REPLY_TYPE_BLOCK_STATUS: return "NBD_REPLY_TYPE_BLOCK_STATUS";
    case NBD_REPLY_TYPE_BLOCK_STATUS_EXT: return "NBD_REPLY_TYPE_BLOCK_STATUS_EXT";
    case NBD_REPLY_TYPE_ERROR: return "NBD_REPLY_TYPE_ERROR";
    case NBD_REPLY_TYPE_ERROR_OFFSET: return "NBD_REPLY_TYPE_ERROR_OFFSET";
    default: return "unknown";
    }
}

const char *nbd_err_name(uint32_t nbd_err)
{
    switch (nbd_err) {
    case NBD_SUCCESS: return "success";
    case NBD_EPERM: return "EPERM";
    case NBD_EIO: return "EIO";
    case NBD_ENOMEM: return "ENOMEM";
    case NBD_EINVAL: return "EINVAL";
    case NBD_ENOSPC: return "ENOSPC";
    case NBD_EOVERFLOW: return "EOVERFLOW";
    case NBD_ENOTSUP: return "ENOTSUP";
    case NBD_ESHUTDOWN: return "ESHUTDOWN";
    default: return "unknown";
    }
}
