"""The AI Orchestrator's cycle over the metric store: detect, assess, decide and heal.
Imports only monitoring; flows/orchestrate.py and serving/orchestrator run it."""
