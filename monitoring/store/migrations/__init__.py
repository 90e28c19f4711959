"""Alembic's environment and revisions for the metric store; a package, so that import-linter sees env.py."""
