"""Benchmark scripts (run each as ``python bench/<name>.py``) and what they share (:mod:`bench.report`)."""
