"""zkpy.proto._fastcodec, the compiled twin of the write path's codecs, agrees with the pure
functions byte for byte (and raises what they raise): txns.encode, the write requests' decoders,
encode_reply_frame, ipc.decode / ipc.batch."""

import pytest
from hypothesis import given, settings, strategies as st

from zkpy.errors import ClientProtocolError
from zkpy.proto import codec, consts
from zkpy.proto import records as r
from zkpy.workers import ipc
from zkpy.server import core
from zkpy.tree import txns
from zkpy.tree.datatree import CONTAINER_OWNER, ttl_owner
from zkpy.tree.node import Node

try:
    from zkpy.proto import _fastcodec as fast
except ImportError:  # pragma: no cover - depends on the build (or ZKPY_PURE=1)
    fast = None

needs_fast = pytest.mark.skipif(fast is None, reason="zkpy.proto._fastcodec not loaded")

i32 = st.integers(-2**31, 2**31 - 1)
i64 = st.integers(-2**63, 2**63 - 1)
u32 = st.integers(0, 2**32 - 1)
text = st.text(max_size=12)
blob = st.one_of(st.none(), st.binary(max_size=200))
acl = st.lists(st.tuples(i32, text, text), max_size=3).map(tuple)


def test_installed_unless_pure():
    import os
    if os.environ.get("ZKPY_PURE") == "1":
        assert fast is None
        assert txns.encode is txns.encode_pure
        return
    if fast is None:
        pytest.skip("zkpy.proto._fastcodec is not built (pip install -e . builds it)")
    assert txns.encode is fast.txn_encode
    assert codec.DECODERS[r.SetDataRequest] is fast.decode_set_data_request
    assert ipc.batch is fast.ipc_batch
    assert ipc.request is fast.ipc_request and ipc.decode is fast.ipc_decode
    from zkpy.tree import node
    assert node.copy_node is fast.copy_node


txn_st = st.one_of(
    st.builds(lambda s, c, t, p, d, a, o: txns.Txn(txns.CREATE, s, c, t, path=p, data=d, acl=a,
                                                   ephemeral_owner=o),
              i64, i32, i64, text, blob, acl, i64),
    st.builds(lambda s, c, t, p, d, v: txns.Txn(txns.SET_DATA, s, c, t, path=p, data=d,
                                                version=v), i64, i32, i64, text, blob, i32),
    st.builds(lambda s, c, t, p: txns.Txn(txns.DELETE, s, c, t, path=p), i64, i32, i64, text),
    st.builds(lambda s, c, t, p, a, v: txns.Txn(txns.SET_ACL, s, c, t, path=p, acl=a,
                                                version=v), i64, i32, i64, text, acl, i32),
    st.builds(lambda s, c, t, e: txns.Txn(txns.ERROR, s, c, t, err=e), i64, i32, i64, i32),
    st.builds(lambda s, c, t, p, v: txns.Txn(txns.CHECK, s, c, t, path=p, version=v),
              i64, i32, i64, text, i32),
    st.builds(lambda s, c, t, m: txns.Txn(txns.CREATE_SESSION, s, c, t, timeout_ms=m),
              i64, i32, i64, i32),
    st.builds(lambda s, c, t, ps: txns.Txn(txns.CLOSE_SESSION, s, c, t, paths=ps),
              i64, i32, i64, st.lists(text, max_size=3)),
)


@needs_fast
@settings(max_examples=400, deadline=None)
@given(txn_st)
def test_txn_encode_parity(txn):
    b = txns.encode_pure(txn)
    assert fast.txn_encode(txn) == b
    assert txns.decode(b) == txns.decode(fast.txn_encode(txn))


@needs_fast
@pytest.mark.parametrize("txn", [
    txns.Txn(txns.SET_DATA, 1, 2, 3, path="/a", data=None, version=-1),
    txns.Txn(txns.SET_DATA, -1, -2**31, -3, path="/\u00e9\u4e2d", data=b"", version=2**31 - 1),
    txns.Txn(txns.CREATE, 1, 2, 3, path="/c", data=b"x" * 1000,
             acl=[(31, "world", "anyone"), (1, "digest", "b\u00f6b:h")], ephemeral_owner=-2**63),
    txns.Txn(txns.CREATE, 1, 2, 3, path="/c", data=None, acl=(), ephemeral_owner=7),
    txns.Txn(txns.DELETE, 2**63 - 1, 2, 3, path="/"),
])
def test_txn_encode_sized_write_path_types(txn):
    """CREATE / SET_DATA / DELETE take the sized encoder (the core's write path)."""
    assert fast.txn_encode(txn) == txns.encode_pure(txn)


@needs_fast
def test_txn_encode_multi_and_bad_values():
    sub = txns.Txn(txns.SET_DATA, 1, 2, 3, path="/a", data=b"x", version=1)
    multi = txns.Txn(txns.MULTI, 1, 2, 3, subs=[sub, txns.Txn(txns.DELETE, 1, 2, 3, path="/b")])
    assert fast.txn_encode(multi) == txns.encode_pure(multi)
    for bad in (txns.Txn(txns.SET_DATA, 1, 2**31, 3, path="/a", data=b"", version=0),
                txns.Txn(txns.CREATE, 1, 2, 3, path="/a", data=b"", acl=((2**40, "w", "a"),)),
                txns.Txn(99, 1, 2, 3)):
        with pytest.raises(Exception) as pure_exc:
            txns.encode_pure(bad)
        with pytest.raises(type(pure_exc.value)):
            fast.txn_encode(bad)


requests = st.one_of(
    st.builds(lambda p, d, a, f: r.CreateRequest(p, d, [r.ACL(x, r.Id(s, i)) for x, s, i in a],
                                                 f),
              st.one_of(st.none(), text), blob, acl, i32),
    st.builds(r.SetDataRequest, st.one_of(st.none(), text), blob, i32),
    st.builds(r.DeleteRequest, st.one_of(st.none(), text), i32),
)


def _fields(rec):
    if isinstance(rec, list):
        return [_fields(x) for x in rec]
    if isinstance(rec, r.Record):
        return (type(rec).__name__,) + tuple(_fields(getattr(rec, n)) for n, _ in rec.FIELDS)
    return rec


def _bodies(rec, prefix, cut):
    """`rec` encoded after `prefix`: (that body, [it whole, cut short by `cut`, padded])."""
    body = prefix + codec.encode(rec)
    return body, (body, body[:max(0, len(body) - cut)], body + b"\x01\x02")


@needs_fast
@settings(max_examples=400, deadline=None)
@given(requests, st.binary(max_size=3), st.integers(0, 8))
def test_request_decoder_parity(rec, prefix, cut):
    cls = type(rec)
    for data in _bodies(rec, prefix, cut)[1]:
        try:
            want = codec.DECODERS_PURE[cls](data, len(prefix))
        except ClientProtocolError as e:
            with pytest.raises(ClientProtocolError, match=str(e).replace("(", r"\(")
                               .replace(")", r"\)")):
                codec.DECODERS[cls](data, len(prefix))
            continue
        got = codec.DECODERS[cls](data, len(prefix))
        assert _fields(got[0]) == _fields(want[0]) and got[1] == want[1]


@needs_fast
def test_request_decoder_odd_strings():
    # CESU-8 (the Java client's astral characters) and bytes that are not UTF-8 at all.
    for raw in ("/\U0001f600".encode("utf-16-le", "surrogatepass").decode(
            "utf-16-le", "surrogatepass").encode("utf-8", "surrogatepass"), b"/\xff\xfe"):
        body = len(raw).to_bytes(4, "big") + raw + b"\0\0\0\0"
        assert _fields(codec.DECODERS[r.DeleteRequest](body, 0)[0]) == \
            _fields(codec.DECODERS_PURE[r.DeleteRequest](body, 0)[0])


stat = st.builds(r.Stat, i64, i64, i64, i64, i32, i32, i32, i64, i32, i32, i64)
replies = st.one_of(
    st.none(),
    st.builds(r.SetDataResponse, stat),
    st.builds(r.CreateResponse, st.one_of(st.none(), text)),
    st.builds(r.Create2Response, text, stat),
    st.builds(r.SetACLResponse, stat),
)


@needs_fast
@settings(max_examples=400, deadline=None)
@given(i32, i64, i32, replies)
def test_reply_frame_parity(xid, zxid, err, rec):
    assert fast.encode_reply_frame(xid, zxid, err, rec) == \
        codec.encode_reply_frame_pure(xid, zxid, err, rec)


# Nodes as the tree holds them: stored cversion and child count in int32 (their visible
# 2 * cversion - numChildren wraps), owners of every kind (containers and TTL nodes negative).
nodes = st.builds(Node, i64, i64, i64, i64, i32, i32, i32,
                  st.one_of(i64, st.sampled_from([0, CONTAINER_OWNER, ttl_owner(5000)])),
                  st.integers(0, 2**31 - 1), i64, blob, acl)


@needs_fast
@settings(max_examples=400, deadline=None)
@given(i32, i64, st.one_of(st.none(), text, st.just("/caf\u00e9")), nodes)
def test_node_reply_frame_parity(xid, zxid, path, node):
    assert core.node_reply_frame is fast.node_reply_frame
    assert fast.node_reply_frame(xid, zxid, path, node) == \
        core.node_reply_frame_pure(xid, zxid, path, node)


def test_node_reply_frame_is_the_records_encoding():
    # stored cversion 2**31 - 1 with 7 children: clients see 2 * cversion - 7 wrapped to int32,
    # -9; a TTL node's owner shows as 0.
    node = Node(5, 9, 1000, 2000, 3, 2**31 - 1, 1, ttl_owner(60000), 7, 9, b"abc", ())
    stat = r.Stat(5, 9, 1000, 2000, 3, -9, 1, 0, 3, 7, 9)
    for path, rec in ((None, r.SetDataResponse(stat)), ("/a", r.Create2Response("/a", stat))):
        want = codec.encode_reply_frame_pure(1, 2, 0, rec)
        assert core.node_reply_frame(1, 2, path, node) == want
        assert core.node_reply_frame_pure(1, 2, path, node) == want


events = st.lists(st.tuples(i64, i32, text, st.one_of(st.none(), acl)), max_size=4)
reply_list = st.lists(st.tuples(u32, u32, st.booleans(), st.binary(max_size=40)), max_size=4)


@needs_fast
@settings(max_examples=300, deadline=None)
@given(i64, events, reply_list)
def test_ipc_batch_parity(zxid, evs, reps):
    b = ipc.batch_pure(zxid, evs, reps)
    assert fast.ipc_batch(zxid, evs, reps) == b
    assert ipc.decode(b[4:]) == ipc.decode_pure(b[4:])


@needs_fast
@settings(max_examples=300, deadline=None)
@given(u32, u32, i64, i32, i32, st.binary(max_size=60), st.integers(0, 6))
def test_ipc_request_decode_parity(conn, entry, sid, xid, op, body, cut):
    frame = ipc.request(conn, entry, sid, xid, op, body)[4:]
    for f in (frame, frame[:max(1, len(frame) - cut)]):
        try:
            want = ipc.decode_pure(f)
        except Exception as e:
            with pytest.raises(type(e)):
                fast.ipc_decode(f)
            continue
        assert fast.ipc_decode(f) == want
    for other in (ipc.committed(5), ipc.touch([1, 2]), ipc.closed(3, 4)):
        assert fast.ipc_decode(other[4:]) == ipc.decode_pure(other[4:])


def test_write_path_requests_round_trip():
    """Runs in both modes: the codec the server uses decodes what it encodes."""
    req = r.CreateRequest("/a", b"v", [r.ACL(consts.PERM_ALL, r.Id("world", "anyone"))], 0)
    got, off = codec.DECODERS[r.CreateRequest](codec.encode(req), 0)
    assert _fields(got) == _fields(req)


@needs_fast
@settings(max_examples=300, deadline=None)
@given(st.integers(-1, 2**40), st.lists(st.tuples(st.integers(1, 2**20), st.binary(max_size=300)),
                                        max_size=8))
def test_log_records_parity(last, steps):
    from zkpy.storage import txnlog
    records = []
    z = last
    for step, payload in steps:
        z += step
        records.append((z, payload))
    assert txnlog.encode_records is fast.log_records
    assert fast.log_records(records, last) == txnlog.encode_records_pure(records, last)


@needs_fast
def test_log_records_odd_input_goes_to_the_pure_twin():
    from zkpy.storage import txnlog
    from zkpy.storage.crc import crc32c_pure
    out = fast.log_records([(7, b"ab")], 0)
    assert out == b"\0\0\0\2" + crc32c_pure(b"\0" * 7 + b"\7ab").to_bytes(4, "big") + \
        b"\0" * 7 + b"\7ab"
    for records, last in (([(5, b"a"), (5, b"b")], 0), ([(3, b"a")], 3)):
        with pytest.raises(ValueError) as compiled:
            fast.log_records(records, last)
        with pytest.raises(ValueError) as pure:
            txnlog.encode_records_pure(records, last)
        assert str(compiled.value) == str(pure.value)
    # not bytes, a u64 zxid past int64: the pure encoder's answer
    for records in ([(9, bytearray(b"xy"))], [(2**63 + 5, b"z")]):
        assert fast.log_records(records, 0) == txnlog.encode_records_pure(records, 0)


def _same(compiled, pure, f):
    """compiled(f) gives what pure(f) gives, or raises the same type. (got, want), or None when
    both raised."""
    try:
        want = pure(f)
    except Exception as e:
        with pytest.raises(type(e)):
            compiled(f)
        return None
    got = compiled(f)
    assert got == want
    return got, want


def _same_decode(f):
    """fast.ipc_decode(f) gives what ipc.decode_pure(f) gives (field types too), or raises the
    same type."""
    both = _same(fast.ipc_decode, ipc.decode_pure, f)
    if both is not None:
        got, want = both
        assert [type(x) for x in got[1]] == [type(x) for x in want[1]]


@needs_fast
@settings(max_examples=300, deadline=None)
@given(i64, events, reply_list, st.integers(0, 40), st.binary(max_size=3))
def test_ipc_batch_decode_parity(zxid, evs, reps, cut, tail):
    """BATCH frames decoded in C: whole, cut short anywhere, and with bytes after them."""
    frame = ipc.batch_pure(zxid, evs, reps)[4:]
    for f in (frame, frame[:max(1, len(frame) - cut)], frame + tail):
        _same_decode(f)


@needs_fast
def test_ipc_batch_decode_odd_frames():
    good = ipc.batch_pure(3, [(1, 2, "/a", ((31, "world", "anyone"),))], [(1, 2, True, b"x")])
    f = bytearray(good[4:])
    for i in range(1, len(f)):
        for v in (0x00, 0x7F, 0x80, 0xFF):
            g = bytearray(f)
            g[i] = v
            _same_decode(bytes(g))
    # a path that is not UTF-8, and huge counts
    bad_path = bytes([ipc.BATCH]) + (1).to_bytes(8, "big") + (1).to_bytes(4, "big") + \
        (1).to_bytes(8, "big") + (2).to_bytes(4, "big") + (2).to_bytes(4, "big") + b"\xff\xfe" + \
        (0xFFFFFFFF).to_bytes(4, "big") + (0).to_bytes(4, "big")
    _same_decode(bad_path)
    _same_decode(bytes([ipc.BATCH]) + (1).to_bytes(8, "big") + b"\xff\xff\xff\xff")
    _same_decode(bytes([ipc.BATCH]))
    _same_decode(bytes([ipc.COMMITTED]) + (2**63 - 1).to_bytes(8, "big"))
    _same_decode(bytes([ipc.COMMITTED]) + b"\x80" + bytes(7))
    _same_decode(bytes([ipc.COMMITTED]) + bytes(7))
    _same_decode(bytes([ipc.COMMITTED]) + bytes(9))


@needs_fast
@settings(max_examples=300, deadline=None)
@given(u32, u32, i64, i32, i32, st.binary(max_size=60))
def test_ipc_request_encode_parity(conn, entry, sid, xid, op, body):
    assert fast.ipc_request(conn, entry, sid, xid, op, body) == \
        ipc.request_pure(conn, entry, sid, xid, op, body)


@needs_fast
def test_ipc_request_encode_bad_values():
    for args in ((-1, 1, 1, 1, 1, b""), (1, 2**32, 1, 1, 1, b""), (1, 1, 2**63, 1, 1, b""),
                 (1, 1, 1, 2**31, 1, b""), (1, 1, 1, 1, -2**31 - 1, b""), (1.0, 1, 1, 1, 1, b""),
                 (True, 1, 1, 1, 1, b"x"), (1, 1, 1, 1, 1, bytearray(b"ab"))):
        try:
            want = ipc.request_pure(*args)
        except Exception as e:
            with pytest.raises(type(e)):
                fast.ipc_request(*args)
            continue
        assert fast.ipc_request(*args) == want


_OPS_OF = {r.CreateRequest: (consts.OP_CREATE, consts.OP_CREATE2, consts.OP_CREATE_CONTAINER),
           r.SetDataRequest: (consts.OP_SET_DATA,), r.DeleteRequest: (consts.OP_DELETE,)}


def _check_write_ok(op, cls, data, off):
    """write_request_ok says True only for what the decoders take without an error."""
    ok = fast.write_request_ok(op, data, off)
    assert type(ok) is bool
    if ok:
        codec.DECODERS_PURE[cls](data, off)  # raises if the check let garbage through
        codec.DECODERS[cls](data, off)
    return ok


@needs_fast
@settings(max_examples=400, deadline=None)
@given(requests, st.binary(max_size=3), st.integers(0, 8))
def test_write_request_ok_parity(rec, prefix, cut):
    cls = type(rec)
    body, variants = _bodies(rec, prefix, cut)
    for op in _OPS_OF[cls]:
        for data in variants:
            _check_write_ok(op, cls, data, len(prefix))
        # a request with an ASCII path and ACL is checked without its decoder
        strings = [rec.path] + [x for a in getattr(rec, "acl", None) or ()
                                for x in (a.id.scheme, a.id.id)]
        if all(x is not None and x.isascii() for x in strings):
            assert fast.write_request_ok(op, body, len(prefix))
            assert fast.write_request_ok(op, body + b"\x01", len(prefix))
        cut_body = body[:len(body) - 1]
        assert not fast.write_request_ok(op, cut_body, len(prefix))


@needs_fast
def test_write_request_ok_odd_input():
    good = codec.encode(r.SetDataRequest("/a", b"v", 3))
    assert fast.write_request_ok(consts.OP_SET_DATA, good, 0)
    for op, data, off in ((consts.OP_GET_DATA, good, 0), (consts.OP_SET_DATA, bytearray(good), 0),
                          (consts.OP_SET_DATA, good, -1), (consts.OP_SET_DATA, good, 99),
                          (consts.OP_SET_DATA, good, 1), (consts.OP_MULTI, good, 0),
                          (2**70, good, 0), (consts.OP_SET_DATA, good, 2**70)):
        assert not fast.write_request_ok(op, data, off)
    f = bytearray(codec.encode(r.CreateRequest(
        "/a\u00e9", b"v", [r.ACL(31, r.Id("world", "anyone"))], 0)))
    for i in range(len(f)):
        for v in (0x00, 0x7F, 0x80, 0xC3, 0xED, 0xFF):
            g = bytearray(f)
            g[i] = v
            for op in _OPS_OF[r.CreateRequest]:
                _check_write_ok(op, r.CreateRequest, bytes(g), 0)
    # UTF-8 beyond ASCII is checked; CESU-8 (the Java client's astral characters) and bytes
    # that are not UTF-8 at all are left to the decoders
    for raw, ok in (("/\u00e9\U0001f600".encode("utf-8"), True),
                    (b"/\xed\xa0\xbd\xed\xb8\x80", False), (b"/\xff\xfe", False)):
        body = len(raw).to_bytes(4, "big") + raw + b"\0\0\0\0"
        assert _check_write_ok(consts.OP_DELETE, r.DeleteRequest, body, 0) is ok


def _same_batch_replies(f):
    _same(fast.ipc_batch_replies, ipc.decode_batch_replies_pure, f)


@needs_fast
@settings(max_examples=300, deadline=None)
@given(i64, events, reply_list, st.integers(0, 40), st.binary(max_size=3))
def test_ipc_batch_replies_parity(zxid, evs, reps, cut, tail):
    frame = ipc.batch_pure(zxid, evs, reps)[4:]
    assert fast.ipc_batch_replies(frame) == (zxid, ipc.decode_pure(frame)[1][2])
    for f in (frame, frame[:max(1, len(frame) - cut)], frame + tail):
        _same_batch_replies(f)


@needs_fast
def test_ipc_batch_replies_odd_frames():
    good = ipc.batch_pure(3, [(1, 2, "/a\u00e9", ((31, "world", "anyone"),)), (2, 3, "/b", None)],
                          [(1, 2, True, b"x")])
    f = bytearray(good[4:])
    for i in range(len(f)):
        for v in (0x00, 0x7F, 0x80, 0xC3, 0xFF):
            g = bytearray(f)
            g[i] = v
            _same_batch_replies(bytes(g))
    for other in (ipc.committed(5), ipc.touch([1]), b"", b"\x15"):
        _same_batch_replies(other[4:] if other[:1] == b"\x00" else other)


def _feed_all(chunks, max_len, split):
    """Frames and error of a FrameDecoder fed `chunks`, with framing's compiled loop `split`."""
    from zkpy.proto import framing
    saved = framing._split_frames
    framing._split_frames = split
    try:
        d, out = framing.FrameDecoder(max_len), []
        try:
            for c in chunks:
                got = d.feed(c)
                assert all(type(b) is bytes for b in got)
                out.append((got, d.buffered))
        except ClientProtocolError as e:
            return out, str(e)
        return out, None
    finally:
        framing._split_frames = saved


@needs_fast
@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=8), st.binary(max_size=12), st.data())
def test_split_frames_parity(bodies, junk, data):
    """FrameDecoder with the compiled loop gives the same frames, held-back bytes and errors as
    the pure loop, for any chunking of good frames followed by anything."""
    from zkpy.proto.framing import frame
    stream = b"".join(frame(b) for b in bodies) + junk
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    chunks, prev = [], 0
    for c in cuts + [len(stream)]:
        chunks.append(stream[prev:c])
        prev = c
    for max_len in (0, 16, 64):
        assert _feed_all(chunks, max_len, fast.split_frames) == _feed_all(chunks, max_len, None)


@needs_fast
def test_split_frames_direct():
    assert fast.split_frames(b"\0\0\0\x01a\0\0\0\x02b", -1, 10) == ([b"a"], 9, 2)
    assert fast.split_frames(b"bc\0\0", 2, 10) == ([b"bc"], 2, -1)
    assert fast.split_frames(b"\0\0\0\x0b", -1, 10) is None
    assert fast.split_frames(b"\xff\xff\xff\xff", -1, 10) is None
    assert fast.split_frames(bytearray(b"\0\0\0\0"), -1, 10) is None
    assert fast.split_frames(b"\0\0\0\0", -1, 0) == ([b""], 4, -1)


create_requests = st.builds(
    r.CreateRequest, st.one_of(text, st.just("/caf\u00e9/x")), blob,
    st.lists(st.builds(r.ACL, i32, st.builds(r.Id, text, text)), max_size=3), i32)


@needs_fast
@settings(max_examples=400, deadline=None)
@given(create_requests, st.integers(0, 6), st.binary(max_size=2))
def test_create_request_fields_parity(rec, cut, tail):
    """The core's record-free create decode: when it answers, it says what the record decoder
    says (ACL entries as tuples); a cut or padded body it leaves to the decoder."""
    assert core.create_request_fields is fast.create_request_fields
    body = codec.encode(rec)
    fields = fast.create_request_fields(body)
    want = codec.DECODERS_PURE[r.CreateRequest](body, 0)[0]
    if fields is not None or (rec.path.isascii() and all(
            a.id.scheme.isascii() and a.id.id.isascii() for a in rec.acl)):
        assert fields == (want.path, want.data,
                          [(a.perms, a.id.scheme, a.id.id) for a in want.acl], want.flags)
    if cut and cut <= len(body):
        assert fast.create_request_fields(body[:-cut]) is None
    if tail:
        assert fast.create_request_fields(body + tail) is None
    assert core.create_request_fields_pure(body) is None


@needs_fast
@settings(max_examples=300, deadline=None)
@given(st.one_of(st.builds(r.SetDataRequest, st.one_of(text, st.just("/caf\u00e9")), blob, i32),
                 st.builds(r.DeleteRequest, st.one_of(text, st.just("/caf\u00e9")), i32)),
       st.integers(0, 6), st.binary(max_size=2))
def test_set_data_and_delete_request_fields_parity(rec, cut, tail):
    """The core's record-free setData / delete decode: when it answers, it says what the record
    decoder says; a cut or padded body it leaves to the decoder (None); the pure twin decodes
    the record."""
    name = "set_data" if isinstance(rec, r.SetDataRequest) else "delete"
    fields_fn = getattr(fast, name + "_request_fields")
    assert getattr(core, name + "_request_fields") is fields_fn
    body = codec.encode(rec)
    want = codec.DECODERS_PURE[type(rec)](body, 0)[0]
    want = tuple(getattr(want, n) for n, _ in type(rec).FIELDS)
    fields = fields_fn(body)
    if fields is not None or rec.path.isascii():   # odd strings it may leave to the decoder
        assert fields == want
    assert getattr(core, name + "_request_fields_pure")(body) == want
    if cut and cut <= len(body):
        assert fields_fn(body[:-cut]) is None
    if tail:
        assert fields_fn(body + tail) is None


# -- txns.decode: the compiled twin (setData / create / delete) and its pure fallback ------------

@needs_fast
@settings(max_examples=400, deadline=None)
@given(txn_st)
def test_txn_decode_parity(txn):
    b = txns.encode_pure(txn)
    got = fast.txn_decode(b)
    assert got == txns.decode_pure(b)
    assert txns.encode_pure(got) == b


def _decode_outcome(fn, payload):
    try:
        return ("ok", fn(payload))
    except Exception as e:  # noqa: BLE001 - the twins must fail alike
        return ("error", type(e), str(e))


@needs_fast
@settings(max_examples=400, deadline=None)
@given(txn_st, st.data())
def test_txn_decode_damaged_payloads_fail_as_the_pure_decoder_does(txn, data):
    b = txns.encode_pure(txn)
    cut = data.draw(st.integers(0, len(b)))
    flip = data.draw(st.integers(0, max(0, len(b) - 1)))
    for damaged in (b[:cut], b + b"\x00", b[:flip] + bytes([b[flip] ^ 0xFF]) + b[flip + 1:]
                    if b else b""):
        assert _decode_outcome(fast.txn_decode, damaged) == \
            _decode_outcome(txns.decode_pure, damaged)


@needs_fast
def test_txn_decode_installed_and_non_utf8_path():
    assert txns.decode is fast.txn_decode
    txn = txns.Txn(txns.SET_DATA, 1, 2, 3, path="/a", data=b"x", version=4)
    b = bytearray(txns.encode_pure(txn))
    b[26] = 0xFF                                   # the path's byte: not UTF-8
    assert _decode_outcome(fast.txn_decode, bytes(b)) == \
        _decode_outcome(txns.decode_pure, bytes(b))
    assert _decode_outcome(fast.txn_decode, bytes(b))[0] == "error"
    assert fast.txn_decode(bytearray(txns.encode_pure(txn))) == txn   # not bytes: the pure one
