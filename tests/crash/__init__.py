"""Crash and durability tests: real zkpy server processes killed with SIGKILL or stopped under load,
damaged log files."""
