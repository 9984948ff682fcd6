"""Replays change nothing twice: positions kept with profiles and statistics.

A batch read again after a crash skips what its profiles applied; a statistics message
read again by its owner, or sent again by its sender, is merged once
(``core.batch``, ``core.window``; docs/reliability.md).
"""

from __future__ import annotations

import numpy as np
import pytest

from stream.config import Settings
from stream.core import covisit, popularity
from stream.core.batch import BatchParams, EventPosition, StoredProfiles, apply_batch
from stream.core.catalog import CatalogIndex
from stream.core.contracts import InteractionEvent
from stream.core.formats import SourceRange, decode_message
from stream.core.profiles import ProfileParams
from stream.core.window import MessagePosition, StatisticsWindow
from tests.params import covisit_params

SETTINGS = Settings()
PARAMS = BatchParams(
    ProfileParams.from_settings(SETTINGS, "m"),
    covisit_params(max_neighbours=1000),
    SETTINGS.event_weights,
    SETTINGS.popularity_half_life_s,
)


class NoSink:
    def set_popularity(self, item_id: str, score: float, ref_ts: float) -> None:
        pass

    def set_covisits(self, item_id: str, row: bytes | None) -> None:
        pass


def index() -> CatalogIndex:
    idx = CatalogIndex("m", 4)
    rng = np.random.default_rng(0)
    for item in "abcdefgh":
        idx.upsert(item, rng.standard_normal(4).astype(np.float32), "m", ts=0.0)
    return idx


def events(n: int, users: str = "uv") -> list[InteractionEvent]:
    return [
        InteractionEvent(users[k % len(users)], "abcdefgh"[k % 8], "click", 1000.0 + k, 1.0) for k in range(n)
    ]


def positions(batch: list[InteractionEvent], first: int) -> list[EventPosition]:
    return [EventPosition(0, first + k) for k in range(len(batch))]


def test_a_batch_read_again_changes_no_profile_twice() -> None:
    idx, batch = index(), events(12)
    once, twice = StoredProfiles(), StoredProfiles()
    apply_batch(batch, once, idx, PARAMS, positions=positions(batch, 100))
    apply_batch(batch[:7], twice, idx, PARAMS, positions=positions(batch[:7], 100))
    # After a crash, the batch comes again from an earlier commit, with more behind it.
    replay = apply_batch(batch, twice, idx, PARAMS, positions=positions(batch, 100))
    assert replay.skipped == 7
    for user_id in "uv":  # equal but for the rounding of the vector's sums
        want, got = once.load(user_id), twice.load(user_id)
        assert want is not None and got is not None and want.vector is not None and got.vector is not None
        assert (got.history, got.counts, got.n_events, got.last_event_ts) == (
            want.history,
            want.counts,
            want.n_events,
            want.last_event_ts,
        )
        assert got.mass == pytest.approx(want.mass) and np.allclose(got.vector, want.vector, rtol=1e-6)
    profile = twice.load("u")
    assert profile is not None and (profile.partition, profile.offset) == (0, 110)
    assert profile.n_events == 6


def test_statistics_of_a_replayed_batch_leave_out_what_profiles_had_applied() -> None:
    idx, batch = index(), events(12)
    profiles = StoredProfiles()
    apply_batch(batch[:7], profiles, idx, PARAMS, positions=positions(batch[:7], 100))
    replay = apply_batch(batch, profiles, idx, PARAMS, positions=positions(batch, 100))
    assert set(replay.by_partition) == {0}
    assert sum(replay.increments.popularity.values()) == pytest.approx(
        sum(
            PARAMS.event_weights["click"] * 2 ** ((ev.ts - 1011.0) / PARAMS.popularity_half_life_s)
            for ev in batch[7:]
        )
    )


def test_without_positions_every_event_applies() -> None:
    idx, batch = index(), events(4)
    profiles = StoredProfiles()
    apply_batch(batch, profiles, idx, PARAMS)
    outcome = apply_batch(batch, profiles, idx, PARAMS)
    assert outcome.skipped == 0 and set(outcome.by_partition) == {-1}
    profile = profiles.load("u")
    assert profile is not None and profile.n_events == 4 and profile.offset == -1


def messages(source: SourceRange | None = None) -> list[bytes]:
    idx, batch = index(), events(10)
    outcome = apply_batch(batch, StoredProfiles(), idx, PARAMS, positions=positions(batch, 0))
    return list(outcome.increments.messages_by_owner(lambda key: 0, source).values())


def merged_state(
    plan: list[tuple[bytes, int]], tables: tuple[dict[str, bytes], dict[str, bytes]] | None = None
) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """The tables after windows of (message, offset), one window per list entry."""
    popularity_table, covisit_table = tables or ({}, {})
    window = StatisticsWindow(
        popularity_table, covisit_table, PARAMS.popularity_half_life_s, PARAMS.covisit, lambda o: f"\x00m:{o}"
    )
    for raw, offset in plan:
        window.merge(decode_message(raw), MessagePosition(0, offset))
        list(window.write(NoSink()))
    return popularity_table, covisit_table


def entries(tables: tuple[dict[str, bytes], dict[str, bytes]]) -> tuple[dict, dict]:
    counts = {k: popularity.decode_entry(v) for k, v in tables[0].items() if not k.startswith("\x00")}
    rows = {
        k: covisit.CovisitRow.from_bytes(v).scores for k, v in tables[1].items() if not k.startswith("\x00")
    }
    return counts, rows


def test_an_owner_reading_a_message_again_merges_it_once() -> None:
    (raw,) = messages()
    once = merged_state([(raw, 5)])
    # The owner crashed after writing, before committing: offset 5 comes again.
    again = merged_state([(raw, 5)], merged_state([(raw, 5)]))
    assert entries(again) == entries(once)
    assert entries(merged_state([(raw, 5), (raw, 6)])) != entries(once)  # two messages count twice


def test_a_message_sent_again_is_recognised_by_its_source_range() -> None:
    (first,) = messages(SourceRange(3, -1, 9))
    once = merged_state([(first, 5)])
    # The sender crashed after sending, before recording it: the same range comes again.
    again = merged_state([(first, 5), (first, 8)])
    assert entries(again) == entries(once)
    # Read from a fresh copy of the tables (another owner): the stored ranges still tell.
    assert entries(merged_state([(first, 8)], again)) == entries(once)
    (later,) = messages(SourceRange(3, 9, 19))
    assert entries(merged_state([(first, 5), (later, 6)])) != entries(once)


def test_a_window_writes_each_tables_merged_ranges_after_its_entries() -> None:
    (raw,) = messages(SourceRange(3, -1, 9))
    popularity_table, covisit_table = merged_state([(raw, 5)])
    for table in (popularity_table, covisit_table):
        assert list(table)[-1] == "\x00m:0"
