"""Side-by-side: one script of kazoo operations, run on zkpy and on Apache ZooKeeper, compared.

Owns the transcript recorder and the script. The script covers what could differ between
servers: error codes (including raw, un-normalised bad paths that bypass kazoo's own path
checks), full Stat tuples, sequential numbering (cversion-driven), watch events in wire order
relative to the reply, getChildren2/create2 stats, sync, multi, the /zookeeper subtree and
ephemeral cleanup at session close.

Normalisation makes two runs comparable: zxids become their rank among all zxids seen in the
run's stats (0 stays 0), ctime becomes "0" or "t" and mtime becomes "=c" (equal to ctime) or
"t", ephemeralOwner becomes the script's session name (A, B) or 0. Children lists are sorted.

Both clients' reader threads are traced: every watch notification and every reply is logged in
the order it came off the socket. After each step both clients send a sync, so every
notification the step caused has arrived (ZooKeeper delivers a watch event before any later
reply on the same session) and the transcript needs no sleeps.
"""

import difflib
import threading

import pytest
from kazoo.exceptions import KazooException
from kazoo.protocol.serialization import (
    Create,
    Delete,
    Exists,
    GetChildren,
    GetData,
    SetData,
    Sync,
    Watch,
)
from kazoo.protocol.states import ZnodeStat
from kazoo.security import ACL, OPEN_ACL_UNSAFE

from .servers import UNAVAILABLE, make_server

EVENT_NAMES = {1: "CREATED", 2: "DELETED", 3: "CHANGED", 4: "CHILD"}
SEQUENTIAL = 2

# Raw paths sent as-is (kazoo would normalise or refuse them). "/sbs" exists when they run.
RAW_PATHS = [
    "",
    "a",
    "sbs",
    "/sbs/",
    "/sbs//x",
    "/sbs/./x",
    "/sbs/../x",
    "/sbs/.",
    "/sbs/..",
    "//",
    "/nope/",
    "/a\x00b",
    "/sbs/\x01",
    "/sbs/\u00e9",
]


def _noop_watch(event):
    pass


class Traced:
    """A started kazoo client whose reader thread logs events and replies in wire order."""

    def __init__(self, name, client):
        self.name = name
        self.client = client
        self.wire = []
        self.closed = False
        conn = client._connection
        orig_event = conn._read_watch_event
        orig_response = conn._read_response

        # Instance attributes shadow the methods: the reader thread looks them up per frame.
        def read_watch_event(buffer, offset):
            watch, _ = Watch.deserialize(buffer, offset)
            self.wire.append(("event", EVENT_NAMES.get(watch.type, watch.type), watch.path))
            return orig_event(buffer, offset)

        def read_response(header, buffer, offset):
            request = client._pending[0][0] if client._pending else None
            self.wire.append(("reply", type(request).__name__, header.err))
            return orig_response(header, buffer, offset)

        conn._read_watch_event = read_watch_event
        conn._read_response = read_response

    @property
    def session_id(self):
        return self.client.client_id[0]


class Entry:
    def __init__(self, label, actor, outcome, wire):
        self.label = label
        self.actor = actor
        self.outcome = outcome  # ("ok", value) or ("err", ExceptionName)
        self.wire = wire  # {client name: [wire records]}


class Recorder:
    def __init__(self, clients):
        self.clients = clients  # name -> Traced
        self.entries = []
        self.sessions = {}
        self.lock = threading.Lock()

    def do(self, label, actor, fn):
        me = self.clients[actor]
        live = [c for c in self.clients.values() if not c.closed]
        for c in live:
            self.sessions[c.session_id] = c.name
        marks = {c.name: len(c.wire) for c in live}
        try:
            outcome = ("ok", fn(me.client))
        except KazooException as e:
            outcome = ("err", type(e).__name__)
        wire = {}
        for c in live:
            if c.closed:
                continue
            c.client.sync("/")  # flush: notifications precede this reply on the socket
            records = c.wire[marks[c.name]:]
            assert records and records[-1] == ("reply", "Sync", 0), records
            if records[:-1]:
                wire[c.name] = records[:-1]
        self.entries.append(Entry(label, actor, outcome, wire))
        return outcome

    # -- normalisation ----------------------------------------------------------------------
    def _stats(self, value):
        if isinstance(value, ZnodeStat):
            yield value
        elif isinstance(value, (list, tuple)) and not isinstance(value, ACL):
            for v in value:
                yield from self._stats(v)

    def render(self):
        zxids = set()
        for e in self.entries:
            for st in self._stats(e.outcome[1]):
                zxids.update((st.czxid, st.mzxid, st.pzxid))
        zxids.discard(0)
        rank = {z: i + 1 for i, z in enumerate(sorted(zxids))}
        rank[0] = 0

        def r(v):
            if isinstance(v, ZnodeStat):
                owner = v.ephemeralOwner
                owner = self.sessions.get(owner, "?other") if owner else 0
                ctime = "0" if v.ctime == 0 else "t"
                mtime = "=c" if v.mtime == v.ctime else ("0" if v.mtime == 0 else "t")
                return (
                    f"Stat(cz={rank[v.czxid]} mz={rank[v.mzxid]} ctime={ctime} mtime={mtime} "
                    f"v={v.version} cv={v.cversion} av={v.aversion} owner={owner} "
                    f"len={v.dataLength} nc={v.numChildren} pz={rank[v.pzxid]})"
                )
            if isinstance(v, ACL):
                return f"ACL({v.perms},{v.id.scheme}:{v.id.id})"
            if isinstance(v, BaseException):
                return type(v).__name__
            if isinstance(v, tuple):
                return "(" + ", ".join(r(x) for x in v) + ")"
            if isinstance(v, list):
                return "[" + ", ".join(r(x) for x in v) + "]"
            return repr(v)

        out = {}
        for e in self.entries:
            kind, value = e.outcome
            text = f"{e.actor}: {kind} {r(value) if kind == 'ok' else value}"
            for name in sorted(e.wire):
                recs = ", ".join(" ".join(str(x) for x in rec) for rec in e.wire[name])
                text += f" | wire {name}: {recs}"
            assert e.label not in out, f"duplicate label {e.label}"
            out[e.label] = text
        return out


def raw(client, request):
    """Send a request without kazoo's path normalisation."""
    result = client.handler.async_result()
    client._call(request, result)
    return result.get(timeout=10)


def txn(ops):
    def run(c):
        t = c.transaction()
        for name, *args in ops:
            getattr(t, name)(*args)
        return t.commit()

    return run


def run_script(rec, with_multi=True):
    do = rec.do
    w = _noop_watch

    # -- the tree a fresh server starts with ---------------------------------------------------
    do("exists /", "A", lambda c: c.exists("/"))
    do("exists /zookeeper", "A", lambda c: c.exists("/zookeeper"))
    do("children /zookeeper", "A", lambda c: sorted(c.get_children("/zookeeper")))
    do("exists /zookeeper/quota", "A", lambda c: c.exists("/zookeeper/quota"))
    do("get /zookeeper/config", "A", lambda c: c.get("/zookeeper/config"))
    do("acl /", "A", lambda c: c.get_acls("/"))
    do("acl /zookeeper/config", "A", lambda c: c.get_acls("/zookeeper/config"))
    do("create seq under / (fresh)", "A", lambda c: c.create("/r-", b"", sequence=True))
    do("exists / after seq", "A", lambda c: c.exists("/"))

    # -- create / get / set / delete and their errors -----------------------------------------
    do("create /sbs", "A", lambda c: c.create("/sbs", b"base"))
    do("create /sbs again", "A", lambda c: c.create("/sbs", b"x"))
    do("create without parent", "A", lambda c: c.create("/nope/x"))
    do("create2 /sbs/c2", "A", lambda c: c.create("/sbs/c2", b"abc", include_data=True))
    do("get /sbs/c2", "B", lambda c: c.get("/sbs/c2"))
    do("acl /sbs/c2", "B", lambda c: c.get_acls("/sbs/c2"))
    do("set v0", "A", lambda c: c.set("/sbs/c2", b"defg", version=0))
    do("set v0 again", "A", lambda c: c.set("/sbs/c2", b"hij", version=0))
    do("set v-1", "A", lambda c: c.set("/sbs/c2", b"", version=-1))
    do("get after sets", "B", lambda c: c.get("/sbs/c2"))
    do("set missing", "A", lambda c: c.set("/sbs/none", b"x"))
    do("get missing", "A", lambda c: c.get("/sbs/none"))
    do("exists missing", "A", lambda c: c.exists("/sbs/none"))
    do("children missing", "A", lambda c: c.get_children("/sbs/none"))
    do("delete bad version", "A", lambda c: c.delete("/sbs/c2", version=7))
    do("delete right version", "A", lambda c: c.delete("/sbs/c2", version=2))
    do("delete missing", "A", lambda c: c.delete("/sbs/c2"))
    do("create /sbs/p", "A", lambda c: c.create("/sbs/p", b"p"))
    do("create /sbs/p/k", "A", lambda c: c.create("/sbs/p/k", b"k"))
    do("create /sbs/p/l", "B", lambda c: c.create("/sbs/p/l"))
    do("delete non-empty", "A", lambda c: c.delete("/sbs/p"))
    do("getChildren2 /sbs/p", "B", lambda c: (lambda r: (sorted(r[0]), r[1]))(
        c.get_children("/sbs/p", include_data=True)))
    do("delete /sbs/p/k", "A", lambda c: c.delete("/sbs/p/k"))
    do("exists /sbs/p after child delete", "A", lambda c: c.exists("/sbs/p"))
    do("sync /sbs/p", "A", lambda c: c.sync("/sbs/p"))
    do("sync missing", "A", lambda c: c.sync("/sbs/none"))

    # -- the /zookeeper subtree and the root -----------------------------------------------------
    do("set /zookeeper", "A", lambda c: c.set("/zookeeper", b"z"))
    do("delete /zookeeper", "A", lambda c: c.delete("/zookeeper"))
    do("create /zookeeper", "A", lambda c: c.create("/zookeeper"))
    do("delete /zookeeper/quota", "A", lambda c: c.delete("/zookeeper/quota"))
    do("delete /zookeeper/config", "A", lambda c: c.delete("/zookeeper/config"))
    do("delete /", "A", lambda c: c.delete("/"))
    do("create /", "A", lambda c: c.create("/"))
    do("get /zookeeper after set", "B", lambda c: c.get("/zookeeper"))

    # -- ephemerals -------------------------------------------------------------------------
    do("create ephemeral", "A", lambda c: c.create("/sbs/e", b"e", ephemeral=True))
    do("exists ephemeral (other session)", "B", lambda c: c.exists("/sbs/e"))
    do("create under ephemeral", "B", lambda c: c.create("/sbs/e/c"))
    do("create seq under ephemeral", "A", lambda c: c.create("/sbs/e/c", sequence=True))
    kind, es_path = do("create ephemeral seq", "B",
                       lambda c: c.create("/sbs/es-", ephemeral=True, sequence=True))
    do("exists ephemeral seq", "A", lambda c: c.exists(es_path) if kind == "ok" else None)
    do("children /sbs", "A", lambda c: sorted(c.get_children("/sbs")))

    # -- sequential numbering follows the parent's cversion --------------------------------------
    do("create /sbs/seq", "A", lambda c: c.create("/sbs/seq"))
    for i in range(3):
        do(f"seq n- #{i}", "A", lambda c: c.create("/sbs/seq/n-", b"", sequence=True))
    do("plain child", "A", lambda c: c.create("/sbs/seq/plain"))
    do("seq after plain child", "A", lambda c: c.create("/sbs/seq/n-", sequence=True))
    do("delete seq child", "A", lambda c: c.delete("/sbs/seq/n-0000000000"))
    do("seq after delete", "B", lambda c: c.create("/sbs/seq/n-", sequence=True))
    do("seq empty prefix", "A", lambda c: c.create("/sbs/seq/", sequence=True))
    do("seq ephemeral in seq dir", "B", lambda c: c.create("/sbs/seq/e-", ephemeral=True,
                                                           sequence=True))
    do("failed create keeps cversion", "A", lambda c: c.create("/sbs/seq/plain"))
    do("seq after failed create", "A", lambda c: c.create("/sbs/seq/n-", sequence=True))
    do("exists /sbs/seq", "A", lambda c: c.exists("/sbs/seq"))
    do("children /sbs/seq", "A", lambda c: sorted(c.get_children("/sbs/seq")))

    # -- raw paths: server-side validation, in the order ZooKeeper checks things --------------
    for p in RAW_PATHS:
        do(f"raw create {p!r}", "A", lambda c: raw(c, Create(p, b"", OPEN_ACL_UNSAFE, 0)))
        do(f"raw create seq {p!r}", "A",
           lambda c: raw(c, Create(p, b"", OPEN_ACL_UNSAFE, SEQUENTIAL)))
        do(f"raw delete {p!r}", "A", lambda c: raw(c, Delete(p, -1)))
        do(f"raw exists {p!r}", "A", lambda c: raw(c, Exists(p, None)))
        do(f"raw get {p!r}", "A", lambda c: raw(c, GetData(p, None)))
        do(f"raw set {p!r}", "A", lambda c: raw(c, SetData(p, b"", -1)))
        do(f"raw children {p!r}", "A", lambda c: raw(c, GetChildren(p, None)))
        do(f"raw sync {p!r}", "A", lambda c: raw(c, Sync(p)))
    do("still connected after raw paths", "A", lambda c: c.exists("/sbs") is not None)

    # -- watches --------------------------------------------------------------------------------
    do("A exists-watch missing /sbs/w", "A", lambda c: c.exists("/sbs/w", watch=w))
    do("A creates /sbs/w (own exists watch)", "A", lambda c: c.create("/sbs/w", b"0"))
    do("B get-watch /sbs/w", "B", lambda c: c.get("/sbs/w", watch=w))
    do("B exists-watch /sbs/w too", "B", lambda c: c.exists("/sbs/w", watch=w))
    do("A sets /sbs/w (B data watch x2)", "A", lambda c: c.set("/sbs/w", b"1"))
    do("A sets /sbs/w again (one-shot)", "A", lambda c: c.set("/sbs/w", b"2"))
    do("B child-watch /sbs/w", "B", lambda c: sorted(c.get_children("/sbs/w", watch=w)))
    do("A sets /sbs/w (child watch ignores data)", "A", lambda c: c.set("/sbs/w", b"3"))
    do("A creates /sbs/w/c1 (B child watch)", "A", lambda c: c.create("/sbs/w/c1"))
    do("B get-watch /sbs/w/c1", "B", lambda c: c.get("/sbs/w/c1", watch=w))
    do("B child-watch /sbs/w again", "B", lambda c: sorted(c.get_children("/sbs/w", watch=w)))
    do("A exists-watch /sbs/w/c1", "A", lambda c: c.exists("/sbs/w/c1", watch=w))
    do("A deletes /sbs/w/c1", "A", lambda c: c.delete("/sbs/w/c1"))
    do("B child+data watch /sbs/w", "B", lambda c: (sorted(c.get_children("/sbs/w", watch=w)),
                                                     c.get("/sbs/w", watch=w)))
    do("A deletes /sbs/w (B both watches)", "A", lambda c: c.delete("/sbs/w"))
    do("B get-watch missing /sbs/nw", "B", lambda c: c.get("/sbs/nw", watch=w))
    do("A creates /sbs/nw (no watch left by failed get)", "A", lambda c: c.create("/sbs/nw"))
    do("B exists-watch missing /sbs/w2", "B", lambda c: c.exists("/sbs/w2", watch=w))
    do("A creates /sbs/w2", "A", lambda c: c.create("/sbs/w2"))
    do("B get-watch /sbs/w2", "B", lambda c: c.get("/sbs/w2", watch=w))
    do("A set bad version /sbs/w2", "A", lambda c: c.set("/sbs/w2", b"x", version=5))
    do("A set /sbs/w2", "A", lambda c: c.set("/sbs/w2", b"x", version=0))
    do("A child-watch /sbs/w2", "A", lambda c: c.get_children("/sbs/w2", watch=w))
    do("A creates /sbs/w2/k (own child watch)", "A", lambda c: c.create("/sbs/w2/k"))
    do("B child+data watch /sbs/w2", "B", lambda c: (sorted(c.get_children("/sbs/w2", watch=w)),
                                                      c.get("/sbs/w2", watch=w)))
    if with_multi:
        do("A multi create+set /sbs/w2", "A",
           txn([("create", "/sbs/w2/m", b"m"), ("set_data", "/sbs/w2", b"m")]))
        do("A multi failing", "A", txn([
            ("create", "/sbs/w2/m2", b""),
            ("create", "/sbs/w2/m", b""),
            ("delete", "/sbs/w2/none"),
        ]))
        do("A multi check+delete", "A",
           txn([("check", "/sbs/w2/m", 0), ("delete", "/sbs/w2/m")]))
    do("children /sbs/w2 after multi", "A", lambda c: sorted(c.get_children("/sbs/w2")))

    # -- ephemerals go when their session closes, with watch events -----------------------------
    do("B creates ephemeral /sbs/w2/eph", "B",
       lambda c: c.create("/sbs/w2/eph", ephemeral=True))
    do("A exists-watch eph", "A", lambda c: c.exists("/sbs/w2/eph", watch=w))
    do("A child-watch /sbs/w2 again", "A", lambda c: sorted(c.get_children("/sbs/w2", watch=w)))

    def close_b(c):
        c.stop()
        rec.clients["B"].closed = True
        return "closed"

    do("B closes its session", "B", close_b)
    do("eph gone", "A", lambda c: c.exists("/sbs/w2/eph"))
    do("ephemeral seq of B gone", "A", lambda c: sorted(c.get_children("/sbs/seq")))
    do("A ephemeral still there", "A", lambda c: c.exists("/sbs/e"))
    do("children / at end", "A", lambda c: sorted(c.get_children("/")))
    do("exists / at end", "A", lambda c: c.exists("/"))


def transcript(server, make_client, with_multi=True):
    clients = {
        "A": Traced("A", make_client(server)),
        "B": Traced("B", make_client(server)),
    }
    rec = Recorder(clients)
    try:
        run_script(rec, with_multi)
    finally:
        for c in clients.values():
            c.client.stop()  # before the server goes: a closed session, not a retry loop
    return rec.render()


def diff(left_name, left, right_name, right):
    lines_l = [f"{k} => {v}" for k, v in left.items()]
    lines_r = [f"{k} => {v}" for k, v in right.items()]
    return "\n".join(difflib.unified_diff(lines_l, lines_r, left_name, right_name, lineterm=""))


# ZooKeeper facts the transcript must show whatever the other server says (checked on each run).
FACTS = {
    "create /sbs again": "A: err NodeExistsError",
    "create without parent": "A: err NoNodeError",
    "set v0 again": "A: err BadVersionError",
    "delete bad version": "A: err BadVersionError",
    "delete missing": "A: err NoNodeError",
    "delete non-empty": "A: err NotEmptyError",
    "create under ephemeral": "B: err NoChildrenForEphemeralsError",
    "create seq under ephemeral": "A: err NoChildrenForEphemeralsError",
    "delete /zookeeper": "A: err BadArgumentsError",
    "create /zookeeper": "A: err NodeExistsError",
    "exists missing": "A: ok None",
    "sync /sbs/p": "A: ok '/sbs/p'",
    "seq n- #0": "A: ok '/sbs/seq/n-0000000000'",
    "seq n- #1": "A: ok '/sbs/seq/n-0000000001'",
    "seq n- #2": "A: ok '/sbs/seq/n-0000000002'",
    "seq after plain child": "A: ok '/sbs/seq/n-0000000004'",
    # The sequence suffix is the parent's *stored* cversion, which only creates bump; the
    # cversion a Stat reports is stored*2 - numChildren (DataNode.copyStat), i.e. creates +
    # deletes. Hence "/" reports cv=-1 on a fresh server and deletes don't advance suffixes.
    "exists /": "A: ok Stat(cz=0 mz=0 ctime=0 mtime==c v=0 cv=-1 av=0 owner=0 len=0 nc=1 pz=0)"
                " | wire A: reply Exists 0",
    "create seq under / (fresh)": "A: ok '/r-0000000000' | wire A: reply Create 0",
    "seq after delete": "B: ok '/sbs/seq/n-0000000005' | wire B: reply Create 0",
    "seq empty prefix": "A: ok '/sbs/seq/0000000006' | wire A: reply Create 0",
    "seq after failed create": "A: ok '/sbs/seq/n-0000000008' | wire A: reply Create 0",
    "exists /sbs/p after child delete": "A: ok Stat(cz={} cv=3 av=0 owner=0 len=1 nc=1 pz={}",
    "exists ephemeral (other session)": "B: ok Stat(cz={} owner=A len=1 nc=0 pz={}",
    # Server-side path checks: create looks the parent up first, then validates the path.
    "raw create 'a'": "A: err BadArgumentsError | wire A: reply Create -8",
    "raw create '/sbs/'": "A: err BadArgumentsError | wire A: reply Create -8",
    "raw create '/sbs/.'": "A: err BadArgumentsError | wire A: reply Create -8",
    "raw create '/sbs//x'": "A: err NoNodeError | wire A: reply Create -101",
    "raw create '/sbs/../x'": "A: err NoNodeError | wire A: reply Create -101",
    "raw create '//'": "A: err BadArgumentsError | wire A: reply Create -8",
    "raw create '/a\\x00b'": "A: err BadArgumentsError | wire A: reply Create -8",
    "raw create '/sbs/\\x01'": "A: err BadArgumentsError | wire A: reply Create -8",
    "raw delete 'a'": "A: err BadArgumentsError | wire A: reply Delete -8",
    "raw set 'a'": "A: err BadArgumentsError | wire A: reply SetData -8",
    "raw set '/sbs//x'": "A: err BadArgumentsError | wire A: reply SetData -8",
    "raw exists 'a'": "A: ok None | wire A: reply Exists -101",
    "raw sync '/nope/'": "A: ok '/nope/' | wire A: reply Sync 0",
    "still connected after raw paths": "A: ok True",
    "A creates /sbs/w (own exists watch)":
        "A: ok '/sbs/w' | wire A: event CREATED /sbs/w, reply Create 0",
    "A sets /sbs/w (B data watch x2)":
        "A: ok {} | wire A: reply SetData 0 | wire B: event CHANGED /sbs/w",
    "A sets /sbs/w again (one-shot)": "A: ok {} | wire A: reply SetData 0",
    "A creates /sbs/w/c1 (B child watch)":
        "A: ok '/sbs/w/c1' | wire A: reply Create 0 | wire B: event CHILD /sbs/w",
    "A deletes /sbs/w/c1": "A: ok True | wire A: event DELETED /sbs/w/c1, reply Delete 0"
                           " | wire B: event DELETED /sbs/w/c1, event CHILD /sbs/w",
    "A deletes /sbs/w (B both watches)":
        "A: ok True | wire A: reply Delete 0 | wire B: event DELETED /sbs/w",
    "A creates /sbs/nw (no watch left by failed get)":
        "A: ok '/sbs/nw' | wire A: reply Create 0",
    "A creates /sbs/w2/k (own child watch)":
        "A: ok '/sbs/w2/k' | wire A: event CHILD /sbs/w2, reply Create 0",
    "B closes its session": "B: ok 'closed' | wire A: event DELETED /sbs/w2/eph, event CHILD /sbs/w2",
    "eph gone": "A: ok None",
}


def check_facts(name, t):
    """The FACTS this transcript breaks, as readable lines (empty when all hold)."""
    wrong = []
    for label, expected in FACTS.items():
        got = t[label]
        if "| wire" not in expected:  # the fact is about the outcome only
            got = got.split(" | wire")[0]
        if "{}" in expected:  # "{}" matches anything (zxid ranks, whole Stats)
            parts = expected.split("{}")
            ok = got.startswith(parts[0]) and got.endswith(parts[-1])
            pos = 0
            for part in parts:
                pos = got.find(part, pos)
                ok = ok and pos >= 0
                pos += len(part)
        else:
            ok = got == expected
        if not ok:
            wrong.append(f"{name}: {label}:\n   expected {expected}\n   got      {got}")
    return wrong


@pytest.mark.timeout(180)
def test_side_by_side(zk_targets, tmp_path_factory, make_client, request):
    compare(zk_targets, tmp_path_factory, make_client, request, with_multi=True)


def compare(zk_targets, tmp_path_factory, make_client, request, with_multi):
    kinds = [k for k in zk_targets if not UNAVAILABLE[k]()]
    if not kinds:
        pytest.skip("; ".join(UNAVAILABLE[k]() for k in zk_targets))
    # With one kind selected, run it twice: the normalisation must make runs identical.
    runs = kinds if len(kinds) > 1 else kinds * 2
    results = []
    broken = []
    for i, kind in enumerate(runs):
        server = make_server(kind, tmp_path_factory.mktemp(f"sbs-{kind}-{i}"))
        request.node._zk_servers = getattr(request.node, "_zk_servers", []) + [server]
        server.start()
        try:
            t = transcript(server, make_client, with_multi)
        finally:
            server.stop()
        broken += check_facts(kind, t)
        results.append((f"{kind}#{i}", t))
    # Apache (or the only kind) is the reference: the diff reads "-apache +zkpy".
    (name_l, left), (name_r, right) = results[-1], results[0]
    problems = []
    if broken:
        problems.append("ZooKeeper facts broken:\n" + "\n".join(broken))
    if left != right:
        problems.append("transcripts differ:\n" + diff(name_l, left, name_r, right))
    assert not problems, "\n\n".join(problems)
