"""Benchmark protocols, figures in docs/benchmarks.md (``graphroute bench <name>``)."""
