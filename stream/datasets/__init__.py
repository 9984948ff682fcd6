"""Readers of the public data sets the evaluation and the demo replay."""
