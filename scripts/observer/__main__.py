"""``python -m scripts.observer``: the same as ``sync-observer``."""

from scripts.observer.cli import main

main()
