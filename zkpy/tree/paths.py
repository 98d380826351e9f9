"""Znode path rules (ZooKeeper's PathUtils.validatePath). Pure."""

import re

from zkpy.errors import BADARGUMENTS, ZkError

# The common case in one regex match: "/" + names of allowed characters, none empty, "." or "..".
# Anything it rejects goes through the character loop below, which names the reason.
_VALID = re.compile(
    "(?:/(?!\\.\\.?(?:/|$))[^/\u0000-\u001f\u007f-\u009f\ud800-\uf8ff\ufff0-\U0010ffff]+)+")

_SPECIAL = frozenset(["/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"])


def _bad(path, reason):
    return ZkError(BADARGUMENTS, "Invalid path string \"%s\" caused by %s" % (path, reason))


def validate_path(path, sequential=False):
    """Raise ZkError(BADARGUMENTS) unless `path` is a valid znode path.

    A sequential create is validated with a digit appended, so "/a/" is a valid sequential prefix
    (PathUtils.validatePath(String, boolean)).
    """
    if path is None:
        raise ZkError(BADARGUMENTS, "Path cannot be null")
    if sequential:
        path = path + "1"
    # Printable ASCII, "/" first, not last, no empty name and no name starting with ".": what
    # _VALID accepts for such paths, without the regex (the write path's common case).
    if (path.isascii() and path.isprintable() and path[:1] == "/" and path[-1] != "/"
            and "//" not in path and "/." not in path):
        return
    if _VALID.fullmatch(path):
        return
    if not path:
        raise ZkError(BADARGUMENTS, "Path length must be > 0")
    if path[0] != "/":
        raise _bad(path, "path must start with / character")
    if len(path) == 1:
        return
    if path[-1] == "/":
        raise _bad(path, "must not end with / character")
    prev = "/"
    for i in range(1, len(path)):
        c = path[i]
        if c == "\0":
            raise _bad(path, "null character not allowed @%d" % i)
        if c == "/" and prev == "/":
            raise _bad(path, "empty node name specified @%d" % i)
        if c == "." and prev == ".":
            if path[i - 2] == "/" and (i + 1 == len(path) or path[i + 1] == "/"):
                raise _bad(path, "relative paths not allowed @%d" % i)
        elif c == ".":
            if prev == "/" and (i + 1 == len(path) or path[i + 1] == "/"):
                raise _bad(path, "relative paths not allowed @%d" % i)
        elif ("\u0000" < c <= "\u001f") or ("\u007f" <= c <= "\u009f") or (
                "\ud800" <= c <= "\uf8ff") or (c >= "\ufff0"):
            # c > U+FFFF is a surrogate pair in Java's UTF-16, which PathUtils rejects.
            raise _bad(path, "invalid character @%d" % i)
        prev = c


def split(path):
    """Return (parent_path, child_name); the parent of "/x" is "/"."""
    i = path.rfind("/")
    return (path[:i] or "/"), path[i + 1:]


def is_special(path):
    """Nodes that can never be deleted (ZKDatabase.isSpecialPath)."""
    return path in _SPECIAL
