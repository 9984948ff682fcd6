"""Offline and online evaluation of the ranking on real data."""
