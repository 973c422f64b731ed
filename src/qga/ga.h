/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The guest agent: its state (one GAState per agent, passed to every command), the
 * command groups (one file each) and the loop that serves one channel.
 */
#ifndef QGA_GA_H
#define QGA_GA_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "qmp/qmp.h"

/* The version guest-info reports: the QEMU release whose agent qkit-ga stands in for. */
#define QGA_VERSION "7.2.22"
#define QGA_DEFAULT_VIRTIO_PATH "/dev/virtio-ports/org.qemu.guest_agent.0"
#define QGA_DEFAULT_SERIAL_PATH "/dev/ttyS0"
#define QGA_DEFAULT_PIDFILE "/var/run/qemu-ga.pid"
#define QGA_DEFAULT_STATEDIR "/var/run"
#define QGA_DEFAULT_CONFIG "/etc/qemu/qemu-ga.conf"
#define QGA_DEFAULT_FSFREEZE_HOOK "/etc/qemu/fsfreeze-hook"
/* The byte sent before guest-sync-delimited's reply so a client can skip stale output. */
#define QGA_SENTINEL_BYTE 0xFF
/* First file handle number; later ones count up and persist in the state file. */
#define QGA_FIRST_HANDLE 1000
/* Most bytes one guest-file-read may return, and its default count. */
#define QGA_READ_COUNT_MAX (48ULL << 20)
#define QGA_READ_COUNT_DEFAULT 4096
/* guest-exec keeps at most this much of each output stream. */
#define QGA_EXEC_MAX_OUTPUT (16ULL << 20)

typedef struct GAFile {
    int64_t handle;
    FILE *fh;
    struct GAFile *next;
} GAFile;

typedef struct GAExec GAExec;

/* Everything one agent instance knows; commands get it as their opaque pointer. */
typedef struct GAState {
    QmpRegistry reg;
    char *statedir;
    char *state_path;
    char *fsfreeze_hook; /* NULL: no hook */
    bool frozen;
    char **frozen_mounts; /* mount points frozen by us, in freeze order */
    size_t nfrozen;
    bool delimit_response; /* set by guest-sync-delimited for its own reply */
    int64_t next_handle;
    GAFile *files;
    pthread_mutex_t exec_lock;
    GAExec *execs;
    char **blocked; /* from -b, NULL-terminated */
    char **allowed; /* from -a, NULL-terminated; NULL: all allowed */
    FILE *log;       /* where messages go (stderr unless -l) */
    bool verbose;    /* log debug messages too */
} GAState;

typedef enum GAMethod {
    GA_METHOD_VIRTIO_SERIAL,
    GA_METHOD_ISA_SERIAL,
    GA_METHOD_UNIX_LISTEN,
    GA_METHOD_VSOCK_LISTEN,
} GAMethod;

/* How the agent meets the host. */
typedef struct GAChannelOpts {
    GAMethod method;
    const char *path;
    bool retry; /* reopen a device that went away instead of failing */
} GAChannelOpts;

/* Parse a -m name; 0 or -1. */
int ga_method_parse(const char *name, GAMethod *m);
const char *ga_method_name(GAMethod m);
/*
 * Serve requests on the channel until *quit becomes non-zero. Returns 0, or -1 with
 * errp set when the channel cannot be opened.
 */
int ga_serve(GAState *s, const GAChannelOpts *o, volatile int *quit, Error **errp);
/* "seconds.micros: level: message" to the log; debug only when verbose. */
void ga_log(GAState *s, const char *level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* State and command setup; returns -errno with errp set. */
int ga_state_init(GAState *s, const char *statedir, Error **errp);
void ga_state_destroy(GAState *s);
/* Recompute which commands are enabled (block/allow lists, frozen filesystems). */
void ga_update_enabled(GAState *s);
/* Persist the next handle number in the state file. */
int ga_state_save(GAState *s, Error **errp);
/* The command names in schema order, NULL-terminated. */
extern const char *const ga_command_names[];

/* Command tables of each group, ending with a NULL name. */
extern const QmpCommandDef ga_system_cmds[];
extern const QmpCommandDef ga_file_cmds[];
extern const QmpCommandDef ga_fs_cmds[];
extern const QmpCommandDef ga_exec_cmds[];
extern const QmpCommandDef ga_network_cmds[];
extern const QmpCommandDef ga_hw_cmds[];
extern const QmpCommandDef ga_ssh_cmds[];
extern const QmpCommandDef ga_devices_cmds[];

/* Close every open guest-file handle (agent shutdown). */
void ga_files_close_all(GAState *s);
/* Forget finished guest-exec processes and stop waiting for the rest (shutdown). */
void ga_exec_cleanup(GAState *s);
/* Thaw whatever this agent froze (shutdown, or a client's guest-fsfreeze-thaw). */
int64_t ga_fs_thaw_all(GAState *s, Error **errp);

/* Path of the marker file that says filesystems are frozen (malloc'd). */
char *ga_frozen_marker(GAState *s);

/* Shared helpers for command files. */
/* Read a whole small file (sysfs/proc); malloc'd NUL-terminated text or NULL. */
char *ga_read_file(const char *path);
/* Run argv (argv[0] looked up in PATH) with stdin from /dev/null; its exit status. */
int ga_run(char *const argv[], Error **errp);
/* The same with the program at path (execv, no PATH search); NULL path is ga_run. */
int ga_run_path(const char *path, char *const argv[], Error **errp);
/* base64 encode, and decode as glib does (never fails; malloc'd). */
char *ga_base64_encode(const unsigned char *data, size_t len);
unsigned char *ga_base64_decode_glib(const char *text, size_t *len);
/* QEMU's check before decoding: only base64 characters and newlines (len bytes). */
bool ga_base64_check(const char *text, size_t len, Error **errp);
/* Find prog in PATH; malloc'd full path or NULL. */
char *ga_find_in_path(const char *prog);

/* The message qemu-ga gives for an unsupported command. */
#define QGA_ERR_UNSUPPORTED "this feature or command is not currently supported"

#endif
