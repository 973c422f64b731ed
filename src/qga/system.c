/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * System commands: sync, ping, info, time, shutdown, suspend, host name, users,
 * time zone, OS information and user passwords.
 */
#include "qga/ga.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <utmpx.h>

#define NSEC_PER_SEC 1000000000LL
#define USEC_PER_SEC 1000000.0
/* guest-set-time refuses dates outside these years, as qemu-ga does. */
#define GA_TIME_YEAR_MIN 1970
#define GA_TIME_YEAR_MAX 2070
#define GA_SBIN_ENV "QKIT_GA_SBIN_DIR" /* tests point this at fake shutdown/hwclock */
#define GA_OS_RELEASE_ENV "QGA_OS_RELEASE"
#define GA_SYS_POWER_STATE "/sys/power/state"
#define GA_SYS_POWER_DISK "/sys/power/disk"

/* Where shutdown and hwclock live: /sbin, or the test directory. */
static char *sbin_path(const char *prog)
{
    const char *dir = getenv(GA_SBIN_ENV);
    char *p = NULL;
    if (asprintf(&p, "%s/%s", dir && *dir ? dir : "/sbin", prog) < 0) {
        abort();
    }
    return p;
}

/* guest-sync: the host's id back, to line up requests with replies. */
static json_t *cmd_sync(void *opaque, json_t *args, Error **errp)
{
    return json_incref(json_object_get(args, "id"));
}

/* guest-sync-delimited: as guest-sync, the reply preceded by the 0xFF sentinel. */
static json_t *cmd_sync_delimited(void *opaque, json_t *args, Error **errp)
{
    GAState *s = opaque;
    s->delimit_response = true;
    return json_incref(json_object_get(args, "id"));
}

static json_t *cmd_ping(void *opaque, json_t *args, Error **errp)
{
    return json_object();
}

/* guest-info: the version and every command with its state, newest registered first. */
static json_t *cmd_info(void *opaque, json_t *args, Error **errp)
{
    GAState *s = opaque;
    json_t *list = json_array();

    for (size_t i = s->reg.ncmds; i-- > 0;) {
        QmpCommand *c = &s->reg.cmds[i];
        json_array_append_new(list, json_pack("{sbsssb}", "enabled", c->enabled,
                                              "name", c->def->name, "success-response",
                                              !c->def->no_success_response));
    }
    return json_pack("{ssso}", "version", QGA_VERSION, "supported_commands", list);
}

/* guest-get-time: nanoseconds since the epoch. */
static json_t *cmd_get_time(void *opaque, json_t *args, Error **errp)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return json_integer((json_int_t)ts.tv_sec * NSEC_PER_SEC + ts.tv_nsec);
}

/* Run a helper from /sbin detached from us; qemu-ga's messages for how it ended. */
static int run_sbin(char *const argv[], const char *path, Error **errp)
{
    int status = ga_run_path(path, argv, errp);
    if (status < 0) {
        return -1;
    }
    if (!WIFEXITED(status)) {
        error_setg(errp, "child process has terminated abnormally");
        return -1;
    }
    return WEXITSTATUS(status);
}

/* guest-set-time: set the clock (if given) then sync the RTC with hwclock. */
static json_t *cmd_set_time(void *opaque, json_t *args, Error **errp)
{
    char *hwclock = sbin_path("hwclock");
    bool has_time = qmp_has(args, "time");
    json_t *ret = NULL;

    if (access(hwclock, X_OK) != 0) {
        error_setg_errno(errp, errno, "'%s' does not exist", hwclock);
        goto out;
    }
    if (has_time) {
        int64_t t = qmp_get_int(args, "time", 0);
        struct timeval tv = { t / NSEC_PER_SEC, (t % NSEC_PER_SEC) / 1000 };
        time_t secs = tv.tv_sec;
        struct tm tm;
        if (!gmtime_r(&secs, &tm) || tm.tm_year + 1900 < GA_TIME_YEAR_MIN ||
            tm.tm_year + 1900 >= GA_TIME_YEAR_MAX) {
            error_setg(errp, "Invalid time");
            goto out;
        }
        if (settimeofday(&tv, NULL) < 0) {
            error_setg_errno(errp, errno, "Failed to set time to guest");
            goto out;
        }
    }
    char *argv[] = { "hwclock", has_time ? "-w" : "-s", NULL };
    int rc = run_sbin(argv, hwclock, errp);
    if (rc > 0) {
        error_setg(errp, "hwclock failed to set hardware clock to system time");
    }
    if (rc == 0) {
        ret = json_object();
    }
out:
    free(hwclock);
    return ret;
}

/* guest-shutdown: /sbin/shutdown now; no reply when it worked. */
static json_t *cmd_shutdown(void *opaque, json_t *args, Error **errp)
{
    const char *mode = qmp_get_str(args, "mode", "powerdown");
    const char *flag;

    if (!strcmp(mode, "powerdown")) {
        flag = "-P";
    } else if (!strcmp(mode, "halt")) {
        flag = "-H";
    } else if (!strcmp(mode, "reboot")) {
        flag = "-r";
    } else {
        error_setg(errp, "mode is invalid (valid values are: halt|powerdown|reboot");
        return NULL;
    }
    char *path = sbin_path("shutdown");
    char *argv[] = { "shutdown", (char *)flag, "+0", "hypervisor initiated shutdown", NULL };
    int rc = run_sbin(argv, path, errp);
    free(path);
    if (rc > 0) {
        error_setg(errp, "child process has failed to shutdown");
    }
    return NULL;
}

/* Whether the kernel offers a sleep state ("mem", "disk") in /sys/power/state. */
static bool sysfs_power_has(const char *word)
{
    char *text = ga_read_file(GA_SYS_POWER_STATE);
    bool found = false;
    if (text) {
        for (char *save = NULL, *t = strtok_r(text, " \n", &save); t;
             t = strtok_r(NULL, " \n", &save)) {
            found |= !strcmp(t, word);
        }
        free(text);
    }
    return found;
}

/* Shared by the three suspend commands: qemu-ga's checks in its order, then suspend. */
static json_t *suspend(const char *mode, Error **errp)
{
    /* systemd first, as qemu-ga tries it: systemctl suspend/hibernate/hybrid-sleep */
    const char *unit = !strcmp(mode, "ram") ? "suspend" : !strcmp(mode, "disk") ? "hibernate"
                                                                                : "hybrid-sleep";
    bool ok;

    if (!strcmp(mode, "ram")) {
        ok = sysfs_power_has("mem");
    } else if (!strcmp(mode, "disk")) {
        ok = sysfs_power_has("disk") && access(GA_SYS_POWER_DISK, F_OK) == 0;
    } else {
        ok = sysfs_power_has("mem") && sysfs_power_has("disk") &&
             access(GA_SYS_POWER_DISK, F_OK) == 0;
    }
    if (!ok) {
        error_setg(errp, "the requested suspend mode is not supported by the guest");
        return NULL;
    }
    char *argv[] = { "systemctl", (char *)unit, NULL };
    Error *err = NULL;
    int st = ga_run(argv, &err);
    if (st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        return NULL;
    }
    error_free(err);
    /* Fall back to the kernel interface. */
    const char *word = !strcmp(mode, "ram") ? "mem" : "disk";
    int fd = open(GA_SYS_POWER_STATE, O_WRONLY);
    if (fd < 0 || write(fd, word, strlen(word)) < 0) {
        error_setg(errp, "suspend: cannot write to '%s': %s", GA_SYS_POWER_STATE,
                   strerror(errno));
    }
    if (fd >= 0) {
        close(fd);
    }
    return NULL;
}

static json_t *cmd_suspend_disk(void *opaque, json_t *args, Error **errp)
{
    return suspend("disk", errp);
}

static json_t *cmd_suspend_ram(void *opaque, json_t *args, Error **errp)
{
    return suspend("ram", errp);
}

static json_t *cmd_suspend_hybrid(void *opaque, json_t *args, Error **errp)
{
    return suspend("hybrid", errp);
}

static json_t *cmd_host_name(void *opaque, json_t *args, Error **errp)
{
    char name[HOST_NAME_MAX + 1];
    if (gethostname(name, sizeof(name)) < 0) {
        error_setg_errno(errp, errno, "cannot get hostname");
        return NULL;
    }
    name[HOST_NAME_MAX] = '\0';
    return json_pack("{ss}", "host-name", name);
}

/* guest-get-users: logged-in users from utmp, each with its earliest login. */
static json_t *cmd_users(void *opaque, json_t *args, Error **errp)
{
    json_t *list = json_array();
    struct utmpx *u;

    setutxent();
    while ((u = getutxent())) {
        if (u->ut_type != USER_PROCESS) {
            continue;
        }
        char name[sizeof(u->ut_user) + 1];
        double t = (double)u->ut_tv.tv_sec + (double)u->ut_tv.tv_usec / USEC_PER_SEC;
        size_t i;
        snprintf(name, sizeof(name), "%.*s", (int)sizeof(u->ut_user), u->ut_user);
        for (i = 0; i < json_array_size(list); i++) {
            json_t *e = json_array_get(list, i);
            if (!strcmp(json_string_value(json_object_get(e, "user")), name)) {
                if (t < json_real_value(json_object_get(e, "login-time"))) {
                    json_object_set_new(e, "login-time", json_real(t));
                }
                break;
            }
        }
        if (i == json_array_size(list)) {
            json_array_append_new(list, json_pack("{sssf}", "user", name, "login-time", t));
        }
    }
    endutxent();
    return list;
}

/* guest-get-timezone: the zone's abbreviation and its offset from UTC now. */
static json_t *cmd_timezone(void *opaque, json_t *args, Error **errp)
{
    time_t now = time(NULL);
    struct tm tm;

    tzset();
    if (!localtime_r(&now, &tm)) {
        error_setg(errp, "Guest agent command failed, error was "
                   "'Couldn't retrieve local timezone'");
        return NULL;
    }
    json_t *ret = json_object();
    if (tm.tm_zone) {
        json_object_set_new(ret, "zone", json_string(tm.tm_zone));
    }
    json_object_set_new(ret, "offset", json_integer(tm.tm_gmtoff));
    return ret;
}

/* Unquote an os-release value (shell-style single or double quotes, backslashes). */
static char *os_release_value(const char *v)
{
    char *out = malloc(strlen(v) + 1), *o = out;
    char quote = 0;

    if (!out) {
        abort();
    }
    for (; *v; v++) {
        if (quote == '\'' && *v != '\'') {
            *o++ = *v;
        } else if (*v == '\'' || *v == '"') {
            if (!quote) {
                quote = *v;
            } else if (quote == *v) {
                quote = 0;
            } else {
                *o++ = *v;
            }
        } else if (*v == '\\' && v[1]) {
            *o++ = *++v;
        } else {
            *o++ = *v;
        }
    }
    *o = '\0';
    return out;
}

/* guest-get-osinfo: uname plus the fields of os-release. */
static json_t *cmd_osinfo(void *opaque, json_t *args, Error **errp)
{
    static const char *const keys[][2] = {
        { "ID", "id" }, { "NAME", "name" }, { "PRETTY_NAME", "pretty-name" },
        { "VERSION", "version" }, { "VERSION_ID", "version-id" },
        { "VARIANT", "variant" }, { "VARIANT_ID", "variant-id" },
    };
    json_t *ret = json_object();
    struct utsname u;
    const char *path = getenv(GA_OS_RELEASE_ENV);
    char *text;

    if (uname(&u) == 0) {
        json_object_set_new(ret, "kernel-release", json_string(u.release));
        json_object_set_new(ret, "kernel-version", json_string(u.version));
        json_object_set_new(ret, "machine", json_string(u.machine));
    }
    text = ga_read_file(path ? path : "/etc/os-release");
    if (!text && !path) {
        text = ga_read_file("/usr/lib/os-release");
    }
    for (char *save = NULL, *l = text ? strtok_r(text, "\n", &save) : NULL; l;
         l = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(l, '=');
        if (!eq || *l == '#') {
            continue;
        }
        *eq = '\0';
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
            if (!strcmp(l, keys[i][0])) {
                char *v = os_release_value(eq + 1);
                json_object_set_new(ret, keys[i][1], json_string(v));
                free(v);
            }
        }
    }
    free(text);
    return ret;
}

/* Whether text (len bytes) holds only base64 characters and newlines, as QEMU checks. */
bool ga_base64_check(const char *text, size_t len, Error **errp)
{
    static const char ok[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\n";
    for (size_t i = 0; i < len; i++) {
        if (!text[i] || !strchr(ok, text[i])) {
            error_setg(errp, "Base64 data contains invalid characters");
            return false;
        }
    }
    return true;
}

/* Find prog in PATH; malloc'd full path or NULL. */
char *ga_find_in_path(const char *prog)
{
    const char *path = getenv("PATH");
    char *copy, *save = NULL, *found = NULL;

    if (!path) {
        path = "/usr/local/bin:/usr/bin:/bin";
    }
    copy = strdup(path);
    for (char *d = strtok_r(copy, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        char *p = NULL;
        if (asprintf(&p, "%s/%s", *d ? d : ".", prog) < 0) {
            abort();
        }
        if (access(p, X_OK) == 0) {
            found = p;
        } else {
            free(p);
        }
    }
    free(copy);
    return found;
}

/* guest-set-user-password: feed "user:password" to chpasswd (-e for crypted). */
static json_t *cmd_set_password(void *opaque, json_t *args, Error **errp)
{
    json_t *pw = json_object_get(args, "password");
    const char *user = qmp_get_str(args, "username", "");
    bool crypted = qmp_get_bool(args, "crypted", false);
    unsigned char *raw = NULL;
    char *chpasswd = NULL;
    size_t rawlen;
    int pipefd[2] = { -1, -1 }, status;
    json_t *ret = NULL;

    if (!ga_base64_check(json_string_value(pw), json_string_length(pw), errp)) {
        return NULL;
    }
    raw = ga_base64_decode_glib(json_string_value(pw), &rawlen);
    if (memchr(raw, '\n', rawlen)) {
        error_setg(errp, "forbidden characters in raw password");
        goto out;
    }
    if (strchr(user, '\n') || strchr(user, ':')) {
        error_setg(errp, "forbidden characters in username");
        goto out;
    }
    chpasswd = ga_find_in_path("chpasswd");
    if (!chpasswd) {
        error_setg(errp, "cannot find 'passwd' program in PATH");
        goto out;
    }
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        error_setg_errno(errp, errno, "cannot create pipe FDs");
        goto out;
    }
    pid_t pid = fork();
    if (pid < 0) {
        error_setg_errno(errp, errno, "failed to create child process");
        goto out;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        setsid();
        dup2(pipefd[0], 0);
        if (null >= 0) {
            dup2(null, 1);
            dup2(null, 2);
        }
        if (crypted) {
            execl(chpasswd, "chpasswd", "-e", (char *)NULL);
        } else {
            execl(chpasswd, "chpasswd", (char *)NULL);
        }
        _exit(EXIT_FAILURE);
    }
    close(pipefd[0]);
    pipefd[0] = -1;
    FILE *f = fdopen(pipefd[1], "w");
    pipefd[1] = -1;
    if (f) {
        fprintf(f, "%s:%.*s\n", user, (int)rawlen, (const char *)raw);
        fclose(f);
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status)) {
        error_setg(errp, "child process has terminated abnormally");
    } else if (WEXITSTATUS(status)) {
        error_setg(errp, "child process has failed to set user password");
    } else {
        ret = json_object();
    }
out:
    if (pipefd[0] >= 0) {
        close(pipefd[0]);
    }
    if (pipefd[1] >= 0) {
        close(pipefd[1]);
    }
    free(raw);
    free(chpasswd);
    return ret;
}

static const QmpArg sync_args[] = { { "id", QMP_T_INT }, { NULL } };
static const QmpArg set_time_args[] = { { "time", QMP_T_INT, QMP_ARG_OPTIONAL }, { NULL } };
static const QmpArg shutdown_args[] = { { "mode", QMP_T_STR, QMP_ARG_OPTIONAL }, { NULL } };
static const QmpArg password_args[] = {
    { "username", QMP_T_STR }, { "password", QMP_T_STR }, { "crypted", QMP_T_BOOL }, { NULL },
};

const QmpCommandDef ga_system_cmds[] = {
    { "guest-sync-delimited", cmd_sync_delimited, sync_args },
    { "guest-sync", cmd_sync, sync_args },
    { "guest-ping", cmd_ping },
    { "guest-get-time", cmd_get_time },
    { "guest-set-time", cmd_set_time, set_time_args },
    { "guest-info", cmd_info },
    { "guest-shutdown", cmd_shutdown, shutdown_args, true },
    { "guest-suspend-disk", cmd_suspend_disk, NULL, true },
    { "guest-suspend-ram", cmd_suspend_ram, NULL, true },
    { "guest-suspend-hybrid", cmd_suspend_hybrid, NULL, true },
    { "guest-get-host-name", cmd_host_name },
    { "guest-get-users", cmd_users },
    { "guest-get-timezone", cmd_timezone },
    { "guest-get-osinfo", cmd_osinfo },
    { "guest-set-user-password", cmd_set_password, password_args },
    { NULL },
};
