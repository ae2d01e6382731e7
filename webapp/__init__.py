"""Litestar app, JSON API, pages and CLI: the only place that wires engine and storage."""
