#!/usr/bin/python3
"""The PostgreSQL ledger, against a private PostgreSQL from Debian's package (test/lib/postgres.py,
started once for this file): the ledger's C unit tests with HU_TEST_LEDGER_URL set, the upload
server recording its uploads in PostgreSQL (ledger_path: postgresql://...), and PostgreSQL
stopped in the middle of a stream of uploads and started again: no upload is acknowledged
without its row, no acknowledged row is lost, and the server takes uploads again by itself.
An image's media metadata lands in its PostgreSQL row as in an SQLite one.
A missing package (postgresql, or a build without libpq) is a failure, not a skip."""

import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import ROOT, VARIANT, UploadServer, curl, eq, keys, main, put, test  # noqa: E402
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
    JPEG (type_ok false), and for random bytes (a type, no image)."""
    url = new_database("media")

    def fixture(name):
        with open(os.path.join(ROOT, "test", "fixtures", "media", name), "rb") as f:
            return f.read()

    with UploadServer(ledger_path=url) as srv:
        want = {}
        for name, body, ctype, real_type, type_ok, thumb in [
                ("cat.jpg", fixture("baseline.jpg"), "image/jpeg", "image/jpeg", "t", "t"),
                ("liar.jpg", fixture("rgba.png"), "image/jpeg", "image/png", "f", "t"),
                ("noise.bin", os.urandom(2000), "application/octet-stream",
                 "application/octet-stream", "t", "f")]:
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
        results, lock, stop = [], threading.Lock(), threading.Event()

        def client(n):
            i = 0
            while not stop.is_set():
                body = os.urandom(512 + n)
                s = srv.slot(len(body), filename=f"c{n}-{i}.bin")
                status = put(s.put_url, body, "--max-time", "20").status
                with lock:
                    results.append((time.monotonic(), s.path, status))
                i += 1

        threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.0)
            down_at = time.monotonic()
            pg().stop("fast")
            time.sleep(2.0)
            up_at = time.monotonic()
            pg().start()
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                with lock:
                    resumed = [r for r in results if r[0] > up_at + 0.2 and r[2] == 201]
                if len(resumed) >= 8:
                    break
                time.sleep(0.2)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
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
        resumed = [r for r in results if r[0] > up_at + 0.2 and r[2] == 201]
        assert len(resumed) >= 8, f"service did not resume: {len(resumed)} uploads after restart"
        print(f"# {len(acked)} acknowledged, {len(failed)} refused during the outage"
              f" (statuses {statuses}), {len(recorded)} rows", flush=True)
        srv.assert_clean_exit()


if __name__ == "__main__":
    try:
        main()
    finally:
        if PG is not None:
            PG.close()
