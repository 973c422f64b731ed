/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Shared by the NBD fuzz targets: one end of a socketpair is fed the fuzz input from
 * a thread (it may be larger than the socket buffer) while another thread drains what
 * the code under test sends, so neither side blocks on a full socket.
 */
#ifndef QKIT_FUZZ_SOCKET_H
#define QKIT_FUZZ_SOCKET_H

#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct FuzzFeed {
    int fd;
    const uint8_t *data;
    size_t size;
    pthread_t feeder;
    pthread_t drainer;
} FuzzFeed;

/* Sends the input, then ends the direction so the peer sees EOF. */
static void *fuzz_feed_thread(void *arg)
{
    FuzzFeed *f = arg;
    size_t done = 0;
    while (done < f->size) {
        ssize_t n = send(f->fd, f->data + done, f->size - done, MSG_NOSIGNAL);
        if (n <= 0) {
            break;
        }
        done += n;
    }
    shutdown(f->fd, SHUT_WR);
    return NULL;
}

/* Reads and drops whatever the peer sends until it closes its end. */
static void *fuzz_drain_thread(void *arg)
{
    FuzzFeed *f = arg;
    char buf[65536];
    while (read(f->fd, buf, sizeof(buf)) > 0) {
        continue;
    }
    return NULL;
}

/* Start feeding data into fd and draining it; fuzz_feed_finish() waits for both. */
static inline void fuzz_feed_start(FuzzFeed *f, int fd, const uint8_t *data, size_t size)
{
    f->fd = fd;
    f->data = data;
    f->size = size;
    pthread_create(&f->feeder, NULL, fuzz_feed_thread, f);
    pthread_create(&f->drainer, NULL, fuzz_drain_thread, f);
}

/* Called once the code under test has closed its end: join the threads, close fd. */
static inline void fuzz_feed_finish(FuzzFeed *f)
{
    pthread_join(f->feeder, NULL);
    pthread_join(f->drainer, NULL);
    close(f->fd);
}

#endif
