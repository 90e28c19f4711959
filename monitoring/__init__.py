"""Metric store, metric sources, NeuroWeaver and the orchestrator's detection, forecasting, scaling and healing."""
