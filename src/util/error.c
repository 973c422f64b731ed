/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Error objects carrying a human message from library code up to a tool. */
#include "qkit/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct Error {
    char *msg;
    char *hint;
};

static const char *progname = "qkit";

static char *vformat(const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) {
        abort();
    }
    return s;
}

void error_set_progname(const char *argv0)
{
    /* Messages name the program by its base name, as QEMU's tools do. */
    const char *slash = strrchr(argv0, '/');
    progname = slash ? slash + 1 : argv0;
}

const char *error_get_progname(void)
{
    return progname;
}

/* Shared by error_setg and error_setg_errno: build the message unless an error is set. */
static void error_vset(Error **errp, int err, const char *fmt, va_list ap)
{
    if (!errp || *errp) {
        return;
    }
    Error *e = calloc(1, sizeof(*e));
    if (!e) {
        abort();
    }
    char *msg = vformat(fmt, ap);
    if (err) {
        char *full = NULL;
        if (asprintf(&full, "%s: %s", msg, strerror(err)) < 0) {
            abort();
        }
        free(msg);
        msg = full;
    }
    e->msg = msg;
    *errp = e;
}

void error_setg(Error **errp, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_vset(errp, 0, fmt, ap);
    va_end(ap);
}

void error_setg_errno(Error **errp, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_vset(errp, err < 0 ? -err : err, fmt, ap);
    va_end(ap);
}

void error_prepend(Error **errp, const char *fmt, ...)
{
    if (!errp || !*errp) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    char *pre = vformat(fmt, ap);
    va_end(ap);
    char *full = NULL;
    if (asprintf(&full, "%s%s", pre, (*errp)->msg) < 0) {
        abort();
    }
    free(pre);
    free((*errp)->msg);
    (*errp)->msg = full;
}

void error_append_hint(Error **errp, const char *fmt, ...)
{
    if (!errp || !*errp) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    char *add = vformat(fmt, ap);
    va_end(ap);
    Error *e = *errp;
    if (e->hint) {
        char *full = NULL;
        if (asprintf(&full, "%s%s", e->hint, add) < 0) {
            abort();
        }
        free(add);
        free(e->hint);
        add = full;
    }
    e->hint = add;
}

const char *error_get_pretty(const Error *err)
{
    return err->msg;
}

const char *error_get_hint(const Error *err)
{
    return err->hint;
}

void error_free(Error *err)
{
    if (err) {
        free(err->msg);
        free(err->hint);
        free(err);
    }
}

void error_propagate(Error **dst, Error *src)
{
    if (!src) {
        return;
    }
    if (dst && !*dst) {
        *dst = src;
    } else {
        error_free(src);
    }
}

void error_report_err(Error *err)
{
    if (!err) {
        return;
    }
    fprintf(stderr, "%s: %s\n", progname, err->msg);
    if (err->hint) {
        fputs(err->hint, stderr);
    }
    error_free(err);
}

void error_report(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", progname);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
