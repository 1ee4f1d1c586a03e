"""Errors of the command line."""

from __future__ import annotations


class CliError(Exception):
    """A clear message for the person at the terminal; exit status 2."""
