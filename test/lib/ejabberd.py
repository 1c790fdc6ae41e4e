"""A private ejabberd 23.01 (Debian package) with mod_http_upload_hmac loaded from this tree,
and the real upload server reading the same ejabberd.yml: run by the module itself
(upload_server: managed, the default), or started here next to ejabberd (upload_server:
external, as an operator's systemd unit would). Everything binds to 127.0.0.1 on free ports,
lives in one temp directory, and is stopped by PID (see
../shared/notes/ejabberd-test-instance.md for the facts this relies on)."""

import os
import re
import shutil
import socket
import signal
import subprocess
import tempfile
import time
import uuid

from harness import ROOT, SERVER_BIN, UploadServer, free_port, wait_for

EJABBERDCTL = "/usr/sbin/ejabberdctl"


def self_signed_cert(directory):
    key, cert, pem = (os.path.join(directory, n) for n in ("key.pem", "cert.pem", "server.pem"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    with open(pem, "w") as out:
        out.write(open(cert).read() + open(key).read())
    return pem, cert


def yaml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(yaml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {yaml_value(x)}" for k, x in v.items()) + "}"
    if v in ("infinity", "default", "refuse"):
        return v
    return '"' + str(v).replace('"', '\\"') + '"'


def server_processes(config):
    """PIDs of the hmac-upload-server processes started on this config file."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{d}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if (state != "Z" and argv and os.path.basename(argv[0]) == b"hmac-upload-server"
                and config.encode() in argv):
            out.append(int(d))
    return sorted(out)


class Ejabberd:
    """start() brings up ejabberd + the upload server; stop() takes both down.
    upload_server: "managed" (the module runs the server: the default), "external" (this
    class starts it next to ejabberd, as `upload`), or False (external, and nobody starts it)."""

    def __init__(self, module_opts=None, builtin_upload=False, upload_server="managed", keep=False,
                 extra_modules="", node=None, cookie=None, epmd_port=None):
        self.dir = tempfile.mkdtemp(prefix="hu-ejabberd-")
        self.c2s_port = free_port()
        self.http_port = free_port()       # ejabberd's own HTTP listener (built-in upload)
        self.upload_port = free_port()     # hmac-upload-server
        self.dist_port = free_port()
        self.node = node or f"hu{uuid.uuid4().hex[:10]}@localhost"
        # the nodes of one cluster share a cookie and find each other through one private epmd
        # (its port: epmd_port); a node on its own needs no epmd (ERL_DIST_PORT)
        self.cookie = cookie or f"hucookie{self.dist_port}"
        self.epmd_port = epmd_port
        self.storage = os.path.join(self.dir, "storage")
        self.pem, self.cert = self_signed_cert(self.dir)
        self.builtin_upload = builtin_upload
        self.managed = upload_server == "managed"
        self.with_upload_server = upload_server == "external"
        self.module_opts = {
            "hmac_server_url": f"http://127.0.0.1:{self.upload_port}/upload",
            "listen": f"127.0.0.1:{self.upload_port}",
            "storage_dir": self.storage,
            "access_log": os.path.join(self.dir, "access.log"),
            "upload_server": "managed" if self.managed else "external",
        }
        self.module_opts.update(module_opts or {})
        self.config = os.path.join(self.dir, "ejabberd.yml")
        self.ctl_cfg = os.path.join(self.dir, "ejabberdctl.cfg")
        self.upload = None
        self.keep = keep
        self.hosts = ["localhost"]   # virtual hosts (write_config)
        self.with_module = True      # false: ejabberd.yml without mod_http_upload_hmac
        # more entries of the modules: section, as YAML lines indented by two spaces (e.g. mod_muc)
        self.extra_modules = extra_modules

    # -- configuration ---------------------------------------------------------------------
    def write_config(self):
        mod = "\n".join(f"    {k}: {yaml_value(v)}" for k, v in self.module_opts.items()
                        if v is not None)
        builtin = ""
        handlers = ""
        if self.builtin_upload:
            handlers = '    request_handlers:\n      "/upload": mod_http_upload\n'
            builtin = (f"  mod_http_upload:\n    put_url: \"http://127.0.0.1:{self.http_port}/upload\"\n"
                       f"    docroot: \"{self.dir}/builtin-upload\"\n    max_size: 1073741824\n"
                       f"    host: \"upload.localhost\"\n")
            mod_section = builtin
        elif self.with_module:
            mod_section = f"  mod_http_upload_hmac:\n{mod}\n"
        else:
            mod_section = ""
        with open(self.config, "w") as f:
            f.write(f"""hosts: [{", ".join(self.hosts)}]
loglevel: info
certfiles: ["{self.pem}"]
auth_method: internal
default_db: mnesia
s2s_access: none
listen:
  - port: {self.c2s_port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls: true
    max_stanza_size: 262144
  - port: {self.http_port}
    ip: "127.0.0.1"
    module: ejabberd_http
{handlers}acl:
  local: {{user_regexp: ""}}
  admin: {{user: "admin@localhost"}}
access_rules:
  local: {{allow: local}}
  c2s: {{allow: all}}
  upload_denied: {{deny: all}}
shaper_rules:
  c2s_shaper: none
api_permissions:
  "console commands": {{from: [ejabberd_ctl], who: all, what: "*"}}
modules:
  mod_disco: {{}}
  mod_roster: {{}}
  mod_register: {{ip_access: all}}
{self.extra_modules}{mod_section}""")
        if self.epmd_port is None:
            dist = f"ERL_DIST_PORT={self.dist_port}\n"
            no_epmd = ""
        else:
            # epmd-less nodes all assume one port for every node: a cluster on one address
            # registers its nodes in a private epmd instead (never one started by erl itself)
            # The node listens on the port picked for it, not an ephemeral one that could be
            # a port another member of the cluster is about to bind: $HU_DIST_LISTEN is set
            # for `ejabberdctl start` only (ejabberdctl's own nodes read this file too).
            dist = f"export ERL_EPMD_PORT={self.epmd_port}\n"
            no_epmd = " -start_epmd false $HU_DIST_LISTEN"
        with open(self.ctl_cfg, "w") as f:
            f.write(f"""ERLANG_NODE={self.node}
{dist}INET_DIST_INTERFACE=127.0.0.1
ERL_OPTIONS="-setcookie {self.cookie}{no_epmd} -kernel inet_dist_use_interface {{127,0,0,1}} -pa {ROOT}/ebin"
EJABBERD_CONFIG_PATH={self.config}
SPOOL_DIR={self.dir}/spool
LOGS_DIR={self.dir}/logs
EJABBERD_PID_PATH={self.dir}/ejabberd.pid
CONTRIB_MODULES_PATH={self.dir}/contrib
EXEC_CMD=as_current_user
""")
        for d in ("spool", "logs", "contrib"):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)

    # -- control -----------------------------------------------------------------------------
    def ctl(self, *args, check=True, timeout=60, extra_env=None):
        env = dict(os.environ, HOME=self.dir, **(extra_env or {}))
        p = subprocess.run([EJABBERDCTL, "-c", self.ctl_cfg] + list(args), capture_output=True,
                           text=True, env=env, timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError(f"ejabberdctl {' '.join(args)}: {p.returncode} {p.stdout} {p.stderr}")
        return p

    def eval(self, expr):
        """Evaluates an Erlang expression on the running node (as ejabberdctl reaches it: a
        hidden node, no epmd); returns what it prints with ~p."""
        literal = '"' + (expr + ".").replace("\\", "\\\\").replace('"', '\\"') + '"'
        code = (f"{{ok, T, _}} = erl_scan:string({literal}), {{ok, E}} = erl_parse:parse_exprs(T), "
                f"R = case rpc:call('{self.node}', erl_eval, exprs, [E, []]) of "
                f"{{value, V, _}} -> V; Other -> Other end, io:format(\"~p~n\", [R]), halt().")
        env = dict(os.environ, HOME=self.dir)
        if self.epmd_port is None:
            reach = ["-erl_epmd_port", str(self.dist_port)]
        else:
            reach = []
            env["ERL_EPMD_PORT"] = str(self.epmd_port)
        p = subprocess.run(["erl", "-sname", f"eval{uuid.uuid4().hex[:8]}@localhost", "-setcookie",
                            self.cookie] + reach + ["-start_epmd", "false", "-dist_listen", "false",
                                                    "-hidden", "-noinput", "-eval", code],
                           capture_output=True, text=True, timeout=60, env=env)
        if p.returncode != 0:
            raise RuntimeError(f"eval {expr}: {p.stdout} {p.stderr}")
        return p.stdout.strip()

    def pid(self):
        try:
            return int(open(os.path.join(self.dir, "ejabberd.pid")).read().strip())
        except (OSError, ValueError):
            return None

    def start(self, timeout=60, wait_upload=True):
        self.write_config()
        return self.start_written(timeout, wait_upload)

    def start_written(self, timeout=60, wait_upload=True):
        """Starts with the configuration files as they are on disk; with a managed upload
        server, returns once it accepts connections (unless wait_upload is false)."""
        pin = (f"-kernel inet_dist_listen_min {self.dist_port} inet_dist_listen_max {self.dist_port}"
               if self.epmd_port is not None else "")
        self.ctl("start", extra_env={"HU_DIST_LISTEN": pin})
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.ctl("status", check=False).returncode == 0:
                break
            pid = self.pid()
            if pid is not None and not os.path.exists(f"/proc/{pid}"):
                raise RuntimeError("ejabberd died:\n" + self.error_log())
            time.sleep(0.1)
        else:
            raise RuntimeError("ejabberd did not start:\n" + self.error_log())
        try:
            if self.with_upload_server and not self.builtin_upload:
                self.upload = UploadServer.from_config(self.config, self.storage, self.upload_port)
            elif self.managed and not self.builtin_upload and wait_upload:
                self.wait_upload_ready()
        except BaseException:
            self.stop()  # the caller gets no instance to stop: leave nothing running
            raise
        return self

    # -- the managed upload server -------------------------------------------------------------
    def server_pids(self):
        """The hmac-upload-server processes running on this instance's ejabberd.yml."""
        return server_processes(self.config)

    def wait_upload_ready(self, port=None, timeout=20):
        """Waits until the upload server (run by the module) accepts connections."""
        port = port or self.upload_port

        def accepting():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False
        try:
            wait_for(accepting, timeout, f"the upload server on port {port}", interval=0.05)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.log()[-4000:]}")

    def log_path(self):
        return os.path.join(self.dir, "logs", "ejabberd.log")

    def log(self, start=0):
        """ejabberd.log from byte offset start."""
        try:
            with open(self.log_path(), errors="replace") as f:
                f.seek(start)
                return f.read()
        except OSError:
            return ""

    def log_size(self):
        try:
            return os.path.getsize(self.log_path())
        except OSError:
            return 0

    def wait_log(self, pattern, start=0, timeout=20):
        """Waits until ejabberd.log (from byte offset start) has a line matching pattern."""
        def found():
            return [l for l in self.log(start).splitlines() if re.search(pattern, l)]
        try:
            return wait_for(found, timeout, f"a log line matching {pattern!r}", interval=0.1)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.log(start)[-4000:]}")

    def error_log(self):
        out = []
        for name in ("error.log", "ejabberd.log"):
            p = os.path.join(self.dir, "logs", name)
            if os.path.exists(p):
                out.append(open(p, errors="replace").read()[-6000:])
        return "\n".join(out)

    def register(self, user, password):
        self.ctl("register", user, "localhost", password)

    def stop(self):
        if self.upload:
            self.upload.stop()
        pid = self.pid()
        self.ctl("stop", check=False, timeout=30)
        deadline = time.time() + 20
        while pid and os.path.exists(f"/proc/{pid}") and time.time() < deadline:
            time.sleep(0.1)
        if pid and os.path.exists(f"/proc/{pid}"):
            os.kill(pid, signal.SIGKILL)
        # a managed server outlives ejabberd by its drain at most; never leave one behind
        deadline = time.time() + 15
        while self.server_pids() and time.time() < deadline:
            time.sleep(0.1)
        for p in self.server_pids():
            os.kill(p, signal.SIGKILL)
        # epmd-less node: nothing else to stop
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
