/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qkit-ga: main(), qemu-ga's options and configuration file, daemonizing, the pid file
 * and log file; the agent itself lives in src/qga/.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qga/ga.h"
#include "qkit/error.h"

#define QGA_VERSION_LINE "QEMU Guest Agent " QGA_VERSION " (qkit 0.1.0)"
#define QGA_CONF_ENV "QGA_CONF"
#define QGA_CONF_GROUP "[general]"

/* Everything the options and the configuration file set. */
typedef struct GAConfig {
    bool daemonize;
    char *method;
    char *path;
    char *log_path;
    char *pid_path;
    char *fsfreeze_hook;
    char *state_dir;
    bool verbose;
    bool retry_path;
    bool dump_conf;
    char *blocked_conf; /* the configuration file's block-rpcs text, for --dump-conf */
    char **blocked; /* each -b list reversed, as qemu-ga keeps them */
    size_t nblocked;
    size_t nblocked_conf; /* how many of blocked came from the file */
    char **allowed;
    size_t nallowed;
    bool allow_set;
} GAConfig;

static const char ga_usage_fmt[] =
"Usage: %s [-m <method> -p <path>] [<options>]\n"
QGA_VERSION_LINE "\n"
"Copyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n"
"\n"
"  -m, --method      transport method: one of unix-listen, virtio-serial,\n"
"                    isa-serial, or vsock-listen (virtio-serial is the default)\n"
"  -p, --path        device/socket path (the default for virtio-serial is:\n"
"                    " QGA_DEFAULT_VIRTIO_PATH ",\n"
"                    the default for isa-serial is:\n"
"                    " QGA_DEFAULT_SERIAL_PATH ").\n"
"                    Socket addresses for vsock-listen are written as\n"
"                    <cid>:<port>.\n"
"  -l, --logfile     set logfile path, logs to stderr by default\n"
"  -f, --pidfile     specify pidfile (default is " QGA_DEFAULT_PIDFILE ")\n"
"  -F, --fsfreeze-hook\n"
"                    enable fsfreeze hook. Accepts an optional argument that\n"
"                    specifies script to run on freeze/thaw. Script will be\n"
"                    called with 'freeze'/'thaw' arguments accordingly.\n"
"                    (default is " QGA_DEFAULT_FSFREEZE_HOOK ")\n"
"                    If using -F with an argument, do not follow -F with a\n"
"                    space.\n"
"                    (for example: -F/var/run/fsfreezehook.sh)\n"
"  -t, --statedir    specify dir to store state information (absolute paths\n"
"                    only, default is " QGA_DEFAULT_STATEDIR ")\n"
"  -v, --verbose     log extra debugging information\n"
"  -V, --version     print version information and exit\n"
"  -d, --daemonize   become a daemon\n"
"  -b, --block-rpcs  comma-separated list of RPCs to disable (no spaces,\n"
"                    use \"help\" to list available RPCs)\n"
"  -a, --allow-rpcs  comma-separated list of RPCs to enable (no spaces,\n"
"                    use \"help\" to list available RPCs)\n"
"  -c, --config      read this configuration file instead of\n"
"                    " QGA_DEFAULT_CONFIG " (or $" QGA_CONF_ENV ")\n"
"  -D, --dump-conf   dump a qemu-ga config file based on current config\n"
"                    options / command-line parameters to stdout\n"
"  -r, --retry-path  attempt re-opening path if it's unavailable or closed\n"
"                    due to an error which may be recoverable in the future\n"
"                    (virtio-serial driver re-install, serial device hot\n"
"                    plug/unplug, etc.)\n"
"  -h, --help        display this help and exit\n"
"\n";

/* Replace a string setting. */
static void set_str(char **dst, const char *v)
{
    free(*dst);
    *dst = v ? strdup(v) : NULL;
}

/* Append the names of a comma- (or semicolon-) separated list, that list reversed. */
static void list_add(char ***list, size_t *n, const char *text, const char *seps)
{
    char *copy = strdup(text), *save = NULL;
    size_t first = *n;
    for (char *t = strtok_r(copy, seps, &save); t; t = strtok_r(NULL, seps, &save)) {
        *list = realloc(*list, (*n + 2) * sizeof(**list));
        if (!*list) {
            abort();
        }
        memmove(*list + first + 1, *list + first, (*n - first) * sizeof(**list));
        (*list)[first] = strdup(t);
        (*list)[++*n] = NULL;
    }
    free(copy);
}

/* A key file boolean: true/false/1/0. */
static bool conf_bool(const char *v, bool *out)
{
    if (!strcmp(v, "true") || !strcmp(v, "1")) {
        *out = true;
    } else if (!strcmp(v, "false") || !strcmp(v, "0")) {
        *out = false;
    } else {
        return false;
    }
    return true;
}

/* Strip leading and trailing blanks in place. */
static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) {
        s[--n] = '\0';
    }
    return s;
}

/*
 * Read the configuration file ([general] group, qemu-ga's keys). A missing file is
 * fine; a malformed one is an error. Returns 0 or -1 after printing the error.
 */
static int config_load(GAConfig *c, const char *path)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    bool in_general = false;
    int lineno = 0;

    if (!f) {
        return 0;
    }
    while (fgets(line, sizeof(line), f)) {
        char *l = trim(line), *eq, *k, *v;
        lineno++;
        l[strcspn(l, "\n")] = '\0';
        l = trim(l);
        if (!*l || *l == '#') {
            continue;
        }
        if (*l == '[') {
            in_general = !strcmp(l, QGA_CONF_GROUP);
            continue;
        }
        eq = strchr(l, '=');
        if (!eq) {
            error_report("error loading configuration from path: %s, Key file contains "
                         "line '%s' which is not a key-value pair, group, or comment",
                         path, l);
            fclose(f);
            return -1;
        }
        if (!in_general) {
            continue;
        }
        *eq = '\0';
        k = trim(l);
        v = trim(eq + 1);
        bool b = false;
        if (!strcmp(k, "daemon") || !strcmp(k, "verbose") || !strcmp(k, "retry-path")) {
            if (!conf_bool(v, &b)) {
                error_report("error loading configuration from path: %s, Key file contains "
                             "key '%s' which has a value that cannot be interpreted.",
                             path, k);
                fclose(f);
                return -1;
            }
            *(!strcmp(k, "daemon") ? &c->daemonize : !strcmp(k, "verbose") ? &c->verbose
                                                                          : &c->retry_path) = b;
        } else if (!strcmp(k, "method")) {
            set_str(&c->method, v);
        } else if (!strcmp(k, "path")) {
            set_str(&c->path, v);
        } else if (!strcmp(k, "logfile")) {
            set_str(&c->log_path, v);
        } else if (!strcmp(k, "pidfile")) {
            set_str(&c->pid_path, v);
        } else if (!strcmp(k, "fsfreeze-hook")) {
            set_str(&c->fsfreeze_hook, v);
        } else if (!strcmp(k, "statedir")) {
            set_str(&c->state_dir, v);
        } else if (!strcmp(k, "block-rpcs") || !strcmp(k, "blacklist")) {
            if (!strcmp(k, "blacklist")) {
                fprintf(stderr, "config using deprecated 'blacklist' key, should be "
                        "replaced with the 'block-rpcs' key.\n");
            }
            list_add(&c->blocked, &c->nblocked, v, ";");
            c->nblocked_conf = c->nblocked;
            set_str(&c->blocked_conf, v);
        } else if (!strcmp(k, "allow-rpcs")) {
            c->allow_set = true;
            list_add(&c->allowed, &c->nallowed, v, ";");
        }
    }
    fclose(f);
    return 0;
}

/* --dump-conf: the settings in qemu-ga.conf form. */
static void config_dump(const GAConfig *c)
{
    printf("[general]\n");
    printf("daemon=%s\n", c->daemonize ? "true" : "false");
    printf("method=%s\n", c->method);
    if (c->path) {
        printf("path=%s\n", c->path);
    }
    if (c->log_path) {
        printf("logfile=%s\n", c->log_path);
    }
    printf("pidfile=%s\n", c->pid_path);
    if (c->fsfreeze_hook) {
        printf("fsfreeze-hook=%s\n", c->fsfreeze_hook);
    }
    printf("statedir=%s\n", c->state_dir);
    printf("verbose=%s\n", c->verbose ? "true" : "false");
    printf("retry-path=%s\n", c->retry_path ? "true" : "false");
    /* the file's list is shown as written there, then the -b names */
    printf("block-rpcs=%s", c->blocked_conf ? c->blocked_conf : "");
    for (size_t i = c->nblocked_conf; i < c->nblocked; i++) {
        printf("%s%s", i || c->blocked_conf ? "," : "", c->blocked[i]);
    }
    printf("\n");
    if (c->allow_set) {
        printf("allow-rpcs=");
        for (size_t i = 0; i < c->nallowed; i++) {
            printf("%s%s", i ? "," : "", c->allowed[i]);
        }
        printf("\n");
    }
}

/* -b help / -a help: every command name, one a line. */
static void list_commands(void)
{
    for (const char *const *n = ga_command_names; *n; n++) {
        printf("%s\n", *n);
    }
}

/* Fork into the background; the child writes the pid file. Only the child returns. */
static int become_daemon(const char *pid_path)
{
    pid_t pid = fork();
    if (pid < 0) {
        error_report("failed to fork: %s", strerror(errno));
        return -1;
    }
    if (pid > 0) {
        exit(EXIT_SUCCESS);
    }
    if (pid_path) {
        int fd = open(pid_path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        char buf[32];
        if (fd < 0 || lockf(fd, F_TLOCK, 0) < 0) {
            error_report("failed to create pidfile: Cannot open pid file: %s",
                         strerror(errno));
            return -1;
        }
        snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
        if (ftruncate(fd, 0) < 0 || write(fd, buf, strlen(buf)) < 0) {
            error_report("failed to create pidfile: %s", strerror(errno));
            return -1;
        }
        /* fd stays open: the lock marks this instance as running */
    }
    umask(0);
    if (setsid() < 0) {
        return -1;
    }
    if (chdir("/") < 0) {
        return -1;
    }
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        if (null > STDERR_FILENO) {
            close(null);
        }
    }
    return 0;
}

static volatile int ga_quit;

/* SIGTERM/SIGINT/SIGHUP: leave the serving loop at its next wakeup. */
static void on_signal(int sig)
{
    ga_quit = 1;
}

static void config_free(GAConfig *c)
{
    free(c->blocked_conf);
    free(c->method);
    free(c->path);
    free(c->log_path);
    free(c->pid_path);
    free(c->fsfreeze_hook);
    free(c->state_dir);
    for (size_t i = 0; i < c->nblocked; i++) {
        free(c->blocked[i]);
    }
    free(c->blocked);
    for (size_t i = 0; i < c->nallowed; i++) {
        free(c->allowed[i]);
    }
    free(c->allowed);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "method", required_argument, NULL, 'm' },
        { "path", required_argument, NULL, 'p' },
        { "logfile", required_argument, NULL, 'l' },
        { "pidfile", required_argument, NULL, 'f' },
        { "fsfreeze-hook", optional_argument, NULL, 'F' },
        { "statedir", required_argument, NULL, 't' },
        { "verbose", no_argument, NULL, 'v' },
        { "version", no_argument, NULL, 'V' },
        { "daemonize", no_argument, NULL, 'd' },
        { "block-rpcs", required_argument, NULL, 'b' },
        { "blacklist", required_argument, NULL, 'b' },
        { "allow-rpcs", required_argument, NULL, 'a' },
        { "config", required_argument, NULL, 'c' },
        { "dump-conf", no_argument, NULL, 'D' },
        { "retry-path", no_argument, NULL, 'r' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    static const char shortopts[] = "m:p:l:f:F::t:vVdb:a:c:Drh";
    GAConfig c = { 0 };
    GAState s = { 0 };
    GAChannelOpts co;
    Error *err = NULL;
    const char *conf_path = getenv(QGA_CONF_ENV);
    int opt, ret = EXIT_FAILURE;
    bool state_ready = false;

    error_set_progname(argv[0]);
    /* A -c anywhere on the line picks the file read before the other options. */
    opterr = 0;
    while ((opt = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        if (opt == 'c') {
            conf_path = optarg;
        }
    }
    opterr = 1;
    optind = 1;
    if (config_load(&c, conf_path ? conf_path : QGA_DEFAULT_CONFIG) < 0) {
        goto out;
    }
    while ((opt = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        switch (opt) {
        case 'm': set_str(&c.method, optarg); break;
        case 'p': set_str(&c.path, optarg); break;
        case 'l': set_str(&c.log_path, optarg); break;
        case 'f': set_str(&c.pid_path, optarg); break;
        case 'F': set_str(&c.fsfreeze_hook, optarg ? optarg : QGA_DEFAULT_FSFREEZE_HOOK); break;
        case 't': set_str(&c.state_dir, optarg); break;
        case 'v': c.verbose = true; break;
        case 'V': printf("%s\n", QGA_VERSION_LINE); ret = EXIT_SUCCESS; goto out;
        case 'd': c.daemonize = true; break;
        case 'b':
        case 'a':
            if (!strcmp(optarg, "help")) {
                list_commands();
                ret = EXIT_SUCCESS;
                goto out;
            }
            if (opt == 'a') {
                c.allow_set = true;
                list_add(&c.allowed, &c.nallowed, optarg, ",");
            } else {
                list_add(&c.blocked, &c.nblocked, optarg, ",");
            }
            break;
        case 'c': break;
        case 'D': c.dump_conf = true; break;
        case 'r': c.retry_path = true; break;
        case 'h': printf(ga_usage_fmt, argv[0]); ret = EXIT_SUCCESS; goto out;
        case '?':
            fprintf(stderr, "Unknown option, try '%s --help' for more information.\n",
                    argv[0]);
            goto out;
        }
    }
    if (!c.method) {
        set_str(&c.method, "virtio-serial");
    }
    if (!c.pid_path) {
        set_str(&c.pid_path, QGA_DEFAULT_PIDFILE);
    }
    if (!c.state_dir) {
        set_str(&c.state_dir, QGA_DEFAULT_STATEDIR);
    }
    if (ga_method_parse(c.method, &co.method) < 0) {
        if (c.dump_conf) {
            config_dump(&c);
            ret = EXIT_SUCCESS;
            goto out;
        }
        s.verbose = c.verbose;
        ga_log(&s, "critical", "unsupported channel method/type: %s", c.method);
        ga_log(&s, "critical", "failed to initialize guest agent channel");
        goto out;
    }
    if (!c.path && co.method == GA_METHOD_VIRTIO_SERIAL) {
        set_str(&c.path, QGA_DEFAULT_VIRTIO_PATH);
    } else if (!c.path && co.method == GA_METHOD_ISA_SERIAL) {
        set_str(&c.path, QGA_DEFAULT_SERIAL_PATH);
    }
    if (c.dump_conf) {
        config_dump(&c);
        ret = EXIT_SUCCESS;
        goto out;
    }
    if (!c.path) {
        error_report("must specify a path for this channel");
        goto out;
    }
    co.path = c.path;
    co.retry = c.retry_path;

    if (c.daemonize && become_daemon(c.pid_path) < 0) {
        goto out;
    }
    s.verbose = c.verbose;
    if (c.log_path) {
        s.log = fopen(c.log_path, "a");
        if (!s.log) {
            error_report("unable to open specified log file: %s", strerror(errno));
            goto out;
        }
    }
    ga_log(&s, "debug", "Guest agent version %s started", QGA_VERSION);
    s.blocked = c.blocked;
    s.allowed = c.allow_set ? c.allowed : NULL;
    if (!c.allowed && c.allow_set) {
        static char *none[] = { NULL };
        s.allowed = none;
    }
    s.fsfreeze_hook = c.fsfreeze_hook;
    if (ga_state_init(&s, c.state_dir, &err) < 0) {
        ga_log(&s, "critical", "%s", error_get_pretty(err));
        ga_log(&s, "critical", "failed to load persistent state");
        ga_log(&s, "critical", "error initializing guest agent");
        error_free(err);
        goto out;
    }
    state_ready = true;

    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (ga_serve(&s, &co, &ga_quit, &err) < 0) {
        ga_log(&s, "critical", "%s", error_get_pretty(err));
        ga_log(&s, "critical", "failed to create guest agent channel");
        ga_log(&s, "critical", "failed to initialize guest agent channel");
        error_free(err);
        goto out;
    }
    ret = EXIT_SUCCESS;
out:
    if (state_ready) {
        if (s.frozen) {
            ga_fs_thaw_all(&s, NULL);
        }
        ga_state_destroy(&s);
    }
    if (c.daemonize && c.pid_path && state_ready) {
        unlink(c.pid_path);
    }
    if (s.log) {
        fclose(s.log);
    }
    config_free(&c);
    return ret;
}
