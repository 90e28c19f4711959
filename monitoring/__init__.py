"""The core, the bottom floor: settings, the metric store, sources, NeuroWeaver, anomaly detection,
assessments (failure risk, forecasting, scaling), healing and the orchestrator cycle.

Imports: the standard library and third-party libraries; never serving, flows, fastapi, starlette
or prefect (an import-linter contract in pyproject.toml holds it)."""
