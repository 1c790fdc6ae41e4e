#!/usr/bin/python3
"""End to end, issue 12: media metadata carried into messages. A private ejabberd 23.01 with
mod_muc and the module; two real slixmpp clients in one group chat. The owner uploads a JPEG
through XEP-0363 and posts its URL with an OOB element; the other occupant receives the
message with Prosody's <metadata> (bytes, type, blurhash, width, height) matching the file,
and, with file_sharing_metadata, a XEP-0447 <file-sharing> element (name, size, sha-256,
dimensions, thumbnail); another server's URL passes unchanged. One-to-one messages get the
same only with chat_metadata. upload_list_files shows the type, dimensions and check."""

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from ejabberd import Ejabberd  # noqa: E402
from harness import ROOT, curl, eq, main, test  # noqa: E402

PHOTO = os.path.join(ROOT, "test", "fixtures", "media", "progressive.jpg")
FOREIGN = "https://files.elsewhere.example/upload/0123abcd/photo.jpg"
MUC = '  mod_muc:\n    host: "conference.@HOST@"\n'
ROOM = "photos@conference.localhost"
NS_META = "xmpp:prosody.im/protocol/media-metadata#0"
NS_OOB = "jabber:x:oob"


def share(ej):
    """Runs the two clients; returns (GET URL, [messages the occupant got, parsed])."""
    p = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "slix_muc.py"),
                        f"127.0.0.1:{ej.c2s_port}", ej.cert, ROOM, "alice@localhost", "pw-alice",
                        "bob@localhost", "pw-bob", PHOTO, "image/jpeg", FOREIGN],
                       capture_output=True, text=True, timeout=180,
                       env=dict(os.environ, SSL_CERT_FILE=ej.cert))
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    assert lines, f"slix_muc gave no result: {p.stdout[-2000:]} {p.stderr[-3000:]}"
    out = json.loads(lines[-1])
    return out["get"], [ET.fromstring(m) for m in out["messages"]]


def started(opts):
    ej = Ejabberd(opts, extra_modules=MUC).start()
    for u in ("alice", "bob"):
        ej.register(u, "pw-" + u)
    return ej


def by_url(messages, mtype, url):
    found = [m for m in messages if m.get("type") == mtype
             and m.findtext(f"{{{NS_OOB}}}x/{{{NS_OOB}}}url") == url]
    eq(len(found), 1, f"one {mtype} message with {url}: {[ET.tostring(m) for m in messages]}")
    return found[0]


def metadata(msg):
    return msg.find(f"{{{NS_OOB}}}x/{{{NS_META}}}metadata")


def check_metadata(meta, body, blurhash):
    assert meta is not None, "no <metadata> in the OOB element"
    w, h = Image.open(io.BytesIO(body)).size
    eq(meta.findtext(f"{{{NS_META}}}bytes"), str(len(body)), "bytes")
    eq(meta.findtext(f"{{{NS_META}}}type"), "image/jpeg", "type")
    eq(meta.findtext(f"{{{NS_META}}}blurhash"), blurhash, "blurhash = the GET's Blurhash header")
    eq((meta.findtext(f"{{{NS_META}}}width"), meta.findtext(f"{{{NS_META}}}height")),
       (str(w), str(h)), "dimensions")


@test
def group_chat_occupant_gets_metadata_of_our_upload_and_foreign_urls_pass():
    ej = started({"chat_metadata": True, "file_sharing_metadata": True})
    try:
        get, messages = share(ej)
        with open(PHOTO, "rb") as f:
            body = f.read()
        g = curl(get)
        eq(g.status, 200, "GET of the upload")
        eq(g.body, body, "the stored bytes")
        blurhash = g.headers.get("blurhash")
        assert blurhash, g.headers

        ours = by_url(messages, "groupchat", get)
        check_metadata(metadata(ours), body, blurhash)
        eq(len(ours.findall(f"{{{NS_OOB}}}x/{{{NS_META}}}metadata")), 1, "one <metadata>")

        sfs = ours.find("{urn:xmpp:sfs:0}file-sharing")
        assert sfs is not None, ET.tostring(ours)
        fm = "{urn:xmpp:file:metadata:0}"
        file_el = sfs.find(f"{fm}file")
        eq(file_el.findtext(f"{fm}name"), os.path.basename(PHOTO), "XEP-0446 name")
        eq(file_el.findtext(f"{fm}size"), str(len(body)), "XEP-0446 size")
        eq(file_el.findtext(f"{fm}media-type"), "image/jpeg", "XEP-0446 media-type")
        digest = file_el.find("{urn:xmpp:hashes:2}hash")
        eq((digest.get("algo"), base64.b64decode(digest.text)),
           ("sha-256", hashlib.sha256(body).digest()), "XEP-0446 hash")
        thumb = file_el.find("{urn:xmpp:thumbs:1}thumbnail").get("uri")
        t = curl(thumb)
        eq((t.status, t.headers.get("content-type")), (200, "image/webp"), "thumbnail URI")
        eq(sfs.find("{urn:xmpp:sfs:0}sources/{http://jabber.org/protocol/url-data}url-data")
           .get("target"), get, "XEP-0447 source")

        foreign = by_url(messages, "groupchat", FOREIGN)
        eq([c.tag for c in foreign.find(f"{{{NS_OOB}}}x")], [f"{{{NS_OOB}}}url"],
           "another server's OOB element is untouched")
        assert foreign.find("{urn:xmpp:sfs:0}file-sharing") is None

        # chat_metadata: the one-to-one message carries it too
        check_metadata(metadata(by_url(messages, "chat", get)), body, blurhash)
        assert metadata(by_url(messages, "chat", FOREIGN)) is None

        # upload_list_files: type read from the bytes, dimensions, verified
        w, h = Image.open(io.BytesIO(body)).size
        listing = ej.ctl("upload_list_files", "alice", "localhost").stdout
        line = [line for line in listing.splitlines() if os.path.basename(PHOTO) in line]
        eq(len(line), 1, listing)
        assert line[0].endswith(f"image/jpeg {w}x{h} verified"), line[0]
    finally:
        ej.stop()


@test
def by_default_only_group_chat_gets_metadata():
    ej = started({})
    try:
        get, messages = share(ej)
        ours = by_url(messages, "groupchat", get)
        assert metadata(ours) is not None, ET.tostring(ours)
        assert ours.find("{urn:xmpp:sfs:0}file-sharing") is None, "XEP-0447 is opt-in"
        direct = by_url(messages, "chat", get)
        eq([c.tag for c in direct.find(f"{{{NS_OOB}}}x")], [f"{{{NS_OOB}}}url"],
           "one-to-one messages untouched without chat_metadata")
    finally:
        ej.stop()


if __name__ == "__main__":
    main()
