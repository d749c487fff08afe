"""The Pi build worker: job functions that `rq worker` runs, and nothing more."""
