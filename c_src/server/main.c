/* hmac-upload-server: command line, the control channel of --managed, then the libuv loop. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "server.h"

#ifndef HU_VERSION
#define HU_VERSION "0.1.0"
#endif

#define CONTROL_LINE_MAX 64 /* longer than any command: the rest of such a line is dropped */

static const char usage[] =
    "Usage: hmac-upload-server [--config PATH] [--host HOST] [--check-config] [--managed]\n"
    "\n"
    "XEP-0363 HTTP upload server for ejabberd's mod_http_upload_hmac. Reads the\n"
    "mod_http_upload_hmac section of ejabberd.yml; see README.md for every option.\n"
    "\n"
    "  -c, --config PATH   ejabberd.yml to read (default /etc/ejabberd/ejabberd.yml)\n"
    "  -H, --host HOST     apply host_config overrides for HOST; also the value of @HOST@\n"
    "      --check-config  validate the configuration, print the result, and exit\n"
    "      --managed       run under mod_http_upload_hmac (an Erlang port): standard input\n"
    "                      is the control channel (a line 'reload' reloads, 'stop' or the\n"
    "                      end of input drains and exits), standard output is discarded\n"
    "                      (log lines go to standard error, the access log only to a file)\n"
    "  -h, --help          show this help\n"
    "  -V, --version       show the version\n"
    "\n"
    "Signals: SIGTERM/SIGINT finish running requests and exit; SIGHUP reloads the\n"
    "configuration (secrets included) and reopens the access log.\n";

/* --managed: the module writes one command per line on our standard input; its end means the
 * module (or the whole VM) is gone. The handle is unreferenced: it never keeps the loop alive
 * on its own, so the loop ends when a drain is done, whoever started it. */
typedef struct {
    union {
        uv_stream_t stream;
        uv_pipe_t pipe;
        uv_tty_t tty;
    } h;
    hu_server *srv;
    char line[CONTROL_LINE_MAX];
    size_t len;
    int overlong; /* dropping the rest of a line that did not fit */
    char buf[256];
} control;

static void control_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    control *ctl = h->data;
    *buf = uv_buf_init(ctl->buf, sizeof ctl->buf);
}

static void control_command(control *ctl, const char *cmd) {
    if (strcmp(cmd, "reload") == 0) {
        hu_server_reload(ctl->srv);
    } else if (strcmp(cmd, "stop") == 0) {
        hu_log(HU_LOG_INFO, "stop requested; draining");
        hu_server_drain(ctl->srv);
    } else if (cmd[0] != '\0') {
        hu_log(HU_LOG_WARNING, "unknown control command: %s", cmd);
    }
}

static void control_close(control *ctl) {
    if (!uv_is_closing((uv_handle_t *)&ctl->h))
        uv_close((uv_handle_t *)&ctl->h, NULL);
}

static void control_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
    control *ctl = s->data;
    if (n < 0) {
        if (n == UV_EOF)
            hu_log(HU_LOG_INFO, "standard input closed (the module is gone); draining");
        else
            hu_log(HU_LOG_ERROR, "standard input: %s; draining", uv_strerror((int)n));
        control_close(ctl);
        hu_server_drain(ctl->srv);
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        char ch = buf->base[i];
        if (ch == '\n') {
            while (ctl->len > 0 && (ctl->line[ctl->len - 1] == '\r' || ctl->line[ctl->len - 1] == ' '))
                ctl->len--;
            ctl->line[ctl->len] = '\0';
            if (ctl->overlong)
                hu_log(HU_LOG_WARNING, "control line too long, ignored");
            else
                control_command(ctl, ctl->line);
            ctl->len = 0;
            ctl->overlong = 0;
        } else if (ctl->len + 1 < sizeof ctl->line) {
            ctl->line[ctl->len++] = ch;
        } else {
            ctl->overlong = 1;
        }
    }
}

/* Standard input is the port's pipe (or a terminal, for a person trying it out). */
static int control_start(control *ctl, uv_loop_t *loop, hu_server *srv) {
    memset(ctl, 0, sizeof *ctl);
    ctl->srv = srv;
    int rc;
    switch (uv_guess_handle(STDIN_FILENO)) {
    case UV_NAMED_PIPE:
        if ((rc = uv_pipe_init(loop, &ctl->h.pipe, 0)) == 0 &&
            (rc = uv_pipe_open(&ctl->h.pipe, STDIN_FILENO)) < 0)
            uv_close((uv_handle_t *)&ctl->h, NULL);
        break;
    case UV_TTY:
        rc = uv_tty_init(loop, &ctl->h.tty, STDIN_FILENO, 1);
        break;
    default:
        rc = UV_EINVAL;
        break;
    }
    if (rc < 0) {
        hu_log(HU_LOG_ERROR, "--managed: standard input must be a pipe (the control channel): %s",
               uv_strerror(rc));
        return rc;
    }
    ctl->h.stream.data = ctl;
    if ((rc = uv_read_start(&ctl->h.stream, control_alloc, control_read)) < 0) {
        hu_log(HU_LOG_ERROR, "--managed: reading standard input: %s", uv_strerror(rc));
        uv_close((uv_handle_t *)&ctl->h, NULL);
        return rc;
    }
    uv_unref((uv_handle_t *)&ctl->h);
    return 0;
}

/* Standard output is the port as well: only log lines (standard error) may reach it. */
static int discard_stdout(void) {
    int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0) {
        hu_log(HU_LOG_ERROR, "--managed: /dev/null: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

int main(int argc, char **argv) {
    const char *config = "/etc/ejabberd/ejabberd.yml", *host = NULL;
    int check_only = 0, managed = 0;
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"host", required_argument, NULL, 'H'},
        {"check-config", no_argument, NULL, 'k'}, {"managed", no_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},         {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "c:H:hV", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': config = optarg; break;
        case 'H': host = optarg; break;
        case 'k': check_only = 1; break;
        case 'm': managed = 1; break;
        case 'h': fputs(usage, stdout); return 0;
        case 'V': printf("hmac-upload-server %s\n", HU_VERSION); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (optind != argc) {
        hu_log(HU_LOG_ERROR, "unexpected argument: %s", argv[optind]);
        return 2;
    }
    if (check_only) {
        hu_config cfg;
        char err[512];
        memset(&cfg, 0, sizeof cfg);
        int rc = hu_config_load(config, host, &cfg, err, sizeof err);
        hu_config_free(&cfg);
        if (rc < 0) {
            hu_log(HU_LOG_ERROR, "%s", err);
            return 1;
        }
        printf("configuration ok\n");
        return 0;
    }
    if (managed && discard_stdout() < 0)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    /* One descriptor per connection (and one per download): the soft limit is often 1024,
     * far below max_connections; take what the hard limit allows, as nginx can. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    /* Disk work (writes, fsync, publish, ledger) runs on libuv's thread pool; its default of
     * 4 threads serializes fsyncs of concurrent small uploads. Set before the pool starts. */
    setenv("UV_THREADPOOL_SIZE", "32", 0);
    /* glibc gives each of those threads its own malloc arena (up to 8 per core), and keeps
     * what they freed: libmagic's passing allocations left about 9 MiB in each, 300 MiB of
     * RSS after a burst of small uploads. Two arenas per core instead. */
    mallopt(M_ARENA_MAX, 2 * (int)uv_available_parallelism());
    hu_server srv;
    control ctl;
    uv_loop_t *loop = uv_default_loop();
    /* The control channel first: nothing is read from it before the loop runs, and a start
     * that cannot have one fails before binding, with its one error line. */
    if (managed && control_start(&ctl, loop, &srv) < 0)
        return 1;
    if (hu_server_start(&srv, loop, config, host) < 0)
        return 1;
    uv_run(loop, UV_RUN_DEFAULT);
    if (managed) { /* the drain is over; the control handle may still be open */
        control_close(&ctl);
        uv_run(loop, UV_RUN_DEFAULT);
    }
    hu_server_free(&srv);
    uv_loop_close(loop);
    hu_log(HU_LOG_INFO, "stopped");
    return srv.exit_code;
}
