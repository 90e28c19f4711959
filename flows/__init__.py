"""Prefect flows and tasks: thin orchestration of ingestion, training and the orchestrator, plus
the HTTP client the orchestration flow drives RelayCore through (relaycore_client.py).

Entrypoints are named in prefect.yaml. Imports: monitoring, routing, prefect and libraries; never
serving (the computation lives in monitoring/)."""
