%%% EUnit tests of the module's pure parts (mod_http_upload_hmac_slot): rules, purposes and
%%% retention, URL building, percent-encoding, the slot in each namespace, service discovery
%%% and the errors a person reads.
-module(mod_http_upload_hmac_tests).
-include_lib("eunit/include/eunit.hrl").
-include("xmpp.hrl").

-define(M, mod_http_upload_hmac_slot).
-define(RULES, #{max_size => 1000, extensions => [<<".jpg">>, <<".png">>]}).
-define(ANY, #{max_size => infinity, extensions => []}).

rules_test_() ->
    [?_assertEqual(ok, ?M:check_request(<<"a.jpg">>, 10, <<"image/jpeg">>, ?RULES)),
     ?_assertEqual(ok, ?M:check_request(<<"A.JPG">>, 1000, <<"image/jpeg">>, ?RULES)),
     ?_assertEqual({error, {too_large, 1000}}, ?M:check_request(<<"a.jpg">>, 1001, <<"image/jpeg">>, ?RULES)),
     ?_assertEqual({error, {extension_not_allowed, [<<".jpg">>, <<".png">>]}},
                   ?M:check_request(<<"a.exe">>, 10, <<"a/b">>, ?RULES)),
     ?_assertEqual({error, {extension_not_allowed, [<<".jpg">>, <<".png">>]}},
                   ?M:check_request(<<"jpg">>, 10, <<"a/b">>, ?RULES)),
     ?_assertEqual({error, empty_file}, ?M:check_request(<<"a.jpg">>, 0, <<"a/b">>, ?RULES)),
     ?_assertEqual({error, bad_filename}, ?M:check_request(<<"a/b.jpg">>, 10, <<"a/b">>, ?RULES)),
     ?_assertEqual({error, bad_content_type}, ?M:check_request(<<"a.jpg">>, 10, <<"text/html\r\nX: y">>, ?RULES)),
     ?_assertEqual(ok, ?M:check_request(<<"a.exe">>, 5, <<"a/b">>, #{max_size => infinity, extensions => []}))].

%% The module judges names and types with the server's own C functions (through the NIF):
%% every name an XMPP peer can sign, one type and never a list.
filenames_test_() ->
    Ok = fun(F) -> ?_assertEqual(ok, ?M:check_request(F, 10, <<"a/b">>, ?ANY)) end,
    Bad = fun(F) -> ?_assertEqual({error, bad_filename}, ?M:check_request(F, 10, <<"a/b">>, ?ANY)) end,
    [Ok(<<"photo 1.jpg">>), Ok(<<"f", 16#c3, 16#bc, "r.txt">>), Ok(<<".hidden.txt">>),
     Ok(<<"back\\slash.txt">>), Ok(<<"a\nb">>), Ok(<<"..hidden">>),
     Ok(binary:copy(<<"a">>, 1024)), Ok(binary:copy(<<16#e6, 16#97, 16#a5>>, 341)),
     Bad(<<>>), Bad(<<".">>), Bad(<<"..">>), Bad(<<"a/b">>), Bad(<<"a", 0, "b">>),
     Bad(<<16#ff, "a">>), Bad(binary:copy(<<"a">>, 1025))].

content_types_test_() ->
    Ok = fun(T) -> ?_assertEqual(ok, ?M:check_request(<<"a.jpg">>, 10, T, ?ANY)) end,
    Bad = fun(T) -> ?_assertEqual({error, bad_content_type}, ?M:check_request(<<"a.jpg">>, 10, T, ?ANY)) end,
    [Ok(<<"image/jpeg">>), Ok(<<"text/plain; charset=utf-8">>), Ok(<<"text/plain;charset=\"utf-8\"">>),
     Bad(<<"image">>), Bad(<<"/x">>), Bad(<<"a/b\n">>), Bad(<<"image/png ,text/html">>),
     Bad(<<"text/html, image/png">>), Bad(<<"image/png x">>)].

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

slot_in_each_namespace_test() ->
    {ok, _} = application:ensure_all_started(xmpp),
    Xml = fun(NS) -> fxml:element_to_binary(xmpp:encode(?M:slot(NS, <<"http://p">>, <<"http://g">>, <<"TOK">>))) end,
    ?assertEqual(<<"<slot xmlns='urn:xmpp:http:upload:0'><put url='http://p'><header name='Authorization'>"
                   "Bearer TOK</header></put><get url='http://g'/></slot>">>,
                 Xml(<<"urn:xmpp:http:upload:0">>)),
    ?assertEqual(<<"<slot xmlns='urn:xmpp:http:upload'><get>http://g</get><put>http://p</put></slot>">>,
                 Xml(<<"urn:xmpp:http:upload">>)),
    ?assertEqual(<<"<slot xmlns='eu:siacs:conversations:http:upload'><get>http://g</get>"
                   "<put>http://p</put></slot>">>,
                 Xml(<<"eu:siacs:conversations:http:upload">>)).

request(Children) ->
    [#xmlel{name = <<"request">>, attrs = [{<<"xmlns">>, <<"urn:xmpp:http:upload:0">>}],
            children = Children}].

purpose(Name, Attrs) ->
    #xmlel{name = Name, attrs = [{<<"xmlns">>, <<"urn:xmpp:http:upload:purpose:0">>} | Attrs]}.

purposes_test_() ->
    [?_assertEqual({ok, message}, ?M:purpose(request([]))),
     ?_assertEqual({ok, message}, ?M:purpose(request([purpose(<<"message">>, [])]))),
     ?_assertEqual({ok, profile}, ?M:purpose(request([purpose(<<"profile">>, [])]))),
     ?_assertEqual({ok, permanent}, ?M:purpose(request([purpose(<<"permanent">>, [])]))),
     ?_assertEqual({ok, {ephemeral, 1757545705}},
                   ?M:purpose(request([purpose(<<"ephemeral">>, [{<<"expire-before">>, <<"2025-09-10T23:08:25Z">>}])]))),
     ?_assertEqual({ok, {ephemeral, 1757545705}},
                   ?M:purpose(request([purpose(<<"ephemeral">>, [{<<"expire-before">>, <<"2025-09-11T01:08:25+02:00">>}])]))),
     ?_assertEqual({error, bad_expire_before}, ?M:purpose(request([purpose(<<"ephemeral">>, [])]))),
     ?_assertEqual({error, bad_expire_before},
                   ?M:purpose(request([purpose(<<"ephemeral">>, [{<<"expire-before">>, <<"tomorrow">>}])]))),
     ?_assertEqual({error, {unknown_purpose, <<"forever">>}}, ?M:purpose(request([purpose(<<"forever">>, [])]))),
     %% a child in another namespace is no purpose
     ?_assertEqual({ok, message},
                   ?M:purpose(request([#xmlel{name = <<"permanent">>, attrs = [{<<"xmlns">>, <<"urn:example">>}]}])))].

retention_test_() ->
    Now = 1000,
    [?_assertEqual({ok, {-1, 0}}, ?M:retention(message, #{}, Now)),
     ?_assertEqual({ok, {0, 0}}, ?M:retention(profile, #{}, Now)),
     ?_assertEqual({ok, {0, 0}}, ?M:retention(permanent, #{}, Now)),
     ?_assertEqual({ok, {-1, 5000}}, ?M:retention({ephemeral, 5000}, #{}, Now)),
     ?_assertEqual({ok, {86400, 5000}}, ?M:retention({ephemeral, 5000}, #{ephemeral => 1}, Now)),
     ?_assertEqual({error, expire_before_passed}, ?M:retention({ephemeral, 1000}, #{}, Now)),
     ?_assertEqual({ok, {7 * 86400, 0}}, ?M:retention(message, #{message => 7}, Now)),
     ?_assertEqual({ok, {0, 0}}, ?M:retention(message, #{message => infinity}, Now)),
     ?_assertEqual({ok, {-1, 0}}, ?M:retention(profile, #{profile => default}, Now)),
     ?_assertEqual({error, {purpose_refused, permanent}}, ?M:retention(permanent, #{permanent => refuse}, Now)),
     ?_assertEqual([message, ephemeral, profile, permanent], ?M:purposes(#{}, true)),
     ?_assertEqual([message, ephemeral, profile], ?M:purposes(#{permanent => refuse}, true)),
     ?_assertEqual([message], ?M:purposes(#{}, false))].

disco_test() ->
    {ok, _} = application:ensure_all_started(xmpp),
    Features = ?M:disco_features([message, ephemeral]),
    ?assertEqual([<<"urn:xmpp:http:upload">>, <<"urn:xmpp:http:upload:0">>,
                  <<"eu:siacs:conversations:http:upload">>,
                  <<"urn:xmpp:http:upload:purpose:0#message">>,
                  <<"urn:xmpp:http:upload:purpose:0#ephemeral">>,
                  <<"http://jabber.org/protocol/disco#info">>,
                  <<"http://jabber.org/protocol/disco#items">>], Features),
    Forms = ?M:disco_forms(5242880, <<"en">>, []),
    ?assertEqual([<<"urn:xmpp:http:upload:0">>, <<"urn:xmpp:http:upload">>],
                 [xmpp_util:get_xdata_values(<<"FORM_TYPE">>, F) =:= [] orelse
                      hd(xmpp_util:get_xdata_values(<<"FORM_TYPE">>, F)) || F <- Forms]),
    ?assertEqual([[<<"5242880">>], [<<"5242880">>]],
                 [xmpp_util:get_xdata_values(<<"max-file-size">>, F) || F <- Forms]),
    ?assertEqual([], ?M:disco_forms(infinity, <<"en">>, [])).

human_size_test_() ->
    [?_assertEqual(<<"0 bytes">>, ?M:human_size(0)),
     ?_assertEqual(<<"1023 bytes">>, ?M:human_size(1023)),
     ?_assertEqual(<<"1 KiB">>, ?M:human_size(1024)),
     ?_assertEqual(<<"1.5 KiB">>, ?M:human_size(1536)),
     ?_assertEqual(<<"10 MiB">>, ?M:human_size(10485760)),
     ?_assertEqual(<<"12.3 MiB">>, ?M:human_size(12897485)),
     ?_assertEqual(<<"1 GiB">>, ?M:human_size(1073741824)),
     ?_assertEqual(<<"2048 TiB">>, ?M:human_size(2251799813685248))].

errors_test() ->
    {ok, _} = application:ensure_all_started(xmpp),
    NS0 = <<"urn:xmpp:http:upload:0">>,
    Xml = fun(Reason, NS) -> fxml:element_to_binary(xmpp:encode(?M:error(Reason, NS, <<"en">>))) end,
    Has = fun(Bin, Re) -> ?assertMatch({match, _}, re:run(Bin, Re), {Bin, Re}) end,
    TooLarge = Xml({too_large, 12897485, 10485760}, NS0),
    Has(TooLarge, "<not-acceptable "),
    Has(TooLarge, "File is 12.3 MiB \\(12897485 bytes\\); the limit is 10 MiB \\(10485760 bytes\\)"),
    Has(TooLarge, "<file-too-large xmlns='urn:xmpp:http:upload:0'><max-file-size>10485760</max-file-size>"),
    Has(Xml({too_large, 2048, 1024}, <<"urn:xmpp:http:upload">>),
        "<file-too-large xmlns='urn:xmpp:http:upload'><max-file-size>1024</max-file-size>"),
    Usage = #{used => 1000000000, reserved => 40 bsl 20, quota => 1 bsl 30, size => 80 bsl 20},
    Quota = Xml({quota, Usage#{retry_at => 1800000000}}, NS0),
    Has(Quota, "<resource-constraint "),
    Has(Quota, "Upload quota exceeded: 953.7 MiB \\(1000000000 bytes\\) of 1 GiB \\(1073741824 bytes\\) used "
               "and 40 MiB \\(41943040 bytes\\) reserved; this file needs 80 MiB \\(83886080 bytes\\)"),
    Has(Quota, "<retry stamp='2027-01-15T08:00:00Z' xmlns='urn:xmpp:http:upload:0'"),
    ?assertEqual(nomatch, re:run(Xml({quota, Usage#{retry_at => 0}}, NS0), "<retry")),
    %% the older namespaces have no <retry/>
    ?assertEqual(nomatch, re:run(Xml({quota, Usage#{retry_at => 1800000000}}, <<"urn:xmpp:http:upload">>), "<retry")),
    Has(Xml(forbidden, NS0), "<forbidden "),
    Exts = Xml({extension_not_allowed, [<<".jpg">>, <<".png">>]}, NS0),
    Has(Exts, "<not-acceptable "),
    Has(Exts, "allowed: .jpg, .png<"),
    Has(Xml(bad_filename, NS0), "<bad-request "),
    Has(Xml(bad_content_type, NS0), "<bad-request "),
    Has(Xml({purpose_refused, permanent}, NS0), "for the purpose &apos;permanent&apos;"),
    Has(Xml({unknown_purpose, <<"forever">>}, NS0), "<feature-not-implemented "),
    Has(Xml(expire_before_passed, NS0), "<bad-request "),
    Has(Xml(bad_expire_before, NS0), "<bad-request ").

%% The option validators ejabberd applies to ejabberd.yml (the server's C parser takes the
%% same values).
options_test() ->
    V = fun(Opt, Value) -> econf:validate(mod_http_upload_hmac:mod_opt_type(Opt), Value) end,
    ?assertEqual({ok, [v1, v2, token, jwt]}, V(legacy_protocols, [<<"v1">>, <<"v2">>, <<"token">>, <<"jwt">>])),
    ?assertMatch({error, _, _}, V(legacy_protocols, [<<"v3">>])),
    ?assertEqual({ok, 300000}, V(reservation_time, <<"5 minutes">>)),
    ?assertEqual({ok, 2000}, V(reservation_time, 2)),
    ?assertEqual({ok, #{profile => 30, permanent => refuse, message => default}},
                 V(purpose_retention, [{<<"profile">>, 30}, {<<"permanent">>, <<"refuse">>},
                                       {<<"message">>, <<"default">>}])),
    ?assertMatch({error, _, _}, V(purpose_retention, [{<<"message">>, <<"refuse">>}])),
    ?assertMatch({error, _, _}, V(purpose_retention, [{<<"avatar">>, 3}])).

%% A PostgreSQL ledger URL is logged without its password, wherever libpq lets it be.
redact_url_test_() ->
    R = fun hmac_upload_nif:redact_ledger_path/1,
    [?_assertEqual(<<"postgresql://hu:***@127.0.0.1:5432/db?sslmode=disable">>,
                   R(<<"postgresql://hu:s3cr%40t@127.0.0.1:5432/db?sslmode=disable">>)),
     ?_assertEqual(<<"postgresql://h/db?user=a&password=***&connect_timeout=3">>,
                   R(<<"postgresql://h/db?user=a&password=b&connect_timeout=3">>)),
     ?_assertEqual(<<"postgres://u@h/db">>, R(<<"postgres://u@h/db">>)),
     ?_assertEqual(<<"postgresql://h/db?password=***">>, R(<<"postgresql://h/db?password=%zz">>)),
     ?_assertEqual(<<"/var/lib/hmac-upload/state/ledger.sqlite3">>,
                   R(<<"/var/lib/hmac-upload/state/ledger.sqlite3">>))].
