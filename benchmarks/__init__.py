"""Speed and memory benchmarks: `python benchmarks/speed.py` (see benchmarks/README.md)."""
