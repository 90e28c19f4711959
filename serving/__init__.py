"""The Unified API v2 (FastAPI), its settings and the `automatrix` command line."""
