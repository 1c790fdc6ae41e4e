#!/usr/bin/python3
"""Issue 9: the server as an attacker and a new operator find it. Storage layout 2 (published
uploads under files/<k0k1>/<sha256(P)>, the server's own state under state/), the one-time
migration of layout 1, and the defects of the security review: internal files unreachable
through any encoding, foreign and custom-named files inside storage_dir left alone, the
status of a refused PUT reaching a client that is still sending, memory per slow reader,
507 on a full disk (SQLite included), no temp file surviving a crash, no comma in a content
type, CORS with and without Origin, and every name a peer can sign.
Every server binds 127.0.0.1 on port 0 and is stopped by its PID; mounts are undone in finally."""

import contextlib
import fcntl
import hashlib
import json
import os
import resource
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import termios
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import (SECRET, VARIANT, Skip, Slot, UploadServer, curl, eq, http,  # noqa: E402
                     keys, legacy_token, main, pct, published_key, put, test, wait_for)

BODY = os.urandom(3000)
MIB = 1 << 20


# ---- helpers -------------------------------------------------------------------------------

def put_target(srv, target, body, *headers):
    """PUT with the request-target sent as is (curl would normalise dots and backslashes)."""
    return http(srv.port, "PUT", target, headers, body)


def open_put(srv, target, length, first=b"", extra="", method="PUT"):
    """Starts a PUT (or PATCH): head and the first bytes of the body; returns the socket."""
    c = socket.create_connection(("127.0.0.1", srv.port), timeout=20)
    c.sendall((f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n{extra}\r\n").encode()
              + first)
    return c


def unsent(sock):
    """Bytes this socket has sent that the peer's kernel has not acknowledged yet."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]


def readable(sock):
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


def read_head(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def tus_head(slot):
    return curl("-I", "-H", "Tus-Resumable: 1.0.0", slot.put_url)


def tus_patch(slot, offset, data):
    return curl("-X", "PATCH", "-H", "Tus-Resumable: 1.0.0", "-H",
                "Content-Type: application/offset+octet-stream", "-H", f"Upload-Offset: {offset}",
                "--data-binary", "@-", slot.put_url, data=data)


def tree(top):
    """Every file under top (relative paths), for failure messages."""
    return sorted(os.path.relpath(os.path.join(d, f), top) for d, _, fs in os.walk(top) for f in fs)


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def write_file(path, data, mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    if mode is not None:
        os.chmod(path, mode)


def age(*paths):
    """Back-dates paths by a day: leftovers of a crash or of an older layout, not the work in
    progress of another server sharing the storage, which start-up checks leave alone while
    it is young (maintenance.c: well past idle and ledger timeouts)."""
    t = time.time() - 86400
    for p in paths:
        os.utime(p, (t, t))


def cut_bearer_upload(srv, slot, body, upto):
    """A Bearer PUT cut after upto bytes; returns once the server keeps the bytes for tus
    (its HEAD answers an offset)."""
    c = open_put(srv, slot.target(), len(body), body[:upto])
    wait_for(lambda: unsent(c) == 0, what="the cut body to reach the server")
    before = set(srv.open_storage_files())
    # the server has written what it got (or at least opened the file) before the cut
    with contextlib.suppress(AssertionError):
        wait_for(lambda: any(v[1] > 0 for k, v in srv.open_storage_files().items() if k not in before)
                 or srv.partial_files(), timeout=3, what="a partial file")
    c.close()
    return wait_for(lambda: tus_offset(slot), timeout=10, what="the cut upload to be kept for tus")


def tus_offset(slot):
    h = tus_head(slot)
    if h.status == 200 and h.header("upload-offset") and int(h.header("upload-offset")) > 0:
        return int(h.header("upload-offset"))
    return None


@contextlib.contextmanager
def mounted(fstype, options=None):
    """A private mount (tmpfs, ramfs) on a fresh directory, unmounted in finally; Skip when this
    machine cannot mount (not root)."""
    d = tempfile.mkdtemp(prefix=f"hu-{fstype}-")
    cmd = ["mount", "-t", fstype] + (["-o", options] if options else []) + [fstype, d]
    m = subprocess.run(cmd, capture_output=True, text=True)
    if m.returncode != 0:
        os.rmdir(d)
        raise Skip(f"cannot mount a {fstype} here: {m.stderr.strip()}")
    try:
        yield d
    finally:
        subprocess.run(["umount", d], capture_output=True)
        if subprocess.run(["mountpoint", "-q", d]).returncode == 0:
            subprocess.run(["umount", "-l", d], capture_output=True)
        with contextlib.suppress(OSError):
            os.rmdir(d)


# ---- a layout-1 storage_dir, built by hand as today's main (6051d86) leaves it --------------

SCHEMA_V1 = """
CREATE TABLE files(path TEXT PRIMARY KEY, user TEXT, size INTEGER NOT NULL, content_type TEXT,
  sha256 TEXT, created INTEGER NOT NULL, expires INTEGER NOT NULL DEFAULT 0, source_ip TEXT,
  scheme TEXT);
CREATE INDEX files_user ON files(user);
CREATE INDEX files_expires ON files(expires) WHERE expires > 0;
CREATE TABLE reservations(path TEXT PRIMARY KEY, user TEXT NOT NULL, size INTEGER NOT NULL,
  expires INTEGER NOT NULL);
CREATE INDEX reservations_user ON reservations(user);
CREATE TABLE quotas(user TEXT PRIMARY KEY, quota INTEGER NOT NULL);
CREATE TABLE audit(id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, event TEXT NOT NULL,
  user TEXT, path TEXT, size INTEGER NOT NULL DEFAULT 0, detail TEXT);
PRAGMA user_version = 1;
"""


def meta_v1(ctype, user, size, sha="", scheme="bearer", uploaded=None, expires=0):
    """The layout-1 text record (.meta/<key> of a published file, .partial/<key>.tus)."""
    return (f"type={ctype}\nuser={user}\nsha256={sha}\nscheme={scheme}\n"
            f"uploaded={int(time.time()) if uploaded is None else uploaded}\nsize={size}\n"
            f"expires={expires}\n").encode()


class Layout1:
    """storage_dir as layout 1 has it: uploads at <storage>/<P> with .meta/<sha256(P)>, a
    legacy default secret and ledger at the top, and an operator's own files beside them."""

    def __init__(self, storage, with_ledger=True, with_partials=False):
        self.storage = storage
        os.makedirs(storage, exist_ok=True)
        self.secret = hashlib.sha256(os.urandom(16)).hexdigest()        # as the server made it
        write_file(os.path.join(storage, "secret"), (self.secret + "\n").encode(), 0o600)
        # an upload with its .meta record: migrated, served with the recorded type
        self.p1 = f"{uuid.uuid4()}/scan 2024.dat"
        self.b1 = os.urandom(5000)
        self.t1 = "application/pdf"   # not what the extension says: only the record knows it
        write_file(os.path.join(storage, self.p1), self.b1)
        write_file(os.path.join(storage, ".meta", published_key(self.p1)),
                   meta_v1(self.t1, "alice@localhost", len(self.b1),
                           hashlib.sha256(self.b1).hexdigest()))
        # a slot-like tree without .meta and without a ledger row: not ours, left alone
        self.p2 = f"{uuid.uuid4()}/not-ours.jpg"
        self.b2 = os.urandom(4000)
        write_file(os.path.join(storage, self.p2), self.b2)
        # an operator's notes and an old mod_http_upload docroot
        self.foreign = {"README-ops.txt": b"backups run at 03:00; do not touch\n",
                        "docroot/abc/def/photo.jpg": os.urandom(7000)}
        for rel, data in self.foreign.items():
            write_file(os.path.join(storage, rel), data)
        self.ledger = os.path.join(storage, "ledger.sqlite3")
        self.p3 = None
        if with_ledger:
            # an upload known to the ledger only (its .meta lost): migrated as well
            self.p3 = f"{uuid.uuid4()}/clip.png"
            self.b3 = os.urandom(6000)
            write_file(os.path.join(storage, self.p3), self.b3)
            db = sqlite3.connect(self.ledger)
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA_V1)
            db.execute("INSERT INTO files(path, user, size, content_type, sha256, created, expires,"
                       " source_ip, scheme) VALUES(?, ?, ?, ?, ?, ?, 0, '127.0.0.1', 'bearer')",
                       (self.p3, "bob@localhost", len(self.b3), "image/png",
                        hashlib.sha256(self.b3).hexdigest(), int(time.time()) - 100))
            db.commit()
            db.close()
        # made before the upgrade, so the start-up check adopts the one without a row
        age(*(os.path.join(storage, p) for p in (self.p1, self.p2, self.p3) if p))
        self.partial = None
        if with_partials:
            self.make_partials()

    def make_partials(self):
        """.partial as a crash leaves it: a resumable cut Bearer upload (<key> + <key>.tus),
        and temp files of ours: <key>.meta, <key>.tus.tmp, an orphan <key> without state."""
        part = os.path.join(self.storage, ".partial")
        self.resume_size = 2 * MIB
        self.resume_expires = int(time.time()) + 3600
        self.resume_slot_args = dict(filename="movie.bin", ctype="video/mp4",
                                     expires=self.resume_expires, secret=self.secret)
        self.resume_body = os.urandom(self.resume_size)
        self.resume_kept = 700000
        self.resume_slot = Slot("http://127.0.0.1:1/upload", self.resume_size, **self.resume_slot_args)
        k = published_key(self.resume_slot.path)
        write_file(os.path.join(part, k), self.resume_body[:self.resume_kept])
        write_file(os.path.join(part, k + ".tus"),
                   meta_v1("video/mp4", "alice@localhost", self.resume_size,
                           expires=self.resume_expires))
        self.strays = [published_key("stray/a") + ".meta", published_key("stray/b") + ".tus.tmp",
                       published_key("stray/c")]
        write_file(os.path.join(part, self.strays[0]), meta_v1("image/png", "", 10))
        write_file(os.path.join(part, self.strays[1]), meta_v1("image/png", "a@b", 10, expires=1))
        write_file(os.path.join(part, self.strays[2]), os.urandom(1000))
        self.partial = k


# Percent-encoded and otherwise disguised forms of a path relative to the base URL.
def disguises(rel):
    segs = rel.split("/")
    name = segs[-1]
    out = [
        rel,
        rel.replace(".", "%2e"), rel.replace(".", "%2E"),
        rel.replace("/", "%2f"), rel.replace("/", "%2F"),
        rel.replace("/", "%5c"), rel.replace("/", "%5C"), rel.replace("/", "\\"),
        rel.replace(".", "%252e"), rel.replace("/", "%252f"), rel.replace("/", "%255c"),
        "".join(f"%{b:02x}" for b in rel.encode()),
        "".join(f"%{b:02X}" for b in rel.encode()),
        "/".join("".join(f"%{b:02x}" for b in s.encode()) for s in segs),
        rel.upper(), rel.swapcase(), rel[:1].upper() + rel[1:],
        rel + "/", rel + "/.", rel + "%2f", rel + "//", rel + "/%2e",
        rel + ";", rel + ";x=1", rel + "%3b", rel.replace("/", ";/", 1), ";/" + rel,
        "./" + rel, "%2e/" + rel, "/" + rel, "//" + rel,
        "x/../" + rel, "x/%2e%2e/" + rel, "x/%2E%2E/" + rel, "x/%252e%252e/" + rel,
        "x/.%2e/" + rel, "x/%2e./" + rel, "x/..%2f" + rel, "x%2f..%2f" + rel,
        "x\\..\\" + rel.replace("/", "\\"), "x/%5c..%5c" + rel.replace("/", "%5c"),
        "x/..\\" + rel, f"{uuid.uuid4()}/../" + rel,
        "../storage/" + rel, "%2e%2e/storage/" + rel, "..%2fstorage%2f" + rel,
        rel + "%00", rel + "%00.jpg", rel + "?", rel + "?x=1", rel + "%3f", rel + "#x", rel + "%23",
        rel + " ", rel + "%20", rel + "%09", rel + ".", rel + "~", rel + "::$DATA",
    ]
    if len(segs) > 1:
        out += ["/".join(segs[:-1]) + "/./" + name, "/".join(segs[:-1]) + "//" + name,
                "/".join(segs[:-1]) + "/x/../" + name, "/".join(segs[:-1]) + "/%2e/" + name]
    return list(dict.fromkeys(out))


def probe_internal(srv, rels, storage=None, secret=None):
    """GET and HEAD of every disguise of every rel under the base path, and of a few outside
    it; returns the list of failures (anything but 400/404, or a body with internal bytes)."""
    storage = storage or srv.storage
    real = os.path.realpath(storage)
    bad = []
    count = 0
    markers = [b"SQLite format 3"]
    if secret:
        markers.append(secret.encode())
    for rel in rels:
        targets = [f"/upload/{d}" for d in disguises(rel)]
        targets += [f"/{rel}", f"/upload/{real}/{rel}", f"/upload/{real.lstrip('/')}/{rel}",
                    f"/upload//{real.lstrip('/')}/{rel}", f"/UPLOAD/{rel}", f"/upload%2f{rel}",
                    f"/upload/../upload/{rel}", f"/upload/..%2fupload%2f{rel}"]
        for t in targets:
            for method in ("GET", "HEAD"):
                count += 1
                try:
                    r = http(srv.port, method, t.encode("utf-8"), timeout=5)
                except OSError as e:
                    bad.append((method, t, f"error {e}"))
                    continue
                leaked = [m for m in markers if m in r.body]
                if r.status not in (400, 404) or leaked:
                    bad.append((rel, method, t, r.status, r.body[:24]))
    print(f"# {count} GET/HEAD probes of {len(rels)} internal paths, {len(bad)} answered", flush=True)
    return bad


def probe_report(bad):
    """Which internal paths answered (and how often), then the first probes themselves."""
    by_rel = {}
    for b in bad:
        by_rel[b[0]] = by_rel.get(b[0], 0) + 1
    return (f"{len(bad)} probes answered, for {by_rel}; e.g.\n"
            + "\n".join(repr(b[1:]) for b in bad[:30]))


def internal_files(storage, published=()):
    """Every regular file under storage_dir except the published uploads' URL paths of
    layout 1 (layout 2 has none: there every file is internal by path)."""
    out = []
    for d, _, files in os.walk(storage):
        for f in files:
            rel = os.path.relpath(os.path.join(d, f), storage)
            if rel not in published:
                out.append(rel)
    return sorted(out)


# ---- a. internal files are unreachable ----------------------------------------------------

@test
def internal_files_unreachable_through_any_encoding():
    """Default secret (state/secret), the ledger and its -wal/-shm, an access log inside
    storage_dir, state/partial/<key> of an upload in progress and of a cut one, files/<xx>/<key>
    of a published upload: GET and HEAD through every disguise are 404 or 400, never 200."""
    srv = UploadServer(hmac_shared_secret=None)
    srv.opts["access_log"] = os.path.join(srv.storage, "http-access.log")
    with srv:
        secret_file = srv.state_path("secret")
        if not os.path.exists(secret_file):  # layout 1 (today's main) kept it at the top
            secret_file = os.path.join(srv.storage, "secret")
        secret = read_bytes(secret_file).decode().strip()
        done = srv.slot(len(BODY), secret=secret)
        eq(put(done.put_url, BODY).status, 201, "a published upload")
        eq(curl(done.get_url).body, BODY, "served at its URL")
        cut = srv.slot(2 * MIB, filename="cut.bin", secret=secret)
        cut_body = os.urandom(2 * MIB)
        cut_bearer_upload(srv, cut, cut_body, 1200000)
        running = srv.slot(4 * MIB, filename="running.bin", secret=secret)
        c = open_put(srv, running.target(), 4 * MIB, os.urandom(1500000))
        try:
            key = published_key(running.path)
            wait_for(lambda: any(os.path.exists(os.path.join(p, key)) for p in
                                 (srv.state_path("partial"), os.path.join(srv.storage, ".partial"))),
                     what="the running upload's partial file")
            rels = internal_files(srv.storage, published=(done.path,))
            for must in ("state/secret", "state/ledger.sqlite3", "state/ledger.sqlite3-wal",
                         "state/ledger.sqlite3-shm", "http-access.log", f"state/partial/{key}",
                         f"state/partial/{published_key(cut.path)}"):
                if os.path.exists(srv.storage + "/state"):
                    assert must in rels, f"{must} expected on disk: {rels}"
            k = published_key(done.path)
            rels += [f"files/{k[:2]}/{k}", f"files/{k}", "secret", "ledger.sqlite3",
                     f".partial/{key}", f".meta/{k}", f"state/meta/{k}", "state/layout", "state",
                     "state/partial", "files"]
            bad = probe_internal(srv, sorted(set(rels)), secret=secret)
            assert not bad, probe_report(bad)
            # the published upload itself is still served, and only at its URL
            eq(curl(done.get_url).body, BODY, "published upload still served")
        finally:
            c.close()
        eq(read_bytes(secret_file).decode().strip(), secret, "secret unchanged")
        srv.assert_clean_exit()


@test
def internal_files_unreachable_after_layout1_migration():
    """The same probes on a storage_dir migrated from layout 1: the legacy secret and ledger
    (still at the top), the .meta records, the migrated file by its on-disk name, the foreign
    files left in place, state/layout."""
    srv = UploadServer(hmac_shared_secret=None)
    old = Layout1(srv.storage, with_partials=True)
    srv.opts["access_log"] = os.path.join(srv.storage, "logs", "access.log")
    os.makedirs(os.path.join(srv.storage, "logs"))
    with srv:
        eq(curl(f"{srv.base}/{pct_path(old.p1)}").body, old.b1, "migrated upload served")
        # the migrated uploads' own URLs are theirs to serve (layout 1 had them at these paths)
        rels = internal_files(srv.storage, published=(old.p1, old.p3))
        k1, k3 = published_key(old.p1), published_key(old.p3)
        rels += ["secret", "ledger.sqlite3", "ledger.sqlite3-wal", "ledger.sqlite3-shm",
                 f".meta/{k1}", f".meta/{k3}", f".partial/{old.partial}",
                 f".partial/{old.partial}.tus", f"files/{k1[:2]}/{k1}", f"files/{k3[:2]}/{k3}",
                 f"state/meta/{k1}", f"state/partial/{old.partial}", "state/layout", old.p2,
                 "README-ops.txt", "docroot/abc/def/photo.jpg", "logs/access.log"]
        bad = probe_internal(srv, sorted(set(rels)), secret=old.secret)
        assert not bad, probe_report(bad)
        srv.assert_clean_exit()


def pct_path(p):
    return "/".join(pct(s) for s in p.split("/"))


# ---- b. custom-named secret, ledger and access log inside storage_dir ---------------------

def ledger_paths(db_path):
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        return sorted(r[0] for r in db.execute("SELECT path FROM files"))


@test
def custom_secret_ledger_and_log_inside_storage_survive():
    """hmac_shared_secret_file storage/my.key, ledger_path storage/db/uploads.db and
    access_log storage/http.log survive the first start, a restart and a SIGHUP: the key's
    bytes identical (slots signed with it keep working), the ledger keeps its rows, the log
    keeps its lines."""
    srv = UploadServer(hmac_shared_secret=None)
    st = srv.storage
    key_file, db_file, log_file = (os.path.join(st, "my.key"), os.path.join(st, "db", "uploads.db"),
                                   os.path.join(st, "http.log"))
    secret = "operator-chosen-secret-" + uuid.uuid4().hex
    write_file(key_file, (secret + "\n").encode(), 0o600)
    os.makedirs(os.path.dirname(db_file))
    key_bytes = read_bytes(key_file)
    srv.opts.update(hmac_shared_secret_file=key_file, ledger_path=db_file, access_log=log_file)
    uploaded = []
    log_before = [b""]

    def check(stage):
        eq(read_bytes(key_file), key_bytes, f"{stage}: my.key bytes")
        eq(oct(os.stat(key_file).st_mode & 0o777), oct(0o600), f"{stage}: my.key mode")
        assert os.path.isfile(db_file), f"{stage}: ledger gone"
        eq(ledger_paths(db_file), sorted(uploaded), f"{stage}: ledger rows")
        assert os.path.isfile(log_file), f"{stage}: access log gone"
        # a request's line is written after its response went out: wait for it
        wait_for(lambda: read_bytes(log_file).count(b"\n") >= len(uploaded), 5,
                 f"{stage}: an access log line per upload")
        log = read_bytes(log_file)
        assert log.startswith(log_before[0]), f"{stage}: access log lost lines"
        log_before[0] = log
        for p in uploaded:
            g = curl(f"{srv.base}/{pct_path(p)}")
            eq(g.status, 200, f"{stage}: GET {p}")

    def upload(stage):
        s = srv.slot(len(BODY), filename=f"{stage}.jpg", secret=secret)
        r = put(s.put_url, BODY)
        eq(r.status, 201, f"{stage}: slot signed with my.key")
        uploaded.append(s.path)

    with srv:
        upload("first")
        check("first start")
        srv.assert_clean_exit()
        srv.start()
        check("restart")
        upload("restart")
        check("after an upload")
        mark = len(srv.stderr_lines)
        srv.signal(signal.SIGHUP)
        srv.wait_stderr("reloaded", start=mark)
        upload("sighup")
        check("SIGHUP")
        srv.assert_clean_exit()
        check_files = [key_file, db_file, log_file]
        for f in check_files:
            assert os.path.isfile(f), f"{f} gone after the stop"
        eq(read_bytes(key_file), key_bytes, "my.key after the stop")
        eq(ledger_paths(db_file), sorted(uploaded), "ledger rows after the stop")


@test
def created_custom_secret_inside_storage_survives_restart():
    """A custom hmac_shared_secret_file inside storage_dir that the server creates on the first
    start is the same after a restart and a SIGHUP (a new random one would break every token)."""
    srv = UploadServer(hmac_shared_secret=None)
    key_file = os.path.join(srv.storage, "upload.secret")
    os.makedirs(srv.storage)  # a new install: the server creates the key file on first start
    srv.opts.update(hmac_shared_secret_file=key_file)
    with srv:
        first = read_bytes(key_file)
        secret = first.decode().strip()
        s = srv.slot(len(BODY), secret=secret)
        eq(put(s.put_url, BODY).status, 201, "signed with the created secret")
        srv.assert_clean_exit()
        srv.start()
        eq(read_bytes(key_file), first, "same secret after a restart")
        mark = len(srv.stderr_lines)
        srv.signal(signal.SIGHUP)
        srv.wait_stderr("reloaded", start=mark)
        eq(read_bytes(key_file), first, "same secret after SIGHUP")
        s2 = srv.slot(len(BODY), secret=secret)
        eq(put(s2.put_url, BODY).status, 201, "still signed with it")
        eq(curl(s.rebase(srv.base).get_url).body, BODY, "first upload still served")
        srv.assert_clean_exit()


# ---- c. foreign files survive, layout 1 is migrated -----------------------------------------

@test
def foreign_files_survive_and_layout1_is_migrated():
    """Operator notes, an old mod_http_upload docroot and a slot-like tree without .meta or
    ledger row are left untouched (same bytes, not served); a layout-1 upload with its .meta
    record, and one with a ledger row, are migrated: served at their URL with the recorded
    type and the same bytes. The legacy default secret (storage/secret) stays and signs."""
    srv = UploadServer(hmac_shared_secret=None)
    old = Layout1(srv.storage)
    secret_bytes = read_bytes(os.path.join(srv.storage, "secret"))

    def check(stage):
        for rel, data in old.foreign.items():
            eq(read_bytes(os.path.join(srv.storage, rel)), data, f"{stage}: {rel}")
        eq(read_bytes(os.path.join(srv.storage, old.p2)), old.b2, f"{stage}: {old.p2} untouched")
        eq(curl(f"{srv.base}/{pct_path(old.p2)}").status, 404, f"{stage}: foreign tree not served")
        eq(curl(f"{srv.base}/docroot/abc/def/photo.jpg").status, 404, f"{stage}: docroot not served")
        eq(curl(f"{srv.base}/README-ops.txt").status, 404, f"{stage}: notes not served")
        eq(read_bytes(os.path.join(srv.storage, "secret")), secret_bytes, f"{stage}: legacy secret")
        eq(os.path.exists(srv.state_path("secret")), False, f"{stage}: no new default secret")
        for p, b, t in ((old.p1, old.b1, old.t1), (old.p3, old.b3, "image/png")):
            g = curl(f"{srv.base}/{pct_path(p)}")
            eq(g.status, 200, f"{stage}: GET {p}")
            eq(g.body == b, True, f"{stage}: same bytes {p}")
            eq(g.header("content-type"), t, f"{stage}: recorded type of {p}")
            h = curl("-I", f"{srv.base}/{pct_path(p)}")
            eq((h.status, h.header("content-length")), (200, str(len(b))), f"{stage}: HEAD {p}")
        eq(srv.visible_files(), keys(old.p1, old.p3, *fresh), f"{stage}: files/")
        for p in (old.p1, old.p3):
            eq(os.path.exists(os.path.join(srv.storage, p)), False, f"{stage}: {p} moved")
            eq(os.path.exists(os.path.join(srv.storage, p.split('/')[0])), False,
               f"{stage}: emptied slot directory of {p} removed")
        eq(os.path.exists(os.path.join(srv.storage, ".meta")), False, f"{stage}: empty .meta removed")
        eq(read_bytes(srv.state_path("layout")), b"2\n", f"{stage}: state/layout")
        rows = ledger_paths(old.ledger)
        assert old.p3 in rows and old.p1 in rows, f"{stage}: ledger rows {rows}"

    fresh = []
    with srv:
        fresh_slot = srv.slot(len(BODY), secret=old.secret)
        eq(put(fresh_slot.put_url, BODY).status, 201, "slot signed with the legacy secret")
        fresh.append(fresh_slot.path)
        check("first start")
        line = srv.wait_stderr(r"left \d+ entr(y|ies) in storage_dir that are not uploads of ours "
                               r"untouched", timeout=1)
        print(f"# {line.strip()}")
        srv.assert_clean_exit()
        srv.start()
        check("restart")
        eq(curl(fresh_slot.rebase(srv.base).get_url).body, BODY, "new upload after restart")
        srv.assert_clean_exit()


# ---- d. a refused PUT's status reaches a client that is still sending ----------------------

BIG = 16 * MIB
BIG_BODY = os.urandom(BIG)


def send_all_then_read(port, target, length=BIG):
    """Sends a PUT's head and its whole body without reading, then reads the answer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=15)
    try:
        s.sendall((f"PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n").encode())
        view = memoryview(BIG_BODY)[:length]
        for i in range(0, length, MIB):
            s.sendall(view[i:i + MIB])
        return read_head(s)
    except socket.timeout as e:
        return f"timeout: {e}".encode()
    except OSError as e:
        return f"error: {e!r}".encode()
    finally:
        s.close()


def tries(port, target, want, n=10):
    """n PUTs that send everything before reading; how many saw the status line `want`."""
    results = []
    for _ in range(n):
        r = send_all_then_read(port, target)
        results.append(r[:40])
        if r.startswith(b"timeout"):
            break  # a server that stops reading: no point waiting nine more times
    got = sum(1 for r in results if r.startswith(f"HTTP/1.1 {want}".encode()))
    return (want, got, n, sorted(set(results)))


@test
def refused_put_status_reaches_a_sending_client():
    """403 (bad token), 409 (used slot), 413 (over max_size, valid token): a client that sends
    its whole 16 MiB body before reading sees the status line 10 times out of 10; the server
    serves on afterwards."""
    seen = []
    with UploadServer() as srv:
        used = srv.slot(BIG, filename="used.bin", ctype="application/octet-stream")
        eq(put(used.put_url, BIG_BODY).status, 201, "the slot, used once")
        bad = srv.slot(BIG, filename="bad.bin").target().replace("token=", "token=x")
        seen.append(tries(srv.port, bad, 403))
        seen.append(tries(srv.port, used.target(), 409))
        g = curl(used.get_url)
        eq((g.status, g.body == BIG_BODY), (200, True), "still serving the upload")
        s = srv.slot(len(BODY))
        eq(put(s.put_url, BODY).status, 201, "still taking uploads")
        srv.assert_clean_exit()
    with UploadServer(max_size=MIB) as srv:
        big = srv.slot(BIG, filename="big.bin", ctype="application/octet-stream")
        seen.append(tries(srv.port, big.target(), 413))
        s = srv.slot(len(BODY))
        eq(put(s.put_url, BODY).status, 201, "still taking uploads")
        eq(curl(s.get_url).body, BODY, "and serving them")
        srv.assert_clean_exit()
    short = [x for x in seen if x[1] != x[2]]
    eq(short, [], "(status, seen, tries, what the client got) where the status was lost")


# ---- e. 1,000 slow readers -----------------------------------------------------------------

RSS_LIMIT_MIB = 64


@test
def thousand_slow_readers_bounded_rss():
    """1,000 connections each GET an 8 MiB file and read nothing: once the server has answered
    all of them and its RSS has settled, VmRSS <= 64 MiB; closing them leaves it serving."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < 2100:
        raise Skip(f"RLIMIT_NOFILE hard limit {hard} is below 2,100")
    with UploadServer() as srv:
        body = os.urandom(8 * MIB)
        s = srv.slot(len(body), filename="video.mp4", ctype="video/mp4")
        eq(put(s.put_url, body).status, 201, "PUT")
        eq(curl(s.get_url).body == body, True, "GET once")  # the file in the page cache
        target = s.target(s.get_url)
        req = f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        conns = []
        try:
            for _ in range(1000):
                c = socket.socket()
                c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                c.settimeout(20)
                c.connect(("127.0.0.1", srv.port))
                c.sendall(req)
                conns.append(c)
            # settled: every connection has its answer started (the server is sending to all)
            wait_for(lambda: all(readable(c) > 0 for c in conns), timeout=60,
                     what="an answer on each of the 1,000 connections")
            samples = [srv.rss_kib()]
            start = time.monotonic()
            while time.monotonic() - start < 2 or abs(samples[-1] - samples[-2]) > 512:
                if time.monotonic() - start > 15:
                    break
                time.sleep(0.25)
                samples.append(srv.rss_kib())
            rss = samples[-1]
            print(f"# RSS with 1000 slow readers: {rss / 1024:.1f} MiB (VmHWM {srv.hwm_kib() / 1024:.1f} MiB)",
                  flush=True)
            answered = sum(1 for c in conns if c.recv(12, socket.MSG_PEEK).startswith(b"HTTP/1.1 200"))
            eq(answered, 1000, "200 on every slow connection")
            if VARIANT == "release":
                assert rss <= RSS_LIMIT_MIB * 1024, f"VmRSS {rss} KiB > {RSS_LIMIT_MIB} MiB"
        finally:
            for c in conns:
                c.close()
        g = curl(s.get_url)
        eq((g.status, g.body == body), (200, True), "serving after the slow readers left")
        srv.assert_clean_exit()
    if VARIANT != "release":
        raise Skip(f"RSS not meaningful under {VARIANT} (figure printed above)")


# ---- f. full disk, and a file system without user xattrs ----------------------------------

PAGE = 4096


def free_pages(d):
    sv = os.statvfs(d)
    return sv.f_bavail * sv.f_frsize // PAGE


def ledger_pages(srv):
    """Pages the ledger's files (db, -wal, -shm) hold."""
    base = srv.ledger_file()
    return sum(-(-os.path.getsize(p) // PAGE) for p in (base, base + "-wal", base + "-shm")
               if os.path.exists(p))


def fill(path, leave_pages):
    """Fills the file system of path with one file, leaving leave_pages pages free."""
    d = os.path.dirname(path)
    with open(path, "wb") as f:
        f.write(b"\0" * max(0, (free_pages(d) - leave_pages) * PAGE))
    return free_pages(d)


def user_xattrs_work(d):
    p = os.path.join(d, ".xattr-probe")
    try:
        with open(p, "wb"):
            pass
        os.setxattr(p, "user.probe", b"1")
        return True
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(p)


@test
def full_disk_with_ledger_is_507_and_leaves_nothing():
    """storage_dir on a 2 MiB tmpfs with the ledger inside it (default path). A filler file
    beside storage_dir leaves exactly the pages a small upload's own files take (measured on a
    first upload: data, plus a sidecar record where there are no xattrs), so its data fits but
    SQLite cannot grow its WAL -> 507, nothing in files/ or state/partial; a large upload ->
    507 too; once the filler is gone, uploads work (the refused slot was not used up)."""
    with mounted("tmpfs", "size=2m") as d:
        storage = os.path.join(d, "storage")
        with UploadServer(storage_dir=storage) as srv:
            # calibration: what one small upload takes besides the ledger
            warm = srv.slot(1000, filename="warm.jpg")
            f0, l0 = free_pages(d), ledger_pages(srv)
            eq(put(warm.put_url, os.urandom(1000)).status, 201, "an upload before the disk fills")
            f1, l1 = free_pages(d), ledger_pages(srv)
            need = max(1, (f0 - f1) - (l1 - l0))
            if l1 > l0:
                leave = need        # the data fits, the ledger's WAL cannot grow
            else:                   # the ledger reused its WAL: only the data can run out
                leave = need - 1
            filler = os.path.join(d, "filler")
            left = fill(filler, leave)
            print(f"# a small upload takes {need} page(s) besides the ledger (which grew by "
                  f"{l1 - l0}); {left} page(s) left free", flush=True)
            small = srv.slot(1000, filename="small.jpg")
            r = put(small.put_url, os.urandom(1000))
            eq(r.status, 507, f"small PUT, data fits, the ledger cannot grow: {r.body[:200]!r}")
            eq(srv.visible_files(), keys(warm.path), "nothing new in files/")
            eq(srv.partial_files(), [], "nothing in state/partial")
            eq(curl(small.get_url).status, 404, "GET of the refused upload")
            large = srv.slot(3 * MIB, filename="large.bin", ctype="application/octet-stream")
            r = put(large.put_url, os.urandom(3 * MIB))
            eq(r.status, 507, "large PUT on a full disk")
            eq(srv.visible_files(), keys(warm.path), "nothing new in files/ (large)")
            eq(srv.partial_files(), [], "nothing in state/partial (large)")
            os.unlink(filler)
            again = srv.slot(1000, filename="again.jpg")
            data = os.urandom(1000)
            eq(put(again.put_url, data).status, 201, "an upload once there is room")
            eq(curl(again.get_url).body, data, "served")
            eq(put(small.put_url, data).status, 201, "the refused slot was not used up")
            eq(curl(small.get_url).body, data, "and is served")
            eq(curl(warm.get_url).status, 200, "the earlier upload survived")
            srv.assert_clean_exit()


@test
def ramfs_storage_without_user_xattrs():
    """storage_dir on ramfs (no user xattrs): uploads, GET with the signed type, tus resume
    and a restart all work; metadata records fall back to state/meta/<key>."""
    with mounted("ramfs") as d:
        if user_xattrs_work(d):
            raise Skip("this kernel's ramfs has user xattrs")
        with UploadServer(storage_dir=d) as srv:
            s = srv.slot(len(BODY), filename="picture.bin", ctype="image/png")
            eq(put(s.put_url, BODY).status, 201, "PUT")
            g = curl(s.get_url)
            eq((g.status, g.body == BODY, g.header("content-type")), (200, True, "image/png"),
               "GET with the signed type")
            assert os.path.isfile(srv.state_path("meta", published_key(s.path))), \
                f"state/meta/<key> expected: {os.listdir(d)}"
            eq(srv.visible_files(), keys(s.path), "files/")
            big_body = os.urandom(3 * MIB)
            big = srv.slot(len(big_body), filename="v.mp4", ctype="video/mp4")
            off = cut_bearer_upload(srv, big, big_body, 1500000)
            eq(tus_patch(big, off, big_body[off:]).status, 204, "tus PATCH")
            g = curl(big.get_url)
            eq((g.status, g.body == big_body, g.header("content-type")), (200, True, "video/mp4"),
               "resumed upload")
            # a cut upload across a restart
            late_body = os.urandom(2 * MIB)
            late = srv.slot(len(late_body), filename="late.bin", ctype="application/pdf")
            cut_bearer_upload(srv, late, late_body, 1200000)
            srv.assert_clean_exit()
            srv.start()
            for slot in (s, big, late):
                slot.rebase(srv.base)
            eq(curl(s.get_url).header("content-type"), "image/png", "type after restart")
            eq(curl(big.get_url).body == big_body, True, "bytes after restart")
            h = tus_head(late)
            eq(h.status, 200, "tus HEAD after restart")
            off = int(h.header("upload-offset"))
            eq(tus_patch(late, off, late_body[off:]).status, 204, "resumed after restart")
            g = curl(late.get_url)
            eq((g.body == late_body, g.header("content-type")), (True, "application/pdf"), "late")
            eq(srv.partial_files(), [], "state/partial empty")
            srv.assert_clean_exit()


# ---- g. no temp file survives a crash ----------------------------------------------------------

def wait_new_file(srv, before, min_size, what, timeout=10):
    """Waits until the server holds open a file under storage_dir, not in before, with at least
    min_size bytes written; returns its key in open_storage_files()."""
    def found():
        for k, (_, size) in srv.open_storage_files().items():
            if k not in before and size >= min_size:
                return k
        return None
    return wait_for(found, timeout=timeout, what=what)


@test
def no_temp_file_survives_crash_restart_and_sweep():
    """kill -9 during a small upload, a large Bearer upload, a tus PATCH and a legacy v1
    upload, each mid-body; after the restart state/partial holds only resumable Bearer
    partials (tus HEAD answers their offset), no *.tmp/*.meta/*.tus.tmp/orphan; once their
    tokens have expired, a SIGHUP sweeps state/partial empty. Planted leftovers of ours
    (<key>.tmp, <key>.tus.tmp, an orphan <key>) are swept at start."""
    with UploadServer(legacy_protocols=["v1"]) as srv:
        part = srv.state_path("partial")
        expires = int(time.time()) + (8 if VARIANT == "release" else 20)
        small = srv.slot(512 * 1024, filename="small.jpg", expires=expires)
        large = srv.slot(4 * MIB, filename="large.bin", ctype="application/octet-stream",
                         expires=expires)
        tus = srv.slot(4 * MIB, filename="tus.bin", ctype="application/octet-stream",
                       expires=expires)
        legacy_path = "legacy/crash.bin"
        legacy_mac = legacy_token(SECRET, "v1", legacy_path, 4 * MIB)
        bodies = {n: os.urandom(4 * MIB) for n in ("small", "large", "tus", "legacy")}

        # (3) first a cut upload kept for tus, then a PATCH that the crash interrupts
        offset = cut_bearer_upload(srv, tus, bodies["tus"], 1500000)
        conns = []
        try:
            before = set(srv.open_storage_files())
            # (1) a small Bearer upload mid-body
            c = open_put(srv, small.target(), 512 * 1024, bodies["small"][:256 * 1024])
            conns.append(c)
            wait_for(lambda: unsent(c) == 0, what="the small upload's bytes to reach the server")
            with contextlib.suppress(AssertionError):  # may stay in memory until complete
                wait_new_file(srv, before, 0, "the small upload's file", timeout=2)
            before = set(srv.open_storage_files())
            # (2) a large Bearer upload mid-body
            c = open_put(srv, large.target(), 4 * MIB, bodies["large"][:2 * MIB])
            conns.append(c)
            wait_new_file(srv, before, MIB, "the large upload's bytes on disk")
            before = set(srv.open_storage_files())
            # (3) the tus PATCH mid-body
            rest = 4 * MIB - offset
            c = open_put(srv, tus.target(), rest, bodies["tus"][offset:offset + rest // 2],
                         extra="Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
                               f"Upload-Offset: {offset}\r\n", method="PATCH")
            conns.append(c)
            wait_new_file(srv, before, offset + 1, "the PATCH's bytes on disk")
            before = set(srv.open_storage_files())
            # (4) a legacy v1 upload mid-body
            c = open_put(srv, f"/upload/{legacy_path}?v={legacy_mac}", 4 * MIB, bodies["legacy"][:2 * MIB])
            conns.append(c)
            wait_new_file(srv, before, MIB, "the legacy upload's bytes on disk")
            srv.kill()
        finally:
            for c in conns:
                c.close()
        srv.start()
        for s in (small, large, tus):
            s.rebase(srv.base)
        names = srv.partial_files()
        bearer = {published_key(s.path): s for s in (small, large, tus)}
        strays = [n for n in names if not (n in bearer or (n.endswith(".tus") and n[:-4] in names
                                                              and n[:-4] in bearer))]
        eq(strays, [], f"only resumable Bearer partials after the crash: {tree(srv.storage)}")
        assert published_key(large.path) in names, \
            f"large upload kept for resumption in state/partial: {tree(srv.storage)}"
        assert published_key(tus.path) in names, \
            f"tus upload kept for resumption in state/partial: {tree(srv.storage)}"
        for k in names:
            if k in bearer:
                h = tus_head(bearer[k])
                eq(h.status, 200, f"tus HEAD of {bearer[k].filename}")
                eq(int(h.header("upload-offset")), os.path.getsize(os.path.join(part, k)),
                   f"offset of {bearer[k].filename}")
        eq(srv.visible_files(), [], "nothing published")
        eq(curl(f"{srv.base}/{legacy_path}").status, 404, "legacy upload not visible")
        # the tokens expire; a reload sweeps their partials
        wait_for(lambda: time.time() > expires + 1, timeout=30, what="the tokens to expire",
                 interval=0.2)
        mark = len(srv.stderr_lines)
        srv.signal(signal.SIGHUP)
        srv.wait_stderr("reloaded", start=mark)
        wait_for(lambda: srv.partial_files() == [], timeout=10,
                 what=f"state/partial to be swept: {srv.partial_files()}")
        eq(srv.visible_files(), [], "nothing published")
        # leftovers of the worst moments of a crash (a resume state half written, where the
        # file system has no xattrs, and a file without its resume state), planted while the
        # server is down: swept at start. A name the server never writes is left alone.
        srv.assert_clean_exit()
        planted = [published_key("x/b") + ".tus.tmp", published_key("x/c")]
        stranger = published_key("x/a") + ".tmp"
        for n in planted + [stranger]:
            write_file(os.path.join(part, n), os.urandom(2000))
            age(os.path.join(part, n))
        srv.start()
        eq(srv.partial_files(), [stranger], "our temp files swept at start, a stranger's kept")
        srv.assert_clean_exit()


@test
def layout1_partials_migrated_and_temp_files_removed():
    """Layout 1's .partial: a cut Bearer upload with valid .tus state moves to state/partial
    and resumes at its offset; <key>.meta, <key>.tus.tmp and an orphan <key> are removed."""
    srv = UploadServer(hmac_shared_secret=None)
    old = Layout1(srv.storage, with_ledger=False, with_partials=True)
    with srv:
        names = srv.partial_files()
        eq([n for n in names if n not in (old.partial, old.partial + ".tus")], [],
           f"state/partial after migration: {names}")
        eq(old.partial in names, True, f"resumable partial moved: {names}")
        left = os.listdir(os.path.join(srv.storage, ".partial")) \
            if os.path.isdir(os.path.join(srv.storage, ".partial")) else []
        eq(left, [], "nothing of ours left in .partial")
        s = old.resume_slot.rebase(srv.base)
        h = tus_head(s)
        eq((h.status, h.header("upload-offset")), (200, str(old.resume_kept)), "tus HEAD")
        eq(tus_patch(s, old.resume_kept, old.resume_body[old.resume_kept:]).status, 204, "PATCH")
        g = curl(s.get_url)
        eq((g.body == old.resume_body, g.header("content-type")), (True, "video/mp4"), "resumed")
        eq(srv.partial_files(), [], "state/partial empty")
        srv.assert_clean_exit()


# ---- h. no comma in a content type -------------------------------------------------------------

@test
def comma_content_type_refused():
    """A correctly signed Bearer PUT whose signed type is a list is 400 and stores nothing;
    a type with parameters still works and is served as signed."""
    with UploadServer() as srv:
        for t in ("image/png ,text/html", "text/html, image/png", "image/png,text/html"):
            s = srv.slot(len(BODY), filename="x.png", ctype=t)
            r = put(s.put_url, BODY)
            eq(r.status, 400, f"signed type {t!r}: {r.body[:200]!r}")
            eq(curl(s.get_url).status, 404, f"GET after {t!r}")
            r = put(s.put_url_no_token, BODY, "-H", s.auth)
            eq(r.status, 400, f"signed type {t!r} (token in the header)")
        eq(srv.visible_files(), [], "nothing stored")
        eq(srv.partial_files(), [], "nothing partial")
        s = srv.slot(len(BODY), filename="notes.txt", ctype="text/plain; charset=utf-8")
        eq(put(s.put_url, BODY).status, 201, "type with a parameter")
        g = curl(s.get_url)
        eq((g.status, g.body == BODY, g.header("content-type")),
           (200, True, "text/plain; charset=utf-8"), "served as signed")
        srv.assert_clean_exit()


# ---- i. CORS ---------------------------------------------------------------------------------------

def cors_cases(srv):
    """(what, Response) for GET, HEAD, 404, OPTIONS, PUT 201 and PUT 403, each without and with
    an Origin header; origin is filled in by the caller."""
    s = srv.slot(len(BODY))
    eq(put(s.put_url, BODY).status, 201, "PUT")
    miss = f"{srv.base}/{uuid.uuid4()}/none.jpg"

    def run(origin):
        o = ["-H", f"Origin: {origin}"] if origin else []
        out = [("GET", curl(*o, s.get_url)), ("HEAD", curl("-I", *o, s.get_url)),
               ("GET 404", curl(*o, miss)), ("HEAD 404", curl("-I", *o, miss)),
               ("OPTIONS", curl("-X", "OPTIONS", *o, "-H", "Access-Control-Request-Method: PUT",
                                s.put_url)),
               ("GET range", curl(*o, "-H", "Range: bytes=0-9", s.get_url))]
        p = srv.slot(len(BODY))
        out.append(("PUT 201", put(p.put_url, BODY, *o)))
        out.append(("PUT 403", put(p.put_url.replace("token=", "token=x"), BODY, *o)))
        out.append(("PUT 409", put(p.put_url, BODY, *o)))
        return out
    return run


@test
def cors_wildcard_with_and_without_origin():
    """cors_origins ["*"] (the default): every answer carries Access-Control-Allow-Origin: *,
    with and without an Origin request header."""
    with UploadServer() as srv:
        run = cors_cases(srv)
        bad = []
        for origin in (None, "https://chat.example"):
            for what, r in run(origin):
                if r.status == 0 or r.header("access-control-allow-origin") != "*":
                    bad.append((what, origin, r.status, r.header("access-control-allow-origin")))
        eq(bad, [], "ACAO: * everywhere")
        srv.assert_clean_exit()


@test
def cors_origin_list_varies_on_origin():
    """cors_origins ["https://chat.example"]: every answer carries Vary: Origin; ACAO names the
    origin only when it is listed."""
    with UploadServer(cors_origins=["https://chat.example"]) as srv:
        run = cors_cases(srv)
        bad = []
        for origin, want in ((None, None), ("https://chat.example", "https://chat.example"),
                             ("https://evil.example", None), ("https://chat.example.evil", None)):
            for what, r in run(origin):
                vary = [v.lower() for v in r.header_values("vary")]
                if r.status == 0 or "origin" not in vary:
                    bad.append((what, origin, r.status, "Vary", vary))
                acao = r.header("access-control-allow-origin")
                if acao != want:
                    bad.append((what, origin, r.status, "ACAO", acao))
        eq(bad, [], "Vary: Origin everywhere, ACAO only for the listed origin")
        srv.assert_clean_exit()


# ---- j. names ------------------------------------------------------------------------------------

def accepted_names():
    utf8_2 = "é" * 512                       # 1024 bytes of two-byte characters
    utf8_3 = "日" * 341 + "a"                 # 1023 + 1 bytes
    names = [".hidden.txt", "back\\slash.txt", "n" * 296 + ".txt", "a" * 1020 + ".txt",
             utf8_2, utf8_3, "spaces and %25 and ?#.txt", "tab\there.txt", "new\nline.txt",
             "..hidden", "日本語 ファイル.jpg", "...", ".", "semi;colon=1.txt", "+plus&amp.txt"]
    names.remove(".")
    for n in (utf8_2, utf8_3, "a" * 1020 + ".txt"):
        assert len(n.encode()) == 1024, len(n.encode())
    return names


REFUSED_NAMES = ["a" * 1021 + ".txt", "é" * 512 + "a", ".", ".."]
# how each refused name is written in the URL: percent-encoded, and the dot segments also raw
URL_FORMS = {".": [".", "%2e", "%2E"], "..": ["..", "%2e%2e", ".%2e", "%2E%2E"]}


@test
def every_signable_name_uploads_and_downloads():
    """Leading dots, backslashes, 300- and 1024-byte names (ASCII and multi-byte UTF-8), '%',
    '?', '#', spaces, a tab, a newline, '..hidden', Japanese: 201 through a Bearer slot and
    through legacy v1, then GET and HEAD byte-identical. 1025 bytes, '.', '..' and NUL: 400,
    nothing stored."""
    with UploadServer(legacy_protocols=["v1"]) as srv:
        stored = []
        failures = []
        for i, name in enumerate(accepted_names()):
            body = os.urandom(1000 + i)
            s = srv.slot(len(body), filename=name, ctype="application/octet-stream")
            r = put_target(srv, s.target(), body, s.auth)
            if r.status != 201:
                failures.append(("bearer PUT", name[:40], r.status, r.body[:100]))
                continue
            stored.append(s.path)
            if json.loads(r.body).get("filename") != name:
                failures.append(("bearer filename", name[:40], json.loads(r.body).get("filename")))
            g = http(srv.port, "GET", s.target(s.get_url))
            if (g.status, g.body) != (200, body):
                failures.append(("bearer GET", name[:40], g.status))
            h = http(srv.port, "HEAD", s.target(s.get_url))
            if (h.status, h.header("content-length"), h.body) != (200, str(len(body)), b""):
                failures.append(("bearer HEAD", name[:40], h.status, h.header("content-length")))
            # legacy v1 (Prosody mod_http_upload_external, ejabberd's external_secret)
            p = f"{uuid.uuid4().hex}/{name}"
            mac = legacy_token(SECRET, "v1", p, len(body))
            t = f"/upload/{pct_path(p)}?v={mac}"
            r = put_target(srv, t, body, "Content-Type: application/octet-stream")
            if r.status != 201:
                failures.append(("v1 PUT", name[:40], r.status, r.body[:100]))
                continue
            stored.append(p)
            g = http(srv.port, "GET", f"/upload/{pct_path(p)}")
            if (g.status, g.body) != (200, body):
                failures.append(("v1 GET", name[:40], g.status))
            h = http(srv.port, "HEAD", f"/upload/{pct_path(p)}")
            if (h.status, h.header("content-length")) != (200, str(len(body))):
                failures.append(("v1 HEAD", name[:40], h.status))
        eq(failures, [], "accepted names")
        eq(srv.visible_files(), keys(*stored), "files/ holds exactly the accepted uploads")
        for name in REFUSED_NAMES:
            for target_name in URL_FORMS.get(name, [pct(name)]):
                s = srv.slot(len(BODY), filename=name)
                t = s.target().replace(f"/{pct(name)}?", f"/{target_name}?", 1)
                r = put_target(srv, t, BODY, s.auth)
                if r.status != 400:
                    failures.append(("refused bearer", name[:40], target_name[:12], r.status))
                p = f"{uuid.uuid4().hex}/{name}"
                mac = legacy_token(SECRET, "v1", p, len(BODY))
                r = put_target(srv, f"/upload/{p.split('/')[0]}/{target_name}?v={mac}", BODY)
                if r.status != 400:
                    failures.append(("refused v1", name[:40], target_name[:12], r.status))
        eq(failures, [], "refused names are 400")
        eq(srv.visible_files(), keys(*stored), "refused names stored nothing")
        eq(srv.partial_files(), [], "nothing partial")
        srv.assert_clean_exit()


if __name__ == "__main__":
    main()
