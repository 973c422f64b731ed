/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer target: the NBD client's handshake and reply parser. The input is
 * everything a server sends (greeting, option replies, request replies); it is
 * written into one end of a socketpair while the client library, on the other end,
 * negotiates structured replies and two meta contexts, then issues a fixed series of
 * requests (read, block status for both contexts, write, write zeroes, trim, flush, a
 * larger read) and disconnects. A thread drains what the client sends.
 *
 * Seeds come from real servers: with FUZZ_NBD_CLIENT_CONNECT=SOCKET the same session
 * runs against a unix socket instead of the input (tests/fuzz/make-corpus.sh puts a
 * recording proxy there, in front of qkit-nbd, qemu-nbd and nbdkit).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz-socket.h"
#include "nbd/nbd-client.h"
#include "nbd/nbd-proto.h"

/* Largest read of the session, and how many extents a block status may return. */
#define FUZZ_IO_MAX      65536
#define FUZZ_EXTENTS_MAX 16
/* Byte the write payload is filled with. */
#define FUZZ_FILL        0x5a

/* The client's side of one session: handshake, then every kind of request once. */
static void fuzz_session(int fd)
{
    static uint8_t buf[FUZZ_IO_MAX];
    NbdExtent ext[FUZZ_EXTENTS_MAX];
    size_t n_ext;
    NbdClient c;
    Error *err = NULL;
    NbdClientConfig cfg = {
        .export_name = "",
        .structured_reply = true,
        .block_size = true,
        .meta_contexts = { "base:allocation", "qemu:allocation-depth", NULL },
    };

    if (nbd_client_handshake(&c, fd, &cfg, &err) < 0) {   /* closes fd */
        error_free(err);
        return;
    }
    memset(buf, FUZZ_FILL, sizeof(buf));
    nbd_client_pread(&c, 0, 4096, buf);
    nbd_client_block_status(&c, 0, FUZZ_IO_MAX, 0, false, ext, FUZZ_EXTENTS_MAX, &n_ext);
    nbd_client_block_status(&c, 0, FUZZ_IO_MAX, 1, true, ext, FUZZ_EXTENTS_MAX, &n_ext);
    nbd_client_pwrite(&c, 4096, 512, buf, NBD_CMD_FLAG_FUA);
    nbd_client_write_zeroes(&c, 8192, 4096, 0);
    nbd_client_trim(&c, 16384, 4096);
    nbd_client_flush(&c);
    nbd_client_pread(&c, 0, FUZZ_IO_MAX, buf);
    nbd_client_close(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *live = getenv("FUZZ_NBD_CLIENT_CONNECT");
    int sv[2];

    if (live) {
        Error *err = NULL;
        int fd = nbd_client_connect_unix(live, &err);
        error_free(err);
        if (fd >= 0) {
            fuzz_session(fd);
        }
        return 0;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        return 0;
    }
    FuzzFeed f;
    fuzz_feed_start(&f, sv[1], data, size);
    fuzz_session(sv[0]);
    fuzz_feed_finish(&f);
    return 0;
}
