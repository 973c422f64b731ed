/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Error objects: library code fills one with a human message, the tool prints it once. */
#ifndef QKIT_ERROR_H
#define QKIT_ERROR_H

#include <stdarg.h>

typedef struct Error Error;

/* Set *errp (if errp is non-NULL and *errp is NULL) to a new error with the message. */
void error_setg(Error **errp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Like error_setg, with ": strerror(err)" appended (err is a positive errno). */
void error_setg_errno(Error **errp, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Put text in front of an existing error's message. */
void error_prepend(Error **errp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Add a second line (a hint) printed after the message. */
void error_append_hint(Error **errp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *error_get_pretty(const Error *err);
const char *error_get_hint(const Error *err);
void error_free(Error *err);
/* Move src into *dst unless *dst is already set (then src is freed). */
void error_propagate(Error **dst, Error *src);
/* Tools only: print "prog: message" (and the hint) to stderr, then free the error. */
void error_report_err(Error *err);
/* Tools only: print "prog: message" to stderr. */
void error_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Set once by a tool's main(): the program name as invoked (argv[0]). */
void error_set_progname(const char *argv0);
const char *error_get_progname(void);

#endif
