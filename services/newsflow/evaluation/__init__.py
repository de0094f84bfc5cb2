"""Quality evaluations against public benchmarks (read in place, never shipped)."""
