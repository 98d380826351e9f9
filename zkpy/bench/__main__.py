"""python -m zkpy.bench: the zkpy-bench command (zkpy.bench.command)."""

import sys

from zkpy.bench.command import main

sys.exit(main())
