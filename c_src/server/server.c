#include "server.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "maintenance.h"

#define DRAIN_TIMEOUT_MS 30000

int hu_settings_load(const char *path, const char *host, hu_settings **out, char *err,
                     size_t errlen) {
    hu_settings *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    s->storage.dirfd = s->storage.partfd = s->storage.metafd = -1;
    int rc = hu_config_load(path, host, &s->cfg, err, errlen);
    if (rc == 0) {
        rc = hu_storage_open(s->cfg.storage_dir, s->cfg.fsync, &s->storage);
        if (rc < 0)
            snprintf(err, errlen, "storage_dir %s: %s", s->cfg.storage_dir, strerror(-rc));
    }
    if (rc == 0 && (rc = hu_server_ledger_open(&s->ledger, s->cfg.ledger_path, err, errlen)) < 0)
        hu_storage_close(&s->storage);
    if (rc < 0) {
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
        fprintf(stderr, "hmac-upload-server: access_log %s: %s\n", path, strerror(errno));
        return -errno;
    }
    srv->access_log_owned = 1;
    return 0;
}

static void on_connection(uv_stream_t *listener, int status) {
    hu_server *srv = listener->data;
    if (status == 0 && !srv->draining)
        hu_conn_accept(srv);
}

static void on_signal(uv_signal_t *h, int signum) {
    hu_server *srv = h->data;
    if (signum == SIGHUP)
        hu_server_reload(srv);
    else
        hu_server_drain(srv);
}

static int bind_listener(hu_server *srv) {
    const hu_config *cfg = &srv->settings->cfg;
    struct sockaddr_storage addr;
    int rc = strchr(cfg->listen_host, ':') != NULL
                 ? uv_ip6_addr(cfg->listen_host, cfg->listen_port, (struct sockaddr_in6 *)&addr)
                 : uv_ip4_addr(cfg->listen_host, cfg->listen_port, (struct sockaddr_in *)&addr);
    if (rc == 0)
        rc = uv_tcp_init(srv->loop, &srv->listener);
    if (rc == 0) {
        srv->listener.data = srv;
        rc = uv_tcp_bind(&srv->listener, (struct sockaddr *)&addr, 0);
        if (rc == 0)
            rc = uv_listen((uv_stream_t *)&srv->listener, 1024, on_connection);
    }
    if (rc < 0) {
        fprintf(stderr, "hmac-upload-server: listen %s:%u: %s\n", cfg->listen_host,
                cfg->listen_port, uv_strerror(rc));
        return rc;
    }
    int len = sizeof addr;
    char name[64] = "?";
    uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&addr, &len);
    uv_ip_name((struct sockaddr *)&addr, name, sizeof name);
    int port = addr.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&addr)->sin6_port)
                                           : ntohs(((struct sockaddr_in *)&addr)->sin_port);
    fprintf(stderr, "hmac-upload-server: listening on %s%s%s:%d\n",
            addr.ss_family == AF_INET6 ? "[" : "", name, addr.ss_family == AF_INET6 ? "]" : "",
            port);
    return 0;
}

static void on_maintenance(uv_timer_t *t) { hu_maintenance_run(t->data, 0); }

int hu_server_start(hu_server *srv, uv_loop_t *loop, const char *config_path, const char *host) {
    char err[512];
    memset(srv, 0, sizeof *srv);
    srv->loop = loop;
    srv->config_path = config_path;
    srv->host = host;
    int rc = hu_settings_load(config_path, host, &srv->settings, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "hmac-upload-server: %s\n", err);
        return rc;
    }
    hu_maintenance_run(srv, 1); /* before the first connection: nothing is busy yet */
    /* Signal handlers before the "listening" line: whoever waits for it may signal at once. */
    uv_signal_t *sigs[] = {&srv->sig_term, &srv->sig_int, &srv->sig_hup};
    int signums[] = {SIGTERM, SIGINT, SIGHUP};
    for (size_t i = 0; i < 3; i++) {
        uv_signal_init(loop, sigs[i]);
        sigs[i]->data = srv;
        uv_signal_start(sigs[i], on_signal, signums[i]);
    }
    if ((rc = open_access_log(srv)) < 0 || (rc = bind_listener(srv)) < 0)
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

void hu_server_reload(hu_server *srv) {
    char err[512];
    hu_settings *next;
    if (hu_settings_load(srv->config_path, srv->host, &next, err, sizeof err) < 0) {
        fprintf(stderr, "hmac-upload-server: reload failed, keeping the running configuration: %s\n",
                err);
        return;
    }
    const hu_config *old = &srv->settings->cfg;
    if (strcmp(old->listen_host, next->cfg.listen_host) != 0 ||
        old->listen_port != next->cfg.listen_port)
        fprintf(stderr, "hmac-upload-server: listen changed; it takes effect on restart\n");
    hu_settings_release(srv->settings);
    srv->settings = next;
    open_access_log(srv);
    fprintf(stderr, "hmac-upload-server: configuration reloaded\n");
    hu_maintenance_run(srv, 0);
}

static void close_server_handles(hu_server *srv) {
    uv_close((uv_handle_t *)&srv->sig_term, NULL);
    uv_close((uv_handle_t *)&srv->sig_int, NULL);
    uv_close((uv_handle_t *)&srv->sig_hup, NULL);
    uv_close((uv_handle_t *)&srv->drain_timer, NULL);
    uv_close((uv_handle_t *)&srv->maintenance_timer, NULL);
}

static void on_drain_timeout(uv_timer_t *t) {
    hu_server *srv = t->data;
    fprintf(stderr, "hmac-upload-server: drain timeout, closing %zu connection(s)\n",
            srv->n_conns);
    for (hu_conn *c = srv->conns; c != NULL; c = c->next)
        hu_conn_close(c);
}

void hu_server_drain(hu_server *srv) {
    if (srv->draining)
        return;
    srv->draining = 1;
    uv_close((uv_handle_t *)&srv->listener, NULL);
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
    if (srv->access_log_owned)
        fclose(srv->access_log);
}
