#!/usr/bin/python3
"""The scale-out deployment end to end (test/lib/cluster.py, what `make cluster-demo` runs):
two ejabberd 23.01 nodes in one mnesia cluster, one PostgreSQL ledger, two upload servers on
one storage directory behind HAProxy. Real XMPP clients (slixmpp) on both nodes:

  - fifty slot requests of one user racing across the two nodes get exactly the quota;
  - uploads through HAProxy land on both servers, every file reads back with its sha256 from
    either server and through HAProxy, `upload_usage` says the same on both nodes;
  - an upload server killed (SIGKILL) in the middle of an upload: the other keeps serving
    everything through HAProxy, and the cut upload is resumed (tus) through it;
  - PostgreSQL stopped under load and started again: no upload acknowledged without its row,
    every row has its file, slot requests on both nodes and uploads resume by themselves.

One cluster serves every test of this file, in order (a later test relies on the files of an
earlier one); it is stopped by PID at the end."""

import concurrent.futures
import hashlib
import os
import re
import socket
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from cluster import Cluster  # noqa: E402
from harness import Load, curl, eq, main, published_key, test, wait_for  # noqa: E402
from xmpp_clients import random_file, slix  # noqa: E402

KIB, MIB = 1 << 10, 1 << 20
CLUSTER = None
FILES = {}  # GET URL (through HAProxy) -> sha256 of what was uploaded there


def cluster():
    """The one cluster of this file, started on first use."""
    global CLUSTER
    if CLUSTER is None:
        start = time.monotonic()
        CLUSTER = Cluster().start()
        print(f"# cluster up in {time.monotonic() - start:.1f}s: nodes "
              f"{[n.node for n in CLUSTER.nodes]}, HAProxy {CLUSTER.url}, upload servers "
              f"{[s.port for s in CLUSTER.servers]}", flush=True)
    return CLUSTER


def user(name):
    """A fresh account on the cluster (registered on one node, known to both); its password
    is what xmpp_clients.slix uses."""
    cluster().register(name, "pw-" + name)
    return name, "pw-" + name


def usage(name):
    """upload_usage on each node: ["used U reserved R quota Q", ...]."""
    return [n.ctl("upload_usage", name, "localhost").stdout.strip() for n in cluster().nodes]


def sql(statement):
    return cluster().pg.sql(statement, "upload")


def put_slot(slot, body, ctype="application/octet-stream"):
    args = ["-X", "PUT", "--data-binary", "@-", "-H", f"Content-Type: {ctype}"]
    for name, value in slot["headers"].items():
        args += ["-H", f"{name}: {value}"]
    return curl(*args, slot["put"], data=body)


def sha(data):
    return hashlib.sha256(data).hexdigest()


def slot_path(url):
    """/upload/<slot>/<name> of a PUT or GET URL."""
    return "/upload/" + url.split("/upload/", 1)[1].split("?", 1)[0]


def served_by(path, method="PUT"):
    """The indexes of the upload servers whose access log has method path answered 2xx."""
    out = []
    for i in range(len(cluster().servers)):
        if any(re.search(rf'"{method} {re.escape(path)}" 2\d\d ', l) for l in cluster().access_log(i)):
            out.append(i)
    return out


def published(path):
    """Where the upload of P is on the shared storage (README "Storage")."""
    k = published_key(path)
    return os.path.join(cluster().storage, "files", k[:2], k)


def check_reads(urls, servers):
    """Every URL reads back with its sha256 through HAProxy and from each server given."""
    c = cluster()
    bad = []
    for url in urls:
        want = FILES[url]
        for where, u in [("haproxy", url)] + [(f"server {i}", c.direct(url, i)) for i in servers]:
            r = curl(u)
            if r.status != 200 or sha(r.body) != want:
                bad.append((where, u, r.status))
    eq(bad, [], "reads that failed or differ")


@test
def racing_slot_requests_on_both_nodes_get_exactly_the_quota():
    """50 slot requests of one user, 25 from a client on each node, all sent once both are in
    session; the quota holds 17 of them: 17 granted (on whichever node), 33 refused with
    resource-constraint, 17 reservations in the shared ledger."""
    c = cluster()
    name, pw = user("racer")
    size, k = 1000, 17
    c.nodes[1].ctl("upload_set_quota", name, "localhost", str(k * size))
    eq(usage(name), [f"used 0 reserved 0 quota {k * size}"] * 2, "the quota on both nodes")
    plan = {i: [(f"race{i}-{j}.bin", size, None) for j in range(25)] for i in (0, 1)}
    start = time.monotonic()
    results = c.slot_requests(name, pw, plan)
    took = time.monotonic() - start
    granted = {i: sum(1 for r in rs if "put" in r) for i, rs in results.items()}
    refused = sorted({r["error"] for rs in results.values() for r in rs if "error" in r})
    print(f"# granted {granted[0]} on node a, {granted[1]} on node b, in {took:.2f}s "
          f"(logins included)", flush=True)
    eq(granted[0] + granted[1], k, "granted")
    eq(refused, ["resource-constraint"], "refusals")
    eq(sql(f"SELECT count(*), sum(size) FROM reservations WHERE \"user\" = '{name}@localhost'"),
       f"{k}|{k * size}", "reservations in the ledger")
    eq(usage(name), [f"used 0 reserved {k * size} quota {k * size}"] * 2, "upload_usage")


@test
def uploads_through_haproxy_land_on_both_servers_and_read_back_from_either():
    """20 slots (10 asked on each node, sizes from 1 byte to 300 KiB) uploaded with curl
    through HAProxy, 4 at a time, and one file per node uploaded by slixmpp itself; each PUT
    is in exactly one server's access log, both servers took some; every file reads back with
    its sha256 through HAProxy and from both servers; upload_usage agrees on both nodes, also
    after an administrator deleted a file on the other node."""
    c = cluster()
    name, pw = user("bob")
    sizes = [1, 100, 4 * KIB, 64 * KIB, 300 * KIB] + [1000 + 997 * j for j in range(15)]
    plan = {i: [(f"f{i}-{j}.bin", sizes[i * 10 + j], None) for j in range(10)] for i in (0, 1)}
    slots = [s for rs in c.slot_requests(name, pw, plan).values() for s in rs]
    assert all("put" in s for s in slots), slots
    bodies = [os.urandom(n) for n in sizes]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda sb: put_slot(*sb).status, zip(slots, bodies)))
    eq(statuses, [201] * len(slots), "PUT statuses")
    for s, body in zip(slots, bodies):
        FILES[s["get"]] = sha(body)
    # a real client's own upload on each node (slot, PUT through HAProxy, GET URL)
    with tempfile.TemporaryDirectory() as d:
        for i, node in enumerate(c.nodes):
            path = random_file(d, f"slix{i}.jpg", 50 * KIB + i)
            r = slix(node, name, "upload", path)
            assert "get" in r, r
            assert r["get"].startswith(c.url + "/"), r
            FILES[r["get"]] = sha(open(path, "rb").read())
            slots.append({"put": r["get"], "get": r["get"]})
    where = {slot_path(s["put"]): served_by(slot_path(s["put"])) for s in slots}
    eq([p for p, w in where.items() if len(w) != 1], [], "PUTs not in exactly one access log")
    per_server = [sum(1 for w in where.values() if w == [i]) for i in (0, 1)]
    print(f"# PUTs per upload server: {per_server}", flush=True)
    assert all(per_server), f"one server took every upload: {per_server}"
    check_reads([s["get"] for s in slots], servers=(0, 1))
    total = sum(sizes) + 2 * 50 * KIB + 1
    eq(usage(name), [f"used {total} reserved 0 quota 1073741824"] * 2, "upload_usage")
    eq(sql(f"SELECT count(*), sum(size) FROM files WHERE \"user\" = '{name}@localhost'"),
       f"{len(slots)}|{total}", "rows in the ledger")
    # an administrator deletes one on node b: gone from both servers, both nodes agree
    gone = slots[3]["get"]
    c.nodes[1].ctl("upload_delete_file", "localhost", slot_path(gone)[len("/upload/"):])
    del FILES[gone]
    eq([curl(u).status for u in (gone, c.direct(gone, 0), c.direct(gone, 1))], [404] * 3,
       "a deleted file through HAProxy and from each server")
    total -= sizes[3]
    eq(usage(name), [f"used {total} reserved 0 quota 1073741824"] * 2, "upload_usage after it")


def cut_put(url, body, upto):
    """Starts a PUT of body through HAProxy and sends upto bytes of it; returns the socket."""
    port = int(url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
    target = "/" + url.split("//", 1)[1].split("/", 1)[1]
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall((f"PUT {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
               "Content-Type: application/octet-stream\r\n\r\n").encode())
    s.sendall(body[:upto])
    return s


def partial_writer(key_size):
    """(server index, bytes written) of the server that holds a partial upload of key_size
    bytes open under state/partial, or None."""
    for i, srv in enumerate(cluster().servers):
        if srv.proc is None or srv.proc.poll() is not None:
            continue
        for link, size in srv.open_storage_files().values():
            if "/state/partial/" in link and size >= key_size:
                return i, size
    return None


def tus(url, method, *extra, data=None):
    return curl("-X", method, "-H", "Tus-Resumable: 1.0.0", *extra, url, data=data)


@test
def one_server_killed_the_other_serves_and_resumes_the_cut_upload():
    """An 8 MiB PUT through HAProxy is cut by a SIGKILL of the server writing it (by PID).
    Through HAProxy: the tus HEAD tells what the killed server stored, PATCH completes it on
    the survivor, the file reads back; new uploads and every earlier file are served by the
    survivor; HAProxy marks the dead server DOWN. Started again, the server takes its share
    back and serves what was uploaded while it was down."""
    c = cluster()
    name, pw = user("carol")
    size = 8 * MIB
    plan = {0: [("big.mp4", size, "video/mp4")] + [(f"after{j}.bin", 2000 + j, None) for j in range(5)],
            1: [(f"after{j}.bin", 3000 + j, None) for j in range(5, 10)]}
    results = c.slot_requests(name, pw, plan)
    big, small = results[0][0], results[0][1:] + results[1]
    body = os.urandom(size)
    conn = cut_put(big["put"], body, 5 * MIB)
    try:
        victim, written = wait_for(lambda: partial_writer(1 * MIB), 20, "a server writing the PUT")
        pid = c.servers[victim].proc.pid
        c.servers[victim].kill()  # SIGKILL by PID (and reaped): the upload is cut where it stands
        eq(c.servers[victim].proc.returncode, -9, "the killed server's exit")
    finally:
        conn.close()
    survivor = 1 - victim
    print(f"# killed upload server {victim} (pid {pid}) after {written} bytes", flush=True)

    # right away (HAProxy may not have noticed yet): the cut upload resumes on the survivor
    head = tus(big["put"], "HEAD", "-I")
    eq(head.status, 200, "tus HEAD through HAProxy")
    offset = int(head.header("upload-offset"))
    assert 1 * MIB <= offset <= 5 * MIB, offset
    eq(head.header("upload-length"), str(size), "Upload-Length")
    r = tus(big["put"], "PATCH", "-H", "Content-Type: application/offset+octet-stream",
            "-H", f"Upload-Offset: {offset}", "--data-binary", "@-", data=body[offset:])
    eq((r.status, r.header("upload-offset")), (204, str(size)), "PATCH through HAProxy")
    eq(served_by(slot_path(big["put"]), "PATCH"), [survivor], "who completed the upload")
    FILES[big["get"]] = sha(body)

    # new uploads and every earlier file: all through the survivor
    bodies = [os.urandom(n) for n in [2000 + j for j in range(5)] + [3000 + j for j in range(5, 10)]]
    eq([put_slot(s, b).status for s, b in zip(small, bodies)], [201] * len(small), "PUTs")
    for s, b in zip(small, bodies):
        FILES[s["get"]] = sha(b)
    eq(sorted({tuple(served_by(slot_path(s["put"]))) for s in small}), [(survivor,)],
       "servers that took the new uploads")
    check_reads(list(FILES), servers=(survivor,))
    c.wait_backend(victim, "DOWN")

    # the server comes back: HAProxy sends it its share again, it serves the files it missed
    c.servers[victim].start()
    c.wait_backend(victim, "UP")
    check_reads([big["get"]] + [s["get"] for s in small], servers=(victim, survivor))
    used = size + sum(len(b) for b in bodies)
    eq(usage(name), [f"used {used} reserved 0 quota 1073741824"] * 2, "upload_usage")


@test
def postgres_stopped_under_load_and_restarted():
    """Four clients upload through HAProxy without pause (slots asked beforehand on both
    nodes); PostgreSQL stops (fast shutdown) for two seconds and comes back on its port.
    Every 201 has its row, every row its file, nothing is visible without either; uploads
    during the outage get 503, slot requests on each node a wait-type resource-constraint;
    afterwards slot requests on both nodes and uploads on both servers succeed again without
    restarting anything."""
    c = cluster()
    name, pw = user("dave")
    per_node = 200
    plan = {i: [(f"load{i}-{j}.bin", 700, None) for j in range(per_node)] for i in (0, 1)}
    slots = [s for rs in c.slot_requests(name, pw, plan).values() for s in rs]
    assert all("put" in s for s in slots), [s for s in slots if "put" not in s][:3]
    pool, pool_lock = iter(slots), threading.Lock()

    def client(_n, load):
        # as a client does: a refused upload is tried again on its slot a moment later
        while not load.stopped:
            with pool_lock:
                s = next(pool, None)
            if s is None:
                return
            body = os.urandom(700)
            while not load.stopped:
                status = put_slot(s, body).status
                load.add(s, status)
                if status == 201:
                    break
                time.sleep(0.1)
            time.sleep(0.02)

    outage = {}
    try:
        with Load(client) as load:
            time.sleep(1.0)
            down_at = time.monotonic()
            c.pg.stop("fast")
            time.sleep(0.3)
            outage = c.slot_requests(name, pw, {0: [("x.bin", 10, None)], 1: [("y.bin", 10, None)]},
                                     timeout=20)
            time.sleep(max(0.0, down_at + 2.0 - time.monotonic()))
            up_at = time.monotonic()
            c.pg.start()
            load.wait_resumed(up_at, timeout=20)
    finally:
        if c.pg.proc is None:
            c.pg.start()
    results = load.results

    eq([(r.get("error"), r.get("type")) for rs in outage.values() for r in rs],
       [("resource-constraint", "wait")] * 2, "slot requests while PostgreSQL is down")
    acked = {slot_path(s["put"])[len("/upload/"):] for _, s, st in results if st == 201}
    failed = [st for _, _, st in results if st != 201]
    out = sql(f"SELECT path FROM files WHERE \"user\" = '{name}@localhost'")
    recorded = set(out.splitlines()) if out else set()
    eq(sorted(acked - recorded), [], "201 without a ledger row")
    eq([p for p in sorted(recorded) if not os.path.exists(published(p))], [],
       "rows without their file")
    for s in {s["get"]: s for _, s, st in results if st != 201}.values():
        if slot_path(s["put"])[len("/upload/"):] not in acked | recorded:
            eq(curl(s["get"]).status, 404, f"unacknowledged upload visible: {s['get']}")
    assert [r for r in results if r[0] < down_at and r[2] == 201], "nothing before the outage"
    assert failed, "no upload failed while PostgreSQL was down"
    eq(sorted(set(failed)), [503], "statuses during the outage")
    resumed = load.resumed(up_at)
    assert len(resumed) >= 8, f"uploads did not resume: {len(resumed)} after the restart"
    eq(sorted({i for t, s, st in results if st == 201 and t > up_at
                for i in served_by(slot_path(s["put"]))}), [0, 1], "servers that resumed")
    after = c.slot_requests(name, pw, {0: [("z0.bin", 10, None)], 1: [("z1.bin", 10, None)]})
    eq([("put" in r) for rs in after.values() for r in rs], [True, True],
       "slot requests on both nodes after the restart")
    print(f"# {len(acked)} acknowledged, {len(failed)} attempts refused during the outage, "
          f"{len(recorded)} rows, {len(resumed)} uploads in the first moments after it",
          flush=True)
    u = usage(name)
    eq(u[0], u[1], "upload_usage on both nodes")


if __name__ == "__main__":
    try:
        main()
    finally:
        if CLUSTER is not None:
            start = time.monotonic()
            CLUSTER.stop()
            print(f"# cluster stopped in {time.monotonic() - start:.1f}s", flush=True)
