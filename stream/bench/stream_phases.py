"""The workers and phases of ``streamrank bench stream`` (see ``stream.bench.stream``).

``BenchWorkers`` runs the worker processes of one run, stopped by PID; ``BenchPhases`` runs
each phase on them and reads its figures from the workers' /metrics.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path

from stream.bench.kafka_load import offer, pass_through
from stream.bench.stream_results import Phase
from stream.config import Settings
from stream.datasets import movielens
from stream.errors import StreamrankError

LATENCY_METRIC = "streamrank_event_to_recommendation_seconds"
EVENTS_METRIC = "streamrank_events_total"
LISTS_METRIC = "streamrank_recommendations_total"
CPU_METRIC = "process_cpu_seconds_total"
# Draining a backlog, a worker's /metrics is scraped every 0.1 s near the start and the
# end (the drain time is then exact to 0.1 s) and at most every second in between: a
# scrape costs the worker about 5 ms, 5% of its main thread at ten a second (profiled).
_POLL_S = 0.1
_POLL_MAX_S = 1.0
# A drained events topic is not an idle worker: item statistics and the global tables'
# changelogs are still being applied. Below this CPU use (cores per worker; idle fetch
# polling costs a little) for _QUIET_S the previous phase is over.
_IDLE_CPU = 0.25
_QUIET_S = 2.0


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


class BenchWorkers:
    """The worker processes of one run (stopped by PID on exit), restartable on their state."""

    def __init__(self, settings: Settings, n: int, workdir: Path) -> None:
        from stream.tools.process import WorkerProcess

        self.settings = settings
        self.workdir = workdir
        self.n = n
        self.processes: list[WorkerProcess] = []

    def __enter__(self) -> BenchWorkers:
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


class BenchPhases:
    """The phases of one run, on running workers."""

    def __init__(self, workers: BenchWorkers, source: EventSource, broker_pid: int | None = None) -> None:
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
