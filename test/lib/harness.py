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


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


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


# ---- the upload server -------------------------------------------------------------------

def module_yaml(opts):
    """An ejabberd.yml with the module section, options as Python values."""
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return str(v)
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
    lines = ["hosts: [localhost]", "modules:", "  mod_http_upload_hmac:"]
    lines += [f"    {k}: {val(v)}" for k, v in opts.items() if v is not None]
    return "\n".join(lines) + "\n"


class UploadServer:
    """The real hmac-upload-server on 127.0.0.1 with a private storage dir and ejabberd.yml."""

    def __init__(self, binary=None, **opts):
        self.binary = binary or SERVER_BIN
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
        self.config = os.path.join(self.dir, "ejabberd.yml")
        self.proc = None
        self.port = None
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
            f.write(module_yaml(self.opts))

    def start(self, timeout=20):
        if not self.external_config:
            self.write_config()
        self.proc = subprocess.Popen([self.binary, "--config", self.config],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        ready = threading.Event()

        def pump():
            for line in self.proc.stderr:
                self.stderr_lines.append(line.rstrip("\n"))
                m = re.search(r"listening on (.*):(\d+)$", line)
                if m and not ready.is_set():
                    self.port = int(m.group(2))
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(timeout) or self.port is None:
            self.stop()
            raise RuntimeError("server did not start: " + "\n".join(self.stderr_lines))
        self.base = f"http://127.0.0.1:{self.port}/upload"
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
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

    def visible_files(self):
        """Every regular file under storage_dir outside the server's hidden directories."""
        out = []
        for d, dirs, files in os.walk(self.storage):
            dirs[:] = [x for x in dirs if not x.startswith(".")]
            out += [os.path.relpath(os.path.join(d, f), self.storage) for f in files
                    if not f.startswith(".") and f not in ("secret", "ledger.sqlite3")
                    and not f.startswith("ledger.sqlite3")]
        return sorted(out)

    def partial_files(self):
        d = os.path.join(self.storage, ".partial")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []


# ---- curl ------------------------------------------------------------------------------------

class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def header(self, name):
        return self.headers.get(name.lower())


def curl(*args, data=None, timeout=60):
    """Runs curl and returns the last response's status, headers (lowercased names) and body."""
    cmd = ["curl", "-sS", "-D", "-", "-o", "-", "--max-time", str(timeout)]
    cmd += list(args)
    p = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout + 10)
    if p.returncode not in (0, 18, 52, 56):
        raise AssertionError(f"curl {args} failed ({p.returncode}): {p.stderr.decode()}")
    raw = p.stdout
    status, headers, body = 0, {}, b""
    # The last header block (after 100 Continue) is the real response.
    while raw.startswith(b"HTTP/"):
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for l in lines[1:]:
            k, _, v = l.partition(":")
            headers[k.strip().lower()] = v.strip()
        raw = rest
        if status != 100:
            break
    body = raw
    return Response(status, headers, body)


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
        except socket.timeout:
            pass
    return b"".join(chunks)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
