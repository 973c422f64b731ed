/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * guest-ssh-*-authorized-keys: read, add to and remove from a user's
 * ~/.ssh/authorized_keys, creating the directory and file with the user's ownership.
 */
#include "qga/ga.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define GA_SSH_DIR_MODE 0700
#define GA_SSH_FILE_MODE 0600

/* The user's authorized_keys path (and .ssh dir), or NULL with qemu-ga's message. */
static char *keys_path(const char *user, struct passwd *pw_out, char **dir, Error **errp)
{
    struct passwd *pw;
    char *path = NULL;

    errno = 0;
    pw = getpwnam(user);
    if (!pw) {
        error_setg(errp, "failed to lookup user '%s': %s", user, strerror(errno));
        return NULL;
    }
    *pw_out = *pw;
    if (asprintf(dir, "%s/.ssh", pw->pw_dir) < 0 ||
        asprintf(&path, "%s/authorized_keys", *dir) < 0) {
        abort();
    }
    return path;
}

/* The non-empty, non-comment lines of the file (a new JSON array), or NULL if unreadable. */
static json_t *read_keys(const char *path, Error **errp)
{
    char *text = ga_read_file(path);
    json_t *keys;

    if (!text) {
        error_setg(errp, "Failed to read '%s': %s", path, strerror(errno));
        return NULL;
    }
    keys = json_array();
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l;
         l = strtok_r(NULL, "\n", &save)) {
        if (*l && *l != '#') {
            json_array_append_new(keys, json_string(l));
        }
    }
    free(text);
    return keys;
}

/* Keys given by the host must be single non-empty lines. */
static bool check_keys(json_t *keys, Error **errp)
{
    for (size_t i = 0; i < json_array_size(keys); i++) {
        const char *k = json_string_value(json_array_get(keys, i));
        if (!*k) {
            error_setg(errp, "the provided key is empty");
            return false;
        }
        if (strchr(k, '\n')) {
            error_setg(errp, "the provided key contains invalid characters");
            return false;
        }
    }
    return true;
}

static bool key_in(json_t *keys, const char *k)
{
    for (size_t i = 0; i < json_array_size(keys); i++) {
        if (!strcmp(json_string_value(json_array_get(keys, i)), k)) {
            return true;
        }
    }
    return false;
}

/* Replace the file with keys, owned by the user, creating ~/.ssh if needed. */
static bool write_keys(const char *dir, const char *path, const struct passwd *pw,
                       json_t *keys, Error **errp)
{
    char *tmp = NULL;
    FILE *f;

    if (mkdir(dir, GA_SSH_DIR_MODE) == 0) {
        if (chown(dir, pw->pw_uid, pw->pw_gid) < 0) {
            error_setg_errno(errp, errno, "failed to set ownership of '%s'", dir);
            return false;
        }
    } else if (errno != EEXIST) {
        error_setg_errno(errp, errno, "failed to create directory '%s'", dir);
        return false;
    }
    if (asprintf(&tmp, "%s.qga-tmp", path) < 0) {
        abort();
    }
    f = fopen(tmp, "w");
    if (!f) {
        error_setg_errno(errp, errno, "failed to write to '%s'", path);
        free(tmp);
        return false;
    }
    for (size_t i = 0; i < json_array_size(keys); i++) {
        fprintf(f, "%s\n", json_string_value(json_array_get(keys, i)));
    }
    if (fclose(f) != 0 || chmod(tmp, GA_SSH_FILE_MODE) < 0 ||
        chown(tmp, pw->pw_uid, pw->pw_gid) < 0 || rename(tmp, path) < 0) {
        error_setg_errno(errp, errno, "failed to write to '%s'", path);
        unlink(tmp);
        free(tmp);
        return false;
    }
    free(tmp);
    return true;
}

static json_t *cmd_get(void *opaque, json_t *args, Error **errp)
{
    struct passwd pw;
    char *dir = NULL, *path = keys_path(qmp_get_str(args, "username", ""), &pw, &dir, errp);
    json_t *keys = path ? read_keys(path, errp) : NULL;

    free(dir);
    free(path);
    return keys ? json_pack("{so}", "keys", keys) : NULL;
}

static json_t *cmd_add(void *opaque, json_t *args, Error **errp)
{
    struct passwd pw;
    json_t *add = json_object_get(args, "keys"), *keys = NULL, *ret = NULL;
    char *dir = NULL, *path;

    if (!check_keys(add, errp)) {
        return NULL;
    }
    path = keys_path(qmp_get_str(args, "username", ""), &pw, &dir, errp);
    if (!path) {
        return NULL;
    }
    if (!qmp_get_bool(args, "reset", false) && access(path, F_OK) == 0) {
        keys = read_keys(path, errp);
        if (!keys) {
            goto out;
        }
    }
    if (!keys) {
        keys = json_array();
    }
    for (size_t i = 0; i < json_array_size(add); i++) {
        const char *k = json_string_value(json_array_get(add, i));
        if (!key_in(keys, k)) {
            json_array_append_new(keys, json_string(k));
        }
    }
    if (write_keys(dir, path, &pw, keys, errp)) {
        ret = json_object();
    }
out:
    json_decref(keys);
    free(dir);
    free(path);
    return ret;
}

static json_t *cmd_remove(void *opaque, json_t *args, Error **errp)
{
    struct passwd pw;
    json_t *del = json_object_get(args, "keys"), *keys, *kept, *ret = NULL;
    char *dir = NULL, *path;

    if (!check_keys(del, errp)) {
        return NULL;
    }
    path = keys_path(qmp_get_str(args, "username", ""), &pw, &dir, errp);
    if (!path) {
        return NULL;
    }
    if (access(path, F_OK) != 0) {
        ret = json_object(); /* nothing to remove from */
        goto out;
    }
    keys = read_keys(path, errp);
    if (!keys) {
        goto out;
    }
    kept = json_array();
    for (size_t i = 0; i < json_array_size(keys); i++) {
        json_t *k = json_array_get(keys, i);
        if (!key_in(del, json_string_value(k))) {
            json_array_append(kept, k);
        }
    }
    if (write_keys(dir, path, &pw, kept, errp)) {
        ret = json_object();
    }
    json_decref(keys);
    json_decref(kept);
out:
    free(dir);
    free(path);
    return ret;
}

static const QmpArg get_args[] = { { "username", QMP_T_STR }, { NULL } };
static const QmpArg add_args[] = {
    { "username", QMP_T_STR }, { "keys", QMP_T_STR, QMP_ARG_LIST },
    { "reset", QMP_T_BOOL, QMP_ARG_OPTIONAL }, { NULL },
};
static const QmpArg remove_args[] = {
    { "username", QMP_T_STR }, { "keys", QMP_T_STR, QMP_ARG_LIST }, { NULL },
};

const QmpCommandDef ga_ssh_cmds[] = {
    { "guest-ssh-get-authorized-keys", cmd_get, get_args },
    { "guest-ssh-add-authorized-keys", cmd_add, add_args },
    { "guest-ssh-remove-authorized-keys", cmd_remove, remove_args },
    { NULL },
};
