"""The election port's transport: notifications to and from the other servers.

Owns one sender task and queue per peer (a connection opened on demand, re-opened once on a
failure, a notification dropped after that: the election re-sends), the connections peers open
to us, and the wire framing (len:u32 + zkpy.quorum.election's notification). What a
notification means is the caller's: `on_notification(n, answer)`, where answer(reply) writes a
notification back on the connection `n` came in on (for a sender we cannot dial).
"""

import asyncio

from zkpy.quorum import election as fle
from zkpy.quorum import secure

MAX_NOTIFICATION_BYTES = 4096
QUEUE_MAX = 100


class ElectionTransport(object):
    def __init__(self, myid, security, servers, spawn, on_notification):
        self.myid = myid
        self.security = security
        self.servers = servers              # () -> {sid: ServerSpec}, the current membership
        self._spawn = spawn                 # spawn(coro): a task the owner cancels at stop
        self.on_notification = on_notification
        self._out = {}                      # sid -> asyncio.Queue of notifications to send

    def send(self, dest, n):
        if dest == self.myid or dest not in self.servers():
            return
        q = self._out.get(dest)
        if q is None:
            q = self._out[dest] = asyncio.Queue()
            self._spawn(self._sender(dest, q))
        if q.qsize() < QUEUE_MAX:
            q.put_nowait(n)

    async def _sender(self, dest, q):
        writer = None
        while True:
            n = await q.get()
            spec = self.servers().get(dest)
            if spec is None:
                continue
            for attempt in (1, 2):
                try:
                    if writer is not None and writer.is_closing():
                        # The peer went away (the reader side closed it): a TLS transport
                        # drops writes while it shuts down instead of failing them.
                        writer = None
                    if writer is None:
                        reader, writer = await self.security.connect_any(
                            spec.election_addresses(), 2.0, "election")
                        # Servers that do not know us answer on this connection.
                        self._spawn(self.serve(reader, writer))
                    _write(writer, n)
                    await asyncio.wait_for(writer.drain(), 2.0)
                    break
                except (OSError, asyncio.TimeoutError, secure.Refused):
                    if writer is not None:
                        writer.close()
                    writer = None
                    if attempt == 2:
                        break  # dropped; the election re-sends

    async def serve(self, reader, writer):
        """Read notifications from one connection (accepted, or one we opened) until it ends."""
        def answer(reply):
            _write(writer, reply)
        try:
            while True:
                head = await reader.readexactly(4)
                n = int.from_bytes(head, "big")
                if n > MAX_NOTIFICATION_BYTES:
                    raise ValueError("notification of %d bytes" % n)
                self.on_notification(fle.decode_notification(await reader.readexactly(n)),
                                     answer)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, OSError):
            pass
        except asyncio.CancelledError:   # the server is stopping
            pass
        finally:
            writer.close()


def _write(writer, n):
    data = fle.encode_notification(n)
    writer.write(len(data).to_bytes(4, "big") + data)
