"""Crash and durability tests: real zkpy server processes killed with SIGKILL, damaged log files."""
