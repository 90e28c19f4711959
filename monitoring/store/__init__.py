"""The metric store database: the engine opener, every table, the queries and the Alembic migrations.

Imports: monitoring.config, monitoring.samples, monitoring.sources (simulated incidents) and
monitoring.healing.actions (the audit table's records)."""
