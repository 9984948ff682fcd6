"""Item statistics across two workers: each event counted once, co-visitation rows bounded.

Two real worker processes share the events of real MovieLens ratings by partition. Each
forwards its batches' popularity sums and co-visitation pairs to the owner of each item's
partition, and each owner writes its items' entries to the global tables. The tables'
changelogs, read back here, must hold exactly what one process computes from the same
events with the definitions (``pairs.pair_increments``, decayed sums): a count applied
twice, by a second worker or a replayed message, would show as a value too large.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from stream.config import Settings
from stream.core import covisit
from stream.core.contracts import InteractionEvent, decode_event
from stream.core.pairs import pair_increments
from stream.core.profiles import decay
from stream.core.statistics import ItemIncrements
from stream.datasets import movielens
from stream.tools.process import sample_sum
from tests.integration.statistics import REL, held_counts, held_rows, unequal, wait_until_stable
from tests.stack import Stack, read_table

pytestmark = [pytest.mark.kafka, pytest.mark.model, pytest.mark.slow]

# The first ratings in time order: 11 users, 236 co-visitation rows. With the production
# pairing window (20 items), 105 rows stay within MAX_NEIGHBOURS neighbours (their rows are
# exact sums) and 131 have more (their rows are bounded).
N_EVENTS = 600
MAX_NEIGHBOURS = 40


def expected_statistics(
    events: Sequence[InteractionEvent], settings: Settings, ts: float
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Popularity and co-visitation sums of ``events`` held at ``ts``, in one process, one
    event at a time: each user's pairs formed with the history the worker keeps."""
    sums = ItemIncrements(ts=ts)
    sums.add_events(events, settings.event_weights, settings.popularity_half_life_s)
    params = covisit.CovisitParams.from_settings(settings)
    histories: dict[str, list[tuple[str, float, float]]] = {}
    rows: dict[str, dict[str, float]] = {}
    for ev in events:
        history = histories.setdefault(ev.user_id, [])
        for row, neighbour, weight, pair_ts in pair_increments(history, ev.item_id, ev.ts, params):
            entries = rows.setdefault(row, {})
            value = weight * float(decay(ts - pair_ts, params.half_life_s))
            entries[neighbour] = entries.get(neighbour, 0.0) + value
        history.append((ev.item_id, ev.ts, ev.weight))
        del history[: -settings.history_size]
    return sums.popularity, rows


def stored_statistics(settings: Settings, ts: float) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """What the owners wrote, every sum held at ``ts``."""
    return (
        held_counts(read_table(settings, "item-popularity"), ts, settings),
        held_rows(read_table(settings, "item-covisits"), ts, settings),
    )


def test_two_workers_count_each_event_once_and_bound_the_rows(stack: Stack, movielens_dir: Path) -> None:
    settings = Settings(**{**stack.settings.model_dump(), "covisit_max_neighbours": MAX_NEIGHBOURS})
    ratings = sorted(movielens.load_ratings(movielens_dir), key=lambda r: r.ts)[:N_EVENTS]
    rated = {r.movie_id for r in ratings}
    movies = [m for m in movielens.load_movies(movielens_dir) if m.movie_id in rated]
    for m in movies:
        stack.send(settings.items_topic, m.movie_id, movielens.item_message(m, []))
    env = {"STREAMRANK_COVISIT_MAX_NEIGHBOURS": str(MAX_NEIGHBOURS)}
    workers = [stack.start_worker("a", **env), stack.start_worker("b", **env)]
    for worker in workers:
        worker.wait_ready(timeout_s=180, min_items=len(movies))
    wait_until_stable(workers)

    messages = [json.dumps(movielens.event_message(r)).encode() for r in ratings]
    for rating, raw in zip(ratings, messages, strict=True):
        stack.kafka.send(settings.events_topic, key=rating.user_id.encode(), value=raw)
    stack.kafka.flush()

    events = [decode_event(raw, settings.event_weights) for raw in messages]
    ts = max(ev.ts for ev in events)
    want_counts, want_rows = expected_statistics(events, settings, ts)
    # Polled until it holds: entries keep arriving for a window or two after the last event.
    deadline = time.monotonic() + 90
    while (found := problems(*stored_statistics(settings, ts), want_counts, want_rows)) and (
        time.monotonic() < deadline
    ):
        time.sleep(1.0)
    assert found == [], found[:10]

    # Both workers took events and both owned statistics: the counts came from two.
    for worker in workers:
        samples = worker.metrics()
        assert sample_sum(samples, "streamrank_events_total") > 0
        assert samples.get('streamrank_batch_size_count{agent="count_item_popularity"}', 0) > 0
    exact = sum(len(row) <= MAX_NEIGHBOURS for row in want_rows.values())
    assert exact > 50 and len(want_rows) - exact > 50, "both kinds of row must be checked"


def problems(
    counts: dict[str, float],
    rows: dict[str, dict[str, float]],
    want_counts: dict[str, float],
    want_rows: dict[str, dict[str, float]],
) -> list[str]:
    """How the stored statistics differ from the sums of the definitions.

    Popularity: every event counted once. Co-visitation: every row bounded; a row within
    the bound is the exact sum of its pairs; a row that was cut holds its strongest
    entries, none above its exact sum (a cut entry starts again from zero).
    """
    out = unequal("popularity", counts, want_counts)
    if rows.keys() != want_rows.keys():
        out.append(f"co-visitation rows: {len(rows)} stored, {len(want_rows)} expected")
    for row_id, want in want_rows.items():
        got = rows.get(row_id, {})
        if len(want) <= MAX_NEIGHBOURS:
            out += unequal(f"row {row_id}", got, want)
            continue
        if len(got) != MAX_NEIGHBOURS or not got.keys() <= want.keys():
            out.append(f"row {row_id}: {len(got)} neighbours, bound {MAX_NEIGHBOURS}")
        out += [
            f"row {row_id}, {n}: {v} above its exact sum {want[n]}"
            for n, v in got.items()
            if n in want and v > want[n] * (1 + REL)
        ]
    return out
