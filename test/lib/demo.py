#!/usr/bin/python3
"""`make run`: a private ejabberd 23.01 with mod_http_upload_hmac and the upload server on
embedded defaults (loopback ports, a self-signed certificate, a demo user), until Ctrl-C."""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ejabberd import Ejabberd  # noqa: E402


def main():
    ej = Ejabberd(keep=True)
    print("Starting a private ejabberd with mod_http_upload_hmac and hmac-upload-server ...", flush=True)
    ej.start()
    ej.register("demo", "demo")
    print(f"""
  XMPP (STARTTLS, self-signed certificate): 127.0.0.1:{ej.c2s_port}
  user: demo@localhost   password: demo
  upload service: upload.localhost  ->  {ej.module_opts['hmac_server_url']}
  state directory: {ej.dir}   (ejabberd.yml, logs, storage, ledger)

  Try it:
    go-sendxmpp -n -u demo@localhost -p demo -j 127.0.0.1:{ej.c2s_port} -h FILE demo@localhost
    ejabberdctl -c {ej.ctl_cfg} upload_usage demo localhost

  Ctrl-C stops everything.
""", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    signal.signal(signal.SIGINT, lambda *a: stop.append(1))
    while not stop:
        if ej.upload and ej.upload.proc.poll() is not None:
            print("upload server exited:", "\n".join(ej.upload.stderr_lines[-5:]))
            break
        time.sleep(0.5)
    print("Stopping ...", flush=True)
    ej.stop()
    print("Stopped.", flush=True)


if __name__ == "__main__":
    main()
