"""zkpy.proto.records / codec: golden bytes from ZooKeeper's own Java classes, round trips, fuzz.

Golden hex strings live in golden_records.json, produced by tests/unit/java/GoldenGen.java
(run tests/unit/java/regen_golden.sh; needs a JDK and Debian's zookeeper jars). This test only
reads the JSON. Each golden case has its Python twin in GOLDEN_VALUES below.
"""

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zkpy.errors import ClientProtocolError
from zkpy.proto import codec, consts
from zkpy.proto import records as r

GOLDEN = json.loads((Path(__file__).parent / "golden_records.json").read_text())

STAT = r.Stat(0x100000001, 0x100000002, 1700000000123, 1700000000456, 5, 7, 1,
              -0x8000000000000000, 11, 3, 0x100000009)
ACLS = [r.ACL(31, r.Id("world", "anyone")), r.ACL(1, r.Id("digest", "user:pw/hash="))]
OPEN = [r.ACL(31, r.Id("world", "anyone"))]
PW = bytes(i * 17 for i in range(16))

GOLDEN_VALUES = {
    "ConnectRequest": r.ConnectRequest(0, 0x1234567890, 30000, 0, bytes(16)),
    "ConnectResponse": r.ConnectResponse(0, 4000, 0x0100017F00000001, PW),
    "RequestHeader": r.RequestHeader(7, 4),
    "ReplyHeader": r.ReplyHeader(7, 0x100000005, -101),
    "Stat": STAT,
    "StatPersisted": r.StatPersisted(1, 2, 3, 4, 5, 6, 7, -1, 9),
    "CreateRequest": r.CreateRequest("/app/\u00fc\u00df/\U0001F600", b"hello", ACLS, 3),
    "CreateRequest/nulls": r.CreateRequest("/n", None, None, 0),
    "CreateResponse": r.CreateResponse("/app/node0000000001"),
    "Create2Response": r.Create2Response("/app/node0000000001", STAT),
    "GetDataRequest": r.GetDataRequest("/zookeeper/config", True),
    "GetDataResponse": r.GetDataResponse(b"\x00\x01\xff", STAT),
    "GetDataResponse/null": r.GetDataResponse(None, r.Stat()),
    "SetDataRequest": r.SetDataRequest("/a", b"x", -1),
    "SetDataResponse": r.SetDataResponse(STAT),
    "ExistsRequest": r.ExistsRequest("/e", False),
    "GetChildren2Response": r.GetChildren2Response(["a", "b", "\u00e7", ""], STAT),
    "GetChildrenResponse/empty": r.GetChildrenResponse([]),
    "GetACLResponse": r.GetACLResponse(ACLS, STAT),
    "SetACLRequest": r.SetACLRequest("/acl", ACLS, 2),
    "WatcherEvent": r.WatcherEvent(3, 3, "/a/b"),
    "SetWatches": r.SetWatches(0x200000010, ["/d1", "/d2"], ["/e1"], []),
    "SetWatches2": r.SetWatches2(0x200000010, ["/d1"], [], ["/c1", "/c2"], ["/p"], ["/r1", "/r2"]),
    "MultiHeader": r.MultiHeader(-1, True, -1),
    "MultiHeader/op": r.MultiHeader(1, False, -1),
    "ErrorResponse": r.ErrorResponse(-101),
    "CreateTTLRequest": r.CreateTTLRequest("/ttl", b"t", ACLS, 5, 60000),
    "AuthPacket": r.AuthPacket(0, "digest", b"user:secret"),
    "ReconfigRequest": r.ReconfigRequest("server.4=h:1:2;3", None, None, -1),
    "CheckWatchesRequest": r.CheckWatchesRequest("/w", 3),
    "AddWatchRequest": r.AddWatchRequest("/w", 1),
    "GetAllChildrenNumberResponse": r.GetAllChildrenNumberResponse(42),
    "GetEphemeralsResponse": r.GetEphemeralsResponse(["/e1", "/e2"]),
    "WhoAmIResponse": r.WhoAmIResponse([r.ClientInfo("ip", "127.0.0.1"),
                                        r.ClientInfo("digest", "bob")]),
    "TxnHeader": r.TxnHeader(0x0100017F00000001, 9, 0x300000001, 1700000000999, 1),
    "CreateTxn": r.CreateTxn("/t", b"v", ACLS, True, 4),
    "CreateTTLTxn": r.CreateTTLTxn("/t", b"v", ACLS, 4, 1000),
    "CloseSessionTxn": r.CloseSessionTxn(["/eph1", "/eph2"]),
    "MultiTxn": r.MultiTxn([r.Txn(2, b"ab"), r.Txn(-1, b"")]),
    "TxnDigest": r.TxnDigest(2, -5),
    "FileHeader": r.FileHeader(0x5A4B4C47, 2, 0),
    "QuorumPacket": r.QuorumPacket(2, 0x100000001, b"q", [r.Id("ip", "10.0.0.1")]),
}

RECORD_CASES = sorted(k for k, v in GOLDEN.items() if v["record"] in r.RECORDS
                      and "+" not in k)


def golden(name):
    return bytes.fromhex(GOLDEN[name]["hex"])


# --- the table ------------------------------------------------------------------------------

def test_every_golden_record_case_has_a_python_twin():
    assert set(RECORD_CASES) == set(GOLDEN_VALUES)


def test_table_uses_jute_field_names_in_wire_order():
    assert [f for f, _ in r.ConnectRequest.FIELDS] == [
        "protocolVersion", "lastZxidSeen", "timeOut", "sessionId", "passwd"]
    assert [f for f, _ in r.Stat.FIELDS] == [
        "czxid", "mzxid", "ctime", "mtime", "version", "cversion", "aversion",
        "ephemeralOwner", "dataLength", "numChildren", "pzxid"]
    assert r.CreateRequest.FIELDS[2] == ("acl", "vector<ACL>")
    assert r.CreateTxn.JUTE_MODULE == "txn"
    assert len(r.RECORDS) == 72  # every class in the 3.8.0 zookeeper-jute jar


def test_records_are_slotted_and_compare_by_value():
    a = r.GetDataRequest("/x", True)
    assert not hasattr(a, "__dict__")
    assert a == r.GetDataRequest(path="/x", watch=True)
    assert a != r.GetDataRequest("/x", False)
    assert a != r.ExistsRequest("/x", True)
    assert repr(a) == "GetDataRequest(path='/x', watch=True)"
    with pytest.raises(AttributeError):
        a.other = 1


def test_defaults_are_fresh_per_instance():
    a, b = r.CreateRequest(), r.CreateRequest()
    a.acl.append(OPEN[0])
    assert b.acl == []
    assert r.GetDataResponse().stat == r.Stat()
    assert r.GetDataResponse().stat is not r.GetDataResponse().stat


def test_op_tables_cover_every_client_op():
    ops = [v for k, v in vars(consts).items() if k.startswith("OP_")]
    for op in ops:
        if op in (consts.OP_MULTI, consts.OP_MULTI_READ):
            assert op not in r.REQUEST_RECORDS  # MultiHeader framing: codec.decode_multi
            continue
        assert op in r.RESPONSE_RECORDS or op == consts.OP_DELETE_CONTAINER, op
    assert r.REQUEST_RECORDS[consts.OP_CREATE2] is r.CreateRequest
    assert r.REQUEST_RECORDS[consts.OP_CREATE_TTL] is r.CreateTTLRequest
    assert r.RESPONSE_RECORDS[consts.OP_CREATE_CONTAINER] is r.Create2Response
    assert r.RESPONSE_RECORDS[consts.OP_GET_CHILDREN2] is r.GetChildren2Response
    assert r.RESPONSE_RECORDS[consts.OP_WHO_AM_I] is r.WhoAmIResponse
    assert r.REQUEST_RECORDS[consts.OP_PING] is None


# --- golden bytes, both directions ------------------------------------------------------------

@pytest.mark.parametrize("case", RECORD_CASES)
def test_golden_encode_matches_java(case):
    assert codec.encode(GOLDEN_VALUES[case]).hex() == GOLDEN[case]["hex"]


@pytest.mark.parametrize("case", RECORD_CASES)
def test_golden_decode_matches_java(case):
    data = golden(case)
    cls = r.RECORDS[GOLDEN[case]["record"]]
    for buf in (data, memoryview(data), bytearray(data)):
        rec, off = codec.decode(cls, buf)
        assert rec == GOLDEN_VALUES[case]
        assert off == len(data)


def test_golden_decode_at_offset():
    data = b"junk" + golden("Stat") + b"tail"
    assert codec.decode(r.Stat, data, 4) == (STAT, 4 + 68)


def test_non_bmp_character_is_encoded_like_java_per_utf16_char():
    # BinaryOutputArchive.stringToByteBuffer encodes each UTF-16 char: U+1F600 -> ED A0 BD ED B8 80
    assert "eda0bdedb880" in GOLDEN["CreateRequest"]["hex"]
    # ...and both that form and standard UTF-8 (kazoo, C client) decode to the same str.
    std = b"\x00\x00\x00\x05/\xf0\x9f\x98\x80"
    assert codec.decode(r.SyncRequest, std)[0].path == "/\U0001F600"


def test_invalid_utf8_decodes_to_replacement_chars_like_java():
    rec, _ = codec.decode(r.SyncRequest, b"\x00\x00\x00\x02/\xff")
    assert rec.path == "/\ufffd"


def test_connect_request_with_and_without_read_only():
    req = GOLDEN_VALUES["ConnectRequest"]
    assert codec.decode_connect_request(golden("ConnectRequest")) == (req, None)
    assert codec.decode_connect_request(golden("ConnectRequest+readOnly")) == (req, True)
    assert codec.encode_connect_request(req, True) == golden("ConnectRequest+readOnly")
    assert codec.encode_connect_request(req, None) == golden("ConnectRequest")
    assert len(golden("ConnectRequest")) == 44 and len(golden("ConnectRequest+readOnly")) == 45


def test_connect_response_with_and_without_read_only():
    resp = GOLDEN_VALUES["ConnectResponse"]
    assert codec.encode_connect_response(resp, False) == golden("ConnectResponse+readOnly")
    assert codec.encode_connect_response(resp, None) == golden("ConnectResponse")
    assert codec.decode_connect_response(golden("ConnectResponse+readOnly")) == (resp, False)
    assert codec.decode_connect_response(golden("ConnectResponse")) == (resp, None)
    assert len(golden("ConnectResponse")) == 36


def test_truncated_connect_request_is_a_protocol_error():
    with pytest.raises(ClientProtocolError, match="ConnectRequest"):
        codec.decode_connect_request(golden("ConnectRequest")[:30])


def test_headers_helpers_match_golden():
    assert codec.decode_request_header(golden("RequestHeader") + b"x", 0) == (7, 4, 8)
    assert codec.encode_request_header(7, 4) == golden("RequestHeader")
    assert codec.encode_reply_header(7, 0x100000005, -101) == golden("ReplyHeader")
    assert codec.decode_reply_header(golden("ReplyHeader")) == (7, 0x100000005, -101, 16)
    with pytest.raises(ClientProtocolError, match="RequestHeader"):
        codec.decode_request_header(b"\x00\x00\x00\x07\x00", 0)


def test_reply_frame_is_length_prefixed_header_plus_body():
    rsp = GOLDEN_VALUES["GetDataResponse"]
    body = golden("ReplyHeader") + golden("GetDataResponse")
    assert codec.encode_reply_frame(7, 0x100000005, -101, rsp) == \
        len(body).to_bytes(4, "big") + body
    assert codec.encode_reply_frame(-2, 5, 0) == b"\x00\x00\x00\x10" + \
        codec.encode_reply_header(-2, 5, 0)


def test_notification_matches_java_server_body():
    assert codec.encode_notification(0x100000007, consts.EVENT_NODE_CHILDREN_CHANGED,
                                     consts.STATE_SYNC_CONNECTED, "/parent") \
        == golden("notification")


MULTI_OPS = [
    (consts.OP_CREATE, r.CreateRequest("/m1", b"d1", OPEN, 0)),
    (consts.OP_CREATE, r.CreateRequest("/m2", b"", OPEN, 3)),
    (consts.OP_CREATE_TTL, r.CreateTTLRequest("/m3", b"ttl", OPEN, 5, 5000)),
    (consts.OP_CREATE_CONTAINER, r.CreateRequest("/m4", None, OPEN, 4)),
    (consts.OP_DELETE, r.DeleteRequest("/m5", -1)),
    (consts.OP_SET_DATA, r.SetDataRequest("/m6", b"new", 3)),
    (consts.OP_CHECK, r.CheckVersionRequest("/m7", 1)),
]


def test_multi_request_golden_both_directions():
    data = golden("multi_request")
    assert codec.decode_multi(data, 0) == MULTI_OPS
    assert codec.decode_multi(memoryview(b"hdr!" + data), 4) == MULTI_OPS
    assert codec.encode_multi_request(MULTI_OPS) == data


def test_multi_read_request_golden():
    assert codec.decode_multi(golden("multiread_request")) == [
        (consts.OP_GET_CHILDREN, r.GetChildrenRequest("/r", False)),
        (consts.OP_GET_DATA, r.GetDataRequest("/r/a", False))]


def test_multi_response_golden_both_directions():
    results = [
        (consts.OP_CREATE, 0, r.CreateResponse("/m1")),
        (consts.OP_CREATE2, 0, r.Create2Response("/m2", STAT)),
        (consts.OP_DELETE, 0, None),
        (consts.OP_SET_DATA, 0, r.SetDataResponse(STAT)),
        (consts.OP_CHECK, 0, None),
        (consts.OP_GET_DATA, 0, r.GetDataResponse(b"gd", STAT)),
        (consts.OP_GET_CHILDREN, 0, r.GetChildrenResponse(["x", "y"])),
    ]
    assert codec.encode_multi_response(results) == golden("multi_response")
    assert codec.decode_multi_response(golden("multi_response")) == results


def test_failed_multi_response_golden():
    # MultiResponse of ErrorResults: ok before the failure, the code, RUNTIMEINCONSISTENCY after.
    results = [(consts.OP_ERROR, 0, None), (consts.OP_CREATE, -101, None),
               (consts.OP_ERROR, -2, None)]
    assert codec.encode_multi_response(results) == golden("multi_response_failed")
    assert [(t, e) for t, e, _ in codec.decode_multi_response(golden("multi_response_failed"))] \
        == [(-1, 0), (-1, -101), (-1, -2)]


def test_ttl_and_container_results_travel_as_create2():
    # OpResult.CreateResult(path, stat) hard-codes create2; Java's MultiResponse rejects 19/21.
    one = codec.encode_multi_response([(consts.OP_CREATE_TTL, 0, r.Create2Response("/t", STAT))])
    two = codec.encode_multi_response([(consts.OP_CREATE2, 0, r.Create2Response("/t", STAT))])
    assert one == two


def test_multi_rejects_unknown_op_and_missing_end():
    bad = codec.encode_multi_request([(consts.OP_GET_ACL, r.GetACLRequest("/x"))])
    with pytest.raises(ClientProtocolError, match="invalid op type 6"):
        codec.decode_multi(bad)
    with pytest.raises(ClientProtocolError, match="end marker"):
        codec.decode_multi(golden("multi_request")[:-9])


# --- malformed input ------------------------------------------------------------------------

def test_null_string_and_buffer_decode_to_none():
    rec, _ = codec.decode(r.SetDataRequest, b"\xff\xff\xff\xff" * 2 + b"\x00\x00\x00\x01")
    assert rec == r.SetDataRequest(None, None, 1)


@pytest.mark.parametrize("data, message", [
    (b"\xff\xff\xff\xfe\x00", "invalid path length -2"),
    (b"\x00\x00\x00\x10/ab\x00", "path length 16 at offset 4 exceeds the 4 bytes left"),
    (b"\x00\x00\x00\x02/a", "truncated record"),
    (b"", "truncated record"),
])
def test_bad_lengths_raise_client_protocol_error(data, message):
    with pytest.raises(ClientProtocolError, match=message):
        codec.decode(r.GetDataRequest, data)


def test_absurd_vector_count_is_rejected_before_allocating():
    data = b"\x7f\xff\xff\xff" + b"\x00" * 8
    with pytest.raises(ClientProtocolError, match="vector children count 2147483647"):
        codec.decode(r.GetChildrenResponse, data)
    with pytest.raises(ClientProtocolError, match="invalid children length -5"):
        codec.decode(r.GetChildrenResponse, b"\xff\xff\xff\xfb")


def test_bad_offset_is_rejected():
    with pytest.raises(ClientProtocolError):
        codec.decode(r.Stat, golden("Stat"), 100)


# --- properties -----------------------------------------------------------------------------

INT = st.integers(-2**31, 2**31 - 1)
LONG = st.integers(-2**63, 2**63 - 1)


def strategy_for(jtype):
    if jtype == "int":
        return INT
    if jtype == "long":
        return LONG
    if jtype == "boolean":
        return st.booleans()
    if jtype == "ustring":
        return st.none() | st.text(max_size=12)
    if jtype == "buffer":
        return st.none() | st.binary(max_size=16)
    if jtype.startswith("vector<"):
        return st.none() | st.lists(strategy_for(jtype[7:-1]), max_size=3)
    cls = r.RECORDS[jtype]
    return st.builds(cls, *[strategy_for(t) for _, t in cls.FIELDS])


ALL_CLASSES = sorted(r.RECORDS.values(), key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip_every_record(cls, data):
    rec = data.draw(strategy_for(cls.__name__))
    enc = codec.encode(rec)
    assert codec.decode(cls, enc) == (rec, len(enc))
    buf = bytearray(b"pre")
    codec.encode_into(buf, rec)
    assert bytes(buf) == b"pre" + enc
    assert codec.decode(cls, memoryview(bytes(buf)), 3) == (rec, len(buf))


def _decode_or_protocol_error(fn, *args):
    try:
        fn(*args)
    except ClientProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(cls=st.sampled_from(ALL_CLASSES), blob=st.binary(max_size=64))
def test_fuzz_random_bytes_only_raise_client_protocol_error(cls, blob):
    _decode_or_protocol_error(codec.decode, cls, blob)
    _decode_or_protocol_error(codec.decode, cls, memoryview(blob))


@settings(max_examples=200, deadline=None)
@given(case=st.sampled_from(sorted(GOLDEN)), cut=st.integers(0, 400),
       flips=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=4))
def test_fuzz_mutated_golden_only_raise_client_protocol_error(case, cut, flips):
    data = bytearray(golden(case))
    for pos, val in flips:
        if data:
            data[pos % len(data)] = val
    data = bytes(data[:cut])
    kind = GOLDEN[case]["record"]
    if kind in r.RECORDS:
        _decode_or_protocol_error(codec.decode, r.RECORDS[kind], data)
    _decode_or_protocol_error(codec.decode_multi, data)
    _decode_or_protocol_error(codec.decode_multi_response, data)
    _decode_or_protocol_error(codec.decode_connect_request, data)
    _decode_or_protocol_error(codec.decode_request_header, data, 0)
