/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qkit-img map: print where each range of the guest-visible image comes from. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "img.h"
#include "qkit/cutils.h"

enum {
    OPT_OUTPUT = 256,
    OPT_OBJECT,
    OPT_IMAGE_OPTS,
    OPT_START_OFFSET,
    OPT_MAX_LENGTH,
};

/* Largest range asked about in one block-status query. */
#define MAP_PROBE_MAX (1LL << 30)

/* One run of bytes with the same status, as QEMU's MapEntry. */
typedef struct MapEntry {
    int64_t start;
    int64_t length;
    bool data;
    bool zero;
    bool present;
    bool has_offset;
    int64_t offset;
    int depth;
    const char *filename;   /* node holding the data (with has_offset), else NULL */
} MapEntry;

/* Status of [offset, offset+bytes) down the chain; the first layer that knows wins. */
static int map_get_status(BlockDriverState *bs, int64_t offset, int64_t bytes, MapEntry *e)
{
    int depth = 0;
    int64_t map = 0;
    BlockDriverState *file = NULL;
    int ret;
    for (;;) {
        ret = bdrv_block_status(bs, offset, bytes, &bytes, &map, &file);
        if (ret < 0) {
            return ret;
        }
        if (bytes == 0) {
            /* This layer is shorter than the top one: the rest reads as zeroes. */
            bytes = 1;
            ret = BDRV_BLOCK_ZERO;
            break;
        }
        if (ret & (BDRV_BLOCK_ZERO | BDRV_BLOCK_DATA)) {
            break;
        }
        if (!bs->backing) {
            ret = 0;
            break;
        }
        bs = bs->backing;
        depth++;
    }
    *e = (MapEntry){
        .start = offset,
        .length = bytes,
        .data = !!(ret & BDRV_BLOCK_DATA),
        .zero = !!(ret & BDRV_BLOCK_ZERO),
        .present = !!(ret & BDRV_BLOCK_ALLOCATED),
        .has_offset = !!(ret & BDRV_BLOCK_OFFSET_VALID),
        .offset = map,
        .depth = depth,
        .filename = (ret & BDRV_BLOCK_OFFSET_VALID) && file ? file->filename : NULL,
    };
    return 0;
}

/* Adjacent entries print as one when every field carries on. */
static bool map_mergeable(const MapEntry *cur, const MapEntry *next)
{
    if (cur->length == 0) {
        return false;
    }
    if (cur->zero != next->zero || cur->data != next->data || cur->depth != next->depth ||
        cur->present != next->present || cur->has_offset != next->has_offset ||
        (cur->filename != NULL) != (next->filename != NULL)) {
        return false;
    }
    if (cur->filename && strcmp(cur->filename, next->filename)) {
        return false;
    }
    if (cur->has_offset && cur->offset + cur->length != next->offset) {
        return false;
    }
    return true;
}

/* Print one merged entry; next says whether more follow (JSON separators). */
static int map_dump_entry(int ofmt, const MapEntry *e, const MapEntry *next)
{
    if (ofmt == IMG_OUTPUT_HUMAN) {
        if (e->data && !e->has_offset) {
            error_report("File contains external, encrypted or compressed clusters.");
            return -1;
        }
        /* Human output shows only data; zero and unallocated ranges are left out. */
        if (e->data && !e->zero) {
            printf("%#-16" PRIx64 "%#-16" PRIx64 "%#-16" PRIx64 "%s\n", (uint64_t)e->start,
                   (uint64_t)e->length, (uint64_t)(e->has_offset ? e->offset : 0),
                   e->filename ? e->filename : "");
        }
        return 0;
    }
    printf("{ \"start\": %" PRId64 ", \"length\": %" PRId64 ",", e->start, e->length);
    printf(" \"depth\": %d,", e->depth);
    printf(" \"present\": %s,", e->present ? "true" : "false");
    printf(" \"zero\": %s, \"data\": %s", e->zero ? "true" : "false",
           e->data ? "true" : "false");
    if (e->has_offset) {
        printf(", \"offset\": %" PRId64, e->offset);
    }
    putchar('}');
    if (next) {
        puts(",");
    }
    return 0;
}

/* Entry point of `qkit-img map`. */
int img_map(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { "start-offset", required_argument, NULL, OPT_START_OFFSET },
        { "max-length", required_argument, NULL, OPT_MAX_LENGTH },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *output = NULL;
    bool image_opts = false, force_share = false;
    int64_t start_offset = 0, max_length = -1;
    int c;

    while ((c = getopt_long(argc, argv, ":f:hU", long_options, NULL)) != -1) {
        switch (c) {
        case ':':
        case '?':
            img_getopt_error(c, argv);
        case 'h':
            img_help();
        case 'f':
            fmt = optarg;
            break;
        case 'U':
            force_share = true;
            break;
        case OPT_OUTPUT:
            output = optarg;
            break;
        case OPT_START_OFFSET:
            start_offset = img_cvtnum("start offset", optarg);
            if (start_offset < 0) {
                return 1;
            }
            break;
        case OPT_MAX_LENGTH:
            max_length = img_cvtnum("max length", optarg);
            if (max_length < 0) {
                return 1;
            }
            break;
        case OPT_OBJECT:
            img_object_add(optarg);
            break;
        case OPT_IMAGE_OPTS:
            image_opts = true;
            break;
        }
    }
    const char *filename = img_one_filename(argc, argv);
    int ofmt = img_parse_output_format(output);
    if (ofmt < 0) {
        return 1;
    }
    BlockDriverState *bs = img_open(image_opts, filename, fmt, 0, false, false, force_share);
    if (!bs) {
        return 1;
    }
    int ret = 0;
    if (ofmt == IMG_OUTPUT_HUMAN) {
        printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
    } else {
        printf("[");
    }
    int64_t length = bdrv_getlength(bs);
    if (length < 0) {
        error_report("Failed to get size for '%s'", filename);
        ret = -1;
        goto out;
    }
    if (max_length != -1) {
        length = QKIT_MIN(start_offset + max_length, length);
    }
    MapEntry cur = { .start = start_offset, .length = 0 };
    MapEntry next;
    while (cur.start + cur.length < length) {
        int64_t offset = cur.start + cur.length;
        int64_t n = QKIT_MIN(MAP_PROBE_MAX, length - offset);
        ret = map_get_status(bs, offset, n, &next);
        if (ret < 0) {
            error_report("Could not read file metadata: %s", strerror(-ret));
            goto out;
        }
        if (map_mergeable(&cur, &next)) {
            cur.length += next.length;
            continue;
        }
        if (cur.length > 0) {
            ret = map_dump_entry(ofmt, &cur, &next);
            if (ret < 0) {
                goto out;
            }
        }
        cur = next;
    }
    ret = map_dump_entry(ofmt, &cur, NULL);
    if (ofmt == IMG_OUTPUT_JSON) {
        puts("]");
    }
out:
    fflush(stdout);
    bdrv_unref(bs);
    return ret < 0;
}
