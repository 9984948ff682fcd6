"""``streamrank bench batch``: where an events batch's CPU time goes, step by step, offline.

The events agent's work on one batch, without Kafka or Faust: decode the messages, read,
update (co-visitation pairs summed as they are formed included) and write each user's
profile (in its stored binary form), compute the batch's similarity rows
(``user_views``), rank the catalog for every user, build the item statistics messages
and the list payloads. Every step calls the functions the agent calls,
on the real MovieLens catalog (encoded with the configured model; vectors cached on disk
like the offline evaluation's) and real events in time order, with one BLAS thread as a
worker has. A warm-up applies events and merges their statistics first, so popularity
and co-visitation rows are those of a running stream.

What it shows: the cost of a batch as a function of its size. A worker at a live rate
takes batches of what arrived while the previous one ran (a few to tens of events), and a
worker with a backlog full ones, so fixed costs per batch (a read of the catalog matrix,
a statistics message per owner partition) weigh very differently.

Then the other half of the item statistics, per event: the owner's window
(``count_item_popularity``: decoding the window's messages, merging them into the stored
entries, writing the entries in their stored form) and every worker's replay of those
writes into its catalog, on windows of ``--window-events`` events taken in live-sized
batches. Faust's table writes and Kafka are left out. Batches go through ``core.batch.apply_batch`` and
windows through ``core.window.StatisticsWindow``, the agents' own paths.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stream.config import Settings

HELP = "CPU time of the events agent's batch work per step, at several batch sizes (no broker)"
DESCRIPTION = (
    "Time each step of the events agent's work on a batch (decoding, profile read, update and "
    "write, similarity rows, ranking, statistics messages, list payloads) with the production "
    "functions on the real MovieLens catalog and events, at several batch sizes, without Kafka."
)

STEPS = (
    "decode",
    "profile read",
    "profile update",
    "profile write",
    "similarity rows",
    "ranking",
    "statistics messages",
    "list payloads",
)
OWNER_STEPS = ("deliver", "merge", "write", "replay")
# Batches of the statistics-window measurement: what a worker takes at a live rate.
_WINDOW_BATCH = 60
# Warm-up batches are this large, and their statistics are merged every _WARMUP_WINDOW of them
# (the statistics agent's window), so that co-visitation rows and popularity exist.
_WARMUP_BATCH = 500
_WARMUP_WINDOW = 4


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("batch sizes must be at least 1")
    return sizes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``streamrank bench batch``."""
    parser.add_argument("--data", help="MovieLens ml-latest-small directory (env STREAMRANK_DATA)")
    parser.add_argument(
        "--sizes", type=_sizes, default=[15, 60, 500], metavar="N1,N2,...", help="batch sizes (events)"
    )
    parser.add_argument("--events", type=int, default=6000, help="events measured per batch size")
    parser.add_argument("--warmup-events", type=int, default=40000, help="events applied before measuring")
    parser.add_argument(
        "--max-items", type=int, default=None, help="only the first N movies and their ratings (default all)"
    )
    parser.add_argument(
        "--window-events",
        type=int,
        default=7500,
        help="events per statistics window (default 7500: 5 s at 1,500 events/s)",
    )
    parser.add_argument("--windows", type=int, default=2, help="statistics windows measured (0: none)")
    parser.add_argument("--json", action="store_true", help="print a JSON line last")


@dataclass
class BatchCost:
    """What batches of one size cost."""

    size: int
    batches: int = 0
    events: int = 0
    users: int = 0
    seconds: float = 0.0
    steps: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        """Milliseconds per batch (in all and per step), microseconds per event, users per batch."""
        batches = max(self.batches, 1)
        return {
            "ms_per_batch": round(1000 * self.seconds / batches, 3),
            "us_per_event": round(1e6 * self.seconds / max(self.events, 1), 1),
            "users_per_batch": round(self.users / batches, 2),
            "steps_ms": {step: round(1000 * self.steps[step] / batches, 3) for step in STEPS},
        }


@dataclass
class WindowCost:
    """What the statistics windows cost their owner and the replaying worker."""

    windows: int = 0
    events: int = 0
    entries: int = 0  # popularity entries and co-visitation rows written
    steps: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        """Microseconds per event (per step and in all), entries written per window and event."""
        events = max(self.events, 1)
        return {
            "events_per_window": round(self.events / max(self.windows, 1)),
            "entries_per_window": round(self.entries / max(self.windows, 1)),
            "us_per_event": round(1e6 * sum(self.steps.values()) / events, 1),
            "steps_us_per_event": {step: round(1e6 * self.steps[step] / events, 2) for step in OWNER_STEPS},
        }


class _Stream:
    """The agent's state and steps on one in-memory catalog (no Kafka, no Faust)."""

    def __init__(self, settings: Settings, data: Path, max_items: int | None = None) -> None:
        from encoders.text import TextEncoder
        from stream.core.batch import BatchParams, StoredProfiles
        from stream.core.contracts import ItemUpsert, decode_item
        from stream.core.covisit import CovisitParams
        from stream.core.model_catalog import ModelCatalog
        from stream.core.profiles import ProfileParams
        from stream.core.ranking import RankingConfig
        from stream.core.window import StatisticsWindow
        from stream.datasets import movielens
        from stream.eval.movielens import encode_cached

        self.settings = settings
        movies = movielens.load_movies(data)[:max_items]
        catalog = {m.movie_id for m in movies}
        tags = movielens.load_tags(data)
        # The texts the workers encode: each item message as the items agent decodes it.
        decoded = (
            decode_item(
                json.dumps(movielens.item_message(m, tags.get(m.movie_id, []))).encode(),
                settings.max_text_chars,
            )
            for m in movies
        )
        upserts = [item for item in decoded if isinstance(item, ItemUpsert)]
        encoder = TextEncoder.from_settings(settings.encoder)
        texts = [u.encoder_text() for u in upserts]
        vectors = encode_cached(encoder, texts, Path(settings.cache_dir))
        self.catalog = ModelCatalog(
            encoder.model_id, encoder.dim, settings.similarity_cache_mb << 20, settings.similarity_precision
        )
        self.index = self.catalog.target
        for upsert, vector in zip(upserts, vectors, strict=True):
            self.index.upsert(upsert.item_id, vector, encoder.model_id, upsert.ts)
        self.messages = [
            json.dumps(movielens.event_message(r)).encode()
            for r in movielens.load_ratings(data)
            if r.movie_id in catalog
        ]
        self.position = 0
        self.profile_params = ProfileParams.from_settings(settings, encoder.model_id)
        self.covisit_params = CovisitParams.from_settings(settings)
        self.ranking = RankingConfig.from_settings(settings)
        self.params = BatchParams(
            self.profile_params, self.covisit_params, settings.event_weights, settings.popularity_half_life_s
        )
        self.profiles = StoredProfiles()
        # The statistics tables as a worker holds them (stored forms), merged by one owner.
        self.window = StatisticsWindow({}, {}, settings.popularity_half_life_s, self.covisit_params)

    def take(self, n: int) -> list[bytes]:
        """The next ``n`` event messages in time order (cycling at the end)."""
        out = [self.messages[(self.position + i) % len(self.messages)] for i in range(n)]
        self.position += n
        return out

    def run(self, batch: list[bytes], clock: Counter[str]) -> tuple[list[bytes], int]:
        """One batch, as the events agent does it; adds each step's seconds to ``clock``.

        Returns the batch's statistics messages and its number of users.
        """
        from stream.core.batch import StepClock, apply_batch
        from stream.core.contracts import decode_event
        from stream.core.outputs import encode_recommendation
        from stream.kafka.partitioner import owner_partition

        settings, now = self.settings, time.perf_counter
        started = now()
        records = [decode_event(raw, settings.event_weights) for raw in batch]
        clock["decode"] += now() - started
        outcome = apply_batch(
            records, self.profiles, self.index, self.params, ranking=self.ranking, clock=StepClock(clock)
        )
        started = now()
        partitions = settings.topic_partitions
        by_owner = outcome.increments.messages_by_owner(lambda key: owner_partition(key, partitions))
        messages = list(by_owner.values())
        clock["statistics messages"] += now() - started
        started = now()
        for user, items in zip(outcome.users, outcome.ranked or [], strict=True):
            encode_recommendation(
                user.user_id,
                items,
                model=self.index.model_id,
                event_ts=max(e.ts for e in user.events),
                emitted_ts=time.time(),
                profile_events=user.profile.n_events,
            )
        clock["list payloads"] += now() - started
        return messages, len(outcome.users)

    def merge_statistics(self, messages: list[bytes]) -> None:
        """Merge statistics messages into the owner's window, as each item's owner does."""
        from stream.core.formats import decode_message

        for message in messages:
            self.window.merge(decode_message(message))

    def publish_statistics(self) -> None:
        """Write the window to the tables and the index, as an owner's write reaches every worker."""
        for _ in self.window.write(self.index):
            pass

    def owner_window(self, messages: list[bytes], clock: Counter[str]) -> int:
        """One statistics window as ``count_item_popularity`` runs it, then its replay.

        Returns the number of entries written.
        """
        from stream.core.formats import decode_message
        from stream.pipeline.tables import apply_covisit_entry, apply_popularity_entry

        now = time.perf_counter
        started = now()
        values = [decode_message(raw) for raw in messages]  # as the owner decodes them
        clock["deliver"] += now() - started
        started = now()
        for value in values:
            self.window.merge(value)
        clock["merge"] += now() - started
        started = now()
        written = list(self.window.write(self.catalog))
        clock["write"] += now() - started
        started = now()
        for is_row, key, entry in written:  # what every worker does with each changelog record
            (apply_covisit_entry if is_row else apply_popularity_entry)(self.catalog, key, entry)
        clock["replay"] += now() - started
        return len(written)


def measure(
    settings: Settings,
    data: Path,
    sizes: list[int],
    events: int,
    warmup_events: int,
    max_items: int | None = None,
    window_events: int = 7500,
    windows: int = 0,
) -> tuple[list[BatchCost], WindowCost]:
    """Warm up, then time batches of each size over ``events`` events, then ``windows``
    statistics windows of ``window_events`` events."""
    from threadpoolctl import threadpool_limits

    from stream.pipeline.memory import freeze_startup_objects

    stream = _Stream(settings, data, max_items)
    freeze_startup_objects()  # as a worker does once it is built
    with threadpool_limits(limits=1):
        ignored: Counter[str] = Counter()
        for i in range(max(warmup_events // _WARMUP_BATCH, 0)):
            messages, _ = stream.run(stream.take(_WARMUP_BATCH), ignored)
            stream.merge_statistics(messages)
            if i % _WARMUP_WINDOW == _WARMUP_WINDOW - 1:
                stream.publish_statistics()
        stream.publish_statistics()
        costs = []
        for size in sizes:
            cost = BatchCost(size)
            while cost.events < events:
                batch = stream.take(size)
                started = time.perf_counter()
                _, users = stream.run(batch, cost.steps)
                cost.seconds += time.perf_counter() - started
                cost.batches += 1
                cost.events += len(batch)
                cost.users += users
            costs.append(cost)
        # The windows come last, so the batch sizes measure the same events as without them.
        window = WindowCost()
        for _ in range(windows):
            messages = []
            taken = 0
            while taken < window_events:
                batch = stream.take(min(_WINDOW_BATCH, window_events - taken))
                messages.extend(stream.run(batch, ignored)[0])
                taken += len(batch)
            window.entries += stream.owner_window(messages, window.steps)
            window.windows += 1
            window.events += taken
    return costs, window


def results_table(costs: list[BatchCost]) -> str:
    """A Markdown table: one row per batch size, one column per step (ms per batch)."""
    lines = [
        "| batch size | users / batch | ms / batch | us / event | " + " | ".join(STEPS) + " |",
        "|---" * (4 + len(STEPS)) + "|",
    ]
    for cost in costs:
        summary = cost.summary()
        steps = " | ".join(f"{summary['steps_ms'][step]:.2f}" for step in STEPS)
        lines.append(
            f"| {cost.size} | {summary['users_per_batch']:.1f} | {summary['ms_per_batch']:.2f} | "
            f"{summary['us_per_event']:.0f} | {steps} |"
        )
    return "\n".join(lines)


def window_table(cost: WindowCost) -> str:
    """A Markdown table of the statistics windows' cost per event."""
    summary = cost.summary()
    steps = " | ".join(f"{summary['steps_us_per_event'][step]:.1f}" for step in OWNER_STEPS)
    return "\n".join(
        [
            "| events / window | entries written / window | us / event | " + " | ".join(OWNER_STEPS) + " |",
            "|---" * (3 + len(OWNER_STEPS)) + "|",
            f"| {summary['events_per_window']} | {summary['entries_per_window']} | "
            f"{summary['us_per_event']:.1f} | {steps} |",
        ]
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """``streamrank bench batch``: measure, print the table (and the JSON line)."""
    from stream.datasets import movielens

    if args.events < 1 or args.warmup_events < 0 or args.window_events < 1 or args.windows < 0:
        raise SystemExit(
            "--events and --window-events must be at least 1, --warmup-events and --windows at least 0"
        )
    data = movielens.resolve_data_dir(settings.data, settings.cache_dir)
    costs, window = measure(
        settings,
        data,
        args.sizes,
        args.events,
        args.warmup_events,
        args.max_items,
        window_events=args.window_events,
        windows=args.windows,
    )
    print(results_table(costs), flush=True)
    if window.windows:
        print("\nstatistics windows (owner and replay), per event:", flush=True)
        print(window_table(window), flush=True)
    if args.json:
        line: dict[str, Any] = {"sizes": {str(c.size): c.summary() for c in costs}}
        if window.windows:
            line["statistics_window"] = window.summary()
        print(json.dumps(line), flush=True)
    return 0
