"""Prefect flows and tasks: thin orchestration of ingestion, training and the orchestrator."""
