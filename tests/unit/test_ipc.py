"""Round trips of every core <-> worker message in zkpy.workers.ipc: encode, split the stream with
Decoder.feed (whole, byte at a time, several messages glued together), decode.

Pure: no sockets, no processes.
"""

import pytest

from zkpy.workers import ipc

# (name, encoded frame, expected (type, fields) after decode)
MESSAGES = [
    ("hello", ipc.hello(3, 4242), (ipc.HELLO, (3, 4242))),
    ("hello-max", ipc.hello(0xFFFFFFFF, 0xFFFFFFFF), (ipc.HELLO, (0xFFFFFFFF, 0xFFFFFFFF))),
    ("connect-ro-none", ipc.connect(7, None, b"\x00\x01\x02connect"),
     (ipc.CONNECT, (7, b"\x00\x01\x02connect", None))),
    ("connect-ro-true", ipc.connect(8, True, b"x" * 45), (ipc.CONNECT, (8, b"x" * 45, True))),
    ("connect-ro-false", ipc.connect(9, False, b""), (ipc.CONNECT, (9, b"", False))),
    ("request", ipc.request(1, 2, 0x1234567890ABCDEF >> 1, 17, 1, b"\x00\x00\x00\x02/a"),
     (ipc.REQUEST, (1, 2, 0x1234567890ABCDEF >> 1, 17, 1, b"\x00\x00\x00\x02/a"))),
    ("request-negative", ipc.request(0xFFFFFFFF, 0, -5, -2, -11, b""),
     (ipc.REQUEST, (0xFFFFFFFF, 0, -5, -2, -11, b""))),
    ("closed", ipc.closed(12, 0x01A2138746090003), (ipc.CLOSED, (12, 0x01A2138746090003))),
    ("closed-no-session", ipc.closed(13, 0), (ipc.CLOSED, (13, 0))),
    ("touch-empty", ipc.touch([]), (ipc.TOUCH, ([],))),
    ("touch", ipc.touch([1, -1, 2 ** 63 - 1, -(2 ** 63)]),
     (ipc.TOUCH, ([1, -1, 2 ** 63 - 1, -(2 ** 63)],))),
    ("stats", ipc.stats(5 | (1 << 31), b'{"connections": []}'),
     (ipc.STATS, (5 | (1 << 31), b'{"connections": []}'))),
    ("connected-ok", ipc.connected(4, True, 77, 30000, b"p" * 16, False),
     (ipc.CONNECTED, (4, True, 77, 30000, b"p" * 16, False))),
    ("connected-expired", ipc.connected(4, False, 0, 0, b"\x00" * 16, None),
     (ipc.CONNECTED, (4, False, 0, 0, b"\x00" * 16, None))),
    ("connected-ro", ipc.connected(5, True, -3, 4000, b"", True),
     (ipc.CONNECTED, (5, True, -3, 4000, b"", True))),
    ("batch-empty", ipc.batch(0, [], []), (ipc.BATCH, (0, [], []))),
    ("batch", ipc.batch(0x100000005,
                        [(0x100000004, 1, "/a", None),
                         (0x100000005, 3, "/b/\u00e9\u4e2d", ((1, "digest", "u:h="), (31, "ip", "10/8"))),
                         (0x100000005, 2, "/", ())],
                        [(1, 1, False, b"\x00\x00\x00\x01reply"), (2, 9, True, b""),
                         (0xFFFFFFFF, 0xFFFFFFFF, False, b"\xff" * 300)]),
     (ipc.BATCH, (0x100000005,
                  [(0x100000004, 1, "/a", None),
                   (0x100000005, 3, "/b/\u00e9\u4e2d", ((1, "digest", "u:h="), (31, "ip", "10/8"))),
                   (0x100000005, 2, "/", ())],
                  [(1, 1, False, b"\x00\x00\x00\x01reply"), (2, 9, True, b""),
                   (0xFFFFFFFF, 0xFFFFFFFF, False, b"\xff" * 300)]))),
    ("close", ipc.close(99), (ipc.CLOSE, (99,))),
    ("stats-req", ipc.stats_req(1 << 30 | 3), (ipc.STATS_REQ, (1 << 30 | 3,))),
    ("shutdown", ipc.shutdown(), (ipc.SHUTDOWN, ())),
    ("pause", ipc.pause(), (ipc.PAUSE, ())),
    ("paused", ipc.paused(), (ipc.PAUSED, ())),
    ("committed", ipc.committed(-2 ** 63), (ipc.COMMITTED, (-2 ** 63,))),
    ("committed-max", ipc.committed(2 ** 63 - 1), (ipc.COMMITTED, (2 ** 63 - 1,))),
    ("auth", ipc.auth(7, [("ip", "127.0.0.1"), ("digest", "alice:V55/p2T0OpjQ+low3NVAH4aLvm0=")]),
     (ipc.AUTH, (7, [("ip", "127.0.0.1"), ("digest", "alice:V55/p2T0OpjQ+low3NVAH4aLvm0=")]))),
    ("auth-none", ipc.auth(0, []), (ipc.AUTH, (0, []))),
    ("four-letter", ipc.four_letter(3, "srvr", "127.0.0.1:50000"),
     (ipc.FOUR_LETTER, (3, "srvr", "127.0.0.1:50000"))),
    ("four-letter-text", ipc.four_letter_text(3, "Zookeeper version: \u00e9\n"),
     (ipc.FOUR_LETTER_TEXT, (3, "Zookeeper version: \u00e9\n"))),
    ("four-letter-text-empty", ipc.four_letter_text(0xFFFFFFFF, ""),
     (ipc.FOUR_LETTER_TEXT, (0xFFFFFFFF, ""))),
]

IDS = [m[0] for m in MESSAGES]


def _norm(decoded):
    """Tuples and lists compare by content (BATCH replies may come back as tuples or lists)."""
    mtype, fields = decoded
    return mtype, tuple(_plain(f) for f in fields)


def _plain(v):
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


@pytest.mark.parametrize("name,frame,expected", MESSAGES, ids=IDS)
def test_round_trip_whole(name, frame, expected):
    dec = ipc.Decoder()
    bodies = dec.feed(frame)
    assert len(bodies) == 1
    assert _norm(ipc.decode(bodies[0])) == _norm(expected)
    assert dec.feed(b"") == []


@pytest.mark.parametrize("name,frame,expected", MESSAGES, ids=IDS)
def test_round_trip_byte_at_a_time(name, frame, expected):
    dec = ipc.Decoder()
    bodies = []
    for i in range(len(frame)):
        got = dec.feed(frame[i:i + 1])
        if i < len(frame) - 1:
            assert got == [], "a frame came out before its last byte (at byte %d)" % i
        bodies += got
    assert len(bodies) == 1
    assert _norm(ipc.decode(bodies[0])) == _norm(expected)


def test_all_messages_in_one_stream_any_split():
    stream = b"".join(m[1] for m in MESSAGES)
    expected = [_norm(m[2]) for m in MESSAGES]
    for chunk in (1, 2, 3, 5, 7, 64, 1000, len(stream)):
        dec = ipc.Decoder()
        out = []
        for off in range(0, len(stream), chunk):
            out += dec.feed(stream[off:off + chunk])
        assert [_norm(ipc.decode(b)) for b in out] == expected, "chunk size %d" % chunk
        assert len(dec.buf) == 0


def test_chunks_ending_at_a_length_or_inside_one():
    """Frames cut in C (a chunk that starts with nothing held back) or by the Python loop give
    the same frames, whatever the chunk boundaries: after a whole length, inside a length."""
    frames = [ipc.committed(z) for z in range(1, 4)]
    stream = b"".join(frames)
    size = len(frames[0])
    for cut in (4, 2, size, size + 4, size + 6):
        dec = ipc.Decoder()
        out = dec.feed(stream[:cut]) + dec.feed(stream[cut:])
        assert [ipc.decode(b) for b in out] == [ipc.decode(f[4:]) for f in frames], cut
        assert len(dec.buf) == 0


def test_every_message_type_is_covered():
    types = {v for k, v in vars(ipc).items()
             if k.isupper() and isinstance(v, int) and not k.startswith("_")}
    covered = {m[2][0] for m in MESSAGES}
    assert types - covered == set()


def test_handoff_round_trip():
    for conn_id, peer, first in [(1, "127.0.0.1:5000", b"\x00\x00\x00\x2d" + b"\x00" * 45),
                                 (0xFFFFFFFF, "[::1]:65535", b""),
                                 (3, "\u00e9:1", b"ruok")]:
        assert ipc.decode_handoff(ipc.handoff(conn_id, peer, first)) == \
            (conn_id, peer, first, False)
    # a TLS client: nothing read, the worker wraps the socket
    assert ipc.decode_handoff(ipc.handoff(7, "127.0.0.1:1", b"", tls=True)) == \
        (7, "127.0.0.1:1", b"", True)


def test_frame_layout_is_length_then_type():
    frame = ipc.close(0x01020304)
    assert frame == b"\x00\x00\x00\x05" + bytes([ipc.CLOSE]) + b"\x01\x02\x03\x04"


def test_unknown_type_is_refused():
    with pytest.raises(ValueError):
        ipc.decode(bytes([200]))


class _Loop(object):
    """What Channel asks of an event loop; nothing is run by it here."""

    def add_reader(self, fd, cb):
        pass

    def remove_reader(self, fd):
        pass

    def call_soon(self, cb, *args):
        pass


@pytest.mark.parametrize("stop_at_short_read", [False, True])
def test_channel_pump_takes_in_whatever_has_arrived(stop_at_short_read):
    import socket
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    got, eof = [], []
    ch = ipc.Channel(_Loop(), b, got.append, lambda: eof.append(1),
                     stop_at_short_read=stop_at_short_read)
    try:
        a.sendall(ipc.committed(1) + ipc.committed(2))
        ch.pump()
        assert [ipc.decode(f) for f in got] == [(ipc.COMMITTED, (1,)), (ipc.COMMITTED, (2,))]
        ch.pump()  # nothing more: returns
        # more than one recv() holds: a full read is followed by another
        big = ipc.stats(7, b"x" * (3 * ipc._RECV_SIZE))
        a.setblocking(False)
        sent = a.send(big)
        ch.pump()
        while sent < len(big):
            sent += a.send(big[sent:])
            ch.pump()
        ch.pump()
        assert ipc.decode(got[-1]) == (ipc.STATS, (7, b"x" * (3 * ipc._RECV_SIZE)))
        assert not eof
        a.close()
        ch.pump()
        assert eof == [1] and ch.closed
    finally:
        a.close()
        ch.close()


def test_channel_send_now_to_a_peer_that_is_gone():
    """A worker that exited while the core still had a batch for it (its EOF not read yet):
    send_now closes the channel and reports the end once; it does not raise."""
    import socket
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    eof = []
    ch = ipc.Channel(_Loop(), b, lambda f: None, lambda: eof.append(1))
    a.close()   # the worker process is gone
    try:
        ch.send_now(ipc.batch(7, [], [(1, 1, False, b"x" * 100)]))
        assert ch.closed and eof == [1]
        ch.send_now(ipc.committed(7))   # a closed channel takes nothing more, quietly
        ch.send(ipc.committed(7))
        assert eof == [1]
    finally:
        ch.close()
