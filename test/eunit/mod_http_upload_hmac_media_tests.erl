%%% EUnit tests of mod_http_upload_hmac_media: which OOB URLs are ours, what their metadata
%%% elements hold, that everything else in a message is left alone, and the admin line.
-module(mod_http_upload_hmac_media_tests).
-include_lib("eunit/include/eunit.hrl").
-include("xmpp.hrl").

-define(M, mod_http_upload_hmac_media).
-define(BASE, <<"https://up.example.org:5443/upload">>).
-define(NS, <<"xmpp:prosody.im/protocol/media-metadata#0">>).
-define(SHA, <<"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08">>).
-define(PHOTO, #{path => <<"s1/photo 1.jpg">>, size => 1234, content_type => <<"image/jpeg">>,
                sha256 => ?SHA, media_type => <<"image/jpeg">>, type_ok => true,
                width => 640, height => 480, blurhash => <<"LEHV6nWB2yk8pyo0adR*.7kCMdnj">>,
                thumbnail => true}).
-define(OPTS, #{base => ?BASE, xmlns => ?NS, file_sharing => false}).

file_path_test_() ->
    P = fun(URL) -> ?M:file_path(URL, ?BASE) end,
    [?_assertEqual({ok, <<"s1/photo 1.jpg">>}, P(<<?BASE/binary, "/s1/photo%201.jpg">>)),
     ?_assertEqual({ok, <<"s1/f", 16#c3, 16#bc, "r.txt">>}, P(<<?BASE/binary, "/s1/f%C3%BCr.txt">>)),
     %% not ours, or not a file's GET URL
     ?_assertEqual(nomatch, P(<<"https://other.example.org/upload/s1/a.jpg">>)),
     ?_assertEqual(nomatch, P(<<"https://up.example.org:5443/upload2/s1/a.jpg">>)),
     ?_assertEqual(nomatch, P(<<"http://up.example.org:5443/upload/s1/a.jpg">>)),
     ?_assertEqual(nomatch, P(<<?BASE/binary, "/s1/a.jpg?thumbnail">>)),
     ?_assertEqual(nomatch, P(<<?BASE/binary, "/s1/a.jpg#x">>)),
     ?_assertEqual(nomatch, P(<<?BASE/binary, "/s1">>)),
     ?_assertEqual(nomatch, P(<<?BASE/binary, "/s1/">>)),
     ?_assertEqual(nomatch, P(<<?BASE/binary, "//a.jpg">>)),
     ?_assertEqual(nomatch, P(<<?BASE/binary, "/s1/a/b.jpg">>)),
     ?_assertEqual(nomatch, P(<<?BASE/binary, "/s1/a%2Fb.jpg">>)),
     ?_assertEqual(nomatch, P(<<?BASE/binary, "/s1/a%00.jpg">>)),
     ?_assertEqual(nomatch, P(<<?BASE/binary, "/../a.jpg">>)),
     ?_assertEqual(nomatch, P(<<?BASE/binary, "/s1/%2E%2E">>)),
     ?_assertEqual(nomatch, P(<<?BASE/binary, "/s1/a%ZZ.jpg">>)),
     ?_assertEqual(nomatch, P(<<>>))].

oob(URL) ->
    #xmlel{name = <<"x">>, attrs = [{<<"xmlns">>, <<"jabber:x:oob">>}],
           children = [#xmlel{name = <<"url">>, children = [{xmlcdata, URL}]}]}.

msg(Els) -> #message{type = groupchat, sub_els = Els}.

%% Looks up exactly the one path it knows; anything else is unknown.
lookup(Path, File) -> fun(P) when P == Path -> {ok, File}; (_) -> error end.

url() -> <<?BASE/binary, "/s1/photo%201.jpg">>.

metadata_of(#message{sub_els = Els}) ->
    [M || #xmlel{name = <<"x">>, children = Cs} <- Els,
          #xmlel{name = <<"metadata">>} = M <- Cs].

child(El, Name) -> fxml:get_subtag_cdata(El, Name).

enrich_adds_prosody_metadata_test() ->
    Out = ?M:enrich(msg([#xmlel{name = <<"body">>, children = [{xmlcdata, url()}]}, oob(url())]),
                    lookup(<<"s1/photo 1.jpg">>, ?PHOTO), ?OPTS),
    [Meta] = metadata_of(Out),
    ?assertEqual(?NS, fxml:get_tag_attr_s(<<"xmlns">>, Meta)),
    ?assertEqual(<<"1234">>, child(Meta, <<"bytes">>)),
    ?assertEqual(<<"image/jpeg">>, child(Meta, <<"type">>)),
    ?assertEqual(<<"LEHV6nWB2yk8pyo0adR*.7kCMdnj">>, child(Meta, <<"blurhash">>)),
    ?assertEqual(<<"640">>, child(Meta, <<"width">>)),
    ?assertEqual(<<"480">>, child(Meta, <<"height">>)),
    %% the body and the OOB URL are as they were
    [Body, #xmlel{name = <<"x">>} = X] = Out#message.sub_els,
    ?assertEqual(url(), fxml:get_tag_cdata(Body)),
    ?assertEqual(url(), child(X, <<"url">>)).

decoded_oob_is_handled_test() ->
    Out = ?M:enrich(msg([#oob_x{url = url()}]), lookup(<<"s1/photo 1.jpg">>, ?PHOTO), ?OPTS),
    ?assertMatch([_], metadata_of(Out)).

non_image_gets_bytes_and_type_only_test() ->
    File = #{path => <<"s1/photo 1.jpg">>, size => 7, content_type => <<"text/plain">>,
             sha256 => ?SHA, width => undefined, height => undefined, blurhash => undefined},
    [Meta] = metadata_of(?M:enrich(msg([oob(url())]), lookup(<<"s1/photo 1.jpg">>, File), ?OPTS)),
    ?assertEqual([<<"bytes">>, <<"type">>], [N || #xmlel{name = N} <- Meta#xmlel.children]).

unknown_and_foreign_urls_pass_untouched_test_() ->
    Foreign = msg([oob(<<"https://elsewhere.example/upload/s1/photo%201.jpg">>)]),
    NotInLedger = msg([oob(<<?BASE/binary, "/s2/gone.jpg">>)]),
    NoOob = msg([#xmlel{name = <<"body">>, children = [{xmlcdata, url()}]}]),
    Look = lookup(<<"s1/photo 1.jpg">>, ?PHOTO),
    [?_assertEqual(M, ?M:enrich(M, Look, ?OPTS)) || M <- [Foreign, NotInLedger, NoOob]].

existing_metadata_is_not_duplicated_test() ->
    Mine = #xmlel{name = <<"metadata">>, attrs = [{<<"xmlns">>, ?NS}]},
    X = (oob(url()))#xmlel{children = (oob(url()))#xmlel.children ++ [Mine]},
    In = msg([X]),
    ?assertEqual(In, ?M:enrich(In, lookup(<<"s1/photo 1.jpg">>, ?PHOTO), ?OPTS)).

file_sharing_element_test() ->
    Out = ?M:enrich(msg([oob(url())]), lookup(<<"s1/photo 1.jpg">>, ?PHOTO),
                    ?OPTS#{file_sharing => true}),
    [_X, SFS] = Out#message.sub_els,
    ?assertEqual(<<"urn:xmpp:sfs:0">>, fxml:get_tag_attr_s(<<"xmlns">>, SFS)),
    File = fxml:get_subtag(SFS, <<"file">>),
    ?assertEqual(<<"urn:xmpp:file:metadata:0">>, fxml:get_tag_attr_s(<<"xmlns">>, File)),
    ?assertEqual(<<"photo 1.jpg">>, child(File, <<"name">>)),
    ?assertEqual(<<"1234">>, child(File, <<"size">>)),
    ?assertEqual(<<"image/jpeg">>, child(File, <<"media-type">>)),
    ?assertEqual(<<"640">>, child(File, <<"width">>)),
    ?assertEqual(<<"480">>, child(File, <<"height">>)),
    Hash = fxml:get_subtag(File, <<"hash">>),
    ?assertEqual(<<"sha-256">>, fxml:get_tag_attr_s(<<"algo">>, Hash)),
    ?assertEqual(binary:decode_hex(?SHA), base64:decode(fxml:get_tag_cdata(Hash))),
    Thumb = fxml:get_subtag(File, <<"thumbnail">>),
    ?assertEqual(<<(url())/binary, "?thumbnail">>, fxml:get_tag_attr_s(<<"uri">>, Thumb)),
    Source = fxml:get_subtag(fxml:get_subtag(SFS, <<"sources">>), <<"url-data">>),
    ?assertEqual(url(), fxml:get_tag_attr_s(<<"target">>, Source)).

file_sharing_not_added_when_the_sender_has_one_test() ->
    Theirs = #xmlel{name = <<"file-sharing">>, attrs = [{<<"xmlns">>, <<"urn:xmpp:sfs:0">>}]},
    Out = ?M:enrich(msg([oob(url()), Theirs]), lookup(<<"s1/photo 1.jpg">>, ?PHOTO),
                    ?OPTS#{file_sharing => true}),
    ?assertEqual(2, length(Out#message.sub_els)).

describe_test_() ->
    D = fun(F) -> iolist_to_binary(?M:describe(F)) end,
    [?_assertEqual(<<"image/jpeg 640x480 verified">>, D(?PHOTO)),
     ?_assertEqual(<<"image/png 10x20 mismatch">>,
                   D(#{media_type => <<"image/png">>, width => 10, height => 20, type_ok => false})),
     ?_assertEqual(<<"- - unverified">>, D(#{media_type => undefined, type_ok => undefined}))].
