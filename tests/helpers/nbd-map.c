/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * nbd-map: print an export's block status for several metadata contexts at once,
 * using the NBD client library directly (tests compare it with nbdinfo --map).
 *
 *   nbd-map SOCKET_PATH|HOST:PORT EXPORT CONTEXT...
 *
 * Prints "INDEX OFFSET LENGTH FLAGS" per extent, INDEX being the context's position
 * on the command line; a context the server did not agree to prints nothing.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbd/nbd-client.h"
#include "qkit/cutils.h"

/* Bytes asked about per NBD_CMD_BLOCK_STATUS. */
#define NBD_MAP_REQUEST (1u << 30)
/* Extents kept per reply (the rest are asked again from where these end). */
#define NBD_MAP_MAX_EXTENTS 1024

/* Walk the export for context index ctx and print its extents. */
static int nbd_map_context(NbdClient *c, int ctx)
{
    NbdExtent ext[NBD_MAP_MAX_EXTENTS];
    uint64_t off = 0;
    while (off < c->size) {
        uint32_t len = (uint32_t)QKIT_MIN(c->size - off, (uint64_t)NBD_MAP_REQUEST);
        size_t n;
        int ret = nbd_client_block_status(c, off, len, ctx, false, ext, ARRAY_SIZE(ext), &n);
        if (ret < 0) {
            fprintf(stderr, "nbd-map: block status at %" PRIu64 ": %s\n", off, strerror(-ret));
            return 1;
        }
        for (size_t i = 0; i < n && off < c->size; i++) {
            uint64_t l = QKIT_MIN((uint64_t)ext[i].length, c->size - off);
            printf("%d %" PRIu64 " %" PRIu64 " %u\n", ctx, off, l, ext[i].flags);
            off += l;
        }
    }
    return 0;
}

/* Connect, negotiate the contexts named on the command line, print each one's map. */
int main(int argc, char **argv)
{
    if (argc < 4 || argc - 3 > NBD_CLIENT_MAX_CONTEXTS) {
        fprintf(stderr, "usage: nbd-map SOCKET_PATH|HOST:PORT EXPORT CONTEXT... (at most %d)\n",
                NBD_CLIENT_MAX_CONTEXTS);
        return 2;
    }
    NbdClientConfig cfg = {
        .export_name = argv[2],
        .structured_reply = true,
        .block_size = true,
    };
    for (int i = 3; i < argc; i++) {
        cfg.meta_contexts[i - 3] = argv[i];
    }
    Error *err = NULL;
    int fd;
    char *colon = strrchr(argv[1], ':');
    if (argv[1][0] == '/' || !colon) {
        fd = nbd_client_connect_unix(argv[1], &err);
    } else {
        char *host = strndup(argv[1], colon - argv[1]);
        fd = nbd_client_connect_inet(host, colon + 1, &err);
        free(host);
    }
    NbdClient c;
    if (fd < 0 || nbd_client_handshake(&c, fd, &cfg, &err) < 0) {
        fprintf(stderr, "nbd-map: %s\n", error_get_pretty(err));
        error_free(err);
        return 1;
    }
    int rc = 0;
    for (int i = 0; i < c.n_contexts && rc == 0; i++) {
        if (c.context_ok[i]) {
            rc = nbd_map_context(&c, i);
        }
    }
    nbd_client_close(&c);
    return rc;
}
