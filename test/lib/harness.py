"""Shared pieces of the black-box and end-to-end tests: a tiny test registry that prints
"ok - name" / "not ok - name" lines (collected by test/run), free loopback ports, the real
hmac-upload-server binary in a private directory, curl, and an independent (Python hmac)
implementation of the token formats in ../shared/DESIGN.md."""

import base64
import hashlib
import hmac
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECRET = "blackbox-secret-0123456789abcdef"

# The binary under test: release by default, the ASan/UBSan build when test/run says so.
SERVER_BIN = os.environ.get("HU_SERVER_BIN", os.path.join(ROOT, "priv", "bin", "hmac-upload-server"))
VARIANT = os.environ.get("HU_VARIANT", "release")

_tests = []


class Skip(Exception):
    """Raised by a test that cannot run on this machine; reported as "ok - name # SKIP why"."""


def test(fn):
    """Registers a test; tests run in file order."""
    _tests.append(fn)
    return fn


def main():
    """Runs the registered tests (or those named on the command line); one line each."""
    only = set(sys.argv[1:])
    failed = 0
    for fn in _tests:
        if only and fn.__name__ not in only:
            continue
        name = f"{os.path.basename(sys.argv[0])[:-3]}[{VARIANT}]::{fn.__name__}"
        start = time.monotonic()
        try:
            fn()
            print(f"ok - {name} ({time.monotonic() - start:.1f}s)", flush=True)
        except Skip as why:
            print(f"ok - {name} # SKIP {why}", flush=True)
        except Exception:  # any failure, assertion or not, is this test's failure
            failed += 1
            print(f"not ok - {name}", flush=True)
            traceback.print_exc(file=sys.stdout)
            sys.stdout.flush()
    sys.exit(1 if failed else 0)


def eq(got, want, what=""):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


_ports_given = set()


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    """A port free now, and never one this process was given before: the kernel may hand the
    same ephemeral port to two binds in a row once the first socket is closed (ejabberd then
    refused a config whose two listeners overlapped)."""
    while True:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port


def pct(s):
    return urllib.parse.quote(s, safe="-._~")


# ---- tokens, computed independently of the C library ------------------------------------

def bearer_token(secret, user, path, size, ctype, expires):
    msg = b"\0".join(x.encode() for x in ("bearer", user, path, str(size), ctype, str(expires)))
    mac = hmac.new(secret.encode(), msg, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def legacy_token(secret, scheme, path, size, ctype=""):
    if scheme == "v1":
        msg = f"{path} {size}".encode()
    else:
        msg = b"\0".join((path.encode(), str(size).encode(), ctype.encode()))
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


class Slot:
    """A Bearer slot as mod_http_upload_hmac hands it out."""

    def __init__(self, base, size, filename="photo.jpg", user="alice@localhost",
                 ctype="image/jpeg", expires=None, secret=SECRET):
        self.slot = str(uuid.uuid4())
        self.filename, self.user, self.ctype, self.size = filename, user, ctype, size
        self.path = f"{self.slot}/{filename}"
        self.expires = int(time.time()) + 3600 if expires is None else expires
        self.token = bearer_token(secret, user, self.path, size, ctype, self.expires)
        self.get_url = f"{base}/{self.slot}/{pct(filename)}"
        self.query = (f"user={pct(user)}&type={pct(ctype)}&expires={self.expires}")
        self.put_url = f"{self.get_url}?{self.query}&token={self.token}"
        self.put_url_no_token = f"{self.get_url}?{self.query}"
        self.auth = f"Authorization: Bearer {self.token}"

    def rebase(self, base):
        """The same slot on a server that came back on another port."""
        old = self.get_url[:len(self.get_url) - len(self.path_url())]
        for attr in ("get_url", "put_url", "put_url_no_token"):
            setattr(self, attr, base + getattr(self, attr)[len(old):])
        return self

    def path_url(self):
        return f"/{self.slot}/{pct(self.filename)}"

    def target(self, url=None):
        """The request-target (path and query) of one of this slot's URLs."""
        u = urllib.parse.urlsplit(url or self.put_url)
        return u.path + ("?" + u.query if u.query else "")


# ---- the upload server -------------------------------------------------------------------

def module_yaml(opts, top=None):
    """An ejabberd.yml with the module section, options as Python values; top holds
    top-level keys (certfiles, hosts, ...)."""
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return str(v)
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
    top = dict({"hosts": ["localhost"]}, **(top or {}))
    lines = [f"{k}: {val(v)}" for k, v in top.items()] + ["modules:", "  mod_http_upload_hmac:"]
    lines += [f"    {k}: {val(v)}" for k, v in opts.items() if v is not None]
    return "\n".join(lines) + "\n"


class UploadServer:
    """The real hmac-upload-server on 127.0.0.1 with a private storage dir and ejabberd.yml."""

    def __init__(self, binary=None, top=None, **opts):
        self.binary = binary or SERVER_BIN
        self.top = top
        self.dir = tempfile.mkdtemp(prefix="hu-server-")
        self.storage = os.path.join(self.dir, "storage")
        self.opts = {
            "hmac_server_url": "http://127.0.0.1:0/upload",
            "hmac_shared_secret": SECRET,
            "listen": "127.0.0.1:0",
            "storage_dir": self.storage,
            "access_log": os.path.join(self.dir, "access.log"),
        }
        self.opts.update(opts)
        self.storage = self.opts["storage_dir"]  # a test may put it elsewhere (a tmpfs, ...)
        self.config = os.path.join(self.dir, "ejabberd.yml")
        self.proc = None
        self.port = None
        self.metrics_port = None
        self.stderr_lines = []

    @classmethod
    def from_config(cls, config, storage, port, binary=None):
        """The server on an existing ejabberd.yml (the one ejabberd itself runs with)."""
        srv = cls(binary=binary)
        shutil.rmtree(srv.dir, ignore_errors=True)
        srv.dir = os.path.dirname(config)
        srv.config = config
        srv.storage = storage
        srv.external_config = True
        return srv.start()

    external_config = False

    def write_config(self, **changes):
        self.opts.update(changes)
        with open(self.config, "w") as f:
            f.write(module_yaml(self.opts, self.top))

    def start(self, timeout=20):
        if not self.external_config:
            self.write_config()
        self.proc = subprocess.Popen([self.binary, "--config", self.config],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        ready = threading.Event()

        def pump():
            for line in self.proc.stderr:
                self.stderr_lines.append(line.rstrip("\n"))
                mm = re.search(r"metrics on (.*):(\d+)$", line)
                if mm:
                    self.metrics_port = int(mm.group(2))
                m = re.search(r"listening on (.*):(\d+)( \(https\))?$", line)
                if m and not ready.is_set():
                    self.port = int(m.group(2))
                    self.scheme = "https" if m.group(3) else "http"
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(timeout) or self.port is None:
            self.stop()
            raise RuntimeError("server did not start: " + "\n".join(self.stderr_lines))
        self.base = f"{self.scheme}://127.0.0.1:{self.port}/upload"
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        try:
            if exc[0] is None:
                self.stop()
            else:  # the test failed already: do not wait 30 s for a drain, nor mask its error
                try:
                    self.stop(timeout=5)
                except AssertionError:
                    pass
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def slot(self, size, **kw):
        kw.setdefault("secret", self.opts.get("hmac_shared_secret", SECRET))
        return Slot(self.base, size, **kw)

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def hwm_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return 0

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=30):
        """SIGTERM (drain) and wait; returns the exit code. Kills after timeout."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("server did not stop on SIGTERM")

    def assert_clean_exit(self):
        code = self.stop()
        errs = [l for l in self.stderr_lines if "ERROR: AddressSanitizer" in l or "runtime error" in l
                or "LeakSanitizer" in l]
        if errs or code not in (0, None):
            raise AssertionError(f"server exit {code}: " + "\n".join(self.stderr_lines[-40:]))

    # -- storage layout 2 (see README "Storage"): files/<k0k1>/<key> and state/ ----------------
    def state_path(self, *parts):
        return os.path.join(self.storage, "state", *parts)

    def published_path(self, path):
        """Where the upload of P lives on disk: files/<k0k1>/<sha256(P)>."""
        k = published_key(path)
        return os.path.join(self.storage, "files", k[:2], k)

    def ledger_file(self):
        """The ledger as the server opens it: ledger_path, else state/ledger.sqlite3 (or the
        layout-1 <storage>/ledger.sqlite3 when that one exists and the new one does not)."""
        p = self.opts.get("ledger_path")
        if p and p != "none":
            return p
        legacy, new = os.path.join(self.storage, "ledger.sqlite3"), self.state_path("ledger.sqlite3")
        return legacy if os.path.exists(legacy) and not os.path.exists(new) else new

    def visible_files(self):
        """The published uploads: the sorted keys (sha256(P) hex) of files/<k0k1>/<key>. Anything
        else found under files/ is listed by its path relative to storage_dir, so that an
        assertion against keys(...) shows it."""
        out = []
        top = os.path.join(self.storage, "files")
        for d, dirs, files in os.walk(top):
            for f in files:
                rel = os.path.relpath(os.path.join(d, f), top)
                parts = rel.split(os.sep)
                if len(parts) == 2 and KEY_RE.fullmatch(parts[1]) and parts[0] == parts[1][:2]:
                    out.append(parts[1])
                else:
                    out.append(os.path.join("files", rel))
        return sorted(out)

    def partial_files(self):
        """Every name in state/partial (uploads in progress, cut Bearer uploads kept for tus)."""
        d = self.state_path("partial")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def partial_uploads(self):
        """The keys of the partial uploads in state/partial: "<key>" entries, each optionally
        with its "<key>.tus" resume state (file systems without user xattrs). Any other entry
        (a *.tmp, a *.meta, a .tus without its file, a foreign name) is listed as it is."""
        names = self.partial_files()
        out = []
        for n in names:
            if KEY_RE.fullmatch(n):
                out.append(n)
            elif not (n.endswith(".tus") and KEY_RE.fullmatch(n[:-4]) and n[:-4] in names):
                out.append(n)
        return sorted(out)

    def kill(self):
        """kill -9, as a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()

    def wait_stderr(self, pattern, timeout=10, start=0):
        """Waits until a stderr line (from index start on) matches pattern; returns the line."""
        deadline = time.monotonic() + timeout
        while True:
            for l in list(self.stderr_lines[start:]):
                if re.search(pattern, l):
                    return l
            if time.monotonic() > deadline:
                raise AssertionError(f"no stderr line matching {pattern!r}: "
                                     + "\n".join(self.stderr_lines[-30:]))
            time.sleep(0.02)

    def open_storage_files(self):
        """The regular files the server process holds open under storage_dir (or anonymous
        O_TMPFILE files there): {(dev, ino): (link, size)}."""
        out = {}
        fd_dir = f"/proc/{self.proc.pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            return out
        real = os.path.realpath(self.storage)
        for fd in fds:
            try:
                link = os.readlink(f"{fd_dir}/{fd}")
                st = os.stat(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if link.startswith(real + "/") and stat.S_ISREG(st.st_mode):
                out[(st.st_dev, st.st_ino)] = (link, st.st_size)
        return out


def published_key(path):
    """The on-disk name of the upload of P (layout 2): hex(sha256(P))."""
    return hashlib.sha256(path.encode() if isinstance(path, str) else path).hexdigest()


def keys(*paths):
    """What visible_files() lists when exactly the uploads of these paths are published."""
    return sorted(published_key(p) for p in paths)


KEY_RE = re.compile(r"[0-9a-f]{64}")


def wait_for(cond, timeout=10, what="condition", interval=0.02):
    """Polls cond() until it returns something true; returns it. AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)



class Load:
    """Clients uploading without pause on threads while a test breaks something (the ledger's
    PostgreSQL stopped and started): each thread runs client(n, load) until load.stopped, and
    the client records every attempt with load.add(key, status). results: (monotonic time,
    key, status), in order; read them after the with block, or through resumed()."""

    def __init__(self, client, clients=4):
        self.results, self._lock, self._stop = [], threading.Lock(), threading.Event()
        self._threads = [threading.Thread(target=client, args=(n, self)) for n in range(clients)]

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(60)

    @property
    def stopped(self):
        return self._stop.is_set()

    def add(self, key, status):
        with self._lock:
            self.results.append((time.monotonic(), key, status))

    def resumed(self, after):
        """The 201s of attempts that ended a moment (0.2 s) after `after`."""
        with self._lock:
            return [r for r in self.results if r[0] > after + 0.2 and r[2] == 201]

    def wait_resumed(self, after, n=8, timeout=15):
        """Until n uploads succeeded after `after`, at most timeout seconds (the test then
        asserts how many did)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.resumed(after)) < n:
            time.sleep(0.2)

# ---- curl ------------------------------------------------------------------------------------

class Response:
    def __init__(self, status, headers, body, header_list=None):
        self.status, self.headers, self.body = status, headers, body
        self.header_list = header_list if header_list is not None else list(headers.items())

    def header(self, name):
        return self.headers.get(name.lower())

    def header_values(self, name):
        """Every value of a header that may repeat, split at commas (e.g. Vary)."""
        out = []
        for k, v in self.header_list:
            if k == name.lower():
                out += [x.strip() for x in v.split(",") if x.strip()]
        return out


def curl(*args, data=None, timeout=60):
    """Runs curl and returns the last response's status, headers (lowercased names) and body."""
    cmd = ["curl", "-sS", "-D", "-", "-o", "-", "--max-time", str(timeout)]
    cmd += list(args)
    p = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout + 10)
    if p.returncode not in (0, 18, 52, 56):
        raise AssertionError(f"curl {args} failed ({p.returncode}): {p.stderr.decode()}")
    # The last header block (after 100 Continue) is the real response.
    r = parse_response(p.stdout)
    while r.status == 100:
        r = parse_response(r.body)
    return r


def put(url, data, *extra):
    return curl("-X", "PUT", "--data-binary", "@-", "-H", "Content-Type: image/jpeg", *extra, url,
                data=data)


def raw_request(port, payload, read_timeout=5.0, host="127.0.0.1"):
    """Sends raw bytes and returns everything the server sends back until it closes or stalls."""
    with socket.create_connection((host, port), timeout=read_timeout) as s:
        s.sendall(payload)
        chunks = []
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
        except (socket.timeout, ConnectionResetError):
            pass
    return b"".join(chunks)


def parse_response(raw):
    """One HTTP/1.1 response from raw bytes (status 0 when there is none)."""
    if not raw.startswith(b"HTTP/1."):
        return Response(0, {}, raw, [])
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers, header_list = {}, []
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers[k.strip().lower()] = v.strip()
        header_list.append((k.strip().lower(), v.strip()))
    return Response(status, headers, rest, header_list)


def http(port, method, target, headers=(), body=b"", timeout=10.0):
    """One request on a fresh connection (Connection: close), the request-target sent byte for
    byte as given (no normalisation, unlike curl). Returns a Response (status 0: no answer)."""
    if isinstance(target, str):
        target = target.encode("latin-1")
    head = method.encode() + b" " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    for h in headers:
        head += (h.encode("latin-1") if isinstance(h, str) else h) + b"\r\n"
    if body or method in ("PUT", "PATCH", "POST"):
        head += f"Content-Length: {len(body)}\r\n".encode()
    head += b"Connection: close\r\n\r\n"
    return parse_response(raw_request(port, head + body, read_timeout=timeout))


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
