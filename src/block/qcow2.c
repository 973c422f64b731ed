/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2 format driver: probing, opening (header and header extension checks), closing,
 * header rewrites, image information, resizing and the driver table. Creation and
 * size measurement live in qcow2-create.c; cluster mapping and I/O in qcow2-cluster.c.
 */
#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2.h"
#include "qkit/cutils.h"

#define NSEC_PER_SEC 1000000000LL
#define QCOW2_PROBE_SCORE 100
#define QCOW2_DEFAULT_L2_CACHE_MAX (32 * QKIT_MiB)
#define QCOW2_MIN_L2_CACHE_TABLES 2
#define QCOW2_MIN_REFCOUNT_CACHE_TABLES 4
#define QCOW2_DEFAULT_CACHE_CLEAN_INTERVAL 600
#define QCOW2_EXT_ALIGN 8
#define QCOW2_MAX_UNKNOWN_EXT_LEN (1 << 20)

/* Names of the feature bits this driver knows, written into the feature name table. */
static const Qcow2Feature qcow2_known_features[] = {
    { QCOW2_FEAT_TYPE_INCOMPATIBLE, 0, "dirty bit" },
    { QCOW2_FEAT_TYPE_INCOMPATIBLE, 1, "corrupt bit" },
    { QCOW2_FEAT_TYPE_INCOMPATIBLE, 2, "external data file" },
    { QCOW2_FEAT_TYPE_INCOMPATIBLE, 3, "compression type" },
    { QCOW2_FEAT_TYPE_INCOMPATIBLE, 4, "extended L2 entries" },
    { QCOW2_FEAT_TYPE_COMPATIBLE, 0, "lazy refcounts" },
    { QCOW2_FEAT_TYPE_AUTOCLEAR, 0, "bitmaps" },
    { QCOW2_FEAT_TYPE_AUTOCLEAR, 1, "raw external data" },
};

/* Called by the core for every format when probing: the magic and a sane version. */
static int qcow2_probe(const uint8_t *buf, int buf_size, const char *filename)
{
    if (buf_size < 8) {
        return 0;
    }
    uint32_t magic, version;
    memcpy(&magic, buf, 4);
    memcpy(&version, buf + 4, 4);
    if (be32toh(magic) == QCOW2_MAGIC && be32toh(version) >= QCOW2_VERSION_MIN) {
        return QCOW2_PROBE_SCORE;
    }
    return 0;
}

void qcow2_set_refcount_order(BDRVQcow2State *s, int refcount_order)
{
    s->refcount_order = refcount_order;
    s->refcount_bits = 1 << refcount_order;
    s->refcount_max = s->refcount_bits == 64 ? UINT64_MAX : (1ULL << s->refcount_bits) - 1;
    s->refcount_block_bits = s->cluster_bits - (refcount_order - 3);
    s->refcount_block_size = 1ULL << s->refcount_block_bits;
}

/* Derive every geometry field of s from cluster_bits and extended_l2. */
static void qcow2_set_geometry(BDRVQcow2State *s, int cluster_bits, bool extended_l2)
{
    s->cluster_bits = cluster_bits;
    s->cluster_size = 1ULL << cluster_bits;
    s->extended_l2 = extended_l2;
    s->l2_entry_size = extended_l2 ? 16 : 8;
    s->l2_bits = cluster_bits - (extended_l2 ? 4 : 3);
    s->l2_size = 1 << s->l2_bits;
    s->subclusters_per_cluster = extended_l2 ? QCOW2_SUBCLUSTERS_PER_CLUSTER : 1;
    s->subcluster_bits = cluster_bits - (extended_l2 ? 5 : 0);
    s->subcluster_size = 1ULL << s->subcluster_bits;
    s->csize_shift = 62 - (cluster_bits - 8);
    s->csize_mask = (1ULL << (cluster_bits - 8)) - 1;
    s->cluster_offset_mask = (1ULL << s->csize_shift) - 1;
}

int qcow2_validate_table(BlockDriverState *bs, uint64_t offset, uint64_t entries,
                         size_t entry_len, uint64_t max_size_bytes, const char *table_name,
                         Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    if (entries > max_size_bytes / entry_len) {
        error_setg(errp, "%s too large", table_name);
        return -EFBIG;
    }
    if ((uint64_t)INT64_MAX - entries * entry_len < offset ||
        qcow2_offset_into_cluster(s, offset)) {
        error_setg(errp, "%s offset invalid", table_name);
        return -EINVAL;
    }
    return 0;
}

/* ---- Header extensions ---- */

static void free_unknown_exts(BDRVQcow2State *s)
{
    Qcow2UnknownExt *e = s->unknown_exts;
    while (e) {
        Qcow2UnknownExt *next = e->next;
        free(e->data);
        free(e);
        e = next;
    }
    s->unknown_exts = NULL;
}

/* Append "names of the unsupported bits" for mask to out, using the image's table. */
static void describe_features(char *out, size_t outlen, const Qcow2Feature *table,
                              size_t nb_entries, uint64_t mask)
{
    size_t len = strlen(out);
    for (size_t i = 0; table && i < nb_entries; i++) {
        if (table[i].type != QCOW2_FEAT_TYPE_INCOMPATIBLE || table[i].bit > 63) {
            continue;
        }
        if (mask & (1ULL << table[i].bit)) {
            char name[QCOW2_FEATURE_NAME_LEN + 1];
            memcpy(name, table[i].name, QCOW2_FEATURE_NAME_LEN);
            name[QCOW2_FEATURE_NAME_LEN] = '\0';
            len += (size_t)snprintf(out + len, len < outlen ? outlen - len : 0, "%s%s",
                                    len ? ", " : "", name);
            mask &= ~(1ULL << table[i].bit);
        }
    }
    if (mask) {
        snprintf(out + len, len < outlen ? outlen - len : 0,
                 "%sUnknown incompatible feature: %" PRIx64, len ? ", " : "", mask);
    }
}

/*
 * Walk the header extensions between start and end. With only_features, just fetch
 * the feature name table (*features, *nb_features) for an error message.
 */
static int read_extensions(BlockDriverState *bs, uint64_t start, uint64_t end,
                           bool only_features, Qcow2Feature **features,
                           size_t *nb_features, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t offset = start;
    Qcow2UnknownExt **tail = &s->unknown_exts;
    (void)tail;
    while (offset < end) {
        Qcow2ExtHeader eh;
        if (end - offset < sizeof(eh)) {
            /* Not even room for an end marker: no (more) extensions. */
            return 0;
        }
        int ret = bdrv_pread(bs->file, (int64_t)offset, sizeof(eh), &eh, 0);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "qcow2_read_extension: ERROR: pread fail from "
                             "offset %" PRIu64, offset);
            return ret;
        }
        uint32_t magic = be32toh(eh.magic);
        uint32_t len = be32toh(eh.len);
        offset += sizeof(eh);
        if (offset > end || len > end - offset) {
            error_setg(errp, "Header extension too large");
            return -EINVAL;
        }
        if (magic == QCOW2_EXT_END) {
            return 0;
        }
        uint8_t *data = malloc(len ? len : 1);
        if (!data) {
            return -ENOMEM;
        }
        ret = len ? bdrv_pread(bs->file, (int64_t)offset, len, data, 0) : 0;
        if (ret < 0) {
            free(data);
            error_setg_errno(errp, -ret, "ERROR: ext: Could not read extension");
            return ret;
        }
        if (only_features) {
            if (magic == QCOW2_EXT_FEATURE_TABLE && features && !*features) {
                *features = (Qcow2Feature *)data;
                *nb_features = len / sizeof(Qcow2Feature);
                data = NULL;
            }
            free(data);
            offset += ROUND_UP((uint64_t)len, QCOW2_EXT_ALIGN);
            continue;
        }
        switch (magic) {
        case QCOW2_EXT_BACKING_FORMAT:
            if (len > QCOW2_MAX_BACKING_FORMAT_LEN) {
                error_setg(errp, "ERROR: ext_backing_format: len=%" PRIu32 " too large (>=%zu)",
                           len, (size_t)QCOW2_MAX_BACKING_FORMAT_LEN + 1);
                free(data);
                return -EINVAL;
            }
            free(s->image_backing_format);
            s->image_backing_format = strndup((char *)data, len);
            break;
        case QCOW2_EXT_FEATURE_TABLE:
            /* Rewritten from our own table on header updates. */
            break;
        case QCOW2_EXT_CRYPTO_HEADER:
            if (s->crypt_method != QCOW2_CRYPT_LUKS) {
                error_setg(errp, "CRYPTO header extension only expected with LUKS "
                           "encryption method");
                free(data);
                return -EINVAL;
            }
            if (len != 16) {
                error_setg(errp, "CRYPTO header extension size %" PRIu32 ", but expected "
                           "size %zu", len, (size_t)16);
                free(data);
                return -EINVAL;
            }
            memcpy(&s->crypto_header_offset, data, 8);
            memcpy(&s->crypto_header_length, data + 8, 8);
            s->crypto_header_offset = be64toh(s->crypto_header_offset);
            s->crypto_header_length = be64toh(s->crypto_header_length);
            break;
        case QCOW2_EXT_BITMAPS:
            if ((ret = qcow2_bitmaps_read_ext(bs, data, len, errp)) < 0) {
                free(data);
                return ret;
            }
            break;
        case QCOW2_EXT_DATA_FILE:
            free(s->image_data_file);
            s->image_data_file = strndup((char *)data, len);
            break;
        default: {
            /* Kept and written back unchanged (newest first, as qemu-img does). */
            Qcow2UnknownExt *u = calloc(1, sizeof(*u));
            if (!u) {
                free(data);
                return -ENOMEM;
            }
            u->magic = magic;
            u->len = len;
            u->data = data;
            data = NULL;
            u->next = s->unknown_exts;
            s->unknown_exts = u;
            break;
        }
        }
        free(data);
        offset += ROUND_UP((uint64_t)len, QCOW2_EXT_ALIGN);
    }
    return 0;
}

/* Append one extension (magic, len, data, zero padding) at *pos in buf; -ENOSPC if full. */
static int header_ext_add(uint8_t *buf, size_t *pos, size_t buflen, uint32_t magic,
                          const void *data, uint32_t len)
{
    size_t total = ROUND_UP(sizeof(Qcow2ExtHeader) + (size_t)len, QCOW2_EXT_ALIGN);
    if (*pos + total > buflen) {
        return -ENOSPC;
    }
    Qcow2ExtHeader eh = { htobe32(magic), htobe32(len) };
    memcpy(buf + *pos, &eh, sizeof(eh));
    if (len) {
        memcpy(buf + *pos + sizeof(eh), data, len);
    }
    memset(buf + *pos + sizeof(eh) + len, 0, total - sizeof(eh) - len);
    *pos += total;
    return 0;
}

int qcow2_update_header(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    size_t buflen = s->cluster_size;
    uint8_t *buf = calloc(1, buflen);
    if (!buf) {
        return -ENOMEM;
    }
    Qcow2Header h;
    memset(&h, 0, sizeof(h));
    h.magic = htobe32(QCOW2_MAGIC);
    h.version = htobe32(s->qcow_version);
    h.cluster_bits = htobe32((uint32_t)s->cluster_bits);
    h.size = htobe64(s->size);
    h.crypt_method = htobe32(s->crypt_method);
    h.l1_size = htobe32(s->l1_size);
    h.l1_table_offset = htobe64(s->l1_table_offset);
    h.refcount_table_offset = htobe64(s->refcount_table_offset);
    h.refcount_table_clusters = htobe32(s->refcount_table_size >> (s->cluster_bits - 3));
    h.nb_snapshots = htobe32((uint32_t)s->nb_snapshots);
    h.snapshots_offset = htobe64(s->snapshots_offset);
    h.incompatible_features = htobe64(s->incompatible_features);
    h.compatible_features = htobe64(s->compatible_features);
    h.autoclear_features = htobe64(s->autoclear_features);
    h.refcount_order = htobe32((uint32_t)s->refcount_order);
    h.header_length = htobe32(QCOW2_HEADER_LENGTH + s->unknown_header_fields_size);
    h.compression_type = s->compression_type;

    size_t pos = s->qcow_version >= 3 ? sizeof(h) : QCOW2_V2_HEADER_LENGTH;
    int ret = -ENOSPC;
    if (pos > buflen) {
        goto out;
    }
    memcpy(buf, &h, pos);
    if (s->qcow_version >= 3 && s->unknown_header_fields_size) {
        if (pos + s->unknown_header_fields_size > buflen) {
            goto out;
        }
        memcpy(buf + pos, s->unknown_header_fields, s->unknown_header_fields_size);
        pos += s->unknown_header_fields_size;
    }
    if (s->image_backing_format &&
        (ret = header_ext_add(buf, &pos, buflen, QCOW2_EXT_BACKING_FORMAT,
                              s->image_backing_format,
                              (uint32_t)strlen(s->image_backing_format))) < 0) {
        goto out;
    }
    if (qcow2_has_data_file(s) && s->image_data_file &&
        (ret = header_ext_add(buf, &pos, buflen, QCOW2_EXT_DATA_FILE, s->image_data_file,
                              (uint32_t)strlen(s->image_data_file))) < 0) {
        goto out;
    }
    if (s->crypto_header_offset) {
        uint64_t ch[2] = { htobe64(s->crypto_header_offset), htobe64(s->crypto_header_length) };
        if ((ret = header_ext_add(buf, &pos, buflen, QCOW2_EXT_CRYPTO_HEADER, ch,
                                  sizeof(ch))) < 0) {
            goto out;
        }
    }
    /* The feature table would crowd out the backing file name in small clusters. */
    if (s->qcow_version >= 3 && s->cluster_size > 4096 &&
        (ret = header_ext_add(buf, &pos, buflen, QCOW2_EXT_FEATURE_TABLE,
                              qcow2_known_features, sizeof(qcow2_known_features))) < 0) {
        goto out;
    }
    if (s->has_bitmaps_ext && s->bitmaps_ext.nb_bitmaps > 0) {
        Qcow2BitmapHeaderExt be = {
            .nb_bitmaps = htobe32(s->bitmaps_ext.nb_bitmaps),
            .reserved32 = 0,
            .bitmap_directory_size = htobe64(s->bitmaps_ext.bitmap_directory_size),
            .bitmap_directory_offset = htobe64(s->bitmaps_ext.bitmap_directory_offset),
        };
        if ((ret = header_ext_add(buf, &pos, buflen, QCOW2_EXT_BITMAPS, &be, sizeof(be))) < 0) {
            goto out;
        }
    }
    for (Qcow2UnknownExt *u = s->unknown_exts; u; u = u->next) {
        if ((ret = header_ext_add(buf, &pos, buflen, u->magic, u->data, u->len)) < 0) {
            goto out;
        }
    }
    if ((ret = header_ext_add(buf, &pos, buflen, QCOW2_EXT_END, NULL, 0)) < 0) {
        goto out;
    }
    if (s->image_backing_file) {
        size_t blen = strlen(s->image_backing_file);
        if (pos + blen > buflen) {
            ret = -ENOSPC;
            goto out;
        }
        memcpy(buf + pos, s->image_backing_file, blen);
        uint64_t off_be = htobe64(pos);
        uint32_t len_be = htobe32((uint32_t)blen);
        memcpy(buf + offsetof(Qcow2Header, backing_file_offset), &off_be, 8);
        memcpy(buf + offsetof(Qcow2Header, backing_file_size), &len_be, 4);
    }
    ret = bdrv_pwrite(bs->file, 0, (int64_t)buflen, buf, 0);
out:
    free(buf);
    return ret;
}

/* Write just the incompatible feature bits (offset 72) and make them durable. */
static int write_incompat_bits(BlockDriverState *bs, uint64_t bits)
{
    uint64_t be = htobe64(bits);
    int ret = bdrv_pwrite(bs->file, offsetof(Qcow2Header, incompatible_features), 8, &be, 0);
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    return ret;
}

int qcow2_mark_dirty(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    if ((s->incompatible_features & QCOW2_INCOMPAT_DIRTY) || s->qcow_version < 3) {
        return 0;
    }
    int ret = bdrv_flush(bs->file);
    if (ret < 0) {
        return ret;
    }
    ret = write_incompat_bits(bs, s->incompatible_features | QCOW2_INCOMPAT_DIRTY);
    if (ret < 0) {
        return ret;
    }
    s->incompatible_features |= QCOW2_INCOMPAT_DIRTY;
    return 0;
}

int qcow2_mark_clean(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    if (!(s->incompatible_features & QCOW2_INCOMPAT_DIRTY)) {
        return 0;
    }
    s->incompatible_features &= ~QCOW2_INCOMPAT_DIRTY;
    int ret = qcow2_flush_caches(bs);
    if (ret < 0) {
        return ret;
    }
    return qcow2_update_header(bs);
}

int qcow2_mark_corrupt(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    s->incompatible_features |= QCOW2_INCOMPAT_CORRUPT;
    return write_incompat_bits(bs, s->incompatible_features);
}

int qcow2_mark_consistent(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    if (!(s->incompatible_features & QCOW2_INCOMPAT_CORRUPT)) {
        return 0;
    }
    int ret = qcow2_flush_caches(bs);
    if (ret < 0) {
        return ret;
    }
    s->incompatible_features &= ~QCOW2_INCOMPAT_CORRUPT;
    return write_incompat_bits(bs, s->incompatible_features);
}

void qcow2_signal_corruption(BlockDriverState *bs, bool fatal, int64_t offset, int64_t size,
                             const char *fmt, ...)
{
    BDRVQcow2State *s = bs->opaque;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (fatal && bs->read_only) {
        fatal = false;
    }
    if (s->signaled_corruption && (!fatal || (s->incompatible_features &
                                              QCOW2_INCOMPAT_CORRUPT))) {
        return;
    }
    /*
     * QEMU prints this straight to stderr without the program name prefix: the image
     * state changes under the user, whatever operation was running.
     */
    if (fatal) {
        fprintf(stderr, "qcow2: Marking image as corrupt: %s; further corruption events "
                "will be suppressed\n", msg);
        qcow2_mark_corrupt(bs);
        /* As QEMU drops the node's driver: pending metadata is never written. */
        s->unusable = true;
    } else {
        fprintf(stderr, "qcow2: Image is corrupt: %s; further non-fatal corruption events "
                "will be suppressed\n", msg);
    }
    s->signaled_corruption = true;
}

int qcow2_write_caches(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    int ret = 0;
    if (s->refcount_block_cache) {
        ret = qcow2_cache_write(bs, s->refcount_block_cache);
    }
    if (ret == 0 && s->l2_table_cache) {
        ret = qcow2_cache_write(bs, s->l2_table_cache);
    }
    if (ret == 0 && s->refcount_block_cache) {
        /* L2 writes may have pulled refcount updates along as dependencies. */
        ret = qcow2_cache_write(bs, s->refcount_block_cache);
    }
    return ret;
}

int qcow2_flush_caches(BlockDriverState *bs)
{
    int ret = qcow2_write_caches(bs);
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    return ret;
}

/* ---- Open / close ---- */

/* Read a size option (bytes) from the open options; absent leaves *out and *set alone. */
static int get_size_opt(json_t *options, const char *key, uint64_t *out, bool *set,
                        Error **errp)
{
    if (!options || !json_object_get(options, key)) {
        return 0;
    }
    const char *str = qdict_get_str(options, key);
    if (str) {
        if (qkit_strtosz(str, 0, out) < 0) {
            error_setg(errp, "Parameter '%s' expects a non-negative number below 2^64", key);
            return -EINVAL;
        }
    } else {
        int64_t v;
        int ret = qdict_get_int_opt(options, key, 0, &v, errp);
        if (ret < 0) {
            return ret;
        }
        if (v < 0) {
            error_setg(errp, "Parameter '%s' expects a non-negative number below 2^64", key);
            return -EINVAL;
        }
        *out = (uint64_t)v;
    }
    *set = true;
    return 0;
}

/* Cache sizes and other runtime options, with QEMU's defaults and consistency rules. */
static int qcow2_read_options(BlockDriverState *bs, json_t *options, int flags, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t combined = 0, l2 = 0, rc = 0;
    bool combined_set = false, l2_set = false, rc_set = false;
    int ret;
    if ((ret = get_size_opt(options, "cache-size", &combined, &combined_set, errp)) < 0 ||
        (ret = get_size_opt(options, "l2-cache-size", &l2, &l2_set, errp)) < 0 ||
        (ret = get_size_opt(options, "refcount-cache-size", &rc, &rc_set, errp)) < 0) {
        return ret;
    }
    uint64_t max_l2_entries = DIV_ROUND_UP(s->size, s->cluster_size);
    uint64_t max_l2_cache = ROUND_UP(max_l2_entries * (uint64_t)s->l2_entry_size,
                                     s->cluster_size);
    uint64_t min_rc_cache = QCOW2_MIN_REFCOUNT_CACHE_TABLES * s->cluster_size;
    if (combined_set) {
        if (l2_set && rc_set) {
            error_setg(errp, "cache-size, l2-cache-size and refcount-cache-size may not be "
                       "set at the same time");
            return -EINVAL;
        } else if (l2_set && l2 > combined) {
            error_setg(errp, "l2-cache-size may not exceed cache-size");
            return -EINVAL;
        } else if (rc > combined) {
            error_setg(errp, "refcount-cache-size may not exceed cache-size");
            return -EINVAL;
        }
        if (l2_set) {
            rc = combined - l2;
        } else if (rc_set) {
            l2 = combined - rc;
        } else if (combined >= max_l2_cache + min_rc_cache) {
            l2 = max_l2_cache;
            rc = combined - l2;
        } else {
            rc = QKIT_MIN(combined, min_rc_cache);
            l2 = combined - rc;
        }
        l2_set = rc_set = true;
    }
    if (!l2_set) {
        l2 = QKIT_MIN(max_l2_cache, (uint64_t)QCOW2_DEFAULT_L2_CACHE_MAX);
    }
    if (!rc_set) {
        rc = min_rc_cache;
    }
    s->l2_cache_size = l2;
    s->refcount_cache_size = rc;

    int64_t interval;
    ret = qdict_get_int_opt(options, "cache-clean-interval",
                            QCOW2_DEFAULT_CACHE_CLEAN_INTERVAL, &interval, errp);
    if (ret < 0) {
        return ret;
    }
    if (interval < 0 || interval > UINT32_MAX) {
        error_setg(errp, "Cache clean interval too big");
        return -EINVAL;
    }
    s->cache_clean_interval = (uint64_t)interval;

    bool lazy;
    ret = qdict_get_bool_opt(options, "lazy-refcounts",
                             (s->compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS) != 0,
                             &lazy, errp);
    if (ret < 0) {
        return ret;
    }
    if (lazy && s->qcow_version < 3) {
        error_setg(errp, "Lazy refcounts require a qcow2 image with at least qemu 1.1 "
                   "compatibility level");
        return -EINVAL;
    }
    s->use_lazy_refcounts = lazy;

    bool b;
    if ((ret = qdict_get_bool_opt(options, "pass-discard-request",
                                  (flags & BDRV_O_UNMAP) != 0, &b, errp)) < 0) {
        return ret;
    }
    s->discard_passthrough[QCOW2_DISCARD_REQUEST] = b;
    if ((ret = qdict_get_bool_opt(options, "pass-discard-snapshot", true, &b, errp)) < 0) {
        return ret;
    }
    s->discard_passthrough[QCOW2_DISCARD_SNAPSHOT] = b;
    if ((ret = qdict_get_bool_opt(options, "pass-discard-other", false, &b, errp)) < 0) {
        return ret;
    }
    s->discard_passthrough[QCOW2_DISCARD_OTHER] = b;
    s->discard_passthrough[QCOW2_DISCARD_NEVER] = false;
    s->discard_passthrough[QCOW2_DISCARD_ALWAYS] = true;
    return 0;
}

/* Allocate the two metadata caches from the sizes chosen by qcow2_read_options. */
static int qcow2_create_caches(BlockDriverState *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t l2_tables = QKIT_MAX(s->l2_cache_size / s->cluster_size,
                                  (uint64_t)QCOW2_MIN_L2_CACHE_TABLES);
    uint64_t rc_tables = QKIT_MAX(s->refcount_cache_size / s->cluster_size,
                                  (uint64_t)QCOW2_MIN_REFCOUNT_CACHE_TABLES);
    if (l2_tables > INT32_MAX || rc_tables > INT32_MAX) {
        error_setg(errp, "L2 cache size too big");
        return -EINVAL;
    }
    s->l2_table_cache = qcow2_cache_create(bs, (int)l2_tables, (int)s->cluster_size);
    s->refcount_block_cache = qcow2_cache_create(bs, (int)rc_tables, (int)s->cluster_size);
    if (!s->l2_table_cache || !s->refcount_block_cache) {
        error_setg(errp, "Could not allocate metadata caches");
        return -ENOMEM;
    }
    return 0;
}

/* Release everything open allocated (also on a failed open). */
static void qcow2_free_state(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    qcow2_free_snapshots(bs);
    qcow2_bitmaps_free(bs);
    qcow2_cache_destroy(s->l2_table_cache);
    qcow2_cache_destroy(s->refcount_block_cache);
    s->l2_table_cache = s->refcount_block_cache = NULL;
    qcow2_refcount_close(bs);
    qcow2_drop_discards(bs);
    free(s->l1_table);
    s->l1_table = NULL;
    free(s->unknown_header_fields);
    s->unknown_header_fields = NULL;
    free(s->image_backing_file);
    free(s->image_backing_format);
    free(s->image_data_file);
    s->image_backing_file = s->image_backing_format = s->image_data_file = NULL;
    free_unknown_exts(s);
}

/* Check the fixed header and fill s; errors read like QEMU's. */
static int qcow2_parse_header(BlockDriverState *bs, const Qcow2Header *hdr, int flags,
                              Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    if (be32toh(hdr->magic) != QCOW2_MAGIC) {
        error_setg(errp, "Image is not in qcow2 format");
        return -EINVAL;
    }
    uint32_t version = be32toh(hdr->version);
    if (version < QCOW2_VERSION_MIN || version > QCOW2_VERSION_MAX) {
        error_setg(errp, "Unsupported qcow2 version %" PRIu32, version);
        return -ENOTSUP;
    }
    s->qcow_version = version;
    uint32_t cluster_bits = be32toh(hdr->cluster_bits);
    if (cluster_bits < QCOW2_MIN_CLUSTER_BITS || cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
        error_setg(errp, "Unsupported cluster size: 2^%" PRIu32, cluster_bits);
        return -EINVAL;
    }
    uint64_t cluster_size = 1ULL << cluster_bits;
    if (version == 2) {
        s->incompatible_features = 0;
        s->compatible_features = 0;
        s->autoclear_features = 0;
        s->refcount_order = QCOW2_DEFAULT_REFCOUNT_ORDER;
        s->header_length = QCOW2_V2_HEADER_LENGTH;
    } else {
        s->incompatible_features = be64toh(hdr->incompatible_features);
        s->compatible_features = be64toh(hdr->compatible_features);
        s->autoclear_features = be64toh(hdr->autoclear_features);
        s->refcount_order = (int)be32toh(hdr->refcount_order);
        s->header_length = be32toh(hdr->header_length);
        if (s->header_length < QCOW2_V3_MIN_HEADER_LENGTH) {
            error_setg(errp, "qcow2 header too short");
            return -EINVAL;
        }
    }
    if (s->header_length > cluster_size) {
        error_setg(errp, "qcow2 header exceeds cluster size");
        return -EINVAL;
    }
    if (be64toh(hdr->backing_file_offset) > cluster_size) {
        error_setg(errp, "Invalid backing file offset");
        return -EINVAL;
    }
    return 0;
}

static int qcow2_open(BlockDriverState *bs, json_t *options, int flags, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2Header hdr;
    Qcow2Feature *feature_table = NULL;
    size_t nb_features = 0;
    int ret;

    memset(&hdr, 0, sizeof(hdr));
    int64_t flen = bdrv_getlength(bs->file);
    if (flen < 0) {
        error_setg_errno(errp, (int)-flen, "Could not read qcow2 header");
        return (int)flen;
    }
    ret = bdrv_pread(bs->file, 0, QKIT_MIN((int64_t)sizeof(hdr), QKIT_MAX(flen, 0)), &hdr, 0);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not read qcow2 header");
        return ret;
    }
    ret = qcow2_parse_header(bs, &hdr, flags, errp);
    if (ret < 0) {
        return ret;
    }
    uint64_t cluster_size = 1ULL << be32toh(hdr.cluster_bits);
    s->flags = flags;
    s->size = be64toh(hdr.size);
    s->crypt_method = be32toh(hdr.crypt_method);

    if (s->header_length > sizeof(hdr)) {
        s->unknown_header_fields_size = s->header_length - (uint32_t)sizeof(hdr);
        s->unknown_header_fields = malloc(s->unknown_header_fields_size);
        if (!s->unknown_header_fields) {
            return -ENOMEM;
        }
        ret = bdrv_pread(bs->file, sizeof(hdr), s->unknown_header_fields_size,
                         s->unknown_header_fields, 0);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not read unknown qcow2 header fields");
            goto fail;
        }
    }
    uint64_t backing_off = be64toh(hdr.backing_file_offset);
    uint64_t ext_end = backing_off ? backing_off : cluster_size;
    /* Set enough geometry for the extension walk (offset checks use the cluster size). */
    qcow2_set_geometry(s, (int)be32toh(hdr.cluster_bits),
                       (s->incompatible_features & QCOW2_INCOMPAT_EXTL2) != 0);

    if (s->incompatible_features & ~QCOW2_INCOMPAT_MASK) {
        char msg[1024] = "";
        read_extensions(bs, s->header_length, ext_end, true, &feature_table, &nb_features,
                        NULL);
        describe_features(msg, sizeof(msg), feature_table, nb_features,
                          s->incompatible_features & ~QCOW2_INCOMPAT_MASK);
        free(feature_table);
        error_setg(errp, "Unsupported qcow2 feature(s): %s", msg);
        ret = -ENOTSUP;
        goto fail;
    }
    if ((s->incompatible_features & QCOW2_INCOMPAT_CORRUPT) && (flags & BDRV_O_RDWR) &&
        !(flags & BDRV_O_CHECK)) {
        error_setg(errp, "qcow2: Image is corrupt; cannot be opened read/write");
        ret = -EACCES;
        goto fail;
    }
    if ((unsigned)s->refcount_order > QCOW2_MAX_REFCOUNT_ORDER) {
        error_setg(errp, "Reference count entry width too large; may not exceed 64 bits");
        ret = -EINVAL;
        goto fail;
    }
    qcow2_set_refcount_order(s, s->refcount_order);

    s->compression_type = s->header_length > offsetof(Qcow2Header, compression_type)
                              ? hdr.compression_type : QCOW2_COMPRESSION_ZLIB;
    if (s->compression_type > QCOW2_COMPRESSION_ZSTD) {
        error_setg(errp, "qcow2: unknown compression type: %u", s->compression_type);
        ret = -ENOTSUP;
        goto fail;
    }
    if (s->compression_type == QCOW2_COMPRESSION_ZLIB &&
        (s->incompatible_features & QCOW2_INCOMPAT_COMPRESSION)) {
        error_setg(errp, "qcow2: Compression type incompatible feature bit must not be set");
        ret = -EINVAL;
        goto fail;
    }
    if (s->compression_type != QCOW2_COMPRESSION_ZLIB &&
        !(s->incompatible_features & QCOW2_INCOMPAT_COMPRESSION)) {
        error_setg(errp, "qcow2: Compression type incompatible feature bit must be set");
        ret = -EINVAL;
        goto fail;
    }
    if (s->crypt_method > QCOW2_CRYPT_LUKS) {
        error_setg(errp, "Unsupported encryption method %" PRIu32, s->crypt_method);
        ret = -EINVAL;
        goto fail;
    }

    uint64_t l1_vm_state_index = qcow2_l1_size_for(s->cluster_bits, s->l2_bits, s->size);
    if (l1_vm_state_index > INT32_MAX) {
        error_setg(errp, "Image is too big");
        ret = -EFBIG;
        goto fail;
    }
    s->l1_vm_state_index = (uint32_t)l1_vm_state_index;

    uint32_t rt_clusters = be32toh(hdr.refcount_table_clusters);
    if (rt_clusters == 0 && !(flags & BDRV_O_CHECK)) {
        error_setg(errp, "Image does not contain a reference count table");
        ret = -EINVAL;
        goto fail;
    }
    s->refcount_table_offset = be64toh(hdr.refcount_table_offset);
    ret = qcow2_validate_table(bs, s->refcount_table_offset, rt_clusters, cluster_size,
                               QCOW2_MAX_REFTABLE_BYTES, "Reference count table", errp);
    if (ret < 0) {
        goto fail;
    }
    s->refcount_table_size = rt_clusters << (s->cluster_bits - 3);

    s->snapshots_offset = be64toh(hdr.snapshots_offset);
    s->nb_snapshots = (int)be32toh(hdr.nb_snapshots);
    /* check validates (and may repair) the snapshot table itself. */
    if (!(flags & BDRV_O_CHECK)) {
        ret = qcow2_validate_table(bs, s->snapshots_offset, be32toh(hdr.nb_snapshots),
                                   sizeof(Qcow2SnapshotHeader),
                                   sizeof(Qcow2SnapshotHeader) * QCOW2_MAX_SNAPSHOTS,
                                   "Snapshot table", errp);
        if (ret < 0) {
            goto fail;
        }
    }

    uint32_t l1_size = be32toh(hdr.l1_size);
    s->l1_table_offset = be64toh(hdr.l1_table_offset);
    ret = qcow2_validate_table(bs, s->l1_table_offset, l1_size, sizeof(uint64_t),
                               QCOW2_MAX_L1_BYTES, "Active L1 table", errp);
    if (ret < 0) {
        goto fail;
    }
    s->l1_size = l1_size;
    if (s->l1_size < s->l1_vm_state_index) {
        error_setg(errp, "L1 table is too small");
        ret = -EINVAL;
        goto fail;
    }
    s->l1_table = calloc(1, ROUND_UP((uint64_t)s->l1_size * 8, cluster_size) + cluster_size);
    if (!s->l1_table) {
        error_setg(errp, "Could not allocate L1 table");
        ret = -ENOMEM;
        goto fail;
    }
    ret = qcow2_read_l1_table(bs, s->l1_table_offset, s->l1_size, s->l1_table);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not read L1 table");
        goto fail;
    }

    ret = qcow2_read_options(bs, options, flags, errp);
    if (ret < 0) {
        goto fail;
    }
    ret = qcow2_create_caches(bs, errp);
    if (ret < 0) {
        goto fail;
    }
    ret = qcow2_refcount_init(bs, errp);
    if (ret < 0) {
        error_prepend(errp, "Could not initialize refcount handling: ");
        goto fail;
    }

    ret = read_extensions(bs, s->header_length, ext_end, false, NULL, NULL, errp);
    if (ret < 0) {
        goto fail;
    }

    if (qcow2_has_data_file(s) && !(flags & BDRV_O_NO_IO)) {
        error_setg(errp, "Images with an external data file ('%s') are not supported",
                   s->image_data_file ? s->image_data_file : "");
        ret = -ENOTSUP;
        goto fail;
    }
    if (s->crypt_method != QCOW2_CRYPT_NONE) {
        bs->encrypted = true;
        if (!(flags & BDRV_O_NO_IO)) {
            error_setg(errp, "Parameter 'encrypt.key-secret' is required for cipher");
            ret = -EINVAL;
            goto fail;
        }
    }

    if (backing_off) {
        uint32_t len = be32toh(hdr.backing_file_size);
        if (len > QKIT_MIN((uint64_t)QCOW2_MAX_BACKING_FILE_NAME, cluster_size - backing_off) ||
            len >= sizeof(bs->backing_file)) {
            error_setg(errp, "Backing file name too long");
            ret = -EINVAL;
            goto fail;
        }
        s->image_backing_file = calloc(1, (size_t)len + 1);
        if (!s->image_backing_file) {
            ret = -ENOMEM;
            goto fail;
        }
        ret = bdrv_pread(bs->file, (int64_t)backing_off, len, s->image_backing_file, 0);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not read backing file name");
            goto fail;
        }
        snprintf(bs->backing_file, sizeof(bs->backing_file), "%s", s->image_backing_file);
        if (s->image_backing_format) {
            snprintf(bs->backing_format, sizeof(bs->backing_format), "%s",
                     s->image_backing_format);
        }
    }

    /* check reads the snapshot table itself and may repair it. */
    if (!(flags & BDRV_O_CHECK)) {
        ret = qcow2_read_snapshots(bs, errp);
        if (ret < 0) {
            goto fail;
        }
    }

    /* Writers must drop autoclear bits they do not maintain. */
    bool update_header = false, header_updated = false;
    if ((flags & BDRV_O_RDWR) && (s->autoclear_features & ~QCOW2_AUTOCLEAR_MASK)) {
        s->autoclear_features &= QCOW2_AUTOCLEAR_MASK;
        update_header = true;
    }
    ret = qcow2_bitmaps_load(bs, &header_updated, errp);
    if (ret < 0) {
        goto fail;
    }
    if (update_header && !header_updated) {
        ret = qcow2_update_header(bs);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not update qcow2 header");
            goto fail;
        }
    }

    if ((s->incompatible_features & QCOW2_INCOMPAT_DIRTY) && (flags & BDRV_O_RDWR) &&
        !(flags & BDRV_O_CHECK)) {
        BdrvCheckResult res;
        memset(&res, 0, sizeof(res));
        ret = qcow2_check(bs, &res, BDRV_FIX_ERRORS | BDRV_FIX_LEAKS);
        if (ret < 0 || res.check_errors) {
            if (ret >= 0) {
                ret = -EIO;
            }
            error_setg_errno(errp, -ret, "Could not repair dirty image");
            goto fail;
        }
    }
    s->last_cache_clean_ns = qkit_clock_ns();
    return 0;
fail:
    qcow2_free_state(bs);
    return ret;
}

/* Called when the last reference goes: write back caches, mark clean, free. */
static void qcow2_close(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    if (s->unusable) {
        qcow2_bitmaps_free(bs);
        qcow2_free_state(bs);
        return;
    }
    qcow2_bitmaps_close(bs);
    if (!bs->read_only) {
        qcow2_process_discards(bs);
        if (qcow2_write_caches(bs) == 0) {
            qcow2_mark_clean(bs);
        }
    }
    qcow2_free_state(bs);
}

/* Called on switching read-only <-> read-write (commit, rebase). */
static int qcow2_reopen(BlockDriverState *bs, int flags, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    if (flags & BDRV_O_RDWR) {
        if ((s->incompatible_features & QCOW2_INCOMPAT_CORRUPT) && !(flags & BDRV_O_CHECK)) {
            error_setg(errp, "qcow2: Image is corrupt; cannot be opened read/write");
            return -EACCES;
        }
        if (bs->read_only && qcow2_bitmaps_reopen(bs, true, errp) < 0) {
            return -EINVAL;
        }
    } else if (!bs->read_only) {
        if (qcow2_bitmaps_reopen(bs, false, errp) < 0) {
            return -EINVAL;
        }
        qcow2_process_discards(bs);
        int ret = qcow2_flush_caches(bs);
        if (ret == 0) {
            ret = qcow2_mark_clean(bs);
        }
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not flush qcow2 image");
            return ret;
        }
    }
    s->flags = flags;
    return 0;
}

/* Called by bdrv_flush before the file is flushed. */
static int qcow2_flush(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    qcow2_process_discards(bs);
    int ret = qcow2_write_caches(bs);
    int64_t clean_ns = (int64_t)s->cache_clean_interval * NSEC_PER_SEC;
    if (ret == 0 && s->cache_clean_interval &&
        qkit_clock_ns() - s->last_cache_clean_ns > clean_ns) {
        qcow2_cache_clean_unused(s->l2_table_cache);
        qcow2_cache_clean_unused(s->refcount_block_cache);
        s->last_cache_clean_ns = qkit_clock_ns();
    }
    return ret;
}

static int64_t qcow2_getlength(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    /* Like QEMU, the disk is a whole number of 512-byte sectors. */
    return (int64_t)ROUND_DOWN(s->size, 512);
}

/* True when a new image reads as zeroes without writing them (not for preallocated). */
static bool qcow2_has_zero_init(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    if (qcow2_has_data_file(s)) {
        return false;
    }
    return !bs->encrypted;
}

static int qcow2_get_info(BlockDriverState *bs, BlockDriverInfo *bdi)
{
    BDRVQcow2State *s = bs->opaque;
    bdi->cluster_size = (int)s->cluster_size;
    bdi->vm_state_offset = (int64_t)((uint64_t)s->l1_vm_state_index <<
                                     (s->cluster_bits + s->l2_bits));
    bdi->is_dirty = (s->incompatible_features & QCOW2_INCOMPAT_DIRTY) != 0;
    return 0;
}

/* The "format-specific" object of info, keys in the order qemu-img prints them. */
static json_t *qcow2_get_specific_info(BlockDriverState *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    json_t *data = json_object();
    const char *ctype = s->compression_type == QCOW2_COMPRESSION_ZSTD ? "zstd" : "zlib";
    if (s->qcow_version == 2) {
        json_object_set_new(data, "compat", json_string("0.10"));
        json_object_set_new(data, "compression-type", json_string(ctype));
        json_object_set_new(data, "refcount-bits", json_integer(s->refcount_bits));
    } else {
        json_object_set_new(data, "compat", json_string("1.1"));
        json_object_set_new(data, "compression-type", json_string(ctype));
        json_object_set_new(data, "lazy-refcounts",
                            json_boolean(s->compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS));
        json_t *bitmaps = qcow2_get_bitmap_info(bs);
        if (bitmaps) {
            json_object_set_new(data, "bitmaps", bitmaps);
        }
        json_object_set_new(data, "refcount-bits", json_integer(s->refcount_bits));
        if (qcow2_has_data_file(s)) {
            if (s->image_data_file) {
                json_object_set_new(data, "data-file", json_string(s->image_data_file));
            }
            json_object_set_new(data, "data-file-raw",
                                json_boolean(s->autoclear_features &
                                             QCOW2_AUTOCLEAR_DATA_FILE_RAW));
        }
        if (s->crypt_method != QCOW2_CRYPT_NONE) {
            json_t *enc = json_object();
            json_object_set_new(enc, "format", json_string(s->crypt_method == QCOW2_CRYPT_AES
                                                           ? "aes" : "luks"));
            json_object_set_new(data, "encrypt", enc);
        }
        json_object_set_new(data, "corrupt",
                            json_boolean(s->incompatible_features & QCOW2_INCOMPAT_CORRUPT));
        json_object_set_new(data, "extended-l2", json_boolean(s->extended_l2));
    }
    json_t *info = json_object();
    json_object_set_new(info, "type", json_string("qcow2"));
    json_object_set_new(info, "data", data);
    return info;
}

/* Called on resize: grow (optionally preallocating) or shrink, like qemu-img resize. */
static int qcow2_truncate(BlockDriverState *bs, uint64_t offset, bool exact,
                          PreallocMode prealloc, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    if (offset & 511) {
        error_setg(errp, "The new size must be a multiple of 512");
        return -EINVAL;
    }
    /* Snapshots record their disk size only from v3 on: reverting needs it. */
    if (s->nb_snapshots && s->qcow_version < 3) {
        error_setg(errp, "Can't resize a v2 image which has snapshots");
        return -ENOTSUP;
    }
    uint64_t old_length = ROUND_DOWN(s->size, 512);
    uint64_t new_l1_size = qcow2_l1_size_for(s->cluster_bits, s->l2_bits, offset);
    int ret;
    if (offset < old_length) {
        if (prealloc != PREALLOC_MODE_OFF) {
            error_setg(errp, "Preallocation can't be used for shrinking an image");
            return -EINVAL;
        }
        uint64_t from = ROUND_UP(offset, s->cluster_size);
        if (old_length > from) {
            ret = qcow2_cluster_discard(bs, from, old_length - from, QCOW2_DISCARD_ALWAYS,
                                        true);
            if (ret < 0) {
                error_setg_errno(errp, -ret, "Failed to discard cropped clusters");
                return ret;
            }
        }
        ret = qcow2_shrink_l1_table(bs, new_l1_size);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Failed to reduce the number of L2 tables");
            return ret;
        }
        ret = qcow2_shrink_reftable(bs);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Failed to discard unused refblocks");
            return ret;
        }
        /* What was cropped goes from the file before its tail is cut. */
        qcow2_process_discards(bs);
        int64_t old_file_size = bdrv_getlength(bs->file);
        if (old_file_size < 0) {
            error_setg_errno(errp, (int)-old_file_size, "Failed to inquire current file length");
            return (int)old_file_size;
        }
        /* The file may end inside a cluster (bitmap tables are written unpadded). */
        int64_t last = qcow2_get_last_cluster(
            bs, (int64_t)qcow2_size_to_clusters(s, (uint64_t)old_file_size));
        if (last < 0) {
            error_setg_errno(errp, (int)-last, "Failed to find the last cluster");
            return (int)last;
        }
        int64_t want = (last + 1) << s->cluster_bits;
        if (want < old_file_size) {
            Error *local = NULL;
            /* Best effort: the image is consistent either way. */
            if (bdrv_truncate(bs->file, want, false, PREALLOC_MODE_OFF, &local) < 0) {
                error_free(local);
            }
        }
    } else {
        ret = qcow2_grow_l1_table(bs, new_l1_size, true);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Failed to grow the L1 table");
            return ret;
        }
    }

    switch (prealloc) {
    case PREALLOC_MODE_OFF:
        break;
    case PREALLOC_MODE_METADATA:
        if (offset > old_length) {
            ret = qcow2_preallocate(bs, old_length, offset - old_length);
            if (ret < 0) {
                error_setg_errno(errp, -ret, "Could not preallocate metadata");
                return ret;
            }
        }
        break;
    case PREALLOC_MODE_FALLOC:
    case PREALLOC_MODE_FULL:
        ret = qcow2_preallocate_data(bs, old_length, offset, prealloc, errp);
        if (ret < 0) {
            return ret;
        }
        break;
    }
    if (prealloc != PREALLOC_MODE_OFF) {
        ret = qcow2_write_caches(bs);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Failed to flush the preallocated area to disk");
            return ret;
        }
    }
    uint64_t size_be = htobe64(offset);
    ret = bdrv_pwrite(bs->file, offsetof(Qcow2Header, size), 8, &size_be, 0);
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to update the image size");
        return ret;
    }
    s->size = offset;
    s->l1_vm_state_index = (uint32_t)new_l1_size;
    return qcow2_bitmaps_truncate(bs, offset);
}

/* Called by rebase and by create: store a new backing file name and format. */
static int qcow2_change_backing_file(BlockDriverState *bs, const char *backing_file,
                                     const char *backing_fmt)
{
    BDRVQcow2State *s = bs->opaque;
    if (backing_file && strlen(backing_file) > QCOW2_MAX_BACKING_FILE_NAME) {
        return -EINVAL;
    }
    if (backing_fmt && !backing_file) {
        return -EINVAL;
    }
    if (backing_fmt && strlen(backing_fmt) > QCOW2_MAX_BACKING_FORMAT_LEN) {
        return -EINVAL;
    }
    char *old_file = s->image_backing_file, *old_fmt = s->image_backing_format;
    s->image_backing_file = backing_file && *backing_file ? strdup(backing_file) : NULL;
    s->image_backing_format = backing_fmt && *backing_fmt && s->image_backing_file
                                  ? strdup(backing_fmt) : NULL;
    int ret = qcow2_update_header(bs);
    if (ret < 0) {
        free(s->image_backing_file);
        free(s->image_backing_format);
        s->image_backing_file = old_file;
        s->image_backing_format = old_fmt;
        return ret;
    }
    free(old_file);
    free(old_fmt);
    snprintf(bs->backing_file, sizeof(bs->backing_file), "%s",
             s->image_backing_file ? s->image_backing_file : "");
    snprintf(bs->backing_format, sizeof(bs->backing_format), "%s",
             s->image_backing_format ? s->image_backing_format : "");
    return 0;
}

/*
 * ---- Operations that free clusters ----
 * Each ends by discarding what it freed in bs->file, once the tables that stopped
 * pointing there are on disk (qcow2_process_discards).
 */

/* Driver pwrite: guest write (COW may free an old compressed or shared cluster). */
static int qcow2_pwrite_op(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                           const void *buf, int flags)
{
    int ret = qcow2_pwrite(bs, offset, bytes, buf, flags);
    qcow2_process_discards(bs);
    return ret;
}

/* Driver pwrite_compressed_cluster: convert -c, replacing whatever was there. */
static int qcow2_pwrite_compressed_op(BlockDriverState *bs, uint64_t offset,
                                      const void *data, size_t len)
{
    int ret = qcow2_pwrite_compressed_cluster(bs, offset, data, len);
    qcow2_process_discards(bs);
    return ret;
}

/* Driver pwrite_zeroes: zero clusters, unmapping them with BDRV_REQ_MAY_UNMAP. */
static int qcow2_pwrite_zeroes_op(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                                  int flags)
{
    int ret = qcow2_pwrite_zeroes(bs, offset, bytes, flags);
    qcow2_process_discards(bs);
    return ret;
}

/* Driver pdiscard: guest discard. */
static int qcow2_pdiscard_op(BlockDriverState *bs, uint64_t offset, uint64_t bytes)
{
    int ret = qcow2_pdiscard(bs, offset, bytes);
    qcow2_process_discards(bs);
    return ret;
}

/* Driver truncate: shrinking drops clusters; growing may move the L1 table. */
static int qcow2_truncate_op(BlockDriverState *bs, uint64_t offset, bool exact,
                             PreallocMode prealloc, Error **errp)
{
    int ret = qcow2_truncate(bs, offset, exact, prealloc, errp);
    qcow2_process_discards(bs);
    return ret;
}

/* Driver make_empty: commit drops the top image's clusters. */
static int qcow2_make_empty_op(BlockDriverState *bs)
{
    int ret = qcow2_make_empty(bs);
    qcow2_process_discards(bs);
    return ret;
}

/* Driver check: repairs free leaked clusters and moved tables. */
static int qcow2_check_op(BlockDriverState *bs, BdrvCheckResult *res, int fix)
{
    int ret = qcow2_check(bs, res, fix);
    qcow2_process_discards(bs);
    return ret;
}

/* Driver amend: refcount width and version changes rewrite and free tables. */
static int qcow2_amend_op(BlockDriverState *bs, QOpts *opts, bool force, Error **errp)
{
    int ret = qcow2_amend(bs, opts, force, errp);
    qcow2_process_discards(bs);
    return ret;
}

/* Driver snapshot_create: the old snapshot table is freed. */
static int qcow2_snapshot_create_op(BlockDriverState *bs, QkitSnapshotInfo *info,
                                    Error **errp)
{
    int ret = qcow2_snapshot_create(bs, info, errp);
    qcow2_process_discards(bs);
    return ret;
}

/* Driver snapshot_goto: the active image's own clusters are freed. */
static int qcow2_snapshot_goto_op(BlockDriverState *bs, const char *snapshot_id,
                                  Error **errp)
{
    int ret = qcow2_snapshot_goto(bs, snapshot_id, errp);
    qcow2_process_discards(bs);
    return ret;
}

/* Driver snapshot_delete: the snapshot's clusters are freed. */
static int qcow2_snapshot_delete_op(BlockDriverState *bs, const char *snapshot_id,
                                    const char *name, Error **errp)
{
    int ret = qcow2_snapshot_delete(bs, snapshot_id, name, errp);
    qcow2_process_discards(bs);
    return ret;
}

const BlockDriver bdrv_qcow2 = {
    .format_name = "qcow2",
    .instance_size = sizeof(BDRVQcow2State),
    .thread_safe = false,
    .supports_backing = true,
    .probe = qcow2_probe,
    .open = qcow2_open,
    .close = qcow2_close,
    .reopen = qcow2_reopen,
    .pread = qcow2_pread,
    .pwrite = qcow2_pwrite_op,
    .map_io = qcow2_map_io,
    .compress_cluster = qcow2_compress_cluster,
    .pwrite_compressed_cluster = qcow2_pwrite_compressed_op,
    .pwrite_zeroes = qcow2_pwrite_zeroes_op,
    .pdiscard = qcow2_pdiscard_op,
    .flush = qcow2_flush,
    .block_status = qcow2_block_status,
    .truncate = qcow2_truncate_op,
    .getlength = qcow2_getlength,
    .has_zero_init = qcow2_has_zero_init,
    .create = qcow2_create,
    .create_opts = qcow2_create_opts,
    .get_info = qcow2_get_info,
    .get_specific_info = qcow2_get_specific_info,
    .make_empty = qcow2_make_empty_op,
    .change_backing_file = qcow2_change_backing_file,
    .measure = qcow2_measure,
    .check = qcow2_check_op,
    .amend = qcow2_amend_op,
    .snapshot_create = qcow2_snapshot_create_op,
    .snapshot_goto = qcow2_snapshot_goto_op,
    .snapshot_delete = qcow2_snapshot_delete_op,
    .snapshot_list = qcow2_snapshot_list,
    .snapshot_load_tmp = qcow2_snapshot_load_tmp,
    .save_vmstate = qcow2_save_vmstate,
    .load_vmstate = qcow2_load_vmstate,
    .bitmap_supported = qcow2_bitmap_supported,
    .bitmap_list = qcow2_bitmap_list,
    .bitmap_can_store = qcow2_bitmap_can_store,
    .bitmap_add = qcow2_bitmap_add,
    .bitmap_remove = qcow2_bitmap_remove,
    .bitmap_clear = qcow2_bitmap_clear,
    .bitmap_set_enabled = qcow2_bitmap_set_enabled,
    .bitmap_merge = qcow2_bitmap_merge,
    .bitmap_status = qcow2_bitmap_status,
};
