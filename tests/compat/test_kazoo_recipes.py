"""kazoo 2.11's recipes run unchanged against both servers (issue 5): Lock, Election, Barrier,
DoubleBarrier, Counter, Queue, LockingQueue, Party / ShallowParty, SetPartitioner, TreeCache,
ChildrenWatch / DataWatch.

Coordination recipes run with several sessions and threads and check the property the recipe
exists for (mutual exclusion with a shared counter that would show lost updates, one leader,
FIFO without loss or duplicates, disjoint partitions covering the set, ...), not only that the
calls return. Every test uses its own path on the module's server, so one server per kind serves
the whole module.

What kazoo 2.11's recipes send, so a failure here can be traced to an op: Lock/Election/
Partitioner create EPHEMERAL_SEQUENTIAL children (create2 not used; no container nodes, no TTL,
no addWatch in 2.11's recipes), getChildren, and exists with a watch on the predecessor;
LockingQueue uses multi (create+create in put_all, delete+delete in consume, delete in release)
and sync; Counter uses getData/setData with version; TreeCache uses exists/getData/getChildren
with one-shot watches.
"""

import queue
import threading
import time

import pytest
from kazoo.exceptions import BadVersionError, LockTimeout
from kazoo.recipe.cache import TreeCache, TreeEvent

from compat.test_kazoo_sessions import wait_until

pytestmark = pytest.mark.timeout(60)

# kazoo session timeout for these tests: short enough that nothing waits long, well above the
# servers' default minSessionTimeout (2 * tickTime = 4 s).
SESSION = 6.0


@pytest.fixture
def base(shared_zk_server, request):
    """A path unique to this test (not created)."""
    return "/recipes-" + request.node.name.replace("[", "-").replace("]", "")


@pytest.fixture
def clients(shared_zk_server, make_client):
    """clients(n) -> n started kazoo clients (own sessions) on the module's server."""

    def make(n):
        return [make_client(shared_zk_server, timeout=SESSION) for _ in range(n)]

    return make


def run_threads(targets, timeout=20.0):
    """Start one daemon thread per callable, join them all; re-raise the first error."""
    errors = []

    def wrap(fn):
        def run():
            try:
                fn()
            except BaseException as e:  # reported in the test thread below
                errors.append(e)

        return run

    threads = [threading.Thread(target=wrap(fn), daemon=True) for fn in targets]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    alive = [t for t in threads if t.is_alive()]
    if errors:
        raise errors[0]
    assert not alive, "%d of %d threads still running after %.0fs" % (
        len(alive), len(threads), timeout)


def times_out(lock, timeout=0.3):
    """True when lock.acquire(timeout=...) gives up (kazoo raises LockTimeout for that)."""
    try:
        lock.acquire(timeout=timeout)
    except LockTimeout:
        return not lock.is_acquired
    return False


# ---------------------------------------------------------------------------------------------
# Lock


def test_lock_mutual_exclusion_no_lost_updates(clients, base):
    """3 sessions x 2 threads take the lock 6 times each and do a read-modify-write of a znode
    counter inside it; a versioned setData would fail (BadVersion) on any overlap, and an
    in-process holder count catches two holders at once."""
    zks = clients(3)
    counter_path = base + "/counter"
    zks[0].create(counter_path, b"0", makepath=True)
    rounds = 6
    holders = [0]
    max_holders = [0]
    guard = threading.Lock()

    def worker(zk, name):
        lock = zk.Lock(base + "/lock", identifier=name)
        for _ in range(rounds):
            with lock:
                with guard:
                    holders[0] += 1
                    max_holders[0] = max(max_holders[0], holders[0])
                data, stat = zk.get(counter_path)
                time.sleep(0.002)  # widen the window an overlapping holder would hit
                zk.set(counter_path, str(int(data) + 1).encode(), version=stat.version)
                with guard:
                    holders[0] -= 1

    run_threads([
        (lambda zk=zk, n="c%d-t%d" % (i, t): worker(zk, n))
        for i, zk in enumerate(zks) for t in range(2)
    ])
    assert max_holders[0] == 1
    assert int(zks[0].get(counter_path)[0]) == 3 * 2 * rounds
    # Every lock node was removed on release.
    assert zks[0].get_children(base + "/lock") == []


def test_lock_contenders_and_timeout(clients, base):
    a, b = clients(2)
    la = a.Lock(base + "/lock", identifier="alpha")
    lb = b.Lock(base + "/lock", identifier="beta")
    assert la.acquire(timeout=5)
    assert times_out(lb), "second session took a held lock"
    assert not lb.acquire(blocking=False)
    got = threading.Event()

    def waiter():
        lb.acquire(timeout=10)
        got.set()

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    wait_until(lambda: la.contenders() == ["alpha", "beta"], timeout=5, what="two contenders")
    assert not got.wait(0.2)
    la.release()
    assert got.wait(5), "waiter not woken when the holder released"
    assert lb.is_acquired
    assert lb.contenders() == ["beta"]
    lb.release()
    t.join(2)


def test_lock_released_when_holder_session_closes(clients, base):
    a, b = clients(2)
    assert a.Lock(base + "/lock", identifier="holder").acquire(timeout=5)
    lb = b.Lock(base + "/lock", identifier="next")
    got = threading.Event()
    t = threading.Thread(target=lambda: lb.acquire(timeout=10) and got.set(), daemon=True)
    t.start()
    wait_until(lambda: len(b.get_children(base + "/lock")) == 2, timeout=5, what="2 lock nodes")
    assert not got.wait(0.2)
    started = time.monotonic()
    a.stop()  # closeSession: the server deletes the ephemeral lock node at once
    assert got.wait(5), "lock not handed over after the holder's session closed"
    # Well under the session timeout: the node went with the close, not with an expiry.
    assert time.monotonic() - started < SESSION / 2
    assert lb.contenders() == ["next"]
    lb.release()


def test_read_write_lock(clients, base):
    """ReadLock holders share; a WriteLock waits for them and excludes new readers."""
    a, b, c = clients(3)
    r1 = a.ReadLock(base + "/rw", identifier="r1")
    r2 = b.ReadLock(base + "/rw", identifier="r2")
    w = c.WriteLock(base + "/rw", identifier="w")
    assert r1.acquire(timeout=5)
    assert r2.acquire(timeout=5), "two readers must share"
    assert times_out(w)
    r1.release()
    r2.release()
    assert w.acquire(timeout=5)
    assert times_out(a.ReadLock(base + "/rw"))
    w.release()


def test_semaphore(clients, base):
    zks = clients(3)
    sems = [zk.Semaphore(base + "/sem", identifier="s%d" % i, max_leases=2)
            for i, zk in enumerate(zks)]
    assert sems[0].acquire(timeout=5)
    assert sems[1].acquire(timeout=5)
    assert times_out(sems[2])
    assert sorted(sems[2].lease_holders()) == ["s0", "s1"]
    sems[0].release()
    assert sems[2].acquire(timeout=5)
    sems[1].release()
    sems[2].release()


# ---------------------------------------------------------------------------------------------
# Election


def test_election_one_leader_then_next_after_leader_stops(clients, base):
    zks = clients(3)
    path = base + "/election"
    leaders = queue.Queue()
    release = {i: threading.Event() for i in range(3)}
    leading = set()  # indexes whose leader function is running
    stopped = set()  # indexes whose client was stopped (their function may still run)
    overlaps = []
    guard = threading.Lock()
    elections = [zk.Election(path, "node-%d" % i) for i, zk in enumerate(zks)]

    def lead(i):
        with guard:
            if leading - stopped:
                overlaps.append((i, sorted(leading)))
            leading.add(i)
        leaders.put(i)
        release[i].wait(15)
        with guard:
            leading.discard(i)

    def campaign(i):
        try:
            elections[i].run(lead, i)
        except Exception:
            pass  # the stopped leader's lock release fails: its session is gone

    threads = [threading.Thread(target=campaign, args=(i,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    first = leaders.get(timeout=10)
    observer = elections[(first + 1) % 3]
    wait_until(lambda: len(observer.contenders()) == 3, timeout=5, what="three contenders")
    assert observer.contenders()[0] == "node-%d" % first
    assert leaders.empty(), "a second leader while the first still leads"

    with guard:
        stopped.add(first)
    zks[first].stop()  # the leader's client stops: its session and election node go
    second = leaders.get(timeout=5)
    assert second != first
    release[first].set()
    (other,) = [i for i in range(3) if i not in (first, second)]
    assert elections[second].contenders() == ["node-%d" % second, "node-%d" % other]
    assert leaders.empty()

    # The second leader steps down by returning from its function: the last one takes over.
    release[second].set()
    assert leaders.get(timeout=5) == other
    assert elections[other].contenders() == ["node-%d" % other]
    release[other].set()
    for t in threads:
        t.join(5)
    assert overlaps == []


def test_election_cancel(clients, base):
    a, b = clients(2)
    path = base + "/election"
    ea = a.Election(path, "a")
    eb = b.Election(path, "b")
    led = threading.Event()
    hold = threading.Event()
    ta = threading.Thread(target=ea.run, args=(lambda: (led.set(), hold.wait(10)),), daemon=True)
    ta.start()
    assert led.wait(5)
    b_led = threading.Event()
    tb = threading.Thread(target=eb.run, args=(b_led.set,), daemon=True)
    tb.start()
    wait_until(lambda: eb.contenders() == ["a", "b"], timeout=5, what="b contending")
    eb.cancel()  # b gives up before it ever leads
    tb.join(5)
    assert not tb.is_alive() and not b_led.is_set()
    assert ea.contenders() == ["a"]
    hold.set()
    ta.join(5)


# ---------------------------------------------------------------------------------------------
# Barriers


def test_barrier_blocks_until_removed(clients, base):
    owner, w1, w2 = clients(3)
    path = base + "/barrier"
    owner.Barrier(path).create()
    # Nobody passes while it stands.
    assert w1.Barrier(path).wait(timeout=0.3) is False
    passed = queue.Queue()
    for zk in (w1, w2):
        threading.Thread(target=lambda zk=zk: passed.put(zk.Barrier(path).wait(timeout=10)),
                         daemon=True).start()
    with pytest.raises(queue.Empty):
        passed.get(timeout=0.3)
    owner.Barrier(path).remove()
    assert [passed.get(timeout=5), passed.get(timeout=5)] == [True, True]
    # A removed barrier does not block.
    assert w1.Barrier(path).wait(timeout=0.1) is True


def test_double_barrier_enter_and_leave_together(clients, base):
    zks = clients(3)
    path = base + "/dbarrier"
    log = []
    guard = threading.Lock()
    entered_count = [0]
    barriers = [zk.DoubleBarrier(path, 3, identifier="m%d" % i) for i, zk in enumerate(zks)]

    def member(i):
        with guard:
            log.append(("try-enter", i))
        barriers[i].enter()
        assert barriers[i].participating
        with guard:
            log.append(("entered", i))
            entered_count[0] += 1
        # Stagger the leaves: nobody may return from leave() before all have called it.
        time.sleep(0.1 * i)
        with guard:
            log.append(("try-leave", i))
        barriers[i].leave()
        with guard:
            log.append(("left", i))

    threads = []
    for i in range(2):
        t = threading.Thread(target=member, args=(i,), daemon=True)
        t.start()
        threads.append(t)
    # Two of three have entered: both must still be waiting.
    wait_until(lambda: len(zks[0].get_children(path)) == 2 if zks[0].exists(path) else False,
               timeout=5, what="two members in the barrier")
    time.sleep(0.2)
    assert entered_count[0] == 0, log
    run_threads([lambda: member(2)] + [t.join for t in threads], timeout=15)
    assert not any(t.is_alive() for t in threads)
    kinds = [k for k, _ in log]
    # Every enter returned after every try-enter; every leave after every try-leave.
    assert max(i for i, k in enumerate(kinds) if k == "try-enter") < min(
        i for i, k in enumerate(kinds) if k == "entered"), log
    assert max(i for i, k in enumerate(kinds) if k == "try-leave") < min(
        i for i, k in enumerate(kinds) if k == "left"), log
    assert sum(1 for k in kinds if k == "left") == 3
    assert zks[0].get_children(path) == []


# ---------------------------------------------------------------------------------------------
# Counter


def test_counter_concurrent_increments(clients, base):
    zks = clients(3)
    path = base + "/counter"
    per_thread = 15

    def bump(zk):
        c = zk.Counter(path)
        for _ in range(per_thread):
            c += 1

    run_threads([lambda zk=zk: bump(zk) for zk in zks for _ in range(2)])
    assert zks[0].Counter(path).value == 3 * 2 * per_thread
    c = zks[1].Counter(path)
    c -= 10
    assert (c.pre_value, c.post_value) == (90, 80)
    assert c.value == 80


def test_counter_float_and_curator_format(clients, base):
    (zk,) = clients(1)
    f = zk.Counter(base + "/float", default=0.5)
    f += 2.25
    assert f.value == 2.75
    assert zk.get(base + "/float")[0] == b"2.75"
    # Curator's SharedCount format: a big-endian 4-byte integer.
    cur = zk.Counter(base + "/curator", support_curator=True)
    cur += 7
    cur -= 2
    assert cur.value == 5
    assert zk.get(base + "/curator")[0] == (5).to_bytes(4, "big")


def test_versioned_set_conflict_is_bad_version(clients, base):
    """What Counter's retry loop relies on: a stale version answers BADVERSION."""
    a, b = clients(2)
    a.create(base + "/v", b"0", makepath=True)
    _, stat = a.get(base + "/v")
    b.set(base + "/v", b"1", version=stat.version)
    with pytest.raises(BadVersionError):
        a.set(base + "/v", b"2", version=stat.version)


# ---------------------------------------------------------------------------------------------
# Queues


def test_queue_fifo_and_priority(clients, base):
    producer, consumer = clients(2)
    path = base + "/queue"
    q = producer.Queue(path)
    for i in range(10):
        q.put(b"item-%d" % i)
    q.put(b"urgent", priority=1)
    q.put(b"late", priority=200)
    cq = consumer.Queue(path)
    assert len(cq) == 12
    got = [cq.get() for _ in range(12)]
    assert got == [b"urgent"] + [b"item-%d" % i for i in range(10)] + [b"late"]
    assert cq.get() is None
    assert len(cq) == 0


def test_queue_concurrent_consumers_no_loss_no_duplicates(clients, base):
    zks = clients(4)
    path = base + "/queue"
    n = 60
    produced = [b"%03d" % i for i in range(n)]
    consumed = [[] for _ in range(3)]
    done_producing = threading.Event()

    def produce():
        q = zks[0].Queue(path)
        for item in produced:
            q.put(item)
        done_producing.set()

    def consume(k):
        q = zks[k + 1].Queue(path)
        while True:
            item = q.get()
            if item is not None:
                consumed[k].append(item)
            elif done_producing.is_set() and len(q) == 0:
                return
            else:
                time.sleep(0.01)

    run_threads([produce] + [lambda k=k: consume(k) for k in range(3)])
    everything = [x for c in consumed for x in c]
    assert sorted(everything) == produced, "lost or duplicated items"
    for c in consumed:
        assert c == sorted(c), "a consumer saw items out of FIFO order"


def test_locking_queue_fifo_consume_and_release(clients, base):
    a, b = clients(2)
    path = base + "/lqueue"
    qa = a.LockingQueue(path)
    qb = b.LockingQueue(path)
    qa.put(b"one")
    qa.put_all([b"two", b"three"])
    qa.put(b"zero", priority=1)
    assert len(qb) == 4

    assert qa.get(timeout=5) == b"zero"
    assert qa.holds_lock()
    # b skips the entry a holds.
    assert qb.get(timeout=5) == b"one"
    # a gives its entry back instead of consuming it: it becomes available again.
    assert qa.release()
    assert not qa.holds_lock()
    assert qa.get(timeout=5) == b"zero"
    assert qa.consume()
    assert qb.consume()
    assert len(qa) == 2
    assert qb.get(timeout=5) == b"two"
    assert qb.consume()
    assert qb.get(timeout=5) == b"three"
    assert qb.consume()
    assert len(qa) == 0
    # Empty: get times out with None.
    assert qa.get(timeout=0.3) is None


def test_locking_queue_blocked_get_wakes_on_put(clients, base):
    a, b = clients(2)
    path = base + "/lqueue"
    got = queue.Queue()
    qb = b.LockingQueue(path)
    t = threading.Thread(target=lambda: got.put(qb.get(timeout=10)), daemon=True)
    t.start()
    time.sleep(0.3)
    a.LockingQueue(path).put(b"hello")
    assert got.get(timeout=5) == b"hello"
    assert qb.consume()


def test_locking_queue_consumer_session_close_returns_entry(clients, base):
    a, b = clients(2)
    path = base + "/lqueue"
    qa = a.LockingQueue(path)
    qa.put(b"job")
    assert qa.get(timeout=5) == b"job"
    qb = b.LockingQueue(path)
    assert qb.get(timeout=0.3) is None  # held by a
    a.stop()  # a dies without consuming: its ephemeral lock on the entry goes
    assert qb.get(timeout=5) == b"job"
    assert qb.consume()
    assert len(qb) == 0


def test_locking_queue_concurrent_consumers_no_loss(clients, base):
    zks = clients(4)
    path = base + "/lqueue"
    n = 30
    zks[0].LockingQueue(path).put_all([b"%03d" % i for i in range(n)])
    consumed = [[] for _ in range(3)]

    def consume(k):
        q = zks[k + 1].LockingQueue(path)
        while True:
            item = q.get(timeout=0.5)
            if item is None:
                if len(q) == 0:
                    return
                continue
            consumed[k].append(item)
            assert q.consume()

    run_threads([lambda k=k: consume(k) for k in range(3)])
    everything = [x for c in consumed for x in c]
    assert sorted(everything) == [b"%03d" % i for i in range(n)], "lost or duplicated items"
    for c in consumed:
        assert c == sorted(c), "a consumer saw items out of FIFO order"


# ---------------------------------------------------------------------------------------------
# Party


@pytest.mark.parametrize("kind", ["Party", "ShallowParty"])
def test_party_membership(clients, base, kind):
    zks = clients(3)
    path = base + "/party"
    parties = [getattr(zk, kind)(path, identifier="member-%d" % i) for i, zk in enumerate(zks)]
    for p in parties:
        p.join()
    assert len(parties[0]) == 3
    assert sorted(parties[1]) == ["member-0", "member-1", "member-2"]
    parties[1].leave()
    assert sorted(parties[0]) == ["member-0", "member-2"]
    zks[2].stop()  # its ephemeral membership goes with the session
    wait_until(lambda: len(parties[0]) == 1, timeout=5, what="member-2 gone")
    assert list(parties[0]) == ["member-0"]


# ---------------------------------------------------------------------------------------------
# SetPartitioner


class PartitionMember(object):
    """Drives one SetPartitioner the way kazoo's docs do, in a thread; `owned` is the set held
    while ACQUIRED (None otherwise); `history` every distinct set it acquired."""

    def __init__(self, zk, path, items, name):
        self.partitioner = zk.SetPartitioner(path, set=items, identifier=name,
                                             time_boundary=0.3, max_reaction_time=0.3)
        self.owned = None
        self.history = []
        self.stop = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        p = self.partitioner
        try:
            while not self.stop.is_set():
                if p.failed:
                    self.owned = None
                    return
                elif p.release:
                    self.owned = None
                    p.release_set()
                elif p.acquired:
                    owned = frozenset(p)
                    if owned != self.owned:
                        self.history.append(owned)
                    self.owned = owned
                    self.stop.wait(0.05)
                elif p.allocating:
                    p.wait_for_acquire(0.2)
        except Exception as e:  # surfaced by the test
            self.error = e

    def close(self):
        self.stop.set()
        self.thread.join(5)


def test_set_partitioner_disjoint_stable_and_rebalanced(clients, base):
    zks = clients(3)
    path = base + "/partition"
    items = set(range(9))
    members = [PartitionMember(zk, path, items, "w%d" % i) for i, zk in enumerate(zks)]
    try:

        def settled(ms):
            sets = [m.owned for m in ms]
            if any(s is None for s in sets) or any(m.error for m in ms):
                return None
            union = frozenset().union(*sets)
            disjoint = sum(len(s) for s in sets) == len(union)
            return sets if union == items and disjoint else None

        sets = wait_until(lambda: settled(members), timeout=15, what="3 members acquired")
        assert sorted(len(s) for s in sets) == [3, 3, 3]
        # Stable while the membership is: same sets, still ACQUIRED, a while later.
        time.sleep(0.8)
        assert [m.owned for m in members] == sets
        assert all(m.partitioner.acquired for m in members)

        # w1's session goes: the other two re-balance over all nine items.
        members[1].stop.set()
        zks[1].stop()
        rest = [members[0], members[2]]
        new = wait_until(lambda: settled(rest), timeout=15, what="2 members re-balanced")
        assert sorted(len(s) for s in new) == [4, 5]
        # One lock node per item, held by the survivors only.
        locks = zks[0].get_children(path + "/locks")
        assert sorted(locks) == sorted(str(i) for i in items)
        for m in members:
            assert m.error is None, m.error
    finally:
        for m in members:
            m.close()
        for m in (members[0], members[2]):
            m.partitioner.finish()


# ---------------------------------------------------------------------------------------------
# TreeCache


class TreeEvents(object):
    def __init__(self):
        self.q = queue.Queue()

    def __call__(self, event):
        data = event.event_data
        if data is None:
            self.q.put((event.event_type, None, None))
        else:
            self.q.put((event.event_type, data.path, data.data))

    def take(self, n, timeout=5.0):
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            try:
                out.append(self.q.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError("got %d of %d tree events: %r" % (len(out), n, out))
        return out

    def none_within(self, seconds=0.3):
        try:
            extra = self.q.get(timeout=seconds)
        except queue.Empty:
            return
        raise AssertionError("unexpected extra tree event %r" % (extra,))


ADDED, UPDATED, REMOVED, INITIALIZED = (TreeEvent.NODE_ADDED, TreeEvent.NODE_UPDATED,
                                        TreeEvent.NODE_REMOVED, TreeEvent.INITIALIZED)


def test_tree_cache_events_and_contents(clients, base):
    watcher, writer = clients(2)
    root = base + "/tree"
    writer.create(root + "/a/b", b"ab", makepath=True)
    writer.create(root + "/c", b"c")
    writer.set(root + "/a", b"a")
    cache = TreeCache(watcher, root)
    events = TreeEvents()
    cache.listen(events)
    cache.start()
    try:
        initial = events.take(5)
        # The pre-existing tree, then INITIALIZED once everything is loaded.
        assert initial[-1] == (INITIALIZED, None, None)
        assert sorted(initial[:-1]) == sorted([
            (ADDED, root, b""), (ADDED, root + "/a", b"a"), (ADDED, root + "/a/b", b"ab"),
            (ADDED, root + "/c", b"c")])
        assert sorted(cache.get_children(root)) == ["a", "c"]
        assert cache.get_data(root + "/a/b").data == b"ab"

        writer.create(root + "/a/b/deep", b"d1")
        assert events.take(1) == [(ADDED, root + "/a/b/deep", b"d1")]
        writer.set(root + "/a/b/deep", b"d2")
        assert events.take(1) == [(UPDATED, root + "/a/b/deep", b"d2")]
        writer.set(root + "/c", b"c2")
        assert events.take(1) == [(UPDATED, root + "/c", b"c2")]
        assert cache.get_data(root + "/a/b/deep").stat.version == 1
        writer.delete(root + "/a/b/deep")
        assert events.take(1) == [(REMOVED, root + "/a/b/deep", b"d2")]
        assert cache.get_children(root + "/a/b") == frozenset()
        assert cache.get_data(root + "/a/b/deep") is None

        # A subtree deleted in one multi: every node removed, children before parents.
        t = writer.transaction()
        t.delete(root + "/a/b")
        t.delete(root + "/a")
        t.commit()
        removed = events.take(2)
        assert sorted(removed) == [(REMOVED, root + "/a", b"a"), (REMOVED, root + "/a/b", b"ab")]
        assert cache.get_children(root) == frozenset(["c"])
        events.none_within(0.3)
    finally:
        cache.close()


# ---------------------------------------------------------------------------------------------
# ChildrenWatch / DataWatch


def test_data_watch_sees_every_change(clients, base):
    watcher, writer = clients(2)
    path = base + "/data"
    seen = queue.Queue()

    @watcher.DataWatch(path)
    def on_data(data, stat, event):
        seen.put((data, stat.version if stat else None, event.type if event else None))

    # First call: the node does not exist yet.
    assert seen.get(timeout=5) == (None, None, None)
    writer.create(path, b"v0", makepath=True)
    assert seen.get(timeout=5) == (b"v0", 0, "CREATED")
    for i in range(1, 5):
        # One change at a time: DataWatch reads the data when the one-shot watch fires, so
        # changes made before it re-registered would be coalesced.
        writer.set(path, b"v%d" % i)
        assert seen.get(timeout=5) == (b"v%d" % i, i, "CHANGED")
    writer.delete(path)
    assert seen.get(timeout=5) == (None, None, "DELETED")
    writer.create(path, b"again")
    assert seen.get(timeout=5) == (b"again", 0, "CREATED")


def test_data_watch_stops_when_callback_returns_false(clients, base):
    watcher, writer = clients(2)
    path = base + "/data"
    writer.create(path, b"0", makepath=True)
    seen = queue.Queue()

    def on_data(data, stat):
        seen.put(data)
        return data != b"1"

    watcher.DataWatch(path, on_data)
    assert seen.get(timeout=5) == b"0"
    writer.set(path, b"1")
    assert seen.get(timeout=5) == b"1"
    writer.set(path, b"2")
    with pytest.raises(queue.Empty):
        seen.get(timeout=0.3)


def test_children_watch_sees_every_change(clients, base):
    watcher, writer = clients(2)
    path = base + "/kids"
    writer.create(path, makepath=True)
    seen = queue.Queue()

    @watcher.ChildrenWatch(path, send_event=True)
    def on_children(children, event):
        seen.put((sorted(children), event.type if event else None))
        return True

    assert seen.get(timeout=5) == ([], None)
    writer.create(path + "/a")
    assert seen.get(timeout=5) == (["a"], "CHILD")
    writer.create(path + "/b", ephemeral=True)
    assert seen.get(timeout=5) == (["a", "b"], "CHILD")
    # A data change on a child or on the parent is not a children change.
    writer.set(path + "/a", b"x")
    writer.set(path, b"x")
    writer.create(path + "/q-", sequence=True)
    assert seen.get(timeout=5) == (["a", "b", "q-0000000002"], "CHILD")
    writer.delete(path + "/a")
    assert seen.get(timeout=5) == (["b", "q-0000000002"], "CHILD")
    writer.stop()  # the ephemeral child goes with the writer's session
    assert seen.get(timeout=5) == (["q-0000000002"], "CHILD")
    with pytest.raises(queue.Empty):
        seen.get(timeout=0.3)
