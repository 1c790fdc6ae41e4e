/* ejabberd.yml parsing: defaults, every option, host_config overrides, @HOST@, and one clear
 * error line naming the key for each kind of mistake. */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "secret_file.h"

#define SECRET_LINE "    hmac_shared_secret: \"0123456789abcdef0123\"\n"

static char err[512];

/* Parse, then settle what depends on certificates (none here: plain HTTP defaults). */
static int parse(const char *yml, const char *host, hu_config *c)
{
    int rc = hu_config_parse(yml, strlen(yml), host, "/nonexistent", c, err, sizeof err);
    if (rc == 0 && (rc = hu_config_resolve(c, err, sizeof err)) < 0)
        hu_config_free(c);
    return rc;
}

TEST(defaults)
{
    hu_config c;
    CHECK_INT(parse("hosts: [example.org]\nmodules:\n  mod_http_upload_hmac:\n" SECRET_LINE, NULL, &c), 0);
    CHECK_STR(c.server_url, "http://127.0.0.1:5444/upload");
    CHECK_STR(c.url_prefix, "/upload");
    CHECK_INT(c.n_secrets, 1);
    CHECK_INT(c.max_size, 104857600);
    CHECK_INT(c.quota_per_user, 1073741824);
    CHECK_INT(c.token_expiry, 86400);
    CHECK_INT(c.n_allowed_extensions, 0);
    CHECK_STR(c.listen_host, "127.0.0.1");
    CHECK_INT(c.listen_port, 5444);
    CHECK_STR(c.storage_dir, "/var/lib/hmac-upload");
    CHECK_STR(c.ledger_path, "/var/lib/hmac-upload/state/ledger.sqlite3");
    CHECK_INT(c.legacy_protocols, 0);
    CHECK_INT(c.n_cors_origins, 1);
    CHECK_STR(c.cors_origins[0], "*");
    CHECK_INT(c.fsync, 1);
    CHECK_INT(c.max_connections, 4096);
    CHECK_INT(c.header_timeout, 10);
    CHECK_INT(c.idle_timeout, 60);
    CHECK(c.access_log == NULL);
    hu_config_free(&c);
}

TEST(every_option)
{
    const char *yml =
        "hosts: [\"example.org\"]\n"
        "modules:\n"
        "  mod_disco: {}\n"
        "  mod_http_upload_hmac:\n"
        "    hmac_server_url: \"https://@HOST@/files/up/\"\n" SECRET_LINE
        "    hmac_previous_secrets: [\"older-secret-abcdefghij\"]\n"
        "    max_size: infinity\n"
        "    quota_per_user: infinity\n"
        "    token_expiry: 600\n"
        "    allowed_extensions: [jpg, \".PNG\"]\n"
        "    listen: \"[::1]:8080\"\n"
        "    storage_dir: /srv/up\n"
        "    legacy_protocols: [v1, token]\n"
        "    strict_content_type: true\n"
        "    cors_origins: [\"https://a.example\", \"https://b.example\"]\n"
        "    max_days: 30\n"
        "    fsync: false\n"
        "    max_connections: 10\n"
        "    header_timeout: 5\n"
        "    idle_timeout: 7\n"
        "    access_log: none\n"
        "    tls: false\n"
        "    metrics_listen: \"127.0.0.1:9464\"\n"
        "    rate_limit_per_ip: 20\n"
        "    rate_limit_per_user: infinity\n"
        "    upload_server: external\n"
        "    access: local\n"
        "    hosts: [\"upload.@HOST@\"]\n"
        "    name: \"Upload\"\n"
        "    rm_on_unregister: false\n"
        "    muc_metadata: false\n"
        "    chat_metadata: true\n"
        "    file_sharing_metadata: true\n"
        "    metadata_xmlns: \"https://prosody.im/protocol/media-metadata#0\"\n";
    hu_config c;
    CHECK_INT(parse(yml, NULL, &c), 0);
    CHECK_STR(c.server_url, "https://example.org/files/up/");
    CHECK_STR(c.url_prefix, "/files/up");
    CHECK_INT(c.n_secrets, 2);
    CHECK_STR(c.secrets[1], "older-secret-abcdefghij");
    CHECK(c.max_size == UINT64_MAX);
    CHECK_INT(c.quota_per_user, 0);
    CHECK_INT(c.token_expiry, 600);
    CHECK_INT(c.n_allowed_extensions, 2);
    CHECK_STR(c.allowed_extensions[0], ".jpg");
    CHECK_STR(c.allowed_extensions[1], ".png");
    CHECK_STR(c.listen_host, "::1");
    CHECK_INT(c.listen_port, 8080);
    CHECK_INT(c.tls_mode, HU_TLS_OFF);
    CHECK_INT(c.tls, 0);
    CHECK_STR(c.metrics_listen_host, "127.0.0.1");
    CHECK_INT(c.metrics_listen_port, 9464);
    CHECK_INT(c.rate_limit_ip, 20);
    CHECK_INT(c.rate_limit_user, 0);
    CHECK_STR(c.ledger_path, "/srv/up/state/ledger.sqlite3");
    CHECK_INT(c.legacy_protocols, HU_LEGACY_V1 | HU_LEGACY_TOKEN);
    CHECK_INT(c.strict_content_type, 1);
    CHECK_INT(c.n_cors_origins, 2);
    CHECK_INT(c.max_days, 30);
    CHECK_INT(c.fsync, 0);
    CHECK_INT(c.max_connections, 10);
    CHECK_STR(c.access_log, "none");
    hu_config_free(&c);
}

TEST(host_config_overrides)
{
    const char *yml =
        "hosts: [a.example, b.example]\n"
        "modules:\n"
        "  mod_http_upload_hmac:\n" SECRET_LINE
        "    max_size: 10\n"
        "    storage_dir: /srv/@HOST@\n"
        "host_config:\n"
        "  b.example:\n"
        "    modules:\n"
        "      mod_http_upload_hmac:\n"
        "        max_size: 20\n";
    hu_config c;
    CHECK_INT(parse(yml, NULL, &c), 0);
    CHECK_INT(c.max_size, 10);
    CHECK_STR(c.storage_dir, "/srv/a.example");
    hu_config_free(&c);
    CHECK_INT(parse(yml, "b.example", &c), 0);
    CHECK_INT(c.max_size, 20);
    CHECK_STR(c.storage_dir, "/srv/b.example");
    hu_config_free(&c);
}

TEST(anchors_and_aliases)
{
    const char *yml =
        "x-secret: &s \"anchored-secret-0123456789\"\n"
        "modules:\n"
        "  mod_http_upload_hmac:\n"
        "    hmac_shared_secret: *s\n";
    hu_config c;
    CHECK_INT(parse(yml, NULL, &c), 0);
    CHECK_STR(c.secrets[0], "anchored-secret-0123456789");
    hu_config_free(&c);
}

static void expect_error(const char *option_lines, const char *needle)
{
    char yml[1024];
    snprintf(yml, sizeof yml, "modules:\n  mod_http_upload_hmac:\n" SECRET_LINE "%s", option_lines);
    hu_config c;
    int rc = parse(yml, NULL, &c);
    if (rc != -EINVAL || !strstr(err, needle) || strchr(err, '\n'))
        fprintf(stderr, "for %s: rc %d, error \"%s\", wanted \"%s\"\n", option_lines, rc, err, needle);
    check_failed_ |= rc != -EINVAL || !strstr(err, needle) || strchr(err, '\n');
}

TEST(errors_name_the_key)
{
    expect_error("    max_size: big\n",
                 "modules.mod_http_upload_hmac.max_size: expected a non-negative integer or infinity, got \"big\"");
    expect_error("    max_size: -1\n", "max_size");
    expect_error("    token_expiry: 0\n", "token_expiry: must be between");
    expect_error("    listen: \"localhost:80\"\n", "listen: expected");
    expect_error("    listen: \"127.0.0.1:70000\"\n", "listen: expected");
    expect_error("    hmac_server_url: \"ftp://x/\"\n", "hmac_server_url: expected an http");
    expect_error("    legacy_protocols: [v3]\n", "legacy_protocols: unknown protocol \"v3\"");
    expect_error("    fsync: maybe\n", "fsync: expected true or false");
    expect_error("    chat_metadata: maybe\n", "chat_metadata: expected true or false");
    expect_error("    allowed_extensions: jpg\n", "allowed_extensions: expected a list");
    expect_error("    cors_origins: [[a]]\n", "cors_origins: item 1: expected a string");
    expect_error("    no_such_option: 1\n", "modules.mod_http_upload_hmac.no_such_option: unknown option");
    expect_error("    hmac_previous_secrets: [short]\n", "hmac_previous_secrets: item 1");
    hu_config c;
    CHECK_INT(parse("modules:\n  mod_http_upload_hmac:\n    hmac_shared_secret: short\n", NULL, &c), -EINVAL);
    CHECK(strstr(err, "hmac_shared_secret: must be 16"));
    CHECK_INT(parse("modules:\n  mod_disco: {}\n", NULL, &c), -EINVAL);
    CHECK_STR(err, "modules.mod_http_upload_hmac: section missing");
    CHECK_INT(parse("modules: [\n  oops", NULL, &c), -EINVAL);
    CHECK(strncmp(err, "line ", 5) == 0);
    CHECK_INT(parse("- a\n- b\n", NULL, &c), -EINVAL);
    CHECK_INT(parse("", NULL, &c), -EINVAL);
    const char *over = "modules:\n  mod_http_upload_hmac:\n" SECRET_LINE
                       "host_config:\n  h.example:\n    modules:\n      mod_http_upload_hmac:\n"
                       "        max_size: x\n";
    CHECK_INT(parse(over, "h.example", &c), -EINVAL);
    CHECK(strstr(err, "host_config.h.example.modules.mod_http_upload_hmac.max_size"));
}

TEST(secret_file_created_and_read)
{
    char dir[] = "/tmp/hu-config-XXXXXX", yml[512], path[600], secret[HU_MAX_SECRET_LEN];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(yml, sizeof yml, "modules:\n  mod_http_upload_hmac:\n    storage_dir: %s/store\n", dir);
    hu_config c;
    CHECK_INT(hu_config_parse(yml, strlen(yml), NULL, dir, &c, err, sizeof err), 0);
    CHECK_INT(c.n_secrets, 1);
    CHECK_INT(c.secret_lens[0], 64);
    snprintf(path, sizeof path, "%s/store/state/secret", dir);
    struct stat st;
    CHECK_INT(stat(path, &st), 0);
    CHECK_INT(st.st_mode & 0777, 0600);
    size_t len = 0;
    CHECK_INT(hu_secret_file_read(path, 0, secret, sizeof secret, &len, err, sizeof err), 0);
    CHECK_INT(len, 64);
    CHECK(memcmp(secret, c.secrets[0], 64) == 0);
    hu_config_free(&c);
    /* the same file on the next start */
    CHECK_INT(hu_config_parse(yml, strlen(yml), NULL, dir, &c, err, sizeof err), 0);
    CHECK(memcmp(secret, c.secrets[0], 64) == 0);
    hu_config_free(&c);
    /* a group-readable secret is refused */
    chmod(path, 0644);
    CHECK_INT(hu_config_parse(yml, strlen(yml), NULL, dir, &c, err, sizeof err), -EINVAL);
    CHECK(strstr(err, "hmac_shared_secret_file") && strstr(err, "chmod 600"));
    unlink(path);
    snprintf(path, sizeof path, "%s/store/state", dir);
    rmdir(path);
    snprintf(path, sizeof path, "%s/store", dir);
    rmdir(path);
    /* a secret file too short */
    snprintf(path, sizeof path, "%s/short", dir);
    FILE *f = fopen(path, "w");
    fputs("tiny\n", f);
    fclose(f);
    chmod(path, 0600);
    CHECK_INT(hu_secret_file_read(path, 0, secret, sizeof secret, &len, err, sizeof err), -EINVAL);
    unlink(path);
    CHECK_INT(hu_secret_file_read(path, 0, secret, sizeof secret, &len, err, sizeof err), -ENOENT);
    rmdir(dir);
}

/* An install from before storage layout 2 keeps its secret and ledger where they are. */
TEST(legacy_state_paths_kept)
{
    char dir[] = "/tmp/hu-config-XXXXXX", yml[512], path[600];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/secret", dir);
    FILE *f = fopen(path, "w");
    fputs("legacy-secret-0123456789abcdef\n", f);
    fclose(f);
    chmod(path, 0600);
    snprintf(path, sizeof path, "%s/ledger.sqlite3", dir);
    fclose(fopen(path, "w"));
    snprintf(yml, sizeof yml, "modules:\n  mod_http_upload_hmac:\n    storage_dir: %s\n", dir);
    hu_config c;
    CHECK_INT(hu_config_parse(yml, strlen(yml), NULL, dir, &c, err, sizeof err), 0);
    CHECK_MEM(c.secrets[0], c.secret_lens[0], "legacy-secret-0123456789abcdef");
    CHECK_STR(c.ledger_path, path);
    hu_config_free(&c);
    unlink(path);
    snprintf(path, sizeof path, "%s/secret", dir);
    unlink(path);
    rmdir(dir);
}

TEST(load_names_the_file)
{
    hu_config c;
    CHECK_INT(hu_config_load("/nonexistent/ejabberd.yml", NULL, &c, err, sizeof err), -ENOENT);
    CHECK_STR(err, "/nonexistent/ejabberd.yml: No such file or directory");
}

TEST_MAIN({
    RUN(defaults);
    RUN(every_option);
    RUN(host_config_overrides);
    RUN(anchors_and_aliases);
    RUN(errors_name_the_key);
    RUN(secret_file_created_and_read);
    RUN(legacy_state_paths_kept);
    RUN(load_names_the_file);
})
