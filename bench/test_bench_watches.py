"""Micro-benchmarks of the watch tables (zkpy.tree.watches.WatchManager) and of event fan-out.

Fan-out is measured three ways: trigger() alone (taking the one-shot watcher set), trigger() plus
delivery the way Core/Connection do it today (Connection.send_event encodes the notification once
per watcher), and trigger() plus delivery with the frame encoded once per event and shared.
Delivery appends to a list instead of a transport, so only zkpy's own work is timed.
"""

import pytest

from zkpy.proto import codec, consts
from zkpy.tree.watches import WatchManager

PATH = "/app/config/service-00042"
ZXID = 0x100000034
N_WATCHERS = 1000


class _Watcher(object):
    """Stands in for a Connection: send_event mirrors zkpy.server.connection.Connection."""

    __slots__ = ("out",)

    def __init__(self, out):
        self.out = out

    def send_event(self, zxid, event_type, path):
        body = codec.encode_notification(zxid, event_type, consts.STATE_SYNC_CONNECTED, path)
        self.out.append(len(body).to_bytes(4, "big") + body)


def _fanout_setup(wm, watchers):
    def setup():
        for w in watchers:
            wm.add_data(PATH, w)
        return (), {}
    return setup


@pytest.mark.benchmark(group="watches-fanout")
def test_trigger_1000_watchers(benchmark):
    """trigger() of a path watched by 1000 watchers (returns and removes the set)."""
    wm = WatchManager()
    watchers = [_Watcher([]) for _ in range(N_WATCHERS)]
    fired = benchmark.pedantic(lambda: wm.trigger(consts.EVENT_NODE_DATA_CHANGED, PATH),
                               setup=_fanout_setup(wm, watchers), rounds=200)
    assert len(fired) == N_WATCHERS and wm.count() == 0


@pytest.mark.benchmark(group="watches-fanout")
def test_trigger_and_deliver_1000_per_watcher_encode(benchmark):
    """trigger() + send_event to each of 1000 watchers, encoding per watcher (as Core does now)."""
    wm = WatchManager()
    out = []
    watchers = [_Watcher(out) for _ in range(N_WATCHERS)]

    def run():
        out.clear()
        for w in wm.trigger(consts.EVENT_NODE_DATA_CHANGED, PATH):
            w.send_event(ZXID, consts.EVENT_NODE_DATA_CHANGED, PATH)

    benchmark.pedantic(run, setup=_fanout_setup(wm, watchers), rounds=100)
    assert len(out) == N_WATCHERS and len(set(out)) == 1


@pytest.mark.benchmark(group="watches-fanout")
def test_trigger_and_deliver_1000_shared_frame(benchmark):
    """trigger() + delivery of one frame encoded once per event (a possible optimisation)."""
    wm = WatchManager()
    out = []
    watchers = [_Watcher(out) for _ in range(N_WATCHERS)]

    def run():
        out.clear()
        fired = wm.trigger(consts.EVENT_NODE_DATA_CHANGED, PATH)
        if fired:
            body = codec.encode_notification(ZXID, consts.EVENT_NODE_DATA_CHANGED,
                                             consts.STATE_SYNC_CONNECTED, PATH)
            frame = len(body).to_bytes(4, "big") + body
            for w in fired:
                w.out.append(frame)

    benchmark.pedantic(run, setup=_fanout_setup(wm, watchers), rounds=100)
    assert len(out) == N_WATCHERS


@pytest.mark.benchmark(group="watches-table")
def test_add_1000_watchers_one_path(benchmark):
    """add_data of 1000 watchers on one path (what 1000 getData(watch=True) calls do)."""
    wm = WatchManager()
    watchers = [object() for _ in range(N_WATCHERS)]

    def setup():
        wm.data.clear()
        return (), {}

    def run():
        add = wm.add_data
        for w in watchers:
            add(PATH, w)

    benchmark.pedantic(run, setup=setup, rounds=200)
    assert wm.count() == N_WATCHERS


@pytest.mark.benchmark(group="watches-table")
def test_add_watch(benchmark):
    """One add_data (repeated on a table of 1000 watched paths; the set add is idempotent)."""
    wm = WatchManager()
    for i in range(1000):
        wm.add_data("/p/%04d" % i, i)
    w = object()
    benchmark(wm.add_data, "/p/0500", w)
    assert w in wm.data["/p/0500"]


@pytest.mark.benchmark(group="watches-table")
def test_remove_watcher_1000_paths(benchmark):
    """remove_watcher (a connection closing) of a watcher on 10 paths, in tables holding 1000
    data + 1000 child watched paths of other watchers: the cost is a scan of every path."""
    wm = WatchManager()
    for i in range(1000):
        wm.add_data("/p/%04d" % i, i)
        wm.add_child("/p/%04d" % i, i)
    target = object()

    def setup():
        for i in range(0, 1000, 100):
            wm.add_data("/p/%04d" % i, target)
            wm.add_child("/p/%04d" % i, target)
        return (target,), {}

    benchmark.pedantic(wm.remove_watcher, setup=setup, rounds=200)
    assert wm.count() == 2000
