"""A TCP proxy between a PostgreSQL client and server that reads what the client says (the
frontend protocol, in plain text: the client's URL has sslmode=disable; an SSLRequest or
GSSENCRequest is answered "N" here) and, when armed, breaks a connection at the COMMIT of a
transaction that ran a given statement: the fault a COMMIT whose outcome the client cannot
know.

    proxy = PgProxy(pg.port).start()
    url = proxy.url("db")                     # the same database, through the proxy
    proxy.arm("after", watch=r"INSERT INTO files\\(")
    ...                                       # the next such COMMIT breaks
    proxy.fired.wait(10)
    proxy.faulted_binds                       # how often that transaction ran the statement

The client's messages: a startup message (length, protocol code), then typed messages (one
byte, a length that counts itself, the body). A Parse ('P': statement name, query) names a
prepared statement; a Bind ('B': portal, statement name, ...) runs one; a simple query ('Q')
carries BEGIN, COMMIT or ROLLBACK. A transaction is marked when it binds a statement whose
query matches `watch` (or runs such a simple query); its COMMIT (a 'Q' message) is where the
fault strikes. Modes:
  before         both connections closed, the COMMIT never forwarded: PostgreSQL sees the
                 client go and rolls the transaction back (not applied)
  before_silent  the client's connection closed, the COMMIT never forwarded, the server's
                 connection left open (PostgreSQL does not learn of it: its session stays
                 idle in the transaction, holding its locks, as behind a network partition)
  after          the COMMIT forwarded, `delay` seconds to let PostgreSQL commit, then both
                 connections closed before its reply is relayed (applied, but the client
                 never hears of it)
The server's replies are relayed as they come, unread."""

import re
import select
import socket
import struct
import threading
import time
import urllib.parse

from postgres import PASSWORD, USER

SSL_REQUEST, GSSENC_REQUEST = 80877103, 80877104


class PgProxy:
    def __init__(self, upstream_port, upstream_host="127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self.lock = threading.Lock()
        self.mode = None
        self.watch = None
        self.delay = 0.2
        self.countdown = 0
        self.fired = threading.Event()
        self.faulted_binds = 0  # Binds of a watched statement in the transaction broken
        self.held = []  # server connections left open by before_silent
        self.conns = set()
        self.listener = None
        self.port = None

    def start(self):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def url(self, dbname, **params):
        params = dict({"sslmode": "disable", "gssencmode": "disable"}, **params)
        q = "&".join(f"{k}={urllib.parse.quote(str(v), safe='')}" for k, v in params.items())
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{dbname}?{q}"

    def arm(self, mode, watch, delay=0.2, nth=1):
        """The nth COMMIT from now of a transaction that ran a statement matching watch (a
        regex on the query text) breaks as mode says; once."""
        assert mode in ("before", "before_silent", "after"), mode
        with self.lock:
            self.mode, self.watch, self.delay = mode, re.compile(watch), delay
            self.countdown = nth
            self.fired.clear()

    def disarm(self):
        with self.lock:
            self.mode = None

    def close(self):
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        with self.lock:
            socks, self.held = list(self.conns) + self.held, []
            self.conns.clear()
        for s in socks:
            try:
                s.close()
            except OSError:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # -- inside ------------------------------------------------------------------------------

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns.update((client, server))
            threading.Thread(target=self._relay, args=(client, server), daemon=True).start()

    def _take_fault(self, binds):
        """For the COMMIT of a marked transaction (binds: its Binds of a watched statement):
        the armed mode when this is the COMMIT to break (then disarmed), or None."""
        with self.lock:
            if self.mode is None:
                return None, 0
            self.countdown -= 1
            if self.countdown > 0:
                return None, 0
            mode, self.mode = self.mode, None
            self.faulted_binds = binds
            return mode, self.delay

    def _relay(self, client, server):
        buf = b""
        started = False
        statements = {}  # prepared statement name -> query text, for this session
        marked = 0  # Binds of a watched statement in the open transaction
        keep_server = False
        try:
            while True:
                r, _, _ = select.select([client, server], [], [])
                if server in r:
                    data = server.recv(65536)
                    if not data:
                        return
                    client.sendall(data)
                if client not in r:
                    continue
                data = client.recv(65536)
                if not data:
                    return
                buf += data
                out = b""
                while True:
                    if not started:
                        if len(buf) < 8:
                            break
                        n = struct.unpack("!I", buf[:4])[0]
                        if len(buf) < n:
                            break
                        msg, buf = buf[:n], buf[n:]
                        code = struct.unpack("!I", msg[4:8])[0]
                        if code in (SSL_REQUEST, GSSENC_REQUEST):
                            client.sendall(b"N")  # plain text only: we read the stream
                            continue
                        started = True
                        out += msg
                        continue
                    if len(buf) < 5:
                        break
                    n = struct.unpack("!I", buf[1:5])[0]
                    if len(buf) < 1 + n:
                        break
                    msg, buf = buf[:1 + n], buf[1 + n:]
                    kind, body = msg[:1], msg[5:]
                    watch = self.watch
                    if kind == b"P":
                        name, rest = body.split(b"\0", 1)
                        statements[name] = rest.split(b"\0", 1)[0].decode("utf-8", "replace")
                    elif kind == b"B":
                        stmt = body.split(b"\0", 2)[1]
                        if watch is not None and watch.search(statements.get(stmt, "")):
                            marked += 1
                    elif kind == b"Q":
                        q = body.rstrip(b"\0").decode("utf-8", "replace").strip()
                        head = q.split(None, 1)[0].rstrip(";").upper() if q else ""
                        if head in ("BEGIN", "START", "ROLLBACK", "ABORT"):
                            marked = 0
                        elif watch is not None and watch.search(q):
                            marked += 1
                        if head in ("COMMIT", "END") and marked:
                            mode, delay = self._take_fault(marked)
                            marked = 0
                            if mode is not None:
                                server.sendall(out)
                                out = b""
                                if mode == "after":
                                    server.sendall(msg)
                                    time.sleep(delay)  # PostgreSQL commits; its reply waits
                                keep_server = mode == "before_silent"
                                self.fired.set()
                                return
                    out += msg
                if out:
                    server.sendall(out)
        except OSError:
            return
        finally:
            with self.lock:
                self.conns.discard(client)
                self.conns.discard(server)
                if keep_server:
                    self.held.append(server)
            client.close()
            if not keep_server:
                server.close()
