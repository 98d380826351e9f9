"""A framed TCP connection between two servers of an ensemble, and StepDown.

Owns the asyncio stream plumbing the roles share: a connection that reads whole frames of
zkpy.quorum.messages and queues outgoing frames so that one loop pass writes them at once.
"""

import asyncio
import collections
import time

from zkpy.quorum import messages as m


def now_ms():
    return int(time.monotonic() * 1000)


class StepDown(Exception):
    """Leave the current role and look for a leader again (the reason is in the message)."""


class PeerConn(object):
    """A framed peer connection over asyncio streams."""

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer
        self.decoder = m.Decoder()
        self.frames = collections.deque()
        self.closed = False
        self._out = []

    async def recv(self, timeout_s):
        while not self.frames:
            data = await asyncio.wait_for(self.reader.read(1 << 20), timeout_s)
            if not data:
                raise StepDown("connection closed by the peer")
            self.frames.extend(self.decoder.feed(data))
        return m.decode(self.frames.popleft())

    def send(self, data):
        """Queue a frame; everything queued in one pass of the loop goes out in one write."""
        if self.closed:
            return
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(data)

    def _flush(self):
        if self._out and not self.closed:
            self.writer.write(b"".join(self._out))
        self._out = []

    def close(self):
        if not self.closed:
            self._flush()
            self.closed = True
            try:
                self.writer.close()
            except Exception:  # noqa: BLE001 - already broken
                pass


