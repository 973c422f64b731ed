/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2: reading an internal snapshot in place, and the VM state area.
 *
 * A temporary snapshot load (convert -l, measure -l) swaps the in-memory active L1
 * table for a copy of the snapshot's, on a read-only node: nothing on disk changes,
 * and the disk keeps its current size (as in QEMU, parts of the disk the snapshot's
 * table does not reach read as unallocated).
 *
 * The VM state (the RAM a savevm stores) lives in the active L1 table just past the
 * guest disk: guest offset l1_vm_state_index * (bytes one L2 table covers) onwards,
 * so it is allocated, copied into snapshots and refcounted like disk data.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2.h"
#include "qkit/cutils.h"

#define L1E_SIZE 8
/* The most L1 entries a table may have (QEMU's limit on the L1 size). */
#define QCOW2_MAX_L1_ENTRIES (QCOW2_MAX_L1_BYTES / L1E_SIZE)

/* Index of the snapshot matching id and name (a NULL one matches any), or -1. */
static int vmstate_find_snapshot(const BDRVQcow2State *s, const char *id, const char *name)
{
    for (int i = 0; i < s->nb_snapshots; i++) {
        const Qcow2Snapshot *sn = &s->snapshots[i];
        if ((!id || !strcmp(sn->id_str, id)) && (!name || !strcmp(sn->name, name))) {
            return i;
        }
    }
    return -1;
}

/* Called through bdrv_snapshot_load_tmp (node lock held): read the snapshot in place. */
int qcow2_snapshot_load_tmp(BlockDriverState *bs, const char *snapshot_id, const char *name,
                            Error **errp)
{
    BDRVQcow2State *s = bs->opaque;

    if (!bs->read_only) {
        error_setg(errp, "Device '' is not readonly");
        return -EINVAL;
    }
    if (!snapshot_id && !name) {
        error_setg(errp, "snapshot_id and name are both NULL");
        return -EINVAL;
    }
    int idx = vmstate_find_snapshot(s, snapshot_id, name);
    if (idx < 0) {
        error_setg(errp, "Can't find snapshot");
        return -ENOENT;
    }
    const Qcow2Snapshot *sn = &s->snapshots[idx];
    int ret = qcow2_validate_table(bs, sn->l1_table_offset, sn->l1_size, L1E_SIZE,
                                   QCOW2_MAX_L1_BYTES, "Snapshot L1 table", errp);
    if (ret < 0) {
        return ret;
    }
    /* Like the active table, allocated in whole clusters. */
    size_t alloc = ROUND_UP((size_t)sn->l1_size * L1E_SIZE, (size_t)s->cluster_size);
    uint64_t *l1 = calloc(1, alloc ? alloc : s->cluster_size);
    if (!l1) {
        error_setg(errp, "Could not allocate the snapshot L1 table");
        return -ENOMEM;
    }
    ret = qcow2_read_l1_table(bs, sn->l1_table_offset, sn->l1_size, l1);
    if (ret < 0) {
        error_setg(errp, "Failed to read l1 table for snapshot");
        free(l1);
        return ret;
    }
    free(s->l1_table);
    s->l1_table = l1;
    s->l1_size = sn->l1_size;
    s->l1_table_offset = sn->l1_table_offset;
    return 0;
}

/* Guest offset where the VM state area starts: just past the L1 entries of the disk. */
static uint64_t vmstate_offset(const BDRVQcow2State *s)
{
    return (uint64_t)s->l1_vm_state_index << (s->cluster_bits + s->l2_bits);
}

/* First guest offset no L1 table can reach (the L1 size limit). */
static uint64_t vmstate_addressable_end(const BDRVQcow2State *s)
{
    return (uint64_t)QCOW2_MAX_L1_ENTRIES << (s->cluster_bits + s->l2_bits);
}

/* Called through bdrv_save_vmstate (node lock held): write bytes at pos of the area. */
int qcow2_save_vmstate(BlockDriverState *bs, const void *buf, uint64_t pos, uint64_t bytes)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t start = vmstate_offset(s);
    uint64_t limit = vmstate_addressable_end(s);
    if (start >= limit || pos > limit - start || bytes > limit - start - pos) {
        return -EFBIG;
    }
    return qcow2_pwrite(bs, start + pos, bytes, buf, 0);
}

/* Called through bdrv_load_vmstate (node lock held): read bytes at pos of the area. */
int qcow2_load_vmstate(BlockDriverState *bs, void *buf, uint64_t pos, uint64_t bytes)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t start = vmstate_offset(s);
    uint64_t limit = vmstate_addressable_end(s);
    uint64_t avail = 0;
    /* Nothing can be stored where no L1 table reaches: that part reads as zeroes. */
    if (start < limit && pos < limit - start) {
        avail = QKIT_MIN(bytes, limit - start - pos);
    }
    memset((uint8_t *)buf + avail, 0, bytes - avail);
    return avail ? qcow2_pread(bs, start + pos, avail, buf, 0) : 0;
}
