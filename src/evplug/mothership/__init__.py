"""The server runtime around the core: ingest, plug registry, effects, hydration."""
