/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Small helpers shared by every layer: number and size parsing, size printing, math. */
#ifndef QKIT_CUTILS_H
#define QKIT_CUTILS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QKIT_KiB (1ULL << 10)
#define QKIT_MiB (1ULL << 20)
#define QKIT_GiB (1ULL << 30)
#define QKIT_TiB (1ULL << 40)

#define DIV_ROUND_UP(n, d) (((n) + (d) - 1) / (d))
#define ROUND_UP(n, d) (DIV_ROUND_UP(n, d) * (d))
#define ROUND_DOWN(n, d) ((n) / (d) * (d))
#define QKIT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define QKIT_MAX(a, b) ((a) > (b) ? (a) : (b))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define QKIT_IS_POW2(x) ((x) != 0 && ((x) & ((x) - 1)) == 0)

/*
 * Parse a size as QEMU's tools do: decimal or 0x hex, an optional '+', an optional
 * suffix (B, k/K, M, G, T, P, E; powers of 1024) and a decimal fraction ("1.5G").
 * default_suffix applies when none is given (0 = bytes). Returns 0, -EINVAL for
 * garbage, -ERANGE for a value above INT64_MAX.
 */
int qkit_strtosz(const char *str, char default_suffix, uint64_t *result);
/* True for "0x10k": hex with a suffix, which QEMU accepts with a deprecation warning. */
bool qkit_size_is_hex_with_suffix(const char *str);
/* Parse a whole string as a signed/unsigned integer (base 0). 0 or -EINVAL/-ERANGE. */
int qkit_strtoi64(const char *str, int64_t *result);
int qkit_strtou64(const char *str, uint64_t *result);
/* "on"/"yes"/"true" and "off"/"no"/"false" to a bool; 0 or -EINVAL. */
int qkit_strtobool(const char *str, bool *result);
/* Human size as qemu-img prints it: "64 MiB", "1.5 GiB", "512 B". Caller frees. */
char *qkit_size_to_str(uint64_t val);
/* True if the whole buffer is zero bytes. */
bool buffer_is_zero(const void *buf, size_t len);
/* Path of rel taken relative to the directory of base (rel as-is if absolute). Caller frees. */
char *path_combine(const char *base, const char *rel);
/* Monotonic clock in nanoseconds. */
int64_t qkit_clock_ns(void);

#endif
