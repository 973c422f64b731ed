/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2 internal snapshots: the snapshot table (read at open, rewritten whole on every
 * change) and create / apply / delete / list.
 *
 * A snapshot is a copy of the active L1 table plus one more reference on everything it
 * reaches. Ordering for crash safety: refcounts are raised (and flushed) before the
 * table that points at the new L1 copy is written; on delete the snapshot leaves the
 * table first and only then are its references dropped, so a crash leaks clusters at
 * worst and never frees one still in use.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "block/qcow2.h"
#include "qkit/cutils.h"

#define L1E_SIZE 8
/* Largest extra data per snapshot table entry we accept (as QEMU). */
#define QCOW2_MAX_SNAPSHOT_EXTRA_DATA 1024
/* Largest snapshot table we accept, in bytes. */
#define QCOW2_MAX_SNAPSHOTS_SIZE (1024ULL * QCOW2_MAX_SNAPSHOTS)
/* Entries of the snapshot table start on this alignment. */
#define QCOW2_SNAPSHOT_ALIGN 8
/* Extra data every v3 entry must have: vm_state_size_large and disk_size. */
#define QCOW2_SNAPSHOT_EXTRA_V3_MIN 16
#define NSEC_PER_USEC 1000

/* Free the strings and extra data of snapshot i (not the array slot). */
static void snapshot_free_one(Qcow2Snapshot *sn)
{
    free(sn->id_str);
    free(sn->name);
    free(sn->unknown_extra_data);
    sn->id_str = NULL;
    sn->name = NULL;
    sn->unknown_extra_data = NULL;
}

/* Called at close and before re-reading the table: drop the in-memory snapshot list. */
void qcow2_free_snapshots(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    for (int i = 0; i < s->nb_snapshots && s->snapshots; i++) {
        snapshot_free_one(&s->snapshots[i]);
    }
    free(s->snapshots);
    s->snapshots = NULL;
    s->nb_snapshots = 0;
}

/* Read len bytes of the table at offset; errors read "Failed to read snapshot table". */
static int read_table_bytes(BlockDriverState *bs, uint64_t offset, uint64_t len, void *buf,
                            Error **errp)
{
    int ret = bdrv_pread(bs->file, (int64_t)offset, (int64_t)len, buf, 0);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to read snapshot table");
    }
    return ret;
}

/*
 * Decode the snapshot table described by s->snapshots_offset / s->nb_snapshots.
 * With repair (check -r all), too much extra data is cut and a table that grew too
 * large loses its tail; the counts of what was dropped go to *nb_dropped and
 * *extra_dropped, with QEMU's messages on stderr.
 */
static int do_read_snapshots(BlockDriverState *bs, bool repair, int *nb_dropped,
                             int *extra_dropped, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t offset = s->snapshots_offset;
    uint64_t table_length = 0;
    int n = s->nb_snapshots;
    int ret = 0;

    s->snapshots = NULL;
    s->snapshots_size = 0;
    if (n == 0) {
        return 0;
    }
    s->snapshots = calloc((size_t)n, sizeof(Qcow2Snapshot));
    if (!s->snapshots) {
        error_setg(errp, "Could not allocate the snapshot list");
        return -ENOMEM;
    }

    for (int i = 0; i < n; i++) {
        Qcow2Snapshot *sn = &s->snapshots[i];
        Qcow2SnapshotHeader h;
        Qcow2SnapshotExtra extra;
        bool cut_extra = false;

        table_length = ROUND_UP(table_length, QCOW2_SNAPSHOT_ALIGN);
        offset = ROUND_UP(offset, QCOW2_SNAPSHOT_ALIGN);
        ret = read_table_bytes(bs, offset, sizeof(h), &h, errp);
        if (ret < 0) {
            goto fail;
        }
        offset += sizeof(h);
        sn->l1_table_offset = be64toh(h.l1_table_offset);
        sn->l1_size = be32toh(h.l1_size);
        sn->vm_state_size = be32toh(h.vm_state_size);
        sn->date_sec = be32toh(h.date_sec);
        sn->date_nsec = be32toh(h.date_nsec);
        sn->vm_clock_nsec = be64toh(h.vm_clock_nsec);
        sn->extra_data_size = be32toh(h.extra_data_size);
        uint16_t id_len = be16toh(h.id_str_size);
        uint16_t name_len = be16toh(h.name_size);

        if (sn->extra_data_size > QCOW2_MAX_SNAPSHOT_EXTRA_DATA) {
            if (!repair) {
                error_setg(errp, "Too much extra metadata in snapshot table entry %i", i);
                error_append_hint(errp, "You can force-remove this extra metadata with "
                                  "qemu-img check -r all\n");
                ret = -EFBIG;
                goto fail;
            }
            fprintf(stderr, "Discarding too much extra metadata in snapshot table entry "
                    "%i (%" PRIu32 " > %u)\n", i, sn->extra_data_size,
                    QCOW2_MAX_SNAPSHOT_EXTRA_DATA);
            (*extra_dropped)++;
            cut_extra = true;
        }

        memset(&extra, 0, sizeof(extra));
        uint64_t known = QKIT_MIN((uint64_t)sizeof(extra), (uint64_t)sn->extra_data_size);
        ret = read_table_bytes(bs, offset, known, &extra, errp);
        if (ret < 0) {
            goto fail;
        }
        offset += known;
        if (sn->extra_data_size >= 8) {
            sn->vm_state_size = be64toh(extra.vm_state_size_large);
        }
        sn->disk_size = sn->extra_data_size >= 16 ? be64toh(extra.disk_size)
                                                  : ROUND_UP(s->size, 512);
        sn->icount = sn->extra_data_size >= 24 ? be64toh(extra.icount) : UINT64_MAX;

        if (sn->extra_data_size > sizeof(extra)) {
            uint64_t extra_end = offset + sn->extra_data_size - sizeof(extra);
            if (cut_extra) {
                sn->extra_data_size = QCOW2_MAX_SNAPSHOT_EXTRA_DATA;
            }
            size_t unknown = sn->extra_data_size - sizeof(extra);
            sn->unknown_extra_data = malloc(unknown);
            if (!sn->unknown_extra_data) {
                error_setg(errp, "Could not allocate snapshot extra data");
                ret = -ENOMEM;
                goto fail;
            }
            ret = read_table_bytes(bs, offset, unknown, sn->unknown_extra_data, errp);
            if (ret < 0) {
                goto fail;
            }
            offset = extra_end;
        }

        sn->id_str = calloc(1, (size_t)id_len + 1);
        sn->name = calloc(1, (size_t)name_len + 1);
        if (!sn->id_str || !sn->name) {
            error_setg(errp, "Could not allocate snapshot names");
            ret = -ENOMEM;
            goto fail;
        }
        ret = read_table_bytes(bs, offset, id_len, sn->id_str, errp);
        if (ret < 0) {
            goto fail;
        }
        offset += id_len;
        ret = read_table_bytes(bs, offset, name_len, sn->name, errp);
        if (ret < 0) {
            goto fail;
        }
        offset += name_len;

        table_length += sizeof(h) + sn->extra_data_size + id_len + name_len;
        if (table_length > QCOW2_MAX_SNAPSHOTS_SIZE ||
            offset - s->snapshots_offset > INT32_MAX) {
            if (!repair) {
                error_setg(errp, "Snapshot table is too big");
                error_append_hint(errp, "You can force-remove all %u overhanging snapshots "
                                  "with qemu-img check -r all\n", (unsigned)(n - i));
                ret = -EFBIG;
                goto fail;
            }
            fprintf(stderr, "Discarding %u overhanging snapshots (snapshot table is too "
                    "big)\n", (unsigned)(n - i));
            *nb_dropped += n - i;
            snapshot_free_one(sn);
            s->nb_snapshots = i;
            break;
        }
    }
    s->snapshots_size = (uint32_t)table_length;
    return 0;

fail:
    qcow2_free_snapshots(bs);
    return ret;
}

/* Called at open: read the snapshot table the header points at. */
int qcow2_read_snapshots(BlockDriverState *bs, Error **errp)
{
    int dropped = 0, extra_dropped = 0;
    return do_read_snapshots(bs, false, &dropped, &extra_dropped, errp);
}

/* Write the nb_snapshots / snapshots_offset pair of the header and flush it. */
static int write_snapshot_pointer(BlockDriverState *bs, uint32_t nb, uint64_t offset)
{
    uint8_t buf[12];
    uint32_t nb_be = htobe32(nb);
    uint64_t off_be = htobe64(offset);
    _Static_assert(offsetof(Qcow2Header, snapshots_offset) ==
                   offsetof(Qcow2Header, nb_snapshots) + 4, "snapshot pointer layout");
    memcpy(buf, &nb_be, 4);
    memcpy(buf + 4, &off_be, 8);
    int ret = bdrv_pwrite(bs->file, offsetof(Qcow2Header, nb_snapshots), sizeof(buf), buf, 0);
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    return ret;
}

/*
 * Write s->snapshots as a new table in freshly allocated clusters, switch the header
 * to it, then free the old table. Every entry is written in the v3 form (24 bytes of
 * known extra data at least).
 */
int qcow2_write_snapshots(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t size = 0;
    int64_t new_offset = -1;
    uint8_t *buf = NULL;
    int ret;

    for (int i = 0; i < s->nb_snapshots; i++) {
        const Qcow2Snapshot *sn = &s->snapshots[i];
        size = ROUND_UP(size, QCOW2_SNAPSHOT_ALIGN);
        size += sizeof(Qcow2SnapshotHeader);
        size += QKIT_MAX((uint64_t)sizeof(Qcow2SnapshotExtra), (uint64_t)sn->extra_data_size);
        size += strlen(sn->id_str) + strlen(sn->name);
        if (size > QCOW2_MAX_SNAPSHOTS_SIZE) {
            return -EFBIG;
        }
    }

    buf = calloc(1, size ? size : 1);
    if (!buf) {
        return -ENOMEM;
    }
    uint64_t pos = 0;
    for (int i = 0; i < s->nb_snapshots; i++) {
        const Qcow2Snapshot *sn = &s->snapshots[i];
        Qcow2SnapshotHeader h;
        Qcow2SnapshotExtra extra;
        uint32_t extra_size = QKIT_MAX((uint32_t)sizeof(extra), sn->extra_data_size);
        size_t id_len = strlen(sn->id_str);
        size_t name_len = strlen(sn->name);

        memset(&h, 0, sizeof(h));
        h.l1_table_offset = htobe64(sn->l1_table_offset);
        h.l1_size = htobe32(sn->l1_size);
        /* A VM state too big for 32 bits reads as a disk-only snapshot to old readers. */
        if (sn->vm_state_size <= UINT32_MAX) {
            h.vm_state_size = htobe32((uint32_t)sn->vm_state_size);
        }
        h.date_sec = htobe32(sn->date_sec);
        h.date_nsec = htobe32(sn->date_nsec);
        h.vm_clock_nsec = htobe64(sn->vm_clock_nsec);
        h.extra_data_size = htobe32(extra_size);
        h.id_str_size = htobe16((uint16_t)id_len);
        h.name_size = htobe16((uint16_t)name_len);
        extra.vm_state_size_large = htobe64(sn->vm_state_size);
        extra.disk_size = htobe64(sn->disk_size);
        extra.icount = htobe64(sn->icount);

        pos = ROUND_UP(pos, QCOW2_SNAPSHOT_ALIGN);
        memcpy(buf + pos, &h, sizeof(h));
        pos += sizeof(h);
        memcpy(buf + pos, &extra, sizeof(extra));
        pos += sizeof(extra);
        if (sn->extra_data_size > sizeof(extra)) {
            memcpy(buf + pos, sn->unknown_extra_data, sn->extra_data_size - sizeof(extra));
            pos += sn->extra_data_size - sizeof(extra);
        }
        memcpy(buf + pos, sn->id_str, id_len);
        pos += id_len;
        memcpy(buf + pos, sn->name, name_len);
        pos += name_len;
    }

    new_offset = qcow2_alloc_clusters(bs, size);
    if (new_offset < 0) {
        ret = (int)new_offset;
        goto out;
    }
    ret = bdrv_flush(bs);
    if (ret < 0) {
        goto out;
    }
    /* A damaged image may list the old table where the new one was allocated. */
    ret = qcow2_pre_write_overlap_check(bs, 0, (uint64_t)new_offset, size);
    if (ret < 0) {
        goto out;
    }
    if (size) {
        ret = bdrv_pwrite(bs->file, new_offset, (int64_t)size, buf, 0);
        if (ret < 0) {
            goto out;
        }
    }
    /* The new table and its refcounts must be stable before the header points at it. */
    ret = bdrv_flush(bs);
    if (ret < 0) {
        goto out;
    }
    ret = write_snapshot_pointer(bs, (uint32_t)s->nb_snapshots, (uint64_t)new_offset);
    if (ret < 0) {
        goto out;
    }
    qcow2_free_clusters(bs, (int64_t)s->snapshots_offset, s->snapshots_size,
                        QCOW2_DISCARD_SNAPSHOT);
    s->snapshots_offset = (uint64_t)new_offset;
    s->snapshots_size = (uint32_t)size;
    new_offset = -1;
    ret = 0;
out:
    if (new_offset > 0) {
        qcow2_free_clusters(bs, new_offset, (int64_t)size, QCOW2_DISCARD_ALWAYS);
    }
    free(buf);
    return ret;
}

/* Index of the snapshot matching id and/or name (either may be NULL), or -1. */
static int find_snapshot(BDRVQcow2State *s, const char *id, const char *name)
{
    for (int i = 0; i < s->nb_snapshots; i++) {
        const Qcow2Snapshot *sn = &s->snapshots[i];
        if (id && strcmp(sn->id_str, id) != 0) {
            continue;
        }
        if (name && strcmp(sn->name, name) != 0) {
            continue;
        }
        if (id || name) {
            return i;
        }
    }
    return -1;
}

/* Look a snapshot up by ID first, then by name (how `snapshot -a` names one). */
static int find_snapshot_by_id_or_name(BDRVQcow2State *s, const char *id_or_name)
{
    int i = find_snapshot(s, id_or_name, NULL);
    return i >= 0 ? i : find_snapshot(s, NULL, id_or_name);
}

/* The next free numeric ID: one more than the largest number in use. */
static void new_snapshot_id(BDRVQcow2State *s, char *id, size_t len)
{
    unsigned long max = 0;
    for (int i = 0; i < s->nb_snapshots; i++) {
        unsigned long v = strtoul(s->snapshots[i].id_str, NULL, 10);
        if (v > max) {
            max = v;
        }
    }
    snprintf(id, len, "%lu", max + 1);
}

/*
 * Add addend (+1, -1, or 0 to only recompute) to the refcount of every L2 table and
 * data cluster reachable from the L1 table at l1_table_offset, and set OFLAG_COPIED
 * exactly where the resulting refcount is 1. For the active table the in-memory copy
 * is used (snapshot apply relies on that while the disk already holds the new one).
 */
int qcow2_update_snapshot_refcount(BlockDriverState *bs, int64_t l1_table_offset,
                                   int l1_size, int addend)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t *l1 = NULL;
    uint64_t *l2 = NULL;
    bool l1_owned = false;
    bool l1_modified = false;
    uint64_t abs_addend = addend < 0 ? (uint64_t)-addend : (uint64_t)addend;
    bool decrease = addend < 0;
    int ret = 0;

    if (l1_size < 0) {
        return -EINVAL;
    }
    if ((uint64_t)l1_table_offset != s->l1_table_offset) {
        l1 = calloc(l1_size ? (size_t)l1_size : 1, L1E_SIZE);
        if (!l1) {
            return -ENOMEM;
        }
        l1_owned = true;
        ret = qcow2_read_l1_table(bs, (uint64_t)l1_table_offset, (uint32_t)l1_size, l1);
        if (ret < 0) {
            goto out;
        }
    } else {
        if ((uint32_t)l1_size != s->l1_size) {
            return -EINVAL;
        }
        l1 = s->l1_table;
    }

    for (int i = 0; i < l1_size; i++) {
        uint64_t old_l1e = l1[i];
        if (!old_l1e) {
            continue;
        }
        uint64_t l2_offset = old_l1e & L1E_OFFSET_MASK;
        if (qcow2_offset_into_cluster(s, l2_offset)) {
            qcow2_signal_corruption(bs, true, -1, -1, "L2 table offset %#" PRIx64
                                    " unaligned (L1 index: %#x)", l2_offset, i);
            ret = -EIO;
            goto out;
        }
        ret = qcow2_cache_get(bs, s->l2_table_cache, l2_offset, (void **)&l2);
        if (ret < 0) {
            goto out;
        }
        for (int j = 0; j < s->l2_size; j++) {
            uint64_t old_entry = qcow2_get_l2_entry(s, l2, j);
            uint64_t entry = old_entry & ~QCOW_OFLAG_COPIED;
            uint64_t offset = entry & L2E_OFFSET_MASK;
            uint64_t refcount = 0;

            switch (qcow2_get_cluster_type(bs, entry)) {
            case QCOW2_CLUSTER_COMPRESSED:
                if (addend) {
                    uint64_t coffset, csize;
                    qcow2_parse_compressed_l2_entry(bs, entry, &coffset, &csize);
                    ret = qcow2_update_refcount(bs, (int64_t)coffset, (int64_t)csize,
                                                abs_addend, decrease,
                                                QCOW2_DISCARD_SNAPSHOT);
                    if (ret < 0) {
                        goto out;
                    }
                }
                /* Compressed clusters are never written in place: never COPIED. */
                refcount = 2;
                break;
            case QCOW2_CLUSTER_NORMAL:
            case QCOW2_CLUSTER_ZERO_ALLOC:
                if (qcow2_offset_into_cluster(s, offset)) {
                    qcow2_signal_corruption(bs, true, -1, -1, "Cluster allocation offset %#"
                                            PRIx64 " unaligned (L2 offset: %#" PRIx64
                                            ", L2 index: %#x)", offset, l2_offset, j);
                    ret = -EIO;
                    goto out;
                }
                if (addend) {
                    int64_t r = qcow2_update_cluster_refcount(bs, offset >> s->cluster_bits,
                                                              abs_addend, decrease,
                                                              QCOW2_DISCARD_SNAPSHOT);
                    if (r < 0) {
                        ret = (int)r;
                        goto out;
                    }
                }
                ret = qcow2_get_refcount(bs, offset >> s->cluster_bits, &refcount);
                if (ret < 0) {
                    goto out;
                }
                break;
            default:
                refcount = 0;
                break;
            }
            if (refcount == 1) {
                entry |= QCOW_OFLAG_COPIED;
            }
            if (entry != old_entry) {
                if (addend > 0) {
                    ret = qcow2_cache_set_dependency(bs, s->l2_table_cache,
                                                     s->refcount_block_cache);
                    if (ret < 0) {
                        goto out;
                    }
                }
                qcow2_set_l2_entry(s, l2, j, entry);
                qcow2_cache_entry_mark_dirty(s->l2_table_cache, l2);
            }
        }
        qcow2_cache_put(s->l2_table_cache, (void **)&l2);
        l2 = NULL;

        if (addend) {
            int64_t r = qcow2_update_cluster_refcount(bs, l2_offset >> s->cluster_bits,
                                                      abs_addend, decrease,
                                                      QCOW2_DISCARD_SNAPSHOT);
            if (r < 0) {
                ret = (int)r;
                goto out;
            }
        }
        uint64_t l2_refcount;
        ret = qcow2_get_refcount(bs, l2_offset >> s->cluster_bits, &l2_refcount);
        if (ret < 0) {
            goto out;
        }
        uint64_t new_l1e = l2_offset | (l2_refcount == 1 ? QCOW_OFLAG_COPIED : 0);
        if (new_l1e != old_l1e) {
            l1[i] = new_l1e;
            l1_modified = true;
        }
    }
    ret = bdrv_flush(bs);

out:
    if (l2) {
        qcow2_cache_put(s->l2_table_cache, (void **)&l2);
    }
    /* A table whose references were dropped is about to be freed: no need to update it. */
    if (ret == 0 && addend >= 0 && l1_modified) {
        ret = qcow2_write_l1_table(bs, (uint64_t)l1_table_offset, (uint32_t)l1_size, l1);
        if (ret == 0) {
            ret = bdrv_flush(bs->file);
        }
    }
    if (l1_owned) {
        free(l1);
    }
    return ret;
}

/* Snapshot create: copy the active L1 table and take a reference on all it reaches. */
int qcow2_snapshot_create(BlockDriverState *bs, QkitSnapshotInfo *info, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2Snapshot sn;
    Qcow2Snapshot *list = NULL;
    int64_t l1_offset = -1;
    int ret;

    if (s->nb_snapshots >= QCOW2_MAX_SNAPSHOTS) {
        error_setg(errp, "Too many snapshots");
        return -EFBIG;
    }
    if (qcow2_has_data_file(s)) {
        error_setg(errp, "Internal snapshots are not supported with an external data file");
        return -ENOTSUP;
    }

    memset(&sn, 0, sizeof(sn));
    new_snapshot_id(s, info->id_str, sizeof(info->id_str));
    if (info->date_sec == 0 && info->date_nsec == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        info->date_sec = (uint32_t)ts.tv_sec;
        /* QEMU stores the time of day at microsecond precision. */
        info->date_nsec = (uint32_t)(ts.tv_nsec / NSEC_PER_USEC * NSEC_PER_USEC);
    }
    sn.id_str = strdup(info->id_str);
    sn.name = strdup(info->name);
    if (!sn.id_str || !sn.name) {
        ret = -ENOMEM;
        goto fail;
    }
    sn.disk_size = ROUND_UP(s->size, 512);
    sn.vm_state_size = info->vm_state_size;
    sn.date_sec = info->date_sec;
    sn.date_nsec = info->date_nsec;
    sn.vm_clock_nsec = info->vm_clock_nsec;
    sn.icount = info->icount;
    sn.extra_data_size = sizeof(Qcow2SnapshotExtra);

    l1_offset = qcow2_alloc_clusters(bs, (uint64_t)s->l1_size * L1E_SIZE);
    if (l1_offset < 0) {
        ret = (int)l1_offset;
        goto fail;
    }
    sn.l1_table_offset = (uint64_t)l1_offset;
    sn.l1_size = s->l1_size;
    ret = qcow2_write_l1_table(bs, sn.l1_table_offset, s->l1_size, s->l1_table);
    if (ret < 0) {
        goto fail;
    }
    /* References first: the table must not point at the copy before they are stable. */
    ret = qcow2_update_snapshot_refcount(bs, (int64_t)s->l1_table_offset, (int)s->l1_size, 1);
    if (ret < 0) {
        /* Like QEMU, leave the copy (and any references taken) as leaks for check. */
        l1_offset = -1;
        goto fail;
    }

    list = realloc(s->snapshots, (size_t)(s->nb_snapshots + 1) * sizeof(*list));
    if (!list) {
        ret = -ENOMEM;
        goto fail;
    }
    s->snapshots = list;
    s->snapshots[s->nb_snapshots++] = sn;
    ret = qcow2_write_snapshots(bs);
    if (ret < 0) {
        s->nb_snapshots--;
        /* The references taken above stay: check -r leaks gets them back. */
        l1_offset = -1;
        goto fail;
    }

    /* The VM state is no longer needed in the active table; drop it to avoid COW. */
    if (sn.vm_state_size) {
        uint64_t vm_off = (uint64_t)s->l1_vm_state_index << (s->cluster_bits + s->l2_bits);
        qcow2_cluster_discard(bs, vm_off, ROUND_UP(sn.vm_state_size, s->cluster_size),
                              QCOW2_DISCARD_NEVER, false);
    }
    return 0;

fail:
    if (l1_offset > 0) {
        qcow2_free_clusters(bs, l1_offset, (int64_t)s->l1_size * L1E_SIZE,
                            QCOW2_DISCARD_ALWAYS);
    }
    snapshot_free_one(&sn);
    /* qemu-img prints "Could not create snapshot 'x': " and strerror: give just that. */
    error_setg(errp, "%s", strerror(-ret));
    return ret;
}

/* Snapshot apply: make the snapshot's L1 table the active one (with its disk size). */
int qcow2_snapshot_goto(BlockDriverState *bs, const char *snapshot_id, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t *sn_l1 = NULL;
    Error *local_err = NULL;
    int ret;

    if (qcow2_has_data_file(s)) {
        ret = -ENOTSUP;
        goto fail;
    }
    int idx = find_snapshot_by_id_or_name(s, snapshot_id);
    if (idx < 0) {
        ret = -ENOENT;
        goto fail;
    }
    /* Copy what is needed: the list may be reallocated by a resize. */
    uint64_t sn_l1_offset = s->snapshots[idx].l1_table_offset;
    uint32_t sn_l1_size = s->snapshots[idx].l1_size;
    uint64_t sn_disk_size = s->snapshots[idx].disk_size;

    ret = qcow2_validate_table(bs, sn_l1_offset, sn_l1_size, L1E_SIZE, QCOW2_MAX_L1_BYTES,
                               "Snapshot L1 table", &local_err);
    if (ret < 0) {
        goto fail;
    }
    if (sn_disk_size != ROUND_UP(s->size, 512)) {
        ret = bdrv_truncate(bs, (int64_t)sn_disk_size, true, PREALLOC_MODE_OFF, &local_err);
        if (ret < 0) {
            goto fail;
        }
    }
    ret = qcow2_grow_l1_table(bs, sn_l1_size, true);
    if (ret < 0) {
        goto fail;
    }

    /* The active table may be larger than the snapshot's: the rest reads unallocated. */
    uint32_t cur_size = s->l1_size;
    sn_l1 = calloc(cur_size ? cur_size : 1, L1E_SIZE);
    if (!sn_l1) {
        ret = -ENOMEM;
        goto fail;
    }
    ret = qcow2_read_l1_table(bs, sn_l1_offset, sn_l1_size, sn_l1);
    if (ret < 0) {
        goto fail;
    }
    /* Take the new references before the active table on disk is replaced. */
    ret = qcow2_update_snapshot_refcount(bs, (int64_t)sn_l1_offset, (int)sn_l1_size, 1);
    if (ret < 0) {
        goto fail;
    }
    ret = qcow2_write_l1_table(bs, s->l1_table_offset, cur_size, sn_l1);
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    if (ret < 0) {
        goto fail;
    }
    /* Drop the old references, found through the in-memory (old) table. */
    ret = qcow2_update_snapshot_refcount(bs, (int64_t)s->l1_table_offset, (int)cur_size, -1);
    /* The in-memory table follows the disk even if that failed. */
    memcpy(s->l1_table, sn_l1, (size_t)cur_size * L1E_SIZE);
    if (ret < 0) {
        goto fail;
    }
    /* Reference counts changed: recompute OFLAG_COPIED in the new active tables. */
    ret = qcow2_update_snapshot_refcount(bs, (int64_t)s->l1_table_offset, (int)cur_size, 0);
    if (ret < 0) {
        goto fail;
    }
    free(sn_l1);
    return 0;

fail:
    free(sn_l1);
    /* QEMU reports every failure to apply as "Failed to load snapshot: <errno>". */
    error_free(local_err);
    error_setg_errno(errp, -ret, "Failed to load snapshot");
    return ret;
}

/* Snapshot delete (by ID and/or name): drop it from the table, then its references. */
int qcow2_snapshot_delete(BlockDriverState *bs, const char *snapshot_id, const char *name,
                          Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    int ret;

    if (qcow2_has_data_file(s)) {
        error_setg(errp, "Internal snapshots are not supported with an external data file");
        return -ENOTSUP;
    }
    int idx = find_snapshot(s, snapshot_id, name);
    if (idx < 0) {
        error_setg(errp, "Can't find the snapshot");
        return -ENOENT;
    }
    Qcow2Snapshot sn = s->snapshots[idx];
    ret = qcow2_validate_table(bs, sn.l1_table_offset, sn.l1_size, L1E_SIZE,
                               QCOW2_MAX_L1_BYTES, "Snapshot L1 table", errp);
    if (ret < 0) {
        return ret;
    }

    memmove(&s->snapshots[idx], &s->snapshots[idx + 1],
            (size_t)(s->nb_snapshots - idx - 1) * sizeof(sn));
    s->nb_snapshots--;
    ret = qcow2_write_snapshots(bs);
    if (ret < 0) {
        /* Put it back: the table on disk still lists it. */
        memmove(&s->snapshots[idx + 1], &s->snapshots[idx],
                (size_t)(s->nb_snapshots - idx) * sizeof(sn));
        s->snapshots[idx] = sn;
        s->nb_snapshots++;
        error_setg_errno(errp, -ret, "Failed to remove snapshot from snapshot list");
        return ret;
    }
    snapshot_free_one(&sn);

    /* From here on a failure only leaks clusters. */
    ret = qcow2_update_snapshot_refcount(bs, (int64_t)sn.l1_table_offset, (int)sn.l1_size, -1);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to free the cluster and L1 table");
        return ret;
    }
    qcow2_free_clusters(bs, (int64_t)sn.l1_table_offset, (int64_t)sn.l1_size * L1E_SIZE,
                        QCOW2_DISCARD_SNAPSHOT);
    /* Clusters only the active image uses now get OFLAG_COPIED back. */
    ret = qcow2_update_snapshot_refcount(bs, (int64_t)s->l1_table_offset, (int)s->l1_size, 0);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to update snapshot status in disk");
        return ret;
    }
    return 0;
}

/* Snapshot list, for `snapshot -l` and `info`. */
int qcow2_snapshot_list(BlockDriverState *bs, QkitSnapshotInfo **psn)
{
    BDRVQcow2State *s = bs->opaque;
    *psn = NULL;
    if (s->nb_snapshots == 0) {
        return 0;
    }
    QkitSnapshotInfo *tab = calloc((size_t)s->nb_snapshots, sizeof(*tab));
    if (!tab) {
        return -ENOMEM;
    }
    for (int i = 0; i < s->nb_snapshots; i++) {
        const Qcow2Snapshot *sn = &s->snapshots[i];
        snprintf(tab[i].id_str, sizeof(tab[i].id_str), "%s", sn->id_str);
        snprintf(tab[i].name, sizeof(tab[i].name), "%s", sn->name);
        tab[i].vm_state_size = sn->vm_state_size;
        tab[i].date_sec = sn->date_sec;
        tab[i].date_nsec = sn->date_nsec;
        tab[i].vm_clock_nsec = sn->vm_clock_nsec;
        tab[i].icount = sn->icount;
    }
    *psn = tab;
    return s->nb_snapshots;
}

/*
 * Print an error found by check the way QEMU's check does (error_report style, with the
 * program name and the hint), then free it. Check is the one place that prints.
 */
static void report_check_error(Error *err, const char *prefix)
{
    const char *hint = error_get_hint(err);
    fprintf(stderr, "%s: %s%s\n", error_get_progname(), prefix, error_get_pretty(err));
    if (hint) {
        fputs(hint, stderr);
    }
    error_free(err);
}

/*
 * check: re-read the snapshot table from the header (open may have skipped it), with
 * repair when fix has BDRV_FIX_ERRORS. Counts problems in res.
 */
int qcow2_check_read_snapshot_table(BlockDriverState *bs, BdrvCheckResult *res, int fix)
{
    BDRVQcow2State *s = bs->opaque;
    Error *err = NULL;
    int nb_dropped = 0, extra_dropped = 0;
    uint8_t ptr[12];
    uint32_t nb_be;
    uint64_t off_be;
    int ret;

    ret = bdrv_pread(bs->file, offsetof(Qcow2Header, nb_snapshots), sizeof(ptr), ptr, 0);
    if (ret < 0) {
        res->check_errors++;
        fprintf(stderr, "ERROR failed to read the snapshot table pointer from the image "
                "header: %s\n", strerror(-ret));
        return ret;
    }
    memcpy(&nb_be, ptr, 4);
    memcpy(&off_be, ptr + 4, 8);
    qcow2_free_snapshots(bs);
    uint32_t nb = be32toh(nb_be);
    s->snapshots_offset = be64toh(off_be);

    /* Without repair, the table size check below reports this one. */
    if (nb > QCOW2_MAX_SNAPSHOTS && (fix & BDRV_FIX_ERRORS)) {
        fprintf(stderr, "Discarding %u overhanging snapshots\n", nb - QCOW2_MAX_SNAPSHOTS);
        nb_dropped += (int)(nb - QCOW2_MAX_SNAPSHOTS);
        nb = QCOW2_MAX_SNAPSHOTS;
    }
    ret = qcow2_validate_table(bs, s->snapshots_offset, nb, sizeof(Qcow2SnapshotHeader),
                               sizeof(Qcow2SnapshotHeader) * QCOW2_MAX_SNAPSHOTS,
                               "snapshot table", &err);
    if (ret < 0) {
        res->check_errors++;
        report_check_error(err, "ERROR ");
        if (nb > QCOW2_MAX_SNAPSHOTS) {
            fprintf(stderr, "You can force-remove all %u overhanging snapshots with "
                    "qemu-img check -r all\n", nb - QCOW2_MAX_SNAPSHOTS);
        }
        s->snapshots_offset = 0;
        s->nb_snapshots = 0;
        return ret;
    }

    s->nb_snapshots = (int)nb;
    ret = do_read_snapshots(bs, (fix & BDRV_FIX_ERRORS) != 0, &nb_dropped,
                           &extra_dropped, &err);
    if (ret < 0) {
        res->check_errors++;
        report_check_error(err, "ERROR failed to read the snapshot table: ");
        s->snapshots_offset = 0;
        s->nb_snapshots = 0;
        return ret;
    }
    res->corruptions += nb_dropped + extra_dropped;

    if (nb_dropped) {
        /* Refcount checking trusts the header's count: fix it now (leaks follow). */
        nb_be = htobe32((uint32_t)s->nb_snapshots);
        ret = bdrv_pwrite(bs->file, offsetof(Qcow2Header, nb_snapshots), 4, &nb_be, 0);
        if (ret == 0) {
            ret = bdrv_flush(bs->file);
        }
        if (ret < 0) {
            res->check_errors++;
            fprintf(stderr, "ERROR failed to update the snapshot count in the image header: "
                    "%s\n", strerror(-ret));
            return ret;
        }
        res->corruptions_fixed += nb_dropped;
        res->corruptions -= nb_dropped;
    }

    if (s->qcow_version >= 3) {
        for (int i = 0; i < s->nb_snapshots; i++) {
            if (s->snapshots[i].extra_data_size < QCOW2_SNAPSHOT_EXTRA_V3_MIN) {
                res->corruptions++;
                fprintf(stderr, "%s snapshot table entry %i is incomplete\n",
                        (fix & BDRV_FIX_ERRORS) ? "Repairing" : "ERROR", i);
            }
        }
    }
    return 0;
}

/* check, after the refcounts: rewrite the snapshot table if it had fixable problems. */
int qcow2_check_fix_snapshot_table(BlockDriverState *bs, BdrvCheckResult *res, int fix)
{
    if (res->corruptions && (fix & BDRV_FIX_ERRORS)) {
        int ret = qcow2_write_snapshots(bs);
        if (ret < 0) {
            res->check_errors++;
            fprintf(stderr, "ERROR failed to update snapshot table: %s\n", strerror(-ret));
            return ret;
        }
        res->corruptions_fixed += res->corruptions;
        res->corruptions = 0;
    }
    return 0;
}
