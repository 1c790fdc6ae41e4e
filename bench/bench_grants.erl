%%% make bench: slot grants through the NIF (hmac_upload_nif:reserve/7, what the module calls
%%% for every slot) into a ledger, SQLite file or PostgreSQL URL, timed inside the VM.
%%%
%%%   erl -noshell -pa ebin -pa <dir of this beam> -run bench_grants rate Ledger N Callers Handles Via
%%%       N grants split over Callers processes (each its own user, so they contend only on
%%%       the ledger), on Handles ledger handles (one handle: the module's case, one ledger
%%%       per ejabberd node, its calls serialised by the NIF's lock; several: several nodes or
%%%       servers on one shared ledger). Via: nif, each grant its own call and transaction;
%%%       group, through a mod_http_upload_hmac_grants process per handle (what the module
%%%       does: the grants asked for together share a transaction). Prints
%%%       "GrantsPerSecond Errors P99Ms".
%%%   ... -run bench_grants cost Ledger Batch Earlier
%%%       one user, a finite quota (every grant checks it), each grant held 300 s: the rate of
%%%       the first Batch grants and of a Batch after Earlier more. Prints "First After".
-module(bench_grants).
-export([rate/1, cost/1]).

open(Path) ->
    {ok, L} = hmac_upload_nif:ledger_open(list_to_binary(Path)),
    L.

%% One grant: through a grants process (the module's way) or straight to the NIF.
grant({L, Grants}, User, Path, Now) ->
    mod_http_upload_hmac_grants:reserve(Grants, L, Path, User, 1000, times(Now), Now, 1 bsl 40);
grant(L, User, Path, Now) ->
    hmac_upload_nif:reserve(L, Path, User, 1000, times(Now), Now, 1 bsl 40).

times(Now) -> {Now + 300, Now + 3600, -1, 0}.

us(T0) -> erlang:convert_time_unit(erlang:monotonic_time() - T0, native, microsecond).

rate([Ledger, NS, CS, HS, Via]) ->
    N = list_to_integer(NS), C = list_to_integer(CS), H = list_to_integer(HS),
    Ls = list_to_tuple([case Via of
                            "nif" -> open(Ledger);
                            "group" -> {ok, G} = mod_http_upload_hmac_grants:start_link(),
                                       {open(Ledger), G}
                        end || _ <- lists:seq(1, H)]),
    Now = erlang:system_time(second),
    Per = N div C,
    Parent = self(),
    T0 = erlang:monotonic_time(),
    Pids = [spawn_link(fun() ->
                L = element((K - 1) rem H + 1, Ls),
                User = <<"bench", (integer_to_binary(K))/binary, "@localhost">>,
                Lat = [begin
                           T = erlang:monotonic_time(),
                           R = grant(L, User, <<"c", (integer_to_binary(K))/binary, "-",
                                                (integer_to_binary(I))/binary, "/f.jpg">>, Now),
                           {us(T), R}
                       end || I <- lists:seq(1, Per)],
                Parent ! {done, self(), Lat}
            end) || K <- lists:seq(1, C)],
    All = lists:append([receive {done, P, Lat} -> Lat end || P <- Pids]),
    Secs = us(T0) / 1.0e6,
    Errors = length([R || {_, R} <- All, R =/= ok]),
    Sorted = lists:sort([U || {U, _} <- All]),
    P99 = lists:nth(max(1, (length(Sorted) * 99) div 100), Sorted) / 1000,
    io:format("~p ~p ~p~n", [(length(All) - Errors) / Secs, Errors, P99]),
    halt().

cost([Ledger, BS, ES]) ->
    Batch = list_to_integer(BS), Earlier = list_to_integer(ES),
    L = open(Ledger),
    Now = erlang:system_time(second),
    G = fun(From, Count) ->
                T0 = erlang:monotonic_time(),
                [ok = grant(L, <<"bench@localhost">>,
                            <<"s", (integer_to_binary(I))/binary, "/f.jpg">>, Now)
                 || I <- lists:seq(From, From + Count - 1)],
                Count / (us(T0) / 1.0e6)
        end,
    First = G(1, Batch),
    _ = G(Batch + 1, Earlier),
    After = G(Batch + Earlier + 1, Batch),
    io:format("~p ~p~n", [First, After]),
    halt().
