"""Benchmark machinery behind ``benchmarks/run.py``: FLOP counting, timing, memory, device peaks, reports."""
