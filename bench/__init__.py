"""The benchmark suite (`./run bench`): see bench/suite.py and the README's Benchmarks section."""
