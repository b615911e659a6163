"""Benchmark scripts; each prints JSON and writes its results under `benchmarks/results/`.

Importable (`from benchmarks import tables`) so that tests call them directly.
"""
