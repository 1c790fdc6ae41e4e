#!/usr/bin/python3
"""make bench: every workload against hmac-upload-server and the reference servers, started
privately on loopback in the same run, printed side by side with ratios and written to
bench/results.json. `--smoke` runs the same code paths small and short (make check).

References: nginx (Debian nginx-light, WebDAV `dav_methods PUT`, no auth) and ejabberd 23.01's
built-in mod_http_upload (slots requested over a real c2s connection). The HTTPS rows give
both servers the same certificate (RSA 2048, self-signed, made for the run)."""

import argparse
import asyncio
import hashlib
import json
import os
import platform
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
from xmpp_clients import slix  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
MIB, GIB = 1 << 20, 1 << 30


# ---- process accounting ------------------------------------------------------------------------

def family(pid):
    """pid and all its descendants (nginx: master + workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
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


class Ours:
    name = "hmac-upload-server"

    def __init__(self, pem=None, **opts):
        if opts.get("media_metadata") is False:
            self.name = "hmac-upload-server, media off"
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
    name = "nginx (WebDAV PUT)"

    def __init__(self, pem=None, workers="auto"):
        if workers != "auto":
            self.name = f"nginx, {workers} worker{'s' if workers != 1 else ''}"
        self.dir = fresh_dir("hu-bench-nginx-")
        self.port = free_port()
        self.scheme = "https" if pem else "http"
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


class EjabberdBuiltin:
    name = "ejabberd mod_http_upload"

    def __init__(self):
        self.ej = Ejabberd(builtin_upload=True).start()
        self.ej.register("bench", "pw-bench")
        self.pid = self.ej.pid()
        self.port = self.ej.http_port
        self.scheme = "http"

    def slots(self, n, size):
        r = slix(self.ej, "bench", "slot-urls", str(n), str(size))
        return [u.split(str(self.port), 1)[1] for u in r["put"]]

    def stop(self):
        self.ej.stop()


# ---- workloads --------------------------------------------------------------------------------

def big_file(d, size):
    path = os.path.join(d, "big.bin")
    block = hashlib.sha256(b"bench").digest() * (MIB // 32)
    with open(path, "wb") as f:
        for i in range(size // MIB):
            f.write(i.to_bytes(8, "little") + block[8:])
    return path


def big_put_get(server, src, size):
    put_t, get_t = server.put_target(size, "big.bin")
    cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
    base = f"{server.scheme}://127.0.0.1:{server.port}"
    p = subprocess.run(["curl", "-ksS", "-o", "/dev/null", "-w", "%{http_code}", "-T", src,
                        base + put_t], capture_output=True, text=True)
    put_s, put_cpu = time.monotonic() - t0, cpu_seconds(server.pid) - cpu0
    assert p.stdout in ("201", "204"), (server.name, p.stdout, p.stderr)
    cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
    p = subprocess.run(["curl", "-ksS", "-o", "/dev/null", "-w", "%{http_code}", base + get_t],
                       capture_output=True, text=True)
    get_s, get_cpu = time.monotonic() - t0, cpu_seconds(server.pid) - cpu0
    assert p.stdout == "200", (server.name, p.stdout)
    gib = size / GIB
    return {"put_mb_s": size / put_s / 1e6, "put_wall_s": put_s, "put_cpu_s_per_gib": put_cpu / gib,
            "get_mb_s": size / get_s / 1e6, "get_cpu_s_per_gib": get_cpu / gib}


def small_puts(server, targets, size, conns, seconds, body_file=None, ctype=None):
    d = tempfile.mkdtemp(prefix="hu-wrk-")
    try:
        threads = min(2, conns)
        for t in range(threads):
            with open(f"{d}/urls.{t}", "w") as f:
                f.write("\n".join(targets[t::threads]) + "\n")
        cpu0 = cpu_seconds(server.pid)
        p = subprocess.run(["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{seconds}s",
                            "--timeout", "10s", "-s", os.path.join(HERE, "put_urls.lua"),
                            f"{server.scheme}://127.0.0.1:{server.port}", "--", f"{d}/urls",
                            *([body_file, ctype] if body_file else [str(size)])],
                           capture_output=True, text=True, timeout=seconds + 60)
        line = [l for l in p.stdout.splitlines() if l.startswith("{")]
        assert line, (p.stdout, p.stderr)
        r = json.loads(line[-1])
        ok = r["requests"] - r["non2xx"]
        cpu = cpu_seconds(server.pid) - cpu0
        return {"uploads_s": ok / (r["duration_us"] / 1e6), "cpu_us": cpu / ok * 1e6 if ok else 0,
                "p50_ms": r["p50_us"] / 1000,
                "p99_ms": r["p99_us"] / 1000, "non2xx": r["non2xx"], "errors": r["errors"],
                "exhausted": r["requests"] > len(targets)}
    finally:
        shutil.rmtree(d, ignore_errors=True)


def interleaved(makers, run, rounds):
    """Runs run(server) on a fresh server of each maker, A B A B ..., rounds times; returns
    each server's run with the median uploads/s."""
    runs = {}
    for _ in range(rounds):
        for make in makers:
            s = make()
            try:
                r = run(s)
                runs.setdefault(s.name, []).append(r)
            finally:
                s.stop()
    return {name: sorted(rs, key=lambda r: r["uploads_s"])[len(rs) // 2] for name, rs in runs.items()}


def small_targets(server, n, size, name="s.bin"):
    return [server.put_target(size, name)[0] for _ in range(n)]


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
    targets = [server.put_target(size, "photo.jpg")[0] for _ in range(20000)]
    return small_puts(server, targets, size, conns, seconds, path, "image/jpeg")


async def slow_clients(server, n, size):
    """n uploads that started and then stall: the server must hold them in little memory."""
    conns = []
    for i in range(n):
        r, w = await asyncio.open_connection("127.0.0.1", server.port)
        t = server.put_target(size, f"slow{i}.bin")[0]
        w.write(f"PUT {t} HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode() + b"x" * 1024)
        await w.drain()
        conns.append((r, w))
    await asyncio.sleep(1.5)
    rss = rss_kib(server.pid)
    for _, w in conns:
        w.close()
    return rss


def slow_uploads(server, n):
    return {"rss_mib": asyncio.run(slow_clients(server, n, MIB)) / 1024, "connections": n}


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


def grant_cost(earlier, batch=2000, ebin=None):
    """Slot grants through the NIF into a fresh SQLite ledger, all for one user under a finite
    quota (so every grant checks it), each held for 300 s: the rate of the first `batch`, and
    of a `batch` after `earlier` more grants. A grant must cost the same either way."""
    d = tempfile.mkdtemp(prefix="hu-grants-")
    code = (f"{{ok, L}} = hmac_upload_nif:ledger_open(<<\"{d}/ledger.sqlite3\">>), "
            "Now = erlang:system_time(second), Q = 1 bsl 40, "
            "G = fun(From, N) -> T0 = erlang:monotonic_time(), "
            "  [ok = hmac_upload_nif:reserve(L, <<\"s\", (integer_to_binary(I))/binary, \"/f.jpg\">>, "
            "      <<\"bench@localhost\">>, 1000, {Now + 300, Now + 3600, -1, 0}, Now, Q) "
            "   || I <- lists:seq(From, From + N - 1)], "
            "  N / (erlang:convert_time_unit(erlang:monotonic_time() - T0, native, microsecond) / 1.0e6) end, "
            f"First = G(1, {batch}), _ = G({batch} + 1, {earlier}), "
            f"After = G({batch} + {earlier} + 1, {batch}), "
            "io:format(\"~p ~p~n\", [First, After]), halt().")
    try:
        p = subprocess.run(["erl", "-noshell", "-pa", ebin or os.path.join(ROOT, "ebin"), "-eval", code],
                           capture_output=True, text=True, timeout=1800)
        first, after = (float(x) for x in p.stdout.split())
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return {"first_grants_s": first, "after_grants_s": after, "earlier": earlier}


def slot_rate(ej, n):
    r = slix(ej, "bench", "slots", str(n), "1000")
    lat = sorted(r["latencies"])
    return {"slots_s": n / r["seconds"], "p50_ms": lat[len(lat) // 2] * 1000,
            "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000}


# ---- the run ----------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="small and short (make check)")
    args = ap.parse_args()
    smoke = args.smoke
    big = 128 * MIB if smoke else GIB
    secs = 2 if smoke else 20
    conns = 16 if smoke else 64
    small = 64 * 1024
    slow_n = 100 if smoke else 1000
    n_targets = 20000 if smoke else 600000
    results = {"machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores "
                          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // GIB} GiB",
               "smoke": smoke, "workloads": {}}
    W = results["workloads"]
    tmp = tempfile.mkdtemp(prefix="hu-bench-")
    try:
        src = big_file(tmp, big)
        pem = certificate(tmp)
        # (1) one big PUT then GET, plain and over HTTPS. Each server runs twice, alternating,
        # and keeps its best run: on a VM the first pass over fresh memory is slower for
        # whoever goes first.
        for key, cert in (("big_put_get", None), ("big_put_get_https", pem)):
            for make in (Ours, Nginx, Ours, Nginx):
                s = make(pem=cert)
                try:
                    r = big_put_get(s, src, big)
                    best = W.setdefault(key, {}).get(s.name)
                    if best is None or r["put_mb_s"] > best["put_mb_s"]:
                        W[key][s.name] = r
                finally:
                    s.stop()
        os.unlink(src)
        # (2) + (4) small PUTs, a fresh Bearer slot per upload; ledger and fsync on and off
        variants = [("hmac-upload-server", {}),
                    ("hmac-upload-server, ledger off", {"ledger_path": "none"}),
                    ("hmac-upload-server, fsync off", {"fsync": False})]
        for label, opts in variants:
            s = Ours(**opts)
            try:
                W.setdefault("small_puts", {})[label] = small_puts(s, small_targets(s, n_targets, small),
                                                                   small, conns, secs)
            finally:
                s.stop()
        s = Nginx()
        try:
            W["small_puts"][s.name] = small_puts(s, small_targets(s, n_targets, small), small, conns, secs)
        finally:
            s.stop()
        # sizes and connection counts, ours against nginx with 2 workers and with 1, interleaved
        matrix = [(4096, 1)] if smoke else [(4096, 64), (MIB, 64), (small, 1), (small, 512)]
        for size, c in matrix:
            W.setdefault("small_puts_matrix", {})[f"{size}:{c}"] = interleaved(
                (Ours, Nginx, lambda: Nginx(workers=1)),
                lambda s: small_puts(s, small_targets(s, n_targets if size < MIB else 60000, size),
                                     size, c, secs),
                1 if smoke else 2)
        # 1 MiB JPEGs with the media metadata (type, size, BlurHash, thumbnail) on and off
        jpeg = photo(tmp)
        W["photo_puts"] = interleaved(
            (lambda: Ours(), lambda: Ours(media_metadata=False)),
            lambda s: photo_puts(s, jpeg, 16, secs), 1 if smoke else 3)
        # the same over HTTPS (keep-alive: a handshake per connection, then many requests)
        for make in (Ours, Nginx):
            s = make(pem=pem)
            try:
                W.setdefault("small_puts_https", {})[s.name] = small_puts(
                    s, small_targets(s, n_targets, small), small, conns, secs)
            finally:
                s.stop()
        # ejabberd built-in: slots over c2s first (they are what its PUTs need), then the PUTs
        e = EjabberdBuiltin()
        try:
            W.setdefault("slot_requests", {})[e.name] = slot_rate(e.ej, 200 if smoke else 2000)
            targets = e.slots(2000 if smoke else 40000, small)
            W["small_puts"][e.name] = small_puts(e, targets, small, conns, secs)
        finally:
            e.stop()
        # slot minting through our module
        ej = Ejabberd({"quota_per_user": "infinity", "token_expiry": 3600}).start()
        try:
            ej.register("bench", "pw-bench")
            W["slot_requests"]["mod_http_upload_hmac"] = slot_rate(ej, 200 if smoke else 2000)
        finally:
            ej.stop()
        W["nif_minting"] = nif_rate(20000 if smoke else 500000)
        W["grant_cost"] = grant_cost(5000 if smoke else 100000)
        # (3) many slow uploads
        for make in (Ours, Nginx):
            s = make()
            try:
                W.setdefault("slow_uploads", {})[s.name] = slow_uploads(s, slow_n)
            finally:
                s.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(results, smoke)
    if smoke:
        print("ok - bench-smoke: every workload ran against every server")
    else:
        with open(os.path.join(HERE, "results.json"), "w") as f:
            json.dump(results, f, indent=2)


def ratio(a, b):
    return f"{a / b:.2f}x" if b else "-"


def report(r, smoke):
    W = r["workloads"]
    ours, ng, ej = "hmac-upload-server", "nginx (WebDAV PUT)", "ejabberd mod_http_upload"
    print(f"# machine: {r['machine']}{' (smoke run: small sizes, short durations)' if smoke else ''}")
    print("# storage: each server a fresh top-level directory (/hu-bench-*), not /tmp (ext4 inode allocation)")
    print(f"{'workload':46} {'ours':>12} {'reference':>12} {'ratio':>8}  reference")
    rows = []
    b = W["big_put_get"]
    size = "128 MiB" if smoke else "1 GiB"
    rows += [(f"{size} PUT MB/s", b[ours]["put_mb_s"], b[ng]["put_mb_s"], ng),
             (f"{size} PUT CPU s/GiB (lower is better)", b[ours]["put_cpu_s_per_gib"], b[ng]["put_cpu_s_per_gib"], ng),
             (f"{size} GET MB/s", b[ours]["get_mb_s"], b[ng]["get_mb_s"], ng),
             (f"{size} GET CPU s/GiB (lower is better)", b[ours]["get_cpu_s_per_gib"], b[ng]["get_cpu_s_per_gib"], ng)]
    b = W["big_put_get_https"]
    rows += [(f"{size} PUT MB/s over HTTPS", b[ours]["put_mb_s"], b[ng]["put_mb_s"], ng),
             (f"{size} PUT CPU s/GiB over HTTPS (lower)", b[ours]["put_cpu_s_per_gib"], b[ng]["put_cpu_s_per_gib"], ng),
             (f"{size} GET MB/s over HTTPS", b[ours]["get_mb_s"], b[ng]["get_mb_s"], ng),
             (f"{size} GET CPU s/GiB over HTTPS (lower)", b[ours]["get_cpu_s_per_gib"], b[ng]["get_cpu_s_per_gib"], ng)]
    sh = W["small_puts_https"]
    rows.append(("64 KiB PUTs/s over HTTPS", sh[ours]["uploads_s"], sh[ng]["uploads_s"], ng))
    s = W["small_puts"]
    for ref in (ng, ej):
        rows.append(("64 KiB PUTs/s (token + ledger + fsync)", s[ours]["uploads_s"], s[ref]["uploads_s"], ref))
    rows.append(("64 KiB PUT server CPU us/upload (lower)", s[ours]["cpu_us"], s[ng]["cpu_us"], ng))
    rows.append(("64 KiB PUT p50 ms", s[ours]["p50_ms"], s[ng]["p50_ms"], ng))
    rows.append(("64 KiB PUT p99 ms", s[ours]["p99_ms"], s[ng]["p99_ms"], ng))
    rows.append(("64 KiB PUTs/s, ledger on vs off", s[ours]["uploads_s"], s[ours + ", ledger off"]["uploads_s"], "ours, ledger off"))
    rows.append(("64 KiB PUTs/s, fsync on vs off", s[ours]["uploads_s"], s[ours + ", fsync off"]["uploads_s"], "ours, fsync off"))
    sl = W["slow_uploads"]
    rows.append((f"RSS MiB, {sl[ours]['connections']} slow uploads (lower is better)", sl[ours]["rss_mib"], sl[ng]["rss_mib"], ng))
    sr = W["slot_requests"]
    rows.append(("slot requests/s over c2s", sr["mod_http_upload_hmac"]["slots_s"], sr[ej]["slots_s"], ej))
    rows.append(("slot request p50 ms", sr["mod_http_upload_hmac"]["p50_ms"], sr[ej]["p50_ms"], ej))
    rows.append(("slot request p99 ms", sr["mod_http_upload_hmac"]["p99_ms"], sr[ej]["p99_ms"], ej))
    n = W["nif_minting"]
    rows.append(("token mints/s in the VM (NIF vs crypto:mac)", n["nif_calls_s"], n["erlang_crypto_calls_s"], "Erlang crypto"))
    for key, by in W["small_puts_matrix"].items():
        size, c = (int(x) for x in key.split(":"))
        label = f"{size // 1024} KiB" if size < MIB else f"{size // MIB} MiB"
        for ref in (ng, "nginx, 1 worker"):
            rows.append((f"{label} PUTs/s, {c} conn{'s' if c > 1 else ''}", by[ours]["uploads_s"],
                         by[ref]["uploads_s"], ref))
    ph = W["photo_puts"]
    on, off = ph[ours], ph[ours + ", media off"]
    rows.append(("1 MiB JPEG PUTs/s, media metadata on vs off", on["uploads_s"], off["uploads_s"], "media off"))
    rows.append(("1 MiB JPEG server CPU us/upload, on vs off", on["cpu_us"], off["cpu_us"], "media off"))
    rows.append(("1 MiB JPEG PUT p50 ms, on vs off", on["p50_ms"], off["p50_ms"], "media off"))
    rows.append(("1 MiB JPEG PUT p99 ms, on vs off", on["p99_ms"], off["p99_ms"], "media off"))
    g = W["grant_cost"]
    rows.append((f"grants/s after {g['earlier']:,} earlier (same user)", g["after_grants_s"],
                 g["first_grants_s"], "the first 2,000"))
    for name, a, bref, ref in rows:
        print(f"{name:46} {a:12.1f} {bref:12.1f} {ratio(a, bref):>8}  {ref}")
    for label, v in list(s.items()) + [(k + " (https)", v) for k, v in sh.items()]:
        if v["non2xx"] or v["errors"]:
            print(f"# note: {label}: {v['non2xx']} non-2xx responses, {v['errors']} socket errors"
                  f"{' (pre-made slots ran out)' if v['exhausted'] else ''}")
    r["rows"] = [{"workload": a, "ours": b_, "reference": c, "ratio": (b_ / c if c else None), "against": d}
                 for a, b_, c, d in rows]


if __name__ == "__main__":
    main()
