%%% The pure parts of carrying media metadata into messages, apart from the hooks' I/O: which
%%% out-of-band URLs (XEP-0066 jabber:x:oob) of a message point into our upload service, the
%%% ledger path each names, and the elements built from a file's ledger row:
%%%  - Prosody's media metadata (mod_muc_media_metadata), inside the <x xmlns='jabber:x:oob'>:
%%%    <metadata><bytes/><type/><blurhash/></metadata>, plus <width/> and <height/>;
%%%  - optionally XEP-0446 file metadata in a XEP-0447 <file-sharing> element (name, size,
%%%    media-type, sha-256, width, height, thumbnail) with the URL as its source.
%%% The metadata was computed by the upload server when the file arrived, so nothing here
%%% makes an HTTP request. A URL that is not one of ours, or not in the ledger, is left as it
%%% is; so is every other part of the message.
-module(mod_http_upload_hmac_media).

-export([file_path/2, enrich/3, metadata_el/2, file_sharing_el/2, describe/1]).

-include("xmpp.hrl").

-define(NS_SFS, <<"urn:xmpp:sfs:0">>).
-define(NS_FILE_METADATA, <<"urn:xmpp:file:metadata:0">>).
-define(NS_HASHES, <<"urn:xmpp:hashes:2">>).
-define(NS_THUMBS, <<"urn:xmpp:thumbs:1">>).
-define(NS_URL_DATA, <<"http://jabber.org/protocol/url-data">>).

%% A file's ledger row, as hmac_upload_nif:get_file/2 returns it.
-type file() :: #{path := binary(), size := non_neg_integer(), content_type := binary() | undefined,
                  sha256 := binary() | undefined, atom() => term()}.
-type lookup() :: fun((binary()) -> {ok, file()} | error).
-type opts() :: #{base := binary(), xmlns := binary(), file_sharing := boolean()}.
-export_type([file/0, lookup/0, opts/0]).

%%%===================================================================
%%% URLs
%%%===================================================================
%% The ledger path (<slot>/<filename>, percent-decoded) of a GET URL under Base (the
%% service's URL, no trailing slash). Allow-list: exactly two non-empty segments, no query,
%% no fragment, no dot segments, nothing that decodes to a "/" or a NUL; anything else is not
%% ours.
-spec file_path(binary(), binary()) -> {ok, binary()} | nomatch.
file_path(URL, Base) ->
    Prefix = <<Base/binary, "/">>,
    N = byte_size(Prefix),
    case URL of
        <<Prefix:N/binary, Rest/binary>> ->
            case binary:match(Rest, [<<"?">>, <<"#">>]) of
                nomatch -> segments(binary:split(Rest, <<"/">>, [global]));
                _ -> nomatch
            end;
        _ ->
            nomatch
    end.

segments([Slot, Name]) ->
    case {decode(Slot), decode(Name)} of
        {{ok, S}, {ok, F}} -> {ok, <<S/binary, "/", F/binary>>};
        _ -> nomatch
    end;
segments(_) ->
    nomatch.

decode(<<>>) -> error;
decode(Segment) ->
    try uri_string:percent_decode(Segment) of
        Bin when is_binary(Bin), Bin /= <<".">>, Bin /= <<"..">> ->
            case binary:match(Bin, [<<"/">>, <<0>>]) of
                nomatch -> {ok, Bin};
                _ -> error
            end;
        _ -> error
    catch _:_ -> error
    end.

%%%===================================================================
%%% Messages
%%%===================================================================
%% The message with metadata added to each OOB element whose URL is one of our files.
%% An OOB element that already carries metadata in our namespace keeps it (a client's, or an
%% earlier hook's): one element per URL.
-spec enrich(message(), lookup(), opts()) -> message().
enrich(#message{sub_els = Els} = Msg, Lookup, Opts) ->
    case lists:mapfoldl(fun(El, Acc) -> oob(El, Lookup, Opts, Acc) end, [], Els) of
        {_, []} ->
            Msg;
        {NewEls, Found} ->
            Msg#message{sub_els = NewEls ++ file_sharing(lists:reverse(Found), NewEls, Opts)}
    end.

oob(#oob_x{} = Decoded, Lookup, Opts, Acc) ->
    oob(xmpp:encode(Decoded), Lookup, Opts, Acc);
oob(#xmlel{name = <<"x">>, attrs = Attrs, children = Children} = El, Lookup,
    #{base := Base, xmlns := NS}, Acc) ->
    URL = fxml:get_subtag_cdata(El, <<"url">>),
    case fxml:get_attr_s(<<"xmlns">>, Attrs) == ?NS_OOB andalso file_path(URL, Base) of
        {ok, Path} ->
            case {has_child(El, <<"metadata">>, NS), Lookup(Path)} of
                {false, {ok, File}} ->
                    {El#xmlel{children = Children ++ [metadata_el(File, NS)]}, [{URL, File} | Acc]};
                {true, {ok, File}} ->
                    {El, [{URL, File} | Acc]};
                {_, error} ->
                    {El, Acc}
            end;
        _ ->
            {El, Acc}
    end;
oob(El, _Lookup, _Opts, Acc) ->
    {El, Acc}.

%% XEP-0447 elements for the files found, unless the option is off or the sender already
%% shares files that way.
file_sharing(_Found, _Els, #{file_sharing := false}) ->
    [];
file_sharing(Found, Els, #{file_sharing := true}) ->
    case [E || #xmlel{name = <<"file-sharing">>} = E <- Els, has_xmlns(E, ?NS_SFS)] of
        [] -> [file_sharing_el(URL, File) || {URL, File} <- Found];
        _ -> []
    end.

has_child(#xmlel{children = Children}, Name, NS) ->
    lists:any(fun(#xmlel{name = N} = C) -> N == Name andalso has_xmlns(C, NS);
                 (_) -> false
              end, Children).

has_xmlns(#xmlel{attrs = Attrs}, NS) -> fxml:get_attr_s(<<"xmlns">>, Attrs) == NS.

%%%===================================================================
%%% Elements
%%%===================================================================
%% Prosody's <metadata>: bytes and type as its module copies them from a HEAD response
%% (Content-Length, and the Content-Type the file is served with), the BlurHash, and the
%% image's width and height.
-spec metadata_el(file(), binary()) -> fxml:xmlel().
metadata_el(File, NS) ->
    #xmlel{name = <<"metadata">>, attrs = [{<<"xmlns">>, NS}],
           children = fields([{<<"bytes">>, size}, {<<"type">>, content_type},
                              {<<"blurhash">>, blurhash}, {<<"width">>, width},
                              {<<"height">>, height}], File)}.

%% XEP-0447 stateless file sharing: XEP-0446 metadata and the URL as its one source.
-spec file_sharing_el(binary(), file()) -> fxml:xmlel().
file_sharing_el(URL, #{path := Path} = File) ->
    [_Slot, Name] = binary:split(Path, <<"/">>),
    Meta = fields([{<<"media-type">>, content_type}], File) ++ [text(<<"name">>, Name)] ++
        fields([{<<"size">>, size}, {<<"width">>, width}, {<<"height">>, height}], File) ++
        hash(File) ++ thumbnail(URL, File),
    #xmlel{name = <<"file-sharing">>,
           attrs = [{<<"xmlns">>, ?NS_SFS}, {<<"disposition">>, <<"inline">>}],
           children = [#xmlel{name = <<"file">>, attrs = [{<<"xmlns">>, ?NS_FILE_METADATA}],
                              children = Meta},
                       #xmlel{name = <<"sources">>,
                              children = [#xmlel{name = <<"url-data">>,
                                                 attrs = [{<<"xmlns">>, ?NS_URL_DATA},
                                                          {<<"target">>, URL}]}]}]}.

hash(#{sha256 := Hex}) when is_binary(Hex), byte_size(Hex) == 64 ->
    [#xmlel{name = <<"hash">>, attrs = [{<<"xmlns">>, ?NS_HASHES}, {<<"algo">>, <<"sha-256">>}],
            children = [{xmlcdata, base64:encode(binary:decode_hex(Hex))}]}];
hash(_) ->
    [].

%% XEP-0264: the server's WebP thumbnail, at the file's URL with ?thumbnail.
thumbnail(URL, #{thumbnail := true}) ->
    [#xmlel{name = <<"thumbnail">>,
            attrs = [{<<"xmlns">>, ?NS_THUMBS}, {<<"uri">>, <<URL/binary, "?thumbnail">>},
                     {<<"media-type">>, <<"image/webp">>}]}];
thumbnail(_URL, _File) ->
    [].

%% One child per field the file has (absent, undefined or 0 width/height: none).
fields(Pairs, File) ->
    [text(Name, value(V)) || {Name, Key} <- Pairs,
                             V <- [maps:get(Key, File, undefined)],
                             V /= undefined, V /= 0 orelse Key == size].

text(Name, Value) -> #xmlel{name = Name, children = [{xmlcdata, Value}]}.

value(V) when is_integer(V) -> integer_to_binary(V);
value(V) when is_binary(V) -> V.

%%%===================================================================
%%% Admin
%%%===================================================================
%% What upload_list_files shows after a file's path, size, type and time: the type read from
%% its bytes, its dimensions, and whether the declared type was verified.
-spec describe(file()) -> iolist().
describe(File) ->
    Type = case maps:get(media_type, File, undefined) of
               undefined -> <<"-">>;
               T -> T
           end,
    Dims = case {maps:get(width, File, undefined), maps:get(height, File, undefined)} of
               {W, H} when is_integer(W), is_integer(H), W > 0, H > 0 -> io_lib:format("~Bx~B", [W, H]);
               _ -> "-"
           end,
    Verified = case maps:get(type_ok, File, undefined) of
                   true -> "verified";
                   false -> "mismatch";
                   undefined -> "unverified"
               end,
    [Type, " ", Dims, " ", Verified].
