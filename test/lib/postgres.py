"""A private PostgreSQL for the tests, from Debian's `postgresql` package: a cluster made by
initdb in a temporary directory, the server on 127.0.0.1 only, on a free port, its socket in
that directory, run as the `postgres` user (PostgreSQL refuses to run as root), stopped by
PID. Nothing from the checkout is run as that user: the checkout may sit under a 0700
directory.

    with Postgres() as pg:
        url = pg.url()            # postgresql://hu:<password>@127.0.0.1:<port>/postgres
        pg.sql("CREATE DATABASE x")
        pg.stop(); pg.start()     # a fault: the server goes away and comes back

A missing package is an error (RuntimeError), never a skip."""

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse

USER = "hu"
PASSWORD = "hu-pg-secret"


def _bindir():
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                  key=lambda d: int(d.split("/")[-2]) if d.split("/")[-2].isdigit() else 0)
    for d in reversed(dirs):
        if os.access(os.path.join(d, "initdb"), os.X_OK):
            return d
    raise RuntimeError("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb):"
                       " apt-get install postgresql")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """One private cluster; settings are extra `-c name=value` server settings."""

    def __init__(self, run_as="postgres", **settings):
        self.bindir = _bindir()
        try:
            self.pw = pwd.getpwnam(run_as)
        except KeyError:
            raise RuntimeError(f"no user {run_as!r} (Debian's postgresql package creates it)")
        self.settings = settings
        self.dir = None
        self.proc = None
        self.port = None

    def _as_user(self):
        return {"user": self.pw.pw_uid, "group": self.pw.pw_gid, "extra_groups": []} \
            if os.geteuid() == 0 else {}

    def _run(self, *cmd):
        p = subprocess.run(list(cmd), cwd=self.dir, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, **self._as_user())
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}\n{p.stdout}")
        return p.stdout

    def init(self):
        self.dir = tempfile.mkdtemp(prefix="hu-pg-")
        os.chown(self.dir, self.pw.pw_uid, self.pw.pw_gid)
        os.chmod(self.dir, 0o700)
        pwfile = os.path.join(self.dir, "pwfile")
        with open(pwfile, "w") as f:
            f.write(PASSWORD + "\n")
        os.chown(pwfile, self.pw.pw_uid, self.pw.pw_gid)
        self._run(os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", USER,
                  "--pwfile", pwfile, "--auth-local=trust", "--auth-host=scram-sha-256",
                  "-E", "UTF8", "--locale=C")
        os.unlink(pwfile)
        self.port = _free_port()
        return self

    @property
    def data(self):
        return os.path.join(self.dir, "data")

    @property
    def log_path(self):
        return os.path.join(self.dir, "postgres.log")

    def start(self, timeout=30):
        """Starts the server (again) on the same port and data."""
        if self.dir is None:
            self.init()
        cmd = [os.path.join(self.bindir, "postgres"), "-D", self.data, "-p", str(self.port),
               "-k", self.dir, "-c", "listen_addresses=127.0.0.1"]
        for k, v in self.settings.items():
            cmd += ["-c", f"{k}={v}"]
        log = open(self.log_path, "a")
        try:
            self.proc = subprocess.Popen(cmd, cwd=self.dir, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, **self._as_user())
        finally:
            log.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited {self.proc.returncode}:\n{self.log()}")
            r = subprocess.run([os.path.join(self.bindir, "pg_isready"), "-q", "-h", "127.0.0.1",
                                "-p", str(self.port)], cwd=self.dir)
            if r.returncode == 0:
                return self
            time.sleep(0.1)
        raise RuntimeError(f"postgres not ready after {timeout}s:\n{self.log()}")

    def stop(self, mode="fast", timeout=30):
        """Stops the server by its PID: fast (SIGINT: sessions ended, a clean shutdown) or
        immediate (SIGQUIT: as a crash, recovery on the next start)."""
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return
        self.proc.send_signal(signal.SIGINT if mode == "fast" else signal.SIGQUIT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def log(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ""

    def url(self, dbname="postgres", **params):
        """A libpq URL to dbname (params: more libpq parameters, e.g. options)."""
        q = "&".join(f"{k}={urllib.parse.quote(str(v), safe='')}" for k, v in params.items())
        return (f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{dbname}"
                + ("?" + q if q else ""))

    def sql(self, statement, dbname="postgres"):
        """Runs SQL with psql (as this process's user, over TCP); its output, unaligned."""
        p = subprocess.run([os.path.join(self.bindir, "psql"), "-X", "-q", "-A", "-t",
                            "-v", "ON_ERROR_STOP=1", "-d", self.url(dbname), "-c", statement],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"psql: {statement}: {p.stdout}")
        return p.stdout.strip()

    def close(self):
        self.stop()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
