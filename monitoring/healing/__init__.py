"""Healing: action records, the pure policy that proposes them, the engine that runs them by mode,
and the executors usable from any process. Imports only monitoring."""
