"""Quotas kept in the tree under /zookeeper/quota (Quotas.java, StatsTrack.java). Pure.

Owns the `count=..,bytes=..[=;byteHardLimit=..;countHardLimit=..]` text of the
zookeeper_limits / zookeeper_stats nodes, finding the quota'd prefix of a path, keeping the
stats node current (DataTree.updateQuotaStat / updateQuotaForPath) and the limit check of
ZooKeeperServer.checkQuota. Imported by zkpy.tree.datatree (apply and prep) and tests.

ZooKeeper keeps the quota'd prefixes in a trie rebuilt from the tree; here a view lookup of
/zookeeper/quota/<ancestor>/zookeeper_limits per ancestor gives the same answer from the tree
alone, so the prep overlay, the LMDB write txn and replay all agree.

No quota at all (/zookeeper/quota without children) is the common case and costs O(1): a view
with a `quota_free` attribute keeps the answer of its first lookup there (True), and resets it
to False (unknown) itself whenever /zookeeper/quota is put in it (a child of it created or
deleted) or its base changes (see LmdbTree's views and PendingOverlay). True implies that no
node under /zookeeper/quota exists in the view; views without the attribute look it up each time.
"""

from zkpy import errors
from zkpy.errors import ZkError

QUOTA_ROOT = "/zookeeper/quota"
LIMIT_NODE = "zookeeper_limits"
STAT_NODE = "zookeeper_stats"

COUNT = "count"
BYTES = "bytes"
COUNT_HARD = "countHardLimit"
BYTES_HARD = "byteHardLimit"


def limit_path(prefix):
    return QUOTA_ROOT + prefix + "/" + LIMIT_NODE


def stat_path(prefix):
    return QUOTA_ROOT + prefix + "/" + STAT_NODE


def trim_quota_path(quota_path):
    """/zookeeper/quota/a/b -> /a/b (Quotas.trimQuotaPath)."""
    return quota_path[len(QUOTA_ROOT):]


def parse(data):
    """StatsTrack(String): {key: int}; pairs split on "," or ";", an empty value is -1.

    Java throws on a malformed pair; apply must never fail on a txn, so such pairs are skipped.
    """
    stats = {}
    if not data:
        return stats
    text = data.decode("utf-8", "replace") if isinstance(data, (bytes, bytearray)) else data
    for pair in text.replace(";", ",").split(","):
        if not pair:
            continue
        kv = pair.split("=")
        while len(kv) > 1 and kv[-1] == "":
            kv.pop()  # Java's split drops trailing empty strings ("bytes=5=")
        if len(kv) < 2:
            if len(kv) == 1 and pair.endswith("="):
                stats[kv[0]] = -1
            continue
        try:
            stats[kv[0]] = int(kv[1]) if kv[1] else -1
        except ValueError:
            continue
    return stats


def get(stats, key):
    return stats.get(key, -1)


def format_stats(stats):
    """StatsTrack.toString as bytes: count and bytes first, then "=" and ";key=value" sorted."""
    out = "%s=%d,%s=%d" % (COUNT, get(stats, COUNT), BYTES, get(stats, BYTES))
    rest = sorted(k for k in stats if k not in (COUNT, BYTES))
    if rest:
        out += "=" + "".join(";%s=%d" % (k, stats[k]) for k in rest)
    return out.encode("utf-8")


def no_quota(view):
    """True when no quota exists in `view` (/zookeeper/quota has no children)."""
    if getattr(view, "quota_free", False):
        return True
    root = view.get(QUOTA_ROOT)
    if root is None or root.num_children == 0:
        if hasattr(view, "quota_free"):
            view.quota_free = True
        return True
    return False


def max_prefix_with_quota(view, path):
    """The deepest ancestor-or-self of `path` that has a limits node, or None (never "/")."""
    if getattr(view, "quota_free", False) or path == "/" or not path.startswith("/"):
        return None
    if no_quota(view):
        return None  # no quota anywhere: the common case
    p = path
    while p:
        if view.get(limit_path(p)) is not None:
            return p
        p = p[:p.rfind("/")]
    return None


def update_stats(view, prefix, bytes_diff, count_diff):
    """Add the diffs to the stats node of `prefix` (DataTree.updateQuotaStat): data only, its
    Stat (version, mzxid) stays as ZooKeeper leaves it."""
    path = stat_path(prefix)
    node = view.get(path)
    if node is None:
        return  # ZooKeeper logs "Missing node for stat" and goes on
    stats = parse(node.data)
    stats[COUNT] = get(stats, COUNT) + count_diff
    stats[BYTES] = get(stats, BYTES) + bytes_diff
    node = node.copy()
    node.data = format_stats(stats)
    view.put(path, node)


def subtree_counts(view, path):
    """(count of nodes incl. `path`, bytes of their data) (DataTree.getCounts)."""
    count = nbytes = 0
    stack = [path]
    while stack:
        p = stack.pop()
        node = view.get(p)
        if node is None:
            continue
        count += 1
        nbytes += len(node.data) if node.data is not None else 0
        for name in view.get_children(p):
            stack.append((p if p != "/" else "") + "/" + name)
    return count, nbytes


def init_stats(view, prefix):
    """The stats node of `prefix` was just created: set it to the subtree's totals
    (DataTree.updateQuotaForPath). Views without child lists (the prep overlay) leave the data
    the client wrote and say so (`inexact()`, if they have it); the committed tree and replay
    always compute it."""
    if not hasattr(view, "get_children"):
        inexact = getattr(view, "inexact", None)
        if inexact is not None:
            inexact()
        return
    path = stat_path(prefix)
    node = view.get(path)
    if node is None:
        return
    count, nbytes = subtree_counts(view, prefix)
    node = node.copy()
    node.data = format_stats({COUNT: count, BYTES: nbytes})
    view.put(path, node)


def on_create(view, path, data):
    """Quota bookkeeping after `path` was created with `data` (handleQuotaAndWatchesOnCreate)."""
    if getattr(view, "quota_free", False):
        return  # nothing under /zookeeper/quota: neither a stats node nor a quota'd prefix
    if path.startswith(QUOTA_ROOT + "/") and path.endswith("/" + STAT_NODE):
        init_stats(view, trim_quota_path(path[:-len(STAT_NODE) - 1]))
    prefix = max_prefix_with_quota(view, path)
    if prefix is not None:
        update_stats(view, prefix, len(data) if data is not None else 0, 1)


def on_delete(view, path, node):
    """After `path` (which held `node`) was deleted; a deleted limits node ends its quota."""
    if getattr(view, "quota_free", False):
        return
    prefix = max_prefix_with_quota(view, path)
    if prefix is not None:
        update_stats(view, prefix, -(len(node.data) if node.data is not None else 0), -1)


def on_set_data(view, path, old_data, new_data):
    if getattr(view, "quota_free", False):
        return
    prefix = max_prefix_with_quota(view, path)
    if prefix is not None:
        update_stats(view, prefix, (len(new_data) if new_data is not None else 0)
                     - (len(old_data) if old_data is not None else 0), 0)


def check(view, path, bytes_diff, count_diff, warn=None):
    """ZooKeeperServer.checkQuota for a write adding the diffs under `path`.

    Returns the "Quota exceeded: ..." messages ZooKeeper logs (soft and hard), each also passed
    to `warn` if given; raises ZkError QUOTAEXCEEDED when a hard limit is crossed. Only called when enforceQuota is on, as in
    ZooKeeper, where soft limits are logged only then too.
    """
    prefix = max_prefix_with_quota(view, path)
    if prefix is None:
        return []
    node = view.get(limit_path(prefix))
    if node is None:
        return []
    limits = parse(node.data)
    check_count = count_diff != 0 and (get(limits, COUNT) > -1 or get(limits, COUNT_HARD) > -1)
    check_bytes = bytes_diff != 0 and (get(limits, BYTES) > -1 or get(limits, BYTES_HARD) > -1)
    if not check_count and not check_bytes:
        return []
    snode = view.get(stat_path(prefix))
    if snode is None:
        return []
    current = parse(snode.data)
    messages = []
    if check_count:
        new = get(current, COUNT) + count_diff
        hard = get(limits, COUNT_HARD) > -1
        limit = get(limits, COUNT_HARD) if hard else get(limits, COUNT)
        if new > limit:
            messages.append("Quota exceeded: %s [current count=%d, %sCountLimit=%d]"
                            % (prefix, new, "hard" if hard else "soft", limit))
            if warn is not None:
                warn(messages[-1])
            if hard:
                raise ZkError(errors.QUOTAEXCEEDED, messages[-1])
    if check_bytes:
        new = get(current, BYTES) + bytes_diff
        hard = get(limits, BYTES_HARD) > -1
        limit = get(limits, BYTES_HARD) if hard else get(limits, BYTES)
        if new > limit:
            messages.append("Quota exceeded: %s [current bytes=%d, %sByteLimit=%d]"
                            % (prefix, new, "hard" if hard else "soft", limit))
            if warn is not None:
                warn(messages[-1])
            if hard:
                raise ZkError(errors.QUOTAEXCEEDED, messages[-1])
    return messages
