"""Anomaly detection: the streaming detector per series, its calibration, anomalies with a start
and an end, the per-service view and the `automatrix detect` files. Imports only monitoring."""
