"""Alerts: the conditions the orchestrator finds (anomalies, failure risk, training, model health,
healing actions) as Alertmanager-style alerts, their delivery to Alertmanager and a JSON webhook,
and the store's record of each delivery. Imports monitoring only (and httpx at the edges)."""
