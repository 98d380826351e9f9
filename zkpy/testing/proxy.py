"""A TCP proxy on 127.0.0.1 that can cut, stall and heal a link: partitions between ensemble
members (zkpy.testing.ensemble's proxies=True) without touching the kernel's network.

Owns `Proxy` (one listening port forwarded to one target port, a thread per direction) and the
one thread that makes every proxy listen only while its target does. Imports nothing of zkpy;
only test code and zkpy.testing.ensemble use it. It does socket I/O and runs threads.
"""

import socket
import threading
import time


class Proxy:
    """Forward 127.0.0.1:listen_port to 127.0.0.1:target_port, a thread per direction.

    The proxy listens only while something listens on target_port (a shared watcher reads
    /proc/net/tcp{,6} every 20 ms), so a dialer sees "connection refused" where it would without
    the proxy: a proxy that accepted and then found nothing behind it would turn a refused connect
    into a connection that breaks after it was made, and Apache's learner treats those
    differently (it retries a refused connect to a new leader, but goes back to the election on a
    broken one, which cost a whole initLimit in a test).

    `cut()` closes every forwarded connection and refuses new ones (accepted and closed at once,
    so the dialer sees the link drop as it would on a crash of the far side); `heal()` forwards
    again. `close()` stops the proxy for good. `stall()` keeps the connections open but holds
    whatever arrives (a link that went silent); `unstall()` delivers it, `cut()` drops it.
    """

    def __init__(self, listen_port, target_port, name=None):
        self.listen_port = listen_port
        self.target_port = target_port
        self.name = name or "proxy %d->%d" % (listen_port, target_port)
        self._cut = False
        self._closed = False
        self._lock = threading.Lock()
        self._conns = set()           # (client socket, upstream socket)
        self._listener = None
        self.accepted = 0
        self._flowing = threading.Event()     # cleared while stalled
        self._flowing.set()
        # Hold the port from the start (free_port() picked it), even before the target listens.
        self._open_listener()
        _WATCHER.add(self)

    @property
    def is_cut(self):
        return self._cut

    def connections(self):
        with self._lock:
            return len(self._conns)

    def cut(self):
        with self._lock:
            self._cut = True
            conns = list(self._conns)
            self._conns.clear()
        for pair in conns:
            _close_pair(pair)
        self._flowing.set()      # a held chunk goes to a closed socket: dropped

    def heal(self):
        self._cut = False
        self._flowing.set()

    def stall(self):
        self._flowing.clear()

    def unstall(self):
        self._flowing.set()

    def close(self):
        _WATCHER.discard(self)
        with self._lock:
            self._closed = True
        self.cut()
        self._close_listener()

    # -- listening mirrors the target ---------------------------------------------------------
    def _target_listening(self, listening):
        with self._lock:
            if self._closed:
                return
            if listening and self._listener is None:
                try:
                    self._open_listener()
                except OSError:         # the port is busy for a moment: next round
                    self._listener = None
            elif not listening and self._listener is not None:
                self._close_listener()

    def _open_listener(self):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.listen_port))
        sock.listen(64)
        self._listener = sock
        threading.Thread(target=self._accept_loop, args=(sock,), name=self.name,
                         daemon=True).start()

    def _close_listener(self):
        sock, self._listener = self._listener, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept_loop(self, listener):
        while not self._closed:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if self._cut or self._closed:
                _close_pair((client,))
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2.0)
                upstream.settimeout(None)
            except OSError:
                _close_pair((client,))
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = (client, upstream)
            with self._lock:
                if self._cut:
                    _close_pair(pair)
                    continue
                self._conns.add(pair)
                self.accepted += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst, pair), daemon=True,
                                 name=self.name + " pump").start()

    def _pump(self, src, dst, pair):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self._flowing.wait()
                if self._cut:
                    break
                dst.sendall(data)
        except OSError:
            pass
        with self._lock:
            self._conns.discard(pair)
        _close_pair(pair)

    def __repr__(self):
        return "<Proxy %d->%d%s>" % (self.listen_port, self.target_port,
                                     " cut" if self._cut else "")


def listening_ports():
    """Local TCP ports in LISTEN state (any address), from /proc/net/tcp and tcp6."""
    ports = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if len(fields) > 3 and fields[3] == "0A":
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        except (OSError, StopIteration, ValueError):
            continue
    return ports


class _ListenWatcher:
    """One thread for every Proxy: opens or closes each proxy's listener as its target does."""

    INTERVAL = 0.02

    def __init__(self):
        self._proxies = set()
        self._lock = threading.Lock()
        self._thread = None

    def add(self, proxy):
        with self._lock:
            self._proxies.add(proxy)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="proxy listen watcher",
                                                daemon=True)
                self._thread.start()

    def discard(self, proxy):
        with self._lock:
            self._proxies.discard(proxy)

    def _run(self):
        while True:
            with self._lock:
                proxies = list(self._proxies)
            if proxies:
                up = listening_ports()
                for p in proxies:
                    p._target_listening(p.target_port in up)
            time.sleep(self.INTERVAL)


_WATCHER = _ListenWatcher()


def _close_pair(socks):
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            s.close()
        except OSError:
            pass
