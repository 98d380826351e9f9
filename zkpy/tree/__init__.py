"""zkpy.tree."""
