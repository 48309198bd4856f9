"""Notebook tests: the three notebooks executed headless, and the helpers they call."""
