#!/usr/bin/python3
"""A 1 GiB upload through curl: completes, stays in bounded memory, and reads back intact
(release binary only: ASan's shadow memory makes RSS meaningless). A PUT's pieces are written
by one job each while a hash job reads back what was written (or, with at least as many
uploads streaming as cores, each piece's job hashes it from memory): the recorded sha256 of
a many-piece upload is right, alone and beside others, and a connection cut while both run
leaves what a cut always leaves."""

import hashlib
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import (VARIANT, UploadServer, curl, eq, legacy_token, main, put,  # noqa: E402
                     sha256_file, test)

GIB = 1 << 30
RSS_LIMIT_KIB = 16 * 1024


def make_file(path, size):
    """Pseudo-random content (not zeros, so nothing can cheat by compression), written fast."""
    block = hashlib.sha256(b"seed").digest() * (1 << 15)  # 1 MiB
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for i in range(size // len(block)):
            chunk = i.to_bytes(8, "little") + block[8:]
            f.write(chunk)
            h.update(chunk)
    return h.hexdigest()


def recorded_sha256(srv, path):
    with sqlite3.connect(srv.ledger_file()) as c:
        row = c.execute("SELECT sha256 FROM files WHERE path = ?", (path,)).fetchone()
    return row[0] if row else None


def target(srv, url):
    return url.split(str(srv.port), 1)[1]


def send_part(srv, url, size, body):
    """A PUT of size bytes that sends body (a part of them) and then hangs up."""
    with socket.create_connection(("127.0.0.1", srv.port)) as c:
        c.sendall(f"PUT {url} HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode())
        for i in range(0, len(body), 100000):
            c.sendall(body[i:i + 100000])
        time.sleep(0.05)


def put_in_bursts(srv, s, body, n=1, split=0, at_split=None, pause=0):
    """A PUT of body in uneven bursts over a raw socket (the burst sizes start at n): pieces
    of every size the connection hands over (the first after the head, full buffers, the
    short last one). After the first split bytes, at_split() is called; the bursts after it
    come pause seconds apart. Returns the response's status line."""
    with socket.create_connection(("127.0.0.1", srv.port)) as c:
        c.sendall(f"PUT {target(srv, s.put_url)} HTTP/1.1\r\nHost: x\r\n"
                  f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
        i = 0
        while i < len(body):
            if i >= split and at_split is not None:
                at_split()
                at_split = None
            if i >= split and pause:
                time.sleep(pause)
            c.sendall(body[i:i + n])
            i += n
            n = n * 7 % 400009 + 1
        got = b""
        while (b := c.recv(65536)):
            got += b
    return got.split(b"\r\n", 1)[0]


def assert_stored(srv, s, body):
    digest = hashlib.sha256(body).hexdigest()
    eq(recorded_sha256(srv, s.path), digest, "recorded sha256")
    eq(sha256_file(srv.published_path(s.path)), digest, "sha256 on disk")
    eq(hashlib.sha256(curl(s.get_url).body).hexdigest(), digest, "GET")


@test
def many_pieces_recorded_with_their_sha256():
    """One upload alone, the body 5 MiB and a bit: its hash job reads back what was written."""
    with UploadServer() as srv:
        body = os.urandom((5 << 20) + 777)
        s = srv.slot(len(body), filename="pieces.bin", ctype="application/octet-stream")
        eq(put_in_bursts(srv, s, body), b"HTTP/1.1 201 Created", "PUT")
        assert_stored(srv, s, body)
        srv.assert_clean_exit()


@test
def side_by_side_uploads_recorded_with_their_sha256():
    """Uploads at once (more than the cores, at least six), bursts of their own sizes: the
    first streams 2 MiB alone (its hash job reads them back), then the others start and all
    stream side by side (each piece hashed by its own job once the hash has caught up: as
    many uploads stream as there are cores), and every recorded sha256 is right."""
    with UploadServer() as srv:
        jobs = []
        for k in range(max(6, len(os.sched_getaffinity(0)) + 2)):
            body = os.urandom((3 << 20) + 1000 * k + 1)
            s = srv.slot(len(body), filename=f"side{k}.bin", ctype="application/octet-stream")
            jobs.append((s, body, {}))
        first_alone = threading.Event()
        together = threading.Barrier(len(jobs), timeout=60)

        def one(k, s, body, out):
            if k > 0:
                first_alone.wait(60)
            split = 2 << 20 if k == 0 else 0
            out["status"] = put_in_bursts(
                srv, s, body, n=1 + 50021 * k, split=split, pause=0.01,
                at_split=lambda: (first_alone.set(), together.wait()))
        threads = [threading.Thread(target=one, args=(k,) + j) for k, j in enumerate(jobs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        for s, body, out in jobs:
            eq(out.get("status"), b"HTTP/1.1 201 Created", "PUT " + s.path)
            assert_stored(srv, s, body)
        srv.assert_clean_exit()


@test
def cut_while_pieces_are_written_and_hashed():
    """Cut after 2.3 MiB of 8 (write and hash jobs running): a legacy upload leaves nothing, a
    Bearer one leaves only its tus partial, and the whole PUT retried is stored with the right
    sha256."""
    with UploadServer(legacy_protocols=["v1"]) as srv:
        size = 8 << 20
        body = os.urandom(size)
        mac = legacy_token(srv.opts["hmac_shared_secret"], "v1", "l/cut.bin", size)
        send_part(srv, f"/upload/l/cut.bin?v={mac}", size, body[:2300000])
        s = srv.slot(size, filename="cut.bin", ctype="application/octet-stream")
        send_part(srv, target(srv, s.put_url), size, body[:2300000])
        time.sleep(0.5)
        eq(srv.visible_files(), [], "no visible file")
        eq(len(srv.partial_files()) > 0, True, "the Bearer upload's partial kept for tus")
        eq(curl(s.get_url).status, 404, "GET after the cut")
        r = put(s.put_url, body, "-H", "Content-Type: application/octet-stream")
        eq(r.status, 201, "retried PUT")
        eq(recorded_sha256(srv, s.path), hashlib.sha256(body).hexdigest(), "recorded sha256")
        eq(srv.partial_files(), [], "nothing left behind after the retry")
        srv.assert_clean_exit()


if VARIANT == "release":
    @test
    def one_gib_upload_bounded_rss_and_sha256():
        with tempfile.TemporaryDirectory() as d, UploadServer(max_size=2 * GIB) as srv:
            src = os.path.join(d, "big.bin")
            digest = make_file(src, GIB)
            s = srv.slot(GIB, filename="big.bin", ctype="application/octet-stream")
            peak = [0]
            done = threading.Event()

            def sample():
                while not done.is_set():
                    peak[0] = max(peak[0], srv.rss_kib())
                    time.sleep(0.05)

            t = threading.Thread(target=sample)
            t.start()
            start = time.monotonic()
            p = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", src,
                                s.put_url], capture_output=True, text=True, timeout=600)
            put_s = time.monotonic() - start
            eq(p.stdout, "201", f"PUT {p.stderr}")
            out = os.path.join(d, "back.bin")
            start = time.monotonic()
            p = subprocess.run(["curl", "-sS", "-o", out, "-w", "%{http_code}", s.get_url],
                               capture_output=True, text=True, timeout=600)
            get_s = time.monotonic() - start
            done.set()
            t.join()
            eq(p.stdout, "200", "GET")
            eq(sha256_file(out), digest, "sha256 of the download")
            eq(sha256_file(srv.published_path(s.path)), digest, "sha256 on disk")
            eq(recorded_sha256(srv, s.path), digest, "recorded sha256")
            hwm = srv.hwm_kib()
            print(f"# 1 GiB: PUT {put_s:.1f}s ({GIB / put_s / 1e6:.0f} MB/s), GET {get_s:.1f}s "
                  f"({GIB / get_s / 1e6:.0f} MB/s), RSS peak sampled {peak[0]} KiB, VmHWM {hwm} KiB")
            assert hwm < RSS_LIMIT_KIB, f"VmHWM {hwm} KiB >= {RSS_LIMIT_KIB} KiB"
            srv.assert_clean_exit()

if __name__ == "__main__":
    main()
