#!/usr/bin/python3
"""The PostgreSQL ledger, against a private PostgreSQL from Debian's package (test/lib/postgres.py,
started once for this file): the ledger's C unit tests with HU_TEST_LEDGER_URL set, the upload
server recording its uploads in PostgreSQL (ledger_path: postgresql://...), and PostgreSQL
stopped in the middle of a stream of uploads and started again: no upload is acknowledged
without its row, no acknowledged row is lost, and the server takes uploads again by itself.
A connection broken at exactly the COMMIT of a batch of completions (test/lib/pg_proxy.py
between the server and PostgreSQL): after PostgreSQL committed it, before, before without
PostgreSQL noticing, and while the COMMIT is still running; each upload is answered by what the
ledger holds. An image's media metadata lands in its PostgreSQL row as in an SQLite one.
A missing package (postgresql, or a build without libpq) is a failure, not a skip."""

import hashlib
import os
import random
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import (ROOT, Load, UploadServer, curl, eq, keys, main,  # noqa: E402
                     parse_response, put, test, wait_for)
from pg_proxy import PgProxy  # noqa: E402
from postgres import Postgres  # noqa: E402

PG = None


def pg():
    """The one private PostgreSQL of this file, started on first use."""
    global PG
    if PG is None:
        PG = Postgres().start()
    return PG


def new_database(name):
    pg().sql(f"DROP DATABASE IF EXISTS {name}")
    pg().sql(f"CREATE DATABASE {name}")
    return pg().url(name)


@test
def ledger_unit_tests_against_postgres():
    """build/<variant>/test/test_ledger with HU_TEST_LEDGER_URL: every ledger test, each in a
    fresh schema; each of its lines is reported here."""
    variants = [os.environ["HU_VARIANT"]] if "HU_VARIANT" in os.environ else ["release", "asan"]
    url = new_database("unit")
    failed = []
    for variant in variants:
        binary = os.path.join(ROOT, "build", variant, "test", "test_ledger")
        if not os.access(binary, os.X_OK):
            raise AssertionError(f"{binary} missing: make -C c_src unit (SAN=1 for asan)")
        env = dict(os.environ, HU_TEST_LEDGER_URL=url)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        p = subprocess.run([binary], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=600)
        lines = [l for l in p.stdout.splitlines() if l.startswith(("ok - ", "not ok - "))]
        for line in lines:
            status, name = line.split(" - ", 1)
            print(f"{status} - test_ledger[postgresql,{variant}]::{name}", flush=True)
            if status != "ok":
                failed.append(f"{variant}:{name}")
        if p.returncode != 0 or not lines:
            sys.stdout.write(p.stderr[-4000:])
            failed.append(f"{variant}: exit {p.returncode}")
    eq(failed, [], "ledger tests failing against PostgreSQL")


def rows(dbname):
    out = pg().sql("SELECT path FROM files ORDER BY path", dbname)
    return set(out.splitlines()) if out else set()


@test
def server_records_uploads_in_postgres():
    url = new_database("server")
    with UploadServer(ledger_path=url) as srv:
        bodies = {}
        for i in range(5):
            body = os.urandom(1000 + i)
            s = srv.slot(len(body), filename=f"f{i}.jpg")
            eq(put(s.put_url, body).status, 201, f"PUT {i}")
            bodies[s.path] = body
        eq(rows("server"), set(bodies), "a row for every upload")
        user_bytes = pg().sql("SELECT stored FROM usage WHERE \"user\" = 'alice@localhost'", "server")
        eq(int(user_bytes), sum(len(b) for b in bodies.values()), "running sum")
        path = sorted(bodies)[0]
        eq(curl(srv.slot(1).get_url.rsplit("/", 2)[0] + "/" + path).status, 200, "GET")
        events = pg().sql("SELECT event FROM audit ORDER BY id", "server").splitlines()
        eq(events.count("upload"), 5, "audit rows")
        # the log line that names the ledger never shows its password
        assert not any("hu-pg-secret" in l for l in srv.stderr_lines), srv.stderr_lines
        srv.assert_clean_exit()


@test
def server_records_media_metadata_in_postgres():
    """The media columns (schema v4) say what GET says: for a JPEG, for a PNG declared as a
    JPEG (type_ok false), for random bytes declared a PDF (a type, no image), and for random
    bytes signed as application/octet-stream (not probed: no type)."""
    url = new_database("media")

    def fixture(name):
        with open(os.path.join(ROOT, "test", "fixtures", "media", name), "rb") as f:
            return f.read()

    with UploadServer(ledger_path=url) as srv:
        want = {}
        for name, body, ctype, real_type, type_ok, thumb in [
                ("cat.jpg", fixture("baseline.jpg"), "image/jpeg", "image/jpeg", "t", "t"),
                ("liar.jpg", fixture("rgba.png"), "image/jpeg", "image/png", "f", "t"),
                # fixed noise: libmagic types about 1.7 % of random 2000-byte bodies as
                # something (1.4 % application/x-dosexec), which made this test flaky
                ("noise.pdf", random.Random(0).randbytes(2000), "application/pdf",
                 "application/octet-stream", "f", "f"),
                # signed as octet-stream: not probed (upload_media.c), NULL columns
                ("noise.bin", os.urandom(2000), "application/octet-stream", "", "", "f")]:
            s = srv.slot(len(body), filename=name, ctype=ctype)
            eq(put(s.put_url, body, "-H", f"Content-Type: {ctype}").status, 201, f"PUT {name}")
            r = curl("-I", s.get_url)
            w, _, h = r.headers.get("x-image-dimensions", "").partition("x")
            want[s.path] = "|".join([real_type, type_ok, w, h, r.headers.get("blurhash", ""), thumb])
        rows = pg().sql("SELECT path, media_type, type_ok, width, height, blurhash, thumbnail"
                        " FROM files", "media")
        eq(dict(l.split("|", 1) for l in rows.splitlines()), want, "media columns")
        srv.assert_clean_exit()


@test
def postgres_stopped_mid_load_and_restarted():
    """Four clients upload without pause; PostgreSQL stops (a fast shutdown: every session
    ended) for two seconds, then comes back on the same port. Every 201 has its row, every
    row its file; uploads during the outage fail with a server error and leave nothing
    visible; uploads succeed again without touching the upload server."""
    url = new_database("fault")
    with UploadServer(ledger_path=url) as srv:
        def client(n, load):
            i = 0
            while not load.stopped:
                body = os.urandom(512 + n)
                s = srv.slot(len(body), filename=f"c{n}-{i}.bin")
                load.add(s.path, put(s.put_url, body, "--max-time", "20").status)
                i += 1

        with Load(client) as load:
            time.sleep(1.0)
            down_at = time.monotonic()
            pg().stop("fast")
            time.sleep(2.0)
            up_at = time.monotonic()
            pg().start()
            load.wait_resumed(up_at)
        results = load.results
        acked = {p for _, p, st in results if st == 201}
        failed = [(t, p, st) for t, p, st in results if st != 201]
        recorded = rows("fault")
        eq(sorted(acked - recorded), [], "201 without a ledger row")
        eq(sorted(set(keys(*recorded)) - set(srv.visible_files())), [], "rows without a file")
        visible_unacked = set(srv.visible_files()) - set(keys(*acked)) - set(keys(*recorded))
        eq(sorted(visible_unacked), [], "files visible without a 201 or a row")
        before = [r for r in results if r[0] < down_at and r[2] == 201]
        assert before, "no upload succeeded before the outage"
        assert failed, "no upload failed while PostgreSQL was down"
        statuses = sorted({st for _, _, st in failed})
        # the ledger unreachable is passing: 503, which says when to retry
        eq(statuses, [503], "outage statuses")
        s = srv.slot(10, filename="retry-after.bin")
        pg().stop("fast")
        try:
            r = put(s.put_url, b"0123456789")
            eq((r.status, r.headers.get("retry-after")), (503, "1"), "503 with Retry-After")
        finally:
            pg().start()
        resumed = load.resumed(up_at)
        assert len(resumed) >= 8, f"service did not resume: {len(resumed)} uploads after restart"
        print(f"# {len(acked)} acknowledged, {len(failed)} refused during the outage"
              f" (statuses {statuses}), {len(recorded)} rows", flush=True)
        srv.assert_clean_exit()


# The completion statement of ledger_pg.c (P_INSERT_FILE, prepared as "hu7"), by its text.
INSERT_FILE = r"INSERT INTO files\("


def send_head(srv, s, body):
    """A PUT's head on a connection of its own; the body follows (sendall), then status_of."""
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=60)
    sock.sendall(f"PUT {s.target()} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {s.ctype}\r\n"
                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
    return sock


def status_of(sock):
    with sock:
        raw = b""
        while True:
            b = sock.recv(65536)
            if not b:
                return parse_response(raw).status
            raw += b


def upload_across_broken_commit(db, mode, delay=0.2, slow_commit=False, clients=3, batch=1):
    """The upload server's ledger connection goes through a PgProxy. After a first upload,
    the proxy is armed and `clients` uploads begin (their small bodies are taken whole: each
    claims its slot in its completion's transaction); then their bodies go at once, and the first COMMIT of a batch of
    completions breaks as `mode` says (pg_proxy.py). batch > 1: the table of files is locked
    (SHARE) while the first body goes, so that completion's batch waits there, and the other
    uploads, published meanwhile, queue behind it as one group commit: that second batch is
    the one broken. Then one upload more. Every upload's fate is checked against the ledger:
    a 201 has exactly its row (its user, its sha256), GET serves its bytes, they count once
    in usage, one "upload" audit row, its reservation gone; anything else is a 503 with no
    row and no file (its reservation may stay, its bytes held once). slow_commit: a deferred
    trigger makes each COMMIT take a second (the break lands while PostgreSQL is still
    committing). Returns the statuses, in order."""
    new_database(db)
    with PgProxy(pg().port) as proxy, UploadServer(ledger_path=proxy.url(db)) as srv:
        def sql(q):
            return pg().sql(q, db)

        body = os.urandom(700)
        s = srv.slot(len(body), filename="first.bin")
        eq(put(s.put_url, body).status, 201, "PUT before the fault")
        done = [(s, body, 201)]  # (slot, body, status)
        if slow_commit:
            sql("CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS"
                " $$BEGIN PERFORM pg_sleep(1); RETURN NULL; END$$;"
                " CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON files"
                " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()")
        proxy.arm(mode, INSERT_FILE, delay, nth=1 if batch == 1 else 2)
        during = []
        for i in range(clients):
            body = os.urandom(800 + i)
            s = srv.slot(len(body), filename=f"during-{i}.bin")
            during.append((s, body, send_head(srv, s, body)))
        if batch > 1:
            def lock_files():
                try:
                    sql("BEGIN; LOCK TABLE files IN SHARE MODE; SELECT pg_sleep(60); COMMIT")
                except RuntimeError:
                    pass  # cancelled, below: the lock is gone

            locker = threading.Thread(target=lock_files)
            locker.start()
            locked = "FROM pg_locks WHERE relation = 'files'::regclass AND mode = 'ShareLock'"
            wait_for(lambda: sql(f"SELECT COUNT(*) {locked}") == "1", what="the lock on files")
            during[0][2].sendall(during[0][1])
            wait_for(lambda: sql("SELECT COUNT(*) FROM pg_locks WHERE NOT granted"
                                 " AND relation = 'files'::regclass") == "1",
                     what="the first completion waiting for the lock")
            for s, body, sock in during[1:]:
                sock.sendall(body)
            wait_for(lambda: set(keys(*(s.path for s, _, _ in during[1:])))
                     <= set(srv.visible_files()), what="the other uploads published")
            time.sleep(0.3)  # from published to queued for the group commit
            sql(f"SELECT pg_cancel_backend(pid) {locked}")
            locker.join(30)
        else:
            for s, body, sock in during:
                sock.sendall(body)
        for s, body, sock in during:
            done.append((s, body, status_of(sock)))
        assert proxy.fired.is_set(), "the proxy never saw a COMMIT to break"
        if batch > 1:
            eq(proxy.faulted_binds, batch, "completions in the batch broken")
        # one more upload, retried as a client would while the ledger reconnects (at most once
        # a second)
        body = os.urandom(900)
        s = srv.slot(len(body), filename="after.bin")
        wait_for(lambda: put(s.put_url, body).status == 201, timeout=5, interval=0.5,
                 what="a 201 after the fault")
        done.append((s, body, 201))

        acked = {s.path: body for s, body, st in done if st == 201}
        refused = [s.path for s, _, st in done if st != 201]
        eq(sorted({st for _, _, st in done if st != 201}), [503] if refused else [],
           "statuses other than 201")
        got = sql("SELECT path, \"user\", sha256 FROM files ORDER BY path")
        got = dict((l.split("|")[0], tuple(l.split("|")[1:])) for l in got.splitlines())
        eq(got, {p: ("alice@localhost", hashlib.sha256(b).hexdigest()) for p, b in acked.items()},
           "the rows: exactly one per 201, with its user and sha256")
        for s, body, st in done:
            r = curl(s.get_url)
            eq((r.status, r.body) if st == 201 else r.status,
               (200, body) if st == 201 else 404, f"GET {s.path} after a {st}")
        eq(sorted(srv.visible_files()), keys(*acked), "published files")
        # a refused upload may keep its hold (for the client's retry, until its token expires)
        left = [l.split("|") for l in
                sql("SELECT path, size, counted FROM reservations").splitlines()]
        eq(sorted({p for p, _, _ in left} - set(refused)), [],
           "reservations left by acknowledged uploads")
        eq(sql("SELECT stored, held FROM usage WHERE \"user\" = 'alice@localhost'"),
           f"{sum(len(b) for b in acked.values())}|{sum(int(n) for _, n, c in left if c == '1')}",
           "usage: stored, held")
        eq(sql("SELECT path FROM audit WHERE event = 'upload' ORDER BY path").splitlines(),
           sorted(acked), "one upload audit row each")
        srv.assert_clean_exit()
        return [st for _, _, st in done]


@test
def commit_applied_but_its_answer_lost():
    """The COMMIT of a batch of two completions reaches PostgreSQL, which commits (200 ms), and
    the connection breaks before its answer: the batch is in the ledger, so its uploads are
    acknowledged (before the fix: 503, the files taken back, their rows left behind and
    counted in usage)."""
    statuses = upload_across_broken_commit("lost_answer", "after", batch=2)
    eq(statuses, [201] * len(statuses), "statuses")


@test
def commit_never_sent():
    """The connection breaks just before the COMMIT: nothing was applied, and the batch is run
    again on a new connection: 201s, each with its one row."""
    statuses = upload_across_broken_commit("never_sent", "before", batch=2)
    eq(statuses, [201] * len(statuses), "statuses")


@test
def commit_never_sent_postgres_unaware():
    """The client's side breaks before the COMMIT, but PostgreSQL's session stays open, idle
    in the transaction with the user's usage row locked (as across a partition): the lookup
    ends that session, finds the transaction rolled back, and the batch is run again."""
    statuses = upload_across_broken_commit("unaware", "before_silent")
    eq(statuses, [201] * len(statuses), "statuses")


@test
def commit_still_running_when_the_connection_breaks():
    """The connection breaks right after the COMMIT was sent while PostgreSQL takes a second
    to commit (a deferred trigger): the rows are not there yet when the server looks, and the
    transaction is not over. It is decided first (ended, or finished), then each upload is
    answered by what the ledger holds: never a 201 without its row, never a row without its
    file."""
    upload_across_broken_commit("still_running", "after", delay=0, slow_commit=True, clients=2)


if __name__ == "__main__":
    try:
        main()
    finally:
        if PG is not None:
            PG.close()
