"""Ingest: follow PyPI's event log into the catalogue and keep the build queues full."""
