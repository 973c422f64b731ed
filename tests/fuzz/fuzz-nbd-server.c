/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer target: the NBD server's handshake and request parser. The input is
 * everything a client sends after the server's greeting (client flags, options,
 * requests with payloads); it is written into one end of a socketpair whose other
 * end nbd_server_serve_client() serves, with a 1 MiB raw export in memory (a memfd).
 * A thread drains the replies so the server never blocks on a full socket.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz-socket.h"
#include "nbd/server.h"
#include "qkit/block.h"

/* Size of the in-memory export. */
#define FUZZ_EXPORT_SIZE (1024 * 1024)

/* The export, built once: the fuzzer runs inputs one after another in one process. */
static NbdServer fuzz_server;
static NbdExport *fuzz_exports[2];

/* Build a writable raw export and an allocation-depth read-only one over a memfd. */
static int fuzz_setup(void)
{
    char path[64];
    Error *err = NULL;
    int fd = memfd_create("nbd-fuzz", 0);
    if (fd < 0 || ftruncate(fd, FUZZ_EXPORT_SIZE) < 0) {
        return -1;
    }
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    BlockDriverState *bs = bdrv_open(path, "raw", NULL, BDRV_O_RDWR, &err);
    if (!bs) {
        fprintf(stderr, "fuzz-nbd-server: %s\n", error_get_pretty(err));
        return -1;
    }
    NbdExportOptions rw = { .name = "", .description = "fuzz", .discard = true,
                            .allocation_depth = true };
    NbdExportOptions ro = { .name = "ro", .read_only = true, .multi_conn = true,
                            .detect_zeroes = NBD_DETECT_ZEROES_ON };
    fuzz_exports[0] = nbd_export_new(bs, &rw, &err);
    fuzz_exports[1] = nbd_export_new(bs, &ro, &err);
    bdrv_unref(bs);
    if (!fuzz_exports[0] || !fuzz_exports[1]) {
        return -1;
    }
    fuzz_server.exports = fuzz_exports;
    fuzz_server.nb_exports = 2;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    int sv[2];
    Error *err = NULL;

    if (!ready) {
        if (fuzz_setup() < 0) {
            abort();
        }
        ready = 1;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        return 0;
    }
    FuzzFeed f;
    fuzz_feed_start(&f, sv[1], data, size);
    nbd_server_serve_client(&fuzz_server, sv[0], &err);   /* closes sv[0] */
    error_free(err);
    fuzz_feed_finish(&f);
    return 0;
}
