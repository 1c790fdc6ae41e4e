%%% EUnit tests of the grouped slot grants (mod_http_upload_hmac_grants) and of the NIF's
%%% reserve_all/4 under it, on a real SQLite ledger.
-module(mod_http_upload_hmac_grants_tests).
-include_lib("eunit/include/eunit.hrl").

-define(TIMES, {2000, 9000, -1, 0}).   % held until 2000, alive until 9000, max_days

ledger() ->
    Dir = lists:flatten(io_lib:format("/tmp/hu-eunit-grants-~s-~b",
                                      [os:getpid(), rand:uniform(1 bsl 40)])),
    ok = file:make_dir(Dir),
    {ok, L} = hmac_upload_nif:ledger_open(list_to_binary(filename:join(Dir, "l.sqlite3"))),
    {Dir, L}.

path(I) -> <<"slot-", (integer_to_binary(I))/binary, "/f.bin">>.

%% N callers at once, each asking for Size bytes; their results, in caller order.
at_once(Grants, L, N, Size, PathOf) ->
    Self = self(),
    Pids = [spawn(fun() ->
                          R = mod_http_upload_hmac_grants:reserve(Grants, L, PathOf(I), <<"u@x">>,
                                                                  Size, ?TIMES, 1000, 1000),
                          Self ! {self(), R}
                  end) || I <- lists:seq(1, N)],
    [receive {P, R} -> R end || P <- Pids].

reserve_all_results_in_order_test() ->
    {Dir, L} = ledger(),
    G = fun(P, U, S) -> {P, U, S, ?TIMES} end,
    ?assertEqual([ok, ok, {error, quota_exceeded}, {error, eexist}],
                 hmac_upload_nif:reserve_all(L, [G(<<"a/1">>, <<"u@x">>, 600),
                                                 G(<<"b/2">>, <<"v@x">>, 900),
                                                 G(<<"c/3">>, <<"u@x">>, 600),
                                                 G(<<"a/1">>, <<"v@x">>, 1)], 1000, 1000)),
    ?assertEqual({ok, 0, 600, 1000}, hmac_upload_nif:usage(L, <<"u@x">>, 1000, 1000)),
    ?assertEqual([], hmac_upload_nif:reserve_all(L, [], 1000, 1000)),
    ?assertError(badarg, hmac_upload_nif:reserve_all(L, [G(<<"d/", 0, "4">>, <<"u@x">>, 1)],
                                                     1000, 1000)),
    ?assertError(badarg, hmac_upload_nif:reserve_all(L, [G(<<"e/5">>, <<"u@x">>, 1)
                                                         || _ <- lists:seq(1, 257)], 1000, 1000)),
    os:cmd("rm -rf " ++ Dir).

%% Thirty callers at once for a hundred bytes each of a 1,000-byte quota: ten get them.
concurrent_grants_never_over_commit_test() ->
    {Dir, L} = ledger(),
    {ok, Grants} = mod_http_upload_hmac_grants:start_link(),
    Results = at_once(Grants, L, 30, 100, fun path/1),
    ?assertEqual(10, length([ok || ok <- Results])),
    ?assertEqual(20, length([x || {error, quota_exceeded} <- Results])),
    ?assertEqual({ok, 0, 1000, 1000}, hmac_upload_nif:usage(L, <<"u@x">>, 1000, 1000)),
    unlink(Grants),
    exit(Grants, kill),
    os:cmd("rm -rf " ++ Dir).

%% A grant the NIF cannot read (a NUL in its path) fails alone; the others of its group stand.
a_bad_grant_fails_alone_test() ->
    {Dir, L} = ledger(),
    {ok, Grants} = mod_http_upload_hmac_grants:start_link(),
    Results = at_once(Grants, L, 8, 10, fun(3) -> <<"bad/", 0, "name">>;
                                            (I) -> path(I)
                                         end),
    ?assertEqual({error, einval}, lists:nth(3, Results)),
    ?assertEqual(7, length([ok || ok <- Results])),
    ?assert(is_process_alive(Grants)),
    unlink(Grants),
    exit(Grants, kill),
    os:cmd("rm -rf " ++ Dir).
