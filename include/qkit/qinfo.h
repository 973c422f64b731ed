/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Output shared by the tools, worded and laid out as QEMU's: the order QEMU's
 * QDict iterates keys in (which its JSON and human dumps follow, and which scripts
 * and golden files depend on), the human "key: value" tree of format-specific
 * information that both `qemu-img info` and qemu-io's "info" print, and the warning
 * about writable images whose format was probed as raw.
 */
#ifndef QKIT_QINFO_H
#define QKIT_QINFO_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

/* One member of an object, with the position QEMU's QDict iteration gives it. */
typedef struct QkitDictKey {
    const char *key;
    json_t *value;
    unsigned bucket;
    size_t index;
} QkitDictKey;

/* The members of obj in the order QEMU iterates them; *count set; caller frees. */
QkitDictKey *qkit_dict_keys_ordered(json_t *obj, size_t *count);
/*
 * The human tree of obj at nesting level (4 spaces each): "key: value" lines with
 * '-' in keys shown as ' ', "[N]:" for list items, containers nested below.
 */
void qkit_dump_human_tree(FILE *f, json_t *obj, int level);
/* To stderr: the warning shown when an image opened for writing was probed as raw. */
void qkit_warn_probed_raw(const char *filename);

#endif
