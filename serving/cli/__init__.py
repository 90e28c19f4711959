"""The `automatrix` command line (commands.py) and `automatrix up`, every process of the platform
started in order and stopped together (platform.py)."""
