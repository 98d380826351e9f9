"""zkpy.tree.paths against ZooKeeper's PathUtils (cases of PathUtilsTest.java, plus a few more).

Extra cases were checked with org.apache.zookeeper.common.PathUtils.validatePath from the Debian
zookeeper 3.8.0 jar (see tests/unit/test_sessions.py for how such a Java check is run).
"""

import pytest

from zkpy import errors
from zkpy.errors import ZkError
from zkpy.tree.paths import is_special, split, validate_path

# PathUtilsTest.java, in order.
VALID = [
    "/this is / a valid/path",
    "/name/with.period.",
    "/test\u0020",
    "/test\u007e",
    "/test\uffef",
    # Checked with the Java PathUtils:
    "/",
    "/...",
    "/a/.b",
    "/a/b.",
    "/a/..b",
    "/a/\u00a0",
    "/a\u00a0",
    "/zookeeper",
]

INVALID = [
    None,
    "",
    "not/valid",
    "/ends/with/slash/",
    "/test\u0000",
    "/double//slash",
    "/single/./period",
    "/double/../period",
    "/test\u0001",
    "/test\u001f",
    "/test\u007f",
    "/test\u009f",
    "/test\ud800",
    "/test\uf8ff",
    "/test\ufff0",
    # Checked with the Java PathUtils:
    "/.",
    "/..",
    "/a/.",
    "/a/..",
    "/\u0080",
    "//",
    "/a//",
    "a",
]


@pytest.mark.parametrize("path", VALID)
def test_valid(path):
    validate_path(path)


@pytest.mark.parametrize("path", INVALID)
def test_invalid(path):
    with pytest.raises(ZkError) as ei:
        validate_path(path)
    assert ei.value.code == errors.BADARGUMENTS


# Java sees a character outside the BMP as a surrogate pair, which PathUtils rejects.
def test_supplementary_character_rejected_like_java():
    with pytest.raises(ZkError) as ei:
        validate_path("/a\U0001F600")
    assert ei.value.code == errors.BADARGUMENTS


def test_error_message_names_the_path_and_position():
    with pytest.raises(ZkError) as ei:
        validate_path("/double//slash")
    assert 'Invalid path string "/double//slash"' in str(ei.value)
    assert "@8" in str(ei.value)


@pytest.mark.parametrize("prefix,ok", [
    ("/a/", True),       # PathUtils.validatePath(path, isSequential): validated as "/a/1"
    ("/", True),         # "/1"
    ("/a", True),
    ("/a//", False),
    ("", False),         # "1": not absolute
    ("a/", False),
])
def test_sequential_prefix(prefix, ok):
    if ok:
        validate_path(prefix, sequential=True)
    else:
        with pytest.raises(ZkError):
            validate_path(prefix, sequential=True)


def test_non_sequential_trailing_slash_rejected():
    with pytest.raises(ZkError):
        validate_path("/a/")


@pytest.mark.parametrize("path,parent,name", [
    ("/a", "/", "a"),
    ("/a/b", "/a", "b"),
    ("/a/b/c", "/a/b", "c"),
    ("/zookeeper/quota", "/zookeeper", "quota"),
])
def test_split(path, parent, name):
    assert split(path) == (parent, name)


def test_special_paths():
    for p in ("/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"):
        assert is_special(p)
    for p in ("/a", "/zookeeper/other", "/zookeeper/quota/x", "/zookeeperx"):
        assert not is_special(p)


# The regex fast path must accept exactly what the character loop accepts.
from hypothesis import given, settings, strategies as st  # noqa: E402

from zkpy.tree import paths as _paths  # noqa: E402


def _slow_ok(path):
    saved = _paths._VALID
    _paths._VALID = type("Never", (), {"fullmatch": staticmethod(lambda p: None)})
    try:
        _paths.validate_path(path)
        return True
    except ZkError:
        return False
    finally:
        _paths._VALID = saved


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["/", ".", "..", "a", "\x00", "\x01", "\x7f", "\ud800", "\uffff",
                                 "\U0001F600", "é", "zk", "-"]), max_size=8).map("".join))
def test_fast_path_agrees_with_the_character_loop(path):
    try:
        _paths.validate_path(path)
        fast = True
    except ZkError:
        fast = False
    assert fast == _slow_ok(path)
