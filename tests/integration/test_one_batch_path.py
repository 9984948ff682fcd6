"""The offline evaluation computes what a worker computes: one batch path.

The same real MovieLens events go through a real worker (on the broker, in batches of
whatever is waiting) and through the offline evaluation's replay (``prequential``, one
event at a time). Both apply them with ``core.batch.apply_batch`` and merge statistics
with ``core.window.StatisticsWindow``; the profiles and the item statistics the worker
wrote to its changelogs must equal the evaluation's, up to floating-point rounding.
Rows are not cut here (a bound above every row's size): where a row is cut depends on
the window it is written in, which differs by design between the two.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from encoders.text import TextEncoder
from stream.config import Settings
from stream.core.contracts import InteractionEvent, ItemUpsert, decode_event, decode_item
from stream.core.profiles import UserProfile
from stream.core.ranking import RankingConfig
from stream.datasets import movielens
from stream.eval.movielens import new_state
from stream.eval.prequential import CatalogItem, StreamState, prequential
from tests.integration.statistics import held_counts, held_rows, unequal, wait_until_stable
from tests.stack import Stack, read_table

pytestmark = [pytest.mark.kafka, pytest.mark.model, pytest.mark.slow]

N_EVENTS = 400
UNBOUNDED = 10_000  # neighbours per co-visitation row: no row is cut


def offline_state(
    settings: Settings, movies: list[movielens.Movie], events: list[InteractionEvent]
) -> StreamState:
    """The offline evaluation's state after replaying ``events`` (nothing scored)."""
    encoder = TextEncoder.from_settings(settings.encoder)
    raw_items = [json.dumps(movielens.item_message(m, [])).encode() for m in movies]
    upserts = [decode_item(raw, settings.max_text_chars) for raw in raw_items]
    assert all(isinstance(u, ItemUpsert) for u in upserts)
    vectors = encoder.encode([u.encoder_text() for u in upserts if isinstance(u, ItemUpsert)])
    state = new_state(settings, encoder.model_id, encoder.dim)
    items = [CatalogItem(u.item_id, v, u.ts, -math.inf) for u, v in zip(upserts, vectors, strict=True)]
    scored = np.zeros(len(events), dtype=bool)
    prequential(state, items, events, scored, RankingConfig.from_settings(settings), methods=["hybrid"])
    return state


def differences(
    worker: tuple[dict[str, float], dict[str, dict[str, float]], dict[str, bytes]],
    offline: tuple[dict[str, float], dict[str, dict[str, float]], StreamState],
) -> list[str]:
    """How the worker's statistics, and which users' profiles, differ from the evaluation's."""
    counts, rows, profiles = worker
    want_counts, want_rows, state = offline
    out = unequal("popularity", counts, want_counts)
    if rows.keys() != want_rows.keys():
        out.append(f"rows: {len(rows)} stored, {len(want_rows)} expected")
    for row_id, want in want_rows.items():
        out += unequal(f"row {row_id}", rows.get(row_id, {}), want)
    for user_id in sorted(state.profiles.stored):
        want_profile = state.profile(user_id)
        raw = profiles.get(user_id)
        if (
            raw is None
            or want_profile is None
            or UserProfile.from_bytes(raw).n_events != want_profile.n_events
        ):
            out.append(f"profile of {user_id} not (yet) equal in events")
    return out


def assert_same_profile(user_id: str, got: UserProfile, want: UserProfile) -> None:
    """Equal profiles: the same history, pending events, counts and times; the interest
    vector and its mass equal up to rounding (a batch folds its vectors in one product)."""
    assert (got.history, got.pending, got.counts) == (want.history, want.pending, want.counts), user_id
    assert (got.n_events, got.last_event_ts, got.ref_ts, got.model_id) == (
        want.n_events,
        want.last_event_ts,
        want.ref_ts,
        want.model_id,
    ), user_id
    assert got.mass == pytest.approx(want.mass, rel=1e-6), user_id
    assert got.vector is not None and want.vector is not None, user_id
    np.testing.assert_allclose(got.vector, want.vector, rtol=1e-5, atol=1e-6, err_msg=user_id)


def test_a_worker_and_the_offline_evaluation_compute_the_same_state(
    stack: Stack, movielens_dir: Path
) -> None:
    settings = Settings(**{**stack.settings.model_dump(), "covisit_max_neighbours": UNBOUNDED})
    ratings = sorted(movielens.load_ratings(movielens_dir), key=lambda r: r.ts)[:N_EVENTS]
    rated = {r.movie_id for r in ratings}
    movies = [m for m in movielens.load_movies(movielens_dir) if m.movie_id in rated]
    for m in movies:
        stack.send(settings.items_topic, m.movie_id, movielens.item_message(m, []))
    worker = stack.start_worker("w1", STREAMRANK_COVISIT_MAX_NEIGHBOURS=str(UNBOUNDED))
    worker.wait_ready(timeout_s=180, min_items=len(movies))
    wait_until_stable([worker])
    messages = [json.dumps(movielens.event_message(r)).encode() for r in ratings]
    for rating, raw in zip(ratings, messages, strict=True):
        stack.kafka.send(settings.events_topic, key=rating.user_id.encode(), value=raw)
    stack.kafka.flush()

    events = [decode_event(raw, settings.event_weights) for raw in messages]
    state = offline_state(settings, movies, events)
    ts = max(ev.ts for ev in events)
    offline = (
        held_counts(state.window.popularity_table, ts, settings),
        held_rows(state.window.covisit_table, ts, settings),
        state,
    )
    deadline = time.monotonic() + 90  # entries arrive for a window or two after the last event
    while True:
        profiles = read_table(settings, "user-profiles")
        counts = held_counts(read_table(settings, "item-popularity"), ts, settings)
        rows = held_rows(read_table(settings, "item-covisits"), ts, settings)
        found = differences((counts, rows, profiles), offline)
        if not found or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert found == [], found[:10]
    assert len(profiles) == len({r.user_id for r in ratings})
    for user_id, raw in profiles.items():
        want = state.profile(user_id)
        assert want is not None, user_id
        assert_same_profile(user_id, UserProfile.from_bytes(raw), want)
    # Rows that the production bound (40) would have cut are compared whole.
    assert len(offline[1]) > 100 and max(len(r) for r in offline[1].values()) > 40
