"""Metrics: pure functions in `functional`, result records in `mmunlearn.results`."""
