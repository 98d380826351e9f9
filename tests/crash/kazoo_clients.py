"""The kazoo client helpers every crash test uses: start one, stop and close one."""


def client(hosts, timeout=10.0, start_timeout=15.0, **kw):
    """A started KazooClient on `hosts` (session timeout `timeout` s)."""
    from kazoo.client import KazooClient

    c = KazooClient(hosts=hosts, timeout=timeout, **kw)
    c.start(timeout=start_timeout)
    return c


def close(c):
    """Stop (closeSession if connected) and close, whatever state the client is in."""
    try:
        c.stop()
    finally:
        c.close()
