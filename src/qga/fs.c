/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Filesystem commands: fsfreeze (FIFREEZE/FITHAW, with the optional hook), fstrim,
 * fsinfo, disks and disk statistics. Mounts come from /proc/self/mountinfo; only those
 * backed by a block device (major number not 0) count, as with qemu-ga.
 */
#include "qga/ga.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct GAMount {
    char *dir;
    char *type;
    char *devname; /* basename of the device, from sysfs */
    unsigned major, minor;
} GAMount;

/* Undo mountinfo's octal escapes (\040 for a space) in place. */
static void unescape_octal(char *s)
{
    char *o = s;
    for (; *s; s++) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] && s[3]) {
            *o++ = (char)(((s[1] - '0') << 6) | ((s[2] - '0') << 3) | (s[3] - '0'));
            s += 3;
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
}

static void mounts_free(GAMount *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(m[i].dir);
        free(m[i].type);
        free(m[i].devname);
    }
    free(m);
}

/* Block-device-backed mounts in mountinfo order. */
static GAMount *mounts_list(size_t *count, Error **errp)
{
    FILE *f = fopen("/proc/self/mountinfo", "r");
    GAMount *m = NULL;
    size_t n = 0;
    char *line = NULL;
    size_t cap = 0;

    if (!f) {
        error_setg_errno(errp, errno, "failed to open mtab file: '/proc/self/mountinfo'");
        return NULL;
    }
    while (getline(&line, &cap, f) > 0) {
        unsigned maj, min;
        char dir[PATH_MAX], type[256];
        char *dash = strstr(line, " - ");
        if (!dash || sscanf(line, "%*u %*u %u:%u %*s %4095s", &maj, &min, dir) != 3 ||
            sscanf(dash + 3, "%255s", type) != 1 || maj == 0) {
            continue;
        }
        unescape_octal(dir);
        m = realloc(m, (n + 1) * sizeof(*m));
        if (!m) {
            abort();
        }
        char sys[64], real[PATH_MAX];
        snprintf(sys, sizeof(sys), "/sys/dev/block/%u:%u", maj, min);
        const char *base = realpath(sys, real) ? strrchr(real, '/') + 1 : "";
        m[n++] = (GAMount){ strdup(dir), strdup(type), strdup(base), maj, min };
    }
    free(line);
    fclose(f);
    *count = n;
    return m;
}

/* Run the fsfreeze hook with "freeze" or "thaw", if one is configured and exists. */
static int run_hook(GAState *s, const char *arg, Error **errp)
{
    if (!s->fsfreeze_hook || access(s->fsfreeze_hook, X_OK) != 0) {
        return 0;
    }
    char *argv[] = { s->fsfreeze_hook, (char *)arg, NULL };
    int st = ga_run(argv, errp);
    if (st < 0) {
        return -1;
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st)) {
        error_setg(errp, "fsfreeze hook has failed with status %d",
                   WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        return -1;
    }
    return 0;
}

/* Enter or leave the frozen state: the marker file and the command filter. */
static void set_frozen(GAState *s, bool frozen)
{
    char *marker = ga_frozen_marker(s);
    if (frozen) {
        int fd = open(marker, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        if (fd >= 0) {
            close(fd);
        }
    } else {
        unlink(marker);
    }
    free(marker);
    s->frozen = frozen;
    ga_update_enabled(s);
}

static json_t *cmd_status(void *opaque, json_t *args, Error **errp)
{
    GAState *s = opaque;
    return json_string(s->frozen ? "frozen" : "thawed");
}

/* Freeze the listed mount points (all when list is NULL), innermost mounts first. */
static json_t *freeze(GAState *s, json_t *list, Error **errp)
{
    size_t n;
    int64_t count = 0;
    GAMount *m = mounts_list(&n, errp);

    if (!m) {
        return NULL;
    }
    if (run_hook(s, "freeze", errp) < 0) {
        mounts_free(m, n);
        return NULL;
    }
    set_frozen(s, true);
    for (size_t i = n; i-- > 0;) {
        bool wanted = !list;
        for (size_t k = 0; list && k < json_array_size(list); k++) {
            wanted |= !strcmp(json_string_value(json_array_get(list, k)), m[i].dir);
        }
        if (!wanted) {
            continue;
        }
        int fd = open(m[i].dir, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            error_setg_errno(errp, errno, "failed to open %s", m[i].dir);
            goto fail;
        }
        if (ioctl(fd, FIFREEZE) < 0) {
            int e = errno;
            close(fd);
            if (e == EOPNOTSUPP || e == EBUSY) {
                continue; /* not freezable, or frozen by someone else */
            }
            error_setg_errno(errp, e, "failed to freeze %s", m[i].dir);
            goto fail;
        }
        close(fd);
        s->frozen_mounts = realloc(s->frozen_mounts,
                                   (s->nfrozen + 1) * sizeof(*s->frozen_mounts));
        if (!s->frozen_mounts) {
            abort();
        }
        s->frozen_mounts[s->nfrozen++] = strdup(m[i].dir);
        count++;
    }
    mounts_free(m, n);
    if (count == 0) {
        set_frozen(s, false); /* nothing frozen: stay fully usable, as qemu-ga does */
    }
    return json_integer(count);
fail:
    mounts_free(m, n);
    ga_fs_thaw_all(s, NULL);
    return NULL;
}

static json_t *cmd_freeze(void *opaque, json_t *args, Error **errp)
{
    return freeze(opaque, NULL, errp);
}

static json_t *cmd_freeze_list(void *opaque, json_t *args, Error **errp)
{
    return freeze(opaque, json_object_get(args, "mountpoints"), errp);
}

int64_t ga_fs_thaw_all(GAState *s, Error **errp)
{
    size_t n;
    int64_t count = 0;
    GAMount *m = mounts_list(&n, errp);

    if (!m && n) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        int fd = open(m[i].dir, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            continue;
        }
        /* Thaw repeatedly: a filesystem may be frozen more than once. */
        bool thawed = false;
        while (ioctl(fd, FITHAW) == 0) {
            thawed = true;
        }
        count += thawed;
        close(fd);
    }
    mounts_free(m, n);
    for (size_t i = 0; i < s->nfrozen; i++) {
        free(s->frozen_mounts[i]);
    }
    s->nfrozen = 0;
    set_frozen(s, false);
    run_hook(s, "thaw", errp);
    return count;
}

static json_t *cmd_thaw(void *opaque, json_t *args, Error **errp)
{
    int64_t n = ga_fs_thaw_all(opaque, errp);
    return n < 0 ? NULL : json_integer(n);
}

/* guest-fstrim: FITRIM every mounted filesystem; per-path results. */
static json_t *cmd_fstrim(void *opaque, json_t *args, Error **errp)
{
    size_t n;
    GAMount *m = mounts_list(&n, errp);
    json_t *paths;
    int64_t minimum = qmp_get_int(args, "minimum", 0);

    if (!m && n) {
        return NULL;
    }
    paths = json_array();
    for (size_t i = n; i-- > 0;) {
        json_t *r = json_pack("{ss}", "path", m[i].dir);
        struct fstrim_range range = { 0, UINT64_MAX, (uint64_t)minimum };
        int fd = open(m[i].dir, O_RDONLY | O_CLOEXEC);
        char msg[256];
        if (fd < 0) {
            snprintf(msg, sizeof(msg), "failed to open: %s", strerror(errno));
            json_object_set_new(r, "error", json_string(msg));
        } else if (ioctl(fd, FITRIM, &range) < 0) {
            if (errno != ENOTTY && errno != EOPNOTSUPP) {
                snprintf(msg, sizeof(msg), "failed to trim: %s", strerror(errno));
                json_object_set_new(r, "error", json_string(msg));
            }
        } else {
            json_object_set_new(r, "minimum", json_integer((json_int_t)range.minlen));
            json_object_set_new(r, "trimmed", json_integer((json_int_t)range.len));
        }
        if (fd >= 0) {
            close(fd);
        }
        json_array_append_new(paths, r);
    }
    mounts_free(m, n);
    return json_pack("{so}", "paths", paths);
}

/* The bus address of a block device from its sysfs path (virtio on PCI, or unknown). */
static json_t *disk_address(const char *devname)
{
    char sys[PATH_MAX], real[PATH_MAX], dev[PATH_MAX];
    unsigned dom, bus, slot, fn;
    const char *p, *pci = NULL;
    json_t *a;

    snprintf(sys, sizeof(sys), "/sys/class/block/%s", devname);
    if (!realpath(sys, real) || strstr(real, "/virtual/")) {
        return NULL;
    }
    /* the last PCI function on the path is the disk's controller */
    for (p = real; (p = strchr(p, '/')); p++) {
        if (sscanf(p + 1, "%x:%x:%x.%x", &dom, &bus, &slot, &fn) == 4) {
            pci = p + 1;
        }
    }
    if (!pci) {
        return NULL;
    }
    sscanf(pci, "%x:%x:%x.%x", &dom, &bus, &slot, &fn);
    snprintf(dev, sizeof(dev), "/dev/%s", devname);
    a = json_object();
    json_object_set_new(a, "pci-controller",
                        json_pack("{sisisisi}", "domain", dom, "bus", bus, "slot", slot,
                                  "function", fn));
    json_object_set_new(a, "bus-type", json_string(strstr(real, "/virtio") ? "virtio"
                                                                            : "unknown"));
    json_object_set_new(a, "bus", json_integer(0));
    json_object_set_new(a, "target", json_integer(0));
    json_object_set_new(a, "unit", json_integer(0));
    json_object_set_new(a, "dev", json_string(dev));
    return a;
}

/* The whole-disk name of a device (itself, or the parent of a partition). */
static void disk_of(const char *devname, char *out, size_t len)
{
    char sys[PATH_MAX], real[PATH_MAX];
    snprintf(sys, sizeof(sys), "/sys/class/block/%s/partition", devname);
    snprintf(out, len, "%s", devname);
    if (access(sys, F_OK) == 0) {
        snprintf(sys, sizeof(sys), "/sys/class/block/%s/..", devname);
        if (realpath(sys, real)) {
            snprintf(out, len, "%s", strrchr(real, '/') + 1);
        }
    }
}

static json_t *cmd_fsinfo(void *opaque, json_t *args, Error **errp)
{
    size_t n;
    GAMount *m = mounts_list(&n, errp);
    json_t *list;

    if (!m && n) {
        return NULL;
    }
    list = json_array();
    for (size_t i = n; i-- > 0;) {
        json_t *fs = json_pack("{ssssss}", "name", m[i].devname, "mountpoint", m[i].dir,
                               "type", m[i].type);
        struct statvfs sv;
        if (statvfs(m[i].dir, &sv) == 0) {
            /* the total as a user sees it: used plus what non-root may still use */
            uint64_t used = (uint64_t)(sv.f_blocks - sv.f_bfree) * sv.f_frsize;
            uint64_t total = used + (uint64_t)sv.f_bavail * sv.f_frsize;
            json_object_set_new(fs, "total-bytes", json_integer((json_int_t)total));
            json_object_set_new(fs, "used-bytes", json_integer((json_int_t)used));
        }
        json_t *disks = json_array();
        char disk[NAME_MAX + 1];
        disk_of(m[i].devname, disk, sizeof(disk));
        json_t *addr = disk_address(disk);
        if (addr) {
            json_array_append_new(disks, addr);
        }
        json_object_set_new(fs, "disk", disks);
        json_array_append_new(list, fs);
    }
    mounts_free(m, n);
    return list;
}

/* guest-get-disks: each non-virtual disk in /sys/block, then its partitions. */
static json_t *cmd_disks(void *opaque, json_t *args, Error **errp)
{
    DIR *d = opendir("/sys/block");
    json_t *list = json_array();
    struct dirent *de;

    if (!d) {
        error_setg_errno(errp, errno, "opendir(\"/sys/block\")");
        json_decref(list);
        return NULL;
    }
    while ((de = readdir(d))) {
        char sys[PATH_MAX], real[PATH_MAX], dev[PATH_MAX];
        if (de->d_name[0] == '.') {
            continue;
        }
        snprintf(sys, sizeof(sys), "/sys/block/%s", de->d_name);
        if (!realpath(sys, real) || strstr(real, "/virtual/")) {
            continue;
        }
        snprintf(dev, sizeof(dev), "/dev/%s", de->d_name);
        json_t *disk = json_pack("{sssbs[]}", "name", dev, "partition", 0, "dependencies");
        json_t *addr = disk_address(de->d_name);
        if (addr) {
            json_object_set_new(disk, "address", addr);
        }
        json_array_append_new(list, disk);
        DIR *pd = opendir(sys);
        struct dirent *pe;
        while (pd && (pe = readdir(pd))) {
            char part[PATH_MAX * 2];
            snprintf(part, sizeof(part), "%s/%s/partition", sys, pe->d_name);
            if (pe->d_name[0] == '.' || access(part, F_OK) != 0) {
                continue;
            }
            snprintf(part, sizeof(part), "/dev/%s", pe->d_name);
            json_array_append_new(list, json_pack("{sssbs[s]}", "name", part, "partition", 1,
                                                  "dependencies", dev));
        }
        if (pd) {
            closedir(pd);
        }
    }
    closedir(d);
    return list;
}

/* guest-get-diskstats: /proc/diskstats, every device. */
static json_t *cmd_diskstats(void *opaque, json_t *args, Error **errp)
{
    static const char *const names[] = {
        "read-ios", "read-merges", "read-sectors", "read-ticks", "write-ios",
        "write-merges", "write-sectors", "write-ticks", "ios-pgr", "total-ticks",
        "weight-ticks", "discard-ios", "discard-merges", "discard-sectors",
        "discard-ticks", "flush-ios", "flush-ticks",
    };
    FILE *f = fopen("/proc/diskstats", "r");
    char *line = NULL;
    size_t cap = 0;
    json_t *list;

    if (!f) {
        error_setg_errno(errp, errno, "can't open(\"%s\")", "/proc/diskstats");
        return NULL;
    }
    list = json_array();
    while (getline(&line, &cap, f) > 0) {
        unsigned long long v[17];
        unsigned maj, min;
        char name[128];
        int got = sscanf(line, "%u %u %127s %llu %llu %llu %llu %llu %llu %llu %llu %llu "
                         "%llu %llu %llu %llu %llu %llu %llu %llu", &maj, &min, name,
                         &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8],
                         &v[9], &v[10], &v[11], &v[12], &v[13], &v[14], &v[15], &v[16]);
        if (got < 7) {
            continue;
        }
        json_t *stats = json_object();
        if (got == 7) {
            /* old partition format: reads, read sectors, writes, write sectors */
            json_object_set_new(stats, "read-ios", json_integer(v[0]));
            json_object_set_new(stats, "read-sectors", json_integer(v[1]));
            json_object_set_new(stats, "write-ios", json_integer(v[2]));
            json_object_set_new(stats, "write-sectors", json_integer(v[3]));
        } else {
            for (int i = 0; i < got - 3 && i < 17; i++) {
                json_object_set_new(stats, names[i], json_integer((json_int_t)v[i]));
            }
        }
        json_array_append_new(list, json_pack("{sssIsIso}", "name", name, "major",
                                              (json_int_t)maj, "minor", (json_int_t)min,
                                              "stats", stats));
    }
    free(line);
    fclose(f);
    return list;
}

static const QmpArg freeze_list_args[] = {
    { "mountpoints", QMP_T_STR, QMP_ARG_OPTIONAL | QMP_ARG_LIST }, { NULL },
};
static const QmpArg fstrim_args[] = { { "minimum", QMP_T_INT, QMP_ARG_OPTIONAL }, { NULL } };

const QmpCommandDef ga_fs_cmds[] = {
    { "guest-fsfreeze-status", cmd_status },
    { "guest-fsfreeze-freeze", cmd_freeze },
    { "guest-fsfreeze-freeze-list", cmd_freeze_list, freeze_list_args },
    { "guest-fsfreeze-thaw", cmd_thaw },
    { "guest-fstrim", cmd_fstrim, fstrim_args },
    { "guest-get-fsinfo", cmd_fsinfo },
    { "guest-get-disks", cmd_disks },
    { "guest-get-diskstats", cmd_diskstats },
    { NULL },
};
