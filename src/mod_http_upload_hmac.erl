%%% XEP-0363 HTTP File Upload for ejabberd, with signed, time-limited PUT URLs served by
%%% hmac-upload-server (c_src/server). This module answers slot requests on the upload
%%% component (upload.@HOST@), applies the size, extension, filename, access and quota rules,
%%% reserves the bytes in the shared ledger and mints the Bearer token with the NIF, whose C
%%% token library the upload server links too. With upload_server: managed (the default) it
%%% also runs that server, through mod_http_upload_hmac_server (one per listen address,
%%% supervised). Wire formats: ../shared/DESIGN.md.
-module(mod_http_upload_hmac).
-author('mod_http_upload_hmac authors').

-behaviour(gen_mod).
-behaviour(gen_server).

%% gen_mod
-export([start/2, stop/1, reload/3, depends/2, mod_opt_type/1, mod_options/1, mod_doc/0]).
%% gen_server
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2, code_change/3]).
%% hooks and commands
-export([remove_user/2, get_commands_spec/0, cmd_usage/2, cmd_set_quota/3, cmd_clear_quota/2,
         cmd_list_files/2, cmd_delete_file/2, cmd_audit/2]).

-include("logger.hrl").
-include("xmpp.hrl").
-include("ejabberd_commands.hrl").
-include("translate.hrl").

-define(DEFAULT_TYPE, <<"application/octet-stream">>).
-define(SLOT, mod_http_upload_hmac_slot).

-record(state, {server_host :: binary(),
                hosts = [] :: [binary()],
                name :: binary(),
                access :: atom(),
                max_size :: pos_integer() | infinity,
                quota :: non_neg_integer(),      % 0 = unlimited
                token_expiry :: pos_integer(),
                reservation_time :: pos_integer(),
                retention = #{} :: #{atom() => pos_integer() | infinity | refuse | default},
                extensions = [] :: [binary()],   % lowercase, with the leading dot
                server_url :: binary(),
                secret :: binary(),
                storage_dir :: binary(),
                ledger :: reference() | undefined,
                grants :: pid() | undefined,     % mod_http_upload_hmac_grants, with a ledger
                workers = 0 :: non_neg_integer()}).   % IQs being answered by workers

%% Slot requests are answered by short-lived workers, so one user's grant waiting on the
%% ledger (a dirty-IO NIF call) holds up nobody else's; past this many at once the module's
%% process answers them itself, and its mailbox is the queue.
-define(MAX_WORKERS, 64).

%%%===================================================================
%%% gen_mod
%%%===================================================================
start(ServerHost, Opts) ->
    case gen_mod:start_child(?MODULE, ServerHost, Opts) of
        {ok, _} = Ok ->
            register_commands(),
            case gen_mod:get_opt(upload_server, Opts) of
                managed -> mod_http_upload_hmac_server:acquire(ServerHost);
                external -> ok
            end,
            Ok;
        Err ->
            Err
    end.

%% The upload server goes first (the last module instance using it waits for it to exit),
%% then the commands, then this instance.
stop(ServerHost) ->
    mod_http_upload_hmac_server:release(ServerHost),
    case gen_mod:is_loaded_elsewhere(ServerHost, ?MODULE) of
        false -> ejabberd_commands:unregister_commands(get_commands_spec());
        true -> ok
    end,
    gen_mod:stop_child(?MODULE, ServerHost).

reload(ServerHost, NewOpts, OldOpts) ->
    mod_http_upload_hmac_server:update(ServerHost, NewOpts),
    gen_server:cast(gen_mod:get_module_proc(ServerHost, ?MODULE), {reload, NewOpts, OldOpts}).

depends(_Host, _Opts) -> [].

mod_opt_type(hmac_server_url) -> econf:url([http, https]);
mod_opt_type(hmac_shared_secret) -> econf:binary("^.{16,1024}$");
mod_opt_type(hmac_shared_secret_file) -> econf:binary();
mod_opt_type(hmac_previous_secrets) -> econf:list(econf:binary("^.{16,1024}$"));
mod_opt_type(max_size) -> econf:pos_int(infinity);
mod_opt_type(quota_per_user) -> econf:pos_int(infinity);
mod_opt_type(token_expiry) -> econf:pos_int();
mod_opt_type(reservation_time) -> econf:timeout(second);
mod_opt_type(purpose_retention) ->
    econf:and_then(
      econf:map(econf:enum([message, ephemeral, profile, permanent]),
                econf:either(econf:enum([infinity, refuse, default]), econf:pos_int()),
                [unique, {return, map}]),
      fun(#{message := refuse}) -> econf:fail({bad_option, "message cannot be refused: it is "
                                               "the purpose of a request that names none"});
         (M) -> M
      end);
mod_opt_type(allowed_extensions) -> econf:list(econf:binary());
mod_opt_type(listen) -> econf:binary();
mod_opt_type(storage_dir) -> econf:binary();
mod_opt_type(legacy_protocols) -> econf:list(econf:enum([v1, v2, token, jwt]));
mod_opt_type(strict_content_type) -> econf:bool();
mod_opt_type(cors_origins) -> econf:list(econf:binary());
mod_opt_type(max_days) -> econf:pos_int(infinity);
mod_opt_type(ledger_path) -> econf:binary();
mod_opt_type(rm_on_unregister) -> econf:bool();
mod_opt_type(fsync) -> econf:bool();
mod_opt_type(max_connections) -> econf:pos_int();
mod_opt_type(header_timeout) -> econf:pos_int();
mod_opt_type(idle_timeout) -> econf:pos_int();
mod_opt_type(access_log) -> econf:binary();
mod_opt_type(upload_server) -> econf:enum([managed, external]);
mod_opt_type(tls) -> econf:either(auto, econf:bool());
mod_opt_type(certfiles) -> econf:list(econf:binary());
mod_opt_type(metrics_listen) -> econf:either(none, econf:binary());
mod_opt_type(rate_limit_per_ip) -> econf:pos_int(infinity);
mod_opt_type(rate_limit_per_user) -> econf:pos_int(infinity);
mod_opt_type(media_metadata) -> econf:bool();
mod_opt_type(media_max_pixels) -> econf:pos_int();
mod_opt_type(thumbnails) -> econf:bool();
mod_opt_type(muc_metadata) -> econf:bool();
mod_opt_type(chat_metadata) -> econf:bool();
mod_opt_type(file_sharing_metadata) -> econf:bool();
mod_opt_type(metadata_xmlns) -> econf:binary();
mod_opt_type(access) -> econf:acl();
mod_opt_type(name) -> econf:binary();
mod_opt_type(host) -> econf:host();
mod_opt_type(hosts) -> econf:hosts().

mod_options(Host) ->
    [{hmac_server_url, undefined},
     {hmac_shared_secret, undefined},
     {hmac_shared_secret_file, undefined},
     {hmac_previous_secrets, []},
     {max_size, 104857600},
     {quota_per_user, 1073741824},
     {token_expiry, 86400},
     {reservation_time, timer:seconds(300)},
     {purpose_retention, #{}},
     {allowed_extensions, []},
     {listen, undefined},
     {storage_dir, <<"/var/lib/hmac-upload">>},
     {legacy_protocols, []},
     {strict_content_type, false},
     {cors_origins, [<<"*">>]},
     {max_days, infinity},
     {ledger_path, undefined},
     {rm_on_unregister, true},
     {fsync, true},
     {max_connections, 4096},
     {header_timeout, 10},
     {idle_timeout, 60},
     {access_log, undefined},
     {upload_server, managed},
     {tls, auto},
     {certfiles, undefined},
     {metrics_listen, none},
     {rate_limit_per_ip, infinity},
     {rate_limit_per_user, infinity},
     {media_metadata, true},
     {media_max_pixels, 40000000},
     {thumbnails, true},
     {muc_metadata, true},
     {chat_metadata, false},
     {file_sharing_metadata, false},
     {metadata_xmlns, <<"xmpp:prosody.im/protocol/media-metadata#0">>},
     {access, local},
     {name, <<"HTTP File Upload">>},
     {host, <<"upload.", Host/binary>>},
     {hosts, []}].

mod_doc() ->
    #{desc =>
          [?T("XEP-0363 HTTP File Upload with signed, time-limited PUT URLs. The module "
              "hands out upload slots whose PUT URL carries an HMAC-SHA256 Bearer token "
              "(also sent as an 'Authorization: Bearer' slot header); hmac-upload-server, "
              "configured from this same section of ejabberd.yml, checks the token, streams "
              "the upload to disk and serves downloads. Quotas, reservations and an audit "
              "log live in a SQLite ledger both share.")],
      opts =>
          [{hmac_server_url, #{value => ?T("URL"),
                               desc => ?T("Public base of the PUT and GET URLs; the upload "
                                          "server serves under its path. Default "
                                          "https://<host>:5444/upload when the certificates "
                                          "('certfiles') hold one valid for the virtual host, "
                                          "else http://127.0.0.1:5444/upload.")}},
           {hmac_shared_secret, #{value => ?T("Secret"),
                                  desc => ?T("HMAC key shared with the upload server "
                                             "(16 to 1024 bytes).")}},
           {hmac_shared_secret_file, #{value => ?T("Path"),
                                       desc => ?T("File holding the key, used when "
                                                  "'hmac_shared_secret' is not set; default "
                                                  "<storage_dir>/state/secret, created with a random "
                                                  "key (mode 0600) by whoever starts first.")}},
           {hmac_previous_secrets, #{value => ?T("[Secret, ...]"),
                                     desc => ?T("Keys the server still accepts while "
                                                "rotating (server only).")}},
           {max_size, #{value => ?T("Size"),
                        desc => ?T("Largest file in bytes, or 'infinity'. Default 104857600.")}},
           {quota_per_user, #{value => ?T("Size"),
                              desc => ?T("Bytes stored plus reserved per bare JID, or "
                                         "'infinity'. Default 1073741824.")}},
           {token_expiry, #{value => ?T("Seconds"),
                            desc => ?T("How long a PUT URL may be started. Default 86400.")}},
           {reservation_time, #{value => "timeout()",
                                desc => ?T("How long a granted slot holds its bytes of the "
                                           "user's quota when no upload starts on it (at most "
                                           "token_expiry). An upload that starts later is "
                                           "checked against the quota again and refused (HTTP "
                                           "507) if the bytes no longer fit; one that starts "
                                           "in time holds them until it completes. Default "
                                           "300 seconds.")}},
           {purpose_retention, #{value => ?T("{Purpose: Days | infinity | default | refuse}"),
                                 desc => ?T("How long files are kept for each XEP-0363 upload "
                                            "purpose: 'message' (a request naming none), "
                                            "'ephemeral' (also deleted at the client's "
                                            "expire-before), 'profile' (avatars) and "
                                            "'permanent'. 'default' is max_days; 'refuse' "
                                            "turns a purpose off (not 'message'). Default: "
                                            "message and ephemeral 'default', profile and "
                                            "permanent 'infinity'. Needs the ledger: with "
                                            "ledger_path 'none' only 'message' is offered.")}},
           {allowed_extensions, #{value => ?T("[Extension, ...]"),
                                  desc => ?T("File extensions accepted, case-insensitively; "
                                             "empty: all.")}},
           {listen, #{value => ?T("Address:Port"),
                      desc => ?T("Where the upload server binds (server only). Default "
                                 "127.0.0.1:<port of hmac_server_url> when the URL's host is "
                                 "loopback, else [::]:<port>. Virtual hosts with the same "
                                 "listen address share one server.")}},
           {storage_dir, #{value => ?T("Path"),
                           desc => ?T("Uploads (in files/, the only tree ever served) and "
                                      "the server's state (in state/: partial uploads, "
                                      "the default secret file and ledger). Default "
                                      "/var/lib/hmac-upload.")}},
           {legacy_protocols, #{value => ?T("[v1 | v2 | token | jwt]"),
                                desc => ?T("Other peers' tokens the server accepts: Prosody "
                                           "mod_http_upload_external v1 and v2 and ejabberd's "
                                           "external_secret (v1), the 'token' query, Prosody "
                                           "mod_http_file_share's JWTs (server only).")}},
           {strict_content_type, #{value => "true | false",
                                   desc => ?T("Refuse a PUT whose Content-Type differs from "
                                              "the signed one (server only).")}},
           {cors_origins, #{value => ?T("[Origin, ...]"),
                            desc => ?T("CORS origins (server only). Default [\"*\"].")}},
           {max_days, #{value => ?T("Days"),
                        desc => ?T("Delete files this many days after their upload; also "
                                   "the retention of purpose_retention's 'default'.")}},
           {ledger_path, #{value => ?T("Path"),
                           desc => ?T("SQLite ledger; default <storage_dir>/state/ledger.sqlite3; "
                                      "'none' disables quotas and audit.")}},
           {rm_on_unregister, #{value => "true | false",
                                desc => ?T("Delete a user's files when the account is removed.")}},
           {fsync, #{value => "true | false", desc => ?T("Durable writes (server only).")}},
           {max_connections, #{value => ?T("Number"), desc => ?T("Server only.")}},
           {header_timeout, #{value => ?T("Seconds"), desc => ?T("Server only.")}},
           {idle_timeout, #{value => ?T("Seconds"), desc => ?T("Server only.")}},
           {access_log, #{value => ?T("Path"),
                          desc => ?T("Server only; 'none' disables it. Default standard "
                                     "output, or none when the module runs the server.")}},
           {upload_server, #{value => "managed | external",
                             desc => ?T("'managed': the module runs priv/bin/hmac-upload-server "
                                        "as a supervised Erlang port (one per listen address; "
                                        "restarted with back-off when it dies, told to reload "
                                        "on module reload and reload_config, stopped with the "
                                        "module, its log lines in ejabberd's log; see "
                                        "'ejabberdctl upload_server_status'). 'external': the "
                                        "operator runs it (systemd unit). Default 'managed'.")}},
           {tls, #{value => "auto | true | false",
                   desc => ?T("Whether the server speaks HTTPS: 'auto' when hmac_server_url is "
                              "https://; 'false' for plain HTTP behind a TLS proxy (server "
                              "only). Default 'auto'.")}},
           {certfiles, #{value => ?T("[Path, ...]"),
                         desc => ?T("PEM files (certificate chain and key; globs allowed) the "
                                    "server uses for HTTPS, chosen by SNI (server only). "
                                    "Default: the top-level 'certfiles'.")}},
           {metrics_listen, #{value => ?T("Address:Port | none"),
                              desc => ?T("Prometheus /metrics on a separate plain-HTTP listener "
                                         "(server only). Default 'none'.")}},
           {rate_limit_per_ip, #{value => ?T("Number | infinity"),
                                 desc => ?T("Requests per second per client address (bursts of "
                                            "twice that); over it, 429 with Retry-After (server "
                                            "only). Default 'infinity'.")}},
           {rate_limit_per_user, #{value => ?T("Number | infinity"),
                                   desc => ?T("PUTs per second per uploader (bare JID of the "
                                              "token; bursts of twice that); over it, 429 with "
                                              "Retry-After (server only). Default 'infinity'.")}},
           {media_metadata, #{value => "true | false",
                              desc => ?T("At upload, images (JPEG, PNG, WebP, GIF) get their "
                                         "type from their bytes, their width and height and a "
                                         "BlurHash, sent on GET/HEAD as Blurhash and "
                                         "X-Image-Dimensions (server only). Default true.")}},
           {media_max_pixels, #{value => ?T("Pixels"),
                                desc => ?T("Images with more pixels are not decoded (a "
                                           "decompression bomb costs nothing). Default "
                                           "40000000.")}},
           {thumbnails, #{value => "true | false",
                          desc => ?T("A small WebP thumbnail per image, served at the file's "
                                     "URL with ?thumbnail (server only). Default true.")}},
           {muc_metadata, #{value => "true | false",
                            desc => ?T("Group-chat messages (mod_muc) whose out-of-band URL "
                                       "(jabber:x:oob) is one of this service's files get, "
                                       "inside that element, the file's <metadata> as "
                                       "Prosody's mod_muc_media_metadata adds it (bytes, "
                                       "type, blurhash) plus width and height, from the "
                                       "ledger, without an HTTP request. Other URLs pass "
                                       "untouched. Needs the ledger. Default true.")}},
           {chat_metadata, #{value => "true | false",
                             desc => ?T("The same for one-to-one messages local users send. "
                                        "Default false.")}},
           {file_sharing_metadata, #{value => "true | false",
                                     desc => ?T("Those messages also get a XEP-0447 "
                                                "<file-sharing> element with XEP-0446 file "
                                                "metadata (name, size, media-type, sha-256, "
                                                "width, height, thumbnail) and the URL as its "
                                                "source. Default false.")}},
           {metadata_xmlns, #{value => ?T("Namespace"),
                              desc => ?T("Namespace of the <metadata> element. Default "
                                         "\"xmpp:prosody.im/protocol/media-metadata#0\"; "
                                         "Prosody's current module uses "
                                         "\"https://prosody.im/protocol/media-metadata#0\".")}},
           {access, #{value => ?T("AccessName"),
                      desc => ?T("Who may request slots. Default 'local'.")}},
           {name, #{value => ?T("Name"), desc => ?T("Service discovery name.")}},
           {host, #{desc => ?T("Deprecated. Use 'hosts' instead.")}},
           {hosts, #{value => ?T("[Host, ...]"),
                     desc => ?T("JIDs of the upload service. Default \"upload.@HOST@\".")}}]}.

%%%===================================================================
%%% gen_server
%%%===================================================================
init([ServerHost | _]) ->
    process_flag(trap_exit, true),
    Opts = gen_mod:get_module_opts(ServerHost, ?MODULE),
    case init_state(ServerHost, Opts) of
        {ok, State} ->
            Hosts = gen_mod:get_opt_hosts(Opts),
            lists:foreach(fun(H) -> ejabberd_router:register_route(H, ServerHost) end, Hosts),
            ejabberd_hooks:add(remove_user, ServerHost, ?MODULE, remove_user, 50),
            register_media_hooks(State, Opts),
            {ok, Grants} = mod_http_upload_hmac_grants:start_link(),
            {ok, State#state{hosts = Hosts, grants = Grants}};
        {error, Why} ->
            ?CRITICAL_MSG("mod_http_upload_hmac on ~ts cannot start: ~ts", [ServerHost, Why]),
            {stop, Why}
    end.

handle_call({ledger, Fun}, _From, #state{ledger = undefined} = State) ->
    _ = Fun,
    {reply, {error, ledger_disabled}, State};
handle_call({ledger, Fun}, _From, #state{ledger = L} = State) ->
    {reply, Fun(L, State#state.quota, State#state.storage_dir), State};
handle_call(Request, From, State) ->
    ?WARNING_MSG("Unexpected call from ~p: ~p", [From, Request]),
    {noreply, State}.

handle_cast({reload, NewOpts, _OldOpts}, #state{server_host = ServerHost, hosts = OldHosts} = State) ->
    case init_state(ServerHost, NewOpts) of
        {ok, New} ->
            NewHosts = gen_mod:get_opt_hosts(NewOpts),
            lists:foreach(fun ejabberd_router:unregister_route/1, OldHosts -- NewHosts),
            lists:foreach(fun(H) -> ejabberd_router:register_route(H, ServerHost) end,
                          NewHosts -- OldHosts),
            mod_http_upload_hmac_hooks:unregister(ServerHost),
            register_media_hooks(New, NewOpts),
            {noreply, New#state{hosts = NewHosts, grants = State#state.grants}};
        {error, Why} ->
            ?ERROR_MSG("mod_http_upload_hmac: reload failed, keeping the old settings: ~ts", [Why]),
            {noreply, State}
    end;
handle_cast(Request, State) ->
    ?WARNING_MSG("Unexpected cast: ~p", [Request]),
    {noreply, State}.

handle_info({route, #iq{} = Packet}, #state{workers = N} = State) when N < ?MAX_WORKERS ->
    _ = spawn_monitor(fun() -> route(Packet, State) end),
    {noreply, State#state{workers = N + 1}};
handle_info({route, #iq{} = Packet}, State) ->
    route(Packet, State),
    {noreply, State};
handle_info({'DOWN', _Ref, process, _Pid, _Reason}, #state{workers = N} = State) ->
    {noreply, State#state{workers = max(0, N - 1)}};
handle_info({'EXIT', Pid, Reason}, #state{grants = Pid} = State) ->
    %% its waiting callers got an exit (their slot requests an internal error); a new one
    %% takes the next grants
    ?ERROR_MSG("HTTP upload grants process died: ~p", [Reason]),
    {ok, Grants} = mod_http_upload_hmac_grants:start_link(),
    {noreply, State#state{grants = Grants}};
handle_info(Info, State) ->
    ?WARNING_MSG("Unexpected info: ~p", [Info]),
    {noreply, State}.

terminate(_Reason, #state{server_host = ServerHost, hosts = Hosts}) ->
    ejabberd_hooks:delete(remove_user, ServerHost, ?MODULE, remove_user, 50),
    mod_http_upload_hmac_hooks:unregister(ServerHost),
    lists:foreach(fun ejabberd_router:unregister_route/1, Hosts).

code_change(_OldVsn, State, _Extra) -> {ok, State}.

%%%===================================================================
%%% Settings
%%%===================================================================
init_state(ServerHost, Opts) ->
    Opt = fun(Name) -> expand(gen_mod:get_opt(Name, Opts), ServerHost) end,
    StorageDir = Opt(storage_dir),
    case secret(Opt(hmac_shared_secret), Opt(hmac_shared_secret_file), StorageDir) of
        {ok, Secret} ->
            case open_state(Opt(ledger_path), StorageDir) of
                {ok, Ledger} ->
                    {ok, #state{server_host = ServerHost,
                                name = Opt(name),
                                access = Opt(access),
                                max_size = Opt(max_size),
                                quota = case Opt(quota_per_user) of
                                            infinity -> 0;
                                            Q -> Q
                                        end,
                                token_expiry = Opt(token_expiry),
                                reservation_time = max(1, Opt(reservation_time) div 1000),
                                retention = Opt(purpose_retention),
                                extensions = [normalize_extension(E) || E <- Opt(allowed_extensions)],
                                server_url = trim_slash(
                                               mod_http_upload_hmac_server:effective_url(
                                                 ServerHost, Opts)),
                                secret = Secret,
                                storage_dir = StorageDir,
                                ledger = Ledger}};
                {error, _} = Err ->
                    Err
            end;
        {error, Why} ->
            {error, Why}
    end.

%% The message hooks read the ledger and the GET URLs' base from a persistent term.
register_media_hooks(#state{server_host = ServerHost, ledger = Ledger, server_url = URL}, Opts) ->
    mod_http_upload_hmac_hooks:register(
      ServerHost, #{ledger => Ledger, base => URL,
                    xmlns => gen_mod:get_opt(metadata_xmlns, Opts),
                    file_sharing => gen_mod:get_opt(file_sharing_metadata, Opts),
                    muc => gen_mod:get_opt(muc_metadata, Opts),
                    chat => gen_mod:get_opt(chat_metadata, Opts)}).

expand(B, Host) when is_binary(B) -> misc:expand_keyword(<<"@HOST@">>, B, Host);
expand(V, _Host) -> V.

%% The default secret file and ledger paths are the storage layout's (C, shared with the
%% server): state/secret and state/ledger.sqlite3, or where an older install keeps them.
secret(Secret, _File, _Dir) when is_binary(Secret) -> {ok, Secret};
secret(undefined, File, Dir) ->
    Path = case File of
               undefined -> hmac_upload_nif:default_path(Dir, <<"secret">>);
               _ -> File
           end,
    case hmac_upload_nif:secret_file_read(Path, true) of
        {ok, S} -> {ok, S};
        {error, Why} -> {error, io_lib:format("hmac_shared_secret_file ~ts: ~p", [Path, Why])}
    end.

%% The storage layout first (it creates state/, where the ledger lives by default), then the
%% ledger, then the one-time migration of an older layout, which asks the ledger what is
%% ours: the server's order, and whoever starts first does it.
open_state(LedgerPath, Dir) ->
    case hmac_upload_nif:storage_open(Dir) of
        ok -> open_ledger(LedgerPath, Dir);
        {error, Why} -> state_error("storage_dir", Dir, Why)
    end.

open_ledger(<<"none">>, Dir) ->
    migrate(Dir, undefined);
open_ledger(undefined, Dir) ->
    open_ledger(hmac_upload_nif:default_path(Dir, <<"ledger.sqlite3">>), Dir);
open_ledger(Path, Dir) ->
    case hmac_upload_nif:ledger_open(Path) of
        {ok, Ledger} -> migrate(Dir, Ledger);
        {error, Why} -> state_error("ledger_path", hmac_upload_nif:redact_ledger_path(Path), Why)
    end.

migrate(Dir, Ledger) ->
    case hmac_upload_nif:storage_migrate(Dir, Ledger) of
        {ok, <<>>} -> {ok, Ledger};
        {ok, Report} -> ?INFO_MSG("mod_http_upload_hmac: ~ts", [Report]), {ok, Ledger};
        {error, Why} -> state_error("storage_dir", Dir, Why)
    end.

state_error(Option, Value, Why) ->
    {error, io_lib:format("~s ~ts: ~p", [Option, Value, Why])}.

normalize_extension(<<$., _/binary>> = E) -> string:lowercase(E);
normalize_extension(E) -> string:lowercase(<<$., E/binary>>).

trim_slash(URL) -> string:trim(URL, trailing, "/").

%%%===================================================================
%%% IQ handling
%%%===================================================================
route(#iq{lang = Lang} = Packet, State) ->
    try xmpp:decode_els(Packet) of
        IQ -> answer(IQ, Packet, State)
    catch _:{xmpp_codec, Why} ->
            Err = xmpp:err_bad_request(xmpp:io_format_error(Why), Lang),
            ejabberd_router:route_error(Packet, Err)
    end.

%% A request this module fails on gets an error, and the service stays up for the others.
answer(IQ, Raw, State) ->
    try process_iq(IQ, Raw, State) of
        ignore -> ok;
        Reply -> ejabberd_router:route(Reply)
    catch Class:Reason:Stack ->
            ?ERROR_MSG("HTTP upload request failed: ~ts",
                       [misc:format_exception(2, Class, Reason, Stack)]),
            Err = xmpp:err_internal_server_error(?T("Internal server error"), IQ#iq.lang),
            ejabberd_router:route_error(Raw, Err)
    end.

%% Raw is the IQ as it came (the codec drops a request's purpose child), IQ decoded.
process_iq(#iq{type = get, lang = Lang, sub_els = [#disco_info{}]} = IQ, _Raw,
           #state{server_host = ServerHost, name = Name, max_size = MaxSize} = State) ->
    AddInfo = ejabberd_hooks:run_fold(disco_info, ServerHost, [],
                                      [ServerHost, ?MODULE, <<"">>, <<"">>]),
    Purposes = ?SLOT:purposes(State#state.retention, State#state.ledger /= undefined),
    xmpp:make_iq_result(
      IQ, #disco_info{identities = [#identity{category = <<"store">>, type = <<"file">>,
                                              name = translate:translate(Lang, Name)}],
                      features = ?SLOT:disco_features(Purposes),
                      xdata = ?SLOT:disco_forms(MaxSize, Lang, AddInfo)});
process_iq(#iq{type = get, sub_els = [#disco_items{}]} = IQ, _Raw, _State) ->
    xmpp:make_iq_result(IQ, #disco_items{});
process_iq(#iq{type = get, sub_els = [#upload_request_0{filename = File, size = Size,
                                                        'content-type' = CType, xmlns = NS}]} = IQ,
           Raw, State) ->
    slot_request(IQ, #{file => File, size => Size, type => CType, ns => NS,
                       purpose => ?SLOT:purpose(xmpp:get_els(Raw))}, State);
process_iq(#iq{type = get, sub_els = [#upload_request{filename = File, size = Size,
                                                      'content-type' = CType, xmlns = NS}]} = IQ,
           _Raw, State) ->
    slot_request(IQ, #{file => File, size => Size, type => CType, ns => NS,
                       purpose => {ok, message}}, State);
process_iq(#iq{type = T, lang = Lang} = IQ, _Raw, _State) when T == get; T == set ->
    xmpp:make_error(IQ, xmpp:err_service_unavailable(?T("No module is handling this query"), Lang));
process_iq(#iq{}, _Raw, _State) ->
    ignore.

slot_request(#iq{from = From} = IQ,
             #{file := File, size := Size, type := CType0, ns := NS, purpose := Purpose} = Req,
             #state{server_host = ServerHost, access = Access} = State) ->
    CType = case CType0 of <<>> -> ?DEFAULT_TYPE; _ -> CType0 end,
    User = jid:encode(jid:remove_resource(jid:tolower(From))),
    Rules = #{max_size => State#state.max_size, extensions => State#state.extensions},
    Now = erlang:system_time(second),
    Result = case acl:match_rule(ServerHost, Access, From) of
                 allow ->
                     case ?SLOT:check_request(File, Size, CType, Rules) of
                         ok -> retention(Purpose, State, Now);
                         Err -> Err
                     end;
                 deny ->
                     {error, forbidden}
             end,
    case Result of
        {ok, Retention} ->
            grant_slot(IQ, Req#{type => CType, user => User, retention => Retention, now => Now},
                       State);
        {error, Reason} ->
            refuse(IQ, User, File, Size, Reason, State, NS)
    end.

%% The retention a purpose gets here; the purposes the ledger cannot carry are not offered.
retention(Purpose, #state{retention = Map, ledger = Ledger}, Now) ->
    case Purpose of
        {ok, P} when Ledger /= undefined -> ?SLOT:retention(P, Map, Now);
        {ok, message} -> {ok, {-1, 0}};
        {ok, {ephemeral, _}} -> {error, {purpose_refused, ephemeral}};
        {ok, P} -> {error, {purpose_refused, P}};
        {error, _} = Err -> Err
    end.

refuse(#iq{lang = Lang} = IQ, User, File, Size, Reason0, State, NS) ->
    Reason = case Reason0 of
                 {too_large, Max} -> {too_large, Size, Max};
                 _ -> Reason0
             end,
    ?INFO_MSG("Refusing HTTP upload slot for ~ts (file ~ts, ~B bytes): ~p",
              [User, File, Size, Reason]),
    audit_refusal(State, User, File, Size, Reason),
    xmpp:make_error(IQ, ?SLOT:error(Reason, NS, Lang)).

grant_slot(#iq{lang = Lang} = IQ,
           #{file := File, size := Size, type := CType, ns := NS, user := User,
             retention := Retention, now := Now},
           #state{secret = Secret, token_expiry = Expiry, server_url = Base} = State) ->
    Slot = ?SLOT:new_slot_id(),
    Path = <<Slot/binary, $/, File/binary>>,
    Expires = Now + Expiry,
    %% an unused slot holds its bytes only briefly; the row lives as long as the token
    HeldUntil = Now + min(State#state.reservation_time, Expiry),
    {Keep, ExpireBefore} = Retention,
    case reserve(State, Path, User, Size, {HeldUntil, Expires, Keep, ExpireBefore}, Now) of
        ok ->
            {ok, Token} = hmac_upload_nif:mint_bearer(Secret, User, Path, Size, CType, Expires),
            Put = ?SLOT:put_url(Base, Slot, File, User, CType, {Expires, Token}),
            Get = ?SLOT:get_url(Base, Slot, File),
            ?DEBUG("HTTP upload slot for ~ts: ~ts (~B bytes)", [User, Path, Size]),
            xmpp:make_iq_result(IQ, ?SLOT:slot(NS, Put, Get, Token));
        {error, quota_exceeded} ->
            refuse(IQ, User, File, Size, {quota, quota_state(State, User, Size, Now)}, State, NS);
        {error, Why} when Why == ledger_unavailable; Why == eagain ->
            %% passing: PostgreSQL being reconnected, or the ledger busy; a wait-type error
            %% tells the client to retry
            ?WARNING_MSG("HTTP upload ledger unavailable for ~ts: ~p", [User, Why]),
            xmpp:make_error(IQ, xmpp:err_resource_constraint(
                                  ?T("The upload service cannot reach its ledger right now; "
                                     "retry in a moment"), Lang));
        {error, Why} ->
            ?ERROR_MSG("HTTP upload ledger error for ~ts: ~p", [User, Why]),
            xmpp:make_error(IQ, xmpp:err_internal_server_error(?T("Upload ledger unavailable"), Lang))
    end.

reserve(#state{ledger = undefined}, _Path, _User, _Size, _Times, _Now) -> ok;
reserve(#state{ledger = L, quota = Quota, grants = Grants}, Path, User, Size, Times, Now) ->
    mod_http_upload_hmac_grants:reserve(Grants, L, Path, User, Size, Times, Now, Quota).

%% What the refusal tells the user: used, reserved, the quota and when to retry.
quota_state(#state{ledger = L, quota = Q}, User, Size, Now) ->
    Usage = case hmac_upload_nif:usage(L, User, Now, Q) of
                {ok, Used, Reserved, Quota} ->
                    #{used => Used, reserved => Reserved, quota => Quota};
                {error, _} ->
                    #{used => 0, reserved => 0, quota => Q}
            end,
    RetryAt = case hmac_upload_nif:retry_at(L, User, Now) of
                  T when is_integer(T) -> T;
                  {error, _} -> 0
              end,
    Usage#{size => Size, retry_at => RetryAt}.

audit_refusal(#state{ledger = undefined}, _User, _File, _Size, _Reason) -> ok;
audit_refusal(_State, _User, _File, _Size, {quota, _}) -> ok; % the ledger audited it
audit_refusal(#state{ledger = L}, User, File, Size, Reason) ->
    Detail = iolist_to_binary(io_lib:format("~p", [Reason])),
    _ = hmac_upload_nif:audit(L, erlang:system_time(second), <<"refused">>, User, File,
                              Size, Detail),
    ok.

%%%===================================================================
%%% Files: account removal and admin deletion
%%%===================================================================
%% The file (through the storage layout's C code, shared with the server), then the ledger row.
delete_stored(Ledger, StorageDir, Path, Reason) ->
    hmac_upload_nif:delete_stored(Ledger, StorageDir, Path, Reason).

remove_user(User, Server) ->
    LServer = jid:nameprep(Server),
    case gen_mod:get_module_opt(LServer, ?MODULE, rm_on_unregister) of
        true ->
            BareJID = jid:encode({jid:nodeprep(User), LServer, <<>>}),
            Proc = gen_mod:get_module_proc(LServer, ?MODULE),
            Res = gen_server:call(
                    Proc, {ledger, fun(L, _Q, Dir) ->
                                           {ok, Files} = hmac_upload_nif:list_files(L, BareJID),
                                           [delete_stored(L, Dir, P, <<"account removed">>)
                                            || #{path := P} <- Files],
                                           length(Files)
                                   end}),
            ?INFO_MSG("Removed ~p uploaded file(s) of ~ts", [Res, BareJID]);
        false ->
            ok
    end.

%%%===================================================================
%%% Admin commands (ejabberdctl)
%%%===================================================================
register_commands() ->
    ejabberd_commands:register_commands(get_commands_spec()).

get_commands_spec() ->
    [#ejabberd_commands{name = upload_usage, tags = [http_upload],
                        desc = "Bytes stored, reserved and the quota of a user",
                        module = ?MODULE, function = cmd_usage,
                        args = [{user, binary}, {host, binary}],
                        args_example = [<<"alice">>, <<"example.org">>],
                        result = {usage, string}},
     #ejabberd_commands{name = upload_set_quota, tags = [http_upload],
                        desc = "Set a per-user upload quota in bytes",
                        module = ?MODULE, function = cmd_set_quota,
                        args = [{user, binary}, {host, binary}, {bytes, integer}],
                        args_example = [<<"alice">>, <<"example.org">>, 5000000],
                        result = {res, rescode}},
     #ejabberd_commands{name = upload_clear_quota, tags = [http_upload],
                        desc = "Return a user to the default upload quota",
                        module = ?MODULE, function = cmd_clear_quota,
                        args = [{user, binary}, {host, binary}],
                        args_example = [<<"alice">>, <<"example.org">>],
                        result = {res, rescode}},
     #ejabberd_commands{name = upload_list_files, tags = [http_upload],
                        desc = "List a user's uploaded files",
                        longdesc = "One line per file: PATH SIZE CONTENT-TYPE UPLOADED "
                                   "MEDIA-TYPE DIMENSIONS CHECK, where MEDIA-TYPE is the type "
                                   "read from the file's bytes ('-' when not probed), "
                                   "DIMENSIONS is WxH for an image ('-' otherwise) and CHECK "
                                   "is 'verified' (the declared type matches the bytes), "
                                   "'mismatch' or 'unverified'.",
                        module = ?MODULE, function = cmd_list_files,
                        args = [{user, binary}, {host, binary}],
                        args_example = [<<"alice">>, <<"example.org">>],
                        result = {files, {list, {file, string}}}},
     #ejabberd_commands{name = upload_delete_file, tags = [http_upload],
                        desc = "Delete an uploaded file by its path (slot/filename)",
                        module = ?MODULE, function = cmd_delete_file,
                        args = [{host, binary}, {path, binary}],
                        args_example = [<<"example.org">>, <<"6f1c.../photo.jpg">>],
                        result = {res, rescode}},
     #ejabberd_commands{name = upload_audit, tags = [http_upload],
                        desc = "Recent upload audit entries, newest first",
                        module = ?MODULE, function = cmd_audit,
                        args = [{host, binary}, {count, integer}],
                        args_example = [<<"example.org">>, 20],
                        result = {entries, {list, {entry, string}}}},
     #ejabberd_commands{name = upload_server_status, tags = [http_upload],
                        desc = "State of the upload servers: listen address, URL, state "
                               "(running, restarting after an error, external), restarts",
                        longdesc = "One line per server: LISTEN URL STATE, restarts N, hosts "
                                   "HOST... where STATE is 'running pid N since TIME', "
                                   "'starting pid N since TIME', 'restarting in N s after: "
                                   "ERROR', 'stopping pid N' or 'external' (upload_server: "
                                   "external; the module does not run it).",
                        module = mod_http_upload_hmac_server, function = cmd_status,
                        args = [],
                        result = {servers, {list, {server, string}}}}].

with_ledger(Host, Fun) ->
    try gen_server:call(gen_mod:get_module_proc(jid:nameprep(Host), ?MODULE), {ledger, Fun})
    catch exit:{noproc, _} -> {error, not_loaded}
    end.

bare(User, Host) -> jid:encode({jid:nodeprep(User), jid:nameprep(Host), <<>>}).

cmd_usage(User, Host) ->
    BareJID = bare(User, Host),
    case with_ledger(Host, fun(L, Q, _) ->
                                   hmac_upload_nif:usage(L, BareJID, erlang:system_time(second), Q)
                           end) of
        {ok, Used, Reserved, Quota} ->
            lists:flatten(io_lib:format("used ~B reserved ~B quota ~ts", [Used, Reserved,
                                        case Quota of 0 -> "infinity"; _ -> integer_to_list(Quota) end]));
        {error, Why} ->
            lists:flatten(io_lib:format("error: ~p", [Why]))
    end.

cmd_set_quota(User, Host, Bytes) when Bytes >= 0 ->
    ok_or_error(with_ledger(Host, fun(L, _, _) -> hmac_upload_nif:set_quota(L, bare(User, Host), Bytes) end));
cmd_set_quota(_User, _Host, _Bytes) ->
    error.

cmd_clear_quota(User, Host) ->
    ok_or_error(with_ledger(Host, fun(L, _, _) -> hmac_upload_nif:set_quota(L, bare(User, Host), default) end)).

cmd_list_files(User, Host) ->
    case with_ledger(Host, fun(L, _, _) -> hmac_upload_nif:list_files(L, bare(User, Host)) end) of
        {ok, Files} ->
            [lists:flatten(io_lib:format("~ts ~B ~ts ~ts ~ts",
                                         [P, S, T, calendar:system_time_to_rfc3339(C),
                                          mod_http_upload_hmac_media:describe(F)]))
             || #{path := P, size := S, content_type := T, created := C} = F <- Files];
        {error, _} ->
            []
    end.

cmd_delete_file(Host, Path) ->
    ok_or_error(with_ledger(Host, fun(L, _, Dir) -> delete_stored(L, Dir, Path, <<"deleted by admin">>) end)).

cmd_audit(Host, Count) when Count > 0 ->
    case with_ledger(Host, fun(L, _, _) -> hmac_upload_nif:audit_recent(L, all, Count) end) of
        {ok, Entries} ->
            [lists:flatten(io_lib:format("~ts ~ts ~ts ~ts ~B ~ts",
                                         [calendar:system_time_to_rfc3339(At), E, str(U), str(P), S, str(D)]))
             || #{at := At, event := E, user := U, path := P, size := S, detail := D} <- Entries];
        {error, _} ->
            []
    end;
cmd_audit(_Host, _Count) ->
    [].

str(undefined) -> "-";
str(B) -> B.

ok_or_error(ok) -> ok;
ok_or_error(_) -> error.
