/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The NBD wire protocol, shared by the server (src/nbd/server*.c) and the client
 * (src/nbd/client.c, src/block/nbd.c): every constant of the spec the two use,
 * packed structs for the fixed-size headers (all fields big-endian on the wire),
 * and the socket and error helpers of nbd-common.c.
 *
 * This header only grows: values and structs here are the wire format.
 */
#ifndef QKIT_NBD_PROTO_H
#define QKIT_NBD_PROTO_H

#include <endian.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "qkit/error.h"

/* ---- Handshake ---- */

#define NBD_DEFAULT_PORT        10809
#define NBD_MAGIC               UINT64_C(0x4e42444d41474943) /* "NBDMAGIC" */
#define NBD_OPTS_MAGIC          UINT64_C(0x49484156454f5054) /* "IHAVEOPT" */
#define NBD_CLISERV_MAGIC       UINT64_C(0x0000420281861253) /* oldstyle */
#define NBD_REP_MAGIC           UINT64_C(0x0003e889045565a9) /* option replies */

/* Handshake flags (server -> client, 16 bits). */
#define NBD_FLAG_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_NO_ZEROES      (1u << 1)

/* Client flags (client -> server, 32 bits). */
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES      (1u << 1)

/* Padding after NBD_OPT_EXPORT_NAME's reply unless NO_ZEROES was agreed. */
#define NBD_EXPORT_NAME_PAD     124

/* Limits the spec sets on strings and option payloads. */
#define NBD_MAX_STRING_SIZE     4096
#define NBD_MAX_OPTION_SIZE     (64 * 1024)

/* Option types (NBD_OPT_*). */
#define NBD_OPT_EXPORT_NAME       1
#define NBD_OPT_ABORT             2
#define NBD_OPT_LIST              3
#define NBD_OPT_PEEK_EXPORT       4 /* withdrawn */
#define NBD_OPT_STARTTLS          5
#define NBD_OPT_INFO              6
#define NBD_OPT_GO                7
#define NBD_OPT_STRUCTURED_REPLY  8
#define NBD_OPT_LIST_META_CONTEXT 9
#define NBD_OPT_SET_META_CONTEXT  10
#define NBD_OPT_EXTENDED_HEADERS  11

/* Option reply types (NBD_REP_*); errors have bit 31 set. */
#define NBD_REP_ERR_BIT           (1u << 31)
#define NBD_REP_ACK               1
#define NBD_REP_SERVER            2
#define NBD_REP_INFO              3
#define NBD_REP_META_CONTEXT      4
#define NBD_REP_ERR_UNSUP         (NBD_REP_ERR_BIT | 1)
#define NBD_REP_ERR_POLICY        (NBD_REP_ERR_BIT | 2)
#define NBD_REP_ERR_INVALID       (NBD_REP_ERR_BIT | 3)
#define NBD_REP_ERR_PLATFORM      (NBD_REP_ERR_BIT | 4)
#define NBD_REP_ERR_TLS_REQD      (NBD_REP_ERR_BIT | 5)
#define NBD_REP_ERR_UNKNOWN       (NBD_REP_ERR_BIT | 6)
#define NBD_REP_ERR_SHUTDOWN      (NBD_REP_ERR_BIT | 7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD (NBD_REP_ERR_BIT | 8)
#define NBD_REP_ERR_TOO_BIG       (NBD_REP_ERR_BIT | 9)
#define NBD_REP_ERR_EXT_HEADER_REQD (NBD_REP_ERR_BIT | 10)
#define NBD_REP_IS_ERR(t)         (((t) & NBD_REP_ERR_BIT) != 0)

/* Information types in NBD_OPT_INFO / NBD_OPT_GO (NBD_INFO_*). */
#define NBD_INFO_EXPORT           0
#define NBD_INFO_NAME             1
#define NBD_INFO_DESCRIPTION      2
#define NBD_INFO_BLOCK_SIZE       3

/* ---- Transmission ---- */

/* Transmission flags (16 bits, sent with the export size). */
#define NBD_FLAG_HAS_FLAGS          (1u << 0)
#define NBD_FLAG_READ_ONLY          (1u << 1)
#define NBD_FLAG_SEND_FLUSH         (1u << 2)
#define NBD_FLAG_SEND_FUA           (1u << 3)
#define NBD_FLAG_ROTATIONAL         (1u << 4)
#define NBD_FLAG_SEND_TRIM          (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES  (1u << 6)
#define NBD_FLAG_SEND_DF            (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN     (1u << 8)
#define NBD_FLAG_SEND_RESIZE        (1u << 9)
#define NBD_FLAG_SEND_CACHE         (1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO     (1u << 11)
#define NBD_FLAG_BLOCK_STAT_PAYLOAD (1u << 12)

#define NBD_REQUEST_MAGIC           UINT32_C(0x25609513)
#define NBD_EXTENDED_REQUEST_MAGIC  UINT32_C(0x21e41c71)
#define NBD_SIMPLE_REPLY_MAGIC      UINT32_C(0x67446698)
#define NBD_STRUCTURED_REPLY_MAGIC  UINT32_C(0x668e33ef)
#define NBD_EXTENDED_REPLY_MAGIC    UINT32_C(0x6e8a278c)

/* Command types (NBD_CMD_*). */
#define NBD_CMD_READ              0
#define NBD_CMD_WRITE             1
#define NBD_CMD_DISC              2
#define NBD_CMD_FLUSH             3
#define NBD_CMD_TRIM              4
#define NBD_CMD_CACHE             5
#define NBD_CMD_WRITE_ZEROES      6
#define NBD_CMD_BLOCK_STATUS      7
#define NBD_CMD_RESIZE            8

/* Command flags (NBD_CMD_FLAG_*). */
#define NBD_CMD_FLAG_FUA          (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE      (1u << 1)
#define NBD_CMD_FLAG_DF           (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE      (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO    (1u << 4)
#define NBD_CMD_FLAG_PAYLOAD_LEN  (1u << 5)

/* Error values on the wire (NBD_E*): Linux errno numbers, but fixed by the spec. */
#define NBD_SUCCESS     0
#define NBD_EPERM       1
#define NBD_EIO         5
#define NBD_ENOMEM      12
#define NBD_EINVAL      22
#define NBD_ENOSPC      28
#define NBD_EOVERFLOW   75
#define NBD_ENOTSUP     95
#define NBD_ESHUTDOWN   108

/* Structured reply flags and chunk types (NBD_REPLY_*). */
#define NBD_REPLY_FLAG_DONE             (1u << 0)
#define NBD_REPLY_TYPE_ERROR_BIT        (1u << 15)
#define NBD_REPLY_TYPE_NONE             0
#define NBD_REPLY_TYPE_OFFSET_DATA      1
#define NBD_REPLY_TYPE_OFFSET_HOLE      2
#define NBD_REPLY_TYPE_BLOCK_STATUS     5
#define NBD_REPLY_TYPE_BLOCK_STATUS_EXT 6
#define NBD_REPLY_TYPE_ERROR            (NBD_REPLY_TYPE_ERROR_BIT | 1)
#define NBD_REPLY_TYPE_ERROR_OFFSET     (NBD_REPLY_TYPE_ERROR_BIT | 2)
#define NBD_REPLY_TYPE_IS_ERR(t)        (((t) & NBD_REPLY_TYPE_ERROR_BIT) != 0)

/* Meta contexts: names and the flags of their block status descriptors. */
#define NBD_META_BASE_ALLOCATION    "base:allocation"
#define NBD_META_QEMU_ALLOC_DEPTH   "qemu:allocation-depth"
#define NBD_META_QEMU_DIRTY_BITMAP  "qemu:dirty-bitmap:"
#define NBD_STATE_HOLE              (1u << 0) /* base:allocation */
#define NBD_STATE_ZERO              (1u << 1) /* base:allocation */
#define NBD_STATE_DIRTY             (1u << 0) /* qemu:dirty-bitmap:NAME */

/*
 * Sizes QEMU uses: the largest read/write payload it accepts (larger requests
 * are refused), and the block sizes it advertises.
 */
#define NBD_MAX_BUFFER_SIZE         (32 * 1024 * 1024)
#define NBD_MIN_BLOCK_SIZE          1
#define NBD_PREFERRED_BLOCK_SIZE    4096

/* ---- On-wire layouts (big-endian fields) ---- */

/* Server greeting of the newstyle handshake. */
typedef struct __attribute__((packed)) NbdNewstyleGreeting {
    uint64_t magic;          /* NBD_MAGIC */
    uint64_t opts_magic;     /* NBD_OPTS_MAGIC */
    uint16_t handshake_flags;
} NbdNewstyleGreeting;
_Static_assert(sizeof(NbdNewstyleGreeting) == 18, "newstyle greeting is 18 bytes");

/* Oldstyle greeting (read by clients only; the server speaks newstyle). */
typedef struct __attribute__((packed)) NbdOldstyleGreeting {
    uint64_t magic;          /* NBD_MAGIC */
    uint64_t cliserv_magic;  /* NBD_CLISERV_MAGIC */
    uint64_t size;
    uint32_t flags;          /* 16 bits handshake + 16 bits transmission */
    uint8_t zeroes[124];
} NbdOldstyleGreeting;
_Static_assert(sizeof(NbdOldstyleGreeting) == 152, "oldstyle greeting is 152 bytes");

/* Client option header; length bytes of data follow. */
typedef struct __attribute__((packed)) NbdOptionHeader {
    uint64_t magic;          /* NBD_OPTS_MAGIC */
    uint32_t option;
    uint32_t length;
} NbdOptionHeader;
_Static_assert(sizeof(NbdOptionHeader) == 16, "option header is 16 bytes");

/* Server option reply header; length bytes of data follow. */
typedef struct __attribute__((packed)) NbdOptionReply {
    uint64_t magic;          /* NBD_REP_MAGIC */
    uint32_t option;
    uint32_t type;
    uint32_t length;
} NbdOptionReply;
_Static_assert(sizeof(NbdOptionReply) == 20, "option reply header is 20 bytes");

/* Reply to NBD_OPT_EXPORT_NAME (followed by 124 zero bytes unless NO_ZEROES). */
typedef struct __attribute__((packed)) NbdExportNameReply {
    uint64_t size;
    uint16_t flags;          /* transmission flags */
} NbdExportNameReply;
_Static_assert(sizeof(NbdExportNameReply) == 10, "export-name reply is 10 bytes");

/* NBD_REP_INFO payload for NBD_INFO_EXPORT. */
typedef struct __attribute__((packed)) NbdInfoExport {
    uint16_t type;           /* NBD_INFO_EXPORT */
    uint64_t size;
    uint16_t flags;
} NbdInfoExport;
_Static_assert(sizeof(NbdInfoExport) == 12, "NBD_INFO_EXPORT is 12 bytes");

/* NBD_REP_INFO payload for NBD_INFO_BLOCK_SIZE. */
typedef struct __attribute__((packed)) NbdInfoBlockSize {
    uint16_t type;           /* NBD_INFO_BLOCK_SIZE */
    uint32_t minimum;
    uint32_t preferred;
    uint32_t maximum;
} NbdInfoBlockSize;
_Static_assert(sizeof(NbdInfoBlockSize) == 14, "NBD_INFO_BLOCK_SIZE is 14 bytes");

/* NBD_REP_META_CONTEXT payload header; the context name follows. */
typedef struct __attribute__((packed)) NbdMetaContextReply {
    uint32_t context_id;
} NbdMetaContextReply;
_Static_assert(sizeof(NbdMetaContextReply) == 4, "meta context reply header is 4 bytes");

/* A transmission request; WRITE's payload of length bytes follows. */
typedef struct __attribute__((packed)) NbdRequest {
    uint32_t magic;          /* NBD_REQUEST_MAGIC */
    uint16_t flags;          /* NBD_CMD_FLAG_* */
    uint16_t type;           /* NBD_CMD_* */
    uint64_t cookie;         /* "handle": echoed in the reply */
    uint64_t offset;
    uint32_t length;
} NbdRequest;
_Static_assert(sizeof(NbdRequest) == 28, "request header is 28 bytes");

/* Simple reply; READ's data follows on success. */
typedef struct __attribute__((packed)) NbdSimpleReply {
    uint32_t magic;          /* NBD_SIMPLE_REPLY_MAGIC */
    uint32_t error;          /* NBD_E* */
    uint64_t cookie;
} NbdSimpleReply;
_Static_assert(sizeof(NbdSimpleReply) == 16, "simple reply is 16 bytes");

/* Structured reply chunk header; length bytes of payload follow. */
typedef struct __attribute__((packed)) NbdStructuredReply {
    uint32_t magic;          /* NBD_STRUCTURED_REPLY_MAGIC */
    uint16_t flags;          /* NBD_REPLY_FLAG_* */
    uint16_t type;           /* NBD_REPLY_TYPE_* */
    uint64_t cookie;
    uint32_t length;
} NbdStructuredReply;
_Static_assert(sizeof(NbdStructuredReply) == 20, "structured reply header is 20 bytes");

/* NBD_REPLY_TYPE_OFFSET_DATA payload header; the data follows. */
typedef struct __attribute__((packed)) NbdChunkOffsetData {
    uint64_t offset;
} NbdChunkOffsetData;
_Static_assert(sizeof(NbdChunkOffsetData) == 8, "offset-data header is 8 bytes");

/* NBD_REPLY_TYPE_OFFSET_HOLE payload. */
typedef struct __attribute__((packed)) NbdChunkOffsetHole {
    uint64_t offset;
    uint32_t length;
} NbdChunkOffsetHole;
_Static_assert(sizeof(NbdChunkOffsetHole) == 12, "offset-hole payload is 12 bytes");

/* NBD_REPLY_TYPE_BLOCK_STATUS payload header; descriptors follow. */
typedef struct __attribute__((packed)) NbdChunkBlockStatus {
    uint32_t context_id;
} NbdChunkBlockStatus;
_Static_assert(sizeof(NbdChunkBlockStatus) == 4, "block-status header is 4 bytes");

/* One extent of a block status chunk. */
typedef struct __attribute__((packed)) NbdBlockDescriptor {
    uint32_t length;
    uint32_t status_flags;
} NbdBlockDescriptor;
_Static_assert(sizeof(NbdBlockDescriptor) == 8, "block descriptor is 8 bytes");

/*
 * NBD_REPLY_TYPE_ERROR / ERROR_OFFSET payload header: a message of message_length
 * bytes follows, then (ERROR_OFFSET only) a be64 offset.
 */
typedef struct __attribute__((packed)) NbdChunkError {
    uint32_t error;          /* NBD_E*, never 0 */
    uint16_t message_length;
} NbdChunkError;
_Static_assert(sizeof(NbdChunkError) == 6, "error chunk header is 6 bytes");

/* ---- Byte-buffer helpers for unaligned big-endian fields ---- */

static inline void nbd_put_be16(uint8_t *p, uint16_t v) { v = htobe16(v); memcpy(p, &v, 2); }
static inline void nbd_put_be32(uint8_t *p, uint32_t v) { v = htobe32(v); memcpy(p, &v, 4); }
static inline void nbd_put_be64(uint8_t *p, uint64_t v) { v = htobe64(v); memcpy(p, &v, 8); }
static inline uint16_t nbd_get_be16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return be16toh(v);
}
static inline uint32_t nbd_get_be32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return be32toh(v);
}
static inline uint64_t nbd_get_be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return be64toh(v);
}

/* ---- nbd-common.c ---- */

/*
 * Read exactly len bytes from fd, retrying on EINTR and short reads. Returns 0, or
 * -ECONNRESET when the peer closed the connection first (after 0 bytes: *eof set if
 * eof is non-NULL), or -errno.
 */
int nbd_read_all(int fd, void *buf, size_t len, bool *eof);
/* One read of 1 to len bytes (EINTR retried): the count, -ECONNRESET at EOF, or -errno. */
ssize_t nbd_read_some(int fd, void *buf, size_t len);
/* Write all len bytes to fd (MSG_NOSIGNAL on sockets), retrying on EINTR. 0 or -errno. */
int nbd_write_all(int fd, const void *buf, size_t len);
/* Read and throw away len bytes (an option or payload the reader does not want). */
int nbd_drain(int fd, uint64_t len);

/* A positive errno to the NBD_E* value to send (unknown ones become NBD_EINVAL). */
uint32_t nbd_errno_to_wire(int err);
/* An NBD_E* value received to a positive errno (unknown ones become EINVAL). */
int nbd_wire_to_errno(uint32_t nbd_err);

/* Names for messages and traces ("NBD_OPT_GO"); "unknown" for values not in the spec. */
const char *nbd_opt_name(uint32_t opt);
const char *nbd_rep_name(uint32_t rep);
const char *nbd_info_name(uint16_t info);
const char *nbd_cmd_name(uint16_t cmd);
const char *nbd_reply_type_name(uint16_t type);
const char *nbd_err_name(uint32_t nbd_err);

#endif
