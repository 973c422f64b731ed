/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Listening sockets and the accept loop of the NBD server: a thread per client,
 * qemu-nbd's --shared limit and its rule for exiting once the last client leaves.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "nbd/nbd-proto.h"
#include "nbd/server.h"

/* Clients waiting to be accepted while the server is at its --shared limit. */
#define LISTEN_BACKLOG SOMAXCONN

/* One client being served; fd is the loop's own duplicate, used to cut it off. */
typedef struct LoopClient {
    NbdServerLoop *loop;
    int sock;                /* the socket the serving thread owns */
    int dup_fd;              /* the loop's duplicate, for shutdown() on stop */
    struct LoopClient *next;
} LoopClient;

struct NbdServerLoop {
    NbdServer *srv;
    int listen_fd;           /* -1: none (only added clients) */
    int shared;
    bool persistent;
    NbdClientErrorFn *on_error;
    void *opaque;
    int wake[2];             /* self-pipe: stop requests and client exits */
    volatile int stop;
    pthread_mutex_t lock;
    pthread_cond_t idle;
    int active;              /* clients being served */
    bool done;               /* the last negotiated client left (not persistent) */
    LoopClient *clients;
};

int nbd_listen_tcp(const char *host, const char *port, Error **errp)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = AI_PASSIVE,
    };
    struct addrinfo *res = NULL;
    const char *h = host ? host : "0.0.0.0";
    int one = 1;
    int err = 0;

    int rc = getaddrinfo(h, port, &hints, &res);
    if (rc != 0) {
        error_setg(errp, "address resolution failed for %s:%s: %s", h, port,
                   gai_strerror(rc));
        return -EINVAL;
    }
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, LISTEN_BACKLOG) == 0) {
            freeaddrinfo(res);
            return fd;
        }
        err = errno;
        close(fd);
    }
    freeaddrinfo(res);
    error_setg_errno(errp, err ? err : EADDRNOTAVAIL, "Failed to find an available port");
    return -(err ? err : EADDRNOTAVAIL);
}

int nbd_listen_unix(const char *path, Error **errp)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };

    if (strlen(path) >= sizeof(sa.sun_path)) {
        error_setg(errp, "UNIX socket path '%s' is too long", path);
        return -ENAMETOOLONG;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error_setg_errno(errp, errno, "Failed to create socket");
        return -errno;
    }
    unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int err = errno;
        error_setg_errno(errp, err, "Failed to bind socket to %s", path);
        close(fd);
        return -err;
    }
    if (listen(fd, LISTEN_BACKLOG) < 0) {
        int err = errno;
        error_setg_errno(errp, err, "Failed to listen on socket");
        close(fd);
        unlink(path);
        return -err;
    }
    return fd;
}

NbdServerLoop *nbd_server_loop_new(NbdServer *srv, int listen_fd, int shared,
                                   bool persistent, NbdClientErrorFn *on_error,
                                   void *opaque, Error **errp)
{
    NbdServerLoop *loop = calloc(1, sizeof(*loop));
    if (!loop) {
        abort();
    }
    if (pipe2(loop->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        error_setg_errno(errp, errno, "Failed to create pipe");
        free(loop);
        return NULL;
    }
    loop->srv = srv;
    loop->listen_fd = listen_fd;
    loop->shared = shared;
    loop->persistent = persistent;
    loop->on_error = on_error;
    loop->opaque = opaque;
    pthread_mutex_init(&loop->lock, NULL);
    pthread_cond_init(&loop->idle, NULL);
    return loop;
}

/* Wake the accept loop (a client left, or stop was asked); async-signal-safe. */
static void loop_wake(NbdServerLoop *loop)
{
    char c = 0;
    ssize_t n = write(loop->wake[1], &c, 1);
    (void)n;   /* a full pipe already wakes the loop */
}

void nbd_server_loop_stop(NbdServerLoop *loop)
{
    loop->stop = 1;
    loop_wake(loop);
}

/* The thread of one client: serve it, then account for its leaving. */
static void *loop_client_thread(void *arg)
{
    LoopClient *c = arg;
    NbdServerLoop *loop = c->loop;
    Error *err = NULL;

    int ret = nbd_server_serve_client(loop->srv, c->sock, &err);
    if (err) {
        if (loop->on_error) {
            loop->on_error(loop->opaque, err);
        } else {
            error_free(err);
        }
    }
    pthread_mutex_lock(&loop->lock);
    for (LoopClient **p = &loop->clients; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    close(c->dup_fd);
    loop->active--;
    if (ret == 1 && loop->active == 0 && !loop->persistent) {
        loop->done = true;
    }
    pthread_cond_broadcast(&loop->idle);
    pthread_mutex_unlock(&loop->lock);
    loop_wake(loop);
    free(c);
    return NULL;
}

int nbd_server_loop_add_client(NbdServerLoop *loop, int fd, Error **errp)
{
    LoopClient *c = calloc(1, sizeof(*c));
    pthread_attr_t attr;
    pthread_t tid;

    if (!c) {
        abort();
    }
    c->loop = loop;
    c->sock = fd;
    c->dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (c->dup_fd < 0) {
        error_setg_errno(errp, errno, "Failed to duplicate the client socket");
        close(fd);
        free(c);
        return -errno;
    }
    pthread_mutex_lock(&loop->lock);
    c->next = loop->clients;
    loop->clients = c;
    loop->active++;
    pthread_mutex_unlock(&loop->lock);

    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&tid, &attr, loop_client_thread, c);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        pthread_mutex_lock(&loop->lock);
        loop->clients = c->next;
        loop->active--;
        pthread_mutex_unlock(&loop->lock);
        close(c->dup_fd);
        close(fd);
        free(c);
        error_setg_errno(errp, rc, "Failed to start a client thread");
        return -rc;
    }
    return 0;
}

/* Take one pending connection off the listening socket and serve it. */
static void loop_accept(NbdServerLoop *loop)
{
    int fd = accept4(loop->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
        return;   /* EINTR, EAGAIN, a client that gave up: try again later */
    }
    Error *err = NULL;
    if (nbd_server_loop_add_client(loop, fd, &err) < 0 && loop->on_error) {
        loop->on_error(loop->opaque, err);
    } else if (err) {
        error_free(err);
    }
}

void nbd_server_loop_run(NbdServerLoop *loop)
{
    for (;;) {
        pthread_mutex_lock(&loop->lock);
        bool done = loop->done || loop->stop;
        bool room = loop->shared == 0 || loop->active < loop->shared;
        pthread_mutex_unlock(&loop->lock);
        if (done) {
            break;
        }
        struct pollfd pfd[2] = {
            { .fd = loop->wake[0], .events = POLLIN },
            { .fd = loop->listen_fd, .events = POLLIN },
        };
        int n = room && loop->listen_fd >= 0 ? 2 : 1;
        if (poll(pfd, n, -1) < 0) {
            continue;
        }
        if (pfd[0].revents) {
            char buf[64];
            while (read(loop->wake[0], buf, sizeof(buf)) > 0) {
                continue;
            }
        }
        if (n == 2 && (pfd[1].revents & POLLIN)) {
            loop_accept(loop);
        }
    }
    /* Cut off whoever is still connected, then wait for their threads to finish. */
    pthread_mutex_lock(&loop->lock);
    for (LoopClient *c = loop->clients; c; c = c->next) {
        shutdown(c->dup_fd, SHUT_RDWR);
    }
    while (loop->active > 0) {
        pthread_cond_wait(&loop->idle, &loop->lock);
    }
    pthread_mutex_unlock(&loop->lock);
}

void nbd_server_loop_free(NbdServerLoop *loop)
{
    if (!loop) {
        return;
    }
    close(loop->wake[0]);
    close(loop->wake[1]);
    pthread_mutex_destroy(&loop->lock);
    pthread_cond_destroy(&loop->idle);
    free(loop);
}

int nbd_local_client_handshake(int sock, const char *name, uint64_t *size,
                               uint16_t *flags, Error **errp)
{
    NbdNewstyleGreeting greet;
    NbdExportNameReply rep;
    uint32_t cflags = htobe32(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    NbdOptionHeader opt = {
        .magic = htobe64(NBD_OPTS_MAGIC),
        .option = htobe32(NBD_OPT_EXPORT_NAME),
        .length = htobe32(strlen(name)),
    };

    if (nbd_read_all(sock, &greet, sizeof(greet), NULL) < 0 ||
        be64toh(greet.magic) != NBD_MAGIC || be64toh(greet.opts_magic) != NBD_OPTS_MAGIC) {
        error_setg(errp, "Failed to read the server greeting");
        return -EIO;
    }
    if (nbd_write_all(sock, &cflags, sizeof(cflags)) < 0 ||
        nbd_write_all(sock, &opt, sizeof(opt)) < 0 ||
        nbd_write_all(sock, name, strlen(name)) < 0 ||
        nbd_read_all(sock, &rep, sizeof(rep), NULL) < 0) {
        error_setg(errp, "Failed to negotiate the export");
        return -EIO;
    }
    *size = be64toh(rep.size);
    *flags = be16toh(rep.flags);
    return 0;
}
