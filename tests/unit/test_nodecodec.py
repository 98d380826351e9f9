"""The znode byte codec: the pure module and its compiled twin agree byte for byte."""

import pytest
from hypothesis import given, settings, strategies as st

from zkpy.storage import nodecodec as pure
from zkpy.tree.node import Node

try:
    from zkpy.storage import _nodecodec as compiled
except ImportError:  # pragma: no cover - depends on the build
    compiled = None

IMPLS = [pure] + ([compiled] if compiled is not None else [])
i32 = st.integers(-2**31, 2**31 - 1)
i64 = st.integers(-2**63, 2**63 - 1)
acl = st.lists(st.tuples(st.integers(0, 31), st.text(max_size=8), st.text(max_size=20)),
               max_size=3).map(tuple)
nodes = st.builds(Node, i64, i64, i64, i64, i32, i32, i32, i64, i32, i64,
                  st.one_of(st.none(), st.binary(max_size=300)), acl)


@settings(max_examples=300, deadline=None)
@given(nodes)
def test_round_trip_and_parity(node):
    packed = pure.pack_node(node)
    for impl in IMPLS:
        assert impl.pack_node(node) == packed
        assert impl.unpack_node(packed) == node


def test_compiled_twin_is_built():
    if compiled is None:
        pytest.skip("zkpy.storage._nodecodec is not built (pip install -e . builds it); "
                    "the pure codec serves")
    assert compiled.pack_node(Node(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, b"x", ())) == \
        pure.pack_node(Node(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, b"x", ()))


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__)
def test_truncated_record_raises(impl):
    packed = pure.pack_node(Node(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, b"abc", ((31, "world", "anyone"),)))
    for cut in (10, 70, len(packed) - 1):
        with pytest.raises(Exception):
            impl.unpack_node(packed[:cut])


def test_acl_encoding_cache_keeps_parity():
    """The compiled pack_node keeps the encoded form of ACLs it has seen: equal ACLs built anew,
    more distinct ACLs than the cache holds, unhashable (list) entries and a bad entry all give
    what the pure codec gives (or raise as it does)."""
    if compiled is None:
        pytest.skip("zkpy.storage._nodecodec is not built")

    def node(a):
        return Node(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, b"v", a)

    for a in [((31, "world", "anyone"),), tuple([(31, "world", "any" + "one")]),
              ((1, "digest", "u:h"), (31, "ip", "10.0.0.0/8"))]:
        assert compiled.pack_node(node(a)) == pure.pack_node(node(a))
    for k in range(700):   # past the cache's bound (it starts over)
        a = ((k % 32, "digest", "user%d:x" % k),)
        assert compiled.pack_node(node(a)) == pure.pack_node(node(a))
        assert compiled.pack_node(node(a)) == pure.pack_node(node(a))
    unhashable = ([31, "world", "anyone"],)
    assert compiled.pack_node(node(unhashable)) == pure.pack_node(node(unhashable))
    with pytest.raises(Exception):
        compiled.pack_node(node(((31, None, "anyone"),)))


def test_decoded_acl_reuse_keeps_parity():
    """The compiled decoder hands the same ACL tuple to records whose ACL bytes are the last
    ones it decoded; every record still decodes to its own fields and ACL."""
    a = ((31, "world", "anyone"),)
    b = ((1, "digest", "u:x"), (31, "ip", "10.0.0.1"))
    seq = [Node(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, data, acl)
           for data, acl in ((b"x", a), (None, a), (b"yy" * 40, b), (b"", b), (b"z", a), (b"", ()))]
    for impl in IMPLS:
        out = [impl.unpack_node(pure.pack_node(n)) for n in seq]
        assert out == seq
    if compiled is not None:
        first, second = (compiled.unpack_node(pure.pack_node(n)) for n in seq[:2])
        assert first.acl is second.acl


@settings(max_examples=100, deadline=None)
@given(nodes)
def test_copy_node_is_node_copy(node):
    from zkpy.tree.node import copy_node
    for copy in (copy_node, Node.copy):
        c = copy(node)
        assert c == node and c is not node
        c.version = node.version + 1
        assert c != node
