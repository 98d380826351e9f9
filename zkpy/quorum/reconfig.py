"""Dynamic reconfiguration, pure: the membership text of /zookeeper/config and what a reconfig
request makes of it (ZooKeeper 3.5+ PrepRequestProcessor "case OpCode.reconfig").

The membership is a dict {sid: zkpy.config.ServerSpec}; its text is what ZooKeeper stores in
/zookeeper/config and in zoo.cfg.dynamic.<version>: one `server.N=host:quorumPort:electionPort:role
[;clientAddr:clientPort]` line per server (several `|`-joined
address pairs with multiAddress.enabled), in id order, then `version=<hex>`, where the version is
the zxid of the txn that made the membership (no trailing newline).
"""

from zkpy import errors
from zkpy.config import (ROLE_PARTICIPANT, ConfigError, membership_text, parse_dynamic_config,
                         parse_server_spec)
from zkpy.errors import ZkError

CONFIG_NODE = "/zookeeper/config"


def config_text(servers, version, groups=None, weights=None):
    return membership_text(servers, version, groups, weights)


def parse_config_text(text):
    """(version, servers) of a /zookeeper/config text; ValueError when it is not one."""
    try:
        # The leader checked every line against multiAddress.enabled before it committed them.
        version, servers = parse_dynamic_config(text, CONFIG_NODE, multi_address=True)
    except ConfigError as e:
        raise ValueError(str(e))
    if not servers:
        raise ValueError("no server lines")
    return version or 0, servers


def voters_of(servers):
    return {sid for sid, s in servers.items() if s.role == ROLE_PARTICIPANT}


def same_membership(a, b):
    return {k: v.to_config_value() for k, v in a.items()} == \
        {k: v.to_config_value() for k, v in b.items()}


def _bad(message):
    return ZkError(errors.BADARGUMENTS, message)


def _parse_specs(text, multi_address):
    """'server.1=h:p:e;c,server.2=...' (comma or newline separated) -> {sid: ServerSpec}."""
    out = {}
    for item in text.replace("\n", ",").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.startswith("server."):
            raise _bad("not a server spec: %r" % item)
        try:
            sid = int(key[len("server."):])
        except ValueError:
            # ZooKeeper's prep fails with a NumberFormatException: MARSHALLINGERROR.
            raise ZkError(errors.MARSHALLINGERROR, "not a server id: %r" % key)
        try:
            out[sid] = parse_server_spec(sid, value.strip(), key, multi_address=multi_address)
        except (ValueError, ConfigError) as e:
            raise _bad("bad server spec %r: %s" % (item, e))
    return out


def plan(servers, version, joining, leaving, new_members, cur_config_id, hierarchical=False,
         multi_address=False):
    """The membership a ReconfigRequest asks for; raises ZkError as ZooKeeper answers:
    BADVERSION when curConfigId (not -1) is not the current version, MARSHALLINGERROR for a
    server id that is not a number, BADARGUMENTS for specs that do not parse or a result with
    fewer than 2 voters (ZooKeeper will not reconfigure an
    ensemble into a standalone server)."""
    if cur_config_id != -1 and cur_config_id != version:
        raise ZkError(errors.BADVERSION, "reconfiguration from version %x failed -- last seen "
                      "version is %x" % (cur_config_id, version))
    if hierarchical:
        # ZooKeeper refuses an incremental change of a hierarchical quorum system the same way;
        # a non-incremental one (new members with group/weight lines) zkpy does not do either.
        raise _bad("Incremental reconfiguration requested but last configuration seen has a "
                   "non-majority quorum system" if not new_members else
                   "zkpy does not reconfigure hierarchical quorums (group.N / weight.N)")
    if new_members:
        new = _parse_specs(new_members, multi_address)
    else:
        new = dict(servers)
        for item in (leaving or "").split(","):
            item = item.strip()
            if item:
                try:
                    new.pop(int(item), None)
                except ValueError:
                    raise ZkError(errors.MARSHALLINGERROR, "not a server id: %r" % item)
        new.update(_parse_specs(joining or "", multi_address))
    if len(voters_of(new)) < 2:
        raise _bad("a reconfig must leave at least 2 voting members (standaloneEnabled)")
    return new
