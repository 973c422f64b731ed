/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The channel to the host and the serving loop: a virtio-serial port, a serial tty (set
 * raw), or a listening unix or vsock socket that serves one client at a time. Bytes go
 * through the JSON stream; each complete message is dispatched and answered in order.
 */
#include "qga/ga.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

/* Bytes read from the channel at a time. */
#define GA_READ_CHUNK (64 * 1024)
/* How long to wait before reopening a channel that failed (-r), and between reads
 * of a virtio-serial port whose host side is closed. */
#define GA_RETRY_MS 5000
#define GA_HUP_SLEEP_MS 100
/* Longest poll before looking at the quit flag again. */
#define GA_POLL_MS 1000

typedef struct GAConn {
    GAState *s;
    int fd;
    bool failed; /* the peer went away mid-write */
} GAConn;

static const char *const ga_method_names[] = {
    [GA_METHOD_VIRTIO_SERIAL] = "virtio-serial",
    [GA_METHOD_ISA_SERIAL] = "isa-serial",
    [GA_METHOD_UNIX_LISTEN] = "unix-listen",
    [GA_METHOD_VSOCK_LISTEN] = "vsock-listen",
};

int ga_method_parse(const char *name, GAMethod *m)
{
    for (size_t i = 0; i < sizeof(ga_method_names) / sizeof(ga_method_names[0]); i++) {
        if (!strcmp(name, ga_method_names[i])) {
            *m = (GAMethod)i;
            return 0;
        }
    }
    return -1;
}

const char *ga_method_name(GAMethod m)
{
    return ga_method_names[m];
}

void ga_log(GAState *s, const char *level, const char *fmt, ...)
{
    struct timeval tv;
    va_list ap;
    FILE *f = s->log ? s->log : stderr;

    if (!strcmp(level, "debug") && !s->verbose) {
        return;
    }
    gettimeofday(&tv, NULL);
    fprintf(f, "%ld.%06ld: %s: ", (long)tv.tv_sec, (long)tv.tv_usec, level);
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fflush(f);
}

/* Write all of buf, waiting while a non-blocking fd is full. */
static int write_all(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            struct pollfd p = { fd, POLLOUT, 0 };
            poll(&p, 1, GA_POLL_MS);
            continue;
        }
        if (n <= 0) {
            return -1;
        }
        buf += n;
        len -= n;
    }
    return 0;
}

/* Send one response line (after the 0xFF sentinel for guest-sync-delimited). */
static void send_response(GAConn *c, json_t *rsp, bool delimit)
{
    size_t len;
    char *text = json_emit(rsp, &len);

    text = realloc(text, len + 2);
    if (!text) {
        abort();
    }
    text[len++] = '\n';
    ga_log(c->s, "debug", "sending data, count: %zu", len);
    if (!c->failed && delimit) {
        char sentinel = (char)QGA_SENTINEL_BYTE;
        c->failed = write_all(c->fd, &sentinel, 1) < 0;
    }
    if (!c->failed && write_all(c->fd, text, len) < 0) {
        ga_log(c->s, "debug", "error sending response: %s", strerror(errno));
        c->failed = true;
    }
    free(text);
}

/* Called by the JSON stream for each complete message or syntax error. */
static void process_message(void *opaque, json_t *msg, const char *err)
{
    GAConn *c = opaque;
    json_t *rsp;

    ga_log(c->s, "debug", "process_event: called");
    if (err) {
        rsp = qmp_error_response(QMP_CLASS_GENERIC, err, NULL);
        send_response(c, rsp, false);
        json_decref(rsp);
        return;
    }
    ga_log(c->s, "debug", "processing command");
    c->s->delimit_response = false;
    rsp = qmp_dispatch(&c->s->reg, msg, c->s, NULL);
    json_decref(msg);
    if (rsp) {
        bool delimit = c->s->delimit_response && json_object_get(rsp, "return");
        send_response(c, rsp, delimit);
        json_decref(rsp);
    }
    c->s->delimit_response = false;
}

/* Make a serial tty raw: no echo, no line editing, 8 bits, no flow control. */
static int tty_set_raw(int fd)
{
    struct termios t;
    if (tcgetattr(fd, &t) < 0) {
        return -1;
    }
    cfmakeraw(&t);
    t.c_cflag |= CLOCAL | CREAD;
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    return tcsetattr(fd, TCSANOW, &t);
}

/* Open the device or the listening socket. Returns the fd or -1 with errp set. */
static int channel_open(const GAChannelOpts *o, Error **errp)
{
    int fd;

    switch (o->method) {
    case GA_METHOD_VIRTIO_SERIAL:
    case GA_METHOD_ISA_SERIAL:
        fd = open(o->path, O_RDWR | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd < 0) {
            error_setg_errno(errp, errno, "error opening channel '%s'", o->path);
            return -1;
        }
        if (o->method == GA_METHOD_ISA_SERIAL && tty_set_raw(fd) < 0) {
            error_setg_errno(errp, errno, "error setting termios flags on '%s'", o->path);
            close(fd);
            return -1;
        }
        return fd;
    case GA_METHOD_UNIX_LISTEN: {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(o->path) >= sizeof(sa.sun_path)) {
            error_setg(errp, "UNIX socket path '%s' is too long", o->path);
            return -1;
        }
        strcpy(sa.sun_path, o->path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            error_setg_errno(errp, errno, "Failed to create socket");
            return -1;
        }
        unlink(o->path);
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            error_setg_errno(errp, errno, "Failed to bind socket to %s", o->path);
            close(fd);
            return -1;
        }
        break;
    }
    case GA_METHOD_VSOCK_LISTEN: {
        struct sockaddr_vm sv = { .svm_family = AF_VSOCK };
        char *end;
        unsigned long cid = strtoul(o->path, &end, 10), port;
        if (end == o->path || *end != ':') {
            error_setg(errp, "error parsing vsock address '%s'", o->path);
            return -1;
        }
        port = strtoul(end + 1, &end, 10);
        if (*end) {
            error_setg(errp, "error parsing vsock address '%s'", o->path);
            return -1;
        }
        sv.svm_cid = (unsigned)cid;
        sv.svm_port = (unsigned)port;
        fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            error_setg_errno(errp, errno, "Failed to create socket");
            return -1;
        }
        if (bind(fd, (struct sockaddr *)&sv, sizeof(sv)) < 0) {
            error_setg_errno(errp, errno, "Failed to bind socket to %s", o->path);
            close(fd);
            return -1;
        }
        break;
    }
    default:
        error_setg(errp, "unsupported channel method/type");
        return -1;
    }
    if (listen(fd, 1) < 0) {
        error_setg_errno(errp, errno, "Failed to listen on socket");
        close(fd);
        return -1;
    }
    return fd;
}

/*
 * Serve one connection (or the device) until it ends, a write fails or *quit is set.
 * Returns 1 when the peer closed, 0 on quit, -1 when the fd failed.
 */
static int serve_fd(GAState *s, int fd, bool is_device, volatile int *quit)
{
    GAConn conn = { s, fd, false };
    JsonStream *js = json_stream_new(process_message, &conn);
    char *buf = malloc(GA_READ_CHUNK);
    int ret = 0;

    if (!buf) {
        abort();
    }
    /*
     * A socket waits in read itself, with a receive timeout so *quit is still looked
     * at every GA_POLL_MS: one syscall less per request than poll then read.
     */
    bool timed_read = false;
    if (!is_device) {
        struct timeval tv = { GA_POLL_MS / 1000, (GA_POLL_MS % 1000) * 1000 };
        timed_read = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0;
    }
    while (!*quit) {
        if (!timed_read) {
            struct pollfd p = { fd, POLLIN, 0 };
            if (poll(&p, 1, GA_POLL_MS) <= 0) {
                continue;
            }
        }
        ssize_t n = read(fd, buf, GA_READ_CHUNK);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
            continue;
        }
        if (n == 0 && is_device) {
            /* The host side of a virtio-serial port is closed: wait for it. */
            struct timespec ts = { 0, GA_HUP_SLEEP_MS * 1000000L };
            nanosleep(&ts, NULL);
            continue;
        }
        if (n <= 0) {
            ga_log(s, "debug", n == 0 ? "received EOF" : "error reading channel");
            ret = n == 0 ? 1 : -1;
            break;
        }
        ga_log(s, "debug", "read data, count: %zd, data: %.*s", n, (int)n, buf);
        json_stream_feed(js, buf, n);
        if (conn.failed) {
            ret = is_device ? -1 : 1;
            break;
        }
    }
    json_stream_free(js);
    free(buf);
    return ret;
}

int ga_serve(GAState *s, const GAChannelOpts *o, volatile int *quit, Error **errp)
{
    bool listening = o->method == GA_METHOD_UNIX_LISTEN || o->method == GA_METHOD_VSOCK_LISTEN;
    int fd;

    for (;;) {
        Error *err = NULL;
        fd = channel_open(o, &err);
        if (fd >= 0) {
            break;
        }
        if (!o->retry) {
            error_propagate(errp, err);
            return -1;
        }
        ga_log(s, "critical", "%s", error_get_pretty(err));
        error_free(err);
        for (int waited = 0; waited < GA_RETRY_MS && !*quit; waited += GA_POLL_MS) {
            poll(NULL, 0, GA_POLL_MS);
        }
        if (*quit) {
            return 0;
        }
    }

    while (!*quit) {
        if (!listening) {
            if (serve_fd(s, fd, true, quit) < 0 && o->retry) {
                close(fd);
                ga_log(s, "critical", "channel failed, reopening '%s'", o->path);
                fd = -1;
                while (fd < 0 && !*quit) {
                    poll(NULL, 0, GA_RETRY_MS);
                    fd = channel_open(o, NULL);
                }
                continue;
            }
            break;
        }
        struct pollfd p = { fd, POLLIN, 0 };
        if (poll(&p, 1, GA_POLL_MS) <= 0) {
            continue;
        }
        int client = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        if (client < 0) {
            continue;
        }
        ga_log(s, "debug", "accepted connection");
        serve_fd(s, client, false, quit);
        close(client);
    }
    if (fd >= 0) {
        close(fd);
    }
    if (o->method == GA_METHOD_UNIX_LISTEN) {
        unlink(o->path);
    }
    return 0;
}
