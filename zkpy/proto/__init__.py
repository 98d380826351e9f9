"""Wire layer: jute records, codec and framing. No I/O."""
