"""Runs benchmarks: hardware, models, measurement, worker processes, scheduler, events.

Knows nothing of DuckDB or Litestar: storage and web concerns come in through the
small protocols in :mod:`engine.ports`.
"""
