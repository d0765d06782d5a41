"""Persistence: SQLAlchemy models and repositories, and the batched telemetry sink."""
