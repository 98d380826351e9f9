"""zkpy.server."""
