%%% EUnit tests of the module's pure parts: rules, URL building, percent-encoding, the slot
%%% element and the errors a client sees.
-module(mod_http_upload_hmac_tests).
-include_lib("eunit/include/eunit.hrl").

-define(M, mod_http_upload_hmac).
-define(RULES, #{max_size => 1000, extensions => [<<".jpg">>, <<".png">>]}).

rules_test_() ->
    [?_assertEqual(ok, ?M:check_request(<<"a.jpg">>, 10, <<"image/jpeg">>, ?RULES)),
     ?_assertEqual(ok, ?M:check_request(<<"A.JPG">>, 1000, <<"image/jpeg">>, ?RULES)),
     ?_assertEqual({error, {too_large, 1000}}, ?M:check_request(<<"a.jpg">>, 1001, <<"image/jpeg">>, ?RULES)),
     ?_assertEqual({error, extension_not_allowed}, ?M:check_request(<<"a.exe">>, 10, <<"a/b">>, ?RULES)),
     ?_assertEqual({error, extension_not_allowed}, ?M:check_request(<<"jpg">>, 10, <<"a/b">>, ?RULES)),
     ?_assertEqual({error, empty_file}, ?M:check_request(<<"a.jpg">>, 0, <<"a/b">>, ?RULES)),
     ?_assertEqual({error, bad_filename}, ?M:check_request(<<"../a.jpg">>, 10, <<"a/b">>, ?RULES)),
     ?_assertEqual({error, bad_content_type}, ?M:check_request(<<"a.jpg">>, 10, <<"text/html\r\nX: y">>, ?RULES)),
     ?_assertEqual(ok, ?M:check_request(<<"a.exe">>, 5, <<"a/b">>, #{max_size => infinity, extensions => []}))].

filenames_test_() ->
    [?_assertEqual(ok, ?M:check_filename(<<"photo 1.jpg">>)),
     ?_assertEqual(ok, ?M:check_filename(<<"f", 16#c3, 16#bc, "r.txt">>)),
     ?_assertEqual(error, ?M:check_filename(<<>>)),
     ?_assertEqual(error, ?M:check_filename(<<".htaccess">>)),
     ?_assertEqual(error, ?M:check_filename(<<"a/b">>)),
     ?_assertEqual(error, ?M:check_filename(<<"a\\b">>)),
     ?_assertEqual(error, ?M:check_filename(<<"a", 0, "b">>)),
     ?_assertEqual(error, ?M:check_filename(<<"a\nb">>)),
     ?_assertEqual(error, ?M:check_filename(<<16#ff, "a">>)),
     ?_assertEqual(error, ?M:check_filename(binary:copy(<<"a">>, 256)))].

content_types_test_() ->
    [?_assertEqual(ok, ?M:check_content_type(<<"image/jpeg">>)),
     ?_assertEqual(ok, ?M:check_content_type(<<"text/plain; charset=utf-8">>)),
     ?_assertEqual(error, ?M:check_content_type(<<"image">>)),
     ?_assertEqual(error, ?M:check_content_type(<<"/x">>)),
     ?_assertEqual(error, ?M:check_content_type(<<"a/b\n">>))].

urls_test_() ->
    Base = <<"https://up.example/upload">>,
    Slot = <<"6f1c2a0e-3b7d-4c55-9a2e-0d9b1e2f3a4b">>,
    [?_assertEqual(<<"a%20b%2F%C3%BC~-._">>, ?M:pct(<<"a b/", 16#c3, 16#bc, "~-._">>)),
     ?_assertEqual(<<"https://up.example/upload/", Slot/binary, "/my%20photo.jpg">>,
                   ?M:get_url(Base, Slot, <<"my photo.jpg">>)),
     ?_assertEqual(<<"https://up.example/upload/", Slot/binary, "/a.jpg?user=alice%40example.org"
                     "&type=image%2Fjpeg&expires=1800000000&token=TOK">>,
                   ?M:put_url(Base, Slot, <<"a.jpg">>, <<"alice@example.org">>, <<"image/jpeg">>,
                              {1800000000, <<"TOK">>}))].

slot_id_test() ->
    Ids = [?M:new_slot_id() || _ <- lists:seq(1, 200)],
    ?assertEqual(200, length(lists:usort(Ids))),
    lists:foreach(fun(Id) ->
                          ?assertMatch({match, _}, re:run(Id, "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"))
                  end, Ids).

storage_key_test() ->
    %% printf 'abc-slot/photo.jpg' | sha256sum
    ?assertEqual(list_to_binary(string:trim(os:cmd("printf 'abc-slot/photo.jpg' | sha256sum | cut -d' ' -f1"))),
                 ?M:storage_key(<<"abc-slot/photo.jpg">>)).

slot_element_test() ->
    El = ?M:slot_element(<<"http://p">>, <<"http://g">>, <<"TOK">>),
    Xml = fxml:element_to_binary(El),
    ?assertEqual(<<"<slot xmlns='urn:xmpp:http:upload:0'><put url='http://p'><header name='Authorization'>"
                   "Bearer TOK</header></put><get url='http://g'/></slot>">>, Xml).

errors_test() ->
    {ok, _} = application:ensure_all_started(xmpp),
    Xml = fun(Reason) -> fxml:element_to_binary(xmpp:encode(?M:stanza_error(Reason, <<"en">>))) end,
    TooLarge = Xml({too_large, 1000}),
    ?assertMatch({match, _}, re:run(TooLarge, "<not-acceptable ")),
    ?assertMatch({match, _}, re:run(TooLarge, "<file-too-large xmlns='urn:xmpp:http:upload:0'>"
                                              "<max-file-size>1000</max-file-size>")),
    Quota = Xml({quota, 1800000000}),
    ?assertMatch({match, _}, re:run(Quota, "<resource-constraint ")),
    ?assertMatch({match, _}, re:run(Quota, "<retry stamp='2027-01-15T08:00:00Z'")),
    ?assertEqual(nomatch, re:run(Xml({quota, 0}), "<retry")),
    ?assertMatch({match, _}, re:run(Xml(forbidden), "<forbidden ")),
    ?assertMatch({match, _}, re:run(Xml(extension_not_allowed), "<not-acceptable ")),
    ?assertMatch({match, _}, re:run(Xml(bad_filename), "<bad-request ")).
