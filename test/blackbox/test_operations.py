#!/usr/bin/python3
"""Operations: Prometheus metrics on their own listener (values checked after real uploads and
downloads, the text checked by promtool where Debian's prometheus package is installed), and
per-IP and per-user rate limits answering 429 with Retry-After."""

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import UploadServer, curl, eq, main, put, test  # noqa: E402


def wait_metrics_port(srv, timeout=5):
    deadline = time.monotonic() + timeout
    while srv.metrics_port is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.metrics_port, srv.stderr_lines
    return srv.metrics_port


def scrape(srv):
    r = curl(f"http://127.0.0.1:{wait_metrics_port(srv)}/metrics")
    eq(r.status, 200, "GET /metrics")
    eq(r.header("content-type"), "text/plain; version=0.0.4; charset=utf-8", "content type")
    return r.body.decode()


def value(text, name, labels=""):
    """The sample `name{labels} value` (labels as they are written), as a float."""
    m = re.search(r"^" + re.escape(name + (("{" + labels + "}") if labels else "")) + r" (\S+)$",
                  text, re.M)
    assert m, f"no sample {name}{{{labels}}} in:\n{text[:3000]}"
    return float(m.group(1))


@test
def metrics_count_what_happened():
    with UploadServer(metrics_listen="127.0.0.1:0") as srv:
        bodies = [os.urandom(1000), os.urandom(250000)]
        slots = []
        for b in bodies:
            s = srv.slot(len(b), filename="m.bin", ctype="application/octet-stream")
            eq(put(s.put_url, b).status, 201, "PUT")
            slots.append(s)
        eq(curl(slots[1].get_url).body, bodies[1], "GET")
        eq(curl(f"{srv.base}/nothing/here.bin").status, 404, "a 404")
        eq(put(slots[0].put_url, bodies[0]).status, 409, "a 409")
        text = scrape(srv)
        eq(value(text, "hmac_upload_uploads_total", 'scheme="bearer"'), 2, "uploads")
        eq(value(text, "hmac_upload_uploads_total", 'scheme="v1"'), 0, "v1 exported at 0")
        # received: the 409's small body too (taken whole before the slot is checked)
        eq(value(text, "hmac_upload_upload_bytes_total"), sum(map(len, bodies)) + len(bodies[0]),
           "upload bytes")
        eq(value(text, "hmac_upload_download_bytes_total"), len(bodies[1]), "download bytes")
        eq(value(text, "hmac_upload_requests_total", 'method="PUT",status="201"'), 2, "201s")
        eq(value(text, "hmac_upload_requests_total", 'method="PUT",status="409"'), 1, "409s")
        eq(value(text, "hmac_upload_requests_total", 'method="GET",status="200"'), 1, "200s")
        eq(value(text, "hmac_upload_requests_total", 'method="GET",status="404"'), 1, "404s")
        eq(value(text, "hmac_upload_upload_size_bytes_count"), 2, "size histogram")
        eq(value(text, "hmac_upload_upload_size_bytes_sum"), sum(map(len, bodies)), "size sum")
        eq(value(text, "hmac_upload_ledger_commit_seconds_count"), 2, "ledger commits timed")
        eq(value(text, "hmac_upload_fsync_seconds_count"), 2, "publishes timed")
        eq(value(text, "hmac_upload_request_duration_seconds_count", 'method="PUT"'), 3, "PUT durations")
        assert value(text, "hmac_upload_connections_total") >= 5, text
        assert value(text, "process_start_time_seconds") > time.time() - 120, text
        # the scrape itself is the only connection open now (curl's closed)
        eq(value(text, "hmac_upload_connections"), 1, "open connections")
        if shutil.which("promtool"):
            p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                               capture_output=True)
            eq(p.returncode, 0, f"promtool: {p.stdout.decode()} {p.stderr.decode()}")
        else:
            print("# promtool not installed: text format checked by value only")
        # only GET/HEAD /metrics there; the upload listener does not answer /metrics
        eq(curl("-X", "POST", f"http://127.0.0.1:{srv.metrics_port}/metrics").status, 405, "POST")
        eq(curl(f"http://127.0.0.1:{srv.metrics_port}/upload/x/y").status, 404, "other paths")
        eq(curl(f"http://127.0.0.1:{srv.port}/metrics").status, 404, "not on the upload port")
        srv.assert_clean_exit()


@test
def per_ip_rate_limit_answers_429_with_retry_after():
    with UploadServer(rate_limit_per_ip=2, metrics_listen="127.0.0.1:0") as srv:
        statuses = [curl(f"{srv.base}/none/{i}.bin").status for i in range(6)]
        eq(statuses[:4], [404] * 4, "a burst of twice the rate")
        assert 429 in statuses[4:], statuses
        r = curl(f"{srv.base}/none/x.bin")
        eq(r.status, 429, "still limited")
        retry = int(r.header("retry-after"))
        assert 1 <= retry <= 2, r.headers
        time.sleep(retry)
        eq(curl(f"{srv.base}/none/y.bin").status, 404, "allowed again after Retry-After")
        assert value(scrape(srv), "hmac_upload_rate_limited_total", 'by="ip"') >= 2
        srv.assert_clean_exit()


@test
def per_user_rate_limit_counts_puts_by_uploader():
    with UploadServer(rate_limit_per_user=1) as srv:
        body = os.urandom(20000)
        got = []
        for i in range(3):
            s = srv.slot(len(body), filename=f"u{i}.bin", user="alice@localhost")
            got.append(put(s.put_url, body))
        eq([r.status for r in got], [201, 201, 429], "two PUTs (burst 2), then 429")
        assert int(got[2].header("retry-after")) >= 1, got[2].headers
        other = srv.slot(len(body), filename="o.bin", user="bob@localhost")
        eq(put(other.put_url, body).status, 201, "another user is not limited")
        # a client that sends its whole body before reading still sees the 429
        s = srv.slot(len(body), filename="raw.bin", user="alice@localhost")
        target = s.put_url.split(str(srv.port), 1)[1]
        with socket.create_connection(("127.0.0.1", srv.port)) as c:
            c.sendall(f"PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                      + body)
            eq(c.recv(100).split(b"\r\n")[0], b"HTTP/1.1 429 Too Many Requests", "429 to a raw client")
        eq(len(srv.visible_files()), 3, "stored: the two allowed PUTs and bob's")
        srv.assert_clean_exit()


if __name__ == "__main__":
    main()
