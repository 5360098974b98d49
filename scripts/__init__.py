"""Developer tools: ``sync-observer`` (scripts/observer/, shipped) and the benchmarks (scripts/bench/,
run from the repository, not shipped)."""
