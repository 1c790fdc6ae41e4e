/* The upload server's settings, read from ejabberd.yml: modules: mod_http_upload_hmac: with
 * host_config: <host>: modules: mod_http_upload_hmac: keys overriding them when a host is given.
 * Option names and defaults are documented in README.md (and the module's mod_doc/0). */
#ifndef HU_CONFIG_H
#define HU_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "tls_certs.h"
#include "token.h"

#define HU_MAX_SECRETS 8

typedef enum { HU_TLS_AUTO, HU_TLS_ON, HU_TLS_OFF } hu_tls_mode;

typedef struct {
    char *host;           /* the virtual host: --host, else the first of hosts: (for @HOST@) */
    char *server_url;     /* hmac_server_url; when unset, resolved (hu_config_resolve) to
                             https://<host>:5444/upload if certfiles cover <host>, else
                             http://127.0.0.1:5444/upload */
    char *url_prefix;     /* path of server_url without trailing '/', "" for root (resolved) */
    char *secrets[HU_MAX_SECRETS]; /* [0] current (hmac_shared_secret or _file), then
                                      hmac_previous_secrets, still accepted for verification,
                                      then (server) outgoing ones kept across a reload */
    size_t secret_lens[HU_MAX_SECRETS];
    int64_t secret_until[HU_MAX_SECRETS]; /* accepted until then (Unix s); 0 = for good */
    size_t n_secrets;
    uint64_t max_size;            /* max_size, default 104857600 */
    uint64_t quota_per_user;      /* quota_per_user, default 1073741824; 0 = unlimited */
    uint64_t token_expiry;        /* token_expiry seconds, default 86400 */
    char **allowed_extensions;    /* allowed_extensions, lowercased, with leading '.'; */
    size_t n_allowed_extensions;  /*   empty = all */
    char *listen_host;            /* listen; when unset, resolved: "[::]:<url port>", or */
    uint16_t listen_port;         /*   "127.0.0.1:<url port>" when the URL's host is loopback */
    hu_tls_mode tls_mode;         /* tls: auto (HTTPS when server_url is https://), true, false
                                     (plain HTTP behind a TLS proxy) */
    int tls;                      /* resolved: serve HTTPS */
    char **certfiles;             /* certfiles (module option, else the top-level one) */
    size_t n_certfiles;
    hu_cert_set certs;            /* loaded by hu_config_resolve when tls is on */
    char *metrics_listen_host;    /* metrics_listen, NULL = none */
    uint16_t metrics_listen_port;
    uint32_t rate_limit_ip;       /* rate_limit_per_ip, requests/s, 0 = unlimited */
    uint32_t rate_limit_user;     /* rate_limit_per_user, PUTs/s, 0 = unlimited */
    char *storage_dir;            /* storage_dir, default "/var/lib/hmac-upload" */
                                  /* hmac_shared_secret_file and ledger_path default to
                                     hu_storage_default_path(storage_dir, ...) */
    unsigned legacy_protocols;    /* hu_legacy_scheme bits, default none */
    int strict_content_type;      /* strict_content_type, default 0 */
    char **cors_origins;          /* cors_origins, default ["*"] */
    size_t n_cors_origins;
    uint32_t max_days;            /* max_days, default 0 = keep files forever */
    char *ledger_path;            /* ledger_path, default <storage_dir>/state/ledger.sqlite3 */
    int fsync;                    /* fsync, default 1 */
    uint32_t max_connections;     /* max_connections, default 4096 */
    uint32_t header_timeout;      /* header_timeout seconds, default 10 */
    uint32_t idle_timeout;        /* idle_timeout seconds, default 60 */
    char *access_log;             /* access_log path, default NULL = stdout; "none" = off */
    int media_metadata;           /* media_metadata: image type, size, BlurHash at upload; 1 */
    uint64_t media_max_pixels;    /* media_max_pixels: larger images are not decoded; 40e6 */
    int thumbnails;               /* thumbnails: a WebP thumbnail per image; default 1 */
} hu_config;

/* Parses ejabberd.yml text. host may be NULL (no host_config overrides). "@HOST@" in string
 * values is replaced by host (or the first entry of hosts:). On error returns -EINVAL and writes
 * one line into err naming the key and the problem, e.g.
 * "modules.mod_http_upload_hmac.max_size: expected a non-negative integer, got \"big\"".
 * base_dir resolves relative hmac_shared_secret_file paths (the config file's directory). */
int hu_config_parse(const char *text, size_t len, const char *host, const char *base_dir,
                    hu_config *out, char *err, size_t errlen);

/* The settings that depend on the world outside the file: loads the certificates when HTTPS
 * may be needed, then settles hmac_server_url, url_prefix, tls and listen (see the fields).
 * One error line naming the key, e.g. an https:// URL with no certificate for its host. */
int hu_config_resolve(hu_config *c, char *err, size_t errlen);

/* Reads, parses and resolves a file; the error line starts with the path. */
int hu_config_load(const char *path, const char *host, hu_config *out, char *err, size_t errlen);

void hu_config_free(hu_config *c);

/* Appends a secret accepted until `until` (0 = for good); -E2BIG when the list is full. */
int hu_config_add_secret(hu_config *c, const char *secret, size_t len, int64_t until);

/* 1 when secret i may verify a token at now. */
int hu_config_secret_valid(const hu_config *c, size_t i, int64_t now);

#endif
