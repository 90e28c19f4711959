"""Helpers shared by the tests (fakes, sample data, servers and processes to start, waits); fixtures live in the conftest.py files."""
