"""The pure layers stay pure: no I/O, clock, randomness or concurrency imports.

zkpy/tree/*, zkpy/proto/* (consts included), zkpy/config.py and zkpy/quorum/election.py are
parsed with ast (not imported) and every `import x` / `from x import ...` at any depth, including
inside functions, is checked.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "zkpy"
FORBIDDEN = {"asyncio", "socket", "os", "time", "random", "threading", "multiprocessing",
             "selectors", "subprocess", "signal", "select", "concurrent", "datetime", "io",
             "shutil", "tempfile", "mmap", "lmdb", "logging"}
# Pure modules may import zkpy only from these packages (never zkpy.server/storage/cli/admin).
# zkpy.compiled: the one chooser of compiled twins (it reads ZKPY_PURE and imports, no I/O).
ALLOWED_ZKPY = ("zkpy.errors", "zkpy.compiled", "zkpy.proto", "zkpy.tree", "zkpy.config",
                "zkpy.security",
                "zkpy.quorum.zab",
                "zkpy.quorum.messages", "zkpy.quorum.election")

# zkpy/config.py imports os. Its parse functions use only os.path.abspath/isabs (resolving a
# relative dataDir against the current directory, as the JVM does) -- path handling, no I/O.
# load_config, the one documented file-reading helper, also uses os.fspath, os.path.join/isfile
# (dataDir/myid, java.env), os.path.dirname (zoo.cfg's directory) and os.cpu_count (the default
# worker count). Those attributes, and only those,
# are allowed; anything else (os.environ, os.open, os.listdir, ...) fails the test.
CONFIG_OS_ALLOWED = {"path", "fspath", "cpu_count"}
CONFIG_OS_PATH_ALLOWED = {"abspath", "isabs", "join", "isfile", "dirname"}


def _modules():
    files = sorted((ROOT / "tree").glob("*.py")) + sorted((ROOT / "proto").glob("*.py"))
    files.append(ROOT / "config.py")
    files += sorted((ROOT / "security").glob("*.py"))
    # zkpy/quorum is listed file by file: peer.py is its I/O shell.
    files += [ROOT / "quorum" / n for n in ("election.py", "zab.py", "messages.py", "reconfig.py",
                                             "machine.py")]
    return files


def _imports(tree):
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            for alias in n.names:
                yield n.lineno, alias.name
        elif isinstance(n, ast.ImportFrom):
            if n.level:  # relative import: inside the same package
                yield n.lineno, "zkpy.<relative>." + (n.module or "")
            else:
                for alias in n.names:
                    yield n.lineno, "%s.%s" % (n.module, alias.name)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_pure_module_imports(path):
    tree = ast.parse(path.read_text(), str(path))
    bad = []
    for lineno, name in _imports(tree):
        top = name.split(".")[0]
        if path.name == "config.py" and top == "os" and name == "os":
            continue  # checked attribute by attribute below
        if top in FORBIDDEN:
            bad.append("%s:%d imports %s" % (path.name, lineno, name))
        if top == "zkpy" and not name.startswith("zkpy.<relative>") \
                and not name.startswith(ALLOWED_ZKPY) and name not in ("zkpy.errors",):
            bad.append("%s:%d imports %s (not a pure layer)" % (path.name, lineno, name))
    # __import__("os") would dodge the import check; open() is file I/O. (exec is fine: the proto
    # codec generates its record readers/writers with exec at import time, a pure computation.)
    # config.py's _read_text is the one documented I/O helper (used by load_config only).
    allowed_open = set()
    if path.name == "config.py":
        for f in ast.walk(tree):
            if isinstance(f, ast.FunctionDef) and f.name == "_read_text":
                allowed_open |= {id(c) for c in ast.walk(f)}
    for n in ast.walk(tree):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) \
                and n.func.id in ("__import__", "open") and id(n) not in allowed_open:
            bad.append("%s:%d calls %s()" % (path.name, n.lineno, n.func.id))
    assert not bad, "\n".join(bad)


def test_config_uses_os_only_for_paths():
    path = ROOT / "config.py"
    tree = ast.parse(path.read_text(), str(path))
    bad = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "os":
            if n.attr not in CONFIG_OS_ALLOWED:
                bad.append("config.py:%d uses os.%s" % (n.lineno, n.attr))
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Attribute) \
                and isinstance(n.value.value, ast.Name) and n.value.value.id == "os" \
                and n.value.attr == "path" and n.attr not in CONFIG_OS_PATH_ALLOWED:
            bad.append("config.py:%d uses os.path.%s" % (n.lineno, n.attr))
        if isinstance(n, ast.Name) and n.id == "os" and not isinstance(n.ctx, ast.Load):
            bad.append("config.py:%d rebinds os" % n.lineno)
    assert not bad, "\n".join(bad)


def test_the_checker_catches_forbidden_imports(tmp_path):
    # A guard against the checker itself silently passing everything.
    src = "import struct\ndef f():\n    import time\n    from asyncio import sleep\n"
    names = [name for _, name in _imports(ast.parse(src))]
    assert names == ["struct", "time", "asyncio.sleep"]
    assert {n.split(".")[0] for n in names} & FORBIDDEN == {"time", "asyncio"}


def test_every_pure_module_is_covered():
    names = {p.name for p in _modules()}
    assert {"datatree.py", "overlay.py", "txns.py", "node.py", "paths.py", "watches.py",
            "consts.py", "codec.py", "records.py", "framing.py", "config.py",
            "election.py", "zab.py", "messages.py", "machine.py"} <= names
