/* The upload server: the listener, the live settings, signals and the connection set. */
#ifndef HU_SERVER_H
#define HU_SERVER_H

#include <stdio.h>
#include <uv.h>

#include "config.h"
#include "server_limits.h"
#include "metrics.h"
#include "server_ledger.h"
#include "storage.h"
#include "tls.h"

/* Settings a request runs with: a config and what was opened from it. Reference-counted so
 * SIGHUP can swap in new settings while requests that started under the old ones finish. */
typedef struct {
    hu_config cfg;
    hu_storage storage;
    hu_server_ledger ledger;
    hu_tls *tls; /* NULL: plain HTTP */
    int refs;
} hu_settings;

typedef struct hu_conn hu_conn;

typedef struct hu_server {
    uv_loop_t *loop;
    int listen_fd;
    uv_poll_t listener;
    int metrics_fd;              /* metrics_listen: GET /metrics only, plain HTTP; -1: none */
    uv_poll_t metrics_listener;
    hu_metrics *metrics;
    hu_limits limits;
    uv_timer_t accept_pause; /* out of file descriptors: accepting waits a moment */
    uv_idle_t done_idle;     /* runs the completions of finished writes (conn.c) */
    hu_conn *done_head, *done_tail;
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t drain_timer;
    uv_timer_t maintenance_timer;
    hu_settings *settings;
    const char *config_path;
    const char *host;
    FILE *access_log;
    int access_log_owned;
    hu_conn *conns; /* doubly linked, for draining */
    size_t n_conns;
    unsigned streaming_uploads; /* PUT bodies taken piece by piece now (upload.c) */
    unsigned cores;             /* uv_available_parallelism() at start */
    int draining;
    int exit_code;
    char scratch[64 * 1024]; /* where lingering connections discard input (one loop thread) */
} hu_server;

/* Loads the config, opens storage, binds and listens; prints the "listening on" line.
 * On failure prints one error line to stderr and returns a negative errno. */
int hu_server_start(hu_server *srv, uv_loop_t *loop, const char *config_path, const char *host);

/* Re-reads the config; keeps the old settings when the new ones do not load. When the current
 * secret changes, the outgoing one stays accepted for token_expiry seconds, so the tokens it
 * signed keep working (a restart drops it). */
void hu_server_reload(hu_server *srv);

/* Stops accepting; closes idle connections; exits the loop when the rest are done. */
void hu_server_drain(hu_server *srv);

/* Called by a connection after it is freed (draining ends when none are left). */
void hu_server_conn_gone(hu_server *srv);

/* Frees what the server still holds once the loop has ended. */
void hu_server_free(hu_server *srv);

hu_settings *hu_settings_acquire(hu_settings *s);
void hu_settings_release(hu_settings *s);

/* Loads settings from a config file (error line into err). */
int hu_settings_load(const char *path, const char *host, hu_settings **out, char *err,
                     size_t errlen);

#endif
