/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * guest-file-*: open a file in the guest and read, write, seek, flush and close it by
 * handle. Handles count up from 1000 across restarts (the state file keeps the next
 * one); a closed handle is gone for good.
 */
#include "qga/ga.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* fopen modes qemu-ga accepts and the open(2) flags each means. */
static const struct {
    const char *mode;
    int flags;
} ga_file_modes[] = {
    { "r", O_RDONLY },
    { "rb", O_RDONLY },
    { "w", O_WRONLY | O_CREAT | O_TRUNC },
    { "wb", O_WRONLY | O_CREAT | O_TRUNC },
    { "a", O_WRONLY | O_CREAT | O_APPEND },
    { "ab", O_WRONLY | O_CREAT | O_APPEND },
    { "r+", O_RDWR },
    { "rb+", O_RDWR },
    { "r+b", O_RDWR },
    { "w+", O_RDWR | O_CREAT | O_TRUNC },
    { "wb+", O_RDWR | O_CREAT | O_TRUNC },
    { "w+b", O_RDWR | O_CREAT | O_TRUNC },
    { "a+", O_RDWR | O_CREAT | O_APPEND },
    { "ab+", O_RDWR | O_CREAT | O_APPEND },
    { "a+b", O_RDWR | O_CREAT | O_APPEND },
};
/* New files are private to root, as qemu-ga makes them. */
#define GA_FILE_CREATE_MODE 0600

/* The open file behind a handle, or NULL with qemu-ga's message. */
static GAFile *file_lookup(GAState *s, int64_t handle, Error **errp)
{
    for (GAFile *f = s->files; f; f = f->next) {
        if (f->handle == handle) {
            return f;
        }
    }
    error_setg(errp, "handle '%lld' has not been found", (long long)handle);
    return NULL;
}

void ga_files_close_all(GAState *s)
{
    while (s->files) {
        GAFile *f = s->files;
        s->files = f->next;
        fclose(f->fh);
        free(f);
    }
}

/* guest-file-open: a new handle for path opened with an fopen mode (default "r"). */
static json_t *cmd_open(void *opaque, json_t *args, Error **errp)
{
    GAState *s = opaque;
    const char *path = qmp_get_str(args, "path", "");
    const char *mode = qmp_get_str(args, "mode", "r");
    int flags = -1, fd;
    FILE *fh;

    for (size_t i = 0; i < sizeof(ga_file_modes) / sizeof(ga_file_modes[0]); i++) {
        if (!strcmp(mode, ga_file_modes[i].mode)) {
            flags = ga_file_modes[i].flags;
        }
    }
    if (flags < 0) {
        error_setg(errp, "invalid file open mode '%s'", mode);
        return NULL;
    }
    fd = open(path, flags | O_CLOEXEC | O_NONBLOCK, GA_FILE_CREATE_MODE);
    if (fd < 0) {
        error_setg_errno(errp, errno, "failed to open file '%s' (mode: '%s')", path, mode);
        return NULL;
    }
    /* Reads and writes block like a plain fopen'd file; only open must not hang. */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    fh = fdopen(fd, mode);
    if (!fh) {
        error_setg_errno(errp, errno, "failed to open file '%s' (mode: '%s')", path, mode);
        close(fd);
        return NULL;
    }
    GAFile *f = calloc(1, sizeof(*f));
    if (!f) {
        abort();
    }
    f->handle = s->next_handle++;
    f->fh = fh;
    f->next = s->files;
    s->files = f;
    Error *err = NULL;
    if (ga_state_save(s, &err) < 0) {
        ga_log(s, "critical", "%s", error_get_pretty(err));
        error_free(err);
    }
    return json_integer(f->handle);
}

static json_t *cmd_close(void *opaque, json_t *args, Error **errp)
{
    GAState *s = opaque;
    int64_t handle = qmp_get_int(args, "handle", 0);
    GAFile **pp = &s->files;

    if (!file_lookup(s, handle, errp)) {
        return NULL;
    }
    while ((*pp)->handle != handle) {
        pp = &(*pp)->next;
    }
    GAFile *f = *pp;
    *pp = f->next;
    int rc = fclose(f->fh);
    free(f);
    if (rc == EOF) {
        error_setg_errno(errp, errno, "failed to close handle");
        return NULL;
    }
    return json_object();
}

static json_t *cmd_read(void *opaque, json_t *args, Error **errp)
{
    GAState *s = opaque;
    GAFile *f = file_lookup(s, qmp_get_int(args, "handle", 0), errp);
    int64_t count = qmp_get_int(args, "count", QGA_READ_COUNT_DEFAULT);
    unsigned char *buf;
    json_t *ret;

    if (!f) {
        return NULL;
    }
    if (count < 0 || (uint64_t)count > QGA_READ_COUNT_MAX) {
        error_setg(errp, "value '%lld' is invalid for argument count", (long long)count);
        return NULL;
    }
    buf = malloc(count + 1);
    if (!buf) {
        error_setg(errp, "failed to allocate memory");
        return NULL;
    }
    size_t n = fread(buf, 1, count, f->fh);
    if (ferror(f->fh)) {
        error_setg_errno(errp, errno, "failed to read file");
        clearerr(f->fh);
        free(buf);
        return NULL;
    }
    char *b64 = ga_base64_encode(buf, n);
    ret = json_pack("{sIsssb}", "count", (json_int_t)n, "buf-b64", b64, "eof",
                    (int)(feof(f->fh) != 0));
    free(b64);
    free(buf);
    return ret;
}

static json_t *cmd_write(void *opaque, json_t *args, Error **errp)
{
    GAState *s = opaque;
    GAFile *f = file_lookup(s, qmp_get_int(args, "handle", 0), errp);
    json_t *b64 = json_object_get(args, "buf-b64");
    unsigned char *buf;
    size_t len;
    json_t *ret = NULL;

    if (!f) {
        return NULL;
    }
    if (!ga_base64_check(json_string_value(b64), json_string_length(b64), errp)) {
        return NULL;
    }
    buf = ga_base64_decode_glib(json_string_value(b64), &len);
    int64_t count = qmp_get_int(args, "count", (int64_t)len);
    if (count < 0 || (uint64_t)count > len) {
        error_setg(errp, "value '%lld' is invalid for argument count", (long long)count);
        goto out;
    }
    size_t n = fwrite(buf, 1, count, f->fh);
    if (ferror(f->fh)) {
        error_setg_errno(errp, errno, "failed to write to file");
        clearerr(f->fh);
        goto out;
    }
    ret = json_pack("{sIsb}", "count", (json_int_t)n, "eof", (int)(feof(f->fh) != 0));
out:
    free(buf);
    return ret;
}

static json_t *cmd_seek(void *opaque, json_t *args, Error **errp)
{
    GAState *s = opaque;
    GAFile *f = file_lookup(s, qmp_get_int(args, "handle", 0), errp);
    json_t *w = json_object_get(args, "whence");
    int whence;

    if (!f) {
        return NULL;
    }
    if (json_is_integer(w)) {
        json_int_t v = json_integer_value(w);
        /* qemu-ga maps its own wire codes 0..2, which equal SEEK_SET..SEEK_END */
        if (v < SEEK_SET || v > SEEK_END) {
            error_setg(errp, "invalid whence code %lld", (long long)v);
            return NULL;
        }
        whence = (int)v;
    } else {
        const char *n = json_string_value(w);
        whence = !strcmp(n, "set") ? SEEK_SET : !strcmp(n, "cur") ? SEEK_CUR : SEEK_END;
    }
    if (fseeko(f->fh, qmp_get_int(args, "offset", 0), whence) < 0) {
        error_setg_errno(errp, errno, "failed to seek file");
        return NULL;
    }
    off_t pos = ftello(f->fh);
    clearerr(f->fh);
    return json_pack("{sIsb}", "position", (json_int_t)pos, "eof", (int)(feof(f->fh) != 0));
}

static json_t *cmd_flush(void *opaque, json_t *args, Error **errp)
{
    GAState *s = opaque;
    GAFile *f = file_lookup(s, qmp_get_int(args, "handle", 0), errp);

    if (!f) {
        return NULL;
    }
    if (fflush(f->fh) == EOF) {
        error_setg_errno(errp, errno, "failed to flush file");
        return NULL;
    }
    return json_object();
}

static const QmpArg open_args[] = {
    { "path", QMP_T_STR }, { "mode", QMP_T_STR, QMP_ARG_OPTIONAL }, { NULL },
};
static const QmpArg handle_args[] = { { "handle", QMP_T_INT }, { NULL } };
static const QmpArg read_args[] = {
    { "handle", QMP_T_INT }, { "count", QMP_T_INT, QMP_ARG_OPTIONAL }, { NULL },
};
static const QmpArg write_args[] = {
    { "handle", QMP_T_INT }, { "buf-b64", QMP_T_STR },
    { "count", QMP_T_INT, QMP_ARG_OPTIONAL }, { NULL },
};
static const char *const seek_names[] = { "set", "cur", "end", NULL };
static const QmpArg seek_args[] = {
    { "handle", QMP_T_INT }, { "offset", QMP_T_INT },
    { "whence", QMP_T_INT_OR_ENUM, 0, NULL, seek_names, "GuestFileWhence" }, { NULL },
};

const QmpCommandDef ga_file_cmds[] = {
    { "guest-file-open", cmd_open, open_args },
    { "guest-file-close", cmd_close, handle_args },
    { "guest-file-read", cmd_read, read_args },
    { "guest-file-write", cmd_write, write_args },
    { "guest-file-seek", cmd_seek, seek_args },
    { "guest-file-flush", cmd_flush, handle_args },
    { NULL },
};
