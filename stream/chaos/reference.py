"""The state a scenario's events must produce, and how the workers' state differs from it.

The reference is computed offline, not by a second, uninterrupted run: the events are
read back from the ``events`` topic (every record the broker holds, whoever sent it and
however often the producer retried) and applied in partition and offset order through
``core.batch.apply_batch`` and an owner's ``core.window.StatisticsWindow``, the path the
workers take (``stream.eval.prequential.StreamState``; ``tests/integration/
test_one_batch_path.py`` checks that a worker computes the same). The item vectors are
the workers' own, read from the ``item-catalog`` changelog, so no model is loaded and the
reference does not depend on how a run's batches and windows fell: an uninterrupted run
would itself differ from run to run in where its windows cut, and would double the time.

Profiles must be equal: event counts, counts by type, history, pending events, last
event time and the time the vector is held at; the interest vector and its mass up to
float32 rounding (a batch folds its vectors in one product). Popularity and co-visitation
are sums of the same terms in another order: equal within a relative 1e-9, rows uncut
(``cluster.UNBOUNDED_NEIGHBOURS``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stream.chaos.topics import Record, read_table
from stream.config import Settings
from stream.core import covisit, popularity
from stream.core.contracts import InteractionEvent, decode_event
from stream.core.profiles import UserProfile, decay, decode_vector
from stream.errors import InvalidMessage
from stream.eval.movielens import new_state
from stream.eval.prequential import StreamState

REL = 1e-9  # statistics: sums of the same terms in another order
VECTOR_RTOL, VECTOR_ATOL = 1e-5, 1e-6  # profile vectors: float32 products of other shapes
MASS_REL = 1e-6
_APPLY_CHUNK = 1000  # events per offline batch: the result does not depend on it
_EXAMPLES = 8


@dataclass(frozen=True, slots=True)
class ObservedState:
    """What the workers wrote: the latest value of each table key in its changelog."""

    profiles: dict[str, bytes]
    popularity: dict[str, bytes]
    covisits: dict[str, bytes]
    catalog: dict[str, bytes]


def read_state(settings: Settings) -> ObservedState:
    """The four tables as their changelogs hold them (internal position markers left out)."""
    return ObservedState(
        read_table(settings, "user-profiles"),
        read_table(settings, "item-popularity"),
        read_table(settings, "item-covisits"),
        read_table(settings, "item-catalog"),
    )


def split_events(
    records: Iterable[Record],
    event_weights: Mapping[str, float],
    expected_reason: Callable[[Record], str | None] | None = None,
) -> tuple[list[tuple[Record, InteractionEvent]], list[tuple[Record, str]]]:
    """The records of the events topic a worker applies, and those it must dead-letter
    with their reasons.

    Args:
        expected_reason: the reason a record must be dead-lettered for (None: it is valid),
            where the scenario knows it (labelled fuzz); by default the decoder decides.
    """
    valid: list[tuple[Record, InteractionEvent]] = []
    invalid: list[tuple[Record, str]] = []
    for record in records:
        reason = None if expected_reason is None else expected_reason(record)
        if reason is not None:
            invalid.append((record, reason))
            continue
        try:
            valid.append((record, decode_event(record.value, event_weights)))
        except InvalidMessage as exc:
            invalid.append((record, exc.reason))
    return valid, invalid


def catalog_vectors(catalog: Mapping[str, bytes]) -> tuple[str, dict[str, tuple[np.ndarray, Any]]]:
    """(model id, {item id: (vector, item ts)}) of the items that have a vector."""
    vectors: dict[str, tuple[np.ndarray, Any]] = {}
    models: dict[str, int] = {}
    for item_id, raw in catalog.items():
        entry = json.loads(raw)
        if entry.get("deleted") or not entry.get("vector"):
            continue
        vectors[item_id] = (decode_vector(entry["vector"]), entry.get("ts"))
        models[entry["model_id"]] = models.get(entry["model_id"], 0) + 1
    if not models:
        raise ValueError("the item-catalog changelog holds no vector")
    return max(models, key=lambda m: models[m]), vectors


def reference_state(
    settings: Settings, catalog: Mapping[str, bytes], events: list[InteractionEvent]
) -> StreamState:
    """The state ``events`` (in partition and offset order) produce without faults."""
    model_id, vectors = catalog_vectors(catalog)
    dim = int(next(iter(vectors.values()))[0].shape[0])
    state = new_state(settings, model_id, dim)
    for item_id, (vector, ts) in vectors.items():
        state.index.upsert(item_id, vector, model_id, ts)
    for start in range(0, len(events), _APPLY_CHUNK):
        state.apply(events[start : start + _APPLY_CHUNK])
    return state


def held_counts(table: Mapping[str, bytes], ts: float, half_life_s: float) -> dict[str, float]:
    """Each stored popularity count, held at ``ts``."""
    out = {}
    for item_id, value in table.items():
        score, held_at = popularity.decode_entry(value)
        out[item_id] = score * float(decay(ts - held_at, half_life_s))
    return out


def held_rows(table: Mapping[str, bytes], ts: float, half_life_s: float) -> dict[str, dict[str, float]]:
    """Each stored co-visitation row, its weights held at ``ts`` (empty rows left out)."""
    out = {}
    for item_id, value in table.items():
        row = covisit.stored_row(value)
        if row is not None and row.scores:
            factor = float(decay(ts - row.landmark, half_life_s))
            out[item_id] = {n: s * factor for n, s in row.scores.items()}
    return out


def _rel(got: float, want: float) -> float:
    return abs(got - want) / max(abs(want), 1e-300)


def _close(got: float, want: float) -> bool:
    return abs(got - want) <= max(REL * abs(want), 1e-12)


@dataclass
class StateCheck:
    """How the workers' state compares with the reference."""

    users: int = 0
    profiles_equal: int = 0
    missing_profiles: int = 0  # a user with events but no stored profile
    unexpected_profiles: int = 0  # a stored profile of a user without valid events
    doubled_profiles: int = 0  # more events applied than the user has
    extra_events: int = 0
    short_profiles: int = 0  # fewer events applied than the user has
    lost_events: int = 0
    other_profile_differences: int = 0  # as many events, yet another history, vector, ...
    popularity_items: int = 0
    popularity_mismatches: int = 0
    popularity_max_rel: float = 0.0
    rows: int = 0
    row_mismatches: int = 0
    row_max_rel: float = 0.0
    examples: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        """The state equals the reference."""
        return self.profiles_equal == self.users and not (
            self.unexpected_profiles or self.popularity_mismatches or self.row_mismatches
        )

    @property
    def nothing_lost(self) -> bool:
        """No user's event is missing from its profile."""
        return not (self.missing_profiles or self.short_profiles)

    @property
    def nothing_doubled(self) -> bool:
        """No user's event was applied twice."""
        return not self.doubled_profiles

    def note(self, text: str) -> None:
        """Keep a few examples of what differs."""
        if len(self.examples) < _EXAMPLES:
            self.examples.append(text)

    def figures(self) -> dict[str, Any]:
        """The comparison as JSON-ready figures."""
        return {
            "exact": self.exact,
            "users": self.users,
            "profiles_equal": self.profiles_equal,
            "missing_profiles": self.missing_profiles,
            "unexpected_profiles": self.unexpected_profiles,
            "doubled_profiles": self.doubled_profiles,
            "extra_events": self.extra_events,
            "short_profiles": self.short_profiles,
            "lost_events": self.lost_events,
            "other_profile_differences": self.other_profile_differences,
            "popularity_items": self.popularity_items,
            "popularity_mismatches": self.popularity_mismatches,
            "popularity_max_rel_diff": self.popularity_max_rel,
            "covisit_rows": self.rows,
            "covisit_row_mismatches": self.row_mismatches,
            "covisit_max_rel_diff": self.row_max_rel,
        }


def profile_difference(got: UserProfile, want: UserProfile) -> str | None:
    """What differs between two profiles with the same events, or None."""
    for name in ("n_events", "counts", "history", "pending", "last_event_ts", "ref_ts", "model_id"):
        if getattr(got, name) != getattr(want, name):
            return name
    if abs(got.mass - want.mass) > MASS_REL * max(abs(want.mass), 1e-12):
        return "mass"
    if (got.vector is None) != (want.vector is None):
        return "vector"
    if got.vector is not None and not np.allclose(
        got.vector, want.vector, rtol=VECTOR_RTOL, atol=VECTOR_ATOL
    ):
        return "vector"
    return None


def compare_state(
    observed: ObservedState, reference: StreamState, settings: Settings, ts: float
) -> StateCheck:
    """Compare the stored profiles and statistics with the reference, held at ``ts``
    (the newest event time)."""
    check = StateCheck()
    _compare_profiles(check, observed.profiles, reference)
    got_counts = held_counts(observed.popularity, ts, settings.popularity_half_life_s)
    want_counts = held_counts(reference.window.popularity_table, ts, settings.popularity_half_life_s)
    check.popularity_items = len(want_counts)
    for item_id in want_counts.keys() | got_counts.keys():
        got, want = got_counts.get(item_id, 0.0), want_counts.get(item_id, 0.0)
        if not _close(got, want):
            check.popularity_mismatches += 1
            check.popularity_max_rel = max(check.popularity_max_rel, _rel(got, want))
            check.note(f"popularity of {item_id}: {got!r} stored, {want!r} expected")
    got_rows = held_rows(observed.covisits, ts, settings.covisit_half_life_s)
    want_rows = held_rows(reference.window.covisit_table, ts, settings.covisit_half_life_s)
    check.rows = len(want_rows)
    for row_id in want_rows.keys() | got_rows.keys():
        got_row, want_row = got_rows.get(row_id, {}), want_rows.get(row_id, {})
        worst = max(
            (_rel(got_row.get(n, 0.0), want_row.get(n, 0.0)) for n in got_row.keys() | want_row.keys()),
            default=0.0,
        )
        if got_row.keys() != want_row.keys() or worst > REL:
            check.row_mismatches += 1
            check.row_max_rel = max(check.row_max_rel, worst)
            differing = sorted(
                n
                for n in got_row.keys() | want_row.keys()
                if not _close(got_row.get(n, 0.0), want_row.get(n, 0.0))
            )
            shown = ", ".join(
                f"{n}: {got_row.get(n, 0.0):.6g} vs {want_row.get(n, 0.0):.6g}" for n in differing[:3]
            )
            check.note(
                f"co-visitation row {row_id}: {len(differing)} of {len(want_row)} entries differ "
                f"({len(got_row)} stored), stored vs expected {shown}"
            )
    return check


def _compare_profiles(check: StateCheck, stored: Mapping[str, bytes], reference: StreamState) -> None:
    wanted = reference.profiles.stored
    check.users = len(wanted)
    check.unexpected_profiles = len(stored.keys() - wanted.keys())
    for user_id in sorted(wanted):
        want = UserProfile.from_bytes(wanted[user_id])
        raw = stored.get(user_id)
        if raw is None:
            check.missing_profiles += 1
            check.lost_events += want.n_events
            check.note(f"profile of {user_id}: missing ({want.n_events} events)")
            continue
        got = UserProfile.from_bytes(raw)
        if got.n_events > want.n_events:
            check.doubled_profiles += 1
            check.extra_events += got.n_events - want.n_events
            check.note(f"profile of {user_id}: {got.n_events} events applied, {want.n_events} sent")
        elif got.n_events < want.n_events:
            check.short_profiles += 1
            check.lost_events += want.n_events - got.n_events
            check.note(f"profile of {user_id}: {got.n_events} events applied, {want.n_events} sent")
        else:
            difference = profile_difference(got, want)
            if difference is None:
                check.profiles_equal += 1
            else:
                check.other_profile_differences += 1
                check.note(f"profile of {user_id}: {difference} differs")
