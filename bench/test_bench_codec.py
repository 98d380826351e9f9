"""Micro-benchmarks of the jute codec (zkpy.proto.codec): decode and encode of the records on the
request/reply hot path, the request header, watch notifications and whole reply frames.

Encoders are called the way the server does (ENCODERS[cls] appending to a bytearray, no bytes()
copy); decoders as DECODERS[cls](data, off) on the frame body. Each benchmark also checks its
result once, so a broken codec fails here instead of reporting a fast number.
"""

import pytest

from zkpy.proto import codec
from zkpy.proto import consts
from zkpy.proto import records as r

PATH = "/app/config/service-00042"
DATA_100 = bytes(range(100))


def _stat():
    return r.Stat(0x100000012, 0x100000034, 1700000000000, 1700000001000, 3, 7, 0, 0,
                  len(DATA_100), 2, 0x100000020)


CASES = {
    "GetDataRequest": r.GetDataRequest(PATH, True),
    "GetDataResponse_100B": r.GetDataResponse(DATA_100, _stat()),
    "CreateRequest_100B": r.CreateRequest(PATH, DATA_100, [r.ACL(31, r.Id("world", "anyone"))],
                                          consts.CREATE_PERSISTENT),
    "Create2Response": r.Create2Response(PATH, _stat()),
    "SetDataRequest_100B": r.SetDataRequest(PATH, DATA_100, 3),
    "GetChildrenResponse_100": r.GetChildrenResponse(["node-%04d" % i for i in range(100)]),
    "WatcherEvent": r.WatcherEvent(consts.EVENT_NODE_DATA_CHANGED, consts.STATE_SYNC_CONNECTED,
                                   PATH),
}
IDS = sorted(CASES)


@pytest.mark.benchmark(group="codec-decode")
@pytest.mark.parametrize("name", IDS)
def test_decode(benchmark, name):
    rec = CASES[name]
    cls = type(rec)
    data = codec.encode(rec)
    dec = codec.DECODERS[cls]
    out, off = benchmark(dec, data, 0)
    assert out == rec and off == len(data)


@pytest.mark.benchmark(group="codec-encode")
@pytest.mark.parametrize("name", IDS)
def test_encode(benchmark, name):
    rec = CASES[name]
    enc = codec.ENCODERS[type(rec)]

    def run():
        buf = bytearray()
        enc(buf, rec)
        return buf

    out = benchmark(run)
    assert codec.decode(type(rec), out)[0] == rec


@pytest.mark.benchmark(group="codec-frame")
def test_decode_request_frame_getdata(benchmark):
    """What the connection does per getData request: RequestHeader, then the op's record."""
    body = (codec.encode_request_header(17, consts.OP_GET_DATA)
            + codec.encode(CASES["GetDataRequest"]))
    dec = codec.DECODERS[r.GetDataRequest]
    hdr = codec.decode_request_header

    def run():
        xid, op, off = hdr(body, 0)
        return dec(body, off)

    rec, off = benchmark(run)
    assert rec == CASES["GetDataRequest"] and off == len(body)


@pytest.mark.benchmark(group="codec-frame")
def test_encode_reply_frame_getdata_100B(benchmark):
    """A whole getData reply frame: length + ReplyHeader + GetDataResponse (100 B data)."""
    rec = CASES["GetDataResponse_100B"]
    frame = benchmark(codec.encode_reply_frame, 17, 0x100000034, 0, rec)
    assert len(frame) == 4 + 16 + 4 + 100 + 68


@pytest.mark.benchmark(group="codec-frame")
def test_encode_reply_frame_error(benchmark):
    """An error reply (header only), e.g. NONODE."""
    frame = benchmark(codec.encode_reply_frame, 17, 0x100000034, -101)
    assert len(frame) == 20


@pytest.mark.benchmark(group="codec-frame")
def test_encode_notification(benchmark):
    """A watch event frame body: ReplyHeader{-1, zxid, 0} + WatcherEvent (Connection.send_event)."""
    body = benchmark(codec.encode_notification, 0x100000034, consts.EVENT_NODE_DATA_CHANGED,
                     consts.STATE_SYNC_CONNECTED, PATH)
    xid, zxid, err, off = codec.decode_reply_header(body)
    assert xid == consts.XID_NOTIFICATION and codec.decode(r.WatcherEvent, body, off)[0] == \
        CASES["WatcherEvent"]
