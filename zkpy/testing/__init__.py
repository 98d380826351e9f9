"""zkpy.testing."""
