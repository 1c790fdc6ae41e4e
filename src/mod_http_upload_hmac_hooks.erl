%%% The message hooks that carry media metadata: group-chat messages (muc_filter_message, in
%%% the room's process) and, when chat_metadata is on, the one-to-one messages a local user
%%% sends (user_send_packet, in the session's process). Each OOB URL of ours is looked up in
%%% the ledger (a dirty-IO NIF call, so no scheduler waits) and the message gets the
%%% metadata mod_http_upload_hmac_media builds. Each host's settings are in a persistent
%%% term, written by the module when it starts or reloads, so no hook waits on the module's
%%% process either.
-module(mod_http_upload_hmac_hooks).

-export([register/2, unregister/1, muc_filter_message/3, user_send_packet/1]).

-include("logger.hrl").
-include("xmpp.hrl").
-include("mod_muc_room.hrl").

-define(MEDIA, mod_http_upload_hmac_media).
-define(MUC_PRIO, 40).    % before mod_mam (50), so the archive keeps what occupants got
-define(CHAT_PRIO, 10).   % before carbons and the archive

%% Settings: #{ledger, base, xmlns, file_sharing, muc, chat}.
-spec register(binary(), map()) -> ok.
register(ServerHost, #{muc := Muc, chat := Chat} = Settings) ->
    persistent_term:put(key(ServerHost), Settings),
    hook(Muc, muc_filter_message, ServerHost, ?MUC_PRIO),
    hook(Chat, user_send_packet, ServerHost, ?CHAT_PRIO),
    ok.

-spec unregister(binary()) -> ok.
unregister(ServerHost) ->
    hook(false, muc_filter_message, ServerHost, ?MUC_PRIO),
    hook(false, user_send_packet, ServerHost, ?CHAT_PRIO),
    _ = persistent_term:erase(key(ServerHost)),
    ok.

hook(true, Name, Host, Prio) -> ejabberd_hooks:add(Name, Host, ?MODULE, Name, Prio);
hook(false, Name, Host, Prio) -> ejabberd_hooks:delete(Name, Host, ?MODULE, Name, Prio).

key(ServerHost) -> {?MODULE, ServerHost}.

%%%===================================================================
%%% Hooks
%%%===================================================================
-spec muc_filter_message(message() | drop, #state{}, binary()) -> message() | drop.
muc_filter_message(#message{} = Pkt, #state{server_host = ServerHost}, _FromNick) ->
    enrich(Pkt, ServerHost);
muc_filter_message(Acc, _MUCState, _FromNick) ->
    Acc.

-spec user_send_packet({stanza(), ejabberd_c2s:state()}) -> {stanza(), ejabberd_c2s:state()}.
user_send_packet({#message{type = T} = Pkt, #{lserver := ServerHost} = C2SState})
  when T == chat; T == normal ->
    {enrich(Pkt, ServerHost), C2SState};
user_send_packet(Acc) ->
    Acc.

%% A message without any OOB element is passed on without a lookup; a hook that fails
%% passes the message on unchanged (metadata is an extra, never a reason to lose a message).
enrich(#message{sub_els = Els} = Pkt, ServerHost) ->
    case persistent_term:get(key(ServerHost), undefined) of
        #{ledger := Ledger} = Settings when Ledger /= undefined ->
            case lists:any(fun is_oob/1, Els) of
                true ->
                    try ?MEDIA:enrich(Pkt, lookup(Ledger), Settings)
                    catch Class:Why:Stack ->
                            ?ERROR_MSG("mod_http_upload_hmac: media metadata for a message "
                                       "failed: ~p", [{Class, Why, Stack}]),
                            Pkt
                    end;
                false ->
                    Pkt
            end;
        _ ->
            Pkt
    end.

is_oob(#oob_x{}) -> true;
is_oob(#xmlel{name = <<"x">>, attrs = Attrs}) ->
    fxml:get_attr_s(<<"xmlns">>, Attrs) == ?NS_OOB;
is_oob(_) -> false.

lookup(Ledger) ->
    fun(Path) ->
            case hmac_upload_nif:get_file(Ledger, Path) of
                {ok, File} -> {ok, File};
                {error, enoent} -> error;
                {error, Why} ->
                    ?WARNING_MSG("mod_http_upload_hmac: ledger lookup of ~ts for media "
                                 "metadata: ~p", [Path, Why]),
                    error
            end
    end.
