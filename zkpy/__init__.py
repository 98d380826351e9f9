"""zkpy: a ZooKeeper-compatible coordination service."""

__version__ = "0.1.0"
# Version string reported to clients (srvr/stat/envi); shaped like ZooKeeper's so tools parse it.
ZK_VERSION_STRING = "3.8.0-zkpy-%s, built on 2026-11-25 00:00 UTC" % __version__
