"""Crash and durability tests: real zkpy server processes killed with SIGKILL or stopped under load,
damaged log files, full and slow disks, and power cuts on crashfs (crashfs.py), a FUSE filesystem
that simulates them."""
