"""Command line, demo, replay, child processes and reports."""
