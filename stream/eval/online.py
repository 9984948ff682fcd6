"""``streamrank eval movielens --online``: the deployed pipeline scored like the offline run.

The same ratings are replayed through a real broker and a real worker process: the
catalog enters as each item becomes available, the warm-up ratings as fast as the
worker takes them, the evaluation period at a steady rate. The recommendation lists
are read back from the output topic, and each scored event is judged against the list
the user had just before it: the newest list reflecting all of the user's earlier
events and not this one (its ``profile_events`` tells), with the offline run's metric
code and sample.

Before a scored event is sent, the replay waits until that list has arrived, as a
user who looks at their list before acting would. Without that wait a burst of one
user's events (MovieLens users rate many films within seconds) outruns the pipeline
and each event would be judged against a list several events old.
"""

from __future__ import annotations

import bisect
import json
import logging
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from stream.config import Settings
from stream.datasets.movielens import item_message, load_movies, load_tags
from stream.eval.movielens import EvalSplit
from stream.eval.prequential import MethodTotals
from stream.kafka.admin import ensure_topics, producer
from stream.kafka.embedded import configured_or_embedded, free_port
from stream.tools.demo import RecommendationWatcher, wait_until_processed
from stream.tools.process import WorkerProcess, worker_env
from stream.tools.replay import RateLimiter

log = logging.getLogger(__name__)


# (profile_events, item ids) of one emitted top-K list
UserList = tuple[int, list[str]]
_LIST_WAIT_S = 30.0
_REPLAY_STATISTICS_WINDOW_S = 0.2


class ListCollector(RecommendationWatcher):
    """Keeps every top-K list per user as (profile_events, item ids), in arrival order."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.lists: dict[str, list[UserList]] = {}
        self.arrived = threading.Condition()

    def on_list(self, value: dict[str, Any]) -> None:
        """Record a list emitted after events (rerank answers are not part of this)."""
        if value.get("request_id") is None:
            entry = (int(value["profile_events"]), [i["item_id"] for i in value["items"]])
            with self.arrived:
                self.lists.setdefault(value["user_id"], []).append(entry)
                self.arrived.notify_all()

    def wait_for(self, user_id: str, profile_events: int, timeout_s: float) -> bool:
        """Wait until a list of the user reflecting ``profile_events`` events has arrived."""

        def done() -> bool:
            return any(n >= profile_events for n, _ in self.lists.get(user_id, ()))

        with self.arrived:
            return self.arrived.wait_for(done, timeout=timeout_s)


def list_before(lists: list[UserList], earlier_events: int) -> list[str]:
    """The newest list reflecting at most ``earlier_events`` events (empty if none)."""
    ordered = sorted(lists, key=lambda entry: entry[0])
    position = bisect.bisect_right([n for n, _ in ordered], earlier_events)
    return ordered[position - 1][1] if position else []


def score_online(
    split: EvalSplit, lists: dict[str, list[UserList]], k: int, min_history: int = 5
) -> tuple[int, dict[str, float]]:
    """Score the split's sampled events against the lists the pipeline emitted."""
    totals = MethodTotals(k)
    earlier: Counter[str] = Counter()
    catalog: set[str] = set()
    for position, event in enumerate(split.events):
        if split.scored[position] and earlier[event.user_id] >= min_history:
            ranked = list_before(lists.get(event.user_id, []), earlier[event.user_id])
            totals.add(ranked, event.item_id)
            catalog.update(ranked)
        earlier[event.user_id] += 1
    available = sum(1 for ts in split.available_ts if ts <= split.events[-1].ts)
    return totals.n, totals.result(available)


def replay_online(
    settings: Settings, data: Path, split: EvalSplit, eval_rate: float, min_history: int = 5
) -> dict[str, list[UserList]]:
    """Replay the split through a broker and a worker; return the lists it emitted."""
    # Turn SIGTERM into SystemExit so the worker and broker are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    tags = load_tags(data, before_ts=split.events[split.eval_start].ts)
    messages = {m.movie_id: item_message(m, tags.get(m.movie_id, [])) for m in load_movies(data)}
    items = sorted(zip(split.available_ts, split.item_ids, strict=True))
    # The seen-filter of the worker is its bounded history; make it hold every user's
    # whole history so that it excludes exactly what the offline protocol excludes.
    longest = max(Counter(e.user_id for e in split.events).values())
    with tempfile.TemporaryDirectory(prefix="streamrank-eval-") as tmp:
        workdir = Path(tmp)
        with configured_or_embedded(settings, workdir) as live:
            live = live.model_copy(update={"app_id": f"streamrank-eval-{int(time.time())}"})
            ensure_topics(live)
            env = {
                **worker_env(live, workdir / "state"),
                "STREAMRANK_HISTORY_SIZE": str(longest + 1),
                # The replay compresses years into minutes: merge item statistics over a
                # fifth of a second rather than seconds, which would span days of the data.
                "STREAMRANK_STATISTICS_BATCH_WINDOW_S": str(_REPLAY_STATISTICS_WINDOW_S),
                # Events batches linger as long, so that the statistics of the events
                # before a batch have landed when its lists are ranked, as they have in
                # real time (a list ranked the instant an event arrives sees them a window
                # and a hop late, which the replay stretches to days: online HR@10 0.108
                # against 0.129 offline, and 0.126 with this linger).
                "STREAMRANK_EVENT_BATCH_LINGER_S": str(_REPLAY_STATISTICS_WINDOW_S),
            }
            worker = WorkerProcess(
                env,
                free_port(),
                workdir / "worker.log",
            ).start()
            collector = ListCollector(live)
            kafka = producer(live)
            try:
                worker.wait_ready(timeout_s=300)
                collector.start()
                next_item = 0

                def send_items_until(ts: float) -> int:
                    nonlocal next_item
                    while next_item < len(items) and items[next_item][0] <= ts:
                        item_id = items[next_item][1]
                        value = json.dumps(messages[item_id]).encode()
                        kafka.send(live.items_topic, key=item_id.encode(), value=value)
                        next_item += 1
                    return next_item

                first = send_items_until(split.events[0].ts)
                kafka.flush()
                worker.wait_ready(timeout_s=900, min_items=first)
                log.info("catalog of %d items encoded; replaying %d events", first, len(split.events))
                limiter: RateLimiter | None = None
                earlier: Counter[str] = Counter()
                stale = 0
                for position, event in enumerate(split.events):
                    if position == split.eval_start:
                        # Warm-up sent as fast as possible; let the worker catch up, then
                        # replay the evaluation period at a pace it sustains.
                        kafka.flush()
                        wait_until_processed(worker, collector, position, live.events_topic)
                        limiter = RateLimiter(eval_rate)
                    if limiter is not None:
                        limiter.wait()
                    if split.scored[position] and earlier[event.user_id] >= min_history:
                        kafka.flush()
                        if not collector.wait_for(event.user_id, earlier[event.user_id], _LIST_WAIT_S):
                            stale += 1
                    earlier[event.user_id] += 1
                    send_items_until(event.ts)
                    value = {
                        "user_id": event.user_id,
                        "item_id": event.item_id,
                        "type": event.type,
                        "ts": event.ts,
                        "weight": event.weight,
                    }
                    kafka.send(
                        live.events_topic, key=event.user_id.encode(), value=json.dumps(value).encode()
                    )
                kafka.flush()
                wait_until_processed(worker, collector, len(split.events), live.events_topic)
                if stale:
                    log.warning("%d scored events were sent without waiting for their list", stale)
            finally:
                collector.stopping.set()
                kafka.close()
                worker.stop()
    return collector.lists
