%%%-------------------------------------------------------------------
%%% Slot grants of one virtual host, made in groups. A grant is a ledger transaction; made one
%%% by one, slot requests that came together queued on the ledger handle's lock, and each
%%% paid for a transaction and a trip to a dirty scheduler and back. Here the grants asked
%%% for while one group's transaction runs wait and go in the next group: one dirty NIF call
%%% and one transaction for all of them (hmac_upload_nif:reserve_all/4), each with its own
%%% result. Quotas stay race-free: the transaction decides, one grant after the other. No
%%% timer: a grant asked for alone goes at once.
%%%-------------------------------------------------------------------
-module(mod_http_upload_hmac_grants).
-behaviour(gen_server).

-export([start_link/0, reserve/8]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

-include("logger.hrl").

-define(MAX_GROUP, 256).           % hmac_upload_nif:reserve_all/4's limit
-define(CALL_TIMEOUT, 60000).

-type times() :: {integer(), integer(), integer(), non_neg_integer()}.
-type request() :: {reserve, reference(), non_neg_integer(), integer(),
                    {binary(), binary(), non_neg_integer(), times()}}.

-spec start_link() -> {ok, pid()} | {error, term()}.
start_link() ->
    gen_server:start_link(?MODULE, [], []).

%% As hmac_upload_nif:reserve/7, in the next group of Pid's.
-spec reserve(pid(), reference(), binary(), binary(), non_neg_integer(), times(), integer(),
              non_neg_integer()) -> ok | {error, atom()}.
reserve(Pid, Ledger, Path, User, Size, Times, Now, DefaultQuota) ->
    gen_server:call(Pid, {reserve, Ledger, DefaultQuota, Now, {Path, User, Size, Times}},
                    ?CALL_TIMEOUT).

%% The state: the requests waiting for the next group, newest first.
init([]) ->
    {ok, []}.

%% Timeout 0: the group runs once the mailbox holds no more requests (or it is full).
handle_call({reserve, _, _, _, _} = Request, From, Waiting) when length(Waiting) + 1 >= ?MAX_GROUP ->
    run(lists:reverse([{From, Request} | Waiting])),
    {noreply, []};
handle_call({reserve, _, _, _, _} = Request, From, Waiting) ->
    {noreply, [{From, Request} | Waiting], 0};
handle_call(Request, From, Waiting) ->
    ?WARNING_MSG("Unexpected call from ~p: ~p", [From, Request]),
    {noreply, Waiting, 0}.

handle_cast(Request, Waiting) ->
    ?WARNING_MSG("Unexpected cast: ~p", [Request]),
    {noreply, Waiting, 0}.

handle_info(timeout, Waiting) ->
    run(lists:reverse(Waiting)),
    {noreply, []};
handle_info(Info, Waiting) ->
    ?WARNING_MSG("Unexpected info: ~p", [Info]),
    {noreply, Waiting, 0}.

%% The requests in order, in groups of one ledger and one default quota (a reload may change
%% them between two requests).
-spec run([{gen_server:from(), request()}]) -> ok.
run([]) ->
    ok;
run([{_, {reserve, Ledger, Quota, _, _}} | _] = Waiting) ->
    {Group, Rest} = lists:partition(fun({_, {reserve, L, Q, _, _}}) ->
                                            L =:= Ledger andalso Q =:= Quota
                                    end, Waiting),
    Now = lists:max([N || {_, {reserve, _, _, N, _}} <- Group]),
    Grants = [G || {_, {reserve, _, _, _, G}} <- Group],
    Results = try hmac_upload_nif:reserve_all(Ledger, Grants, Now, Quota)
              catch error:badarg ->
                      %% one grant the NIF refuses to read: each on its own, so only that
                      %% one fails (with its caller)
                      [one(Ledger, G, Now, Quota) || G <- Grants]
              end,
    lists:foreach(fun({{From, _}, Result}) -> gen_server:reply(From, Result) end,
                  lists:zip(Group, Results)),
    run(Rest).

one(Ledger, {Path, User, Size, Times}, Now, Quota) ->
    try hmac_upload_nif:reserve(Ledger, Path, User, Size, Times, Now, Quota)
    catch error:badarg -> {error, einval}
    end.
