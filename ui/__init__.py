"""The web UI (its own issue fills this package)."""
