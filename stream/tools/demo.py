"""``streamrank demo``: the whole pipeline on one machine with real MovieLens data.

Starts the embedded broker (unless a broker is configured), creates the topics, starts
a worker process, replays the catalog and then the ratings in time order, prints live
recommendation lists for a few users, and ends with a one-line JSON summary.
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from stream.config import Settings
from stream.datasets import movielens
from stream.kafka.admin import consumer, ensure_topics
from stream.kafka.embedded import configured_or_embedded, free_port
from stream.tools.process import WorkerProcess, histogram_quantile, worker_env
from stream.tools.replay import replay_movielens

_QUIET_S = 3.0  # no new list for this long after the last event: the worker is done
_PRINT_EVERY_S = 2.0


class RecommendationWatcher(threading.Thread):
    """Consumes the recommendations topic; keeps counts and each user's latest list."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True, name="recommendation-watcher")
        self.settings = settings
        self.count = 0
        self.latest: dict[str, dict[str, Any]] = {}
        self.last_at = time.monotonic()
        self.stopping = threading.Event()

    def run(self) -> None:
        kafka = consumer(self.settings, self.settings.recommendations_topic, consumer_timeout_ms=500)
        try:
            while not self.stopping.is_set():
                for message in kafka:
                    self.on_list(json.loads(message.value))
                    self.count += 1
                    self.last_at = time.monotonic()
                    if self.stopping.is_set():
                        break
        finally:
            kafka.close()

    def on_list(self, value: dict[str, Any]) -> None:
        """Keep the user's latest list (override to keep more)."""
        self.latest[value["user_id"]] = value


def _print_lists(watcher: RecommendationWatcher, users: list[str], titles: dict[str, str]) -> None:
    for user in users:
        rec = watcher.latest.get(user)
        if rec is None:
            continue
        top = ", ".join(f"{titles.get(i['item_id'], i['item_id'])} [{i['reason']}]" for i in rec["items"][:5])
        print(f"  user {user:>4}: {top}", flush=True)


def run_demo(settings: Settings, *, max_events: int | None, rate: float, users: int) -> int:
    """Run the demo; returns the process exit code."""
    # Turn SIGTERM into SystemExit so the worker and broker are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    data = movielens.resolve_data_dir(settings.data, settings.cache_dir)
    titles = {m.movie_id: m.title for m in movielens.load_movies(data)}
    ratings = movielens.load_ratings(data)[:max_events]
    # Show the users most active in the replayed stretch: their lists change the most.
    shown = [u for u, _ in Counter(r.user_id for r in ratings).most_common(users)]
    with tempfile.TemporaryDirectory(prefix="streamrank-demo-") as tmp:
        workdir = Path(tmp)
        with configured_or_embedded(settings, workdir) as live:
            live = live.model_copy(update={"app_id": f"streamrank-demo-{int(time.time())}"})
            ensure_topics(live)
            port = live.web_port if "web_port" in settings.model_fields_set else free_port()
            worker = WorkerProcess(worker_env(live, workdir / "state"), port, workdir / "worker.log").start()
            try:
                return _drive(live, worker, data, ratings, shown, titles, rate)
            except BaseException:
                print(f"worker log: {(workdir / 'worker.log').read_text()[-4000:]}", flush=True)
                raise
            finally:
                worker.stop()


def _drive(
    settings: Settings,
    worker: WorkerProcess,
    data: Path,
    ratings: list[movielens.Rating],
    shown: list[str],
    titles: dict[str, str],
    rate: float,
) -> int:
    worker.wait_ready()
    print(f"worker ready; metrics at {worker.url}/metrics", flush=True)
    watcher = RecommendationWatcher(settings)
    watcher.start()

    def wait_for_catalog(n_items: int) -> None:
        print(f"sent {n_items} items; encoding them ...", flush=True)
        started = time.monotonic()
        worker.wait_ready(timeout_s=600, min_items=n_items)
        print(
            f"catalog encoded in {time.monotonic() - started:.1f}s; replaying {len(ratings)} ratings",
            flush=True,
        )

    last_print = [time.monotonic()]

    def progress(_key: str, _value: dict[str, Any]) -> None:
        if time.monotonic() - last_print[0] >= _PRINT_EVERY_S:
            last_print[0] = time.monotonic()
            print(f"{watcher.count} lists so far; latest for:", flush=True)
            _print_lists(watcher, shown, titles)

    stats = replay_movielens(
        settings, str(data), rate=rate, max_events=len(ratings), between=wait_for_catalog, on_event=progress
    )
    wait_until_processed(worker, watcher, stats.events, settings.events_topic)
    watcher.stopping.set()
    print("final lists:", flush=True)
    _print_lists(watcher, shown, titles)
    samples = worker.metrics()
    latency = "streamrank_event_to_recommendation_seconds"
    p50, p99 = histogram_quantile(0.5, samples, latency), histogram_quantile(0.99, samples, latency)
    summary = {
        "events": stats.events,
        "items": stats.items,
        "recommendations": watcher.count,
        "dead_letters": int(
            sum(v for k, v in samples.items() if k.startswith("streamrank_dead_letters_total"))
        ),
        "latency_ms": {
            "p50": None if p50 is None else round(p50 * 1000, 1),
            "p99": None if p99 is None else round(p99 * 1000, 1),
        },
    }
    print(f"metrics were served at {worker.url}/metrics", flush=True)
    print(json.dumps(summary), flush=True)
    return 0


def wait_until_processed(
    worker: WorkerProcess, watcher: RecommendationWatcher, n_events: int, worker_topic: str
) -> None:
    """Wait until the worker has taken every event and the lists have stopped coming."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        samples = worker.metrics()
        done = sum(
            v
            for k, v in samples.items()
            if k.startswith("streamrank_events_total")
            or (k.startswith("streamrank_dead_letters_total") and f'topic="{worker_topic}"' in k)
        )
        if done >= n_events and time.monotonic() - watcher.last_at > _QUIET_S:
            return
        time.sleep(0.5)
