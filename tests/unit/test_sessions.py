"""Session ids, passwords and expiry rounding (zkpy.server.sessions) against Java's own values.

The vectors below were computed once with this Java program (JDK 17, Debian zookeeper 3.8.0 jar;
`javac -cp /usr/share/java/zookeeper.jar SessVectors.java && java -cp \
/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-api.jar:. SessVectors`):

    import java.util.Random;

    public class SessVectors {
        static String hex(byte[] b) {
            StringBuilder s = new StringBuilder();
            for (byte x : b) s.append(String.format("%02x", x));
            return s.toString();
        }
        public static void main(String[] a) {
            long[] seeds = {0L, 1L, 42L, -1L, 0x123456789abcdefL, Long.MIN_VALUE};
            int[] lens = {16, 16, 7, 16, 16, 3};
            for (int i = 0; i < seeds.length; i++) {
                byte[] b = new byte[lens[i]];
                new Random(seeds[i]).nextBytes(b);
                System.out.println("random " + seeds[i] + " " + lens[i] + " " + hex(b));
            }
            // ZooKeeperServer.generatePasswd: new Random(id ^ superSecret).nextBytes(byte[16])
            long superSecret = 0XB3415C00L;
            long[] ids = {0x1a2136f6e530000L, 0x100000000000001L, -0x7fffffffffffffffL};
            for (long id : ids) {
                byte[] b = new byte[16];
                new Random(id ^ superSecret).nextBytes(b);
                System.out.println("passwd " + id + " " + hex(b));
            }
            // SessionTrackerImpl.initializeNextSessionId(id) with a fixed time
            long[] times = {0L, 1732550399501L, 0xffffffffffL, 0x10000000000L};
            long[] sids = {1L, 0L, 255L, 7L};
            for (long t : times) for (long id : sids) {
                long nextSid = (t << 24) >>> 8;
                nextSid = nextSid | (id << 56);
                if (nextSid == Long.MIN_VALUE) ++nextSid;  // CONTAINER_EPHEMERAL_OWNER
                System.out.println("sid " + t + " " + id + " " + nextSid);
            }
        }
    }
"""

import pytest

from zkpy.server import sessions
from zkpy.server.sessions import (SessionTable, initial_session_id, java_random_bytes,
                                  session_password)

RANDOM_VECTORS = [  # (seed, n, java.util.Random(seed).nextBytes(byte[n]) as hex)
    (0, 16, "60b420bb3851d9d47acb933dbe70399b"),
    (1, 16, "73d51abbd89cb8196f0efb6892f94d68"),
    (42, 7, "359d41baf78afe"),
    (-1, 16, "b36cd944c3228770172024039eff4b8c"),
    (0x123456789ABCDEF, 16, "3cf229ecd1e08678033419d5fb90eeb0"),
    (-(1 << 63), 3, "60b420"),
]

PASSWORD_VECTORS = [  # (session id, generatePasswd(id) as hex)
    (0x1A2136F6E530000, "6ff159bcd0b71ea265eff91b99f43d53"),
    (0x100000000000001, "054cc74a37327db215e702e20c73f005"),
    (-0x7FFFFFFFFFFFFFFF, "054cc74a37327db215e702e20c73f005"),
]

SESSION_ID_VECTORS = [  # (time_ms, server id, initializeNextSessionId)
    (0, 1, 72057594037927936),
    (0, 0, 0),
    (0, 255, -72057594037927936),
    (0, 7, 504403158265495552),
    (1732550399501, 1, 113544422981697536),
    (1732550399501, 0, 41486828943769600),
    (1732550399501, 255, -30570765094158336),
    (1732550399501, 7, 545889987209265152),
    (0xFFFFFFFFFF, 1, 144115188075790336),
    (0xFFFFFFFFFF, 0, 72057594037862400),
    (0xFFFFFFFFFF, 255, -65536),
    (0xFFFFFFFFFF, 7, 576460752303357952),
    (0x10000000000, 1, 72057594037927936),   # time bits above 40 fall off the top
    (0x10000000000, 0, 0),
    (0x10000000000, 255, -72057594037927936),
    (0x10000000000, 7, 504403158265495552),
]


@pytest.mark.parametrize("seed,n,expected", RANDOM_VECTORS)
def test_java_random_bytes_matches_java(seed, n, expected):
    assert java_random_bytes(seed, n).hex() == expected


def test_java_random_bytes_prefix_property():
    # nextBytes fills 4 bytes per next(32): a shorter array is a prefix of a longer one.
    for seed in (0, 7, -123456789):
        full = java_random_bytes(seed, 16)
        for n in range(17):
            assert java_random_bytes(seed, n) == full[:n]


@pytest.mark.parametrize("sid,expected", PASSWORD_VECTORS)
def test_session_password_matches_zookeeper(sid, expected):
    pw = session_password(sid)
    assert len(pw) == 16
    assert pw.hex() == expected


@pytest.mark.parametrize("t,server_id,expected", SESSION_ID_VECTORS)
def test_initial_session_id_matches_zookeeper(t, server_id, expected):
    assert initial_session_id(t, server_id) == expected


def test_session_id_layout():
    t = 1732550399501
    sid = initial_session_id(t, 1)
    u = sid & ((1 << 64) - 1)
    assert u >> 56 == 1                                   # server id in the top byte
    assert (u >> 16) & ((1 << 40) - 1) == t & ((1 << 40) - 1)  # low 40 bits of the time
    assert u & 0xFFFF == 0                                # counter space for this server's ids
    # The container marker 0x8000000000000000 is skipped, as in ZooKeeper.
    assert initial_session_id(0, 128) == -(1 << 63) + 1


def test_next_session_id_counts_up_from_initial():
    table = SessionTable(tick_ms=2000, server_id=1)
    first = table.next_session_id(1732550399501)
    assert first == initial_session_id(1732550399501, 1)
    # Later calls ignore the clock and just count.
    assert table.next_session_id(99) == first + 1
    assert table.next_session_id(1) == first + 2


@pytest.mark.parametrize("tick", [2000, 500, 3])
def test_deadline_rounds_up_to_the_next_tick(tick):
    table = SessionTable(tick_ms=tick)
    for now in (0, 1, tick - 1, tick, 12345, 10 ** 12 + 7):
        s = table.add(1, 4000, now)
        # SessionTrackerImpl.roundToNextInterval: (time / interval + 1) * interval
        assert s.deadline_ms == ((now + 4000) // tick + 1) * tick
        assert s.deadline_ms % tick == 0
        assert now + 4000 < s.deadline_ms <= now + 4000 + tick


def test_expiry_and_touch():
    table = SessionTable(tick_ms=1000)
    a = table.add(10, 3000, now_ms=500)      # 3500 -> 4000
    b = table.add(11, 3000, now_ms=1200)     # 4200 -> 5000
    assert (a.deadline_ms, b.deadline_ms) == (4000, 5000)
    assert table.expired(3999) == []
    assert table.expired(4000) == [a]
    assert table.touch(10, 3999)              # 6999 -> 7000
    assert a.deadline_ms == 7000
    assert sorted(s.session_id for s in table.expired(7000)) == [10, 11]
    a.closing = True                          # a close txn is on its way: no touch, no re-expiry
    assert not table.touch(10, 7000)
    assert table.expired(8000) == [b]
    assert not table.touch(12, 0)             # unknown session
    assert table.remove(11) is b
    assert table.get(11) is None
    assert table.expired(10 ** 9) == []


def test_super_secret_is_zookeepers():
    assert sessions.SUPER_SECRET == 0xB3415C00
