/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Number and size parsing and printing, zero detection, path joining. */
#include "qkit/cutils.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Shift for one size suffix letter, or -1 if the letter is not a suffix. */
static int suffix_shift(char c)
{
    switch (toupper((unsigned char)c)) {
    case 'B': return 0;
    case 'K': return 10;
    case 'M': return 20;
    case 'G': return 30;
    case 'T': return 40;
    case 'P': return 50;
    case 'E': return 60;
    default: return -1;
    }
}

int qkit_strtosz(const char *str, char default_suffix, uint64_t *result)
{
    const char *p = str;
    while (isspace((unsigned char)*p)) {
        p++;
    }
    if (*p == '-') {
        return -EINVAL;
    }
    const char *digits = *p == '+' ? p + 1 : p;
    bool hex = digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X');
    char *end;
    errno = 0;
    unsigned long long ival = strtoull(p, &end, hex ? 16 : 10);
    if (end == p || (hex && end == digits + 1)) {
        return -EINVAL;
    }
    if (errno == ERANGE) {
        return -ERANGE;
    }
    /* A fraction is plain decimal digits after a decimal integer ("1." is allowed). */
    double frac = 0;
    if (*end == '.') {
        if (hex) {
            return -EINVAL;
        }
        double scale = 0.1;
        for (end++; isdigit((unsigned char)*end); end++, scale /= 10) {
            frac += (*end - '0') * scale;
        }
    }
    int shift = default_suffix ? suffix_shift(default_suffix) : 0;
    if (*end) {
        shift = suffix_shift(*end);
        if (shift < 0 || end[1]) {
            return -EINVAL;
        }
    }
    /* A fraction of a byte makes no sense: "1.5" and "1.5b" are refused, "1.5k" is not. */
    if (frac != 0 && shift == 0) {
        return -EINVAL;
    }
    uint64_t mul = 1ULL << shift;
    uint64_t fpart = (uint64_t)(frac * (double)mul);
    if (ival > (UINT64_MAX - fpart) / mul) {
        return -ERANGE;
    }
    uint64_t val = ival * mul + fpart;
    if (val > INT64_MAX) {
        return -ERANGE;
    }
    *result = val;
    return 0;
}

bool qkit_size_is_hex_with_suffix(const char *str)
{
    while (isspace((unsigned char)*str)) {
        str++;
    }
    if (*str == '+') {
        str++;
    }
    if (str[0] != '0' || (str[1] != 'x' && str[1] != 'X')) {
        return false;
    }
    str += 2;
    while (isxdigit((unsigned char)*str)) {
        str++;
    }
    return *str != 0;
}

int qkit_strtoi64(const char *str, int64_t *result)
{
    if (!str || !*str) {
        return -EINVAL;
    }
    char *end;
    errno = 0;
    long long v = strtoll(str, &end, 0);
    if (errno) {
        return -errno;
    }
    if (*end) {
        return -EINVAL;
    }
    *result = v;
    return 0;
}

int qkit_strtou64(const char *str, uint64_t *result)
{
    if (!str || !*str || *str == '-') {
        return -EINVAL;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(str, &end, 0);
    if (errno) {
        return -errno;
    }
    if (*end) {
        return -EINVAL;
    }
    *result = v;
    return 0;
}

int qkit_strtobool(const char *str, bool *result)
{
    if (!strcmp(str, "on") || !strcmp(str, "yes") || !strcmp(str, "true")) {
        *result = true;
        return 0;
    }
    if (!strcmp(str, "off") || !strcmp(str, "no") || !strcmp(str, "false")) {
        *result = false;
        return 0;
    }
    return -EINVAL;
}

char *qkit_size_to_str(uint64_t val)
{
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
    /*
     * Pick the unit so that the number printed stays below 1000: a value of
     * 1000..1023 of one unit is shown as 0.98.. of the next, as qemu-img does.
     */
    int exp;
    frexp(val / (1000.0 / 1024.0), &exp);
    int i = (exp - 1) / 10;
    if (i < 0) {
        i = 0;
    }
    if (i >= (int)ARRAY_SIZE(units)) {
        i = ARRAY_SIZE(units) - 1;
    }
    double div = (double)(1ULL << (i * 10));
    char *s = NULL;
    if (asprintf(&s, "%0.3g %s", (double)val / div, units[i]) < 0) {
        abort();
    }
    return s;
}

bool buffer_is_zero(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    size_t i = 0;
    /* Check the head byte-wise until 8-byte aligned, then 8 bytes at a time. */
    while (i < len && ((uintptr_t)(p + i) & 7)) {
        if (p[i++]) {
            return false;
        }
    }
    for (; i + 64 <= len; i += 64) {
        const uint64_t *q = (const uint64_t *)(p + i);
        if (q[0] | q[1] | q[2] | q[3] | q[4] | q[5] | q[6] | q[7]) {
            return false;
        }
    }
    for (; i < len; i++) {
        if (p[i]) {
            return false;
        }
    }
    return true;
}

char *path_combine(const char *base, const char *rel)
{
    char *s = NULL;
    const char *slash = strrchr(base, '/');
    if (rel[0] == '/' || !slash || strstr(rel, "://") || !strncmp(rel, "json:", 5)) {
        s = strdup(rel);
    } else if (asprintf(&s, "%.*s%s", (int)(slash - base + 1), base, rel) < 0) {
        s = NULL;
    }
    if (!s) {
        abort();
    }
    return s;
}

int64_t qkit_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
