"""The benchmarks (not shipped: pyproject.toml excludes this package, since they drive clusters with
the ``tests`` helpers). Run from the repository: ``python -m scripts.bench [scenario...]`` or
``python scripts/bench/bench.py``; docs/PERFORMANCE.md lists the commands and the figures."""
