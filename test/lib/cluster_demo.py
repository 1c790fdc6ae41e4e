#!/usr/bin/python3
"""`make cluster-demo`: the scale-out deployment of README "Cluster demo", private on
127.0.0.1 with free ports (test/lib/cluster.py): two ejabberd 23.01 nodes in one cluster, one
PostgreSQL ledger, two upload servers on one storage directory, HAProxy in front. Prints the
endpoints and how to try them, runs until Ctrl-C (or SIGTERM), then stops every process by
its PID."""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster  # noqa: E402


def main():
    if not os.access("/usr/sbin/haproxy", os.X_OK):
        sys.exit("make cluster-demo: HAProxy is missing (apt-get install haproxy; "
                 "make cluster-demo installs it when run as root)")
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    started = time.monotonic()
    c = Cluster(log=lambda msg: print(f"Starting {msg}", flush=True))
    try:
        c.start()
    except KeyboardInterrupt:
        print("Interrupted; everything started so far is stopped.", flush=True)
        return
    try:
        c.register("demo", "demo")
        a, b = c.nodes
        sa, sb = c.servers
        print(f"""
The cluster is up ({time.monotonic() - started:.0f} s), everything on 127.0.0.1:

  ejabberd node a  {a.node}  XMPP (STARTTLS, self-signed) 127.0.0.1:{a.c2s_port}
  ejabberd node b  {b.node}  XMPP (STARTTLS, self-signed) 127.0.0.1:{b.c2s_port}
      one mnesia cluster (private epmd on port {c.epmd_port}); user demo@localhost, password demo
  uploads          {c.url}   HAProxy, in front of:
      upload server 1  http://127.0.0.1:{sa.port}/upload  pid {sa.proc.pid}  log {c.nodes[0].module_opts["access_log"]}
      upload server 2  http://127.0.0.1:{sb.port}/upload  pid {sb.proc.pid}  log {c.nodes[1].module_opts["access_log"]}
      HAProxy pid {c.haproxy.pid}, config {c.haproxy_cfg}, log {c.haproxy_log}
      HAProxy stats:   http://127.0.0.1:{c.stats_port}/  (;csv for CSV)
  ledger           {c.ledger_url}   (PostgreSQL pid {c.pg.proc.pid})
  shared storage   {c.storage}
  state            {c.dir}, {a.dir}, {b.dir}

  Try it (an upload through either node lands on either upload server):
    go-sendxmpp -n -u demo@localhost -p demo -j 127.0.0.1:{a.c2s_port} -h FILE demo@localhost
    go-sendxmpp -n -u demo@localhost -p demo -j 127.0.0.1:{b.c2s_port} -h FILE demo@localhost
    ejabberdctl -c {a.ctl_cfg} upload_usage demo localhost
    ejabberdctl -c {b.ctl_cfg} upload_usage demo localhost
    ejabberdctl -c {a.ctl_cfg} list_cluster
    psql '{c.ledger_url}' -c 'SELECT path, "user", size FROM files'
    kill -9 {sa.proc.pid}    # one upload server gone: HAProxy sends everything to the other

  Ctrl-C stops everything.
""", flush=True)
        signal.signal(signal.SIGINT, lambda *a: stop.append(1))
        while not stop:
            gone = [n.node for n in c.nodes if n.pid() is None or not os.path.exists(f"/proc/{n.pid()}")]
            if c.haproxy.poll() is not None:
                gone.append("haproxy")
            if c.pg.proc is None or c.pg.proc.poll() is not None:
                gone.append("postgresql")
            if gone:
                print(f"{', '.join(gone)} exited; stopping the rest.", flush=True)
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the stop short
        print("Stopping ...", flush=True)
        c.stop()
        print("Stopped.", flush=True)


if __name__ == "__main__":
    main()
