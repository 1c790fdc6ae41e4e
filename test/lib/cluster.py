"""A private scale-out deployment on 127.0.0.1, for `make cluster-demo` and the cluster tests
(test/e2e/test_cluster.py):

  - one PostgreSQL (test/lib/postgres.py: initdb in a temp dir, its own port), database
    `upload`: the ledger both ejabberd nodes and both upload servers share
    (`ledger_path: postgresql://...`);
  - two ejabberd 23.01 nodes (test/lib/ejabberd.py) with one cookie, joined in one mnesia
    cluster (`ejabberdctl join_cluster`); they find each other through a private epmd on
    127.0.0.1 (epmd-less distribution assumes one port for every node, so two nodes on one
    address need an epmd); each has its own c2s port and the module with the same options:
    the shared secret, the shared ledger and storage directory, `upload_server: external`,
    `hmac_server_url` pointing at HAProxy;
  - two hmac-upload-servers, each on its node's ejabberd.yml (its own `listen` and
    `access_log`), both on ONE storage directory: what operators run as systemd units;
  - HAProxy (Debian) in front of them: `balance uri` with consistent hashing (every request
    of one slot, PUT, tus HEAD/PATCH and GET, goes to one server while it is up), health
    checks, and a retry on another server when a connection is refused.

Every process is started here and stopped by its PID (Cluster.stop, also on a failed start).

    with Cluster() as c:
        c.nodes[0].c2s_port, c.url, c.servers[1].port, c.pg.url("upload")
        c.slot_requests("alice", "pw", {0: [("a.jpg", 1000, "image/jpeg")], 1: [...]})
"""

import asyncio
import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import uuid

from ejabberd import Ejabberd
from harness import UploadServer, free_port, wait_for
from postgres import Postgres

SECRET = "cluster-shared-secret-0123456789abcdef"
HAPROXY = "/usr/sbin/haproxy"
EPMD = "/usr/bin/epmd"


def _parallel(*fns):
    """Runs the functions in threads; re-raises the first exception once all are done."""
    errors = []

    def run(fn):
        try:
            fn()
        except BaseException as e:  # reported to the caller below
            errors.append(e)
    threads = [threading.Thread(target=run, args=(fn,)) for fn in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


class Cluster:
    """Two ejabberd nodes, PostgreSQL, two upload servers on one storage directory, HAProxy.
    module_opts: more options for the module on both nodes (quota_per_user, max_size, ...)."""

    def __init__(self, module_opts=None, haproxy_port=None, keep=False, log=None):
        self.module_opts = dict(module_opts or {})
        self.haproxy_port = haproxy_port or free_port()
        self.keep = keep
        self.log = log or (lambda msg: None)
        self.dir = None
        self.pg = None
        self.epmd = None
        self.epmd_port = None
        self.nodes = []
        self.servers = []
        self.haproxy = None

    # -- start ---------------------------------------------------------------------------
    def start(self):
        try:
            self._start()
        except BaseException:
            self.stop()  # the caller gets no instance to stop: leave nothing running
            raise
        return self

    def _start(self):
        self.dir = tempfile.mkdtemp(prefix="hu-cluster-")
        os.chmod(self.dir, 0o755)
        self.storage = os.path.join(self.dir, "storage")
        self.url = f"http://127.0.0.1:{self.haproxy_port}/upload"
        self.stats_port = free_port()

        self.log("PostgreSQL ...")
        self.pg = Postgres().start()
        self.pg.sql("CREATE DATABASE upload")
        self.ledger_url = self.pg.url("upload")

        self.epmd_port = free_port()
        # own sessions (epmd, HAProxy): a Ctrl-C at the terminal reaches the demo, which
        # stops them by PID in order
        self.epmd = subprocess.Popen([EPMD, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for(lambda: self._accepting(self.epmd_port), 10, "epmd")

        cookie = "hucluster" + uuid.uuid4().hex[:12]
        tag = uuid.uuid4().hex[:6]
        for name in ("a", "b"):
            node = Ejabberd(upload_server=False, node=f"hu{name}{tag}@localhost", cookie=cookie,
                            epmd_port=self.epmd_port, keep=self.keep)
            node.module_opts.update({
                "hmac_server_url": self.url,
                "listen": f"127.0.0.1:{node.upload_port}",
                "storage_dir": self.storage,
                "ledger_path": self.ledger_url,
                "hmac_shared_secret": SECRET,
                "upload_server": "external",
                "access_log": os.path.join(node.dir, "access.log"),
            })
            node.module_opts.update(self.module_opts)
            self.nodes.append(node)

        self.log("two ejabberd nodes ...")
        _parallel(*(n.start for n in self.nodes))
        self.log("joining them in one cluster ...")
        a, b = self.nodes
        b.ctl("join_cluster", a.node)
        wait_for(lambda: b.ctl("status", check=False).returncode == 0, 30,
                 "the joined node to run again", interval=0.2)
        for n in self.nodes:
            members = set(n.ctl("list_cluster").stdout.split())
            if members != {a.node, b.node}:
                raise RuntimeError(f"{n.node}: list_cluster says {members}")

        self.log("two upload servers on one storage directory ...")
        for n in self.nodes:
            self.servers.append(UploadServer.from_config(n.config, self.storage, n.upload_port))

        self.log("HAProxy ...")
        self.start_haproxy()

    def start_haproxy(self):
        self.haproxy_cfg = os.path.join(self.dir, "haproxy.cfg")
        self.haproxy_sock = os.path.join(self.dir, "haproxy.sock")
        self.haproxy_log = os.path.join(self.dir, "haproxy.log")
        servers = "\n".join(f"    server up{i + 1} 127.0.0.1:{n.upload_port} check"
                            for i, n in enumerate(self.nodes))
        with open(self.haproxy_cfg, "w") as f:
            f.write(f"""global
    maxconn 2000
    log stdout format raw daemon
    stats socket {self.haproxy_sock} mode 600 level admin

defaults
    mode http
    log global
    option httplog
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    timeout http-request 15s
    # a refused connection (a server down, not yet marked so) is retried on another server
    retries 3
    option redispatch 1

listen stats
    bind 127.0.0.1:{self.stats_port}
    stats enable
    stats uri /
    stats refresh 2s

frontend uploads
    bind 127.0.0.1:{self.haproxy_port}
    default_backend upload_servers

backend upload_servers
    # every request of one slot (PUT, tus HEAD/PATCH, GET: one path, queries ignored) goes to
    # one server while it is up; a server's slots move to the others when it goes down
    balance uri path-only
    hash-type consistent
    option httpchk OPTIONS /upload/
    http-check expect status 204
    default-server inter 1s fastinter 500ms downinter 1s fall 2 rise 2
{servers}
""")
        log = open(self.haproxy_log, "a")
        try:
            self.haproxy = subprocess.Popen([HAPROXY, "-db", "-f", self.haproxy_cfg],
                                            stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()

        def ready():
            if self.haproxy.poll() is not None:
                raise RuntimeError(f"haproxy exited {self.haproxy.returncode}:\n"
                                   + open(self.haproxy_log).read()[-3000:])
            try:
                return all(s == "UP" for s in self.backend_status().values())
            except OSError:
                return False
        wait_for(ready, 20, "HAProxy with both upload servers UP", interval=0.1)

    @staticmethod
    def _accepting(port):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    # -- HAProxy ---------------------------------------------------------------------------
    def haproxy_command(self, command):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(self.haproxy_sock)
            s.sendall(command.encode() + b"\n")
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        return out.decode()

    def backend_status(self):
        """{"up1": "UP", "up2": "DOWN", ...}: what HAProxy's health checks say now."""
        text = self.haproxy_command("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {r["svname"]: r["status"].split()[0] for r in rows
                if r["pxname"] == "upload_servers" and r["svname"] not in ("FRONTEND", "BACKEND")}

    def wait_backend(self, index, status, timeout=15):
        name = f"up{index + 1}"
        return wait_for(lambda: self.backend_status().get(name) == status, timeout,
                        f"HAProxy to see {name} {status}", interval=0.1)

    # -- helpers for clients ----------------------------------------------------------------
    def server_url(self, index):
        """The base URL of one upload server, bypassing HAProxy."""
        return f"http://127.0.0.1:{self.servers[index].port}/upload"

    def direct(self, url, index):
        """A URL through HAProxy, sent to one upload server directly instead."""
        assert url.startswith(self.url), url
        return self.server_url(index) + url[len(self.url):]

    def access_log(self, index):
        """The lines of one upload server's access log."""
        try:
            with open(self.nodes[index].module_opts["access_log"], errors="replace") as f:
                return f.read().splitlines()
        except OSError:
            return []

    def register(self, user, password):
        """Registers a user (mnesia: both nodes see it)."""
        self.nodes[0].register(user, password)

    def slot_requests(self, user, password, plan, timeout=60):
        """Real XMPP clients (slixmpp), one per node in plan ({node index: [(filename, size,
        content type or None), ...]}), all logged in as user (resources n0, n1, ...); once every
        session is up, every request of every client is sent at once. Returns {node index:
        [{"put", "get", "headers"} or {"error": condition, "text": ...}, ...]} in plan order."""
        import slixmpp  # only the tests need it
        from slixmpp.exceptions import IqError, IqTimeout

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        clients = {}

        async def one(c, filename, size, ctype):
            try:
                iq = await c["xep_0363"].request_slot(slixmpp.JID("upload.localhost"), filename,
                                                      size, ctype, timeout=timeout)
            except IqError as e:
                return {"error": e.iq["error"]["condition"], "type": e.iq["error"]["type"],
                        "text": e.iq["error"]["text"]}
            except IqTimeout:
                return {"error": "timeout"}
            slot = iq["http_upload_slot"]
            return {"put": slot["put"]["url"], "get": slot["get"]["url"],
                    "headers": {h["name"]: h["value"] for h in slot["put"]["headers"]}}

        async def run():
            started = []
            for i in plan:
                node = self.nodes[i]
                c = slixmpp.ClientXMPP(f"{user}@localhost/n{i}", password)
                c.register_plugin("xep_0030")
                c.register_plugin("xep_0363")
                # slixmpp 1.8.3's automatic discovery crashes on Python 3.11: name the service
                c["xep_0363"].upload_service = "upload.localhost"
                c.ca_certs = node.cert
                up = loop.create_future()
                c.add_event_handler("session_start",
                                    lambda _e, f=up: f.done() or f.set_result(True))
                c.add_event_handler("failed_auth", lambda _e, f=up: f.done() or f.set_exception(
                    AssertionError(f"{user}: authentication failed")))
                c.connect(("127.0.0.1", node.c2s_port))
                clients[i] = c
                started.append(up)
            await asyncio.wait_for(asyncio.gather(*started), 30)
            # every client is in session: now all requests at once
            jobs = {i: [one(clients[i], *req) for req in reqs] for i, reqs in plan.items()}
            flat = await asyncio.gather(*(j for js in jobs.values() for j in js))
            out, k = {}, 0
            for i, js in jobs.items():
                out[i] = flat[k:k + len(js)]
                k += len(js)
            return out

        try:
            return loop.run_until_complete(run())
        finally:
            async def close():
                for c in clients.values():
                    c.disconnect()
                await asyncio.wait([c.disconnected for c in clients.values()], timeout=5)
            if clients:
                loop.run_until_complete(close())
            # slixmpp leaves its stream filters waiting: end them before the loop goes
            pending = asyncio.all_tasks(loop)
            for t in pending:
                t.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()
            asyncio.set_event_loop(None)

    # -- stop --------------------------------------------------------------------------------
    def stop(self):
        """Stops everything this instance started, by PID: HAProxy, the upload servers, the
        ejabberd nodes (at once), epmd, PostgreSQL; then removes the temp directories."""
        if self.haproxy is not None and self.haproxy.poll() is None:
            self.haproxy.send_signal(signal.SIGUSR1)  # soft stop: finish running requests
            try:
                self.haproxy.wait(10)
            except subprocess.TimeoutExpired:
                self.haproxy.kill()
                self.haproxy.wait()
        self.haproxy = None
        for s in self.servers:
            try:
                s.stop(timeout=15)
            except AssertionError:
                pass  # killed after the timeout
        self.servers = []
        if self.nodes:
            _parallel(*(n.stop for n in self.nodes))
        self.nodes = []
        if self.epmd is not None and self.epmd.poll() is None:
            self.epmd.terminate()
            self.epmd.wait()
        self.epmd = None
        if self.pg is not None:
            self.pg.close()
            self.pg = None
        if self.dir and not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
