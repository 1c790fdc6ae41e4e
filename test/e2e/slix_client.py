#!/usr/bin/python3
"""A real XMPP client (slixmpp, plugin xep_0363) for the end-to-end tests. Logs in, then
either uploads a file (prints {"get": URL}) or only requests a slot (prints the slot or the
error a client sees: condition, text, max-file-size, retry stamp), one JSON object per line.
Usage: slix_client.py JID PASSWORD HOST:PORT CA_CERT upload FILE [CONTENT_TYPE]
       slix_client.py JID PASSWORD HOST:PORT CA_CERT slot FILENAME SIZE [CONTENT_TYPE]
       slix_client.py JID PASSWORD HOST:PORT CA_CERT slots N SIZE   (N slot requests, timed)
       slix_client.py JID PASSWORD HOST:PORT CA_CERT race N SIZE    (N at once, counted)
       slix_client.py JID PASSWORD HOST:PORT CA_CERT iq XML [XML...] (raw IQ gets to the upload
           service, in order: older namespaces, purposes, disco; prints each answer's XML)"""

import asyncio
import json
import sys
import time

import xml.etree.ElementTree as ET

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout

NS = "urn:xmpp:http:upload:0"


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, action):
        super().__init__(jid, password)
        self.action = action
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0363")
        # slixmpp 1.8.3's automatic discovery crashes on Python 3.11: name the service.
        self["xep_0363"].upload_service = "upload.localhost"
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("failed_auth", lambda _: self.finish({"error": "auth"}))
        self.result = None

    def finish(self, result):
        self.result = result
        print(json.dumps(result), flush=True)
        self.disconnect()

    async def start(self, _):
        kind, args = self.action[0], self.action[1:]
        try:
            if kind == "upload":
                ctype = args[1] if len(args) > 1 else None
                url = await self["xep_0363"].upload_file(args[0], content_type=ctype, timeout=60)
                self.finish({"get": url})
            elif kind == "slot":
                ctype = args[2] if len(args) > 2 else None
                iq = await self["xep_0363"].request_slot(slixmpp.JID("upload.localhost"), args[0],
                                                         int(args[1]), ctype, timeout=30)
                slot = iq["http_upload_slot"]
                self.finish({"put": slot["put"]["url"], "get": slot["get"]["url"],
                             "headers": {h["name"]: h["value"] for h in slot["put"]["headers"]}})
            elif kind == "race":
                # N slot requests in flight at once; counts what the service granted
                n, size = int(args[0]), int(args[1])

                async def one(i):
                    try:
                        await self["xep_0363"].request_slot(slixmpp.JID("upload.localhost"),
                                                            f"race{i}.bin", size, None, timeout=60)
                        return "granted"
                    except IqError as e:
                        return e.iq["error"]["condition"]

                results = await asyncio.gather(*(one(i) for i in range(n)))
                self.finish({r: results.count(r) for r in set(results)})
            elif kind == "iq":
                answers = []
                for payload in args:
                    iq = self.make_iq_get(ito="upload.localhost")
                    iq.append(ET.fromstring(payload))
                    try:
                        answers.append({"xml": str(await iq.send(timeout=30))})
                    except IqError as e:
                        answers.append({"error": e.iq["error"]["condition"], "xml": str(e.iq)})
                self.finish({"answers": answers})
            elif kind == "slot-urls":
                # N slots (for benchmarks that PUT to them), 32 requests in flight
                n, size = int(args[0]), int(args[1])
                urls = []

                async def get(i):
                    iq = await self["xep_0363"].request_slot(slixmpp.JID("upload.localhost"),
                                                             f"b{i}.bin", size, None, timeout=60)
                    urls.append(iq["http_upload_slot"]["put"]["url"])

                for k in range(0, n, 32):
                    await asyncio.gather(*(get(i) for i in range(k, min(n, k + 32))))
                self.finish({"put": urls})
            elif kind == "slots":
                # N requests, `window` in flight (default 32): the rate, and each latency
                n, size = int(args[0]), int(args[1])
                window = int(args[2]) if len(args) > 2 else 32
                lat = []

                async def one(i):
                    t = time.monotonic()
                    await self["xep_0363"].request_slot(slixmpp.JID("upload.localhost"),
                                                        f"f{i}.bin", size, None, timeout=60)
                    lat.append(time.monotonic() - t)

                start = time.monotonic()
                for k in range(0, n, window):
                    await asyncio.gather(*(one(i) for i in range(k, min(n, k + window))))
                self.finish({"n": n, "seconds": time.monotonic() - start, "latencies": lat})
        except IqError as e:
            err = e.iq["error"]
            xml = e.iq.xml
            mfs = xml.find(f".//{{{NS}}}file-too-large/{{{NS}}}max-file-size")
            retry = xml.find(f".//{{{NS}}}retry")
            self.finish({"error": err["condition"], "type": err["type"], "text": err["text"],
                         "max_file_size": int(mfs.text) if mfs is not None else None,
                         "retry": retry.get("stamp") if retry is not None else None})
        except IqTimeout:
            self.finish({"error": "timeout"})
        except Exception as e:  # an HTTP failure during upload_file
            self.finish({"error": "exception", "text": repr(e)})


def main():
    jid, password, hostport, ca, *action = sys.argv[1:]
    host, port = hostport.rsplit(":", 1)
    c = Client(jid, password, action)
    c.ca_certs = ca
    c.connect((host, int(port)))
    c.loop.run_until_complete(c.disconnected)
    sys.exit(0 if c.result and "error" not in c.result else 1)


if __name__ == "__main__":
    main()
