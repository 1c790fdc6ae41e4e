#!/usr/bin/python3
"""The contrib layout: `ejabberdctl module_install mod_http_upload_hmac` builds the module
and its C parts from CONTRIB_MODULES_PATH/sources/ and loads it in a running ejabberd."""

import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from ejabberd import Ejabberd  # noqa: E402
from harness import ROOT, eq, main, test  # noqa: E402
from xmpp_clients import slix  # noqa: E402


@test
def module_install_from_sources():
    ej = Ejabberd(upload_server=False)
    ej.use_source_tree = False  # the module must come from module_install, not -pa
    try:
        ej.write_config()
        # ejabberd without the module in its config, allowed to install contrib modules
        cfg = open(ej.config).read().split("  mod_http_upload_hmac:")[0]
        open(ej.config, "w").write("allow_contrib_modules: true\n" + cfg)
        ctl = open(ej.ctl_cfg).read().replace(f" -pa {ROOT}/ebin", "")
        open(ej.ctl_cfg, "w").write(ctl)
        src = os.path.join(ej.dir, "contrib", "sources", "mod_http_upload_hmac")
        files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
        for f in files:
            if f.startswith(("src/", "c_src/", "conf/")) or f in ("mod_http_upload_hmac.spec", "COPYING", "README.txt"):
                os.makedirs(os.path.dirname(os.path.join(src, f)), exist_ok=True)
                shutil.copy(os.path.join(ROOT, f), os.path.join(src, f))
        # the example configuration, pointed at this test's directories
        with open(os.path.join(src, "conf", "mod_http_upload_hmac.yml"), "w") as out:
            out.write(f"""modules:
  mod_http_upload_hmac:
    hmac_server_url: "http://127.0.0.1:{ej.upload_port}/upload"
    storage_dir: "{ej.storage}"
""")
        ej.start_written()
        avail = ej.ctl("modules_available").stdout
        assert "mod_http_upload_hmac" in avail, avail
        r = ej.ctl("module_install", "mod_http_upload_hmac", check=False, timeout=600)
        eq(r.returncode, 0, f"module_install: {r.stdout} {r.stderr}\n{ej.error_log()[-3000:]}")
        installed = ej.ctl("modules_installed").stdout
        assert "mod_http_upload_hmac" in installed, installed
        lib = os.path.join(ej.dir, "contrib", "mod_http_upload_hmac")
        assert os.path.exists(os.path.join(lib, "priv", "lib", "hmac_upload_nif.so")), os.listdir(lib)
        assert os.path.exists(os.path.join(lib, "priv", "bin", "hmac-upload-server")), os.listdir(lib)
        ej.register("alice", "pw-alice")
        s = slix(ej, "alice", "slot", "a.txt", "10")
        assert s.get("put", "").startswith(f"http://127.0.0.1:{ej.upload_port}/upload/"), s
    finally:
        ej.stop()


if __name__ == "__main__":
    main()
