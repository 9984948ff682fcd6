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

Imports Kafka clients and matplotlib only inside functions: the CLI imports this module
to build its parser.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stream.config import Settings
from stream.datasets import movielens
from stream.errors import StreamrankError

HELP = "events/s per worker, raw pass-through ceiling and latency at 25/50/75% load"
DESCRIPTION = (
    "Measure streamrank's sustained events/s per worker on a backlog of real MovieLens events, "
    "the same events through a raw aiokafka pass-through on the same broker (the ceiling), and "
    "event-to-recommendation latency at 25%, 50% and 75% of the measured maximum. Runs an "
    "embedded broker unless --bootstrap is given."
)

LOADS = (0.25, 0.5, 0.75)
LATENCY_METRIC = "streamrank_event_to_recommendation_seconds"
EVENTS_METRIC = "streamrank_events_total"
LISTS_METRIC = "streamrank_recommendations_total"
# Draining a backlog, a worker's /metrics is scraped every 0.1 s near the start and the
# end (the drain time is then exact to 0.1 s) and at most every second in between: a
# scrape costs the worker about 5 ms, 5% of its main thread at ten a second (profiled).
_POLL_S = 0.1
_POLL_MAX_S = 1.0
# The JSON line reports latency at this load (see the README, Stream benchmark).
_JSON_LOAD = 0.5
CPU_METRIC = "process_cpu_seconds_total"
# A drained events topic is not an idle worker: item statistics and the global tables'
# changelogs are still being applied. Below this CPU use (cores per worker; idle fetch
# polling costs a little) for _QUIET_S the previous phase is over.
_IDLE_CPU = 0.25
_QUIET_S = 2.0
# The load generator sends the events due every _OFFER_SLICE_S at once (see offer).
_OFFER_SLICE_S = 0.005


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


@dataclass
class Phase:
    """One measured phase: offered and achieved rates, lists out, latency quantiles."""

    name: str
    offered_per_s: float | None
    achieved_per_s: float
    events: int
    lists: int
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    # CPU cores used over the phase: "workers" (all of them), and where they can be read
    # (embedded broker, Linux) "broker" and "load generator" (this process: the producer
    # offering the events, its client's thread included).
    cpu_cores: dict[str, float] = field(default_factory=dict)


@dataclass
class StreamBenchResult:
    """Everything one run measured."""

    workers: int
    events: int
    ceiling: Phase
    max_throughput: Phase
    loads: dict[float, Phase]

    @property
    def events_per_s_per_worker(self) -> float:
        """Sustained events/s of one worker (the max-throughput phase over the workers)."""
        return self.max_throughput.achieved_per_s / self.workers

    def summary(self) -> dict[str, Any]:
        """The JSON line: per-worker events/s, ceiling, latency and offered rate at 50% load.

        With fixed ``--rates``, the latency phase nearest 50% of the measured maximum.
        """
        at = self.loads[min(self.loads, key=lambda load: abs(load - _JSON_LOAD))]
        return {
            "events_per_s": round(self.events_per_s_per_worker, 1),
            "ceiling_events_per_s": round(self.ceiling.achieved_per_s, 1),
            "latency_ms": at.latency_ms,
            "offered_rate": round(at.offered_per_s or 0.0, 1),
        }

    def phases(self) -> list[Phase]:
        """Every phase in the order it ran."""
        return [self.ceiling, self.max_throughput, *self.loads.values()]


class EventSource:
    """MovieLens ratings as encoded ``events`` messages, in time order, cycling at the end.

    Cycling repeats events with old event times; profiles accept events in any order, so
    the work per event stays the same.
    """

    def __init__(self, ratings: Sequence[movielens.Rating]) -> None:
        if not ratings:
            raise StreamrankError("no ratings to replay")
        self._messages = [
            (r.user_id.encode("utf-8"), json.dumps(movielens.event_message(r)).encode("utf-8"))
            for r in ratings
        ]
        self._next = 0

    def take(self, n: int) -> list[tuple[bytes, bytes]]:
        """The next ``n`` messages as (key, value)."""
        out = []
        for _ in range(n):
            out.append(self._messages[self._next])
            self._next = (self._next + 1) % len(self._messages)
        return out


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
            _Workers(_fresh(live), workers, workdir) as ws,
        ):
            bench = _Bench(ws, source, None if broker is None else broker.pid)
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


class _Workers:
    """The worker processes of one run (stopped by PID on exit), restartable on their state."""

    def __init__(self, settings: Settings, n: int, workdir: Path) -> None:
        from stream.tools.process import WorkerProcess

        self.settings = settings
        self.workdir = workdir
        self.n = n
        self.processes: list[WorkerProcess] = []

    def __enter__(self) -> _Workers:
        from stream.kafka.admin import ensure_topics

        ensure_topics(self.settings)
        try:
            self.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, wait: bool = True, min_items: int = 0) -> None:
        """Start the workers, each on its own state directory (kept across restarts)."""
        from stream.kafka.embedded import free_port
        from stream.tools.process import WorkerProcess, worker_env

        for i in range(self.n):
            env = worker_env(self.settings, self.workdir / f"state-{i}")
            # Warnings only: a log line per rebalance or commit is noise on a benchmark.
            env["STREAMRANK_LOG_LEVEL"] = "warning"
            process = WorkerProcess(env, free_port(), self.workdir / f"worker-{i}.log").start()
            self.processes.append(process)
        if wait:
            self.wait_ready(min_items=min_items)

    def wait_ready(self, min_items: int = 0, timeout_s: float = 900.0) -> None:
        """Wait until every worker is ready and holds ``min_items`` item vectors."""
        try:
            for process in self.processes:
                process.wait_ready(timeout_s=timeout_s, min_items=min_items)
        except StreamrankError:
            self.print_logs()
            raise

    def stop(self) -> None:
        """Stop every worker by PID."""
        for process in self.processes:
            process.stop()
        self.processes = []

    def scrape(self) -> dict[str, float] | None:
        """Every worker's /metrics summed; None while any worker does not answer."""
        from stream.tools.process import add_samples

        try:
            return add_samples(*(p.metrics() for p in self.processes))
        except (OSError, ValueError):
            return None

    def print_logs(self) -> None:
        """The tail of each worker's log, to explain a failure."""
        from stream.tools.process import log_tail

        for path in sorted(self.workdir.glob("worker-*.log")):
            print(log_tail(path), flush=True)


class _Bench:
    """The phases of one run, on running workers."""

    def __init__(self, workers: _Workers, source: EventSource, broker_pid: int | None = None) -> None:
        self.workers = workers
        self.settings = workers.settings
        self.source = source
        self.broker_pid = broker_pid
        self.n_items = 0

    def _cpu_clocks(self) -> dict[str, float]:
        """CPU seconds so far of the embedded broker and of this process (the load generator)."""
        from stream.tools.process import process_cpu_seconds

        clocks = {"load generator": time.process_time()}
        broker = None if self.broker_pid is None else process_cpu_seconds(self.broker_pid)
        if broker is not None:
            clocks["broker"] = broker
        return clocks

    def publish_catalog(self, movies: Sequence[movielens.Movie], tags: dict[str, list[str]]) -> None:
        """Publish the catalog and wait until every worker holds every vector (not measured)."""
        started = time.monotonic()
        items = [
            (
                m.movie_id.encode("utf-8"),
                json.dumps(movielens.item_message(m, tags.get(m.movie_id, []))).encode(),
            )
            for m in movies
        ]
        self._send(self.settings.items_topic, items)
        self.n_items = len(items)
        self.workers.wait_ready(min_items=self.n_items)
        print(f"catalog of {self.n_items} items encoded in {time.monotonic() - started:.1f}s", flush=True)

    def _send(self, topic: str, messages: Sequence[tuple[bytes, bytes]], rate: float = 0.0) -> float:
        """Produce messages (at most ``rate``/s); return the seconds it took, deliveries included."""
        return asyncio.run(offer(self.settings, topic, messages, rate))

    def _wait_processed(
        self, target: float, timeout_s: float
    ) -> tuple[float, dict[str, float], float, dict[str, float]]:
        """Poll until the workers' event counter reaches ``target``.

        Returns the time of the last scrape still at zero (or of the first scrape) and its
        samples, and the time the target was first seen and the samples then.
        """
        from stream.tools.process import sample_sum

        deadline = time.monotonic() + timeout_s
        started_at: float | None = None
        start_samples: dict[str, float] = {}
        first_done = 0.0
        while time.monotonic() < deadline:
            now = time.monotonic()
            samples = self.workers.scrape()
            pause = _POLL_S
            if samples is not None:
                done = sample_sum(samples, EVENTS_METRIC)
                if done >= target:
                    if started_at is None:
                        started_at, start_samples = now, samples
                    return started_at, start_samples, now, samples
                if done == 0 or started_at is None:
                    started_at, start_samples, first_done = now, samples, done
                elif done > first_done and now > started_at:
                    # A quarter of the time left at the rate so far, within [0.1 s, 1 s].
                    left_s = (target - done) * (now - started_at) / (done - first_done)
                    pause = min(_POLL_MAX_S, max(_POLL_S, left_s / 4))
            time.sleep(pause)
        self.workers.print_logs()
        raise StreamrankError(f"workers did not process {target:.0f} events within {timeout_s:.0f}s")

    def wait_idle(self, timeout_s: float = 300.0) -> None:
        """Wait until the workers' CPU use says the previous phase's work is done."""
        from stream.tools.process import sample_sum

        deadline = time.monotonic() + timeout_s
        last: tuple[float, float] | None = None
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            samples = self.workers.scrape()
            now = time.monotonic()
            if samples is not None:
                cpu = sample_sum(samples, CPU_METRIC)
                if last is not None and (cpu - last[1]) / (now - last[0]) / self.workers.n < _IDLE_CPU:
                    quiet_since = quiet_since or last[0]
                    if now - quiet_since >= _QUIET_S:
                        return
                else:
                    quiet_since = None
                last = (now, cpu)
            time.sleep(0.5)
        print(f"workers still busy after {timeout_s:.0f}s; measuring anyway", flush=True)

    def process(self, n: int, label: str) -> None:
        """Send ``n`` events and wait until they are processed (warm-up: not measured)."""
        from stream.tools.process import sample_sum

        if n <= 0:
            return
        before = self.workers.scrape() or {}
        self._send(self.settings.events_topic, self.source.take(n))
        self._wait_processed(sample_sum(before, EVENTS_METRIC) + n, timeout_s=max(120.0, n / 50))
        self.wait_idle()
        print(f"{label}: {n} events processed", flush=True)

    def backlog(self, n: int) -> tuple[Phase, Phase]:
        """The ceiling and max-throughput phases on the same backlog of ``n`` events."""
        from stream.kafka.admin import ensure_topics
        from stream.tools.process import sample_sum

        self.workers.stop()
        messages = self.source.take(n)
        suffix = self.settings.app_id.rsplit("-", 1)[-1]
        ceiling_in, ceiling_out = f"bench-ceiling-in-{suffix}", f"bench-ceiling-out-{suffix}"
        ensure_topics(self.settings, [ceiling_in, ceiling_out])
        print(f"producing a backlog of {n} events (twice: workers and pass-through) ...", flush=True)
        self._send(self.settings.events_topic, messages)
        self._send(ceiling_in, messages)

        ceiling_s = asyncio.run(pass_through(self.settings, ceiling_in, ceiling_out, n))
        ceiling = Phase("ceiling (aiokafka pass-through)", None, n / ceiling_s, n, n)
        print(f"ceiling: {ceiling.achieved_per_s:.0f} events/s", flush=True)

        # Restarted workers recover their tables first; the clock starts at the last scrape
        # before the first event is counted, so start-up is not charged but one poll may be.
        self.workers.start(wait=False)
        started, start_samples, ended, samples = self._wait_processed(n, timeout_s=max(300.0, n / 20))
        self.workers.wait_ready(min_items=self.n_items)
        lists = int(sample_sum(samples, LISTS_METRIC))
        elapsed = max(ended - started, 1e-9)
        max_phase = Phase("max throughput (backlog)", None, n / elapsed, n, lists)
        # Only the workers': the broker and this process were busy before the clock started.
        max_phase.cpu_cores["workers"] = round(
            (sample_sum(samples, CPU_METRIC) - sample_sum(start_samples, CPU_METRIC)) / elapsed, 2
        )
        print(
            f"max throughput: {max_phase.achieved_per_s:.0f} events/s over {self.workers.n} worker(s), "
            f"{lists} lists",
            flush=True,
        )
        return ceiling, max_phase

    def at_rate(self, name: str, rate: float, duration_s: float) -> Phase:
        """Offer ``rate`` events/s for ``duration_s``; latency from the histogram deltas."""
        from stream.tools.process import histogram_quantile, sample_delta, sample_sum

        self.wait_idle()
        n = max(1, round(rate * duration_s))
        before = self.workers.scrape()
        if before is None:
            raise StreamrankError("a worker stopped answering /metrics")
        started = time.monotonic()
        clocks = self._cpu_clocks()
        sent_s = self._send(self.settings.events_topic, self.source.take(n), rate)
        target = sample_sum(before, EVENTS_METRIC) + n
        _, _, ended, after = self._wait_processed(target, timeout_s=max(120.0, 4 * duration_s))
        clocks = {name: used - clocks[name] for name, used in self._cpu_clocks().items()}
        delta = sample_delta(after, before)
        elapsed = max(ended - started, 1e-9)
        cpu = {"workers": sample_sum(delta, CPU_METRIC), **clocks}
        quantiles = {
            f"p{round(q * 100)}": histogram_quantile(q, delta, LATENCY_METRIC) for q in (0.5, 0.95, 0.99)
        }
        phase = Phase(
            name,
            n / sent_s,
            n / elapsed,
            n,
            int(sample_sum(delta, LISTS_METRIC)),
            {k: None if v is None else round(v * 1000, 2) for k, v in quantiles.items()},
            {name: round(seconds / elapsed, 2) for name, seconds in cpu.items()},
        )
        print(
            f"{phase.name}: offered {phase.offered_per_s:.0f}/s, achieved {phase.achieved_per_s:.0f}/s, "
            f"latency ms {phase.latency_ms}, CPU cores {phase.cpu_cores}",
            flush=True,
        )
        return phase


def _aiokafka_options(settings: Settings) -> dict[str, Any]:
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from stream.pipeline.app import broker_credentials

    return {
        "bootstrap_servers": settings.bootstrap_servers,
        **credentials_to_aiokafka_auth(broker_credentials(settings)),
    }


async def offer(
    settings: Settings, topic: str, messages: Sequence[tuple[bytes, bytes]], rate: float = 0.0
) -> float:
    """Produce ``messages`` (key, value) at ``rate`` per second (all at once if 0); return the
    seconds until the last one was acknowledged.

    The load generator wakes every 5 ms and sends the events due by then together, without
    linger. An event's Kafka timestamp, where its latency starts, is taken as it is sent,
    so sending in slices adds nothing to latency; it offers events in bursts of at most
    5 ms. Sent one by one (kafka-python, a produce request per event), the generator and
    the broker each took about half a core at 360 events/s, on the two cores the worker
    measured had.
    """
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(acks=1, linger_ms=0, **_aiokafka_options(settings))
    await producer.start()
    try:
        started = time.monotonic()
        deliveries: list[asyncio.Future[Any]] = []
        sent = 0
        while sent < len(messages):
            due = (
                len(messages)
                if rate <= 0
                else min(len(messages), int((time.monotonic() - started) * rate) + 1)
            )
            for key, value in messages[sent:due]:
                deliveries.append(await producer.send(topic, value, key=key))
            sent = max(sent, due)
            if sent < len(messages):
                await asyncio.sleep(_OFFER_SLICE_S)
        await asyncio.gather(*deliveries)
        return time.monotonic() - started
    finally:
        await producer.stop()


async def pass_through(settings: Settings, source: str, sink: str, n: int) -> float:
    """Copy ``n`` records from ``source`` to ``sink`` with raw aiokafka; return the seconds.

    The clock runs from the first fetched batch to the last produce acknowledged. Clients
    are configured as the workers' Faust clients are on this broker profile (fetch wait on
    the embedded broker, acks from all replicas).
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    from stream.kafka.embedded import EMBEDDED_FETCH_MAX_WAIT_MS

    options = _aiokafka_options(settings)
    fetch_wait = EMBEDDED_FETCH_MAX_WAIT_MS if settings.is_embedded else 500
    consumer = AIOKafkaConsumer(
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_wait,
        **options,
    )
    producer = AIOKafkaProducer(acks="all", linger_ms=0, **options)
    await consumer.start()
    await producer.start()
    try:
        consumer.assign([TopicPartition(source, p) for p in range(settings.topic_partitions)])
        copied, started = 0, None
        while copied < n:
            batches = await consumer.getmany(timeout_ms=1000, max_records=settings.event_batch_size)
            if not batches:
                continue
            started = started or time.perf_counter()
            deliveries = [
                await producer.send(sink, record.value, key=record.key)
                for records in batches.values()
                for record in records
            ]
            await asyncio.gather(*deliveries)
            copied += len(deliveries)
        return time.perf_counter() - (started or time.perf_counter())
    finally:
        await producer.stop()
        await consumer.stop()


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _cores(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def results_table(result: StreamBenchResult) -> str:
    """A Markdown table: phase, offered and achieved events/s, lists out, latency quantiles."""
    lines = [
        "| phase | offered events/s | achieved events/s | lists out | p50 ms | p95 ms | p99 ms "
        "| CPU cores: workers / broker / load generator |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in result.phases():
        offered = "backlog" if p.offered_per_s is None else f"{p.offered_per_s:.0f}"
        lat = p.latency_ms
        cpu = " / ".join(_cores(p.cpu_cores.get(name)) for name in ("workers", "broker", "load generator"))
        lines.append(
            f"| {p.name} | {offered} | {p.achieved_per_s:.0f} | {p.lists} | "
            f"{_ms(lat.get('p50'))} | {_ms(lat.get('p95'))} | {_ms(lat.get('p99'))} | {cpu} |"
        )
    lines.append("")
    lines.append(
        f"events/s per worker: {result.events_per_s_per_worker:.0f} ({result.workers} worker(s)); "
        f"ceiling: {result.ceiling.achieved_per_s:.0f} events/s"
    )
    return "\n".join(lines)


def _command_line(args: argparse.Namespace) -> str:
    flags = [f"--workers {args.workers}", f"--events {args.events}", f"--duration-s {args.duration_s:g}"]
    if args.broker:
        flags.append(f"--bootstrap {args.broker}")
    if args.max_items:
        flags.append(f"--max-items {args.max_items}")
    if args.rates:
        flags.append("--rates " + ",".join(f"{rate:g}" for rate in args.rates))
    return "streamrank bench stream " + " ".join(flags)


def write_report(directory: Path, result: StreamBenchResult, command: str) -> Path:
    """Write ``stream-bench.md`` and ``latency-vs-throughput.png``; return the .md path."""
    from stream.tools.report import line_plot

    directory.mkdir(parents=True, exist_ok=True)
    png = directory / "latency-vs-throughput.png"
    phases = list(result.loads.values())
    line_plot(
        png,
        [p.achieved_per_s for p in phases],
        {q: [p.latency_ms.get(q) or 0.0 for p in phases] for q in ("p50", "p95", "p99")},
        f"event-to-recommendation latency, {result.workers} worker(s)",
        "achieved events/s (all workers)",
        "latency (ms)",
        {"max throughput": result.max_throughput.achieved_per_s},
    )
    text = [
        "# Stream benchmark",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU(s) visible, "
        f"Python {platform.python_version()}.",
        "",
        results_table(result),
        "",
        "Latency is the workers' `streamrank_event_to_recommendation_seconds` histogram (Kafka "
        "timestamp of the newest input event to the list being sent), differenced over each "
        "phase; quantiles interpolate linearly within its buckets (1, 2.5, 5, 10, 25, 50, 75, "
        "100, 250 ms, ... 10, 30 s), so they are only as fine as the bucket they fall in; a "
        "figure near 30 s means at least that (the top bucket is open-ended).",
        "",
        "Before each latency phase the bench waits until the workers' CPU use drops (item "
        "statistics and global-table changelogs of the previous phase applied).",
        "",
        "The load generator (this benchmark's producer) sends the events due every 5 ms "
        "together, without linger; an event's latency starts at its Kafka timestamp, taken as "
        "it is sent. CPU cores are per phase, over its wall time: "
        "the workers' `process_cpu_seconds_total`, and on Linux the embedded broker's and the "
        "load generator's (for the backlog, the workers' only). On a machine shared by all "
        "three, what the broker and the load generator use is not available to the workers.",
        "",
        f"![latency vs throughput]({png.name})",
        "",
        "```json",
        json.dumps({"summary": result.summary(), "phases": [asdict(p) for p in result.phases()]}, indent=2),
        "```",
        "",
    ]
    md = directory / "stream-bench.md"
    md.write_text("\n".join(text), encoding="utf-8")
    return md
