%%% NIF stubs for mod_http_upload_hmac: token minting with the C token library the upload
%%% server links too, the server's own rules for file names and content types, the shared
%%% secret file, the storage layout, and the quota ledger. Kept apart from the
%%% module so a missing or broken .so is reported clearly instead of breaking the module's
%%% code loading. Expected failures are {error, Atom}.
-module(hmac_upload_nif).

-export([load/0, mint_bearer/6, check_filename/1, check_content_type/1, default_path/2,
         redact_ledger_path/1,
         storage_open/1, storage_migrate/2, delete_stored/4, secret_file_read/2, ledger_open/1, reserve/7,
         reserve_all/4,
         retry_at/3, usage/4, set_quota/3, list_files/2, get_file/2, delete_file/3,
         audit_recent/3, audit/7, server_config/2]).

-export_type([stored_file/0]).

%% A stored file's ledger row. The media metadata was computed from the bytes at upload:
%% media_type is the type they say (undefined: not probed), type_ok whether the signed
%% content_type agrees (undefined: not known), width and height an image's (undefined: not
%% an image decoded), blurhash its BlurHash, thumbnail whether one was stored (served at the
%% file's URL with ?thumbnail).
-type stored_file() :: #{path := binary(), user := binary() | undefined,
                         size := non_neg_integer(), content_type := binary() | undefined,
                         sha256 := binary() | undefined, created := integer(),
                         expires := integer(), source_ip := binary() | undefined,
                         scheme := binary() | undefined, media_type := binary() | undefined,
                         type_ok := boolean() | undefined,
                         width := pos_integer() | undefined, height := pos_integer() | undefined,
                         blurhash := binary() | undefined, thumbnail := boolean()}.

-on_load(load/0).

-define(LIB, "hmac_upload_nif").

%% The .so lives in priv/lib: found with code:priv_dir/1, or next to the ebin directory when
%% the module was loaded with -pa from a source tree.
-spec load() -> ok | {error, term()}.
load() ->
    Dir = case code:priv_dir(?MODULE) of
              {error, _} ->
                  filename:join(filename:dirname(filename:dirname(code:which(?MODULE))), "priv");
              PrivDir ->
                  PrivDir
          end,
    case erlang:load_nif(filename:join([Dir, "lib", ?LIB]), 0) of
        ok -> ok;
        {error, {reload, _}} -> ok;
        {error, {upgrade, _}} -> ok;
        {error, _} = Err ->
            error_logger:error_msg("hmac_upload_nif: cannot load ~s/lib/~s.so: ~p~n",
                                   [Dir, ?LIB, Err]),
            Err
    end.

-spec mint_bearer(binary(), binary(), binary(), non_neg_integer(), binary(), integer()) ->
          {ok, binary()} | {error, atom()}.
mint_bearer(_Secret, _User, _Path, _Size, _Type, _Expires) -> erlang:nif_error(not_loaded).

%% The upload server's rule for a file name: 1..1024 bytes of UTF-8 without NUL or "/",
%% not "." or "..".
-spec check_filename(binary()) -> ok | error.
check_filename(_Name) -> erlang:nif_error(not_loaded).

%% The upload server's rule for a content type: one RFC 9110 media type, no list.
-spec check_content_type(binary()) -> ok | error.
check_content_type(_Type) -> erlang:nif_error(not_loaded).

%% Where a state file (<<"secret">>, <<"ledger.sqlite3">>) lives by default under StorageDir.
-spec default_path(binary(), binary()) -> binary() | {error, atom()}.
default_path(_StorageDir, _Name) -> erlang:nif_error(not_loaded).

%% ledger_path fit for a log line: a PostgreSQL URL's password (user:password@ or
%% ?password=) becomes *** (the server's own redaction).
-spec redact_ledger_path(binary()) -> binary().
redact_ledger_path(_Path) -> erlang:nif_error(not_loaded).

%% Creates the storage layout's directories.
-spec storage_open(binary()) -> ok | {error, atom()}.
storage_open(_StorageDir) -> erlang:nif_error(not_loaded).

%% Migrates an older storage layout once (the ledger, or undefined, proves which old files
%% are uploads). Report is a line for the log, <<>> when nothing was done.
-spec storage_migrate(binary(), reference() | undefined) -> {ok, binary()} | {error, atom()}.
storage_migrate(_StorageDir, _Ledger) -> erlang:nif_error(not_loaded).

%% Deletes a published file and its ledger row (audited with Reason).
-spec delete_stored(reference(), binary(), binary(), binary()) -> ok | {error, atom()}.
delete_stored(_Ledger, _StorageDir, _Path, _Reason) -> erlang:nif_error(not_loaded).

-spec secret_file_read(binary(), boolean()) -> {ok, binary()} | {error, atom()}.
secret_file_read(_Path, _Create) -> erlang:nif_error(not_loaded).

-spec ledger_open(binary()) -> {ok, reference()} | {error, atom()}.
ledger_open(_Path) -> erlang:nif_error(not_loaded).

%% Reserves Size bytes for User under Path, in one transaction. The bytes count against the
%% quota until HeldUntil; the reservation (and the file's retention: Keep seconds after the
%% upload, 0 for ever, -1 the server's max_days; never after ExpireBefore unless 0) lives until
%% the token Expires. ok | {error, quota_exceeded} | {error, eexist | eagain | eio | einval}.
-spec reserve(reference(), binary(), binary(), non_neg_integer(),
              {integer(), integer(), integer(), non_neg_integer()}, integer(),
              non_neg_integer()) -> ok | {error, atom()}.
reserve(_Ledger, _Path, _User, _Size, _Times, _Now, _DefaultQuota) -> erlang:nif_error(not_loaded).

%% Grants as reserve/7 makes them, all in one transaction, in turn (each quota check sees the
%% grants before it): a result each, in order. At most 256 at once. Another failure than a
%% grant's own (quota_exceeded, eexist) is every grant's result.
-spec reserve_all(reference(),
                  [{binary(), binary(), non_neg_integer(),
                    {integer(), integer(), integer(), non_neg_integer()}}],
                  integer(), non_neg_integer()) -> [ok | {error, atom()}].
reserve_all(_Ledger, _Grants, _Now, _DefaultQuota) -> erlang:nif_error(not_loaded).

%% The earliest time one of User's held reservations lapses; 0 when none.
-spec retry_at(reference(), binary(), integer()) -> integer() | {error, atom()}.
retry_at(_Ledger, _User, _Now) -> erlang:nif_error(not_loaded).

-spec usage(reference(), binary(), integer(), non_neg_integer()) ->
          {ok, non_neg_integer(), non_neg_integer(), non_neg_integer()} | {error, atom()}.
usage(_Ledger, _User, _Now, _DefaultQuota) -> erlang:nif_error(not_loaded).

%% Quota is bytes, or the atom default to remove the override.
-spec set_quota(reference(), binary(), non_neg_integer() | default) -> ok | {error, atom()}.
set_quota(_Ledger, _User, _Quota) -> erlang:nif_error(not_loaded).

%% User's files, oldest first.
-spec list_files(reference(), binary()) -> {ok, [stored_file()]} | {error, atom()}.
list_files(_Ledger, _User) -> erlang:nif_error(not_loaded).

%% One file by its ledger path, <<"<slot>/<filename>">> percent-decoded (as in its GET URL
%% after the base). {error, enoent} when there is no such row (also for a Path no row can
%% have: too long, a NUL); {error, ledger_unavailable | eagain | eio} when the ledger cannot
%% answer now.
-spec get_file(reference(), binary()) -> {ok, stored_file()} | {error, atom()}.
get_file(_Ledger, _Path) -> erlang:nif_error(not_loaded).

-spec delete_file(reference(), binary(), binary()) -> ok | {error, atom()}.
delete_file(_Ledger, _Path, _Reason) -> erlang:nif_error(not_loaded).

%% Newest first; User is a bare JID or the atom all.
-spec audit_recent(reference(), binary() | all, non_neg_integer()) -> {ok, [map()]} | {error, atom()}.
audit_recent(_Ledger, _User, _Limit) -> erlang:nif_error(not_loaded).

-spec audit(reference(), integer(), binary(), binary(), binary(), non_neg_integer(), binary()) ->
          ok | {error, atom()}.
audit(_Ledger, _Now, _Event, _User, _Path, _Size, _Detail) -> erlang:nif_error(not_loaded).

%% The upload server's own reading of ejabberd.yml for Host (its C configuration code, with
%% host_config overrides and @HOST@): the effective listen address (several virtual hosts
%% with the same one share a server), the URL slots are minted under, and whether it serves
%% HTTPS. Line is the server's one-line description of what is wrong.
-spec server_config(binary(), binary()) ->
          {ok, #{listen := binary(), url := binary(), tls := boolean()}} |
          {error, {atom(), binary()}}.
server_config(_ConfigPath, _Host) -> erlang:nif_error(not_loaded).
