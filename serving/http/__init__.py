"""HTTP plumbing: middleware, the API key, rate limits, structured logs, and liveness, readiness
and Prometheus metrics."""
