/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Small helpers the command groups share: reading sysfs files, running helpers, base64. */
#include "qga/ga.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* sysfs and procfs files are small; this bounds what one read may take. */
#define GA_READ_FILE_MAX (1 << 20)

char *ga_read_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t cap = 4096, len = 0;
    char *buf;

    if (fd < 0) {
        return NULL;
    }
    buf = malloc(cap);
    if (!buf) {
        abort();
    }
    for (;;) {
        if (len + 1 >= cap) {
            if (cap >= GA_READ_FILE_MAX) {
                break;
            }
            cap *= 2;
            buf = realloc(buf, cap);
            if (!buf) {
                abort();
            }
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            free(buf);
            close(fd);
            return NULL;
        }
        if (n == 0) {
            break;
        }
        len += n;
    }
    close(fd);
    buf[len] = '\0';
    return buf;
}

/* Fork and run path (argv[0] from PATH if NULL) detached, stdio on /dev/null; wait. */
int ga_run_path(const char *path, char *const argv[], Error **errp)
{
    int status;
    pid_t pid = fork();

    if (pid < 0) {
        error_setg_errno(errp, errno, "failed to create child process");
        return -1;
    }
    if (pid == 0) {
        int fd = open("/dev/null", O_RDWR);
        setsid();
        if (fd >= 0) {
            dup2(fd, 0);
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (path) {
            execv(path, argv);
        } else {
            execvp(argv[0], argv);
        }
        _exit(EXIT_FAILURE);
    }
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            error_setg_errno(errp, errno, "failed to wait for child (pid: %d)", (int)pid);
            return -1;
        }
    }
    return status;
}

/* Run a command found in PATH (fs freeze hooks, shutdown) and wait for it. */
int ga_run(char *const argv[], Error **errp)
{
    return ga_run_path(NULL, argv, errp);
}

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *ga_base64_encode(const unsigned char *data, size_t len)
{
    char *out = malloc((len + 2) / 3 * 4 + 1), *p = out;

    if (!out) {
        abort();
    }
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16;
        if (i + 1 < len) {
            v |= (uint32_t)data[i + 1] << 8;
        }
        if (i + 2 < len) {
            v |= data[i + 2];
        }
        *p++ = b64_alphabet[(v >> 18) & 63];
        *p++ = b64_alphabet[(v >> 12) & 63];
        *p++ = i + 1 < len ? b64_alphabet[(v >> 6) & 63] : '=';
        *p++ = i + 2 < len ? b64_alphabet[v & 63] : '=';
    }
    *p = '\0';
    return out;
}

/* Value of one base64 character; '=' counts as 0 and anything else is skipped (-1). */
static int b64_rank(unsigned char c)
{
    const char *p = c ? strchr(b64_alphabet, c) : NULL;
    return p ? (int)(p - b64_alphabet) : c == '=' ? 0 : -1;
}

/*
 * Decode the way glib's g_base64_decode does (qemu-ga relies on it after its own
 * character check): unknown bytes skipped, every full group of four gives up to three
 * bytes, a '=' in a group's last two places drops the matching byte, a partial group
 * at the end gives nothing.
 */
unsigned char *ga_base64_decode_glib(const char *text, size_t *len)
{
    size_t n = strlen(text), o = 0;
    unsigned char *out = malloc(n / 4 * 3 + 3);
    char last[2] = { 0, 0 };
    uint32_t v = 0;
    int i = 0;

    if (!out) {
        abort();
    }
    for (size_t k = 0; k < n; k++) {
        int r = b64_rank((unsigned char)text[k]);
        if (r < 0) {
            continue;
        }
        last[1] = last[0];
        last[0] = text[k];
        v = (v << 6) | (uint32_t)r;
        if (++i == 4) {
            out[o++] = (unsigned char)(v >> 16);
            if (last[1] != '=') {
                out[o++] = (unsigned char)(v >> 8);
            }
            if (last[0] != '=') {
                out[o++] = (unsigned char)v;
            }
            i = 0;
        }
    }
    *len = o;
    return out;
}
