"""Benchmark protocols of GUIDE §5 (``graphroute bench <name>``)."""
