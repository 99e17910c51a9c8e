"""Performance benchmarks: engine speed, editing replay, and same-run baselines (ratios)."""
