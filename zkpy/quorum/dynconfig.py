"""The dynamic config files of reconfig: zoo.cfg.dynamic.<version> beside zoo.cfg, and zoo.cfg
pointed at it, as ZooKeeper writes them with reconfigEnabled. Each file is written to a temp
file, fsynced and renamed, then its directory fsynced.
"""

import os


def write_dynamic_config(cfg_path, text, version, myid=None):
    """As ZooKeeper does with reconfigEnabled: the membership goes to zoo.cfg.dynamic.<version>
    beside zoo.cfg (written to a temp file, fsynced, renamed), and zoo.cfg's server.N lines give
    way to dynamicConfigFile=<that file> (the old zoo.cfg kept as zoo.cfg.bak)."""
    directory = os.path.dirname(os.path.abspath(cfg_path))
    dyn = os.path.join(directory, "%s.dynamic.%x" % (os.path.basename(cfg_path), version))
    # The version is in the file name only (load_config refuses a version line inside).
    body = "\n".join(ln for ln in text.split("\n") if not ln.startswith("version="))
    _write_atomic(dyn, body + "\n")
    with open(cfg_path, encoding="latin-1") as f:
        lines = f.read().splitlines()
    drop = ("server.", "dynamicConfigFile")
    if myid is not None and any(ln.startswith("server.%d=" % myid) and ";" in ln
                                for ln in body.split("\n")):
        # Our line carries the client address: the static copies go (editStaticConfig).
        drop += ("clientPort=", "clientPort ", "clientPortAddress")
    kept = [ln for ln in lines if not ln.strip().startswith(drop)]
    kept.append("dynamicConfigFile=%s" % dyn)
    new = "\n".join(kept) + "\n"
    if new != "\n".join(lines) + "\n":
        if not os.path.exists(cfg_path + ".bak"):
            _write_atomic(cfg_path + ".bak", "\n".join(lines) + "\n")
        _write_atomic(cfg_path, new)


def _write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="latin-1") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
