"""The ensemble: leader election and atomic broadcast (Zab)."""
