#!/usr/bin/python3
"""The server's side of the ledger: completions recorded with their sha256, downloads audited,
max_days expiry, and the start-up check that reconciles the ledger with the files on disk."""

import hashlib
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import (UploadServer, curl, eq, keys, main, published_key, put,  # noqa: E402
                     test)


def db(srv):
    """The default ledger of a new install (layout 2): <storage_dir>/state/ledger.sqlite3."""
    return sqlite3.connect(os.path.join(srv.storage, "state", "ledger.sqlite3"))


def reserve(c, slot, size, held_until=None, keep=-1, expire_before=0):
    """A reservation as the module makes it: its bytes held until held_until (reservation_time),
    the row with the file's retention alive until the token expires; counted in the user's
    running sum of held bytes (schema v3), as a grant counts it."""
    c.execute("INSERT INTO reservations(path, user, size, expires, held_until, keep, expire_before,"
              " counted) VALUES(?, ?, ?, ?, ?, ?, ?, 1)",
              (slot.path, slot.user, size, slot.expires,
               slot.expires if held_until is None else held_until, keep, expire_before))
    c.execute("INSERT INTO usage(user, held) VALUES(?, ?)"
              " ON CONFLICT(user) DO UPDATE SET held = held + excluded.held", (slot.user, size))


@test
def upload_recorded_and_download_audited():
    with UploadServer() as srv:
        body = os.urandom(5000)
        s = srv.slot(len(body))
        # the module would have reserved the slot; do what it does
        with db(srv) as c:
            reserve(c, s, len(body))
        eq(put(s.put_url, body).status, 201, "PUT")
        eq(curl(s.get_url).status, 200, "GET")
        time.sleep(0.2)
        with db(srv) as c:
            row = c.execute("SELECT user, size, sha256, content_type, scheme, source_ip FROM files WHERE path = ?",
                            (s.path,)).fetchone()
            eq(row, (s.user, len(body), hashlib.sha256(body).hexdigest(), "image/jpeg", "bearer", "127.0.0.1"),
               "files row")
            eq(c.execute("SELECT COUNT(*) FROM reservations").fetchone()[0], 0, "reservation consumed")
            events = [r[0] for r in c.execute("SELECT event FROM audit ORDER BY id")]
            eq(events, ["upload", "download"], "audit")
        srv.assert_clean_exit()


@test
def max_days_expiry_removes_file_and_row():
    with UploadServer(max_days=1) as srv:
        body = os.urandom(100)
        s = srv.slot(len(body))
        eq(put(s.put_url, body).status, 201, "PUT")
        with db(srv) as c:
            exp = c.execute("SELECT expires - created FROM files").fetchone()[0]
            eq(exp, 86400, "expires after max_days")
            c.execute("UPDATE files SET expires = 1")  # as if a day had passed
        srv.signal(signal.SIGHUP)  # maintenance also runs on reload (and every minute)
        deadline = time.time() + 5
        while time.time() < deadline and srv.visible_files():
            time.sleep(0.1)
        eq(srv.visible_files(), [], "file removed")
        eq(curl(s.get_url).status, 404, "GET")
        with db(srv) as c:
            eq(c.execute("SELECT COUNT(*) FROM files").fetchone()[0], 0, "row removed")
            eq(c.execute("SELECT detail FROM audit WHERE event = 'delete'").fetchone()[0],
               "expired", "audited")
        srv.assert_clean_exit()


def age(*paths):
    """Back-dates paths by a day: start-up checks adopt only files older than any server
    sharing the storage takes to record its upload (maintenance.c)."""
    t = time.time() - 86400
    for p in paths:
        os.utime(p, (t, t))


@test
def startup_reconciles_ledger_and_files():
    with UploadServer() as srv:
        a, b = os.urandom(100), os.urandom(200)
        sa, sb = srv.slot(len(a), filename="a.jpg"), srv.slot(len(b), filename="b.jpg")
        eq(put(sa.put_url, a).status, 201, "PUT a")
        eq(put(sb.put_url, b).status, 201, "PUT b")
        srv.assert_clean_exit()
        os.unlink(srv.published_path(sa.path))               # a file deleted by hand
        with db(srv) as c:
            c.execute("DELETE FROM files WHERE path = ?", (sb.path,))  # as if killed before the commit
        age(srv.published_path(sb.path))  # a young one may be another server's, being recorded
        srv.start()
        assert any("reconciled" in l for l in srv.stderr_lines), srv.stderr_lines
        with db(srv) as c:
            rows = sorted(r[0] for r in c.execute("SELECT path FROM files"))
            eq(rows, [sb.path], "row of the missing file gone, file without row adopted")
            eq(c.execute("SELECT sha256 FROM files").fetchone()[0], hashlib.sha256(b).hexdigest(), "sha")
        eq(srv.visible_files(), keys(sb.path), "files")
        srv.assert_clean_exit()


@test
def kill_9_mid_upload_leaves_consistent_state():
    with UploadServer() as srv:
        body = os.urandom(4 << 20)
        s = srv.slot(len(body))
        done = srv.slot(10, filename="done.jpg")
        eq(put(done.put_url, b"0123456789").status, 201, "a finished upload")
        c = socket.create_connection(("127.0.0.1", srv.port))
        target = s.put_url.split(str(srv.port), 1)[1]
        c.sendall(f"PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:1 << 20])
        time.sleep(0.3)
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
        c.close()
        srv.start()
        eq(srv.visible_files(), keys(done.path), "only the finished upload is visible")
        with db(srv) as cx:
            eq([r[0] for r in cx.execute("SELECT path FROM files")], [done.path], "ledger agrees")
            eq(cx.execute("PRAGMA integrity_check").fetchone()[0], "ok", "ledger intact")
        srv.assert_clean_exit()


@test
def kill_9_during_group_commits_loses_no_acknowledged_upload():
    """32 clients upload small files as fast as they can (completions share group commits:
    one ledger transaction for all that finish together);
    kill -9 lands in the middle. After the restart every upload that got its 201 is served with
    its bytes and has its ledger row, no partial file is left, and the ledger lists exactly
    the files on disk (an upload linked but not yet committed is adopted, never half-kept)."""
    import http.client
    import threading
    with UploadServer() as srv:
        acked, stop = {}, threading.Event()
        lock = threading.Lock()

        def client(n):
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            i = 0
            while not stop.is_set():
                body = os.urandom(2000 + n * 97 + i)
                s = srv.slot(len(body), filename=f"c{n}-{i}.bin")
                try:
                    conn.request("PUT", s.put_url.split(str(srv.port), 1)[1], body,
                                 {"Content-Type": "image/jpeg"})
                    r = conn.getresponse()
                    r.read()
                except (OSError, http.client.HTTPException):
                    return
                if r.status == 201:
                    with lock:
                        acked[s.path] = (s, hashlib.sha256(body).hexdigest())
                i += 1

        threads = [threading.Thread(target=client, args=(n,)) for n in range(32)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
        stop.set()
        for t in threads:
            t.join()
        assert len(acked) > 50, f"only {len(acked)} uploads before the kill"
        print(f"# {len(acked)} uploads acknowledged before the kill")
        old_port = srv.port
        # the restart comes later than any other server sharing the storage could still be
        # recording one of these uploads: a file without a row is a crash's, and adopted
        for d, _, files in os.walk(os.path.join(srv.storage, "files")):
            age(*(os.path.join(d, f) for f in files))
        srv.start()
        eq(srv.partial_files(), [], "no partial file left")
        with db(srv) as c:
            rows = {p: h for p, h in c.execute("SELECT path, sha256 FROM files")}
            eq(c.execute("PRAGMA integrity_check").fetchone()[0], "ok", "ledger intact")
            used = c.execute("SELECT COALESCE(SUM(stored), 0) FROM usage").fetchone()[0]
            eq(used, c.execute("SELECT COALESCE(SUM(size), 0) FROM files WHERE user IS NOT NULL")
               .fetchone()[0], "running sums agree with the rows")
        missing = [p for p in acked if p not in rows]
        eq(missing, [], "every acknowledged upload has its row")
        eq(srv.visible_files(), keys(*rows), "the ledger lists exactly the files on disk")
        for path, (s, digest) in list(acked.items())[:: max(1, len(acked) // 40)]:
            r = curl(s.get_url.replace(f":{old_port}/", f":{srv.port}/"))
            eq((r.status, hashlib.sha256(r.body).hexdigest()), (200, digest), f"served: {path}")
            eq(rows[path], digest, f"recorded: {path}")
        srv.assert_clean_exit()


def answered_at(lines):
    """The index of the line that sent the 201 in an `strace -f -y` log of one upload."""
    answered = next((i for i, l in enumerate(lines) if "201 Created" in l), None)
    assert answered is not None, "no 201 in the trace:\n" + "\n".join(lines[-20:])
    return answered


def completed_at(lines, i, end):
    """Where the syscall of lines[i] completed (strace splits one that another thread
    interrupts into "<unfinished ...>" and "<... resumed>"), or None if not before end."""
    if "<unfinished ...>" not in lines[i]:
        return i
    m = re.match(r"(\d+) +(\w+)\(", lines[i])
    done = f"{m.group(1)} <... {m.group(2)} resumed>"
    return next((j for j in range(i + 1, end) if lines[j].startswith(done)), None)


def syncs_before_201(log):
    """From an `strace -f -y` log of one upload: whether the ledger's WAL was written, and
    whether every WAL write before the 201 was followed by a completed fsync or fdatasync of
    the WAL before the 201 went out."""
    lines = open(log).read().splitlines()
    answered = answered_at(lines)
    wal = [i for i, l in enumerate(lines[:answered])
           if "-wal>" in l and ("pwrite64(" in l or " write(" in l)]
    if not wal:
        return False, False
    for i in range(wal[-1] + 1, answered):
        if re.match(r"\d+ +(fsync|fdatasync)\(\d+<[^>]*-wal>", lines[i]) \
                and completed_at(lines, i, answered) is not None:
            return True, True
    return True, False


def name_synced_before_row(log, key):
    """From an `strace -f -y` log of one upload published under key: whether the file was
    fsynced before its link into files/<shard>/, and whether its shard directory's fsync
    completed after the link and before the ledger's row was written (and so before the 201)."""
    lines = open(log).read().splitlines()
    answered = answered_at(lines)
    shard = f"/files/{key[:2]}"
    def linked(i):  # the upload's linkat, where it returned 0 (on its own or resumed line)
        if not (re.match(r"\d+ +linkat\(", lines[i]) and f'"{key[:2]}/{key}"' in lines[i]):
            return None
        j = completed_at(lines, i, answered)
        return j if j is not None and re.search(r"\) += 0$", lines[j]) else None
    link = next((j for i in range(answered) if (j := linked(i)) is not None), None)
    assert link is not None, "no link of the upload in the trace:\n" + "\n".join(lines[:answered])
    file_synced = any(re.match(r"\d+ +(fsync|fdatasync)\(\d+<[^>]*/state/partial/", lines[i])
                      and completed_at(lines, i, link) is not None for i in range(link))
    row = next((i for i in range(link + 1, answered) if "-wal>" in lines[i]
                and ("pwrite64(" in lines[i] or " write(" in lines[i])), answered)
    dir_synced = any(re.match(rf"\d+ +fsync\(\d+<[^>]*{shard}>", lines[i])
                     and completed_at(lines, i, row) is not None for i in range(link + 1, row))
    return file_synced, dir_synced


def traced_upload(srv, body, syscalls):
    """Uploads body with the server's threads under `strace -f -y -e trace=syscalls` and
    returns the slot and the log's path."""
    assert shutil.which("strace"), "strace is not installed (make deps installs it)"
    put(srv.slot(10).put_url, b"w" * 10)  # the WAL exists, the pool threads run
    log = os.path.join(srv.dir, "strace.log")
    task = f"/proc/{srv.proc.pid}/task"
    tids = os.listdir(task)
    tracer = subprocess.Popen(["strace", "-f", "-qq", "-y", "-o", log, "-e", "trace=" + syscalls]
                              + [a for t in tids for a in ("-p", t)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def traced(t):
            status = open(f"{task}/{t}/status").read()
            return re.search(r"^TracerPid:\s+([1-9]\d*)$", status, re.M) is not None
        deadline = time.monotonic() + 20
        while not all(traced(t) for t in tids):
            assert tracer.poll() is None, f"strace: {tracer.stderr.read().decode()}"
            assert time.monotonic() < deadline, "strace did not attach to every thread"
            time.sleep(0.05)
        slot = srv.slot(len(body))
        eq(put(slot.put_url, body).status, 201, "PUT")
        time.sleep(0.3)
    finally:
        tracer.terminate()
        tracer.wait(10)
    return slot, log


@test
def a_201_comes_after_the_ledger_row_is_synced():
    """A 201 means the row is durable, not only the file: the ledger's transaction reaches the
    disk (the WAL synced, as PostgreSQL's synchronous_commit does) before the answer, so a
    power cut after it cannot leave a file the ledger forgot (its quota uncounted, its expiry
    never run). A process crash alone would not show it: the WAL is in the page cache."""
    with UploadServer() as srv:
        _, log = traced_upload(srv, os.urandom(3000),
                               "pwrite64,write,fsync,fdatasync,sendmsg,writev,sendto")
        eq(syncs_before_201(log), (True, True), "(WAL written, WAL synced before the 201)")
        srv.assert_clean_exit()


@test
def a_201_comes_after_the_file_and_its_name_are_synced():
    """A 201 means the file survives a power cut with its name: its bytes synced before its
    link, its shard directory synced after the link, both before the ledger's row is written
    (a row never names a file that a power cut could take away) and so before the answer."""
    with UploadServer() as srv:
        slot, log = traced_upload(srv, os.urandom(3000),
                                  "pwrite64,write,fsync,fdatasync,linkat,sendmsg,writev,sendto")
        eq(name_synced_before_row(log, published_key(slot.path)), (True, True),
           "(file synced before its link, its directory after it and before the row)")
        srv.assert_clean_exit()


@test
def upload_start_claims_the_reservation_or_refuses_over_quota():
    """Slots hold their quota briefly (the module's reservation_time); the upload's start claims
    the reservation until the token expires, or, when it lapsed, reserves again under the quota:
    507 "Upload quota exceeded" when it no longer fits, nothing stored."""
    with UploadServer(quota_per_user=100000) as srv:
        now = int(time.time())
        body = os.urandom(60000)
        late = srv.slot(len(body), filename="late.bin")
        other = srv.slot(len(body), filename="other.bin")
        with db(srv) as c:  # as the module leaves them: late's lapsed, other's still held
            reserve(c, late, len(body), held_until=now - 10)
            reserve(c, other, len(body), held_until=now + 300)
        r = put(late.put_url, body)
        eq((r.status, r.body.strip()), (507, b"Upload quota exceeded"), "over quota once lapsed")
        eq(srv.visible_files(), [], "nothing stored")
        eq(srv.partial_files(), [], "nothing kept")
        # the other slot's upload starts in time: its reservation now lasts as long as its token
        eq(put(other.put_url, body).status, 201, "the held slot uploads")
        with db(srv) as c:
            # other's was consumed; the refused one stays (its token is valid) and holds nothing
            eq(c.execute("SELECT path, held_until < ? FROM reservations", (now,)).fetchall(),
               [(late.path, 1)], "claimed and consumed")
            eq(c.execute("SELECT detail FROM audit WHERE event = 'refused'").fetchone()[0][:10], "over quota", "audited")
        # with room again (a smaller file), a lapsed slot is reserved anew and uploads
        small = srv.slot(30000, filename="small.bin")
        with db(srv) as c:
            reserve(c, small, 30000, held_until=now - 10)
        eq(put(small.put_url, os.urandom(30000)).status, 201, "a lapsed slot that fits")
        with db(srv) as c:
            eq([r[0] for r in c.execute("SELECT event FROM audit WHERE path = ? ORDER BY id", (small.path,))],
               ["reserve at upload", "upload"], "held again at the upload's start")
        srv.assert_clean_exit()


@test
def the_slots_retention_gives_the_file_its_expiry():
    """The retention the module chose for the slot's purpose (XEP-0363 1.2), carried by its
    reservation: 'permanent' outlives max_days, a keep of an hour is an hour, and an ephemeral
    file is never served after its expire-before, sweep or no sweep."""
    with UploadServer(max_days=1) as srv:
        now = int(time.time())
        slots = {name: srv.slot(100, filename=f"{name}.bin")
                 for name in ("default", "permanent", "hour", "ephemeral")}
        with db(srv) as c:
            reserve(c, slots["default"], 100)
            reserve(c, slots["permanent"], 100, keep=0)
            reserve(c, slots["hour"], 100, keep=3600)
            reserve(c, slots["ephemeral"], 100, keep=0, expire_before=now + 3)
        body = os.urandom(100)
        for s in slots.values():
            eq(put(s.put_url, body).status, 201, f"PUT {s.path}")
        with db(srv) as c:
            rows = dict(c.execute("SELECT path, expires - created FROM files"))
        eq(rows[slots["default"].path], 86400, "default: max_days")
        with db(srv) as c:
            eq(c.execute("SELECT expires FROM files WHERE path = ?", (slots["permanent"].path,)).fetchone()[0],
               0, "permanent: never")
            eq(c.execute("SELECT expires FROM files WHERE path = ?", (slots["ephemeral"].path,)).fetchone()[0],
               now + 3, "ephemeral: its expire-before")
        eq(rows[slots["hour"].path], 3600, "an hour")
        g = curl(slots["ephemeral"].get_url)
        eq(g.status, 200, "ephemeral served before its time")
        max_age = int(g.header("cache-control").split("max-age=")[1].split(",")[0])
        assert 0 < max_age <= 3, f"a cache keeps it no longer than it lives: {g.header('cache-control')}"
        assert "max-age=31536000" in curl(slots["permanent"].get_url).header("cache-control")
        while time.time() < now + 3:
            time.sleep(0.2)
        eq(curl(slots["ephemeral"].get_url).status, 404, "ephemeral gone at its expire-before")
        eq(curl(slots["permanent"].get_url).status, 200, "permanent still there")
        srv.assert_clean_exit()


@test
def ledger_can_be_disabled():
    with UploadServer(ledger_path="none") as srv:
        s = srv.slot(10)
        eq(put(s.put_url, b"0123456789").status, 201, "PUT without a ledger")
        assert not os.path.exists(os.path.join(srv.storage, "ledger.sqlite3"))
        assert not os.path.exists(os.path.join(srv.storage, "state", "ledger.sqlite3"))
        srv.assert_clean_exit()


if __name__ == "__main__":
    main()
