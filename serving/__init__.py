"""The outer floor: the Unified API v2 (FastAPI) by feature, its settings and the `automatrix` command.

The root holds only the app (app.py), the serving settings and the shared state. Imports: flows,
monitoring, routing and any library; nothing imports serving."""
