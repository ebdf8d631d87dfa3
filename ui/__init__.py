"""The web UI: a small Starlette server (ui/server.py) and a plain-JS page (ui/static/)."""
