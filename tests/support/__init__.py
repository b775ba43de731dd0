"""Helpers shared by the tests: test frames, child processes, crash checks."""
