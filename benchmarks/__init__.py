"""Benchmarks that measure one part of newsflow in isolation (``python -m benchmarks.NAME``)."""
