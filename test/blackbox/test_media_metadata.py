#!/usr/bin/python3
"""Media metadata computed at upload (issue 12, server side): every image format gets its
dimensions and a BlurHash on GET/HEAD (Blurhash, X-Image-Dimensions) and a WebP thumbnail at
<URL>?thumbnail under the same security headers; the type comes from the bytes, not the
client; a corrupt image, a decompression bomb and a non-image are stored like any file, with
no image headers; media_metadata: false turns it off. The ledger row of each file keeps the
same metadata (schema v4), also when a file is adopted at start-up from its record."""

import io
import os
import re
import sqlite3
import sys
import time

from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import ROOT, UploadServer, curl, eq, main, put, test  # noqa: E402

FIXTURES = os.path.join(ROOT, "test", "fixtures", "media")
BLURHASH = re.compile(r"^[0-9A-Za-z#$%*+,\-.:;=?@\[\]^_{|}~]{6,}$")


def fixture(name):
    with open(os.path.join(FIXTURES, name), "rb") as f:
        return f.read()


def upload(srv, name, body, ctype):
    s = srv.slot(len(body), filename=name, ctype=ctype)
    r = put(s.put_url, body, "-H", f"Content-Type: {ctype}")
    eq(r.status, 201, f"{name} stored")
    return s


@test
def every_format_gets_dimensions_blurhash_and_a_thumbnail():
    with UploadServer() as srv:
        for name, ctype in [("baseline.jpg", "image/jpeg"), ("progressive.jpg", "image/jpeg"),
                            ("rgba.png", "image/png"), ("palette.png", "image/png"),
                            ("lossy.webp", "image/webp"), ("lossless.webp", "image/webp"),
                            ("animated.gif", "image/gif")]:
            body = fixture(name)
            want = Image.open(io.BytesIO(body)).size
            s = upload(srv, name, body, ctype)
            for method in ("-I", "-X GET"):
                r = curl(*method.split(), s.get_url)
                eq(r.status, 200, f"{name} {method}")
                eq(r.headers.get("x-image-dimensions"), f"{want[0]}x{want[1]}", f"{name} dimensions")
                assert BLURHASH.match(r.headers.get("blurhash", "")), (name, r.headers)
            t = curl(s.get_url + "?thumbnail")
            eq((t.status, t.headers.get("content-type")), (200, "image/webp"), f"{name} thumbnail")
            eq(t.headers.get("x-content-type-options"), "nosniff", "same security headers")
            assert "sandbox" in t.headers.get("content-security-policy", ""), t.headers
            thumb = Image.open(io.BytesIO(t.body))
            eq(thumb.format, "WEBP", f"{name} thumbnail decodes")
            assert max(thumb.size) <= 256 and len(t.body) <= 64 * 1024, (name, thumb.size, len(t.body))
            # the thumbnail keeps the picture's shape
            assert abs(thumb.size[0] / thumb.size[1] - want[0] / want[1]) < 0.1, (name, thumb.size, want)
        srv.assert_clean_exit()


@test
def not_an_image_a_corrupt_one_and_a_bomb_are_stored_without_image_headers():
    with UploadServer() as srv:
        cases = [("document.pdf", fixture("document.pdf"), "application/pdf"),
                 ("broken.jpg", fixture("baseline.jpg")[:1500], "image/jpeg"),
                 ("bomb.png", fixture("bomb.png"), "image/png"),
                 # the client says JPEG, the bytes say PNG: probed as what they are
                 ("liar.jpg", fixture("rgba.png"), "image/jpeg")]
        for name, body, ctype in cases:
            t0 = time.monotonic()
            s = upload(srv, name, body, ctype)
            took = time.monotonic() - t0
            r = curl(s.get_url)
            eq((r.status, r.body), (200, body), f"{name} served whole")
            eq(r.headers.get("content-type"), ctype, f"{name} keeps its signed type")
            if name == "liar.jpg":
                eq(r.headers.get("x-image-dimensions"), "%dx%d" % Image.open(io.BytesIO(body)).size,
                   "decoded as the PNG it is")
                continue
            eq((r.headers.get("blurhash"), r.headers.get("x-image-dimensions")), (None, None), name)
            eq(curl(s.get_url + "?thumbnail").status, 404, f"{name}: no thumbnail")
            if name == "bomb.png":
                assert took < 2, f"the bomb took {took:.2f}s"
        srv.assert_clean_exit()


MEDIA_COLS = "media_type, type_ok, width, height, blurhash, thumbnail"


def ledger_row(srv, slot):
    """The media columns of slot's row in the server's SQLite ledger."""
    with sqlite3.connect(srv.ledger_file()) as c:
        return c.execute(f"SELECT {MEDIA_COLS} FROM files WHERE path = ?", (slot.path,)).fetchone()


@test
def the_ledger_row_keeps_the_metadata():
    """What GET says about a file, its ledger row says too: the type the bytes say, whether
    the signed type agrees, the size, the BlurHash, the thumbnail; a mismatched declared type
    is type_ok 0; a non-image has a type and nothing else; a file adopted at start-up (its row
    lost, as if killed before the commit) gets its metadata from its record."""
    with UploadServer() as srv:
        jpeg, png = fixture("baseline.jpg"), fixture("rgba.png")
        cases = {"cat": (upload(srv, "cat.jpg", jpeg, "image/jpeg"), jpeg, "image/jpeg", 1),
                 "liar": (upload(srv, "liar.jpg", png, "image/jpeg"), png, "image/png", 0)}
        for name, (s, body, real_type, type_ok) in cases.items():
            r = curl("-I", s.get_url)
            w, h = Image.open(io.BytesIO(body)).size
            eq(ledger_row(srv, s), (real_type, type_ok, w, h, r.headers.get("blurhash"), 1),
               f"{name}: ledger row")
        pdf = upload(srv, "doc.pdf", fixture("document.pdf"), "application/pdf")
        eq(ledger_row(srv, pdf), ("application/pdf", 1, None, None, None, 0), "pdf: ledger row")
        cat = cases["cat"][0]
        want = ledger_row(srv, cat)
        srv.assert_clean_exit()
        with sqlite3.connect(srv.ledger_file()) as c:
            c.execute("DELETE FROM files WHERE path = ?", (cat.path,))
        # start-up adopts only a file older than any sharing server takes to record it
        t = time.time() - 86400
        os.utime(srv.published_path(cat.path), (t, t))
        srv.start()
        assert any("1 file(s) without a row adopted" in l for l in srv.stderr_lines), srv.stderr_lines
        eq(ledger_row(srv, cat), want, "adopted row")
        srv.assert_clean_exit()


@test
def a_file_signed_as_octet_stream_is_not_probed():
    """application/octet-stream: nothing to verify, and mostly OMEMO ciphertext that libmagic
    would walk its whole database for. Even a JPEG signed so gets no image headers, no
    thumbnail and no media columns; the same JPEG signed image/jpeg still does."""
    with UploadServer() as srv:
        jpeg = fixture("baseline.jpg")
        s = upload(srv, "opaque.jpg", jpeg, "application/octet-stream")
        r = curl("-I", s.get_url)
        eq((r.status, r.headers.get("content-type")), (200, "application/octet-stream"), "served")
        eq((r.headers.get("blurhash"), r.headers.get("x-image-dimensions")), (None, None),
           "no image headers")
        eq(curl(s.get_url + "?thumbnail").status, 404, "no thumbnail")
        eq(ledger_row(srv, s), (None, None, None, None, None, 0), "untyped row")
        typed = upload(srv, "photo.jpg", jpeg, "image/jpeg")
        eq(ledger_row(srv, typed)[:2], ("image/jpeg", 1), "a declared type is still verified")
        srv.assert_clean_exit()


@test
def media_metadata_can_be_turned_off():
    with UploadServer(media_metadata=False) as srv:
        s = upload(srv, "baseline.jpg", fixture("baseline.jpg"), "image/jpeg")
        r = curl("-I", s.get_url)
        eq((r.status, r.headers.get("blurhash"), r.headers.get("x-image-dimensions")),
           (200, None, None), "no metadata")
        eq(curl(s.get_url + "?thumbnail").status, 404, "no thumbnail")
        eq(ledger_row(srv, s), (None, None, None, None, None, 0), "nothing in the ledger row")
        srv.assert_clean_exit()


if __name__ == "__main__":
    main()
