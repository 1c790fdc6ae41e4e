#!/usr/bin/python3
"""Black-box tests of hmac-upload-server: the real binary, driven with curl and raw sockets."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import (SECRET, SERVER_BIN, Skip, Slot, UploadServer, curl, eq, keys,  # noqa: E402
                     legacy_token, main, put, raw_request, test)

BODY = os.urandom(3000)


def upload_ok(srv, slot, body, *extra, url=None):
    r = put(url or slot.put_url, body, *extra)
    eq(r.status, 201, f"PUT {r.body!r}")
    return r


@test
def bearer_in_header_then_get_head():
    with UploadServer() as srv:
        s = srv.slot(len(BODY))
        r = upload_ok(srv, s, BODY, "-H", s.auth, url=s.put_url_no_token)
        j = json.loads(r.body)
        eq(j["success"], True, "success")
        eq(j["size"], len(BODY), "size")
        eq(j["user"], "alice@localhost", "user")
        eq(j["filename"], "photo.jpg", "filename")
        assert j["uploaded_at"].endswith("Z"), j
        g = curl(s.get_url)
        eq(g.status, 200, "GET")
        eq(g.body, BODY, "body")
        eq(g.header("content-type"), "image/jpeg", "signed type")
        eq(g.header("x-content-type-options"), "nosniff", "nosniff")
        assert "default-src 'none'" in (g.header("content-security-policy") or ""), g.headers
        assert g.header("etag") and g.header("last-modified"), g.headers
        h = curl("-I", s.get_url)
        eq(h.status, 200, "HEAD")
        eq(h.header("content-length"), str(len(BODY)), "HEAD length")
        target = s.get_url.split(str(srv.port), 1)[1]
        raw = raw_request(srv.port, f"HEAD {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        eq(raw.split(b"\r\n\r\n", 1)[1], b"", "HEAD sends no body")
        eq(srv.visible_files(), keys(s.path), "stored files")
        eq(srv.partial_files(), [], "no partial files")
        srv.assert_clean_exit()


@test
def bearer_in_query_and_signed_type_wins():
    with UploadServer() as srv:
        s = srv.slot(len(BODY), filename="doc.pdf", ctype="application/pdf")
        # Monal / Converse.js send a different or no Content-Type: the signed one is stored.
        r = curl("-X", "PUT", "--data-binary", "@-", "-H", "Content-Type: text/html", s.put_url,
                 data=BODY)
        eq(r.status, 201, "PUT")
        g = curl(s.get_url)
        eq(g.header("content-type"), "application/pdf", "served type")
        srv.assert_clean_exit()


@test
def strict_content_type_refuses_mismatch():
    with UploadServer(strict_content_type=True) as srv:
        s = srv.slot(len(BODY))
        r = curl("-X", "PUT", "--data-binary", "@-", "-H", "Content-Type: text/html", s.put_url,
                 data=BODY)
        eq(r.status, 415, "strict mismatch")
        upload_ok(srv, s, BODY)
        srv.assert_clean_exit()


@test
def legacy_v1_v2_token():
    with UploadServer(legacy_protocols=["v1", "v2", "token"]) as srv:
        for scheme, q in (("v1", "v"), ("v2", "v2"), ("token", "token")):
            path = f"legacy-{scheme}/file.png"
            mac = legacy_token(SECRET, scheme, path, len(BODY), "image/png")
            r = curl("-X", "PUT", "--data-binary", "@-", "-H", "Content-Type: image/png",
                     f"{srv.base}/{path}?{q}={mac}", data=BODY)
            eq(r.status, 201, f"{scheme}: {r.body!r}")
            eq(json.loads(r.body)["user"], None, "legacy has no user")
            eq(curl(f"{srv.base}/{path}").body, BODY, f"{scheme} GET")
        # ejabberd's external_secret signs <user>/<random>/<file>
        path = "alice@localhost/r4nd0m/f.jpg"
        mac = legacy_token(SECRET, "v1", path, len(BODY))
        eq(put(f"{srv.base}/{path}?v={mac}", BODY).status, 201, "three segments")
        # v2 with a Content-Type the token did not sign, but the extension implies the signed one
        path = "legacy-ext/pic.jpg"
        mac = legacy_token(SECRET, "v2", path, len(BODY), "image/jpeg")
        r = curl("-X", "PUT", "--data-binary", "@-", "-H", "Content-Type: application/x-foo",
                 f"{srv.base}/{path}?v2={mac}", data=BODY)
        eq(r.status, 201, "v2 by extension")
        srv.assert_clean_exit()


@test
def legacy_refused_when_not_enabled():
    with UploadServer(legacy_protocols=["v2"]) as srv:
        path = "x/file.png"
        mac = legacy_token(SECRET, "v1", path, len(BODY))
        eq(put(f"{srv.base}/{path}?v={mac}", BODY).status, 403, "v1 disabled")
        eq(srv.visible_files(), [], "nothing stored")
        srv.assert_clean_exit()


@test
def bad_tokens_are_403():
    with UploadServer() as srv:
        s = srv.slot(len(BODY), expires=int(time.time()) - 5)
        eq(put(s.put_url, BODY).status, 403, "expired")
        s = srv.slot(len(BODY))
        eq(put(s.put_url.replace("token=", "token=x"), BODY).status, 403, "garbled token")
        eq(put(s.put_url.replace("alice", "mallory"), BODY).status, 403, "other user")
        eq(put(s.put_url_no_token, BODY).status, 403, "no token")
        eq(put(s.put_url_no_token, BODY, "-H", "Authorization: Bearer " + "A" * 43).status, 403,
           "forged header")
        other = Slot(srv.base, len(BODY), secret="some-other-secret-0123456789")
        eq(put(other.put_url, BODY).status, 403, "other secret")
        eq(srv.visible_files(), [], "nothing stored")
        srv.assert_clean_exit()


@test
def wrong_size_and_too_large():
    with UploadServer(max_size=4096) as srv:
        s = srv.slot(len(BODY))
        eq(put(s.put_url, BODY + b"x").status, 403, "size differs from signed")
        big = srv.slot(5000)
        eq(put(big.put_url, os.urandom(5000)).status, 413, "over max_size")
        eq(srv.visible_files(), [], "nothing stored")
        # Chunked bodies have no length to check against the token.
        r = curl("-X", "PUT", "-H", "Transfer-Encoding: chunked", "--data-binary", "@-",
                 s.put_url, data=BODY)
        assert r.status in (411, 400), r.status
        srv.assert_clean_exit()


@test
def replay_of_used_slot_is_409():
    """Taken whole (small) or streamed, with the ledger and without: 409, the first upload kept,
    nothing of the replay left behind."""
    big = os.urandom(700 * 1024)  # more than the server takes whole
    for opts in ({}, {"ledger_path": "none"}):
        with UploadServer(**opts) as srv:
            for body in (BODY, big):
                s = srv.slot(len(body))
                upload_ok(srv, s, body)
                eq(put(s.put_url, os.urandom(len(body))).status, 409, f"replay {len(body)} {opts}")
                eq(curl(s.get_url).body, body, "first upload kept")
            eq(srv.partial_files(), [], "no partial file left")
            srv.assert_clean_exit()


@test
def path_traversal_refused():
    with UploadServer(legacy_protocols=["v1"]) as srv:
        secret_before = open(os.path.join(srv.storage, "..", "ejabberd.yml")).read()
        attempts = ["../ejabberd.yml", "%2e%2e/ejabberd.yml", "%2E%2E%2Fejabberd.yml",
                    "a/%2e%2e/%2e%2e/ejabberd.yml", "a/x%00.jpg", "a//b.jpg", "/etc/passwd",
                    "a/..%2f..%2fejabberd.yml", "a/%5c..%5cx"]
        for a in attempts:
            path = a
            mac = legacy_token(SECRET, "v1", path, len(BODY))
            r = raw_request(srv.port, (f"PUT /upload/{a}?v={mac} HTTP/1.1\r\nHost: x\r\n"
                                       f"Content-Length: {len(BODY)}\r\nConnection: close\r\n\r\n").encode()
                            + BODY)
            status = int(r.split(b" ", 2)[1]) if r.startswith(b"HTTP/1.1 ") else 0
            assert status in (400, 403, 404), f"{a}: {r[:200]!r}"
            g = raw_request(srv.port, f"GET /upload/{a} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            assert g.split(b" ", 2)[1] in (b"400", b"404"), f"GET {a}: {g[:200]!r}"
        eq(open(os.path.join(srv.storage, "..", "ejabberd.yml")).read(), secret_before, "config intact")
        eq(srv.visible_files(), [], "nothing stored")
        # Names that look like the server's own directories are ordinary upload paths in
        # layout 2 (leading dots are fine): stored under files/ by their hash if at all,
        # never as storage_dir/.partial/x, state/x, ...
        stored = []
        for a in (".partial/x", ".meta/x", "state/x", "files/x"):
            mac = legacy_token(SECRET, "v1", a, len(BODY))
            r = put(f"{srv.base}/{a}?v={mac}", BODY)
            assert r.status in (201, 400, 403, 404), f"{a}: {r.status} {r.body[:200]!r}"
            if r.status == 201:
                stored.append(a)
                eq(curl(f"{srv.base}/{a}").body, BODY, f"{a} served as an upload")
            else:
                assert curl(f"{srv.base}/{a}").status in (400, 404), f"GET {a}"
        for inner in (".partial/x", ".meta/x", "state/x", "files/x", "x"):
            eq(os.path.exists(os.path.join(srv.storage, inner)), False, f"{inner} created")
        eq(srv.visible_files(), keys(*stored), "only the accepted uploads, under files/")
        # requests outside the prefix
        g = raw_request(srv.port, b"GET /etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert g.startswith(b"HTTP/1.1 404"), g[:100]
        srv.assert_clean_exit()


@test
def cut_upload_leaves_nothing():
    with UploadServer(legacy_protocols=["v1"]) as srv:
        s = srv.slot(1 << 20)
        with socket.create_connection(("127.0.0.1", srv.port)) as c:
            c.sendall((f"PUT {s.put_url.split(str(srv.port), 1)[1]} HTTP/1.1\r\nHost: x\r\n"
                       f"Content-Length: {1 << 20}\r\n\r\n").encode())
            c.sendall(os.urandom(300000))
            time.sleep(0.3)
        time.sleep(0.3)
        eq(srv.visible_files(), [], "no visible file")
        eq(curl(s.get_url).status, 404, "GET after cut")
        # the slot is not used up: the whole PUT can be retried
        body = os.urandom(1 << 20)
        upload_ok(srv, s, body)
        eq(curl(s.get_url).body, body, "retry stored")
        eq(srv.partial_files(), [], "nothing left behind after the retry")
        # a cut legacy upload (no expiry, so not resumable) leaves nothing at all
        mac = legacy_token(SECRET, "v1", "l/cut.bin", 1 << 20)
        with socket.create_connection(("127.0.0.1", srv.port)) as c:
            c.sendall((f"PUT /upload/l/cut.bin?v={mac} HTTP/1.1\r\nHost: x\r\n"
                       f"Content-Length: {1 << 20}\r\n\r\n").encode() + os.urandom(300000))
            time.sleep(0.3)
        time.sleep(0.3)
        eq(srv.partial_files(), [], "legacy partial removed")
        srv.assert_clean_exit()


@test
def expect_100_continue_only_after_token_check():
    with UploadServer() as srv:
        s = srv.slot(len(BODY))
        target = s.put_url.split(str(srv.port), 1)[1]
        bad = target.replace("token=", "token=x")
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as c:
            c.sendall((f"PUT {bad} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(BODY)}\r\n"
                       "Expect: 100-continue\r\n\r\n").encode())
            first = c.recv(4096)
            assert first.startswith(b"HTTP/1.1 403"), first[:100]
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as c:
            c.sendall((f"PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(BODY)}\r\n"
                       "Expect: 100-continue\r\n\r\n").encode())
            first = c.recv(4096)
            assert first.startswith(b"HTTP/1.1 100"), first[:100]
            c.sendall(BODY)
            rest = c.recv(4096)
            assert b"201 Created" in first + rest, (first + rest)[:200]
        srv.assert_clean_exit()


@test
def range_and_conditional_get():
    with UploadServer() as srv:
        s = srv.slot(len(BODY))
        upload_ok(srv, s, BODY)
        r = curl("-H", "Range: bytes=100-199", s.get_url)
        eq(r.status, 206, "range")
        eq(r.body, BODY[100:200], "range body")
        eq(r.header("content-range"), f"bytes 100-199/{len(BODY)}", "content-range")
        r = curl("-H", "Range: bytes=-10", s.get_url)
        eq(r.body, BODY[-10:], "suffix range")
        r = curl("-H", f"Range: bytes={len(BODY)}-", s.get_url)
        eq(r.status, 416, "unsatisfiable")
        etag = curl("-I", s.get_url).header("etag")
        eq(curl("-H", f"If-None-Match: {etag}", s.get_url).status, 304, "If-None-Match")
        eq(curl("-H", 'If-Match: "nope"', s.get_url).status, 412, "If-Match")
        r = curl("-H", "Range: bytes=0-9", "-H", 'If-Range: "old"', s.get_url)
        eq((r.status, len(r.body)), (200, len(BODY)), "If-Range mismatch sends all")
        srv.assert_clean_exit()


@test
def cut_download_then_full_download():
    with UploadServer() as srv:
        body = os.urandom(8 << 20)
        s = srv.slot(len(body), filename="v.bin", ctype="application/octet-stream")
        upload_ok(srv, s, body)
        target = s.get_url.split(str(srv.port), 1)[1]
        for _ in range(5):  # the client goes away mid-body, at different points
            with socket.create_connection(("127.0.0.1", srv.port)) as c:
                c.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                c.recv(100000)
        g = curl(s.get_url)
        eq(len(g.body), len(body), "full download")
        eq(g.body == body, True, "same bytes")
        srv.assert_clean_exit()


@test
def active_types_download_as_attachment():
    with UploadServer() as srv:
        s = srv.slot(len(BODY), filename="page.html", ctype="text/html")
        upload_ok(srv, s, BODY)
        g = curl("-I", s.get_url)
        eq(g.header("content-type"), "text/html", "type")
        assert (g.header("content-disposition") or "").startswith("attachment"), g.headers
        srv.assert_clean_exit()


@test
def options_preflight_and_cors():
    with UploadServer(cors_origins=["https://chat.example"]) as srv:
        s = srv.slot(len(BODY))
        r = curl("-X", "OPTIONS", "-H", "Origin: https://chat.example",
                 "-H", "Access-Control-Request-Method: PUT",
                 "-H", "Access-Control-Request-Headers: authorization, content-type", s.put_url)
        assert r.status in (200, 204), r.status
        eq(r.header("access-control-allow-origin"), "https://chat.example", "allow-origin")
        assert "PUT" in r.header("access-control-allow-methods"), r.headers
        assert "authorization" in r.header("access-control-allow-headers").lower(), r.headers
        r = curl("-X", "OPTIONS", "-H", "Origin: https://evil.example", s.put_url)
        eq(r.header("access-control-allow-origin"), None, "foreign origin")
        srv.assert_clean_exit()


@test
def keep_alive_and_pipelining():
    with UploadServer() as srv:
        slots = [srv.slot(len(BODY)) for _ in range(3)]
        payload = b""
        for s in slots:
            target = s.put_url.split(str(srv.port), 1)[1]
            payload += (f"PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(BODY)}\r\n\r\n").encode() + BODY
        target = slots[0].get_url.split(str(srv.port), 1)[1]
        payload += f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        out = raw_request(srv.port, payload)
        eq(out.count(b"HTTP/1.1 201"), 3, f"pipelined PUTs: {out[:300]!r}")
        assert out.rstrip().endswith(BODY[-50:]) or BODY in out, "pipelined GET"
        srv.assert_clean_exit()


@test
def malformed_requests_get_clear_errors():
    with UploadServer() as srv:
        for payload, want in ((b"GARBAGE\r\n\r\n", b"400"),
                              (b"GET /upload/a/b HTTP/2.0\r\nHost: x\r\n\r\n", b"505"),
                              (b"GET /upload/a/b HTTP/1.1\r\n" + b"X-A: b\r\n" * 200 + b"\r\n", b"431"),
                              (b"GET /upload/a/b HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n", b"431")):
            out = raw_request(srv.port, payload)
            assert out.split(b" ", 2)[1:2] == [want], (payload[:40], out[:200])
        # still serving
        eq(curl(f"{srv.base}/none/x.jpg").status, 404, "alive")
        srv.assert_clean_exit()


@test
def slow_loris_header_timeout():
    with UploadServer(header_timeout=1, idle_timeout=2) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as c:
            c.sendall(b"GET /upload/a/b HTTP/1.1\r\n")
            start = time.time()
            got = b""
            try:
                for _ in range(8):  # trickle: one header byte per 0.3 s does not reset it
                    c.sendall(b"X")
                    time.sleep(0.3)
            except OSError:
                pass
            try:
                got = c.recv(4096)
            except OSError:
                pass
            assert time.time() - start < 6, "connection held too long"
            assert got == b"" or got.startswith(b"HTTP/1.1 408"), got[:100]
        eq(curl(f"{srv.base}/none/x.jpg").status, 404, "alive")
        srv.assert_clean_exit()


@test
def connection_cap_answers_503():
    with UploadServer(max_connections=2) as srv:
        a = socket.create_connection(("127.0.0.1", srv.port))
        b = socket.create_connection(("127.0.0.1", srv.port))
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as c:
            out = c.recv(4096)  # answered at accept, before any request
        assert out.startswith(b"HTTP/1.1 503"), out[:100]
        a.close()
        time.sleep(0.2)
        eq(curl(f"{srv.base}/none/x.jpg").status, 404, "served again below the cap")
        b.close()
        srv.assert_clean_exit()


@test
def sighup_reloads_secret_without_dropping_transfers():
    """A PUT whose head was checked before the SIGHUP finishes; after rotating
    hmac_shared_secret the outgoing secret stays valid (for token_expiry seconds), the new one
    works at once; a restart drops the old one. Deterministic: the in-flight PUT sends
    `Expect: 100-continue` and the signal goes only after its `100 Continue` (its head has
    then been checked against the old settings)."""
    with UploadServer() as srv:
        s_old = srv.slot(len(BODY))
        # a transfer in flight across the reload
        big = srv.slot(1 << 20)
        c = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        try:
            c.sendall((f"PUT {big.target()} HTTP/1.1\r\nHost: x\r\n"
                       f"Content-Length: {1 << 20}\r\nExpect: 100-continue\r\n\r\n").encode())
            first = b""
            while b"\r\n\r\n" not in first:
                chunk = c.recv(4096)
                assert chunk, f"closed before 100 Continue: {first!r}"
                first += chunk
            assert first.startswith(b"HTTP/1.1 100"), first[:100]
            body = os.urandom(1 << 20)
            c.sendall(body[:500000])
            new = "rotated-secret-abcdefghijklmnop"
            srv.write_config(hmac_shared_secret=new)
            mark = len(srv.stderr_lines)
            srv.signal(signal.SIGHUP)
            srv.wait_stderr("reloaded", start=mark)
            c.sendall(body[500000:])
            resp = b""
            while b"\r\n\r\n" not in resp:
                chunk = c.recv(4096)
                if not chunk:
                    break
                resp += chunk
            assert resp.startswith(b"HTTP/1.1 201"), resp[:100]
        finally:
            c.close()
        eq(curl(big.get_url).body == body, True, "in-flight upload stored whole")
        eq(put(s_old.put_url, BODY).status, 201, "old secret still accepted after the rotation")
        srv.wait_stderr(r"previous secret stays valid", start=mark, timeout=1)
        s_new = Slot(srv.base, len(BODY), secret=new)
        eq(put(s_new.put_url, BODY).status, 201, "new secret")
        # a broken config on reload keeps the running one
        with open(srv.config, "w") as f:
            f.write("modules: [\n")
        mark = len(srv.stderr_lines)
        srv.signal(signal.SIGHUP)
        srv.wait_stderr("reload failed", start=mark)
        s2 = Slot(srv.base, len(BODY), secret=new)
        eq(put(s2.put_url, BODY).status, 201, "still running on the good config")
        # a restart with the same (rotated) configuration forgets the outgoing secret
        srv.write_config()
        srv.assert_clean_exit()
        srv.start()
        old_again = Slot(srv.base, len(BODY), secret=SECRET)
        eq(put(old_again.put_url, BODY).status, 403, "old secret refused after a restart")
        s3 = Slot(srv.base, len(BODY), secret=new)
        eq(put(s3.put_url, BODY).status, 201, "new secret after a restart")
        srv.assert_clean_exit()


@test
def sigterm_drains_running_upload():
    with UploadServer() as srv:
        s = srv.slot(1 << 20)
        c = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        c.sendall((f"PUT {s.put_url.split(str(srv.port), 1)[1]} HTTP/1.1\r\nHost: x\r\n"
                   f"Content-Length: {1 << 20}\r\n\r\n").encode())
        body = os.urandom(1 << 20)
        c.sendall(body[:100000])
        time.sleep(0.2)
        srv.signal(signal.SIGTERM)
        time.sleep(0.2)
        c.sendall(body[100000:])
        resp = c.recv(4096)
        c.close()
        assert resp.startswith(b"HTTP/1.1 201"), resp[:100]
        eq(srv.proc.wait(10), 0, "exit code")
        eq(srv.visible_files(), keys(s.path), "drained upload stored")


@test
def access_log_one_line_per_request_without_tokens():
    with UploadServer() as srv:
        s = srv.slot(len(BODY))
        upload_ok(srv, s, BODY)
        curl(s.get_url)
        curl("-I", s.get_url)
        srv.assert_clean_exit()
        lines = open(os.path.join(srv.dir, "access.log")).read().splitlines()
        eq(len(lines), 3, f"log lines {lines}")
        assert '"PUT ' in lines[0] and " 201 " in lines[0], lines[0]
        assert s.token not in "\n".join(lines), "token leaked into the log"


@test
def bad_config_file_one_clear_line():
    cases = {
        "max_size: big": "max_size",
        "hmac_shared_secret: short": "hmac_shared_secret",
        "listen: \"nowhere\"": "listen",
        "no_such_option: 1": "no_such_option",
    }
    import tempfile
    d = tempfile.mkdtemp()
    for opt, key in cases.items():
        path = os.path.join(d, "ejabberd.yml")
        with open(path, "w") as f:
            f.write(f"modules:\n  mod_http_upload_hmac:\n    hmac_shared_secret: \"{SECRET}\"\n"
                    f"    storage_dir: \"{d}/s\"\n    {opt}\n")
        p = subprocess.run([SERVER_BIN, "--config", path], capture_output=True, text=True, timeout=20)
        eq(p.returncode, 1, f"{opt}: exit code")
        lines = p.stderr.strip().splitlines()
        eq(len(lines), 1, f"{opt}: one line: {p.stderr!r}")
        assert key in lines[0], lines[0]
    with open(path, "w") as f:
        f.write("modules: [\n  oops")
    p = subprocess.run([SERVER_BIN, "--check-config", "--config", path], capture_output=True, text=True)
    eq(p.returncode, 1, "syntax error")
    assert "line" in p.stderr, p.stderr
    p = subprocess.run([SERVER_BIN, "--config", d + "/missing.yml"], capture_output=True, text=True)
    eq(p.returncode, 1, "missing file")
    assert "missing.yml" in p.stderr, p.stderr


@test
def full_disk_is_507_and_leaves_nothing():
    """storage_dir on a 2 MiB tmpfs: an upload that does not fit is 507, leaves no file, and
    the server goes on serving. Needs root for the mount."""
    import tempfile
    d = tempfile.mkdtemp(prefix="hu-full-")
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", d], capture_output=True, text=True)
    if m.returncode != 0:  # not root, or no CAP_SYS_ADMIN: say so rather than pretend
        os.rmdir(d)
        raise Skip(f"cannot mount a tmpfs here: {m.stderr.strip()}")
    try:
        with UploadServer(storage_dir=d, ledger_path="none") as srv:
            s = srv.slot(3 << 20, filename="big.bin", ctype="application/octet-stream")
            r = put(s.put_url, os.urandom(3 << 20))
            eq(r.status, 507, "disk full")
            eq(srv.visible_files(), [], "no file")
            eq(srv.partial_files(), [], "no partial file")
            small = srv.slot(1000)
            eq(put(small.put_url, os.urandom(1000)).status, 201, "still serving once there is room")
            srv.assert_clean_exit()
    finally:
        subprocess.run(["umount", d])
        os.rmdir(d)


@test
def help_and_version():
    p = subprocess.run([SERVER_BIN, "--help"], capture_output=True, text=True)
    eq(p.returncode, 0, "help")
    assert "--config" in p.stdout
    p = subprocess.run([SERVER_BIN, "--version"], capture_output=True, text=True)
    assert p.stdout.startswith("hmac-upload-server "), p.stdout


@test
def secret_file_created_on_first_start():
    with UploadServer(hmac_shared_secret=None) as srv:
        path = srv.state_path("secret")  # layout 2: the server's own state lives in state/
        eq(os.path.exists(os.path.join(srv.storage, "secret")), False, "no secret at the top")
        st = os.stat(path)
        eq(oct(st.st_mode & 0o777), oct(0o600), "mode")
        secret = open(path).read().strip()
        eq(len(secret), 64, "64 hex characters")
        s = Slot(srv.base, len(BODY), secret=secret)
        eq(put(s.put_url, BODY).status, 201, "slot signed with the file's secret")
        srv.assert_clean_exit()
    # a second start reuses the file
    with UploadServer(hmac_shared_secret=None) as srv:
        first = open(srv.state_path("secret")).read()
        srv.assert_clean_exit()
        srv.start()
        eq(open(srv.state_path("secret")).read(), first, "same secret after restart")
        srv.assert_clean_exit()


if __name__ == "__main__":
    main()
