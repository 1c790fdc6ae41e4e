#include "server.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "maintenance.h"
#include "storage_migrate.h"

#define DRAIN_TIMEOUT_MS 30000
#define ACCEPT_PAUSE_MS 100

/* Storage, then the ledger (its default lives in state/, which storage creates), then the
 * one-time migration of an older layout (which asks the ledger what is ours). */
static int open_state(hu_settings *s, char *err, size_t errlen) {
    int rc = hu_storage_open(s->cfg.storage_dir, s->cfg.fsync, &s->storage);
    if (rc < 0) {
        snprintf(err, errlen, "storage_dir %s: %s", s->cfg.storage_dir, strerror(-rc));
        return rc;
    }
    if ((rc = hu_server_ledger_open(&s->ledger, s->cfg.ledger_path, err, errlen)) < 0) {
        hu_storage_close(&s->storage);
        return rc;
    }
    hu_migrate_report report;
    rc = hu_storage_migrate(&s->storage, hu_migrate_known_in_ledger, s->ledger.ledger, &report);
    char line[512];
    hu_migrate_report_line(&report, line, sizeof line);
    if (line[0])
        hu_log(HU_LOG_INFO, "%s", line);
    if (rc < 0) {
        snprintf(err, errlen, "storage_dir %s: migrating to layout %d: %s", s->cfg.storage_dir,
                 HU_STORAGE_LAYOUT, strerror(-rc));
        hu_server_ledger_close(&s->ledger);
        hu_storage_close(&s->storage);
    }
    return rc;
}

int hu_settings_load(const char *path, const char *host, hu_settings **out, char *err,
                     size_t errlen) {
    hu_settings *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int rc = hu_config_load(path, host, &s->cfg, err, errlen);
    if (rc == 0 && s->cfg.tls)
        rc = hu_tls_create(&s->cfg, &s->tls, err, errlen);
    if (rc == 0)
        rc = open_state(s, err, errlen);
    if (rc < 0) {
        hu_tls_free(s->tls);
        hu_config_free(&s->cfg);
        free(s);
        return rc;
    }
    s->refs = 1;
    *out = s;
    return 0;
}

hu_settings *hu_settings_acquire(hu_settings *s) {
    s->refs++;
    return s;
}

void hu_settings_release(hu_settings *s) {
    if (--s->refs > 0)
        return;
    hu_server_ledger_close(&s->ledger);
    hu_storage_close(&s->storage);
    hu_tls_free(s->tls);
    hu_config_free(&s->cfg);
    free(s);
}

static int open_access_log(hu_server *srv) {
    const char *path = srv->settings->cfg.access_log;
    if (srv->access_log_owned)
        fclose(srv->access_log);
    srv->access_log = NULL;
    srv->access_log_owned = 0;
    if (path == NULL) {
        srv->access_log = stdout;
        return 0;
    }
    if (strcmp(path, "none") == 0)
        return 0;
    srv->access_log = fopen(path, "ae");
    if (srv->access_log == NULL) {
        hu_log(HU_LOG_ERROR, "access_log %s: %s", path, strerror(errno));
        return -errno;
    }
    srv->access_log_owned = 1;
    return 0;
}

static void on_listen(uv_poll_t *h, int status, int events);

static void on_accept_pause_end(uv_timer_t *t) {
    hu_server *srv = t->data;
    if (srv->draining)
        return;
    uv_poll_start(&srv->listener, UV_READABLE, on_listen);
    if (srv->metrics_fd >= 0)
        uv_poll_start(&srv->metrics_listener, UV_READABLE, on_listen);
}

static void on_listen(uv_poll_t *h, int status, int events) {
    (void)events;
    hu_server *srv = h->data;
    if (status < 0 || srv->draining)
        return;
    int metrics = h == &srv->metrics_listener;
    int rc = hu_conn_accept_all(srv, metrics ? srv->metrics_fd : srv->listen_fd, metrics);
    if (rc < 0) {
        /* Out of descriptors (or memory): the listener stays readable, so polling it now would
         * spin. Pause, as nginx does, and say so once per pause. */
        hu_log(HU_LOG_WARNING, "accept: %s; pausing %d ms", strerror(-rc),
                ACCEPT_PAUSE_MS);
        uv_poll_stop(h);
        uv_timer_start(&srv->accept_pause, on_accept_pause_end, ACCEPT_PAUSE_MS, 0);
    }
}

static void on_signal(uv_signal_t *h, int signum) {
    hu_server *srv = h->data;
    if (signum == SIGHUP)
        hu_server_reload(srv);
    else
        hu_server_drain(srv);
}

/* The listening socket is ours (accept4 in conn.c), watched with a uv_poll_t. */
static int listen_socket(const char *host, uint16_t port, struct sockaddr_storage *addr,
                         socklen_t *len) {
    memset(addr, 0, sizeof *addr);
    struct sockaddr_in *v4 = (struct sockaddr_in *)addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)addr;
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        *len = sizeof *v6;
    } else if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        *len = sizeof *v4;
    } else {
        return -EINVAL;
    }
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)addr, *len) < 0 || listen(fd, 1024) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

/* Binds host:port and watches it; says so in one line ("listening on ... (what)"). */
static int bind_one(hu_server *srv, const char *host, uint16_t port, const char *option,
                    const char *what, int *fd_out, uv_poll_t *poll) {
    struct sockaddr_storage addr;
    socklen_t len;
    int fd = listen_socket(host, port, &addr, &len);
    if (fd < 0) {
        hu_log(HU_LOG_ERROR, "%s %s%s%s:%u: %s", option, strchr(host, ':') ? "[" : "", host,
               strchr(host, ':') ? "]" : "", port, strerror(-fd));
        return fd;
    }
    *fd_out = fd;
    uv_poll_init(srv->loop, poll, fd);
    poll->data = srv;
    uv_poll_start(poll, UV_READABLE, on_listen);
    char name[64] = "?";
    len = sizeof addr;
    getsockname(fd, (struct sockaddr *)&addr, &len);
    uv_ip_name((struct sockaddr *)&addr, name, sizeof name);
    int bound = addr.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&addr)->sin6_port)
                                            : ntohs(((struct sockaddr_in *)&addr)->sin_port);
    hu_log(HU_LOG_INFO, "%s on %s%s%s:%d%s", what, addr.ss_family == AF_INET6 ? "[" : "", name,
           addr.ss_family == AF_INET6 ? "]" : "", bound, strcmp(what, "listening") ? "" :
           srv->settings->cfg.tls ? " (https)" : "");
    return 0;
}

static int bind_listeners(hu_server *srv) {
    const hu_config *cfg = &srv->settings->cfg;
    int rc = bind_one(srv, cfg->listen_host, cfg->listen_port, "listen", "listening",
                      &srv->listen_fd, &srv->listener);
    if (rc == 0 && cfg->metrics_listen_host)
        rc = bind_one(srv, cfg->metrics_listen_host, cfg->metrics_listen_port, "metrics_listen",
                      "metrics", &srv->metrics_fd, &srv->metrics_listener);
    return rc;
}

static void on_maintenance(uv_timer_t *t) { hu_maintenance_run(t->data, 0); }

int hu_server_start(hu_server *srv, uv_loop_t *loop, const char *config_path, const char *host) {
    char err[512];
    memset(srv, 0, sizeof *srv);
    srv->listen_fd = srv->metrics_fd = -1;
    srv->loop = loop;
    srv->cores = uv_available_parallelism();
    srv->config_path = config_path;
    srv->host = host;
    int rc = hu_settings_load(config_path, host, &srv->settings, err, sizeof err);
    if (rc < 0) {
        hu_log(HU_LOG_ERROR, "%s", err);
        return rc;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if ((srv->metrics = hu_metrics_new((double)now.tv_sec + now.tv_nsec / 1e9)) == NULL ||
        (rc = hu_limits_configure(&srv->limits, &srv->settings->cfg)) < 0) {
        hu_log(HU_LOG_ERROR, "out of memory");
        return -ENOMEM;
    }
    hu_metrics_set_connection_limit(srv->metrics, srv->settings->cfg.max_connections);
    hu_maintenance_run(srv, 1); /* before the first connection: nothing is busy yet */
    /* Signal handlers before the "listening" line: whoever waits for it may signal at once. */
    uv_signal_t *sigs[] = {&srv->sig_term, &srv->sig_int, &srv->sig_hup};
    int signums[] = {SIGTERM, SIGINT, SIGHUP};
    for (size_t i = 0; i < 3; i++) {
        uv_signal_init(loop, sigs[i]);
        sigs[i]->data = srv;
        uv_signal_start(sigs[i], on_signal, signums[i]);
    }
    uv_idle_init(loop, &srv->done_idle);
    srv->done_idle.data = srv;
    uv_timer_init(loop, &srv->accept_pause);
    srv->accept_pause.data = srv;
    if ((rc = open_access_log(srv)) < 0 || (rc = bind_listeners(srv)) < 0)
        return rc;
    uv_timer_init(loop, &srv->drain_timer);
    srv->drain_timer.data = srv;
    uv_unref((uv_handle_t *)&srv->drain_timer);
    uv_timer_init(loop, &srv->maintenance_timer);
    srv->maintenance_timer.data = srv;
    uv_timer_start(&srv->maintenance_timer, on_maintenance, HU_MAINTENANCE_INTERVAL_MS,
                   HU_MAINTENANCE_INTERVAL_MS);
    uv_unref((uv_handle_t *)&srv->maintenance_timer);
    return 0;
}

static int has_secret(const hu_config *c, const char *secret, size_t len) {
    for (size_t i = 0; i < c->n_secrets; i++)
        if (c->secret_lens[i] == len && memcmp(c->secrets[i], secret, len) == 0)
            return 1;
    return 0;
}

/* A reload that replaces a secret must not break the tokens it signed: the module may have
 * handed them out a moment ago, and it may reload after us. Each outgoing secret (still
 * valid) stays accepted until every token it could have signed has expired. */
static void keep_outgoing_secrets(const hu_config *old, hu_config *next) {
    int64_t now = (int64_t)time(NULL);
    uint64_t expiry = old->token_expiry > next->token_expiry ? old->token_expiry : next->token_expiry;
    for (size_t i = 0; i < old->n_secrets; i++) {
        if (!hu_config_secret_valid(old, i, now) ||
            has_secret(next, old->secrets[i], old->secret_lens[i]))
            continue;
        int64_t until = old->secret_until[i] ? old->secret_until[i] : now + (int64_t)expiry;
        if (hu_config_add_secret(next, old->secrets[i], old->secret_lens[i], until) < 0) {
            hu_log(HU_LOG_WARNING, "too many secrets: an outgoing one is no longer "
                            "accepted");
            continue;
        }
        if (old->secret_until[i] == 0)
            hu_log(HU_LOG_INFO, "secret changed; the previous secret stays "
                            "valid for %llu s, until the tokens it signed have expired (restart "
                            "to revoke it at once)",
                    (unsigned long long)expiry);
    }
}

void hu_server_reload(hu_server *srv) {
    char err[512];
    hu_settings *next;
    if (hu_settings_load(srv->config_path, srv->host, &next, err, sizeof err) < 0) {
        hu_log(HU_LOG_ERROR, "reload failed, keeping the running configuration: %s",
                err);
        return;
    }
    const hu_config *old = &srv->settings->cfg;
    keep_outgoing_secrets(old, &next->cfg);
    if (strcmp(old->listen_host, next->cfg.listen_host) != 0 ||
        old->listen_port != next->cfg.listen_port ||
        !old->metrics_listen_host != !next->cfg.metrics_listen_host ||
        (old->metrics_listen_host && (strcmp(old->metrics_listen_host, next->cfg.metrics_listen_host) ||
                                      old->metrics_listen_port != next->cfg.metrics_listen_port)))
        hu_log(HU_LOG_WARNING, "listen or metrics_listen changed; it takes effect on restart");
    if (hu_limits_configure(&srv->limits, &next->cfg) < 0)
        hu_log(HU_LOG_WARNING, "rate limits could not change; the old ones stay");
    hu_metrics_set_connection_limit(srv->metrics, next->cfg.max_connections);
    hu_settings_release(srv->settings);
    srv->settings = next;
    open_access_log(srv);
    hu_log(HU_LOG_INFO, "configuration reloaded");
    hu_maintenance_run(srv, 0);
}

static void close_server_handles(hu_server *srv) {
    uv_close((uv_handle_t *)&srv->accept_pause, NULL);
    uv_close((uv_handle_t *)&srv->done_idle, NULL);
    uv_close((uv_handle_t *)&srv->sig_term, NULL);
    uv_close((uv_handle_t *)&srv->sig_int, NULL);
    uv_close((uv_handle_t *)&srv->sig_hup, NULL);
    uv_close((uv_handle_t *)&srv->drain_timer, NULL);
    uv_close((uv_handle_t *)&srv->maintenance_timer, NULL);
}

static void on_drain_timeout(uv_timer_t *t) {
    hu_server *srv = t->data;
    hu_log(HU_LOG_WARNING, "drain timeout, closing %zu connection(s)",
            srv->n_conns);
    for (hu_conn *c = srv->conns; c != NULL; c = c->next)
        hu_conn_close(c);
}

static void on_listener_closed(uv_handle_t *h) {
    hu_server *srv = h->data;
    int *fd = h == (uv_handle_t *)&srv->listener ? &srv->listen_fd : &srv->metrics_fd;
    close(*fd); /* after the poll handle: libuv must not watch a closed fd */
    *fd = -1;
}

void hu_server_drain(hu_server *srv) {
    if (srv->draining)
        return;
    srv->draining = 1;
    uv_timer_stop(&srv->accept_pause);
    uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
    if (srv->metrics_fd >= 0)
        uv_close((uv_handle_t *)&srv->metrics_listener, on_listener_closed);
    for (hu_conn *c = srv->conns, *next; c != NULL; c = next) {
        next = c->next;
        if (!c->busy && !c->in_body)
            hu_conn_close(c);
    }
    uv_ref((uv_handle_t *)&srv->drain_timer);
    uv_timer_start(&srv->drain_timer, on_drain_timeout, DRAIN_TIMEOUT_MS, 0);
    hu_server_conn_gone(srv);
}

void hu_server_conn_gone(hu_server *srv) {
    if (srv->draining && srv->n_conns == 0 && !uv_is_closing((uv_handle_t *)&srv->sig_term))
        close_server_handles(srv);
}

void hu_server_free(hu_server *srv) {
    if (srv->settings)
        hu_settings_release(srv->settings);
    hu_limits_free(&srv->limits);
    hu_metrics_free(srv->metrics);
    if (srv->access_log_owned)
        fclose(srv->access_log);
}
