#!/usr/bin/python3
"""End to end with a real browser client: Converse.js 14 (npm) in Debian's headless Chromium,
driven with puppeteer-core (test/js/converse/drive.js), logged in over ejabberd's websocket.

Everything is private and on loopback: an ejabberd 23.01 with mod_http_upload_hmac (which runs
the upload server), a websocket listener (`/ws: ejabberd_http_ws`) and mod_admin_extra (alice
and bob in each other's roster); the Converse page and its dist served by this test from
another port than the upload server, so every PUT is a cross-origin request with a CORS
preflight (a PUT, with an Authorization header, is never a "simple" request); one Chromium with
two browser contexts (separate storage): alice sends, bob receives.

1. With the default cors_origins ["*"], alice sends a PDF and a PNG through the chat toolbar's
   file input. Checked: bob's chat shows the PDF as a link to its upload URL and the PNG inline
   (an <img> whose src is its upload URL and which has loaded: naturalWidth > 0); a screenshot
   of bob's chat shows the picture's four solid colours; curl fetches both back with the same
   sha256 and the signed content types; the access log has each OPTIONS preflight and PUT.
2. With cors_origins listing one origin: alice on a page from that origin uploads; alice on a
   page from another origin gets Converse's upload error, the browser never sends the PUT (only
   the refused preflight reaches the server) and nothing is stored.

npm packages (pinned in test/js/converse/package.json and package-lock.json) are installed by
the test into build/converse the first time; Chromium is Debian's /usr/bin/chromium."""

import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from ejabberd import Ejabberd  # noqa: E402
import npm_packages  # noqa: E402
from harness import ROOT, curl, eq, free_port, main, sha256_file, test  # noqa: E402
from images import quadrant_png  # noqa: E402

JS_DIR = os.path.join(ROOT, "test", "js", "converse")
NODE_DIR = os.path.join(ROOT, "build", "converse")
CHROMIUM = "/usr/bin/chromium"
KEEP = os.environ.get("HU_CONVERSE_KEEP") == "1"   # keep the temp dir (screenshots, logs)
USERS = {"alice": "pw-alice-converse", "bob": "pw-bob-converse"}


# ---- npm packages --------------------------------------------------------------------------

def converse_packages():
    return npm_packages.install(JS_DIR, NODE_DIR, "converse.js")


def converse_version():
    with open(os.path.join(NODE_DIR, "node_modules", "converse.js", "package.json")) as f:
        return json.load(f)["version"]


# ---- ejabberd with a websocket listener and mod_admin_extra --------------------------------

class ConverseEjabberd(Ejabberd):
    """The test instance plus what a browser client needs: an ejabberd_http listener with
    `/ws: ejabberd_http_ws`, and mod_admin_extra for the roster."""

    def __init__(self, module_opts=None, **kw):
        super().__init__(module_opts, **kw)
        self.ws_port = free_port()
        self.ws_url = f"ws://127.0.0.1:{self.ws_port}/ws"

    def write_config(self):
        super().write_config()
        with open(self.config) as f:
            text = f.read()
        listener = (f"listen:\n  - port: {self.ws_port}\n    ip: \"127.0.0.1\"\n"
                    "    module: ejabberd_http\n"
                    "    request_handlers:\n      /ws: ejabberd_http_ws\n")
        # the base config has one listen: section, and modules: last (its entries indented by 2)
        assert text.count("\nlisten:\n") == 1 and "\nmodules:\n" in text, text
        assert not re.search(r"\n\S", text.split("\nmodules:\n", 1)[1]), "modules: is not last"
        text = text.replace("\nlisten:\n", "\n" + listener, 1)
        text = text.rstrip("\n") + "\n  mod_admin_extra: {}\n"
        with open(self.config, "w") as f:
            f.write(text)

    def befriend(self, a, b):
        """a and b in each other's roster, subscription both."""
        for x, y in ((a, b), (b, a)):
            self.ctl("add_rosteritem", x, "localhost", y, "localhost", y, "Friends", "both")


# ---- the page server -------------------------------------------------------------------------

class PageHandler(http.server.SimpleHTTPRequestHandler):
    """/ is index.html, /dist/... the converse.js dist; nothing else."""
    extensions_map = dict(http.server.SimpleHTTPRequestHandler.extensions_map,
                          **{".js": "text/javascript", ".mjs": "text/javascript",
                             ".wasm": "application/wasm", ".json": "application/json",
                             ".css": "text/css"})

    def __init__(self, *a, dist=None, log=None, **kw):
        self.dist, self.log = dist, log
        super().__init__(*a, **kw)

    def translate_path(self, path):
        path = urllib.parse.unquote(urllib.parse.urlsplit(path).path)
        if path in ("/", "/index.html"):
            return os.path.join(JS_DIR, "index.html")
        if path.startswith("/dist/") and ".." not in path.split("/"):
            return os.path.join(self.dist, path[len("/dist/"):])
        return os.path.join(self.dist, "__none__")

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, fmt, *args):
        if self.log is not None:
            self.log.append(fmt % args)


class PageServer:
    """Serves the Converse page on 127.0.0.1:<free port> from a thread."""

    def __init__(self, modules):
        self.log = []
        handler = functools.partial(PageHandler, dist=os.path.join(modules, "converse.js", "dist"),
                                    log=self.log)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, user, ej):
        return self.origin + "/?" + urllib.parse.urlencode(
            {"jid": f"{user}@localhost", "password": USERS[user], "ws": ej.ws_url})

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---- what is sent, and how a screenshot shows the picture -----------------------------------

# Top-left, top-right, bottom-left, bottom-right: solid colours Converse's theme never paints.
QUADRANTS = ((230, 25, 75), (60, 180, 75), (67, 99, 216), (255, 225, 25))
IMAGE_SIZE = (240, 160)


def write_test_image(path):
    """A PNG of four solid quadrants, new bytes each run."""
    return quadrant_png(path, IMAGE_SIZE, QUADRANTS)


def write_test_pdf(path):
    """A real one-page PDF (PIL's writer), with a random title so each run sends new bytes."""
    from PIL import Image
    Image.new("RGB", (120, 80), (250, 250, 250)).save(path, title=os.urandom(8).hex())
    return path


def near(c1, c2, tol=6):
    return all(abs(a - b) <= tol for a, b in zip(c1, c2))


def colour_counts(png, box=None):
    """How many pixels of each QUADRANTS colour (within a small tolerance) the screenshot has,
    in box (x0, y0, x1, y1) or everywhere."""
    from PIL import Image
    im = Image.open(png).convert("RGB")
    if box:
        im = im.crop(box)
    counts = [0] * len(QUADRANTS)
    for n, colour in im.getcolors(maxcolors=im.width * im.height):
        for i, q in enumerate(QUADRANTS):
            if near(colour, q):
                counts[i] += n
    return counts


def check_picture_in_screenshot(png, rect):
    """The picture's four quadrants, each of its own solid colour, where the <img> draws it
    (its content box: CSS pixels = screenshot pixels at deviceScaleFactor 1); and nowhere else
    on the page."""
    x, y, w, h = (round(rect[k]) for k in ("x", "y", "width", "height"))
    inset = 2                                      # edges: sub-pixel positions, filtering
    for i, q in enumerate(QUADRANTS):
        qx, qy = x + (i % 2) * (w // 2), y + (i // 2) * (h // 2)
        box = (qx + inset, qy + inset, qx + w // 2 - inset, qy + h // 2 - inset)
        area = (box[2] - box[0]) * (box[3] - box[1])
        assert area > 500, f"the image is drawn too small: {rect}"
        got = colour_counts(png, box)[i]
        assert got >= 0.98 * area, (f"quadrant {i} of the picture in {png}: {got} of {area} pixels "
                                    f"are {q}")
    total = colour_counts(png)
    for i, q in enumerate(QUADRANTS):
        assert total[i] <= (w // 2 + 2) * (h // 2 + 2), \
            f"{q} outside the picture: {total[i]} pixels"


# ---- running the browser ---------------------------------------------------------------------

def chromium_pids(user_data_dir):
    """Chromium processes started on this profile directory (left over only if node died)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if f"--user-data-dir={user_data_dir}".encode() in f.read().split(b"\0"):
                        out.append(int(d))
            except OSError:
                pass
    return out


def run_driver(plan, work, timeout=100):
    """Runs test/js/converse/drive.js on plan; returns what it observed."""
    plan = dict(plan, chromium=CHROMIUM, user_data_dir=os.path.join(work, "chromium-profile"),
                failure_shots=work, timeout_ms=20000)
    os.makedirs(plan["user_data_dir"])
    plan_file = os.path.join(work, f"plan-{plan['scenario']}.json")
    with open(plan_file, "w") as f:
        json.dump(plan, f)
    env = dict(os.environ, NODE_PATH=os.path.join(NODE_DIR, "node_modules"), HOME=work)
    p = subprocess.Popen(["node", os.path.join(JS_DIR, "drive.js"), plan_file], cwd=work, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)           # node and the Chromium it started
        out, err = p.communicate()
        err += f"\n(drive.js killed after {timeout}s)"
    finally:
        for pid in chromium_pids(plan["user_data_dir"]):
            os.kill(pid, signal.SIGKILL)
    lines = [l for l in out.splitlines() if l.startswith("{")]
    if not lines:
        raise AssertionError(f"drive.js said nothing (exit {p.returncode}): {out[-2000:]} "
                             f"{err[-4000:]}")
    result = json.loads(lines[-1])
    if "error" in result or p.returncode != 0:
        raise AssertionError(f"drive.js: {result.get('error')}\n"
                             + json.dumps(result.get("diagnostics"), indent=1)[-8000:]
                             + f"\nstderr: {err[-2000:]}\nscreenshots in {work}")
    return result


class Setup:
    """One test's world: packages, a temp dir, ejabberd (alice, bob, friends), page servers.
    Stopped by PID and removed on exit (the temp dir is kept when the test fails, or with
    HU_CONVERSE_KEEP=1)."""

    def __init__(self, module_opts=None, pages=1):
        if not os.path.exists(CHROMIUM):
            raise AssertionError(f"{CHROMIUM} is not installed (Debian package chromium; make "
                                 "deps installs it)")
        if not shutil.which("node"):
            raise AssertionError("node is not installed (make deps installs it)")
        self.modules = converse_packages()
        self.module_opts, self.n_pages = module_opts, pages
        self.ej, self.pages = None, []

    def __enter__(self):
        self.work = tempfile.mkdtemp(prefix="hu-converse-")
        try:
            self.pages = [PageServer(self.modules) for _ in range(self.n_pages)]
            self.ej = ConverseEjabberd(self.module_opts(self) if callable(self.module_opts)
                                       else self.module_opts, keep=KEEP).start()
            for user, password in USERS.items():
                self.ej.register(user, password)
            self.ej.befriend("alice", "bob")
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, kind, value, tb):
        for page in self.pages:
            page.stop()
        if self.ej:
            self.ej.stop()
        if KEEP or kind is not None:
            print(f"# kept {self.work}", flush=True)
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    @property
    def upload_base(self):
        return self.ej.module_opts["hmac_server_url"]

    def user(self, name, page=0):
        return {"name": name, "jid": f"{name}@localhost",
                "url": self.pages[page].url(name, self.ej)}

    def access_log(self):
        """(method, path, status, user) of every request the upload server logged."""
        out = []
        with open(self.ej.module_opts["access_log"], errors="replace") as f:
            for line in f:
                m = re.search(r' - (\S+) \[[^]]*\] "(\S+) (\S+)" (\d+) ', line)
                if m:
                    out.append((m.group(2), m.group(3), int(m.group(4)), m.group(1)))
        return out

    def stored(self):
        """The published uploads (files/<k0k1>/<key>)."""
        top = os.path.join(self.ej.storage, "files")
        return sorted(os.path.relpath(os.path.join(d, f), top)
                      for d, _, files in os.walk(top) for f in files)


def url_path(url):
    return urllib.parse.urlsplit(url).path


def token_of(put_url):
    return urllib.parse.parse_qs(urllib.parse.urlsplit(put_url).query)["token"][0]


def one(items, what):
    eq(len(items), 1, f"{what}: {items}")
    return items[0]


# ---- the tests --------------------------------------------------------------------------------

@test
def converse_sends_a_pdf_and_an_image_and_bob_sees_the_image_inline():
    with Setup() as s:
        pdf = write_test_pdf(os.path.join(s.work, "Quarterly report.pdf"))
        png = write_test_image(os.path.join(s.work, "photo.png"))
        files = [{"path": pdf, "name": os.path.basename(pdf), "kind": "file",
                  "type": "application/pdf"},
                 {"path": png, "name": os.path.basename(png), "kind": "image", "type": "image/png"}]
        shots = {k: os.path.join(s.work, f"bob-{k}.png") for k in ("before", "after", "chat")}
        r = run_driver({"scenario": "exchange", "upload_base": s.upload_base,
                        "alice": s.user("alice"), "bob": s.user("bob"), "files": files,
                        "shots": shots}, s.work)
        print(f"# {r['browser_version']}, converse.js {converse_version()}", flush=True)
        page_origin = s.pages[0].origin
        assert urllib.parse.urlsplit(s.upload_base).netloc not in page_origin, "not cross-origin"
        sent = {u["name"]: u for u in r["sent"]}
        dom = r["bob_chat"]
        log = s.access_log()
        for f in files:
            u = sent[f["name"]]
            get, put = u["get"], u["put"]
            # the slot: a GET URL under hmac_server_url, the PUT URL the same plus the query
            assert get.startswith(s.upload_base + "/"), get
            eq(get.rsplit("/", 1)[1], urllib.parse.quote(f["name"]), "file name in the URL")
            eq(put.split("?", 1)[0], get, "PUT URL without its query")
            eq(u["type"], f["type"], f"File.type Chromium gave {f['name']}")
            # what alice's browser sent: a preflight asking for Authorization and Content-Type,
            # answered for any origin; the PUT with the slot's Bearer header (Converse forwards it)
            net = [n for n in r["alice_network"] if n["url"] == put]
            pre = one([n for n in net if n["method"] == "OPTIONS"], f"preflights of {f['name']}")
            eq(pre["status"], 204, "preflight status")
            eq(pre["request"]["origin"], page_origin, "preflight Origin")
            eq(set(pre["request"]["access-control-request-headers"].split(",")),
               {"authorization", "content-type"}, "headers the preflight asks for")
            eq(pre["response"]["access-control-allow-origin"], "*",
               "preflight ACAO (cors_origins default)")
            p = one([n for n in net if n["method"] == "PUT"], f"PUTs of {f['name']}")
            eq(p["status"], 201, f"PUT of {f['name']}")
            eq(p["request"]["authorization"], "Bearer " + token_of(put), "Authorization of the PUT")
            eq(p["request"]["content-type"], f["type"], "Content-Type of the PUT")
            eq(p["request"]["origin"], page_origin, "Origin of the PUT")
            eq(p["response"]["access-control-allow-origin"], "*", "PUT ACAO")
            # the server's side: one OPTIONS, one PUT by alice
            mine = [(m, st, who) for m, path, st, who in log if path == url_path(get)]
            eq(sorted(x for x in mine if x[0] in ("OPTIONS", "PUT")),
               [("OPTIONS", 204, "-"), ("PUT", 201, "alice@localhost")],
               f"access log for {f['name']}")
            # the bytes back, with the signed type
            g = curl(get)
            eq(g.status, 200, f"GET {get}")
            eq(hashlib.sha256(g.body).hexdigest(), sha256_file(f["path"]), f"sha256 of {f['name']}")
            eq(g.header("content-type"), f["type"], f"Content-Type of {f['name']}")
            # bob got the URL as the body and as XEP-0066 out-of-band data
            assert {"body": get, "oob_url": get} in r["bob_received"], r["bob_received"]
        # bob's chat: the PDF as a link to its URL, the image inline (loaded, its natural size)
        pdf_get, png_get = sent[files[0]["name"]]["get"], sent[files[1]["name"]]["get"]
        link = one([a for a in dom["links"] if a["href"] == pdf_get],
                   f"links to the PDF in {dom['links']}")
        eq(link["text"], pdf_get, "the PDF link's text")
        img = one([i for i in dom["images"] if i["src"] == png_get], f"images in {dom['images']}")
        assert "chat-image" in img["cls"], img
        assert img["complete"], img
        eq((img["naturalWidth"], img["naturalHeight"]), IMAGE_SIZE, "the image's natural size")
        eq(img["link"], png_get, "the inline image links to its URL")
        eq([i["src"] for i in dom["images"] if i["src"].startswith(s.upload_base)], [png_get],
           "no other upload shown as an image (the PDF is a link)")
        c, i = dom["rect"], img["rect"]
        assert (c["x"] <= i["x"] and i["x"] + i["width"] <= c["x"] + c["width"]
                and c["y"] <= i["y"] and i["y"] + i["height"] <= c["y"] + c["height"]), \
            f"the image {i} is not inside bob's chat {c}"
        # bob's browser fetched the image (a plain <img>: no CORS needed to show it)
        got = [n for n in r["bob_network"] if n["url"] == png_get and n["method"] == "GET"]
        eq([(n["status"], n["response"]["content-type"]) for n in got][:1], [(200, "image/png")],
           "bob's GET of the image")
        # the screenshots: none of the picture's colours before, its four quadrants after
        eq(colour_counts(shots["before"]), [0, 0, 0, 0], "the picture's colours before the upload")
        eq((round(img["content"]["width"]), round(img["content"]["height"])), IMAGE_SIZE,
           "the picture drawn at its natural size")
        check_picture_in_screenshot(shots["after"], img["content"])
        assert all(n > 0 for n in colour_counts(shots["chat"])), \
            "the picture in the screenshot of bob's chat box"
        eq(len(s.stored()), 2, f"stored uploads {s.stored()}")


@test
def an_origin_not_in_cors_origins_cannot_upload_from_the_browser():
    # two page servers: cors_origins lists the first one's origin only
    with Setup(lambda s: {"cors_origins": [s.pages[0].origin]}, pages=2) as s:
        files = []
        for name in ("allowed.txt", "other origin.txt"):
            path = os.path.join(s.work, name)
            with open(path, "w") as f:
                f.write(f"{name} {os.urandom(8).hex()}\n")
            files.append({"path": path, "name": name})
        shots = {"other": os.path.join(s.work, "alice-other-origin.png")}
        r = run_driver({"scenario": "cors", "upload_base": s.upload_base,
                        "allowed": s.user("alice", 0), "other": s.user("alice", 1),
                        "bob_jid": "bob@localhost", "files": files, "shots": shots}, s.work)
        log = s.access_log()
        # from the listed origin: the upload works, answered for that origin only
        a = r["allowed"]
        eq(a["outcome"]["upload"], "success", f"upload from {s.pages[0].origin}")
        get = a["outcome"]["get"]
        put = [n for n in a["network"] if n["method"] == "PUT"]
        eq([(n["status"], n["response"]["access-control-allow-origin"]) for n in put],
           [(201, s.pages[0].origin)], "PUT from the listed origin")
        assert "Origin" in (put[0]["response"]["vary"] or ""), put
        g = curl(get)
        eq(hashlib.sha256(g.body).hexdigest(), sha256_file(files[0]["path"]),
           "sha256 of the allowed upload")
        assert any(l["href"] == get for l in a["chat"]["links"]), a["chat"]
        # from another origin: the preflight is answered without Access-Control-Allow-Origin, so
        # Chromium never sends the PUT; Converse records the failure
        o = r["other"]
        eq((o["outcome"]["upload"], o["outcome"]["msg_type"], o["outcome"]["message"]),
           ("failure", "error", "Sorry, could not successfully upload your file."),
           "Converse's outcome")
        other_put = o["outcome"]["put"]
        assert other_put and other_put.startswith(s.upload_base + "/"), o["outcome"]
        pre = one([n for n in o["network"] if n["method"] == "OPTIONS"],
                  "preflights from the other origin")
        eq((pre["status"], pre["request"]["origin"],
            pre["response"]["access-control-allow-origin"]),
           (204, s.pages[1].origin, None), "the refused preflight")
        eq([(n["method"], n.get("failed")) for n in o["network"] if n["method"] != "OPTIONS"],
           [("PUT", "net::ERR_FAILED")], "the PUT, blocked in the browser")
        blocked = [l for l in o["console"] if "blocked by CORS policy" in l]
        assert blocked and s.pages[1].origin in blocked[0], o["console"]
        # what alice sees: the upload never becomes a link; Converse 14.0.0 keeps showing the
        # progress bar at 0 (until the failed message expires), not the error text
        assert not [l for l in o["chat"]["links"] if l["href"].startswith(s.upload_base)], o["chat"]
        assert any(m.startswith("Uploading file: other origin.txt")
                   for m in o["chat"]["messages"]), o["chat"]
        eq(o["chat"]["progress"], [0], "the upload's progress bar")
        # the server saw the preflight and nothing else; nothing of it is stored
        path = url_path(other_put)
        eq([(m, st) for m, p, st, _ in log if p == path], [("OPTIONS", 204)],
           "access log for the other origin")
        eq(curl(other_put.split("?", 1)[0]).status, 404, "GET of the refused upload")
        eq(len(s.stored()), 1, f"stored uploads {s.stored()}")


if __name__ == "__main__":
    main()
