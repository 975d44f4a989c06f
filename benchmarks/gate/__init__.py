"""The benchmark regression gate: quality figures and speed ratios against a committed baseline.

``core`` compares a run with ``baseline.json`` and writes the table; ``figures`` computes the
figures (shared by the gate benchmarks and ``tests/test_gate.py``); ``history`` plots a figure
across saved runs. See the "Benchmark regression gate" section of the README.
"""
