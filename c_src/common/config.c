/* ejabberd.yml -> hu_config. libyaml's document API gives a node tree (anchors and aliases
 * resolved); we walk it for modules.mod_http_upload_hmac and host_config overrides. Every
 * error names the full key path, so an operator sees one line that says what to fix. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "secret_file.h"
#include "storage.h"

#define MODULE "mod_http_upload_hmac"
#define MAX_CONFIG_BYTES (4 << 20)

/* Options the module reads and the server ignores; ejabberd refuses unknown module options,
 * and so do we, so a typo never silently falls back to a default. */
static const char *const module_only[] = {"access", "hosts", "host", "name", "rm_on_unregister",
                                          "upload_server", "reservation_time",
                                          "purpose_retention", "muc_metadata", "chat_metadata",
                                          "file_sharing_metadata", "metadata_xmlns", NULL};
static const char *const server_options[] = {
    "hmac_server_url", "hmac_shared_secret", "hmac_shared_secret_file", "hmac_previous_secrets",
    "max_size", "quota_per_user", "token_expiry", "allowed_extensions", "listen", "storage_dir",
    "legacy_protocols", "strict_content_type", "cors_origins", "max_days", "ledger_path",
    "fsync", "max_connections", "header_timeout", "idle_timeout", "access_log", "tls", "certfiles",
    "metrics_listen", "rate_limit_per_ip", "rate_limit_per_user", "media_metadata",
    "media_max_pixels", "thumbnails", NULL};

typedef struct {
    yaml_document_t *doc;
    yaml_node_t *root;          /* the top-level mapping */
    yaml_node_t *base, *over;   /* module mappings (over may be NULL) */
    const char *host;           /* substituted for @HOST@ */
    char over_prefix[300];
    char *err;
    size_t errlen;
} reader;

static int fail(reader *r, const char *key, int over, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(r->err, r->errlen, "%s.%s: %s", over ? r->over_prefix : "modules." MODULE, key, msg);
    for (char *p = r->err; *p; p++) /* one line, whatever a path or value held */
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
    return -EINVAL;
}

/* A value from the file, quoted for an error line: at most 60 bytes, control bytes escaped,
 * so the error stays one line whatever the file holds. */
static const char *printable(const char *v, size_t n, char out[256])
{
    size_t o = 0;
    for (size_t i = 0; i < n && i < 60 && o + 5 < 256; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (ch < 0x20 || ch == 0x7f) o += (size_t)snprintf(out + o, 256 - o, "\\x%02x", ch);
        else out[o++] = (char)ch;
    }
    if (n > 60 && o + 4 < 256) memcpy(out + o, "...", 3), o += 3;
    out[o] = '\0';
    return out;
}

static int scalar_is(const yaml_node_t *n, const char *s)
{
    return n && n->type == YAML_SCALAR_NODE && n->data.scalar.length == strlen(s) &&
           memcmp(n->data.scalar.value, s, n->data.scalar.length) == 0;
}

static yaml_node_t *map_get(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE) return NULL;
    yaml_node_t *found = NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++)
        if (scalar_is(yaml_document_get_node(doc, p->key), key))
            found = yaml_document_get_node(doc, p->value); /* the last one wins, as in ejabberd */
    return found;
}

/* Finds key in the override mapping first, then in the base one; *over says which. */
static yaml_node_t *option(reader *r, const char *key, int *over)
{
    yaml_node_t *n = map_get(r->doc, r->over, key);
    *over = n != NULL;
    return n ? n : map_get(r->doc, r->base, key);
}

static int is_null(const yaml_node_t *n)
{
    return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           (n->data.scalar.length == 0 || scalar_is(n, "null") || scalar_is(n, "~"));
}

/* A scalar as a new C string with @HOST@ replaced. */
static char *scalar_dup(reader *r, const yaml_node_t *n)
{
    const char *v = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length, hl = strlen(r->host), count = 0;
    if (memchr(v, '\0', len)) return NULL;
    for (const char *p = v; (p = strstr(p, "@HOST@")); p += 6) count++;
    char *out = malloc(len + count * hl + 1), *o = out;
    if (!out) return NULL;
    for (const char *p = v; *p;) {
        if (strncmp(p, "@HOST@", 6) == 0) {
            memcpy(o, r->host, hl), o += hl, p += 6;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    return out;
}

static int get_string(reader *r, const char *key, const char *def, char **out)
{
    int over;
    yaml_node_t *n = option(r, key, &over);
    if (!n || is_null(n)) {
        *out = def ? strdup(def) : NULL;
        return def && !*out ? -ENOMEM : 0;
    }
    if (n->type != YAML_SCALAR_NODE) return fail(r, key, over, "expected a string");
    if (!(*out = scalar_dup(r, n))) return fail(r, key, over, "invalid string");
    return 0;
}

/* Non-negative integer; "infinity" gives inf_value when allow_inf. */
static int get_uint(reader *r, const char *key, uint64_t def, int allow_inf, uint64_t inf_value,
                    uint64_t min, uint64_t max, uint64_t *out)
{
    int over;
    yaml_node_t *n = option(r, key, &over);
    *out = def;
    if (!n || is_null(n)) return 0;
    const char *want = allow_inf ? "expected a non-negative integer or infinity"
                                 : "expected a positive integer";
    if (n->type != YAML_SCALAR_NODE) return fail(r, key, over, "%s", want);
    if (allow_inf && scalar_is(n, "infinity")) {
        *out = inf_value;
        return 0;
    }
    uint64_t v;
    hu_slice s = {(const char *)n->data.scalar.value, n->data.scalar.length};
    char shown[256];
    if (hu_parse_u64(s, &v) < 0)
        return fail(r, key, over, "%s, got \"%s\"", want, printable(s.ptr, s.len, shown));
    if (v < min || v > max)
        return fail(r, key, over, "must be between %llu and %llu", (unsigned long long)min,
                    (unsigned long long)max);
    *out = v;
    return 0;
}

static int get_bool(reader *r, const char *key, int def, int *out)
{
    int over;
    yaml_node_t *n = option(r, key, &over);
    *out = def;
    if (!n || is_null(n)) return 0;
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "on", NULL},
                             *const no[] = {"false", "False", "FALSE", "no", "off", NULL};
    for (int i = 0; yes[i]; i++)
        if (scalar_is(n, yes[i])) return *out = 1, 0;
    for (int i = 0; no[i]; i++)
        if (scalar_is(n, no[i])) return *out = 0, 0;
    return fail(r, key, over, "expected true or false");
}

static void free_list(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++) free(list[i]);
    free(list);
}

static int get_list(reader *r, const char *key, const char *const *def, char ***out, size_t *n)
{
    int over;
    yaml_node_t *node = option(r, key, &over);
    *out = NULL;
    *n = 0;
    size_t count = 0;
    if (!node || is_null(node)) {
        while (def && def[count]) count++;
    } else if (node->type == YAML_SEQUENCE_NODE) {
        count = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    } else {
        return fail(r, key, over, "expected a list");
    }
    char **list = calloc(count + 1, sizeof *list);
    if (!list) return -ENOMEM;
    for (size_t i = 0; i < count; i++) {
        if (!node || is_null(node)) {
            list[i] = strdup(def[i]);
        } else {
            yaml_node_t *item =
                yaml_document_get_node(r->doc, node->data.sequence.items.start[i]);
            if (!item || item->type != YAML_SCALAR_NODE || !(list[i] = scalar_dup(r, item))) {
                free_list(list, i);
                return fail(r, key, over, "item %zu: expected a string", i + 1);
            }
        }
        if (!list[i]) {
            free_list(list, i);
            return -ENOMEM;
        }
    }
    *out = list;
    *n = count;
    return 0;
}

static int check_known_keys(reader *r, yaml_node_t *map, int over)
{
    if (!map) return 0;
    if (map->type != YAML_MAPPING_NODE) {
        if (is_null(map)) return 0;
        snprintf(r->err, r->errlen, "%s: expected a mapping of options",
                 over ? r->over_prefix : "modules." MODULE);
        return -EINVAL;
    }
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(r->doc, p->key);
        int known = 0;
        for (int i = 0; server_options[i] && !known; i++) known = scalar_is(k, server_options[i]);
        for (int i = 0; module_only[i] && !known; i++) known = scalar_is(k, module_only[i]);
        if (!known) {
            char name[256] = "?";
            if (k && k->type == YAML_SCALAR_NODE)
                printable((const char *)k->data.scalar.value, k->data.scalar.length, name);
            return fail(r, name, over, "unknown option");
        }
    }
    return 0;
}

/* "ADDRESS:PORT" with a numeric IPv4 address, or "[IPv6]:PORT". */
static int split_addr(const char *v, char **host_out, uint16_t *port_out)
{
    char *copy = strdup(v), *host = copy, *colon;
    if (!copy) return -ENOMEM;
    if (copy[0] == '[') {
        char *close = strchr(copy, ']');
        colon = close && close[1] == ':' ? close + 1 : NULL;
        if (close) *close = '\0', host = copy + 1;
    } else {
        colon = strrchr(copy, ':');
    }
    uint64_t port = 0;
    unsigned char addr[16];
    if (colon) *colon = '\0';
    int ok = colon && hu_parse_u64(HU_CSTR(colon + 1), &port) == 0 && port <= 65535 &&
             (inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1);
    *host_out = ok ? strdup(host) : NULL;
    *port_out = (uint16_t)port;
    free(copy);
    return !ok ? -EINVAL : *host_out ? 0 : -ENOMEM;
}

/* An address option; unset (or "none" where allowed) leaves *host NULL. */
static int parse_addr_option(reader *r, const char *key, int none_ok, char **host, uint16_t *port)
{
    char *v = NULL;
    int over, rc = get_string(r, key, NULL, &v);
    option(r, key, &over);
    *host = NULL;
    if (rc < 0 || v == NULL || (none_ok && strcmp(v, "none") == 0)) {
        free(v);
        return rc;
    }
    rc = split_addr(v, host, port);
    free(v);
    if (rc == -EINVAL)
        return fail(r, key, over, "expected \"ADDRESS:PORT\" with a numeric IPv4 address or "
                                  "\"[IPv6]:PORT\"%s", none_ok ? ", or none" : "");
    return rc;
}

/* Validates an explicit hmac_server_url; an unset one is settled by hu_config_resolve. */
static int parse_url(reader *r, hu_config *c)
{
    int over, rc = get_string(r, "hmac_server_url", NULL, &c->server_url);
    option(r, "hmac_server_url", &over);
    if (rc < 0 || c->server_url == NULL) return rc;
    const char *u = c->server_url, *rest;
    if (strncmp(u, "http://", 7) == 0) rest = u + 7;
    else if (strncmp(u, "https://", 8) == 0) rest = u + 8;
    else return fail(r, "hmac_server_url", over, "expected an http:// or https:// URL");
    const char *slash = strchr(rest, '/');
    if (slash == rest || strpbrk(rest, "?# \t"))
        return fail(r, "hmac_server_url", over, "expected http(s)://HOST[:PORT][/PATH] without query");
    return 0;
}

static int parse_tls(reader *r, hu_config *c)
{
    int over;
    yaml_node_t *n = option(r, "tls", &over);
    c->tls_mode = HU_TLS_AUTO;
    if (!n || is_null(n) || scalar_is(n, "auto")) return 0;
    int on;
    if (get_bool(r, "tls", 0, &on) < 0)
        return fail(r, "tls", over, "expected auto, true or false");
    c->tls_mode = on ? HU_TLS_ON : HU_TLS_OFF;
    return 0;
}

/* The module's own certfiles, else ejabberd's top-level ones. */
static int parse_certfiles(reader *r, hu_config *c)
{
    int over, rc = get_list(r, "certfiles", NULL, &c->certfiles, &c->n_certfiles);
    option(r, "certfiles", &over);
    if (rc < 0 || c->n_certfiles > 0) return rc;
    free(c->certfiles);
    c->certfiles = NULL;
    yaml_node_t *top = map_get(r->doc, r->root, "certfiles");
    if (!top || is_null(top)) return 0;
    if (top->type != YAML_SEQUENCE_NODE) {
        snprintf(r->err, r->errlen, "certfiles: expected a list of files");
        return -EINVAL;
    }
    size_t n = (size_t)(top->data.sequence.items.top - top->data.sequence.items.start);
    if (!(c->certfiles = calloc(n + 1, sizeof *c->certfiles))) return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = yaml_document_get_node(r->doc, top->data.sequence.items.start[i]);
        if (!item || item->type != YAML_SCALAR_NODE || !(c->certfiles[i] = scalar_dup(r, item))) {
            c->n_certfiles = i;
            snprintf(r->err, r->errlen, "certfiles: item %zu: expected a file name", i + 1);
            return -EINVAL;
        }
        c->n_certfiles = i + 1;
    }
    return 0;
}

static int parse_upload_server(reader *r)
{
    char *v = NULL;
    int over, rc = get_string(r, "upload_server", "managed", &v);
    option(r, "upload_server", &over);
    if (rc == 0 && strcmp(v, "managed") != 0 && strcmp(v, "external") != 0)
        rc = fail(r, "upload_server", over, "expected managed or external");
    free(v);
    return rc;
}

int hu_config_add_secret(hu_config *c, const char *s, size_t len, int64_t until)
{
    if (c->n_secrets >= HU_MAX_SECRETS) return -E2BIG;
    if (!(c->secrets[c->n_secrets] = malloc(len + 1))) return -ENOMEM;
    memcpy(c->secrets[c->n_secrets], s, len);
    c->secrets[c->n_secrets][len] = '\0';
    c->secret_lens[c->n_secrets] = len;
    c->secret_until[c->n_secrets++] = until;
    return 0;
}

int hu_config_secret_valid(const hu_config *c, size_t i, int64_t now)
{
    return i < c->n_secrets && (c->secret_until[i] == 0 || now <= c->secret_until[i]);
}

static int add_secret(hu_config *c, const char *s, size_t len)
{
    return hu_config_add_secret(c, s, len, 0);
}

static int parse_secrets(reader *r, hu_config *c, const char *base_dir)
{
    char *secret = NULL, *file = NULL, def_file[4200];
    int over, rc = get_string(r, "hmac_shared_secret", NULL, &secret);
    if (rc < 0) return rc;
    if (secret) {
        size_t len = strlen(secret);
        option(r, "hmac_shared_secret", &over);
        if (len < HU_MIN_SECRET_LEN || len > HU_MAX_SECRET_LEN)
            rc = fail(r, "hmac_shared_secret", over, "must be %d to %d bytes long",
                      HU_MIN_SECRET_LEN, HU_MAX_SECRET_LEN);
        else
            rc = add_secret(c, secret, len);
        free(secret);
    } else {
        if (hu_storage_default_path(c->storage_dir, "secret", def_file, sizeof def_file) < 0)
            return fail(r, "storage_dir", 0, "path too long");
        if ((rc = get_string(r, "hmac_shared_secret_file", def_file, &file)) < 0) return rc;
        char path[4200], buf[HU_MAX_SECRET_LEN], msg[300];
        if (file[0] == '/' || !base_dir) snprintf(path, sizeof path, "%s", file);
        else snprintf(path, sizeof path, "%s/%s", base_dir, file);
        size_t len = 0;
        option(r, "hmac_shared_secret_file", &over);
        rc = hu_secret_file_read(path, 1, buf, sizeof buf, &len, msg, sizeof msg);
        if (rc < 0) rc = fail(r, "hmac_shared_secret_file", over, "%s", msg);
        else rc = add_secret(c, buf, len);
        free(file);
    }
    if (rc < 0) return rc;
    char **prev;
    size_t n;
    if ((rc = get_list(r, "hmac_previous_secrets", NULL, &prev, &n)) < 0) return rc;
    option(r, "hmac_previous_secrets", &over);
    for (size_t i = 0; i < n && rc == 0; i++) {
        size_t len = strlen(prev[i]);
        if (len < HU_MIN_SECRET_LEN || len > HU_MAX_SECRET_LEN)
            rc = fail(r, "hmac_previous_secrets", over, "item %zu: must be %d to %d bytes long",
                      i + 1, HU_MIN_SECRET_LEN, HU_MAX_SECRET_LEN);
        else if ((rc = add_secret(c, prev[i], len)) == -E2BIG)
            rc = fail(r, "hmac_previous_secrets", over, "at most %d previous secrets",
                      HU_MAX_SECRETS - 1);
    }
    free_list(prev, n);
    return rc;
}

static int parse_extensions(reader *r, hu_config *c)
{
    int rc = get_list(r, "allowed_extensions", NULL, &c->allowed_extensions,
                      &c->n_allowed_extensions);
    /* Normalise to ".ext" in lowercase: operators write "jpg", ".JPG" and ".jpg". */
    for (size_t i = 0; rc == 0 && i < c->n_allowed_extensions; i++) {
        char *e = c->allowed_extensions[i];
        int over;
        option(r, "allowed_extensions", &over);
        if (e[0] == '\0' || strchr(e, '/') || (e[0] == '.' && e[1] == '\0'))
            return fail(r, "allowed_extensions", over, "item %zu: not a file extension", i + 1);
        if (e[0] != '.') {
            char *d = malloc(strlen(e) + 2);
            if (!d) return -ENOMEM;
            d[0] = '.';
            strcpy(d + 1, e);
            free(e);
            c->allowed_extensions[i] = e = d;
        }
        for (char *p = e; *p; p++)
            if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
    }
    return rc;
}

static int parse_legacy(reader *r, hu_config *c)
{
    char **list;
    size_t n;
    int over, rc = get_list(r, "legacy_protocols", NULL, &list, &n);
    if (rc < 0) return rc;
    option(r, "legacy_protocols", &over);
    c->legacy_protocols = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (strcmp(list[i], "v1") == 0) c->legacy_protocols |= HU_LEGACY_V1;
        else if (strcmp(list[i], "v2") == 0) c->legacy_protocols |= HU_LEGACY_V2;
        else if (strcmp(list[i], "token") == 0) c->legacy_protocols |= HU_LEGACY_TOKEN;
        else if (strcmp(list[i], "jwt") == 0) c->legacy_protocols |= HU_LEGACY_JWT;
        else {
            char shown[256];
            rc = fail(r, "legacy_protocols", over, "unknown protocol \"%s\" (v1, v2, token, jwt)",
                      printable(list[i], strlen(list[i]), shown));
        }
    }
    free_list(list, n);
    return rc;
}

static int read_options(reader *r, hu_config *c, const char *base_dir)
{
    static const char *const any_origin[] = {"*", NULL};
    uint64_t v;
    int rc, b;
    if ((rc = check_known_keys(r, r->base, 0)) < 0 || (rc = check_known_keys(r, r->over, 1)) < 0)
        return rc;
    if ((rc = parse_url(r, c)) < 0) return rc;
    if ((rc = parse_tls(r, c)) < 0 || (rc = parse_certfiles(r, c)) < 0 ||
        (rc = parse_upload_server(r)) < 0)
        return rc;
    if (!(c->host = strdup(r->host))) return -ENOMEM;
    if ((rc = get_string(r, "storage_dir", "/var/lib/hmac-upload", &c->storage_dir)) < 0) return rc;
    if (c->storage_dir[0] == '\0') return fail(r, "storage_dir", 0, "must not be empty");
    if ((rc = parse_secrets(r, c, base_dir)) < 0) return rc;
    if ((rc = get_uint(r, "max_size", 104857600, 1, UINT64_MAX, 1, UINT64_MAX, &c->max_size)) < 0)
        return rc;
    if ((rc = get_uint(r, "quota_per_user", 1073741824, 1, 0, 1, UINT64_MAX, &c->quota_per_user)) < 0)
        return rc;
    if ((rc = get_uint(r, "token_expiry", 86400, 0, 0, 1, 365 * 86400ULL, &c->token_expiry)) < 0)
        return rc;
    if ((rc = parse_extensions(r, c)) < 0) return rc;
    if ((rc = parse_addr_option(r, "listen", 0, &c->listen_host, &c->listen_port)) < 0 ||
        (rc = parse_addr_option(r, "metrics_listen", 1, &c->metrics_listen_host,
                                &c->metrics_listen_port)) < 0)
        return rc;
    if ((rc = parse_legacy(r, c)) < 0) return rc;
    if ((rc = get_bool(r, "strict_content_type", 0, &c->strict_content_type)) < 0) return rc;
    if ((rc = get_list(r, "cors_origins", any_origin, &c->cors_origins, &c->n_cors_origins)) < 0)
        return rc;
    if ((rc = get_uint(r, "max_days", 0, 1, 0, 1, 100000, &v)) < 0) return rc;
    c->max_days = (uint32_t)v;
    char def_ledger[4200];
    if (hu_storage_default_path(c->storage_dir, "ledger.sqlite3", def_ledger, sizeof def_ledger) < 0)
        return fail(r, "storage_dir", 0, "path too long");
    if ((rc = get_string(r, "ledger_path", def_ledger, &c->ledger_path)) < 0) return rc;
    if ((rc = get_bool(r, "fsync", 1, &b)) < 0) return rc;
    c->fsync = b;
    if ((rc = get_uint(r, "max_connections", 4096, 0, 0, 1, 1000000, &v)) < 0) return rc;
    c->max_connections = (uint32_t)v;
    if ((rc = get_uint(r, "header_timeout", 10, 0, 0, 1, 3600, &v)) < 0) return rc;
    c->header_timeout = (uint32_t)v;
    if ((rc = get_uint(r, "idle_timeout", 60, 0, 0, 1, 86400, &v)) < 0) return rc;
    c->idle_timeout = (uint32_t)v;
    if ((rc = get_string(r, "access_log", NULL, &c->access_log)) < 0) return rc;
    /* validated, the module's */
    if ((rc = get_bool(r, "rm_on_unregister", 1, &b)) < 0) return rc;
    if ((rc = get_bool(r, "muc_metadata", 1, &b)) < 0) return rc;
    if ((rc = get_bool(r, "chat_metadata", 0, &b)) < 0) return rc;
    if ((rc = get_bool(r, "file_sharing_metadata", 0, &b)) < 0) return rc;
    if ((rc = get_uint(r, "rate_limit_per_ip", 0, 1, 0, 1, 1000000, &v)) < 0) return rc;
    c->rate_limit_ip = (uint32_t)v;
    if ((rc = get_uint(r, "rate_limit_per_user", 0, 1, 0, 1, 1000000, &v)) < 0) return rc;
    c->rate_limit_user = (uint32_t)v;
    if ((rc = get_bool(r, "media_metadata", 1, &c->media_metadata)) < 0) return rc;
    if ((rc = get_uint(r, "media_max_pixels", 40000000, 0, 0, 1, 1000000000, &c->media_max_pixels)) < 0)
        return rc;
    if ((rc = get_bool(r, "thumbnails", 1, &c->thumbnails)) < 0) return rc;
    return 0;
}

int hu_config_parse(const char *text, size_t len, const char *host, const char *base_dir,
                    hu_config *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    err[0] = '\0';
    if (len > MAX_CONFIG_BYTES) {
        snprintf(err, errlen, "configuration larger than %d bytes", MAX_CONFIG_BYTES);
        return -EINVAL;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, errlen, "line %zu column %zu: %s%s%s", parser.problem_mark.line + 1,
                 parser.problem_mark.column + 1, parser.problem ? parser.problem : "syntax error",
                 parser.context ? " " : "", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return -EINVAL;
    }
    yaml_parser_delete(&parser);

    int rc = -EINVAL;
    reader r = {.doc = &doc, .err = err, .errlen = errlen};
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    yaml_node_t *modules = map_get(&doc, root, "modules");
    yaml_node_t *hosts = map_get(&doc, root, "hosts");
    char *first_host = NULL;
    if (!root || root->type != YAML_MAPPING_NODE) {
        snprintf(err, errlen, "expected a YAML mapping at the top level");
        goto out;
    }
    if (hosts && hosts->type == YAML_SEQUENCE_NODE &&
        hosts->data.sequence.items.top > hosts->data.sequence.items.start) {
        yaml_node_t *h = yaml_document_get_node(&doc, hosts->data.sequence.items.start[0]);
        if (h && h->type == YAML_SCALAR_NODE)
            first_host = strndup((const char *)h->data.scalar.value, h->data.scalar.length);
    }
    r.host = host ? host : first_host ? first_host : "localhost";
    r.root = root;
    r.base = map_get(&doc, modules, MODULE);
    if (host) {
        r.over = map_get(&doc, map_get(&doc, map_get(&doc, map_get(&doc, root, "host_config"),
                                                     host), "modules"), MODULE);
        snprintf(r.over_prefix, sizeof r.over_prefix, "host_config.%.200s.modules." MODULE, host);
    } else {
        r.over = NULL;
    }
    if (!r.base && !r.over) {
        snprintf(err, errlen, "modules.%s: section missing", MODULE);
        goto out;
    }
    rc = read_options(&r, out, base_dir);
out:
    free(first_host);
    yaml_document_delete(&doc);
    if (rc < 0) hu_config_free(out);
    return rc;
}

int hu_config_load(const char *path, const char *host, hu_config *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    char msg[512];
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -errno;
    }
    char *buf = malloc(MAX_CONFIG_BYTES + 1);
    size_t n = buf ? fread(buf, 1, MAX_CONFIG_BYTES + 1, f) : 0;
    int read_err = ferror(f);
    fclose(f);
    if (!buf || read_err) {
        free(buf);
        snprintf(err, errlen, "%s: cannot read", path);
        return -EIO;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else snprintf(dir, sizeof dir, ".");
    int rc = hu_config_parse(buf, n, host, dir, out, msg, sizeof msg);
    free(buf);
    if (rc == 0 && (rc = hu_config_resolve(out, msg, sizeof msg)) < 0)
        hu_config_free(out);
    if (rc < 0) snprintf(err, errlen, "%s: %s", path, msg);
    return rc;
}

void hu_config_free(hu_config *c)
{
    free(c->host);
    free(c->server_url);
    free(c->url_prefix);
    for (size_t i = 0; i < c->n_secrets; i++) {
        OPENSSL_cleanse(c->secrets[i], c->secret_lens[i]); /* no secrets in freed memory */
        free(c->secrets[i]);
    }
    free_list(c->allowed_extensions, c->n_allowed_extensions);
    free(c->listen_host);
    free(c->storage_dir);
    free_list(c->cors_origins, c->n_cors_origins);
    free(c->ledger_path);
    free(c->access_log);
    free_list(c->certfiles, c->n_certfiles);
    hu_certs_free(&c->certs);
    free(c->metrics_listen_host);
    memset(c, 0, sizeof *c);
}
