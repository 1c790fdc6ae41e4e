%%% EUnit tests of the NIF: token vectors computed independently (openssl dgst), errors,
%%% the ledger through the NIF, and purge-and-reload of the NIF module.
-module(hmac_upload_nif_tests).
-include_lib("eunit/include/eunit.hrl").
-include_lib("kernel/include/file.hrl").

-define(SECRET, <<"unit-test-secret-0123456789">>).

%% A new directory per call: unique_integer/1 restarts in every VM, so the OS pid and a random
%% part keep a run from landing in what an earlier (failed) run left behind.
tmpdir() ->
    Dir = lists:flatten(io_lib:format("/tmp/hu-eunit-~s-~b", [os:getpid(), rand:uniform(1 bsl 40)])),
    ok = file:make_dir(Dir),
    Dir.

%% printf 'bearer\000alice@example.org\000abc-slot/photo.jpg\0001234\000image/jpeg\0001800000000' |
%%   openssl dgst -sha256 -mac HMAC -macopt key:unit-test-secret-0123456789 -binary | basenc --base64url
mint_matches_openssl_test() ->
    ?assertEqual({ok, <<"yJgfcLTpU7AXr7FTvH06MkVyBqR08FNG8TOHBH9XII8">>},
                 hmac_upload_nif:mint_bearer(?SECRET, <<"alice@example.org">>,
                                             <<"abc-slot/photo.jpg">>, 1234, <<"image/jpeg">>,
                                             1800000000)),
    ?assertEqual({ok, <<"N0wRrwV8vGe_gznLbF81rjb9R54S9f4U2wjIlRryko4">>},
                 hmac_upload_nif:mint_bearer(?SECRET, <<"j", 16#c3, 16#bc, "rgen@example.org">>,
                                             <<"s/na", 16#c3, 16#af, "ve file.pdf">>, 0,
                                             <<"application/pdf">>, 0)).

mint_errors_test() ->
    ?assertEqual({error, einval}, hmac_upload_nif:mint_bearer(<<>>, <<"a@b">>, <<"s/f">>, 1, <<"a/b">>, 1)),
    ?assertEqual({error, einval}, hmac_upload_nif:mint_bearer(?SECRET, <<>>, <<"s/f">>, 1, <<"a/b">>, 1)),
    ?assertEqual({error, einval}, hmac_upload_nif:mint_bearer(?SECRET, <<"a@b">>, <<"s/", 0, "f">>, 1, <<"a/b">>, 1)),
    ?assertEqual({error, einval}, hmac_upload_nif:mint_bearer(?SECRET, <<"a@b">>, <<"s/f">>, 1, <<"a/b">>, -1)),
    ?assertError(badarg, hmac_upload_nif:mint_bearer(not_a_binary, <<"a@b">>, <<"s/f">>, 1, <<"a/b">>, 1)),
    ?assertError(badarg, hmac_upload_nif:mint_bearer(?SECRET, <<"a@b">>, <<"s/f">>, -1, <<"a/b">>, 1)).

secret_file_test() ->
    Dir = tmpdir(),
    Path = list_to_binary(filename:join(Dir, "secret")),
    ?assertEqual({error, enoent}, hmac_upload_nif:secret_file_read(Path, false)),
    {ok, S} = hmac_upload_nif:secret_file_read(Path, true),
    ?assertEqual(64, byte_size(S)),
    ?assertEqual({ok, S}, hmac_upload_nif:secret_file_read(Path, false)),
    {ok, #file_info{mode = Mode}} = file:read_file_info(Path),
    ?assertEqual(8#600, Mode band 8#777),
    ok = file:change_mode(Path, 8#644),
    ?assertEqual({error, eperm}, hmac_upload_nif:secret_file_read(Path, false)),
    os:cmd("rm -rf " ++ Dir).

ledger_test() ->
    Dir = tmpdir(),
    {ok, L} = hmac_upload_nif:ledger_open(list_to_binary(filename:join(Dir, "l.sqlite3"))),
    %% held until 2000, alive (with its retention) until 9000
    Times = {2000, 9000, -1, 0},
    ?assertEqual(ok, hmac_upload_nif:reserve(L, <<"s1/a">>, <<"u@x">>, 600, Times, 1000, 1000)),
    ?assertEqual({error, quota_exceeded}, hmac_upload_nif:reserve(L, <<"s2/b">>, <<"u@x">>, 500, Times, 1000, 1000)),
    ?assertEqual({error, eexist}, hmac_upload_nif:reserve(L, <<"s1/a">>, <<"v@x">>, 1, Times, 1000, 1000)),
    ?assertEqual(2000, hmac_upload_nif:retry_at(L, <<"u@x">>, 1000)),
    ?assertEqual({ok, 0, 600, 1000}, hmac_upload_nif:usage(L, <<"u@x">>, 1000, 1000)),
    ?assertEqual({ok, 0, 0, 1000}, hmac_upload_nif:usage(L, <<"u@x">>, 2000, 1000)),
    ?assertEqual(ok, hmac_upload_nif:reserve(L, <<"s2/b">>, <<"u@x">>, 500, {3000, 9000, 0, 8000}, 2000, 1000)),
    ?assertEqual(ok, hmac_upload_nif:set_quota(L, <<"u@x">>, 5000)),
    %% s1/a's hold lapsed at 2000 and the grant at 2000 settled it: from then on only s2/b is
    %% held (time does not run back: a settled hold stays settled, schema v3's running sums)
    ?assertEqual({ok, 0, 500, 5000}, hmac_upload_nif:usage(L, <<"u@x">>, 2000, 1000)),
    ?assertEqual(ok, hmac_upload_nif:set_quota(L, <<"u@x">>, default)),
    ?assertEqual({ok, []}, hmac_upload_nif:list_files(L, <<"u@x">>)),
    ?assertEqual({error, enoent}, hmac_upload_nif:delete_file(L, <<"nope">>, <<"test">>)),
    ?assertEqual(ok, hmac_upload_nif:audit(L, 1000, <<"note">>, <<>>, <<>>, 0, <<"hello">>)),
    {ok, [#{event := <<"note">>, user := undefined, detail := <<"hello">>} | _]} =
        hmac_upload_nif:audit_recent(L, all, 10),
    ?assertError(badarg, hmac_upload_nif:reserve(make_ref(), <<"p">>, <<"u">>, 1, Times, 1, 1)),
    ?assertError(badarg, hmac_upload_nif:reserve(L, <<"p">>, <<"u">>, 1, {1, 1, -2, 0}, 1, 1)),
    ?assertError(badarg, hmac_upload_nif:reserve(L, <<"p">>, <<"u">>, 1, 1, 1, 1)),
    os:cmd("rm -rf " ++ Dir).

%% A file's media metadata in the maps of list_files and get_file (the rows written as the
%% upload server writes them, straight into the SQLite file): a probed image, a file whose
%% bytes contradict its signed type, a row with nothing known (recorded before schema v4).
ledger_media_metadata_test() ->
    Dir = tmpdir(),
    Db = filename:join(Dir, "l.sqlite3"),
    {ok, L} = hmac_upload_nif:ledger_open(list_to_binary(Db)),
    Sql = "INSERT INTO files(path, user, size, content_type, sha256, created, expires, source_ip,"
          " scheme, media_type, type_ok, width, height, blurhash, thumbnail) VALUES"
          " ('s1/cat.jpg', 'u@x', 10, 'image/jpeg', 'ab', 1, 0, '::1', 'bearer', 'image/jpeg',"
          " 1, 640, 480, 'LEHV6nWB2yk8pyo0adR*.7kCMdnj', 1),"
          " ('s2/doc.pdf', 'u@x', 20, 'application/pdf', 'cd', 2, 0, '::1', 'bearer',"
          " 'image/png', 0, NULL, NULL, NULL, 0),"
          " ('s3/old.bin', 'u@x', 30, 'application/octet-stream', 'ef', 3, 0, NULL, 'v1',"
          " NULL, NULL, NULL, NULL, NULL, NULL);",
    ?assertEqual("", os:cmd("sqlite3 " ++ Db ++ " \"" ++ Sql ++ "\" 2>&1")),
    Image = #{path => <<"s1/cat.jpg">>, user => <<"u@x">>, size => 10,
              content_type => <<"image/jpeg">>, sha256 => <<"ab">>, created => 1, expires => 0,
              source_ip => <<"::1">>, scheme => <<"bearer">>, media_type => <<"image/jpeg">>,
              type_ok => true, width => 640, height => 480,
              blurhash => <<"LEHV6nWB2yk8pyo0adR*.7kCMdnj">>, thumbnail => true},
    ?assertEqual({ok, Image}, hmac_upload_nif:get_file(L, <<"s1/cat.jpg">>)),
    {ok, [Image, Liar, Old]} = hmac_upload_nif:list_files(L, <<"u@x">>),
    ?assertMatch(#{path := <<"s2/doc.pdf">>, media_type := <<"image/png">>, type_ok := false,
                   width := undefined, height := undefined, blurhash := undefined,
                   thumbnail := false}, Liar),
    ?assertMatch(#{path := <<"s3/old.bin">>, source_ip := undefined, media_type := undefined,
                   type_ok := undefined, width := undefined, height := undefined,
                   blurhash := undefined, thumbnail := false}, Old),
    ?assertEqual({ok, Old}, hmac_upload_nif:get_file(L, <<"s3/old.bin">>)),
    ?assertEqual({error, enoent}, hmac_upload_nif:get_file(L, <<"s9/nope.jpg">>)),
    %% a path no row can have is no row, not an exception (it comes from a posted URL)
    ?assertEqual({error, enoent}, hmac_upload_nif:get_file(L, <<"s/", 0, "x">>)),
    ?assertEqual({error, enoent}, hmac_upload_nif:get_file(L, binary:copy(<<"a">>, 5000))),
    ?assertError(badarg, hmac_upload_nif:get_file(L, "s1/cat.jpg")),
    ?assertError(badarg, hmac_upload_nif:get_file(make_ref(), <<"s1/cat.jpg">>)),
    os:cmd("rm -rf " ++ Dir).

%% The storage layout through the NIF: defaults under state/, a layout-1 file moved by the
%% migration (its .meta record is the proof), and deletion by path.
storage_test() ->
    Dir = list_to_binary(tmpdir()),
    ?assertEqual(<<Dir/binary, "/state/ledger.sqlite3">>,
                 hmac_upload_nif:default_path(Dir, <<"ledger.sqlite3">>)),
    Slot = <<"6f1c2a0e-3b7d-4c55-9a2e-0d9b1e2f3a4b">>,
    Path = <<Slot/binary, "/a.jpg">>,
    ok = filelib:ensure_dir(filename:join([Dir, Slot, "x"])),
    ok = file:write_file(filename:join(Dir, Path), <<"bytes">>),
    ok = file:write_file(filename:join(Dir, "notes.txt"), <<"the operator's">>),
    Key = crypto:hash(sha256, Path),
    Hex = << <<(list_to_binary(io_lib:format("~2.16.0b", [X])))/binary>> || <<X>> <= Key >>,
    ok = filelib:ensure_dir(filename:join([Dir, ".meta", "x"])),
    ok = file:write_file(filename:join([Dir, ".meta", Hex]),
                         <<"type=image/jpeg\nuser=u@x\nsha256=ab\nscheme=bearer\nuploaded=5\n"
                           "size=5\nexpires=0\n">>),
    ?assertEqual(ok, hmac_upload_nif:storage_open(Dir)),
    {ok, L} = hmac_upload_nif:ledger_open(hmac_upload_nif:default_path(Dir, <<"ledger.sqlite3">>)),
    {ok, Report} = hmac_upload_nif:storage_migrate(Dir, L),
    ?assertMatch({match, _}, re:run(Report, "1 published file")),
    ?assertMatch({match, _}, re:run(Report, "left 1 entry .* untouched")),
    ?assertEqual({ok, <<>>}, hmac_upload_nif:storage_migrate(Dir, L)),
    Stored = filename:join([Dir, "files", binary:part(Hex, 0, 2), Hex]),
    ?assertEqual({ok, <<"bytes">>}, file:read_file(Stored)),
    ?assertEqual({ok, <<"the operator's">>}, file:read_file(filename:join(Dir, "notes.txt"))),
    %% no ledger row for it yet (the server adopts it at start): deleting says so, file gone
    ?assertEqual({error, enoent}, hmac_upload_nif:delete_stored(L, Dir, Path, <<"test">>)),
    ?assertEqual({error, enoent}, file:read_file(Stored)),
    ?assertError(badarg, hmac_upload_nif:default_path(Dir, <<"../x">>)),
    os:cmd("rm -rf " ++ binary_to_list(Dir)).

%% The module can be purged and loaded again (ejabberd's module_upgrade, hot code loading).
purge_and_reload_test() ->
    Before = hmac_upload_nif:mint_bearer(?SECRET, <<"a@b">>, <<"s/f">>, 1, <<"a/b">>, 1),
    true = code:soft_purge(hmac_upload_nif) orelse true,
    {module, hmac_upload_nif} = code:load_file(hmac_upload_nif),   % old + current
    true = code:purge(hmac_upload_nif) orelse true,
    {module, hmac_upload_nif} = code:load_file(hmac_upload_nif),
    ?assertEqual(Before, hmac_upload_nif:mint_bearer(?SECRET, <<"a@b">>, <<"s/f">>, 1, <<"a/b">>, 1)),
    code:purge(hmac_upload_nif),
    code:delete(hmac_upload_nif),
    code:purge(hmac_upload_nif),
    {module, hmac_upload_nif} = code:load_file(hmac_upload_nif),
    ?assertEqual(Before, hmac_upload_nif:mint_bearer(?SECRET, <<"a@b">>, <<"s/f">>, 1, <<"a/b">>, 1)).

