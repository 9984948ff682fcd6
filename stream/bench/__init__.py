"""``streamrank bench``: benchmarks that print figures (they assert nothing; tests do).

Each benchmark is a module with ``HELP`` (one line), ``DESCRIPTION``, ``add_arguments(parser)``
and ``run(args, settings) -> exit code``; listing it in :data:`BENCHMARKS` adds the subcommand
``streamrank bench <name>``. Modules are imported only to build the parser and run, and import
their heavy dependencies (torch, models, Kafka clients) inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from stream.config import Settings

# Subcommand name -> module implementing it.
BENCHMARKS: dict[str, str] = {
    "batch": "stream.bench.batch",
    "codecs": "stream.bench.codecs",
    "encoder": "stream.bench.encoder",
    "stream": "stream.bench.stream",
}


def add_bench_parser(sub: Any) -> None:
    """Add ``bench`` and one subcommand per benchmark to the CLI's subparsers."""
    bench = sub.add_parser("bench", help="run a benchmark and print its figures")
    bench_sub = bench.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name, module_name in BENCHMARKS.items():
        module = importlib.import_module(module_name)
        parser: argparse.ArgumentParser = bench_sub.add_parser(
            name, help=module.HELP.replace("%", "%%"), description=module.DESCRIPTION
        )
        module.add_arguments(parser)


def run_bench(args: argparse.Namespace, settings: Settings) -> int:
    """Run the benchmark named by ``args.benchmark``; returns the exit code."""
    module = importlib.import_module(BENCHMARKS[args.benchmark])
    return int(module.run(args, settings))
