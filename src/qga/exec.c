/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * guest-exec and guest-exec-status: start a program with arguments, environment and
 * optional input; a thread per process feeds its stdin, collects stdout/stderr (each
 * capped at 16 MiB, the rest drained and dropped) and reaps it. The status is handed
 * out once, after the process ended and its output closed.
 */
#include "qga/ga.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define GA_EXEC_CHUNK 65536

typedef struct GAExecBuf {
    unsigned char *data;
    size_t len;
    bool truncated;
} GAExecBuf;

struct GAExec {
    pid_t pid;
    bool capture;
    bool finished;  /* reaped and output closed */
    int status;
    GAExecBuf out, err;
    unsigned char *input;
    size_t input_len;
    int fd_in, fd_out, fd_err;
    pthread_t thread;
    GAState *s;
    GAExec *next;
};

/* Keep up to the cap of what a stream produced; count the rest as truncation. */
static void buf_add(GAExecBuf *b, const unsigned char *p, size_t n)
{
    size_t room = QGA_EXEC_MAX_OUTPUT - b->len;
    if (n > room) {
        b->truncated = true;
        n = room;
    }
    if (!n) {
        return;
    }
    b->data = realloc(b->data, b->len + n);
    if (!b->data) {
        abort();
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

/* The watcher thread of one process: pipes until they close, then waitpid. */
static void *exec_watch(void *opaque)
{
    GAExec *e = opaque;
    unsigned char *chunk = malloc(GA_EXEC_CHUNK);
    size_t in_off = 0;
    GAExecBuf out = { 0 }, err = { 0 };
    int status = 0;

    if (!chunk) {
        abort();
    }
    while (e->fd_in >= 0 || e->fd_out >= 0 || e->fd_err >= 0) {
        struct pollfd p[3] = {
            { e->fd_in, POLLOUT, 0 }, { e->fd_out, POLLIN, 0 }, { e->fd_err, POLLIN, 0 },
        };
        if (poll(p, 3, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        if (e->fd_in >= 0 && p[0].revents) {
            ssize_t n = in_off < e->input_len
                        ? write(e->fd_in, e->input + in_off, e->input_len - in_off) : 0;
            if (n > 0) {
                in_off += n;
            }
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0 || in_off == e->input_len) {
                close(e->fd_in);
                e->fd_in = -1;
            }
        }
        for (int i = 1; i <= 2; i++) {
            int *fd = i == 1 ? &e->fd_out : &e->fd_err;
            if (*fd < 0 || !p[i].revents) {
                continue;
            }
            ssize_t n = read(*fd, chunk, GA_EXEC_CHUNK);
            if (n > 0) {
                buf_add(i == 1 ? &out : &err, chunk, n);
            } else if (n == 0 || errno != EINTR) {
                close(*fd);
                *fd = -1;
            }
        }
    }
    free(chunk);
    while (waitpid(e->pid, &status, 0) < 0 && errno == EINTR) {
    }
    pthread_mutex_lock(&e->s->exec_lock);
    e->out = out;
    e->err = err;
    e->status = status;
    e->finished = true;
    pthread_mutex_unlock(&e->s->exec_lock);
    return NULL;
}


/* A NULL-terminated string array from an optional JSON list of strings. */
static char **str_array(json_t *list, const char *first)
{
    size_t n = list ? json_array_size(list) : 0, k = 0;
    char **a = calloc(n + 2, sizeof(*a));
    if (!a) {
        abort();
    }
    if (first) {
        a[k++] = (char *)first;
    }
    for (size_t i = 0; i < n; i++) {
        a[k++] = (char *)json_string_value(json_array_get(list, i));
    }
    return a;
}

static json_t *cmd_exec(void *opaque, json_t *args, Error **errp)
{
    GAState *s = opaque;
    const char *path = qmp_get_str(args, "path", "");
    json_t *input = json_object_get(args, "input-data");
    bool capture = qmp_get_bool(args, "capture-output", false);
    int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 }, errpipe[2] = { -1, -1 };
    unsigned char *data = NULL;
    size_t data_len = 0;
    char **argv = NULL, **envp = NULL;
    json_t *ret = NULL;
    GAExec *e;

    if (input) {
        if (!ga_base64_check(json_string_value(input), json_string_length(input), errp)) {
            return NULL;
        }
        data = ga_base64_decode_glib(json_string_value(input), &data_len);
    }
    argv = str_array(json_object_get(args, "arg"), path);
    if (json_object_get(args, "env")) {
        envp = str_array(json_object_get(args, "env"), NULL);
    }
    if ((input && pipe2(in, O_CLOEXEC) < 0) || (capture && pipe2(out, O_CLOEXEC) < 0) ||
        (capture && pipe2(err, O_CLOEXEC) < 0) || pipe2(errpipe, O_CLOEXEC) < 0) {
        error_setg_errno(errp, errno, "cannot create pipe FDs");
        goto fail;
    }
    pid_t pid = fork();
    if (pid < 0) {
        error_setg_errno(errp, errno, "failed to create child process");
        goto fail;
    }
    if (pid == 0) {
        /* errpipe stays open across a failed exec so the parent learns errno */
        close(errpipe[0]);
        int null = open("/dev/null", O_RDWR);
        dup2(input ? in[0] : null, 0);
        dup2(capture ? out[1] : null, 1);
        dup2(capture ? err[1] : null, 2);
        signal(SIGPIPE, SIG_DFL);
        if (envp) {
            execvpe(path, argv, envp);
        } else {
            execvp(path, argv);
        }
        int e_no = errno;
        if (write(errpipe[1], &e_no, sizeof(e_no)) < 0) {
            _exit(127);
        }
        _exit(127);
    }
    close(errpipe[1]);
    errpipe[1] = -1;
    int child_errno = 0;
    ssize_t n;
    do {
        n = read(errpipe[0], &child_errno, sizeof(child_errno));
    } while (n < 0 && errno == EINTR);
    if (n == sizeof(child_errno)) {
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
        }
        error_setg(errp, "Guest agent command failed, error was 'Failed to execute child "
                   "process \u201C%s\u201D (%s)'", path, strerror(child_errno));
        goto fail;
    }

    e = calloc(1, sizeof(*e));
    if (!e) {
        abort();
    }
    e->pid = pid;
    e->s = s;
    e->capture = capture;
    e->input = data;
    e->input_len = data_len;
    data = NULL;
    e->fd_in = in[1];
    e->fd_out = out[0];
    e->fd_err = err[0];
    in[1] = out[0] = err[0] = -1;
    pthread_mutex_lock(&s->exec_lock);
    e->next = s->execs;
    s->execs = e;
    pthread_mutex_unlock(&s->exec_lock);
    /* The watcher starts with every signal blocked: SIGTERM must reach the main loop. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    if (pthread_create(&e->thread, NULL, exec_watch, e) != 0) {
        abort();
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    ret = json_pack("{sI}", "pid", (json_int_t)pid);
fail:
    for (int i = 0; i < 2; i++) {
        int *fds[] = { &in[i], &out[i], &err[i], &errpipe[i] };
        for (size_t k = 0; k < 4; k++) {
            if (*fds[k] >= 0) {
                close(*fds[k]);
            }
        }
    }
    free(data);
    free(argv);
    free(envp);
    return ret;
}

/* Free a finished process's record (its thread has ended). */
static void exec_free(GAExec *e)
{
    pthread_join(e->thread, NULL);
    free(e->out.data);
    free(e->err.data);
    free(e->input);
    free(e);
}

/* Output of one stream as qemu-ga reports it: only when there was some. */
static void put_output(json_t *ret, const GAExecBuf *b, const char *data_key,
                       const char *trunc_key)
{
    if (b->len == 0) {
        return;
    }
    char *b64 = ga_base64_encode(b->data, b->len);
    json_object_set_new(ret, data_key, json_string(b64));
    json_object_set_new(ret, trunc_key, json_boolean(b->truncated));
    free(b64);
}

static json_t *cmd_exec_status(void *opaque, json_t *args, Error **errp)
{
    GAState *s = opaque;
    int64_t pid = qmp_get_int(args, "pid", 0);
    GAExec **pp, *e = NULL;
    json_t *ret;

    pthread_mutex_lock(&s->exec_lock);
    for (pp = &s->execs; *pp; pp = &(*pp)->next) {
        if ((*pp)->pid == pid) {
            e = *pp;
            break;
        }
    }
    if (!e) {
        pthread_mutex_unlock(&s->exec_lock);
        error_setg(errp, "Invalid parameter 'pid'");
        return NULL;
    }
    ret = json_pack("{sb}", "exited", e->finished);
    if (!e->finished) {
        pthread_mutex_unlock(&s->exec_lock);
        return ret;
    }
    *pp = e->next;
    pthread_mutex_unlock(&s->exec_lock);
    if (WIFEXITED(e->status)) {
        json_object_set_new(ret, "exitcode", json_integer(WEXITSTATUS(e->status)));
    } else if (WIFSIGNALED(e->status)) {
        json_object_set_new(ret, "signal", json_integer(WTERMSIG(e->status)));
    }
    if (e->capture) {
        put_output(ret, &e->out, "out-data", "out-truncated");
        put_output(ret, &e->err, "err-data", "err-truncated");
    }
    exec_free(e);
    return ret;
}

void ga_exec_cleanup(GAState *s)
{
    pthread_mutex_lock(&s->exec_lock);
    GAExec *e = s->execs;
    s->execs = NULL;
    pthread_mutex_unlock(&s->exec_lock);
    while (e) {
        GAExec *next = e->next;
        if (e->finished) {
            exec_free(e);
        } else {
            /* still running: leave it to its thread, which exits with the process */
            pthread_detach(e->thread);
        }
        e = next;
    }
}

static const QmpArg exec_status_args[] = { { "pid", QMP_T_INT }, { NULL } };
static const QmpArg exec_args[] = {
    { "path", QMP_T_STR },
    { "arg", QMP_T_STR, QMP_ARG_OPTIONAL | QMP_ARG_LIST },
    { "env", QMP_T_STR, QMP_ARG_OPTIONAL | QMP_ARG_LIST },
    { "input-data", QMP_T_STR, QMP_ARG_OPTIONAL },
    { "capture-output", QMP_T_BOOL, QMP_ARG_OPTIONAL },
    { NULL },
};

const QmpCommandDef ga_exec_cmds[] = {
    { "guest-exec-status", cmd_exec_status, exec_status_args },
    { "guest-exec", cmd_exec, exec_args },
    { NULL },
};
