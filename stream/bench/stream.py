"""``streamrank bench stream``: events/s per worker, the broker's ceiling, latency under load.

All phases run on one broker (the embedded one unless ``--bootstrap`` is given) with fresh
topics and a fresh app id, real MovieLens events and the real model:

1. setup (not measured): start the workers, publish the catalog, wait until every worker
   holds all item vectors, process a warm-up chunk of events;
2. ceiling: the workers are stopped and the same backlog of events goes through a raw
   aiokafka consume -> produce pass-through (no decoding, no state): what the broker and
   client allow on this machine;
3. max throughput: the backlog is left in the events topic, the workers are started again
   and events/s is read from their ``streamrank_events_total`` until it is drained;
4. latency: events are offered at fixed fractions of that maximum, and quantiles come from
   the workers' ``streamrank_event_to_recommendation_seconds`` histogram (bucket deltas
   over the phase; the Kafka-timestamp-based figure the dashboards show).

Each phase also reports the CPU cores used by the workers and, where readable, by the
embedded broker and the load generator: on one machine they share the cores.

The phases run in ``stream.bench.stream_phases`` on the raw clients of
``stream.bench.kafka_load``; ``stream.bench.stream_results`` holds the figures and writes the
report. Kafka clients and matplotlib are imported only inside functions: the CLI imports this
module to build its parser.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

from stream.bench.stream_phases import BenchPhases, BenchWorkers, EventSource
from stream.bench.stream_results import StreamBenchResult, results_table, write_report
from stream.config import Settings
from stream.datasets import movielens

HELP = "events/s per worker, raw pass-through ceiling and latency at 25/50/75% load"
DESCRIPTION = (
    "Measure streamrank's sustained events/s per worker on a backlog of real MovieLens events, "
    "the same events through a raw aiokafka pass-through on the same broker (the ceiling), and "
    "event-to-recommendation latency at 25%, 50% and 75% of the measured maximum. Runs an "
    "embedded broker unless --bootstrap is given."
)

LOADS = (0.25, 0.5, 0.75)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``streamrank bench stream``."""
    parser.add_argument(
        "--bootstrap",
        "--broker",
        dest="broker",
        help="Kafka bootstrap servers (env STREAMRANK_BROKER); default: an embedded broker",
    )
    parser.add_argument(
        "--broker-profile",
        choices=["kafka", "embedded"],
        help="broker workarounds (env STREAMRANK_BROKER_PROFILE; default kafka)",
    )
    parser.add_argument("--data", help="MovieLens ml-latest-small directory (env STREAMRANK_DATA)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--events", type=int, default=20000, help="backlog of events for the max-throughput phase"
    )
    parser.add_argument(
        "--warmup-events", type=int, default=2000, help="events processed before any measurement"
    )
    parser.add_argument(
        "--duration-s", type=float, default=20.0, help="length of each fixed-rate latency phase"
    )
    parser.add_argument(
        "--max-items", type=int, default=None, help="publish only the first N movies (default all)"
    )
    parser.add_argument(
        "--rates",
        type=_rates,
        default=None,
        metavar="R1,R2,...",
        help="offer these events/s (over all workers) in the latency phases instead of 25/50/75%% "
        "of the measured maximum: fixed rates make two runs comparable",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON on the last line")
    parser.add_argument("--report", type=Path, help="write a Markdown report and a latency plot here")


def _rates(text: str) -> list[float]:
    try:
        rates = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None
    if not rates or min(rates) <= 0:
        raise argparse.ArgumentTypeError("rates must be positive")
    return rates


def run(args: argparse.Namespace, settings: Settings) -> int:
    """``streamrank bench stream``: run, print the table, write the report; exit code."""
    if args.workers < 1 or args.events < 1 or args.duration_s <= 0:
        raise SystemExit("--workers and --events must be at least 1 and --duration-s positive")
    # Turn SIGTERM into SystemExit so the workers and broker are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    data = movielens.resolve_data_dir(settings.data, settings.cache_dir)
    result = run_stream_bench(
        settings,
        data,
        workers=args.workers,
        events=args.events,
        warmup_events=args.warmup_events,
        duration_s=args.duration_s,
        max_items=args.max_items,
        rates=args.rates,
    )
    print(results_table(result), flush=True)
    if args.report:
        path = write_report(args.report, result, _command_line(args))
        print(f"report: {path}", flush=True)
    if args.json:
        print(json.dumps(result.summary()), flush=True)
    return 0


def run_stream_bench(
    settings: Settings,
    data: Path,
    *,
    workers: int = 1,
    events: int = 20000,
    warmup_events: int = 2000,
    duration_s: float = 20.0,
    max_items: int | None = None,
    loads: Sequence[float] = LOADS,
    rates: Sequence[float] | None = None,
) -> StreamBenchResult:
    """Run every phase on the configured broker (or an embedded one) and return the figures.

    Args:
        data: the MovieLens ml-latest-small directory.
        workers: worker processes, each a ``streamrank worker``.
        events: backlog size of the ceiling and max-throughput phases.
        warmup_events: events processed after the catalog, before measuring.
        duration_s: length of each fixed-rate phase.
        max_items: publish only the first N movies (and replay only ratings of them).
        loads: fractions of the measured maximum offered in the latency phases.
        rates: events/s offered in the latency phases instead (keyed by their fraction of
            the measured maximum in the result).
    """
    from stream.kafka.embedded import broker_for

    movies = movielens.load_movies(data)[:max_items]
    tags = movielens.load_tags(data)
    catalog = {m.movie_id for m in movies}
    source = EventSource([r for r in movielens.load_ratings(data) if r.movie_id in catalog])
    with tempfile.TemporaryDirectory(prefix="streamrank-bench-") as tmp:
        workdir = Path(tmp)
        with (
            broker_for(settings, workdir) as (live, broker),
            BenchWorkers(_fresh(live), workers, workdir) as ws,
        ):
            bench = BenchPhases(ws, source, None if broker is None else broker.pid)
            print(f"{workers} worker(s) ready; publishing {len(movies)} items ...", flush=True)
            bench.publish_catalog(movies, tags)
            bench.process(warmup_events, "warm-up")
            ceiling, max_phase = bench.backlog(events)
            max_rate = max_phase.achieved_per_s
            measured = {}
            if rates:
                offered = [
                    (rate / max_rate, rate, f"{rate:.0f}/s ({rate / max_rate:.0%} of max)") for rate in rates
                ]
            else:
                offered = [(load, load * max_rate, f"{load:.0%} of max") for load in loads]
            for load, rate, name in offered:
                measured[load] = bench.at_rate(name, rate, duration_s)
            return StreamBenchResult(workers, events, ceiling, max_phase, measured)


def _fresh(settings: Settings) -> Settings:
    """Settings with a unique app id and topic names: every run starts from nothing."""
    suffix = uuid.uuid4().hex[:8]
    return settings.model_copy(
        update={
            "app_id": f"streamrank-bench-{suffix}",
            "events_topic": f"bench-events-{suffix}",
            "items_topic": f"bench-items-{suffix}",
            "rerank_requests_topic": f"bench-rerank-requests-{suffix}",
            "recommendations_topic": f"bench-recommendations-{suffix}",
            "dead_letters_topic": f"bench-dead-letters-{suffix}",
        }
    )


def _command_line(args: argparse.Namespace) -> str:
    flags = [f"--workers {args.workers}", f"--events {args.events}", f"--duration-s {args.duration_s:g}"]
    if args.broker:
        flags.append(f"--bootstrap {args.broker}")
    if args.max_items:
        flags.append(f"--max-items {args.max_items}")
    if args.rates:
        flags.append("--rates " + ",".join(f"{rate:g}" for rate in args.rates))
    return "streamrank bench stream " + " ".join(flags)
