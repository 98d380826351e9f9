"""Error codes and the exception tree.

Owns ZooKeeper's KeeperException.Code values and the exceptions the pure layers raise.
Imports nothing from zkpy; everyone may import it.
"""

# KeeperException.Code (apache/zookeeper KeeperException.java)
OK = 0
SYSTEMERROR = -1
RUNTIMEINCONSISTENCY = -2
DATAINCONSISTENCY = -3
CONNECTIONLOSS = -4
MARSHALLINGERROR = -5
UNIMPLEMENTED = -6
OPERATIONTIMEOUT = -7
BADARGUMENTS = -8
UNKNOWNSESSION = -12
NEWCONFIGNOQUORUM = -13
RECONFIGINPROGRESS = -14
APIERROR = -100
NONODE = -101
NOAUTH = -102
BADVERSION = -103
NOCHILDRENFOREPHEMERALS = -108
NODEEXISTS = -110
NOTEMPTY = -111
SESSIONEXPIRED = -112
INVALIDCALLBACK = -113
INVALIDACL = -114
AUTHFAILED = -115
SESSIONMOVED = -118
NOTREADONLY = -119
EPHEMERALONLOCALSESSION = -120
NOWATCHER = -121
REQUESTTIMEOUT = -122
RECONFIGDISABLED = -123
SESSIONCLOSEDREQUIRESASLAUTH = -124
QUOTAEXCEEDED = -125
THROTTLEDOP = -127

CODE_NAMES = {v: k for k, v in list(globals().items()) if k.isupper() and isinstance(v, int)}


class ZkpyError(Exception):
    """Base of every zkpy exception."""


class ZkError(ZkpyError):
    """A request error: an ordinary answer carrying a ZooKeeper error code."""

    def __init__(self, code, message=""):
        self.code = code
        super().__init__(message or CODE_NAMES.get(code, str(code)))


class ClientProtocolError(ZkpyError):
    """The peer sent bytes that break the protocol; close its connection, keep serving others."""


class ConfigError(ZkpyError):
    """A bad configuration value; names the key and the line."""

    def __init__(self, message, key=None, line=None, path=None):
        self.key = key
        self.line = line
        self.path = path
        where = ""
        if path is not None:
            where = "%s" % path
            if line is not None:
                where += ":%d" % line
            where += ": "
        super().__init__(where + message)


class StorageCorruptError(ZkpyError):
    """Persistent state is corrupt (a bad record followed by good ones, a bad header)."""


class LogAppendError(ZkpyError):
    """A transaction-log append failed (ENOSPC, EDQUOT, EIO on write or fdatasync) and the log
    was cut back to its size before that batch: none of the batch is in the log, the log takes
    the next append. ``error`` is the OSError, ``directory`` the log directory."""

    def __init__(self, directory, error):
        self.directory = directory
        self.error = error
        super().__init__("cannot write the transaction log in %s: %s"
                         % (directory, error.strerror or error))


class StorageFullError(ZkpyError):
    """Startup cannot write the database (the LMDB map or dataDir is full): the message says
    which key or directory to change."""
