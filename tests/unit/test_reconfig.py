"""zkpy.quorum.reconfig: the /zookeeper/config text and what a reconfig request makes of it.
Expected texts and error codes are what Apache ZooKeeper 3.8 answered to the same requests."""

import pytest

from zkpy import errors
from zkpy.config import parse_server_spec
from zkpy.errors import ZkError
from zkpy.quorum import reconfig


def members(*specs):
    return {sid: parse_server_spec(sid, v) for sid, v in specs}


THREE = members((1, "127.0.0.1:42222:42223"), (2, "127.0.0.1:43333:43334"),
                (3, "127.0.0.1:44444:44445"))


def test_text_is_zookeepers():
    assert reconfig.config_text(THREE, 0x100000000) == (
        "server.1=127.0.0.1:42222:42223:participant\n"
        "server.2=127.0.0.1:43333:43334:participant\n"
        "server.3=127.0.0.1:44444:44445:participant\n"
        "version=100000000")


def test_parse_round_trip():
    text = reconfig.config_text(THREE, 0x100000004)
    version, servers = reconfig.parse_config_text(text)
    assert version == 0x100000004 and reconfig.same_membership(servers, THREE)
    with pytest.raises(ValueError):
        reconfig.parse_config_text("version=1")
    with pytest.raises(ValueError):
        reconfig.parse_config_text("server.x=1")


def test_remove_and_add_incrementally():
    two = reconfig.plan(THREE, 5, None, "3", None, -1)
    assert sorted(two) == [1, 2]
    back = reconfig.plan(two, 6, "server.3=127.0.0.1:44444:44445:participant;42183", None,
                         None, -1)
    assert reconfig.config_text(back, 7).split("\n")[2] == \
        "server.3=127.0.0.1:44444:44445:participant;0.0.0.0:42183"
    observer = reconfig.plan(THREE, 5, "server.4=h:1:2:observer", None, None, 5)
    assert reconfig.voters_of(observer) == {1, 2, 3}


def test_new_members_replace_all():
    new = reconfig.plan(THREE, 5, None, None, "server.1=a:1:2,server.5=b:3:4", -1)
    assert sorted(new) == [1, 5]


@pytest.mark.parametrize("joining, leaving, cur, code", [
    (None, "2", 5, errors.BADVERSION),            # curConfigId is not the current version
    ("server.9=bad", None, -1, errors.BADARGUMENTS),
    (None, "1,2", -1, errors.BADARGUMENTS),       # would leave a single voter
    (None, "x", -1, errors.MARSHALLINGERROR),     # NumberFormatException in ZooKeeper
    ("server.x=h:1:2", None, -1, errors.MARSHALLINGERROR),
])
def test_refusals(joining, leaving, cur, code):
    with pytest.raises(ZkError) as e:
        reconfig.plan(THREE, 0x100000004, joining, leaving, None, cur)
    assert e.value.code == code


def test_multi_address_members():
    spec = "server.4=127.0.0.2:1:2|127.0.0.1:3:4:participant;42184"
    with pytest.raises(ZkError) as e:
        reconfig.plan(THREE, 5, spec, None, None, -1)
    assert e.value.code == errors.BADARGUMENTS and "multiAddress.enabled" in str(e.value)
    four = reconfig.plan(THREE, 5, spec, None, None, -1, multi_address=True)
    text = reconfig.config_text(four, 6)
    assert text.split("\n")[3] == \
        "server.4=127.0.0.1:3:4|127.0.0.2:1:2:participant;0.0.0.0:42184"
    version, servers = reconfig.parse_config_text(text)
    assert version == 6 and reconfig.same_membership(servers, four)
