"""Where metric samples come from: the simulator, Prometheus and CSV files."""
