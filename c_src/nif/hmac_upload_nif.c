/* The NIF behind hmac_upload_nif.erl: token minting (the same C token library as the upload
 * server, so the two can never disagree), the rules for file names and content types (the
 * server's own functions, so the module never grants a slot the server would refuse), the
 * shared secret file, the storage layout (opening and migrating it, deleting a file) and the
 * quota ledger.
 * No mutable C globals: the resource type lives in priv_data. Minting runs inline (a few
 * microseconds, charged as reductions); anything touching the disk runs on a dirty IO
 * scheduler. Expected failures are {error, Atom}; wrong argument types are badarg. */
#include <errno.h>
#include <erl_nif.h>
#include <string.h>

#include "config.h"
#include "ledger.h"
#include "mime.h"
#include "secret_file.h"
#include "storage.h"
#include "storage_migrate.h"
#include "token.h"
#include "upload_path.h"

typedef struct {
    ErlNifResourceType *ledger_type;
} nif_priv;

/* A ledger handle is single-threaded; dirty schedulers may call in parallel, hence the lock. */
typedef struct {
    ErlNifMutex *lock;
    hu_ledger *ledger;
} ledger_res;

static ERL_NIF_TERM atom(ErlNifEnv *env, const char *name) {
    ERL_NIF_TERM a;
    if (!enif_make_existing_atom(env, name, &a, ERL_NIF_LATIN1))
        a = enif_make_atom(env, name);
    return a;
}

static ERL_NIF_TERM error_tuple(ErlNifEnv *env, const char *reason) {
    return enif_make_tuple2(env, atom(env, "error"), atom(env, reason));
}

static const char *errno_atom(int err) {
    switch (-err) {
    case EINVAL: return "einval";
    case ENOENT: return "enoent";
    case EPERM: return "eperm";
    case EACCES: return "eacces";
    case EEXIST: return "eexist";
    case EAGAIN: return "eagain";
    case EDQUOT: return "quota_exceeded";
    case ENOMEM: return "enomem";
    case EPROTO: return "eproto";
    case ENOSPC: return "enospc";
    case ENAMETOOLONG: return "enametoolong";
    case ENOTCONN: return "ledger_unavailable"; /* PostgreSQL unreachable: try again soon */
    default: return "eio";
    }
}

static int get_slice(ErlNifEnv *env, ERL_NIF_TERM t, hu_slice *s) {
    ErlNifBinary b;
    if (!enif_inspect_binary(env, t, &b))
        return 0;
    s->ptr = (const char *)b.data;
    s->len = b.size;
    return 1;
}

/* A binary as a NUL-terminated C string in buf (refusing embedded NULs). */
static int get_cstr(ErlNifEnv *env, ERL_NIF_TERM t, char *buf, size_t cap) {
    ErlNifBinary b;
    if (!enif_inspect_binary(env, t, &b) || b.size >= cap || memchr(b.data, 0, b.size))
        return 0;
    memcpy(buf, b.data, b.size);
    buf[b.size] = '\0';
    return 1;
}

static ERL_NIF_TERM mint_bearer_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    hu_slice secret;
    hu_bearer_fields f;
    ErlNifUInt64 size;
    ErlNifSInt64 expires;
    if (!get_slice(env, argv[0], &secret) || !get_slice(env, argv[1], &f.user) ||
        !get_slice(env, argv[2], &f.path) || !enif_get_uint64(env, argv[3], &size) ||
        !get_slice(env, argv[4], &f.type) || !enif_get_int64(env, argv[5], &expires))
        return enif_make_badarg(env);
    f.size = size;
    f.expires = expires;
    char token[HU_BEARER_TOKEN_LEN + 1];
    int rc = hu_bearer_mint(secret, &f, token);
    enif_consume_timeslice(env, 1);
    if (rc < 0)
        return error_tuple(env, errno_atom(rc));
    ERL_NIF_TERM out;
    unsigned char *p = enif_make_new_binary(env, HU_BEARER_TOKEN_LEN, &out);
    memcpy(p, token, HU_BEARER_TOKEN_LEN);
    return enif_make_tuple2(env, atom(env, "ok"), out);
}

static ERL_NIF_TERM secret_file_read_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    char path[4096], secret[HU_MAX_SECRET_LEN], err[512];
    size_t len = 0;
    if (!get_cstr(env, argv[0], path, sizeof path) ||
        (!enif_is_identical(argv[1], atom(env, "true")) &&
         !enif_is_identical(argv[1], atom(env, "false"))))
        return enif_make_badarg(env);
    int create = enif_is_identical(argv[1], atom(env, "true"));
    int rc = hu_secret_file_read(path, create, secret, sizeof secret, &len, err, sizeof err);
    if (rc < 0)
        return error_tuple(env, errno_atom(rc));
    ERL_NIF_TERM out;
    unsigned char *p = enif_make_new_binary(env, len, &out);
    memcpy(p, secret, len);
    memset(secret, 0, sizeof secret);
    return enif_make_tuple2(env, atom(env, "ok"), out);
}

static void ledger_dtor(ErlNifEnv *env, void *obj) {
    (void)env;
    ledger_res *r = obj;
    hu_ledger_close(r->ledger);
    if (r->lock)
        enif_mutex_destroy(r->lock);
}

static ERL_NIF_TERM ledger_open_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    nif_priv *priv = enif_priv_data(env);
    char path[4096];
    if (!get_cstr(env, argv[0], path, sizeof path))
        return enif_make_badarg(env);
    ledger_res *r = enif_alloc_resource(priv->ledger_type, sizeof *r);
    if (r == NULL)
        return error_tuple(env, "enomem");
    r->ledger = NULL;
    r->lock = enif_mutex_create("hmac_upload_ledger");
    int rc = r->lock ? hu_ledger_open(path, &r->ledger) : -ENOMEM;
    if (rc < 0) {
        enif_release_resource(r); /* the destructor closes what was opened */
        return error_tuple(env, errno_atom(rc));
    }
    ERL_NIF_TERM t = enif_make_resource(env, r);
    enif_release_resource(r);
    return enif_make_tuple2(env, atom(env, "ok"), t);
}

static ledger_res *get_ledger(ErlNifEnv *env, ERL_NIF_TERM t) {
    nif_priv *priv = enif_priv_data(env);
    ledger_res *r;
    return enif_get_resource(env, t, priv->ledger_type, (void **)&r) && r->ledger ? r : NULL;
}

/* A grant's terms: Path, User, Size, {HeldUntil, Expires, Keep, ExpireBefore} (Keep -1 = the
 * server's max_days, retention.h) into res; path and user are copied into the buffers. */
static int get_reservation(ErlNifEnv *env, ERL_NIF_TERM path_t, ERL_NIF_TERM user_t,
                           ERL_NIF_TERM size_t_, ERL_NIF_TERM times_t, hu_reservation *res,
                           char path[1100], char user[HU_MAX_USER_LEN + 1]) {
    ErlNifUInt64 size;
    ErlNifSInt64 held_until, expires, keep, expire_before;
    const ERL_NIF_TERM *times;
    int arity;
    if (!get_cstr(env, path_t, path, 1100) || !get_cstr(env, user_t, user, HU_MAX_USER_LEN + 1) ||
        !enif_get_uint64(env, size_t_, &size) ||
        !enif_get_tuple(env, times_t, &arity, &times) || arity != 4 ||
        !enif_get_int64(env, times[0], &held_until) || !enif_get_int64(env, times[1], &expires) ||
        !enif_get_int64(env, times[2], &keep) || !enif_get_int64(env, times[3], &expire_before) ||
        keep < HU_KEEP_DEFAULT || expire_before < 0)
        return 0;
    *res = (hu_reservation){path, user, size, held_until, expires, {keep, expire_before}};
    return 1;
}

/* reserve(Ledger, Path, User, Size, {HeldUntil, Expires, Keep, ExpireBefore}, Now, Quota) */
static ERL_NIF_TERM reserve_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    ledger_res *r = get_ledger(env, argv[0]);
    char path[1100], user[HU_MAX_USER_LEN + 1];
    ErlNifUInt64 quota;
    ErlNifSInt64 now;
    hu_reservation res;
    if (!r || !get_reservation(env, argv[1], argv[2], argv[3], argv[4], &res, path, user) ||
        !enif_get_int64(env, argv[5], &now) || !enif_get_uint64(env, argv[6], &quota))
        return enif_make_badarg(env);
    int64_t retry_at = 0;
    enif_mutex_lock(r->lock);
    int rc = hu_ledger_reserve(r->ledger, &res, now, quota, &retry_at);
    enif_mutex_unlock(r->lock);
    return rc == 0 ? atom(env, "ok") : error_tuple(env, errno_atom(rc));
}

/* Grants per reserve_all call at most. */
#define RESERVE_ALL_MAX 256

/* reserve_all(Ledger, [{Path, User, Size, Times}], Now, Quota): the grants in one transaction
 * (hu_ledger_reserve_all), a result each, in order: ok | {error, Atom}. */
static ERL_NIF_TERM reserve_all_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    ledger_res *r = get_ledger(env, argv[0]);
    unsigned n = 0;
    ErlNifUInt64 quota;
    ErlNifSInt64 now;
    if (!r || !enif_get_list_length(env, argv[1], &n) || n > RESERVE_ALL_MAX ||
        !enif_get_int64(env, argv[2], &now) || !enif_get_uint64(env, argv[3], &quota))
        return enif_make_badarg(env);
    struct terms { /* one grant's strings */
        char path[1100], user[HU_MAX_USER_LEN + 1];
    } *t = enif_alloc(n * sizeof *t + 1);
    if (t == NULL)
        return error_tuple(env, "enomem");
    hu_reservation res[RESERVE_ALL_MAX];
    ERL_NIF_TERM list = argv[1], head;
    for (unsigned i = 0; i < n && enif_get_list_cell(env, list, &head, &list); i++) {
        const ERL_NIF_TERM *f;
        int arity;
        if (!enif_get_tuple(env, head, &arity, &f) || arity != 4 ||
            !get_reservation(env, f[0], f[1], f[2], f[3], &res[i], t[i].path, t[i].user)) {
            enif_free(t);
            return enif_make_badarg(env);
        }
    }
    int results[RESERVE_ALL_MAX];
    int64_t retry_at[RESERVE_ALL_MAX];
    enif_mutex_lock(r->lock);
    hu_ledger_reserve_all(r->ledger, res, n, now, quota, results, retry_at);
    enif_mutex_unlock(r->lock);
    enif_free(t);
    ERL_NIF_TERM out = enif_make_list(env, 0);
    for (unsigned i = n; i-- > 0;)
        out = enif_make_list_cell(
            env, results[i] == 0 ? atom(env, "ok") : error_tuple(env, errno_atom(results[i])), out);
    return out;
}

static ERL_NIF_TERM retry_at_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    ledger_res *r = get_ledger(env, argv[0]);
    char user[HU_MAX_USER_LEN + 1];
    ErlNifSInt64 now;
    if (!r || !get_cstr(env, argv[1], user, sizeof user) || !enif_get_int64(env, argv[2], &now))
        return enif_make_badarg(env);
    int64_t at = 0;
    enif_mutex_lock(r->lock);
    int rc = hu_ledger_retry_at(r->ledger, user, now, &at);
    enif_mutex_unlock(r->lock);
    return rc == 0 ? enif_make_int64(env, at) : error_tuple(env, errno_atom(rc));
}

static ERL_NIF_TERM usage_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    ledger_res *r = get_ledger(env, argv[0]);
    char user[HU_MAX_USER_LEN + 1];
    ErlNifSInt64 now;
    ErlNifUInt64 def;
    if (!r || !get_cstr(env, argv[1], user, sizeof user) || !enif_get_int64(env, argv[2], &now) ||
        !enif_get_uint64(env, argv[3], &def))
        return enif_make_badarg(env);
    uint64_t used = 0, reserved = 0, quota = 0;
    enif_mutex_lock(r->lock);
    int rc = hu_ledger_usage(r->ledger, user, now, def, &used, &reserved, &quota);
    enif_mutex_unlock(r->lock);
    if (rc < 0)
        return error_tuple(env, errno_atom(rc));
    return enif_make_tuple4(env, atom(env, "ok"), enif_make_uint64(env, used),
                            enif_make_uint64(env, reserved), enif_make_uint64(env, quota));
}

static ERL_NIF_TERM set_quota_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    ledger_res *r = get_ledger(env, argv[0]);
    char user[HU_MAX_USER_LEN + 1];
    ErlNifUInt64 q;
    int clear = enif_is_identical(argv[2], atom(env, "default"));
    if (!r || !get_cstr(env, argv[1], user, sizeof user) || (!clear && !enif_get_uint64(env, argv[2], &q)))
        return enif_make_badarg(env);
    enif_mutex_lock(r->lock);
    int rc = clear ? hu_ledger_clear_quota(r->ledger, user) : hu_ledger_set_quota(r->ledger, user, q);
    enif_mutex_unlock(r->lock);
    return rc == 0 ? atom(env, "ok") : error_tuple(env, errno_atom(rc));
}

static ERL_NIF_TERM text_or_undefined(ErlNifEnv *env, const char *s) {
    if (s == NULL)
        return atom(env, "undefined");
    ERL_NIF_TERM out;
    size_t n = strlen(s);
    memcpy(enif_make_new_binary(env, n, &out), s, n);
    return out;
}

typedef struct {
    ErlNifEnv *env;
    ERL_NIF_TERM list;
} list_ctx;

/* Rows arrive newest-last from the callbacks; they are consed, then reversed once. */
static void push_map(list_ctx *lc, ERL_NIF_TERM *keys, ERL_NIF_TERM *vals, size_t n) {
    ERL_NIF_TERM map;
    enif_make_map_from_arrays(lc->env, keys, vals, n, &map);
    lc->list = enif_make_list_cell(lc->env, map, lc->list);
}

static ERL_NIF_TERM list_result(ErlNifEnv *env, int rc, ERL_NIF_TERM list) {
    ERL_NIF_TERM rev;
    if (rc < 0)
        return error_tuple(env, errno_atom(rc));
    enif_make_reverse_list(env, list, &rev);
    return enif_make_tuple2(env, atom(env, "ok"), rev);
}

static ERL_NIF_TERM dimension_or_undefined(ErlNifEnv *env, uint32_t v) {
    return v > 0 ? enif_make_uint(env, v) : atom(env, "undefined");
}

/* A stored-file row as a map: path, user, size, content_type, sha256, created, expires,
 * source_ip, scheme, and its media metadata: media_type (binary | undefined), type_ok
 * (true | false | undefined), width and height (integer | undefined), blurhash (binary |
 * undefined), thumbnail (boolean). */
static ERL_NIF_TERM file_map(ErlNifEnv *env, const hu_stored_file *f) {
    ERL_NIF_TERM keys[] = {atom(env, "path"), atom(env, "user"), atom(env, "size"),
                           atom(env, "content_type"), atom(env, "sha256"), atom(env, "created"),
                           atom(env, "expires"), atom(env, "source_ip"), atom(env, "scheme"),
                           atom(env, "media_type"), atom(env, "type_ok"), atom(env, "width"),
                           atom(env, "height"), atom(env, "blurhash"), atom(env, "thumbnail")};
    ERL_NIF_TERM vals[] = {
        text_or_undefined(env, f->path),
        text_or_undefined(env, f->user),
        enif_make_uint64(env, f->size),
        text_or_undefined(env, f->content_type),
        text_or_undefined(env, f->sha256_hex),
        enif_make_int64(env, f->created),
        enif_make_int64(env, f->expires),
        text_or_undefined(env, f->source_ip),
        text_or_undefined(env, f->scheme),
        text_or_undefined(env, f->media_type),
        atom(env, f->type_ok < 0 ? "undefined" : f->type_ok ? "true" : "false"),
        dimension_or_undefined(env, f->width),
        dimension_or_undefined(env, f->height),
        text_or_undefined(env, f->blurhash),
        atom(env, f->thumbnail ? "true" : "false"),
    };
    ERL_NIF_TERM map;
    enif_make_map_from_arrays(env, keys, vals, sizeof keys / sizeof keys[0], &map);
    return map;
}

static int add_file(void *ctx, const hu_stored_file *f) {
    list_ctx *lc = ctx;
    lc->list = enif_make_list_cell(lc->env, file_map(lc->env, f), lc->list);
    return 0;
}

static ERL_NIF_TERM list_files_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    ledger_res *r = get_ledger(env, argv[0]);
    char user[HU_MAX_USER_LEN + 1];
    if (!r || !get_cstr(env, argv[1], user, sizeof user))
        return enif_make_badarg(env);
    list_ctx lc = {env, enif_make_list(env, 0)};
    enif_mutex_lock(r->lock);
    int rc = hu_ledger_list_files(r->ledger, user, add_file, &lc);
    enif_mutex_unlock(r->lock);
    return list_result(env, rc, lc.list);
}

typedef struct {
    ErlNifEnv *env;
    ERL_NIF_TERM map;
} file_ctx;

static int take_file(void *ctx, const hu_stored_file *f) {
    file_ctx *fc = ctx;
    fc->map = file_map(fc->env, f);
    return 1;
}

/* get_file(Ledger, Path): {ok, Map} (the map list_files gives) | {error, enoent | Atom}.
 * Path comes from a URL someone posted: one that cannot be a ledger path (too long, a NUL)
 * is no row, not badarg. */
static ERL_NIF_TERM get_file_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    ledger_res *r = get_ledger(env, argv[0]);
    char path[HU_MAX_PATH_LEN + 1];
    if (!r || !enif_is_binary(env, argv[1]))
        return enif_make_badarg(env);
    if (!get_cstr(env, argv[1], path, sizeof path))
        return error_tuple(env, "enoent");
    file_ctx fc = {env, 0};
    enif_mutex_lock(r->lock);
    int rc = hu_ledger_get_file(r->ledger, path, take_file, &fc);
    enif_mutex_unlock(r->lock);
    if (rc < 0)
        return error_tuple(env, errno_atom(rc));
    return enif_make_tuple2(env, atom(env, "ok"), fc.map);
}

static ERL_NIF_TERM delete_file_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    ledger_res *r = get_ledger(env, argv[0]);
    char path[1100], reason[256];
    if (!r || !get_cstr(env, argv[1], path, sizeof path) || !get_cstr(env, argv[2], reason, sizeof reason))
        return enif_make_badarg(env);
    enif_mutex_lock(r->lock);
    int rc = hu_ledger_delete_file(r->ledger, path, reason);
    enif_mutex_unlock(r->lock);
    return rc == 0 ? atom(env, "ok") : error_tuple(env, errno_atom(rc));
}

static int add_audit(void *ctx, const hu_audit_entry *e) {
    list_ctx *lc = ctx;
    ErlNifEnv *env = lc->env;
    ERL_NIF_TERM keys[] = {atom(env, "id"), atom(env, "at"), atom(env, "event"), atom(env, "user"),
                           atom(env, "path"), atom(env, "size"), atom(env, "detail")};
    ERL_NIF_TERM vals[] = {enif_make_int64(env, e->id), enif_make_int64(env, e->at),
                           text_or_undefined(env, e->event), text_or_undefined(env, e->user),
                           text_or_undefined(env, e->path), enif_make_uint64(env, e->size),
                           text_or_undefined(env, e->detail)};
    push_map(lc, keys, vals, 7);
    return 0;
}

static ERL_NIF_TERM audit_recent_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    ledger_res *r = get_ledger(env, argv[0]);
    char user[HU_MAX_USER_LEN + 1];
    unsigned limit;
    int all = enif_is_identical(argv[1], atom(env, "all"));
    if (!r || (!all && !get_cstr(env, argv[1], user, sizeof user)) || !enif_get_uint(env, argv[2], &limit))
        return enif_make_badarg(env);
    list_ctx lc = {env, enif_make_list(env, 0)};
    enif_mutex_lock(r->lock);
    int rc = hu_ledger_audit_recent(r->ledger, all ? NULL : user, limit, add_audit, &lc);
    enif_mutex_unlock(r->lock);
    return list_result(env, rc, lc.list);
}

static ERL_NIF_TERM audit_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    ledger_res *r = get_ledger(env, argv[0]);
    char event[32], user[HU_MAX_USER_LEN + 1], path[1100], detail[512];
    ErlNifSInt64 now;
    ErlNifUInt64 size;
    if (!r || !enif_get_int64(env, argv[1], &now) || !get_cstr(env, argv[2], event, sizeof event) ||
        !get_cstr(env, argv[3], user, sizeof user) || !get_cstr(env, argv[4], path, sizeof path) ||
        !enif_get_uint64(env, argv[5], &size) || !get_cstr(env, argv[6], detail, sizeof detail))
        return enif_make_badarg(env);
    enif_mutex_lock(r->lock);
    int rc = hu_ledger_audit(r->ledger, now, event, user[0] ? user : NULL, path[0] ? path : NULL,
                             size, detail[0] ? detail : NULL);
    enif_mutex_unlock(r->lock);
    return rc == 0 ? atom(env, "ok") : error_tuple(env, errno_atom(rc));
}

/* ok | error: the server's rule for a file name (upload_path.h). */
static ERL_NIF_TERM check_filename_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    hu_slice name;
    if (!get_slice(env, argv[0], &name))
        return enif_make_badarg(env);
    return atom(env, hu_segment_check(name) == 0 ? "ok" : "error");
}

/* ok | error: the server's rule for a signed content type (mime.h). */
static ERL_NIF_TERM check_content_type_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    hu_slice type;
    if (!get_slice(env, argv[0], &type))
        return enif_make_badarg(env);
    return atom(env, hu_content_type_check(type) == 0 ? "ok" : "error");
}

static ERL_NIF_TERM make_text(ErlNifEnv *env, const char *s) {
    ERL_NIF_TERM out;
    size_t n = strlen(s);
    memcpy(enif_make_new_binary(env, n, &out), s, n);
    return out;
}

/* The default path of a state file (storage.h: state/<name>, or where an older install keeps
 * it). */
static ERL_NIF_TERM default_path_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    char dir[4096], name[64], out[4200];
    if (!get_cstr(env, argv[0], dir, sizeof dir) || !get_cstr(env, argv[1], name, sizeof name) ||
        strchr(name, '/') != NULL)
        return enif_make_badarg(env);
    int rc = hu_storage_default_path(dir, name, out, sizeof out);
    return rc == 0 ? make_text(env, out) : error_tuple(env, errno_atom(rc));
}

/* A ledger_path fit for a log line: the server's own redaction (ledger.h). Pure, short. */
static ERL_NIF_TERM redact_ledger_path_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    char path[4096], out[4096];
    if (!get_cstr(env, argv[0], path, sizeof path))
        return enif_make_badarg(env);
    hu_ledger_redact(path, out, sizeof out);
    return make_text(env, out);
}

static ledger_res *get_ledger(ErlNifEnv *env, ERL_NIF_TERM t);

/* Creates the storage layout's directories (state/ holds the default ledger). ok | {error, A}. */
static ERL_NIF_TERM storage_open_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    char dir[4096];
    if (!get_cstr(env, argv[0], dir, sizeof dir))
        return enif_make_badarg(env);
    hu_storage s;
    int rc = hu_storage_open(dir, 1, &s);
    if (rc < 0)
        return error_tuple(env, errno_atom(rc));
    hu_storage_close(&s);
    return atom(env, "ok");
}

/* The one-time migration of an older layout, as the server does at start: whoever starts
 * first does it. The ledger (or undefined) proves which files of the old layout are uploads.
 * {ok, Report} with the log line ("" when nothing was done), or {error, Atom}. */
static ERL_NIF_TERM storage_migrate_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    char dir[4096], line[512];
    ledger_res *r = NULL;
    if (!get_cstr(env, argv[0], dir, sizeof dir) ||
        (!enif_is_identical(argv[1], atom(env, "undefined")) && !(r = get_ledger(env, argv[1]))))
        return enif_make_badarg(env);
    hu_storage s;
    int rc = hu_storage_open(dir, 1, &s);
    if (rc < 0)
        return error_tuple(env, errno_atom(rc));
    hu_migrate_report report;
    if (r)
        enif_mutex_lock(r->lock);
    rc = hu_storage_migrate(&s, hu_migrate_known_in_ledger, r ? r->ledger : NULL, &report);
    if (r)
        enif_mutex_unlock(r->lock);
    hu_storage_close(&s);
    if (rc < 0)
        return error_tuple(env, errno_atom(rc));
    hu_migrate_report_line(&report, line, sizeof line);
    return enif_make_tuple2(env, atom(env, "ok"), make_text(env, line));
}

/* Deletes a published file (storage layout, then its ledger row, audited with the reason). */
static ERL_NIF_TERM delete_stored_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    ledger_res *r = get_ledger(env, argv[0]);
    char dir[4096], path[HU_MAX_PATH_LEN + 1], reason[256], key[HU_STORAGE_KEY_LEN + 1];
    if (!r || !get_cstr(env, argv[1], dir, sizeof dir) || !get_cstr(env, argv[2], path, sizeof path) ||
        !get_cstr(env, argv[3], reason, sizeof reason))
        return enif_make_badarg(env);
    hu_storage s;
    int rc = hu_storage_open(dir, 1, &s);
    if (rc < 0)
        return error_tuple(env, errno_atom(rc));
    hu_storage_key(path, strlen(path), key);
    rc = hu_storage_unpublish(&s, key);
    hu_storage_close(&s);
    if (rc < 0 && rc != -ENOENT)
        return error_tuple(env, errno_atom(rc));
    enif_mutex_lock(r->lock);
    rc = hu_ledger_delete_file(r->ledger, path, reason);
    enif_mutex_unlock(r->lock);
    return rc == 0 ? atom(env, "ok") : error_tuple(env, errno_atom(rc));
}

/* The server's own reading of ejabberd.yml for a host (config.c + config_resolve.c): the
 * effective listen address and URL, and whether it speaks HTTPS. The module keys the servers
 * it runs by the listen address, so it must see exactly what the server will see.
 * {ok, #{listen, url, tls}} | {error, {einval | enoent | ..., Line}}. */
static ERL_NIF_TERM server_config_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    char path[4096], host[1024], err[512], listen[300];
    if (!get_cstr(env, argv[0], path, sizeof path) || !get_cstr(env, argv[1], host, sizeof host))
        return enif_make_badarg(env);
    hu_config cfg;
    int rc = hu_config_load(path, host[0] ? host : NULL, &cfg, err, sizeof err);
    if (rc < 0)
        return enif_make_tuple2(env, atom(env, "error"),
                                enif_make_tuple2(env, atom(env, errno_atom(rc)), make_text(env, err)));
    int v6 = strchr(cfg.listen_host, ':') != NULL;
    snprintf(listen, sizeof listen, "%s%s%s:%u", v6 ? "[" : "", cfg.listen_host, v6 ? "]" : "",
             cfg.listen_port);
    ERL_NIF_TERM keys[] = {atom(env, "listen"), atom(env, "url"), atom(env, "tls")};
    ERL_NIF_TERM vals[] = {make_text(env, listen), make_text(env, cfg.server_url),
                           atom(env, cfg.tls ? "true" : "false")};
    ERL_NIF_TERM map;
    enif_make_map_from_arrays(env, keys, vals, 3, &map);
    hu_config_free(&cfg);
    return enif_make_tuple2(env, atom(env, "ok"), map);
}

static int open_types(ErlNifEnv *env, nif_priv *priv) {
    ErlNifResourceFlags tried;
    priv->ledger_type = enif_open_resource_type(env, NULL, "hmac_upload_ledger", ledger_dtor,
                                                ERL_NIF_RT_CREATE | ERL_NIF_RT_TAKEOVER, &tried);
    return priv->ledger_type ? 0 : -1;
}

static int load(ErlNifEnv *env, void **priv_data, ERL_NIF_TERM info) {
    (void)info;
    nif_priv *priv = enif_alloc(sizeof *priv);
    if (priv == NULL || open_types(env, priv) < 0) {
        enif_free(priv);
        return 1;
    }
    *priv_data = priv;
    return 0;
}

static int upgrade(ErlNifEnv *env, void **priv_data, void **old_priv, ERL_NIF_TERM info) {
    (void)old_priv;
    return load(env, priv_data, info);
}

static void unload(ErlNifEnv *env, void *priv_data) {
    (void)env;
    enif_free(priv_data);
}

static ErlNifFunc nif_funcs[] = {
    {"mint_bearer", 6, mint_bearer_nif, 0},
    {"check_filename", 1, check_filename_nif, 0},
    {"check_content_type", 1, check_content_type_nif, 0},
    {"default_path", 2, default_path_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"redact_ledger_path", 1, redact_ledger_path_nif, 0},
    {"server_config", 2, server_config_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"storage_open", 1, storage_open_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"storage_migrate", 2, storage_migrate_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"delete_stored", 4, delete_stored_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"secret_file_read", 2, secret_file_read_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"ledger_open", 1, ledger_open_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"reserve", 7, reserve_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"reserve_all", 4, reserve_all_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"retry_at", 3, retry_at_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"usage", 4, usage_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"set_quota", 3, set_quota_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"list_files", 2, list_files_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"get_file", 2, get_file_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"delete_file", 3, delete_file_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"audit_recent", 3, audit_recent_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"audit", 7, audit_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},
};

ERL_NIF_INIT(hmac_upload_nif, nif_funcs, load, NULL, upgrade, unload)
