"""Fixtures of the verification tests (registered by conftest's pytest_plugins)."""
