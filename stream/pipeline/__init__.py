"""The Faust pipeline: app, topics, tables, agents, worker, pages and metrics."""
