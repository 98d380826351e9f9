"""Crash and durability tests: real zkpy server processes killed with SIGKILL, damaged log files,
and crashfs (crashfs.py), a FUSE filesystem that simulates power cuts."""
