#!/usr/bin/python3
"""make bench: every workload against hmac-upload-server and the reference servers, started
privately on loopback in the same run, printed side by side with ratios and written to
bench/results.json. `--smoke` runs the same code paths small and short (make check).

References: nginx (Debian nginx-light, WebDAV `dav_methods PUT`, no auth, no fsync) with 2
workers and with 1, and ejabberd 23.01's built-in mod_http_upload (slots requested over a real
c2s connection). The HTTPS rows give both servers the same certificate (RSA 2048, self-signed,
made for the run). Runs of the servers compared in one row are interleaved (A B C A B C) and
the median run is kept: this VM's figures move 20-50 % from one run to the next.

Besides the rows against the references: issue 14's targets, each with met / not met; the
ledger backends side by side (SQLite file, private PostgreSQL from test/lib/postgres.py):
slot grants through the NIF and 64 KiB PUTs; where one 64 KiB upload's CPU goes (perf record
over a load run, grouped into parts), its syscalls (strace -c -f) and context switches."""

import argparse
import asyncio
import collections
import hashlib
import itertools
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "test", "lib"))
from ejabberd import Ejabberd  # noqa: E402
from harness import SECRET, Slot, UploadServer, free_port  # noqa: E402
from postgres import Postgres  # noqa: E402
from xmpp_clients import slix  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30


# ---- process accounting ------------------------------------------------------------------------

def family(pid):
    """pid and all its descendants (nginx: master + workers; PostgreSQL: postmaster + backends)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def cpu_seconds(pid):
    total = 0
    for p in family(pid):
        try:
            fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except OSError:
            pass
    return total / TICK


def rss_kib(pid):
    total = 0
    for p in family(pid):
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def context_switches(pid):
    """Voluntary + involuntary context switches of every thread of pid's family."""
    total = 0
    for p in family(pid):
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tids:
            try:
                for line in open(f"/proc/{p}/task/{t}/status"):
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
            except OSError:
                pass
    return total


# ---- the servers ------------------------------------------------------------------------------

def fresh_dir(prefix):
    """A new top-level directory (its own ext4 block group): under /tmp, where tests churn
    files, ext4 without a journal spends most of an inode allocation in recently_deleted()
    (../shared/notes/benchmarking.md; seen in perf here at over half the server's CPU)."""
    base = "/" if os.access("/", os.W_OK) else tempfile.gettempdir()
    return tempfile.mkdtemp(prefix=prefix, dir=base)


def certificate(d):
    """A self-signed certificate (with its key) for 127.0.0.1, in one PEM file."""
    pem = os.path.join(d, "bench.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", pem + ".key", "-out", pem + ".crt"], check=True, capture_output=True)
    with open(pem, "w") as out:
        out.write(open(pem + ".crt").read() + open(pem + ".key").read())
    return pem


OURS = "hmac-upload-server"
NG2, NG1 = "nginx, 2 workers", "nginx, 1 worker"
EJ = "ejabberd mod_http_upload"


class Ours:
    kind = "ours"

    def __init__(self, pem=None, name=None, aux_pid=None, **opts):
        self.name = name or OURS
        self.aux_pid = aux_pid  # another process whose CPU the upload costs (PostgreSQL)
        opts.setdefault("access_log", "none")
        # one user uploads everything here: the default 1 GiB quota would end a run early
        opts.setdefault("quota_per_user", "infinity")
        top = None
        if pem:
            top = {"certfiles": [pem]}
            opts["hmac_server_url"] = "https://127.0.0.1:0/upload"
        self.storage = fresh_dir("hu-bench-ours-")
        self.srv = UploadServer(max_size=4 * GIB, top=top, storage_dir=self.storage, **opts).start()
        self.pid = self.srv.proc.pid
        self.port = self.srv.port
        self.scheme = self.srv.scheme

    def put_target(self, size, name="f.bin"):
        s = Slot(self.srv.base, size, filename=name, ctype="application/octet-stream")
        return s.put_url.split(str(self.port), 1)[1], s.get_url.split(str(self.port), 1)[1]

    def stop(self):
        self.srv.stop()
        shutil.rmtree(self.srv.dir, ignore_errors=True)
        shutil.rmtree(self.storage, ignore_errors=True)


class Nginx:
    kind = "nginx"

    def __init__(self, pem=None, workers=2):
        self.name = f"nginx, {workers} worker{'s' if workers != 1 else ''}"
        self.dir = fresh_dir("hu-bench-nginx-")
        self.port = free_port()
        self.scheme = "https" if pem else "http"
        self.aux_pid = None
        tls = (f"""    ssl_certificate {pem};
    ssl_certificate_key {pem};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:1m;
""" if pem else "")
        os.makedirs(f"{self.dir}/root/upload")
        conf = f"{self.dir}/nginx.conf"
        with open(conf, "w") as f:
            f.write(("user root;\n" if os.geteuid() == 0 else "") + f"""daemon off;
worker_processes {workers};
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {self.dir}/tmp;
  client_max_body_size 0;
  sendfile on;
  server {{
    listen 127.0.0.1:{self.port}{" ssl" if pem else ""};
{tls}    root {self.dir}/root;
    location /upload/ {{ dav_methods PUT; create_full_put_path on; }}
  }}
}}
""")
        self.proc = subprocess.Popen(["nginx", "-p", self.dir, "-c", conf], stderr=subprocess.DEVNULL)
        self.pid = self.proc.pid
        deadline = time.time() + 10
        while time.time() < deadline:
            if subprocess.run(["curl", "-sk", "-o", "/dev/null", f"{self.scheme}://127.0.0.1:{self.port}/"]).returncode == 0:
                break
            time.sleep(0.05)

    def put_target(self, size, name="f.bin"):
        t = f"/upload/{uuid.uuid4()}/{name}"
        return t, t

    def stop(self):
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def Nginx1(pem=None):
    return Nginx(pem=pem, workers=1)


class _BuiltinEjabberd(Ejabberd):
    """The test suite's ejabberd with the built-in mod_http_upload, its docroot moved to a
    fresh top-level directory like the other servers' storage."""

    def __init__(self):
        super().__init__(builtin_upload=True)
        self.docroot = fresh_dir("hu-bench-ejabberd-")

    def write_config(self):
        super().write_config()
        with open(self.config) as f:
            text = f.read()
        with open(self.config, "w") as f:
            f.write(text.replace(f'docroot: "{self.dir}/builtin-upload"', f'docroot: "{self.docroot}"'))


class EjabberdBuiltin:
    """ejabberd's own upload; slots come over c2s (slixmpp, 32 requests in flight). A shared
    instance (shared()) serves the throughput rows of the whole run: its stop() does nothing
    (an ejabberd start costs ~8 s); the RSS rows start their own."""
    name = EJ
    kind = "ejabberd"
    _shared = None

    def __init__(self, pem=None):
        assert pem is None, "the built-in is benchmarked over plain HTTP only"
        self.ej = _BuiltinEjabberd().start()
        self.ej.register("bench", "pw-bench")
        self.pid = self.ej.pid()
        self.port = self.ej.http_port
        self.scheme = "http"
        self.aux_pid = None
        self.kept = False

    @classmethod
    def shared(cls, pem=None):
        if cls._shared is None:
            cls._shared = cls()
            cls._shared.kept = True
        return cls._shared

    @classmethod
    def close_shared(cls):
        if cls._shared is not None:
            cls._shared.close()
            cls._shared = None

    def slots(self, n, size):
        urls = []
        while len(urls) < n:  # in calls of at most 20,000 (the client's 120 s timeout)
            k = min(20000, n - len(urls))
            r = slix(self.ej, "bench", "slot-urls", str(k), str(size))
            urls += [u.split(str(self.port), 1)[1] for u in r["put"]]
        return urls

    def put_target(self, size, name="f.bin"):
        t = self.slots(1, size)[0]
        return t, t  # the built-in serves GETs at the PUT URL

    def stop(self):
        if not self.kept:
            self.close()

    def close(self):
        self.ej.stop()
        shutil.rmtree(self.ej.docroot, ignore_errors=True)


_TARGETS = {}


def targets_for(server, n, size, name="s.bin", ctype="application/octet-stream"):
    """n fresh upload targets: minted slots for ours (the same secret on every instance, so a
    list serves every fresh instance; 600,000 take ~12 s to mint), fresh paths for nginx,
    slots over c2s for the built-in (never reused)."""
    if server.kind == "ejabberd":
        return server.slots(n, size)
    key = (server.kind, n, size, name, ctype)
    if key not in _TARGETS:
        _TARGETS[key] = mint(n, size, name, ctype) if server.kind == "ours" else \
            [server.put_target(size, name)[0] for _ in range(n)]
    return _TARGETS[key]


def mint(n, size, name, ctype="application/octet-stream"):
    """n Bearer slots for ours (any instance: they share the secret), signed with ctype, as
    request targets."""
    return [Slot("http://127.0.0.1/upload", size, filename=name, ctype=ctype).target()
            for _ in range(n)]


# ---- workloads --------------------------------------------------------------------------------

def big_file(d, size, name="big.bin"):
    path = os.path.join(d, name)
    block = hashlib.sha256(b"bench").digest() * (MIB // 32)
    with open(path, "wb") as f:
        for i in range(size // MIB):
            f.write(i.to_bytes(8, "little") + block[8:])
    return path


def sha256_floor():
    """OpenSSL EVP sha256 over 1 MiB buffers (SHA-NI where the CPU has it): CPU s/GiB, the
    least a server that hashes every byte can spend on it."""
    p = subprocess.run(["openssl", "speed", "-mr", "-evp", "sha256", "-bytes", str(MIB),
                        "-seconds", "3"], capture_output=True, text=True, timeout=120)
    m = re.search(r"^\+F:\d+:sha256:([0-9.]+)", p.stdout, re.M)
    assert m, p.stdout + p.stderr
    return {"bytes_s": float(m.group(1)), "cpu_s_per_gib": GIB / float(m.group(1))}


def big_put_get(server, src, size):
    put_t, get_t = server.put_target(size, "big.bin")
    cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
    base = f"{server.scheme}://127.0.0.1:{server.port}"
    p = subprocess.run(["curl", "-ksS", "-o", "/dev/null", "-w", "%{http_code}", "-T", src,
                        base + put_t], capture_output=True, text=True)
    put_s, put_cpu = time.monotonic() - t0, cpu_seconds(server.pid) - cpu0
    assert p.stdout in ("200", "201", "204"), (server.name, p.stdout, p.stderr)
    cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
    p = subprocess.run(["curl", "-ksS", "-o", "/dev/null", "-w", "%{http_code}", base + get_t],
                       capture_output=True, text=True)
    get_s, get_cpu = time.monotonic() - t0, cpu_seconds(server.pid) - cpu0
    assert p.stdout == "200", (server.name, p.stdout)
    gib = size / GIB
    return {"put_mb_s": size / put_s / 1e6, "put_wall_s": put_s, "put_cpu_s_per_gib": put_cpu / gib,
            "get_mb_s": size / get_s / 1e6, "get_wall_s": get_s, "get_cpu_s_per_gib": get_cpu / gib}


def small_puts(server, targets, size, conns, seconds, body_file=None, ctype=None):
    """wrk PUTs, each to the next fresh target. Server CPU per upload (with aux_pid's, e.g.
    PostgreSQL's, also on its own), context switches per upload (all threads, /proc)."""
    d = tempfile.mkdtemp(prefix="hu-wrk-")
    try:
        threads = min(2, conns)
        for t in range(threads):
            with open(f"{d}/urls.{t}", "w") as f:
                f.write("\n".join(targets[t::threads]) + "\n")
        aux = getattr(server, "aux_pid", None)
        cpu0, cs0 = cpu_seconds(server.pid), context_switches(server.pid)
        aux0 = cpu_seconds(aux) if aux else 0
        p = subprocess.run(["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{seconds}s",
                            "--timeout", "10s", "-s", os.path.join(HERE, "put_urls.lua"),
                            f"{server.scheme}://127.0.0.1:{server.port}", "--", f"{d}/urls",
                            *([body_file, ctype] if body_file else [str(size)])],
                           capture_output=True, text=True, timeout=seconds + 60)
        line = [l for l in p.stdout.splitlines() if l.startswith("{")]
        assert line, (p.stdout, p.stderr)
        r = json.loads(line[-1])
        ok = r["requests"] - r["non2xx"]
        cpu, cs = cpu_seconds(server.pid) - cpu0, context_switches(server.pid) - cs0
        aux_cpu = cpu_seconds(aux) - aux0 if aux else 0
        rss = rss_kib(server.pid) / 1024
        per = (lambda x: x / ok) if ok else (lambda x: 0)
        return {"uploads_s": ok / (r["duration_us"] / 1e6), "uploads": ok,
                "cpu_us": per(cpu) * 1e6, "aux_cpu_us": per(aux_cpu) * 1e6,
                "ctx_switches": per(cs), "rss_mib_after": rss,
                "p50_ms": r["p50_us"] / 1000,
                "p99_ms": r["p99_us"] / 1000, "non2xx": r["non2xx"], "errors": r["errors"],
                "exhausted": r["requests"] > len(targets)}
    finally:
        shutil.rmtree(d, ignore_errors=True)


def median(runs, key):
    return sorted(runs, key=lambda r: r[key])[len(runs) // 2]


def interleaved(makers, run, rounds, key="uploads_s"):
    """Runs run(server) on a fresh server of each maker, A B A B ..., rounds times; returns
    each server's median run (by key), with the runs' spread."""
    runs = {}
    for _ in range(rounds):
        for make in makers:
            s = make()
            try:
                r = run(s)
                runs.setdefault(s.name, []).append(r)
            finally:
                s.stop()
            # the next run must not pay for this one's writeback (1 MiB rows: 4 GB of dirty
            # pages; without it the second of A B lost 5-10 %)
            os.sync()
    out = {}
    for name, rs in runs.items():
        out[name] = dict(median(rs, key), runs=[round(r[key], 1) for r in rs])
    return out


def photo(d):
    """A 2000x1500 JPEG of about 1 MiB (a phone photo's size, noise so it does not shrink)."""
    from PIL import Image
    path = os.path.join(d, "photo.jpg")
    w, h = 2000, 1500
    img = Image.frombytes("RGB", (w, h), os.urandom(w * h * 3)).resize((w, h))
    for q in (60, 40, 25, 15):
        img.save(path, "JPEG", quality=q)
        if os.path.getsize(path) <= 1100 * 1024:
            break
    return path


def photo_puts(server, path, conns, seconds):
    size = os.path.getsize(path)
    return small_puts(server, targets_for(server, 20000, size, "photo.jpg", "image/jpeg"), size,
                      conns, seconds, path, "image/jpeg")


async def slow_clients(server, targets, size):
    """Uploads that started and then stall: the server must hold them in little memory."""
    conns = []
    for t in targets:
        r, w = await asyncio.open_connection("127.0.0.1", server.port)
        w.write(f"PUT {t} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {size}\r\n\r\n".encode()
                + b"x" * 1024)
        await w.drain()
        conns.append((r, w))
    await asyncio.sleep(1.5)
    rss = rss_kib(server.pid)
    for _, w in conns:
        w.close()
    return rss


def slow_uploads(server, n):
    targets = targets_for(server, n, MIB, "slow.bin")
    return {"rss_mib": asyncio.run(slow_clients(server, targets, MIB)) / 1024, "connections": n}


async def slow_readers(server, target, n):
    """n GETs of a large file, each reader taking 4 KiB every 0.5 s (8 KiB/s) once the first
    64 KiB came: the server's memory per stalled download is what counts. The peak RSS of
    six samples over 3 s, once all n are connected."""
    stop = asyncio.Event()
    first = []

    async def one():
        r, w = await asyncio.open_connection("127.0.0.1", server.port, limit=16 * KIB)
        w.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        await w.drain()
        head = await r.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head[:100]
        got = 0
        while got < 64 * KIB:
            b = await r.read(16 * KIB)
            assert b, "connection closed"
            got += len(b)
        first.append(got)
        while not stop.is_set():
            await asyncio.sleep(0.5)
            if not await r.read(4 * KIB):
                break
        w.close()

    tasks = []
    for i in range(n):
        tasks.append(asyncio.ensure_future(one()))
        if i % 50 == 49:
            await asyncio.sleep(0.05)
    deadline = time.monotonic() + 60
    while len(first) < n and time.monotonic() < deadline:
        if any(t.done() and t.exception() for t in tasks):
            break
        if rss_kib(server.pid) > 4 * GIB // KIB:  # a server that buffers whole files: stop
            break
        await asyncio.sleep(0.1)
    failed = [t.exception() for t in tasks if t.done() and t.exception()]
    peak = 0
    for _ in range(6):
        await asyncio.sleep(0.5)
        peak = max(peak, rss_kib(server.pid))
    connected = len(first)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    # a reference server may give up on some (reported); ours must hold them all
    assert server.kind != "ours" or (not failed and connected == n), (len(first), failed[:3])
    return {"rss_mib": peak / 1024, "connections": n, "reading": connected,
            "failed": [repr(e)[:120] for e in failed[:3]]}


def slow_downloads(server, src, n):
    size = os.path.getsize(src)
    put_t, get_t = server.put_target(size, "large.bin")
    p = subprocess.run(["curl", "-ksS", "-o", "/dev/null", "-w", "%{http_code}", "-T", src,
                        f"{server.scheme}://127.0.0.1:{server.port}{put_t}"],
                       capture_output=True, text=True)
    assert p.stdout in ("200", "201", "204"), (server.name, p.stdout, p.stderr)
    return dict(asyncio.run(slow_readers(server, get_t, n)), file_mib=size / MIB)


def nif_rate(n):
    code = (f"S = <<\"{SECRET}\">>, N = {n}, "
            "T0 = erlang:monotonic_time(), "
            "[ {ok, _} = hmac_upload_nif:mint_bearer(S, <<\"alice@localhost\">>, <<\"6f1c2a0e-3b7d-4c55-9a2e-0d9b1e2f3a4b/photo.jpg\">>, I, <<\"image/jpeg\">>, 1800000000) || I <- lists:seq(1, N)], "
            "T1 = erlang:monotonic_time(), "
            "[ base64:encode(crypto:mac(hmac, sha256, S, [<<\"bearer\">>, 0, <<\"alice@localhost\">>, 0, <<\"6f1c2a0e-3b7d-4c55-9a2e-0d9b1e2f3a4b/photo.jpg\">>, 0, integer_to_binary(I), 0, <<\"image/jpeg\">>, 0, <<\"1800000000\">>])) || I <- lists:seq(1, N)], "
            "T2 = erlang:monotonic_time(), "
            "F = fun(A, B) -> N / (erlang:convert_time_unit(B - A, native, microsecond) / 1.0e6) end, "
            "io:format(\"~p ~p~n\", [F(T0, T1), F(T1, T2)]), halt().")
    p = subprocess.run(["erl", "-noshell", "-pa", os.path.join(ROOT, "ebin"), "-eval", code],
                       capture_output=True, text=True, timeout=300)
    nif, erl = (float(x) for x in p.stdout.split())
    return {"nif_calls_s": nif, "erlang_crypto_calls_s": erl}


def grants_beam(d):
    """bench/bench_grants.erl compiled into d."""
    os.makedirs(d, exist_ok=True)
    subprocess.run(["erlc", "-o", d, os.path.join(HERE, "bench_grants.erl")], check=True)
    return d


def bench_grants(beam, *args, timeout=1800):
    p = subprocess.run(["erl", "-noshell", "-pa", os.path.join(ROOT, "ebin"), "-pa", beam,
                        "-run", "bench_grants", *[str(a) for a in args]],
                       capture_output=True, text=True, timeout=timeout)
    out = p.stdout.split()
    assert p.returncode == 0 and out, (args[:1], p.stdout[-2000:], p.stderr[-2000:])
    return [float(x) for x in out]


def grant_rate(beam, ledger, n, callers, handles, via="nif"):
    """Grants through the NIF: n split over callers (each its own user), on handles ledger
    handles, each its own call (via nif) or in groups as the module makes them (via group;
    bench_grants.erl)."""
    rate, errors, p99 = bench_grants(beam, "rate", ledger, n, callers, handles, via)
    return {"grants_s": rate, "errors": int(errors), "p99_ms": p99}


# (callers, handles, via) of the grant-rate rows: one caller; 8 on one handle (one node) and on
# 8 (8 nodes); 32 on one handle one by one and in groups, as the module makes them
GRANT_RUNS = ((1, 1, "nif"), (8, 1, "nif"), (8, 8, "nif"), (32, 1, "nif"), (32, 1, "group"))


def grant_cost(beam, ledger, earlier, batch=2000):
    """One user, a finite quota (so every grant checks it), each grant held 300 s: the rate
    of the first `batch`, and of a `batch` after `earlier` more. A grant must cost the same
    either way."""
    first, after = bench_grants(beam, "cost", ledger, batch, earlier)
    return {"first_grants_s": first, "after_grants_s": after, "earlier": earlier, "batch": batch}


def slot_rate(ej, n, window=32):
    """n slot requests from one slixmpp client (window in flight), and the CPU ejabberd spent
    per request: the client shares the two cores, so the rate is bounded by it as much as by
    the server; the CPU per request is the server's own cost."""
    cpu0 = cpu_seconds(ej.pid())
    r = slix(ej, "bench", "slots", str(n), "1000", str(window))
    cpu = cpu_seconds(ej.pid()) - cpu0
    lat = sorted(r["latencies"])
    return {"slots_s": n / r["seconds"], "p50_ms": lat[len(lat) // 2] * 1000,
            "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000, "server_cpu_us": cpu / n * 1e6}


# ---- where one small upload's CPU goes -------------------------------------------------------

# Parts of one upload, from perf callchains (kernel frames and the user frames DWARF unwinding
# recovers): a sample belongs to the first part (in this order) with a matching frame
# anywhere in its chain. Samples that unwinding left without a telling frame are "other".
_FSYNC = r"__x64_sys_fsync|__x64_sys_fdatasync|do_fsync|vfs_fsync_range|ext4_sync_file|__libc_fsync|fsync|fdatasync"
_REGEX = r"re_\w+|build_trtable|regexec\w*|__GI___regexec|regcomp|check_matching|transit_state\w*|group_nodes_into_DFAstates|create_cd_newstate|calc_eclosure\w*|check_halt_\w+|bitset_\w+|match_ctx_\w+|create_token_tree|parse_expression|duplicate_node\w*"
PARTS = [
    ("media probe (libmagic, image decode)", r"hu_upload_media_probe|hu_media_\w+|magic_\w+|" + _REGEX,
     r"libmagic|libjpeg|libpng|libwebp|libgif|libtiff"),
    ("fsync dir", r"sync_shard|fsync_dir_at|link_published", None),
    ("ledger (incl. group-commit wait)",
     r"hu_server_ledger_\w+|commit_group|hu_ledger_\w+|hu__ledger_\w+|sq_\w+|sqlite3\w*|PQ\w+|pq\w+",
     r"libsqlite3|libpq"),
    ("fsync file", _FSYNC, None),
    ("recv/parse/HMAC", r"hu_upload_authorize\w*|hu_token_\w+|check_bearer|check_token|authorize|HMAC\w*|hu_hmac\w*", None),
    ("sha256", r"EVP_Digest\w*|sha256_block\w*|SHA256\w*|ossl_sha256\w*", None),
    ("pwrite", r"hu_storage_write|__x64_sys_pwrite64|__libc_pwrite64|sync_file_range|__x64_sys_sync_file_range", None),
    ("link/publish (open, xattr, link, mkdir, close)",
     r"hu_storage_\w+|hu_meta_\w+|begin_job|publish_job|write_publish_job|__x64_sys_linkat|__x64_sys_mkdirat|__x64_sys_unlinkat", None),
    ("response", r"answer|hu_response_\w+|created_body|hu_conn_send\w*|hu_conn_write|uv_write\w*|uv__write\w*|uv_try_write|__x64_sys_sendmsg|__x64_sys_writev|__x64_sys_sendto|__x64_sys_write|hu_transport_send\w*", None),
    ("pool hand-offs", r"uv_queue_work|uv__work_\w+|uv_async_\w+|uv__async_\w+|__x64_sys_futex|futex_\w+|pthread_cond_\w+|uv_cond_\w+|uv_mutex_\w+|uv_sem_\w+|write_done|begin_done|publish_done|hu_conn_job_\w+|start_thread", None),
    ("recv/parse/HMAC", r"hu_transport_recv|do_read|uv__read|llhttp\w*|hu_http_\w+|conn_\w+|hu_conn_\w+|hu_upload_\w+|hu_request_\w+|__x64_sys_recvfrom|__x64_sys_read|upload_data|on_\w+", None),
    ("event loop (epoll, timers, accept)", r"epoll_\w+|uv__io_poll|uv_run|uv__run_\w+|uv_timer_\w+|uv__server_io|__x64_sys_accept4?|do_accept", None),
]
_PARTS_RE = [(n, re.compile(rf"^(?:{s})$") if s else None, re.compile(d) if d else None) for n, s, d in PARTS]
PART_ORDER = ["recv/parse/HMAC", "pwrite", "sha256", "fsync file", "fsync dir",
              "link/publish (open, xattr, link, mkdir, close)", "ledger (incl. group-commit wait)",
              "media probe (libmagic, image decode)", "pool hand-offs", "response",
              "event loop (epoll, timers, accept)", "other (unwinding found no telling frame)"]


def classify_samples(script_text):
    counts = collections.Counter()
    for block in script_text.split("\n\n"):
        frames = []
        for line in block.splitlines()[1:]:
            m = re.match(r"\s*[0-9a-f]+ (.*) \((.*)\)$", line)
            if m:
                frames.append((re.sub(r"\+0x[0-9a-f]+$", "", m.group(1)), m.group(2)))
        if not frames:
            continue
        part = "other (unwinding found no telling frame)"
        for name, sym, dso in _PARTS_RE:
            if any((sym and sym.match(s)) or (dso and dso.search(d)) for s, d in frames):
                part = name
                break
        counts[part] += 1
    return counts


def have(tool):
    return shutil.which(tool) is not None


def warm_up(server, targets, size, conns):
    """A short run first: the thread pool, its per-thread contexts and the page cache are then
    as they are under load."""
    small_puts(server, targets, size, conns, 1)


def profile_parts(targets, size, conns, seconds):
    """perf record -a (cpu-clock; per-process sampling misses threads that run in short bursts
    on this VM) with DWARF callchains over a wrk run against a fresh server; the samples of the
    server's threads grouped into parts, each part's share of the server's CPU per upload."""
    if not have("perf"):
        return {"error": "perf not installed (Debian linux-perf)"}
    d = tempfile.mkdtemp(prefix="hu-perf-")
    s = Ours()
    try:
        warm_up(s, targets[-20000:], size, conns)
        data = os.path.join(d, "perf.data")
        rec = subprocess.Popen(["perf", "record", "-a", "-F", "499", "--call-graph", "dwarf,16384",
                                "-o", data, "--", "sleep", str(seconds)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(0.3)
        run = small_puts(s, targets[:-20000], size, conns, seconds)
        err = rec.communicate(timeout=120)[1]
        pid = s.pid
    finally:
        s.stop()
    try:
        if rec.returncode != 0:
            return {"error": f"perf record: exit {rec.returncode}: {err.strip()[-300:]}"}
        p = subprocess.run(["perf", "script", "-i", data, "--pid", str(pid), "-F", "tid,ip,sym,dso"],
                           capture_output=True, text=True, timeout=600)
        counts = classify_samples(p.stdout)
        total = sum(counts.values())
        if not total:
            return {"error": "perf recorded no samples of the server: " + p.stderr[-300:]}
        parts = {k: {"samples": v, "share": v / total, "us": run["cpu_us"] * v / total}
                 for k, v in counts.items()}
        return {"parts": parts, "samples": total, "cpu_us": run["cpu_us"],
                "uploads_s": run["uploads_s"], "ctx_switches": run["ctx_switches"], "seconds": seconds}
    finally:
        shutil.rmtree(d, ignore_errors=True)


def syscall_counts(make, targets, size, conns, seconds):
    """strace -c -f attached to every thread of the server (all processes: nginx's workers)
    over a wrk run after a warm-up: syscalls per upload, by name. strace slows the server
    many times over: only the counts mean anything."""
    if not have("strace"):
        return {"error": "strace not installed"}
    d = tempfile.mkdtemp(prefix="hu-strace-")
    s = make()
    try:
        warm_up(s, targets[-20000:], size, conns)
        out = os.path.join(d, "strace.txt")
        cmd = ["strace", "-c", "-f", "-o", out] + [a for p in family(s.pid) for a in ("-p", str(p))]
        tr = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        run = small_puts(s, targets[:-20000], size, conns, seconds)
        tr.send_signal(signal.SIGINT)
        tr.wait(60)
        by_name = {}
        for line in open(out):
            f = line.split()
            if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
                by_name[f[-1]] = int(f[3])
        ok = run["uploads"]
        return {"name": s.name, "uploads": ok, "per_upload": sum(by_name.values()) / ok if ok else 0,
                "top": {k: v / ok for k, v in sorted(by_name.items(), key=lambda kv: -kv[1])[:8]} if ok else {}}
    finally:
        s.stop()
        shutil.rmtree(d, ignore_errors=True)


# ---- the run ----------------------------------------------------------------------------------

def machine():
    model = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    return {"host": platform.node(), "nproc": os.cpu_count(), "cpu": model,
            "ram_gib": round(ram, 1), "kernel": platform.release(), "arch": platform.machine()}


class Errors(list):
    """A reference server's workload that failed is noted and the run goes on (a full run takes
    half an hour); --smoke fails on any."""

    def attempt(self, what, fn, *args):
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001
            self.append(f"{what}: {type(e).__name__}: {str(e)[:300]}")
            print(f"# error: {self[-1]}", flush=True)
            return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="small and short (make check)")
    args = ap.parse_args()
    smoke = args.smoke
    started = time.monotonic()
    big = 128 * MIB if smoke else GIB
    # a full run took 46 min with 20 s per wrk run (this VM shared with another benchmark):
    # 15 s per run keeps it near 40 min; the medians of interleaved runs matter more
    secs = 1 if smoke else 15
    rounds = 1 if smoke else 2
    conns = 16 if smoke else 64
    small = 64 * KIB
    slow_n = 100 if smoke else 1000
    n_targets = 20000 if smoke else 600000
    ej_slots = 8000 if smoke else 45000  # the built-in does up to ~2,000/s here
    results = {"machine": machine(), "smoke": smoke, "wrk_seconds": secs, "rounds": rounds,
               "workloads": {}}
    W = results["workloads"]
    errors = Errors()
    tmp = tempfile.mkdtemp(prefix="hu-bench-")

    def section(name):
        print(f"# [{time.monotonic() - started:6.0f} s] {name}", file=sys.stderr, flush=True)

    pg = None
    try:
        section("sha256 floor")
        W["sha256_floor"] = sha256_floor()
        # (1) one big PUT then GET, plain and over HTTPS. Each server runs twice, alternating,
        # and keeps its best run: on a VM the first pass over fresh memory is slower for
        # whoever goes first.
        section("big PUT/GET")
        src = big_file(tmp, big)
        pem = certificate(tmp)
        for key, cert, makers in (("big_put_get", None, (Ours, Nginx, Nginx1, EjabberdBuiltin.shared)),
                                  ("big_put_get_https", pem, (Ours, Nginx))):
            for make in makers * 2:
                s = make(pem=cert)
                try:
                    r = errors.attempt(f"{key} {s.name}", big_put_get, s, src, big)
                    best = W.setdefault(key, {}).get(s.name)
                    if r and (best is None or r["put_mb_s"] > best["put_mb_s"]):
                        W[key][s.name] = r
                finally:
                    s.stop()
                os.sync()  # as in interleaved(): the next server does not pay this writeback
        os.unlink(src)
        # (2) + (4) 64 KiB PUTs at 64 connections, a fresh slot per upload: ours with the
        # defaults and with each cost switched off, nginx with 2 workers and 1, the built-in
        section("64 KiB PUTs, 64 connections")
        W["small_puts"] = interleaved(
            (Ours, Nginx, Nginx1, EjabberdBuiltin.shared,
             lambda: Ours(name=OURS + ", ledger off", ledger_path="none"),
             lambda: Ours(name=OURS + ", fsync off", fsync=False),
             lambda: Ours(name=OURS + ", media off", media_metadata=False)),
            lambda s: small_puts(s, targets_for(s, ej_slots if s.kind == "ejabberd" else n_targets, small),
                                 small, conns, secs),
            rounds)
        # the same with random bytes, as most small XMPP uploads are (OMEMO encrypts files)
        section("64 KiB random-byte PUTs")
        noise = os.path.join(tmp, "random.bin")
        with open(noise, "wb") as f:
            f.write(os.urandom(small))
        W["small_puts_random"] = interleaved(
            (Ours, Nginx),
            lambda s: small_puts(s, targets_for(s, n_targets, small), small, conns, secs, noise,
                                 "application/octet-stream"),
            rounds)
        # sizes and connection counts, ours against nginx with 2 workers and with 1, interleaved
        section("PUT matrix")
        matrix = [(4 * KIB, 1)] if smoke else [(4 * KIB, 64), (MIB, 64), (small, 1), (small, 512)]
        for size, c in matrix:
            W.setdefault("small_puts_matrix", {})[f"{size}:{c}"] = interleaved(
                (Ours, Nginx, Nginx1),
                lambda s: small_puts(s, targets_for(s, n_targets if size < MIB else 60000, size),
                                     size, c, secs),
                rounds)
        # issue 13: the PostgreSQL ledger next to SQLite, the same run, interleaved
        section("ledger backends")
        pg = Postgres().start()
        W["postgresql"] = os.path.basename(os.path.dirname(pg.bindir))
        dbs = itertools.count()

        def pg_url():
            name = f"bench{next(dbs)}"
            pg.sql(f"CREATE DATABASE {name}")
            return pg.url(name)

        W["ledger_puts"] = interleaved(
            (lambda: Ours(name=OURS + ", SQLite ledger"),
             lambda: Ours(name=OURS + ", PostgreSQL ledger", ledger_path=pg_url(), aux_pid=pg.proc.pid)),
            lambda s: small_puts(s, targets_for(s, n_targets, small), small, conns, secs),
            rounds + (0 if smoke else 1))
        beam = grants_beam(os.path.join(tmp, "beam"))
        n_grants = 1000 if smoke else 10000
        grant_runs = {}
        for _ in range(rounds):
            for backend in ("SQLite", "PostgreSQL"):
                for callers, handles, via in GRANT_RUNS:
                    d = fresh_dir("hu-bench-ledger-")
                    try:
                        ledger = os.path.join(d, "ledger.sqlite3") if backend == "SQLite" else pg_url()
                        r = grant_rate(beam, ledger, n_grants, callers, handles, via)
                    finally:
                        shutil.rmtree(d, ignore_errors=True)
                    grant_runs.setdefault(f"{backend}:{callers}:{handles}:{via}", []).append(r)
        W["ledger_grants"] = {k: dict(median(rs, "grants_s"), runs=[round(r["grants_s"]) for r in rs])
                              for k, rs in grant_runs.items()}
        pg.close()
        pg = None
        # 1 MiB JPEGs with the media metadata (type, size, BlurHash, thumbnail) on and off
        section("1 MiB JPEG PUTs")
        jpeg = photo(tmp)
        W["photo_puts"] = interleaved(
            (lambda: Ours(), lambda: Ours(name=OURS + ", media off", media_metadata=False)),
            lambda s: photo_puts(s, jpeg, 16, secs), rounds)
        # the same over HTTPS (keep-alive: a handshake per connection, then many requests)
        section("64 KiB PUTs over HTTPS")
        W["small_puts_https"] = interleaved(
            (lambda: Ours(pem=pem), lambda: Nginx(pem=pem)),
            lambda s: small_puts(s, targets_for(s, n_targets, small), small, conns, secs), 1)
        _TARGETS.clear()
        # slot requests over c2s: the built-in against our module (SQLite ledger), interleaved
        section("slot requests over c2s")
        ej = Ejabberd({"quota_per_user": "infinity", "token_expiry": 3600}).start()
        try:
            ej.register("bench", "pw-bench")
            runs = {}
            for _ in range(rounds):
                for name, node in ((EJ, EjabberdBuiltin.shared().ej), ("mod_http_upload_hmac", ej)):
                    r = errors.attempt(f"slot requests {name}", slot_rate, node, 200 if smoke else 2000)
                    if r:
                        runs.setdefault(name, []).append(r)
            W["slot_requests"] = {k: dict(median(rs, "slots_s"), runs=[round(r["slots_s"]) for r in rs])
                                  for k, rs in runs.items()}
        finally:
            ej.stop()
        EjabberdBuiltin.close_shared()
        section("token minting, grant cost")
        W["nif_minting"] = nif_rate(20000 if smoke else 500000)
        d = fresh_dir("hu-bench-ledger-")
        try:
            W["grant_cost"] = grant_cost(beam, os.path.join(d, "ledger.sqlite3"), 5000 if smoke else 100000)
        finally:
            shutil.rmtree(d, ignore_errors=True)
        # where one 64 KiB upload's CPU goes; syscalls per upload
        section("per-part profile, syscalls")
        ours_t = mint(40000 if smoke else 300000, small, "p.bin")
        W["profile"] = profile_parts(ours_t, small, conns, 2 if smoke else 8)
        nginx_t = [f"/upload/{uuid.uuid4()}/p.bin" for _ in range(len(ours_t))]
        W["syscalls"] = {}
        for make, t in ((Ours, ours_t), (Nginx, nginx_t)):
            r = errors.attempt("strace", syscall_counts, make, t, small, conns, 2 if smoke else 4)
            if r:
                W["syscalls"][r.get("name", "?")] = r
        _TARGETS.clear()
        # (3) many slow uploads, many slow downloads: each server fresh for each
        section("slow uploads and downloads")
        large = big_file(tmp, 8 * MIB if smoke else 64 * MIB, "large.bin")
        for key, fn, arg in (("slow_uploads", slow_uploads, slow_n),
                             ("slow_downloads", lambda s, n: slow_downloads(s, large, n), slow_n)):
            for make in (Ours, Nginx, Nginx1, EjabberdBuiltin):
                s = make()
                try:
                    r = errors.attempt(f"{key} {s.name}", fn, s, arg)
                    if r:
                        W.setdefault(key, {})[s.name] = r
                finally:
                    s.stop()
    finally:
        EjabberdBuiltin.close_shared()
        if pg is not None:
            pg.close()
        shutil.rmtree(tmp, ignore_errors=True)
    results["duration_s"] = time.monotonic() - started
    results["errors"] = list(errors)
    report(results, smoke)
    if smoke:
        if errors:
            print(f"not ok - bench-smoke: {len(errors)} workload(s) failed")
            sys.exit(1)
        print("ok - bench-smoke: every workload ran against every server")
    else:
        with open(os.path.join(HERE, "results.json"), "w") as f:
            json.dump(results, f, indent=2)


# ---- the report -------------------------------------------------------------------------------

SERVERS = (OURS, NG2, NG1, EJ)


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def ratio(a, b):
    return f"{a / b:.2f}x" if a is not None and b else "-"


def pick(d, key, names=SERVERS):
    """{server: d[server][key]} for the servers d has."""
    return {n: d[n][key] for n in names if d and n in d and d[n] and key in d[n]}


def report(r, smoke):
    W = r["workloads"]
    m = r["machine"]
    out = []
    p = out.append
    p(f"# machine: {m['host']} {m['arch']}, nproc {m['nproc']}, {m['cpu']}, {m['ram_gib']} GiB RAM, "
      f"kernel {m['kernel']}{'  (smoke run: small sizes, short durations)' if smoke else ''}")
    p(f"# run took {r['duration_s'] / 60:.1f} min. Storage: each server a fresh top-level directory "
      "(/hu-bench-*), not /tmp (ext4 inode allocation)")
    p(f"# servers of one row ran interleaved (A B C A B C, {r['rounds']} round(s)), medians kept; wrk "
      f"runs {r['wrk_seconds']} s each, 2 threads; small bodies are 'x' bytes signed "
      "application/octet-stream (not typed by the media probe) unless a row says random bytes or JPEG")
    big = "128 MiB" if smoke else "1 GiB"
    floor = W["sha256_floor"]["cpu_s_per_gib"]

    # -- against the references, side by side
    rows = []
    b, bh = W.get("big_put_get", {}), W.get("big_put_get_https", {})
    rows += [(f"{big} PUT MB/s", pick(b, "put_mb_s")),
             (f"{big} PUT wall s (lower)", pick(b, "put_wall_s")),
             (f"{big} PUT CPU s/GiB (lower)", pick(b, "put_cpu_s_per_gib")),
             (f"{big} GET MB/s", pick(b, "get_mb_s")),
             (f"{big} GET wall s (lower)", pick(b, "get_wall_s")),
             (f"{big} GET CPU s/GiB (lower)", pick(b, "get_cpu_s_per_gib")),
             (f"{big} PUT MB/s over HTTPS", pick(bh, "put_mb_s")),
             (f"{big} PUT CPU s/GiB over HTTPS (lower)", pick(bh, "put_cpu_s_per_gib")),
             (f"{big} GET MB/s over HTTPS", pick(bh, "get_mb_s")),
             (f"{big} GET CPU s/GiB over HTTPS (lower)", pick(bh, "get_cpu_s_per_gib"))]
    s = W["small_puts"]
    c = 16 if smoke else 64
    rows += [(f"64 KiB PUTs/s, {c} conns (all defaults on)", pick(s, "uploads_s")),
             ("64 KiB PUT server CPU us/upload (lower)", pick(s, "cpu_us")),
             ("64 KiB PUT context switches/upload (lower)", pick(s, "ctx_switches")),
             ("64 KiB PUT p50 ms (lower)", pick(s, "p50_ms")),
             ("64 KiB PUT p99 ms (lower)", pick(s, "p99_ms")),
             ("RSS MiB after the 64 KiB PUT run (lower)", pick(s, "rss_mib_after"))]
    for key, by in W["small_puts_matrix"].items():
        size, cc = (int(x) for x in key.split(":"))
        label = f"{size // KIB} KiB" if size < MIB else f"{size // MIB} MiB"
        rows += [(f"{label} PUTs/s, {cc} conn{'s' if cc > 1 else ''}", pick(by, "uploads_s")),
                 (f"{label} PUT CPU us/upload, {cc} conn{'s' if cc > 1 else ''} (lower)", pick(by, "cpu_us"))]
    sr_ = W.get("small_puts_random", {})
    rows += [(f"64 KiB random-byte PUTs/s, {c} conns", pick(sr_, "uploads_s")),
             ("64 KiB random-byte PUT CPU us/upload (lower)", pick(sr_, "cpu_us"))]
    rows.append(("64 KiB PUTs/s over HTTPS", pick(W["small_puts_https"], "uploads_s")))
    sy = W.get("syscalls", {})
    rows.append(("syscalls per 64 KiB upload (strace; lower)", pick(sy, "per_upload")))
    for key, what in (("slow_uploads", "slow uploads"), ("slow_downloads", "slow downloads")):
        d = W.get(key, {})
        n = next(iter(d.values()))["connections"] if d else 0
        extra = f" of {next(iter(d.values()))['file_mib']:.0f} MiB" if key == "slow_downloads" and d else ""
        rows.append((f"RSS MiB, {n} {what}{extra} (lower)", pick(d, "rss_mib")))
    sr = dict(W.get("slot_requests", {}))
    if "mod_http_upload_hmac" in sr:
        sr[OURS] = sr.pop("mod_http_upload_hmac")
    rows += [("slot requests/s over c2s", pick(sr, "slots_s")),
             ("slot request p50 ms (lower)", pick(sr, "p50_ms")),
             ("slot request p99 ms (lower)", pick(sr, "p99_ms")),
             ("slot request ejabberd CPU us (lower)", pick(sr, "server_cpu_us"))]
    p("")
    p(f"{'workload':48} {'ours':>9} {'nginx 2w':>9} {'nginx 1w':>9} {'ejabberd':>9}  "
      f"{'/ng 2w':>7} {'/ng 1w':>7} {'/ejabb.':>7}")
    for name, v in rows:
        o = v.get(OURS)
        p(f"{name:48} {fmt(o):>9} {fmt(v.get(NG2)):>9} {fmt(v.get(NG1)):>9} {fmt(v.get(EJ)):>9}  "
          f"{ratio(o, v.get(NG2)):>7} {ratio(o, v.get(NG1)):>7} {ratio(o, v.get(EJ)):>7}")
    r["table"] = [{"workload": n, **v} for n, v in rows]

    # -- ours against ours
    pairs = []
    for variant in ("ledger off", "fsync off", "media off"):
        k = f"{OURS}, {variant}"
        if k in s:
            on = variant.split()[0]
            pairs.append((f"64 KiB PUTs/s, {on} on vs off", s[OURS]["uploads_s"], s[k]["uploads_s"], variant))
            pairs.append((f"64 KiB PUT CPU us/upload, {on} on vs off", s[OURS]["cpu_us"], s[k]["cpu_us"], variant))
    ph = W["photo_puts"]
    on, off = ph[OURS], ph[OURS + ", media off"]
    pairs += [("1 MiB JPEG PUTs/s, media metadata on vs off", on["uploads_s"], off["uploads_s"], "media off"),
              ("1 MiB JPEG server CPU us/upload, on vs off", on["cpu_us"], off["cpu_us"], "media off"),
              ("1 MiB JPEG PUT p50 ms, on vs off", on["p50_ms"], off["p50_ms"], "media off"),
              ("1 MiB JPEG PUT p99 ms, on vs off", on["p99_ms"], off["p99_ms"], "media off")]
    g = W["grant_cost"]
    pairs.append((f"grants/s after {g['earlier']:,} earlier (same user)", g["after_grants_s"],
                  g["first_grants_s"], f"the first {g['batch']:,}"))
    n = W["nif_minting"]
    pairs.append(("token mints/s in the VM (NIF vs crypto:mac)", n["nif_calls_s"], n["erlang_crypto_calls_s"],
                  "Erlang crypto"))
    p("")
    p(f"{'ours against ours':48} {'this':>9} {'that':>9} {'ratio':>7}  that")
    for name, a, bb, what in pairs:
        p(f"{name:48} {fmt(a):>9} {fmt(bb):>9} {ratio(a, bb):>7}  {what}")
    r["pairs"] = [{"workload": nm, "this": a, "that": bb, "against": w} for nm, a, bb, w in pairs]

    # -- issue 13: the ledger backends
    lp, lg = W["ledger_puts"], W["ledger_grants"]
    sq, pq = lp[OURS + ", SQLite ledger"], lp[OURS + ", PostgreSQL ledger"]
    led = [(f"64 KiB PUTs/s, {c} conns", sq["uploads_s"], pq["uploads_s"]),
           ("64 KiB PUT server CPU us/upload (lower)", sq["cpu_us"], pq["cpu_us"]),
           ("  + PostgreSQL's processes, us/upload", None, pq["aux_cpu_us"]),
           ("64 KiB PUT p99 ms (lower)", sq["p99_ms"], pq["p99_ms"])]
    for callers, handles, via in GRANT_RUNS:
        what = (f"{callers} caller{'s' if callers > 1 else ''}" +
                (f", {handles} handle{'s' if handles > 1 else ''} ({handles} node{'s' if handles > 1 else ''})"
                 if callers > 1 else "") + (", in groups (the module's way)" if via == "group" else ""))
        a, bb = lg[f"SQLite:{callers}:{handles}:{via}"], lg[f"PostgreSQL:{callers}:{handles}:{via}"]
        led.append((f"NIF grants/s, {what}", a["grants_s"], bb["grants_s"]))
        led.append(("  grant p99 ms (lower)", a["p99_ms"], bb["p99_ms"]))
        if a["errors"] or bb["errors"]:
            led.append(("  grants refused (eagain etc.)", a["errors"], bb["errors"]))
    p("")
    p(f"{'ledger backends (issue 13)':48} {'SQLite':>9} {'Postgres':>9} {'PG/SQLite':>9}")
    for name, a, bb in led:
        p(f"{name:48} {fmt(a):>9} {fmt(bb):>9} {ratio(bb, a):>9}")
    p(f"# SQLite: WAL, synchronous=FULL, in the server's process. PostgreSQL {W.get('postgresql', '?')} "
      "from Debian, private, on loopback, default settings (fsync on, synchronous_commit on), a fresh "
      "database per run; its CPU is counted apart.")
    r["ledger_backends"] = [{"workload": nm, "sqlite": a, "postgresql": bb} for nm, a, bb in led]

    # -- issue 14's targets
    sp = s
    tg = []

    def target(label, vals, rat, goal, met):
        tg.append((label, vals, rat, goal, met))

    o, n2 = sp[OURS], sp[NG2]
    rt = o["uploads_s"] / n2["uploads_s"]
    target(f"64 KiB PUTs/s, {c} conns", pick(sp, "uploads_s"), rt, "≥1.0x nginx 2w (goal 1.5x)",
           "yes" + (", goal too" if rt >= 1.5 else "; goal no") if rt >= 1.0 else "no")
    rt = o["cpu_us"] / n2["cpu_us"]
    target("64 KiB PUT CPU us/upload", pick(sp, "cpu_us"), rt, "≤1.5x nginx 2w", "yes" if rt <= 1.5 else "no")
    for key, by in W["small_puts_matrix"].items():
        size, cc = (int(x) for x in key.split(":"))
        label = f"{size // KIB} KiB" if size < MIB else f"{size // MIB} MiB"
        rt = by[OURS]["uploads_s"] / by[NG2]["uploads_s"]
        target(f"{label} PUTs/s, {cc} conn{'s' if cc > 1 else ''}", pick(by, "uploads_s"), rt,
               "≥1.0x nginx 2w", "yes" if rt >= 1.0 else "no")
    if OURS in b and NG2 in b:
        rt = b[OURS]["put_wall_s"] / b[NG2]["put_wall_s"]
        target(f"{big} PUT wall s", pick(b, "put_wall_s"), rt, "≤1.0x nginx 2w", "yes" if rt <= 1.0 else "no")
        lim = b[NG2]["put_cpu_s_per_gib"] + floor
        rt = b[OURS]["put_cpu_s_per_gib"] / lim
        target(f"{big} PUT CPU s/GiB", pick(b, "put_cpu_s_per_gib"), rt,
               f"≤ nginx 2w + sha256 floor {floor:.2f} = {lim:.2f}", "yes" if rt <= 1.0 else "no")
        rt = b[OURS]["get_wall_s"] / b[NG2]["get_wall_s"]
        target(f"{big} GET wall s", pick(b, "get_wall_s"), rt, "≤0.5x nginx 2w", "yes" if rt <= 0.5 else "no")
        rt = b[OURS]["get_cpu_s_per_gib"] / b[NG2]["get_cpu_s_per_gib"] if b[NG2]["get_cpu_s_per_gib"] else None
        target(f"{big} GET CPU s/GiB", pick(b, "get_cpu_s_per_gib"), rt, "≤0.5x nginx 2w",
               "-" if rt is None else "yes" if rt <= 0.5 else "no")
    if OURS in sr and EJ in sr:
        rt = sr[OURS]["slots_s"] / sr[EJ]["slots_s"]
        target("slot requests/s over c2s", pick(sr, "slots_s"), rt, "≥1.5x ejabberd built-in",
               "yes" if rt >= 1.5 else "no")
        target("slot request p99 ms", pick(sr, "p99_ms"), None, "< 10 ms",
               "yes" if sr[OURS]["p99_ms"] < 10 else "no")
    rt = g["after_grants_s"] / g["first_grants_s"]
    target(f"grants/s after {g['earlier']:,} earlier, same user", {OURS: g["after_grants_s"]}, rt,
           f"the same as the first {g['batch']:,} (≥0.9x: {fmt(g['first_grants_s'])}/s)",
           "yes" if rt >= 0.9 else "no")
    for key, what in (("slow_uploads", "slow uploads"), ("slow_downloads", "slow downloads")):
        d = W.get(key, {})
        if OURS in d:
            target(f"RSS MiB, {d[OURS]['connections']} {what}", pick(d, "rss_mib"), None, "≤ 64 MiB",
                   "yes" if d[OURS]["rss_mib"] <= 64 else "no")
    p("")
    p(f"{'targets (issue 14)':40} {'ours':>9} {'nginx 2w':>9} {'nginx 1w':>9} {'ejabberd':>9} "
      f"{'ratio':>7}  {'target':44} met")
    for label, vals, rt, goal, met in tg:
        p(f"{label:40} {fmt(vals.get(OURS)):>9} {fmt(vals.get(NG2)):>9} {fmt(vals.get(NG1)):>9} "
          f"{fmt(vals.get(EJ)):>9} {(f'{rt:.2f}x' if rt is not None else '-'):>7}  {goal:44} {met}")
    p("# the ≥1.0x target of the 64 KiB / 64 connection row is applied to the other sizes and "
      "connection counts; 'ratio' is ours against what the target names")
    r["targets"] = [{"target": lb, "values": v, "ratio": rt, "goal": gl, "met": mt} for lb, v, rt, gl, mt in tg]

    # -- where one small upload's CPU goes
    pr = W.get("profile", {})
    p("")
    if "parts" in pr:
        p(f"{'one 64 KiB upload, CPU by part (perf)':48} {'us':>9} {'share':>7}")
        for part in PART_ORDER:
            v = pr["parts"].get(part)
            if v:
                p(f"{part:48} {v['us']:9.1f} {100 * v['share']:6.1f}%")
        p(f"{'total (server CPU per upload, /proc)':48} {pr['cpu_us']:9.1f} {100.0:6.1f}%")
        p(f"# perf record -a -F 499 --call-graph dwarf over {pr['seconds']} s of {c}-connection load "
          f"({fmt(pr['uploads_s'])} uploads/s while profiled), {pr['samples']} samples of the server")
    else:
        p(f"# per-part table: not measured: {pr.get('error', 'no profile')}")
    for name, v in sy.items():
        top = ", ".join(f"{k} {x:.1f}" for k, x in v["top"].items())
        p(f"# syscalls per upload, {name}: {v['per_upload']:.1f} ({top}; strace -c -f, {v['uploads']} uploads)")
    cs = pick(s, "ctx_switches")
    p("# context switches per upload (/proc, all threads, the 64 KiB row's median run): "
      + ", ".join(f"{k} {x:.2f}" for k, x in cs.items()))

    # -- notes
    p("# the built-in runs in the rows above where it has a figure (its slots come over c2s, one "
      "slixmpp call per 20,000); HTTPS rows: ours and nginx 2w only")
    for label, v in list(s.items()) + [(k + " (https)", v) for k, v in W["small_puts_https"].items()]:
        if v.get("non2xx") or v.get("errors"):
            p(f"# note: {label}: {v['non2xx']} non-2xx responses, {v['errors']} socket errors"
              f"{' (pre-made slots ran out)' if v['exhausted'] else ''}")
    for key in ("slow_uploads", "slow_downloads"):
        for name, v in W.get(key, {}).items():
            if v.get("reading") is not None and v["reading"] < v["connections"]:
                p(f"# note: {key} {name}: {v['reading']} of {v['connections']} readers got their first "
                  f"64 KiB; {v['failed']}")
    for e in r.get("errors", []):
        p(f"# error: {e}")
    print("\n".join(out))


if __name__ == "__main__":
    main()
