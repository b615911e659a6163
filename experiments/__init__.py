"""Command-line programs: training runs, dataset generation, the exact-tilt benchmark, plots.

Importable (`from experiments import run`) so that tests call their `main` directly.
"""
