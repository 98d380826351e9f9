"""What the three stages of the write pipeline and the core share: the clock, names, limits.

No state, no I/O (free_space asks the file system for a log line's figure only).
"""

import logging
import shutil
import time

from zkpy.proto import codec, consts

log = logging.getLogger("zkpy.server")

encode_reply = codec.encode_reply_frame
CONFIG_NODE = "/zookeeper/config"
APPLY_RETRY_S = 0.5   # while LMDB cannot be written: how often the waiting txns are retried
LOG_RETRY_S = 0.5     # an ensemble member's log that cannot be written: how often it is retried
CREATE_OPS = (consts.OP_CREATE, consts.OP_CREATE2, consts.OP_CREATE_CONTAINER,
              consts.OP_CREATE_TTL)
CREATE2_REPLY_OPS = (consts.OP_CREATE2, consts.OP_CREATE_CONTAINER, consts.OP_CREATE_TTL)


def now_ms():
    return int(time.time() * 1000)


def free_space(directory):
    """'N bytes free in <directory>', for the log lines of a full disk."""
    try:
        return "%d bytes free in %s" % (shutil.disk_usage(directory).free, directory)
    except OSError as e:
        return "free space of %s unknown: %s" % (directory, e)


def rw(client_flag):
    """The readOnly byte of a read-write server's ConnectResponse (None: the client sent none)."""
    return None if client_flag is None else False
