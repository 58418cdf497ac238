"""Building blocks of the traffic simulator; `src.data.simulate` is the public entry point."""
