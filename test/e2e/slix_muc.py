#!/usr/bin/python3
"""Two real XMPP clients (slixmpp) in one group chat, for the media-metadata test: the owner
creates the room (mod_muc, an instant room), the other occupant joins, the owner uploads a
file through XEP-0363 and posts each URL as a groupchat message with its OOB element
(XEP-0066), then sends the same URLs to the occupant in one-to-one chat messages. Prints one
JSON object: the uploaded file's GET URL and the raw XML of every message the occupant
received, in order.
Usage: slix_muc.py HOST:PORT CA_CERT ROOM_JID OWNER PASSWORD OCCUPANT PASSWORD FILE TYPE [URL...]
(the extra URLs, e.g. another server's, are posted after the uploaded one)"""

import asyncio
import json
import sys

import slixmpp

NS_MUC_OWNER = "http://jabber.org/protocol/muc#owner"


class Occupant(slixmpp.ClientXMPP):
    def __init__(self, jid, password, room, nick):
        super().__init__(jid, password)
        self.room, self.nick = room, nick
        self.register_plugin("xep_0045")
        self.received = []
        self.joined = asyncio.Event()
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("groupchat_message", self.on_message)
        self.add_event_handler("message", self.on_message)

    async def start(self, _):
        self.send_presence()
        await self.get_roster()

    async def join(self):
        await self["xep_0045"].join_muc_wait(slixmpp.JID(self.room), self.nick, timeout=30)

    def on_message(self, msg):
        # groupchat messages come to both handlers: keep each stanza once
        if msg["type"] in ("groupchat", "chat", "normal") and msg["body"] \
                and all(r is not msg for r in self.received):
            self.received.append(msg)


class Owner(Occupant):
    def __init__(self, jid, password, room, nick):
        super().__init__(jid, password, room, nick)
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0066")
        self.register_plugin("xep_0363")
        self["xep_0363"].upload_service = "upload.localhost"

    async def create_room(self):
        await self.join()
        # accept the default configuration: an instant room (XEP-0045 10.1.2)
        iq = self.make_iq_set(ito=self.room)
        query = slixmpp.xmlstream.ET.Element(f"{{{NS_MUC_OWNER}}}query")
        slixmpp.xmlstream.ET.SubElement(query, "{jabber:x:data}x", {"type": "submit"})
        iq.append(query)
        await iq.send(timeout=30)

    def post(self, to, mtype, url):
        msg = self.make_message(mto=to, mbody=url, mtype=mtype)
        msg["oob"]["url"] = url
        msg.send()


async def run(hostport, ca, room, owner_jid, owner_pw, occ_jid, occ_pw, path, ctype, extra):
    host, port = hostport.rsplit(":", 1)
    owner = Owner(owner_jid, owner_pw, room, "owner")
    occupant = Occupant(occ_jid, occ_pw, room, "occupant")
    for c in (owner, occupant):
        c.ca_certs = ca
        started = asyncio.Event()
        c.add_event_handler("session_start", lambda _, e=started: e.set())
        c.connect((host, int(port)))
        await asyncio.wait_for(started.wait(), 30)
    await owner.create_room()
    await occupant.join()
    url = await owner["xep_0363"].upload_file(path, content_type=ctype, timeout=60)
    urls = [url] + extra
    for u in urls:
        owner.post(room, "groupchat", u)
    for u in urls:
        owner.post(occ_jid, "chat", u)
    # wait for every message to reach the occupant (the room's and the direct ones)
    for _ in range(300):
        if len(occupant.received) >= 2 * len(urls):
            break
        await asyncio.sleep(0.1)
    print(json.dumps({"get": url, "messages": [str(m) for m in occupant.received]}), flush=True)
    for c in (owner, occupant):
        c.disconnect()
        await c.disconnected


def main():
    hostport, ca, room, owner_jid, owner_pw, occ_jid, occ_pw, path, ctype, *extra = sys.argv[1:]
    asyncio.get_event_loop().run_until_complete(
        run(hostport, ca, room, owner_jid, owner_pw, occ_jid, occ_pw, path, ctype, extra))


if __name__ == "__main__":
    main()
