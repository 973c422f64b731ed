/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The agent's state: the command table in schema order, the persistent state file
 * (next file handle, as qemu-ga keeps it), and which commands are enabled.
 */
#include "qga/ga.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GA_STATE_FILE "qga.state"
#define GA_FROZEN_SUFFIX ".isfrozen"
#define GA_STATE_GROUP "[global]"
#define GA_STATE_KEY "fd_counter="

/* Every command, in the order of qemu-ga's schema (guest-info lists them reversed). */
const char *const ga_command_names[] = {
    "guest-sync-delimited", "guest-sync", "guest-ping", "guest-get-time",
    "guest-set-time", "guest-info", "guest-shutdown", "guest-file-open",
    "guest-file-close", "guest-file-read", "guest-file-write", "guest-file-seek",
    "guest-file-flush", "guest-fsfreeze-status", "guest-fsfreeze-freeze",
    "guest-fsfreeze-freeze-list", "guest-fsfreeze-thaw", "guest-fstrim",
    "guest-suspend-disk", "guest-suspend-ram", "guest-suspend-hybrid",
    "guest-network-get-interfaces", "guest-get-vcpus", "guest-set-vcpus",
    "guest-get-disks", "guest-get-fsinfo", "guest-set-user-password",
    "guest-get-memory-blocks", "guest-set-memory-blocks", "guest-get-memory-block-info",
    "guest-exec-status", "guest-exec", "guest-get-host-name", "guest-get-users",
    "guest-get-timezone", "guest-get-osinfo", "guest-get-devices",
    "guest-ssh-get-authorized-keys", "guest-ssh-add-authorized-keys",
    "guest-ssh-remove-authorized-keys", "guest-get-diskstats", "guest-get-cpustats",
    NULL,
};

/* Commands that stay enabled while filesystems are frozen. */
static const char *const ga_freeze_allowed[] = {
    "guest-ping", "guest-info", "guest-sync", "guest-sync-delimited",
    "guest-fsfreeze-status", "guest-fsfreeze-thaw", NULL,
};

/* Commands qemu-ga builds for Linux but disables there (Windows-only work). */
static const char *const ga_linux_disabled[] = { "guest-get-devices", NULL };

static bool name_in(const char *name, const char *const *list)
{
    for (; list && *list; list++) {
        if (!strcmp(*list, name)) {
            return true;
        }
    }
    return false;
}

/* The definition of a command from whichever group file has it. */
static const QmpCommandDef *ga_find_def(const char *name)
{
    const QmpCommandDef *const groups[] = {
        ga_system_cmds, ga_file_cmds, ga_fs_cmds, ga_exec_cmds, ga_network_cmds,
        ga_hw_cmds, ga_ssh_cmds, ga_devices_cmds,
    };
    for (size_t g = 0; g < sizeof(groups) / sizeof(groups[0]); g++) {
        for (const QmpCommandDef *d = groups[g]; d->name; d++) {
            if (!strcmp(d->name, name)) {
                return d;
            }
        }
    }
    return NULL;
}

void ga_update_enabled(GAState *s)
{
    for (size_t i = 0; i < s->reg.ncmds; i++) {
        QmpCommand *c = &s->reg.cmds[i];
        const char *n = c->def->name;
        bool configured = !name_in(n, ga_linux_disabled) &&
                          !name_in(n, (const char *const *)s->blocked) &&
                          (!s->allowed || name_in(n, (const char *const *)s->allowed));
        bool frozen_out = s->frozen && !name_in(n, ga_freeze_allowed);
        c->enabled = configured && !frozen_out;
        c->disable_reason = configured && frozen_out ? "the agent is in frozen state" : NULL;
    }
}

int ga_state_save(GAState *s, Error **errp)
{
    char *tmp = NULL;
    FILE *f;

    if (asprintf(&tmp, "%s.tmp", s->state_path) < 0) {
        abort();
    }
    f = fopen(tmp, "w");
    if (!f) {
        error_setg_errno(errp, errno, "failed to write persistent state to %s",
                         s->state_path);
        free(tmp);
        return -1;
    }
    fprintf(f, "%s\n%s%lld\n", GA_STATE_GROUP, GA_STATE_KEY, (long long)s->next_handle);
    if (fclose(f) != 0 || rename(tmp, s->state_path) < 0) {
        error_setg_errno(errp, errno, "failed to write persistent state to %s",
                         s->state_path);
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}

/* Read the state file, creating it with defaults when absent. */
static int ga_state_load(GAState *s, Error **errp)
{
    char *text = ga_read_file(s->state_path);
    char *frozen = NULL;

    s->next_handle = QGA_FIRST_HANDLE;
    if (text) {
        char *p = strstr(text, GA_STATE_KEY);
        if (p) {
            long long v = strtoll(p + strlen(GA_STATE_KEY), NULL, 10);
            if (v > 0) {
                s->next_handle = v;
            }
        }
        free(text);
    } else if (ga_state_save(s, errp) < 0) {
        error_prepend(errp, "unable to create state file at path %s: ", s->state_path);
        return -1;
    }
    if (asprintf(&frozen, "%s%s", s->state_path, GA_FROZEN_SUFFIX) < 0) {
        abort();
    }
    /* A previous instance died with filesystems frozen: stay limited until thawed. */
    s->frozen = access(frozen, F_OK) == 0;
    free(frozen);
    return 0;
}

int ga_state_init(GAState *s, const char *statedir, Error **errp)
{
    qmp_registry_init(&s->reg);
    pthread_mutex_init(&s->exec_lock, NULL);
    s->statedir = strdup(statedir);
    if (asprintf(&s->state_path, "%s/%s", statedir, GA_STATE_FILE) < 0) {
        abort();
    }
    for (const char *const *n = ga_command_names; *n; n++) {
        const QmpCommandDef *d = ga_find_def(*n);
        if (d) {
            qmp_register(&s->reg, d);
        }
    }
    if (ga_state_load(s, errp) < 0) {
        return -1;
    }
    ga_update_enabled(s);
    return 0;
}

void ga_state_destroy(GAState *s)
{
    ga_files_close_all(s);
    ga_exec_cleanup(s);
    qmp_registry_destroy(&s->reg);
    for (size_t i = 0; i < s->nfrozen; i++) {
        free(s->frozen_mounts[i]);
    }
    free(s->frozen_mounts);
    free(s->statedir);
    free(s->state_path);
    pthread_mutex_destroy(&s->exec_lock);
}

/* Path of the marker that says filesystems are frozen. */
char *ga_frozen_marker(GAState *s)
{
    char *p = NULL;
    if (asprintf(&p, "%s%s", s->state_path, GA_FROZEN_SUFFIX) < 0) {
        abort();
    }
    return p;
}
