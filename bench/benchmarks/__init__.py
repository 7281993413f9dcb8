"""Benchmark scripts: ``python -m bench.benchmarks.<name>`` (measurements, not tests)."""
