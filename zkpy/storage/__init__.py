"""zkpy.storage."""
