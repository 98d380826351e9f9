"""zkpy.admin."""
