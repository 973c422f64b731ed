/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Processor and memory commands: vCPUs and memory blocks through sysfs (online state,
 * whether they can go offline, setting it) and per-CPU times from /proc/stat.
 */
#include "qga/ga.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GA_CPU_DIR "/sys/devices/system/cpu"
#define GA_MEM_DIR "/sys/devices/system/memory"
#define GA_MS_PER_SEC 1000

/* Write a sysfs attribute; 0 or -errno. */
static int sysfs_write(const char *path, const char *val)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC), ret = 0;
    if (fd < 0) {
        return -errno;
    }
    if (write(fd, val, strlen(val)) < 0) {
        ret = -errno;
    }
    close(fd);
    return ret;
}

/* One CPU's state; false if it does not exist. */
static bool cpu_state(long id, bool *online, bool *can_offline)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), GA_CPU_DIR "/cpu%ld", id);
    if (access(path, F_OK) != 0) {
        return false;
    }
    snprintf(path, sizeof(path), GA_CPU_DIR "/cpu%ld/online", id);
    char *v = ga_read_file(path);
    *can_offline = v != NULL;
    *online = !v || v[0] == '1';
    free(v);
    return true;
}

static json_t *cmd_get_vcpus(void *opaque, json_t *args, Error **errp)
{
    long max = sysconf(_SC_NPROCESSORS_CONF);
    json_t *list = json_array();

    for (long id = 0; id < max; id++) {
        bool online, can_offline;
        if (!cpu_state(id, &online, &can_offline)) {
            continue;
        }
        /* newest first, as qemu-ga builds its list */
        json_array_insert_new(list, 0, json_pack("{sIsbsb}", "logical-id", (json_int_t)id,
                                                 "online", online, "can-offline",
                                                 can_offline));
    }
    return list;
}

static json_t *cmd_set_vcpus(void *opaque, json_t *args, Error **errp)
{
    json_t *vcpus = json_object_get(args, "vcpus");
    int64_t done = 0;

    for (size_t i = 0; i < json_array_size(vcpus); i++) {
        json_t *v = json_array_get(vcpus, i);
        int64_t id = qmp_get_int(v, "logical-id", 0);
        bool want = qmp_get_bool(v, "online", true), online, can_offline;
        if (id < 0 || !cpu_state(id, &online, &can_offline)) {
            error_setg(errp, "Invalid parameter 'logical-id'");
            break;
        }
        if (online != want) {
            char path[PATH_MAX];
            if (!want && !can_offline) {
                error_setg(errp, "logical processor #%lld can't be offlined",
                           (long long)id);
                break;
            }
            snprintf(path, sizeof(path), GA_CPU_DIR "/cpu%lld/online", (long long)id);
            int r = sysfs_write(path, want ? "1" : "0");
            if (r < 0) {
                error_setg_errno(errp, -r, "failed to write to %s", path);
                break;
            }
        }
        done++;
    }
    if (*errp && done > 0) {
        /* some were processed: report how many, as qemu-ga does */
        error_free(*errp);
        *errp = NULL;
    }
    return *errp ? NULL : json_integer(done);
}

/* A memory block's attribute file, read into a string (malloc'd) or NULL. */
static char *mem_attr(const char *block, const char *attr)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), GA_MEM_DIR "/%s/%s", block, attr);
    return ga_read_file(path);
}

static json_t *cmd_get_memory_blocks(void *opaque, json_t *args, Error **errp)
{
    DIR *d = opendir(GA_MEM_DIR);
    json_t *list;
    struct dirent *de;

    if (!d) {
        error_setg_errno(errp, errno, "Can't open directory \"" GA_MEM_DIR "\"");
        return NULL;
    }
    list = json_array();
    while ((de = readdir(d))) {
        unsigned long long idx;
        char end;
        if (sscanf(de->d_name, "memory%llu%c", &idx, &end) != 1) {
            continue;
        }
        char *state = mem_attr(de->d_name, "state");
        char *removable = mem_attr(de->d_name, "removable");
        json_t *b = json_object();
        json_object_set_new(b, "phys-index", json_integer((json_int_t)idx));
        json_object_set_new(b, "online", json_boolean(state && !strncmp(state, "online", 6)));
        json_object_set_new(b, "can-offline", json_boolean(removable && removable[0] == '1'));
        json_array_append_new(list, b);
        free(state);
        free(removable);
    }
    closedir(d);
    return list;
}

static json_t *cmd_set_memory_blocks(void *opaque, json_t *args, Error **errp)
{
    json_t *blks = json_object_get(args, "mem-blks");
    json_t *list = json_array();

    for (size_t i = 0; i < json_array_size(blks); i++) {
        json_t *b = json_array_get(blks, i);
        uint64_t idx = qmp_value_u64(json_object_get(b, "phys-index"));
        bool want = qmp_get_bool(b, "online", true);
        char name[64], path[PATH_MAX];
        json_t *r = json_object();
        json_object_set_new(r, "phys-index", idx > INT64_MAX ? json_u64_new(idx)
                                                             : json_integer((json_int_t)idx));
        snprintf(name, sizeof(name), "memory%llu", (unsigned long long)idx);
        snprintf(path, sizeof(path), GA_MEM_DIR "/%s", name);
        char *state = access(path, F_OK) == 0 ? mem_attr(name, "state") : NULL;
        if (!state) {
            json_object_set_new(r, "response", json_string("not-found"));
            json_object_set_new(r, "error-code", json_integer(ENOENT));
        } else if ((!strncmp(state, "online", 6)) == want) {
            json_object_set_new(r, "response", json_string("success"));
        } else {
            char *removable = mem_attr(name, "removable");
            if (!want && !(removable && removable[0] == '1')) {
                json_object_set_new(r, "response", json_string("operation-not-supported"));
            } else {
                snprintf(path, sizeof(path), GA_MEM_DIR "/%s/state", name);
                int e = sysfs_write(path, want ? "online" : "offline");
                json_object_set_new(r, "response",
                                    json_string(e ? "operation-failed" : "success"));
                if (e) {
                    json_object_set_new(r, "error-code", json_integer(-e));
                }
            }
            free(removable);
        }
        free(state);
        json_array_append_new(list, r);
    }
    return list;
}

static json_t *cmd_memory_block_info(void *opaque, json_t *args, Error **errp)
{
    char *v = ga_read_file(GA_MEM_DIR "/block_size_bytes");
    if (!v) {
        error_setg_errno(errp, errno, "open(\"%s\")", GA_MEM_DIR "/block_size_bytes");
        return NULL;
    }
    unsigned long long size = strtoull(v, NULL, 16);
    free(v);
    return json_pack("{sI}", "size", (json_int_t)size);
}

/* guest-get-cpustats: each "cpuN" line of /proc/stat, in milliseconds. */
static json_t *cmd_cpustats(void *opaque, json_t *args, Error **errp)
{
    static const char *const names[] = {
        "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest",
        "guestnice",
    };
    long tck = sysconf(_SC_CLK_TCK);
    FILE *f = fopen("/proc/stat", "r");
    char line[1024];
    json_t *list;

    if (!f) {
        error_setg_errno(errp, errno, "can't open(\"%s\")", "/proc/stat");
        return NULL;
    }
    list = json_array();
    while (fgets(line, sizeof(line), f)) {
        unsigned long long v[10];
        int cpu;
        if (strncmp(line, "cpu", 3) || line[3] < '0' || line[3] > '9') {
            continue; /* the "cpu" line sums all CPUs */
        }
        int got = sscanf(line, "cpu%d %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &cpu,
                         &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
        if (got < 5) {
            continue;
        }
        json_t *st = json_pack("{sssi}", "type", "linux", "cpu", cpu);
        for (int i = 0; i < got - 1; i++) {
            json_object_set_new(st, names[i],
                                json_integer((json_int_t)(v[i] * GA_MS_PER_SEC / tck)));
        }
        json_array_append_new(list, st);
    }
    fclose(f);
    return list;
}

static const QmpArg vcpu_members[] = {
    { "logical-id", QMP_T_INT }, { "online", QMP_T_BOOL },
    { "can-offline", QMP_T_BOOL, QMP_ARG_OPTIONAL }, { NULL },
};
static const QmpArg set_vcpus_args[] = {
    { "vcpus", QMP_T_OBJECT, QMP_ARG_LIST, vcpu_members }, { NULL },
};
static const QmpArg memblk_members[] = {
    { "phys-index", QMP_T_UINT64 }, { "online", QMP_T_BOOL },
    { "can-offline", QMP_T_BOOL, QMP_ARG_OPTIONAL }, { NULL },
};
static const QmpArg set_memblks_args[] = {
    { "mem-blks", QMP_T_OBJECT, QMP_ARG_LIST, memblk_members }, { NULL },
};

const QmpCommandDef ga_hw_cmds[] = {
    { "guest-get-vcpus", cmd_get_vcpus },
    { "guest-set-vcpus", cmd_set_vcpus, set_vcpus_args },
    { "guest-get-memory-blocks", cmd_get_memory_blocks },
    { "guest-set-memory-blocks", cmd_set_memory_blocks, set_memblks_args },
    { "guest-get-memory-block-info", cmd_memory_block_info },
    { "guest-get-cpustats", cmd_cpustats },
    { NULL },
};
