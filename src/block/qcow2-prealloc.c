/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2 preallocation (preallocation=metadata/falloc/full on create and resize) and
 * make_empty (commit emptying the top image).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2.h"
#include "qkit/cutils.h"

/* Guest bytes preallocation handles per request, as QEMU (the largest int). */
#define QCOW2_PREALLOC_CHUNK INT32_MAX
/* Upper bound of one make_empty discard step. */
#define QCOW2_MAX_STEP_BYTES (1ULL << 30)

/* Called by create and resize with preallocation=metadata. */
int qcow2_preallocate(BlockDriverState *bs, uint64_t offset, uint64_t bytes)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t last_host = 0, last_len = 0;
    /*
     * As QEMU: each run of new clusters first tries to continue the previous run in
     * the file (taking as many clusters as are free there), and only then looks for a
     * free range anywhere. The preference starts afresh every QCOW2_PREALLOC_CHUNK.
     */
    uint64_t chunk = ROUND_DOWN((uint64_t)QCOW2_PREALLOC_CHUNK, s->cluster_size);
    uint64_t chunk_end = offset + chunk;
    uint64_t next_host = 0;         /* where the previous run ended, 0 for none */
    while (bytes) {
        if (offset >= chunk_end) {
            chunk_end = offset + chunk;
            next_host = 0;
        }
        uint64_t *l2;
        int l2_index;
        int ret = qcow2_get_cluster_table(bs, offset, &l2, &l2_index);
        if (ret < 0) {
            return ret;
        }
        uint64_t in_cluster = qcow2_offset_into_cluster(s, offset);
        uint64_t nb = QKIT_MIN(qcow2_size_to_clusters(s, in_cluster + bytes),
                               (uint64_t)(s->l2_size - l2_index));
        uint64_t e0 = qcow2_get_l2_entry(s, l2, l2_index);
        uint64_t k = 1;
        bool keep = qcow2_cluster_reusable(bs, e0);
        for (; k < nb; k++) {
            if (qcow2_cluster_reusable(bs, qcow2_get_l2_entry(s, l2, l2_index + (int)k)) != keep) {
                break;
            }
        }
        int64_t h = -1;
        if (!keep && next_host) {
            int64_t got = qcow2_alloc_clusters_at(bs, next_host, (int64_t)k);
            if (got < 0) {
                qcow2_cache_put(s->l2_table_cache, (void **)&l2);
                return (int)got;
            }
            if (got > 0) {
                h = (int64_t)next_host;
                k = (uint64_t)got;
            }
        }
        uint64_t cur = QKIT_MIN(bytes, k * s->cluster_size - in_cluster);
        if (!keep) {
            if (h < 0) {
                h = qcow2_alloc_clusters(bs, k * s->cluster_size);
            }
            if (h < 0) {
                qcow2_cache_put(s->l2_table_cache, (void **)&l2);
                return (int)h;
            }
            ret = qcow2_cache_set_dependency(bs, s->l2_table_cache, s->refcount_block_cache);
            if (ret < 0) {
                qcow2_cache_put(s->l2_table_cache, (void **)&l2);
                return ret;
            }
            for (uint64_t i = 0; i < k; i++) {
                int idx = l2_index + (int)i;
                uint64_t old = qcow2_get_l2_entry(s, l2, idx);
                qcow2_set_l2_entry(s, l2, idx, ((uint64_t)h + i * s->cluster_size) |
                                                   QCOW_OFLAG_COPIED);
                qcow2_free_any_cluster(bs, old, QCOW2_DISCARD_NEVER);
            }
            qcow2_cache_entry_mark_dirty(s->l2_table_cache, l2);
            last_host = (uint64_t)h + in_cluster;
            next_host = (uint64_t)h + k * s->cluster_size;
        } else {
            last_host = (e0 & L2E_OFFSET_MASK) + in_cluster;
            uint64_t last = qcow2_get_l2_entry(s, l2, l2_index + (int)k - 1);
            next_host = (last & L2E_OFFSET_MASK) + s->cluster_size;
        }
        last_len = cur;
        qcow2_cache_put(s->l2_table_cache, (void **)&l2);
        offset += cur;
        bytes -= cur;
    }
    /* The file must reach the last allocated byte, or reads there would fail. */
    int64_t flen = bdrv_getlength(bs->file);
    if (flen < 0) {
        return (int)flen;
    }
    /* qemu-img extends the file to the end of the last allocated cluster. */
    uint64_t want = ROUND_UP(last_host + last_len, s->cluster_size);
    if (last_len && want > (uint64_t)flen) {
        Error *err = NULL;
        int ret = bdrv_truncate(bs->file, (int64_t)want, false,
                                PREALLOC_MODE_OFF, &err);
        if (ret < 0) {
            error_free(err);
            return ret;
        }
    }
    return 0;
}

/* Called by commit (without -d) to drop everything the top image holds. */
int qcow2_make_empty(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t l1_clusters = DIV_ROUND_UP((uint64_t)s->l1_size * sizeof(uint64_t),
                                        s->cluster_size);
    bool has_bitmaps = s->dirty_bitmaps || (s->has_bitmaps_ext && s->bitmaps_ext.nb_bitmaps);
    /*
     * As QEMU: an image whose only clusters are the header, refcount structures, L1 and
     * guest data (and that can mark itself dirty) is reset to a fresh layout; anything
     * else has its clusters dropped one by one.
     */
    if (s->qcow_version >= 3 && !s->nb_snapshots && !has_bitmaps &&
        3 + l1_clusters <= s->refcount_block_size && s->crypt_method != QCOW2_CRYPT_LUKS &&
        !qcow2_has_data_file(s)) {
        return qcow2_make_completely_empty(bs);
    }
    uint64_t end = s->size;
    for (uint64_t off = 0; off < end;) {
        uint64_t step = QKIT_MIN(end - off, QCOW2_MAX_STEP_BYTES);
        int ret = qcow2_cluster_discard(bs, off, step, QCOW2_DISCARD_SNAPSHOT, true);
        if (ret < 0) {
            return ret;
        }
        off += step;
    }
    return 0;
}

/* Called by resize (and create) with preallocation=falloc or full. */
int qcow2_preallocate_data(BlockDriverState *bs, uint64_t old_length, uint64_t new_length,
                           PreallocMode prealloc, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    int64_t file_size = bdrv_getlength(bs->file);
    if (file_size < 0) {
        error_setg_errno(errp, (int)-file_size, "Failed to inquire current file length");
        return (int)file_size;
    }
    file_size = (int64_t)ROUND_UP((uint64_t)file_size, cs);
    int64_t last = qcow2_get_last_cluster(bs, file_size >> s->cluster_bits);
    uint64_t old_file_size = last >= 0 ? ((uint64_t)last + 1) << s->cluster_bits : 0;

    uint64_t nb_data = (ROUND_UP(new_length, cs) - qcow2_start_of_cluster(s, old_length)) >>
                       s->cluster_bits;
    /* Room for the L2 tables too (plus one for an unaligned head or tail). */
    uint64_t nb_l2 = DIV_ROUND_UP(nb_data, cs / (uint64_t)s->l2_entry_size) + 1;
    int64_t start = qcow2_refcount_area(bs, old_file_size, nb_data + nb_l2, true, 0, 0);
    if (start < 0) {
        error_setg_errno(errp, (int)-start, "Failed to resize refcount structures");
        return (int)start;
    }
    int64_t got = qcow2_alloc_clusters_at(bs, (uint64_t)start, (int64_t)nb_data);
    if (got < 0) {
        error_setg_errno(errp, (int)-got, "Failed to allocate data clusters");
        return (int)got;
    }
    if ((uint64_t)got != nb_data) {
        error_setg(errp, "Failed to allocate data clusters");
        return -EIO;
    }
    Error *local = NULL;
    int ret = bdrv_truncate(bs->file, start + (int64_t)(nb_data * cs), false, prealloc, &local);
    if (ret < 0) {
        error_propagate(errp, local);
        error_prepend(errp, "Failed to resize underlying file: ");
        return ret;
    }

    uint64_t host = (uint64_t)start, guest = old_length;
    while (nb_data) {
        uint64_t *l2;
        int l2_index;
        ret = qcow2_get_cluster_table(bs, guest, &l2, &l2_index);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Failed to update L2 tables");
            return ret;
        }
        uint64_t n = QKIT_MIN(nb_data, (uint64_t)(s->l2_size - l2_index));
        uint64_t head = qcow2_offset_into_cluster(s, guest);
        guest = qcow2_start_of_cluster(s, guest);
        /* A partly used old last cluster moves: copy its used head along. */
        ret = qcow2_do_cow(bs, guest, host, head);
        if (ret == 0) {
            ret = qcow2_cache_set_dependency(bs, s->l2_table_cache, s->refcount_block_cache);
        }
        if (ret < 0) {
            qcow2_cache_put(s->l2_table_cache, (void **)&l2);
            error_setg_errno(errp, -ret, "Failed to update L2 tables");
            return ret;
        }
        for (uint64_t i = 0; i < n; i++) {
            int idx = l2_index + (int)i;
            uint64_t old = qcow2_get_l2_entry(s, l2, idx);
            qcow2_set_l2_entry(s, l2, idx, (host + i * cs) | QCOW_OFLAG_COPIED);
            qcow2_free_any_cluster(bs, old, QCOW2_DISCARD_NEVER);
        }
        qcow2_cache_entry_mark_dirty(s->l2_table_cache, l2);
        qcow2_cache_put(s->l2_table_cache, (void **)&l2);
        guest += n * cs;
        host += n * cs;
        nb_data -= n;
    }
    return 0;
}
