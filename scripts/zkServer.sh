#!/usr/bin/env bash
# zkServer.sh-compatible wrapper: zkServer.sh [--config <conf-dir>] {start|start-foreground|stop|restart|status|version|print-cmd} [CFG]
exec python3 -m zkpy.cli.server "$@"
