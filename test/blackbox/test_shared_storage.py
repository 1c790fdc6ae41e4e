#!/usr/bin/python3
"""Two upload servers on one storage directory and one ledger (a cluster, a rolling restart):
neither takes the other's work in progress for a crash's leftover. A server that restarts
while the other takes uploads adopts none of them (no 409, no 5xx, every 201 served with its
row); a tus HEAD or PATCH on one server while the other still writes the upload is 423, a PUT
409; a live upload's partial file and state, young metadata records and thumbnails survive the
other's start-up (also without O_TMPFILE and without user xattrs, as on NFS), old ones go; and
the start-up sweeps run only under the ledger's sweep lock."""

import contextlib
import copy
import fcntl
import hashlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import (SERVER_BIN, Skip, UploadServer, curl, eq, main, published_key,  # noqa: E402
                     put, test, wait_for)

MIB = 1 << 20
LONG_AGO = 86400  # s: far older than any server's settle time (maintenance.c)


def pair(storage, binary=None):
    """Servers A and B on one storage directory; the ledger is its state/ledger.sqlite3."""
    a = UploadServer(binary=binary, storage_dir=storage)
    b = UploadServer(binary=binary, storage_dir=storage)
    return a, b


def rows(storage):
    with contextlib.closing(sqlite3.connect(os.path.join(storage, "state", "ledger.sqlite3"))) as c:
        return {p: h for p, h in c.execute("SELECT path, sha256 FROM files")}


def tus_head(slot):
    return curl("-I", "-H", "Tus-Resumable: 1.0.0", slot.put_url)


def tus_patch(slot, offset, data):
    return curl("-X", "PATCH", "-H", "Tus-Resumable: 1.0.0", "-H",
                "Content-Type: application/offset+octet-stream", "-H", f"Upload-Offset: {offset}",
                "--data-binary", "@-", slot.put_url, data=data)


def open_put(srv, slot, first):
    c = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    c.sendall(f"PUT {slot.target()} HTTP/1.1\r\nHost: x\r\nContent-Length: {slot.size}\r\n\r\n"
              .encode() + first)
    return c


def status_of(sock):
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else data


def age(*paths):
    t = time.time() - LONG_AGO
    for p in paths:
        os.utime(p, (t, t))


@contextlib.contextmanager
def cleanup(*servers):
    try:
        yield
    finally:
        for s in servers:
            with contextlib.suppress(AssertionError):
                s.stop(timeout=5)
            shutil.rmtree(s.dir, ignore_errors=True)


# ---- 1. a restart adopts none of the other server's uploads -------------------------------

@test
def restarts_adopt_none_of_the_other_servers_uploads():
    """Server A restarts over and over (its start-up reconciles storage and ledger) while 4
    clients upload to B: every upload is 201 (before the fix A adopted files B had linked but
    not yet recorded, B's commit then failed and the client got 409), every 201 is served by
    both servers with its bytes and has its ledger row, and A adopted nothing."""
    d = tempfile.mkdtemp(prefix="hu-shared-")
    storage = os.path.join(d, "storage")
    a, b = pair(storage)
    b.start()
    a.start()
    results, lock, stop = [], threading.Lock(), threading.Event()

    def client(n):
        i = 0
        while not stop.is_set():
            body = os.urandom(300 + i % 700)
            s = b.slot(len(body), filename=f"c{n}-{i}.bin")
            i += 1
            st = put(s.put_url, body).status
            with lock:
                results.append((s, hashlib.sha256(body).hexdigest(), st))

    with cleanup(a, b):
        threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        restarts, t0 = 0, time.monotonic()
        try:
            while time.monotonic() - t0 < 12:
                a.stop()
                a.start()
                restarts += 1
        finally:
            stop.set()
            for t in threads:
                t.join()
        print(f"# {len(results)} uploads to B while A restarted {restarts} times", flush=True)
        bad = [(s.path, st) for s, _, st in results if st != 201]
        eq(bad[:5], [], f"{len(bad)} of {len(results)} uploads not 201")
        recorded = rows(storage)
        eq([s.path for s, _, _ in results if s.path not in recorded], [], "201 without its row")
        for s, digest, _ in results[::max(1, len(results) // 30)]:
            eq(recorded[s.path], digest, f"row of {s.path}")
            for srv in (a, b):
                g = curl(s.get_url.replace(str(b.port), str(srv.port)))
                eq((g.status, hashlib.sha256(g.body).hexdigest()), (200, digest),
                   f"{s.path} from {'A' if srv is a else 'B'}")
        adopted = [l for l in a.stderr_lines if "adopted" in l and " 0 file(s) without a row" not in l]
        eq(adopted, [], "A adopted none of B's uploads")
        a.assert_clean_exit()
        b.assert_clean_exit()
    shutil.rmtree(d, ignore_errors=True)


# ---- 2. one upload, one writer, whichever server is asked --------------------------------

@test
def a_live_upload_is_busy_on_the_other_server():
    """While A receives an 8 MiB PUT (its partial file named: it is resumable), B answers a tus
    HEAD and PATCH on that slot 423 and a PUT 409, and touches nothing; A's upload then
    completes with its own bytes. Cut, the upload is resumed on B (HEAD 200 at A's offset,
    PATCH 204) and served with the client's bytes by both."""
    d = tempfile.mkdtemp(prefix="hu-shared-")
    storage = os.path.join(d, "storage")
    a, b = pair(storage)
    a.start()
    b.start()
    with cleanup(a, b):
        size = 8 * MIB
        body = os.urandom(size)
        s = a.slot(size, filename="v.mp4", ctype="video/mp4")
        on_b = copy.copy(s).rebase(b.base)
        c = open_put(a, s, body[:3 * MIB])
        key = published_key(s.path)
        partial = os.path.join(storage, "state", "partial", key)
        wait_for(lambda: os.path.exists(partial) and os.path.getsize(partial) >= 2 * MIB,
                 what="A's partial file")
        eq(tus_head(s).status, 423, "HEAD on A (the writer)")
        eq(tus_head(on_b).status, 423, "HEAD on B while A writes")
        eq(tus_patch(on_b, os.path.getsize(partial), b"x" * 10).status, 423, "PATCH on B")
        eq(put(on_b.put_url, os.urandom(size)).status, 409, "PUT on B")
        assert os.path.exists(partial), "B left A's partial file alone"
        c.sendall(body[3 * MIB:])
        eq(status_of(c), 201, "A's PUT")
        c.close()
        for url in (s.get_url, on_b.get_url):
            g = curl(url)
            eq((g.status, hashlib.sha256(g.body).hexdigest()), (200, hashlib.sha256(body).hexdigest()),
               f"GET {url}")
        # a cut upload is not busy: resumed on the other server
        t = a.slot(size, filename="w.mp4", ctype="video/mp4")
        c = open_put(a, t, body[:3 * MIB])
        tpart = os.path.join(storage, "state", "partial", published_key(t.path))
        wait_for(lambda: os.path.exists(tpart) and os.path.getsize(tpart) >= 2 * MIB,
                 what="A's partial file")
        c.close()
        t.rebase(b.base)
        h = wait_for(lambda: (r := tus_head(t)).status == 200 and r, what="HEAD 200 on B once cut")
        off = int(h.header("upload-offset"))
        eq(tus_patch(t, off, body[off:]).status, 204, "PATCH on B")
        g = curl(t.get_url.replace(str(b.port), str(a.port)))
        eq((g.status, g.body == body), (200, True), "resumed upload served by A")
        a.assert_clean_exit()
        b.assert_clean_exit()
    shutil.rmtree(d, ignore_errors=True)


# ---- 3. start-up sweeps leave the other server's work alone --------------------------------

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
/* a file system without O_TMPFILE (NFS): every upload in progress is a named partial */
static int pass(const char *fn, int dirfd, const char *path, int flags, va_list ap) {
    int (*real)(int, const char *, int, ...) = (int (*)(int, const char *, int, ...))dlsym(RTLD_NEXT, fn);
    if ((flags & O_TMPFILE) == O_TMPFILE) {
        errno = EOPNOTSUPP;
        return -1;
    }
    return real(dirfd, path, flags, (flags & O_CREAT) ? va_arg(ap, int) : 0);
}
int openat(int dirfd, const char *path, int flags, ...) {
    va_list ap; va_start(ap, flags); int rc = pass("openat", dirfd, path, flags, ap); va_end(ap); return rc;
}
int openat64(int dirfd, const char *path, int flags, ...) {
    va_list ap; va_start(ap, flags); int rc = pass("openat64", dirfd, path, flags, ap); va_end(ap); return rc;
}
"""


def no_tmpfile_binary(d):
    """The server binary behind an LD_PRELOAD shim that refuses O_TMPFILE (exec keeps the pid)."""
    src, so, wrapper = (os.path.join(d, n) for n in ("shim.c", "shim.so", "server"))
    with open(src, "w") as f:
        f.write(SHIM)
    r = subprocess.run(["cc", "-shared", "-fPIC", "-o", so, src, "-ldl"], capture_output=True, text=True)
    if r.returncode != 0:
        raise Skip(f"cannot build the O_TMPFILE shim: {r.stderr}")
    asan = os.environ.get("ASAN_OPTIONS", "")
    with open(wrapper, "w") as f:
        f.write(f"#!/bin/sh\nLD_PRELOAD={so} ASAN_OPTIONS='{asan}{':' if asan else ''}"
                f"verify_asan_link_order=0' exec {SERVER_BIN} \"$@\"\n")
    os.chmod(wrapper, 0o755)
    return wrapper


@contextlib.contextmanager
def ramfs_or_dir():
    """A ramfs mount (no user xattrs: records and resumption state in sidecar files), or a plain
    directory where this machine cannot mount one."""
    d = tempfile.mkdtemp(prefix="hu-shared-")
    mounted = subprocess.run(["mount", "-t", "ramfs", "ramfs", d], capture_output=True).returncode == 0
    try:
        yield d, mounted
    finally:
        if mounted:
            subprocess.run(["umount", d], capture_output=True)
            if subprocess.run(["mountpoint", "-q", d]).returncode == 0:
                subprocess.run(["umount", "-l", d], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


@test
def a_live_upload_survives_the_other_servers_start_up_without_tmpfile_or_xattrs():
    """As on NFS (no O_TMPFILE; no user xattrs where ramfs can be mounted): while A receives a
    PUT too large to be taken whole (over the 512 KiB read buffer) and too small to save its
    resumption state up front (under 1 MiB), its named partial file has no state yet. B starting on the same
    storage leaves it alone (before the fix B removed it as an orphan and A's publish failed);
    A's upload completes 201 and both servers serve it."""
    tools = tempfile.mkdtemp(prefix="hu-shim-")
    try:
        binary = no_tmpfile_binary(tools)
        with ramfs_or_dir() as (d, mounted):
            print(f"# storage on {'ramfs (no user xattrs)' if mounted else 'a plain directory'}",
                  flush=True)
            storage = os.path.join(d, "storage")
            a, b = pair(storage, binary)
            a.start()
            with cleanup(a, b):
                body = os.urandom(700 * 1024)
                s = a.slot(len(body), filename="small.jpg")
                c = open_put(a, s, body[:350 * 1024])
                partial = os.path.join(storage, "state", "partial", published_key(s.path))
                wait_for(lambda: os.path.exists(partial) and os.path.getsize(partial) > 0,
                         what="A's named partial file")
                eq(sorted(os.listdir(os.path.dirname(partial))), [os.path.basename(partial)],
                   "a named partial without resumption state")
                b.start()
                assert os.path.exists(partial), f"B's start-up removed A's live upload: {b.stderr_lines}"
                c.sendall(body[350 * 1024:])
                eq(status_of(c), 201, "A's PUT")
                c.close()
                for srv in (a, b):
                    g = curl(s.get_url.replace(str(a.port), str(srv.port)))
                    eq((g.status, g.body == body), (200, True), f"served by {srv.port}")
                eq(os.listdir(os.path.dirname(partial)), [], "state/partial empty")
                a.assert_clean_exit()
                b.assert_clean_exit()
    finally:
        shutil.rmtree(tools, ignore_errors=True)


def plant(storage):
    """What a server leaves while it works, as files of ours: a partial without resumption
    state, a resumption state being written, the state of a partial gone, a metadata record
    (and a half-written one) whose file is not linked yet, a thumbnail without its file."""
    k = [published_key(f"planted/{i}") for i in range(6)]
    st = os.path.join(storage, "state")
    paths = [os.path.join(st, "partial", k[0]), os.path.join(st, "partial", k[1] + ".tus.tmp"),
             os.path.join(st, "partial", k[2] + ".tus"), os.path.join(st, "meta", k[3]),
             os.path.join(st, "meta", k[4] + ".tmp"), os.path.join(st, "thumbs", k[5])]
    for p in paths:
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(os.urandom(100))
    return paths


@test
def start_up_sweeps_take_only_old_entries_and_only_under_the_sweep_lock():
    """Entries a server is working on, just written, survive another server's start-up; the
    same entries aged a day are a crash's leftovers and go at the next start-up -- but not
    while another server holds the ledger's sweep lock (it does the checks)."""
    d = tempfile.mkdtemp(prefix="hu-shared-")
    storage = os.path.join(d, "storage")
    a, b = pair(storage)
    a.start()
    with cleanup(a, b):
        young = plant(storage)
        b.start()
        eq([p for p in young if not os.path.exists(p)], [], "young entries kept at B's start-up")
        b.stop()
        age(*young)
        with open(os.path.join(storage, "state", "ledger.sqlite3.sweep"), "a+") as held:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a server checking right now
            b.start()
            eq([p for p in young if not os.path.exists(p)], [],
               "old entries kept while another holds the sweep lock")
            assert any("skipped" in l for l in b.stderr_lines), b.stderr_lines
            b.stop()
        b.start()
        eq([p for p in young if os.path.exists(p)], [], "old entries removed at start-up")
        a.assert_clean_exit()
        b.assert_clean_exit()
    shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
