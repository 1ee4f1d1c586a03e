"""Fixtures of the delivery tests (registered by conftest's pytest_plugins)."""
