"""``python -m scripts.bench [scenario...]``: the same as ``python scripts/bench/bench.py``."""

from scripts.bench.bench import main

main()
