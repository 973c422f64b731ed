/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2 image creation and size measurement. The layout of a new image is the one
 * qemu-img writes (header, refcount table, one refcount block, then the L1 table and
 * whatever preallocation adds), so both tools produce byte-identical files.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2.h"
#include "qkit/cutils.h"

#define QCOW2_DEFAULT_CLUSTER_SIZE 65536
#define QCOW2_DEFAULT_REFCOUNT_BITS 16
#define QCOW2_MIN_CLUSTER_SIZE (1ULL << QCOW2_MIN_CLUSTER_BITS)
#define QCOW2_MAX_CLUSTER_SIZE (1ULL << QCOW2_MAX_CLUSTER_BITS)
#define QCOW2_MIN_EXTL2_CLUSTER_SIZE (1ULL << QCOW2_MIN_EXTL2_CLUSTER_BITS)
#define QCOW2_INITIAL_CLUSTERS 3   /* header, refcount table, refcount block */

/* The -o options, in QEMU's order, with its help texts and defaults. */
const QOptDesc qcow2_create_opts[] = {
    { "size", QOPT_SIZE, "Virtual disk size", NULL },
    { "compat", QOPT_STRING, "Compatibility level (v2 [0.10] or v3 [1.1])", NULL },
    { "backing_file", QOPT_STRING, "File name of a base image", NULL },
    { "backing_fmt", QOPT_STRING, "Image format of the base image", NULL },
    { "data_file", QOPT_STRING, "File name of an external data file", NULL },
    { "data_file_raw", QOPT_BOOL, "The external data file must stay valid as a raw image",
      NULL },
    { "encryption", QOPT_BOOL,
      "Encrypt the image with format 'aes'. (Deprecated in favor of encrypt.format=aes)",
      NULL },
    { "encrypt.format", QOPT_STRING, "Encrypt the image, format choices: 'aes', 'luks'",
      NULL },
    { "encrypt.key-secret", QOPT_STRING,
      "ID of secret providing qcow AES key or LUKS passphrase", NULL },
    { "encrypt.cipher-alg", QOPT_STRING, "Name of encryption cipher algorithm", NULL },
    { "encrypt.cipher-mode", QOPT_STRING, "Name of encryption cipher mode", NULL },
    { "encrypt.ivgen-alg", QOPT_STRING, "Name of IV generator algorithm", NULL },
    { "encrypt.ivgen-hash-alg", QOPT_STRING, "Name of IV generator hash algorithm", NULL },
    { "encrypt.hash-alg", QOPT_STRING, "Name of encryption hash algorithm", NULL },
    { "encrypt.iter-time", QOPT_NUMBER, "Time to spend in PBKDF in milliseconds", NULL },
    { "cluster_size", QOPT_SIZE, "qcow2 cluster size", "65536" },
    { "extended_l2", QOPT_BOOL, "Extended L2 tables", "off" },
    { "preallocation", QOPT_STRING,
      "Preallocation mode (allowed values: off, metadata, falloc, full)", NULL },
    { "lazy_refcounts", QOPT_BOOL, "Postpone refcount updates", "off" },
    { "refcount_bits", QOPT_NUMBER, "Width of a reference count entry in bits", "16" },
    { "compression_type", QOPT_STRING,
      "Compression method used for image cluster compression", "zlib" },
    { NULL, 0, NULL, NULL },
};

/* Creation parameters after validation. */
typedef struct Qcow2CreateParams {
    uint64_t size;
    int version;
    const char *backing_file;
    const char *backing_fmt;
    uint64_t cluster_size;
    int cluster_bits;
    PreallocMode prealloc;
    bool lazy_refcounts;
    int refcount_order;
    bool extended_l2;
    int compression_type;
} Qcow2CreateParams;

/* compat option: "0.10"/"v2" -> 2, "1.1"/"v3" -> 3 (default 3). */
static int parse_version(const QOpts *opts, int *version, Error **errp)
{
    const char *v = qopts_get(opts, "compat");
    if (!v || !strcmp(v, "1.1") || !strcmp(v, "v3")) {
        *version = 3;
    } else if (!strcmp(v, "0.10") || !strcmp(v, "v2")) {
        *version = 2;
    } else {
        error_setg(errp, "Parameter 'version' does not accept value '%s'", v);
        return -EINVAL;
    }
    return 0;
}

/* cluster_size (checked against extended_l2). */
static int parse_cluster_size(const QOpts *opts, bool extended_l2, uint64_t *cs, Error **errp)
{
    int ret = qopts_get_size(opts, "cluster_size", QCOW2_DEFAULT_CLUSTER_SIZE, cs, errp);
    if (ret < 0) {
        return ret;
    }
    if (!QKIT_IS_POW2(*cs) || *cs < QCOW2_MIN_CLUSTER_SIZE || *cs > QCOW2_MAX_CLUSTER_SIZE) {
        error_setg(errp, "Cluster size must be a power of two between %d and %dk",
                   (int)QCOW2_MIN_CLUSTER_SIZE, (int)(QCOW2_MAX_CLUSTER_SIZE / 1024));
        return -EINVAL;
    }
    if (extended_l2 && *cs < QCOW2_MIN_EXTL2_CLUSTER_SIZE) {
        error_setg(errp, "Extended L2 entries are only supported with cluster sizes of at "
                   "least %d bytes", (int)QCOW2_MIN_EXTL2_CLUSTER_SIZE);
        return -EINVAL;
    }
    return 0;
}

/* refcount_bits: a power of two up to 64, only 16 for v2. */
static int parse_refcount_order(const QOpts *opts, int version, int *order, Error **errp)
{
    uint64_t bits;
    int ret = qopts_get_number(opts, "refcount_bits", QCOW2_DEFAULT_REFCOUNT_BITS, &bits, errp);
    if (ret < 0) {
        return ret;
    }
    if (bits > 64 || !QKIT_IS_POW2(bits)) {
        error_setg(errp, "Refcount width must be a power of two and may not exceed 64 bits");
        return -EINVAL;
    }
    if (version < 3 && bits != QCOW2_DEFAULT_REFCOUNT_BITS) {
        error_setg(errp, "Different refcount widths than 16 bits require compatibility "
                   "level 1.1 or above (use version=v3 or greater)");
        return -EINVAL;
    }
    *order = __builtin_ctzll(bits);
    return 0;
}

/* Check every option the way qemu-img does, in the same order of precedence. */
static int parse_create_params(const QOpts *opts, Qcow2CreateParams *p, Error **errp)
{
    int ret;
    memset(p, 0, sizeof(*p));
    if ((ret = qopts_get_size(opts, "size", 0, &p->size, errp)) < 0) {
        return ret;
    }
    p->size = ROUND_UP(p->size, 512);
    if ((ret = parse_version(opts, &p->version, errp)) < 0) {
        return ret;
    }
    p->backing_file = qopts_get(opts, "backing_file");
    p->backing_fmt = qopts_get(opts, "backing_fmt");

    bool encryption = false;
    if ((ret = qopts_get_bool(opts, "encryption", false, &encryption, errp)) < 0) {
        return ret;
    }
    if (encryption || qopts_get(opts, "encrypt.format")) {
        if (!qopts_get(opts, "encrypt.key-secret")) {
            error_setg(errp, "Parameter 'encrypt.key-secret' is required for cipher");
        } else {
            error_setg(errp, "Encrypted qcow2 images are not supported");
        }
        return -ENOTSUP;
    }
    if ((ret = qopts_get_bool(opts, "extended_l2", false, &p->extended_l2, errp)) < 0) {
        return ret;
    }
    if ((ret = parse_cluster_size(opts, p->extended_l2, &p->cluster_size, errp)) < 0) {
        return ret;
    }
    p->cluster_bits = __builtin_ctzll(p->cluster_size);
    const char *pa = qopts_get(opts, "preallocation");
    p->prealloc = PREALLOC_MODE_OFF;
    if (pa && prealloc_mode_parse(pa, &p->prealloc) < 0) {
        error_setg(errp, "Parameter 'preallocation' does not accept value '%s'", pa);
        return -EINVAL;
    }
    if ((ret = qopts_get_bool(opts, "lazy_refcounts", false, &p->lazy_refcounts, errp)) < 0) {
        return ret;
    }
    if ((ret = parse_refcount_order(opts, p->version, &p->refcount_order, errp)) < 0) {
        return ret;
    }
    const char *ct = qopts_get(opts, "compression_type");
    if (!ct || !strcmp(ct, "zlib")) {
        p->compression_type = QCOW2_COMPRESSION_ZLIB;
    } else if (!strcmp(ct, "zstd")) {
        p->compression_type = QCOW2_COMPRESSION_ZSTD;
    } else {
        error_setg(errp, "Parameter 'compression-type' does not accept value '%s'", ct);
        return -EINVAL;
    }

    bool data_file_raw = false;
    if ((ret = qopts_get_bool(opts, "data_file_raw", false, &data_file_raw, errp)) < 0) {
        return ret;
    }
    if (p->version < 3 && p->lazy_refcounts) {
        error_setg(errp, "Lazy refcounts only supported with compatibility level 1.1 and "
                   "above (use version=v3 or greater)");
        return -EINVAL;
    }
    if (p->version < 3 && p->extended_l2) {
        error_setg(errp, "Extended L2 entries are only supported with compatibility level "
                   "1.1 and above (use version=v3 or greater)");
        return -EINVAL;
    }
    if (p->backing_file && p->prealloc != PREALLOC_MODE_OFF && !p->extended_l2) {
        error_setg(errp, "Backing file and preallocation can only be used at the same time "
                   "if extended_l2 is on");
        return -EINVAL;
    }
    if (p->backing_fmt && !p->backing_file) {
        error_setg(errp, "Backing format cannot be used without backing file");
        return -EINVAL;
    }
    if (qopts_get(opts, "data_file")) {
        error_setg(errp, "External data files are not supported");
        return -ENOTSUP;
    }
    if (data_file_raw) {
        error_setg(errp, "data-file-raw requires data-file");
        return -EINVAL;
    }
    if (p->version < 3 && p->compression_type != QCOW2_COMPRESSION_ZLIB) {
        error_setg(errp, "Non-zlib compression type is only supported with compatibility "
                   "level 1.1 and above (use version=v3 or greater)");
        return -EINVAL;
    }
    return 0;
}

/* Write the initial header cluster and a refcount table with one (empty) block. */
static int write_initial_layout(BlockDriverState *file, const Qcow2CreateParams *p)
{
    uint64_t cs = p->cluster_size;
    uint8_t *buf = calloc(1, 2 * cs);
    if (!buf) {
        return -ENOMEM;
    }
    Qcow2Header h;
    memset(&h, 0, sizeof(h));
    h.magic = htobe32(QCOW2_MAGIC);
    h.version = htobe32((uint32_t)p->version);
    h.cluster_bits = htobe32((uint32_t)p->cluster_bits);
    h.refcount_table_offset = htobe64(cs);
    h.refcount_table_clusters = htobe32(1);
    h.refcount_order = htobe32((uint32_t)p->refcount_order);
    h.header_length = htobe32(sizeof(h));
    h.compression_type = (uint8_t)p->compression_type;
    uint64_t incompat = 0;
    if (p->compression_type != QCOW2_COMPRESSION_ZLIB) {
        incompat |= QCOW2_INCOMPAT_COMPRESSION;
    }
    if (p->extended_l2) {
        incompat |= QCOW2_INCOMPAT_EXTL2;
    }
    h.incompatible_features = htobe64(incompat);
    if (p->lazy_refcounts) {
        h.compatible_features = htobe64(QCOW2_COMPAT_LAZY_REFCOUNTS);
    }
    memcpy(buf, &h, sizeof(h));
    int ret = bdrv_pwrite(file, 0, (int64_t)cs, buf, 0);
    if (ret == 0) {
        memset(buf, 0, 2 * cs);
        uint64_t rb = htobe64(2 * cs);
        memcpy(buf, &rb, 8);
        ret = bdrv_pwrite(file, (int64_t)cs, (int64_t)(2 * cs), buf, 0);
    }
    free(buf);
    return ret;
}

int qcow2_create(const char *filename, QOpts *opts, Error **errp)
{
    Qcow2CreateParams p;
    int ret = parse_create_params(opts, &p, errp);
    if (ret < 0) {
        return ret;
    }

    /* The protocol file starts empty; only its own options pass through. */
    QOpts *popts = qopts_new();
    qopts_set(popts, "size", "0");
    if (qopts_get(opts, "nocow")) {
        qopts_set(popts, "nocow", qopts_get(opts, "nocow"));
    }
    ret = bdrv_create_file(filename, popts, errp);
    qopts_free(popts);
    if (ret < 0) {
        return ret;
    }
    BlockDriverState *file = bdrv_open(filename, NULL, NULL, BDRV_O_RDWR | BDRV_O_PROTOCOL,
                                       errp);
    if (!file) {
        return -EIO;
    }
    file->growable = true;
    ret = write_initial_layout(file, &p);
    if (ret == 0) {
        ret = bdrv_flush(file);
    }
    bdrv_unref(file);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not write qcow2 header");
        return ret;
    }

    json_t *o = json_object();
    json_object_set_new(o, "backing", json_null());
    Error *local = NULL;
    BlockDriverState *bs = bdrv_open(filename, "qcow2", o, BDRV_O_RDWR | BDRV_O_NO_BACKING,
                                     &local);
    if (!bs) {
        error_propagate(errp, local);
        return -EIO;
    }
    BDRVQcow2State *s = bs->opaque;
    int64_t off = qcow2_alloc_clusters(bs, QCOW2_INITIAL_CLUSTERS * p.cluster_size);
    if (off < 0) {
        error_setg_errno(errp, (int)-off, "Could not allocate clusters for qcow2 header and "
                         "refcount table");
        ret = (int)off;
        goto out;
    }
    ret = qcow2_update_header(bs);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not update qcow2 header");
        goto out;
    }
    ret = bdrv_truncate(bs, (int64_t)p.size, false, p.prealloc, &local);
    if (ret < 0) {
        if (ret == -EFBIG) {
            error_free(local);
            error_setg(errp, "The image size is too large for file format 'qcow2' (try using "
                       "a larger cluster size)");
        } else {
            error_propagate(errp, local);
            error_prepend(errp, "Could not resize image: ");
        }
        goto out;
    }
    if (p.backing_file) {
        ret = bs->drv->change_backing_file(bs, p.backing_file, p.backing_fmt);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not assign backing file '%s' with format '%s'",
                             p.backing_file, p.backing_fmt ? p.backing_fmt : "");
            goto out;
        }
    }
    ret = qcow2_flush_caches(bs);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not flush qcow2 image");
    }
    (void)s;
out:
    bdrv_unref(bs);
    return ret;
}

/* Bytes of a fully allocated image of total_size (data + all metadata). */
static int64_t calc_prealloc_size(uint64_t total_size, uint64_t cs, int refcount_order,
                                  bool extended_l2)
{
    uint64_t l2e = extended_l2 ? 16 : 8;
    uint64_t aligned = ROUND_UP(total_size, cs);
    uint64_t meta = cs;                              /* header */
    uint64_t nl2e = ROUND_UP(aligned / cs, cs / l2e);
    meta += nl2e * l2e;                              /* L2 tables */
    uint64_t nl1e = ROUND_UP(nl2e * l2e / cs, cs / 8);
    meta += nl1e * 8;                                /* L1 table */
    meta += (uint64_t)qcow2_refcount_metadata_size((int64_t)((meta + aligned) / cs), cs,
                                                   refcount_order, false, NULL);
    return (int64_t)(meta + aligned);
}

int qcow2_measure(QOpts *opts, BlockDriverState *in_bs, BlockMeasureInfo *info, Error **errp)
{
    bool extended_l2 = false;
    uint64_t cs;
    int version, refcount_order, ret;
    if ((ret = qopts_get_bool(opts, "extended_l2", false, &extended_l2, errp)) < 0 ||
        (ret = parse_cluster_size(opts, extended_l2, &cs, errp)) < 0 ||
        (ret = parse_version(opts, &version, errp)) < 0 ||
        (ret = parse_refcount_order(opts, version, &refcount_order, errp)) < 0) {
        return ret;
    }
    PreallocMode prealloc = PREALLOC_MODE_OFF;
    const char *pa = qopts_get(opts, "preallocation");
    if (pa && prealloc_mode_parse(pa, &prealloc) < 0) {
        error_setg(errp, "Parameter 'preallocation' does not accept value '%s'", pa);
        return -EINVAL;
    }
    bool encryption = false;
    if ((ret = qopts_get_bool(opts, "encryption", false, &encryption, errp)) < 0) {
        return ret;
    }
    if (encryption || qopts_get(opts, "encrypt.format")) {
        error_setg(errp, "Encrypted qcow2 images are not supported");
        return -ENOTSUP;
    }
    uint64_t virtual_size;
    if ((ret = qopts_get_size(opts, "size", 0, &virtual_size, errp)) < 0) {
        return ret;
    }
    virtual_size = ROUND_UP(virtual_size, cs);
    uint64_t l2e = extended_l2 ? 16 : 8;
    uint64_t l2_tables = DIV_ROUND_UP(virtual_size / cs, cs / l2e);
    if (l2_tables * 8 > QCOW2_MAX_L1_BYTES) {
        error_setg(errp, "The image size is too large (try using a larger cluster size)");
        return -EINVAL;
    }
    uint64_t required = 0;
    if (in_bs) {
        int64_t ssize = bdrv_getlength(in_bs);
        if (ssize < 0) {
            error_setg_errno(errp, (int)-ssize, "Unable to get image virtual_size");
            return (int)ssize;
        }
        virtual_size = ROUND_UP((uint64_t)ssize, cs);
        if (qopts_get(opts, "backing_file")) {
            /* The new backing file may share nothing with the input: count it all. */
            required = virtual_size;
        } else {
            int64_t pnum = 0;
            for (int64_t offset = 0; offset < ssize; offset += pnum) {
                ret = bdrv_block_status_above(in_bs, NULL, offset, ssize - offset, &pnum,
                                              NULL, NULL, NULL);
                if (ret < 0) {
                    error_setg_errno(errp, -ret, "Unable to get block status");
                    return ret;
                }
                if (ret & BDRV_BLOCK_ZERO) {
                    /* Zero regions need no data clusters. */
                } else if ((ret & (BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED)) ==
                           (BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED)) {
                    pnum = (int64_t)ROUND_UP((uint64_t)(offset + pnum), cs) - offset;
                    required += (uint64_t)offset % cs + (uint64_t)pnum;
                }
                if (pnum <= 0) {
                    break;
                }
            }
        }
    }
    if (prealloc == PREALLOC_MODE_FULL || prealloc == PREALLOC_MODE_FALLOC) {
        required = virtual_size;
    }
    info->fully_allocated = (uint64_t)calc_prealloc_size(virtual_size, cs, refcount_order,
                                                         extended_l2);
    info->required = info->fully_allocated - virtual_size + required;
    info->has_bitmaps = version >= 3 && in_bs && in_bs->drv == &bdrv_qcow2 &&
                        ((BDRVQcow2State *)in_bs->opaque)->qcow_version >= 3;
    info->bitmaps = info->has_bitmaps ? qcow2_bitmaps_measure(in_bs, cs) : 0;
    return 0;
}
