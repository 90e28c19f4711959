"""Models over the Open Inference Protocol (V2 REST): the `/v2` router, the infer fast path, the
pure tensor codec (JSON and the binary tensor data extension), the model adapters (NeuroWeaver's
champion and any registered version), and `GET /api/v2/models`, the catalog of every registered
model. It may import `monitoring/` and the rest of `serving/`; nothing in `serving/` but `app.py`
imports it.
"""
