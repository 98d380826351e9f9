"""zkpy.cli."""
