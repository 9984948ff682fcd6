"""The reference state of the fault scenarios and the comparison that judges the workers'."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from stream.chaos.reference import ObservedState, compare_state, reference_state, split_events
from stream.chaos.topics import Record
from stream.config import Settings
from stream.core.contracts import InteractionEvent
from stream.core.profiles import UserProfile, encode_vector
from stream.eval.prequential import StreamState

SETTINGS = Settings(covisit_max_neighbours=100_000)


def catalog(n: int = 6) -> dict[str, bytes]:
    """An ``item-catalog`` changelog's values: unit vectors of one model."""
    rng = np.random.default_rng(0)
    out = {}
    for i in range(n):
        vector = rng.normal(size=8).astype(np.float32)
        entry = {"text": f"item {i}", "title": f"item {i}", "ts": 1000.0 + i, "model_id": "m:8"}
        out[str(i)] = json.dumps({**entry, "vector": encode_vector(vector / np.linalg.norm(vector))}).encode()
    out["no-vector"] = json.dumps({"text": "x", "title": "x", "ts": None, "model_id": ""}).encode()
    return out


def events() -> list[InteractionEvent]:
    return [
        InteractionEvent(user, str((k * 7 + len(user)) % 6), "click", 10_000.0 + k, 1.0)
        for k in range(12)
        for user in ("alice", "bob", "carol")
    ]


def observed_from(state: StreamState, items: dict[str, bytes]) -> ObservedState:
    """What workers that computed ``state`` would have written."""
    return ObservedState(
        dict(state.profiles.stored),
        dict(state.window.popularity_table),
        dict(state.window.covisit_table),
        items,
    )


def test_the_state_the_events_produce_equals_itself_whatever_the_batches() -> None:
    items, stream = catalog(), events()
    reference = reference_state(SETTINGS, items, stream)
    one_by_one = reference_state(SETTINGS, items, [])
    for event in stream:
        one_by_one.apply([event])
    check = compare_state(observed_from(one_by_one, items), reference, SETTINGS, stream[-1].ts)
    assert check.exact, check.examples
    assert (check.users, check.profiles_equal) == (3, 3)
    assert check.popularity_items == 6 and check.rows == 6
    assert check.nothing_lost and check.nothing_doubled


def test_an_event_applied_twice_shows_as_doubled_and_in_the_statistics() -> None:
    items, stream = catalog(), events()
    reference = reference_state(SETTINGS, items, stream)
    doubled = reference_state(SETTINGS, items, [*stream[:5], stream[4], *stream[5:]])
    check = compare_state(observed_from(doubled, items), reference, SETTINGS, stream[-1].ts)
    assert not check.exact and not check.nothing_doubled and check.nothing_lost
    assert (check.doubled_profiles, check.extra_events) == (1, 1)
    assert check.popularity_mismatches == 1 and check.popularity_max_rel > 0
    assert check.row_mismatches >= 1


def test_a_missing_profile_and_a_changed_vector_are_told_apart() -> None:
    items, stream = catalog(), events()
    reference = reference_state(SETTINGS, items, stream)
    observed = observed_from(reference, items)
    del observed.profiles["alice"]
    bob = UserProfile.from_bytes(observed.profiles["bob"])
    assert bob.vector is not None
    observed.profiles["bob"] = dataclasses.replace(bob, vector=bob.vector * 1.001).to_bytes()
    nudged = UserProfile.from_bytes(observed.profiles["carol"])
    assert nudged.vector is not None
    # Within float32 rounding of a batched product: still equal.
    observed.profiles["carol"] = dataclasses.replace(nudged, vector=nudged.vector * (1 + 1e-7)).to_bytes()
    check = compare_state(observed, reference, SETTINGS, stream[-1].ts)
    assert (check.missing_profiles, check.lost_events) == (1, 12)
    assert check.other_profile_differences == 1
    assert check.profiles_equal == 1
    assert any("bob: vector differs" in example for example in check.examples)


def test_events_are_split_by_the_decoder_or_by_their_labels() -> None:
    good = json.dumps({"user_id": "u", "item_id": "1", "type": "view", "ts": 5}).encode()
    records = [
        Record(0, 0, b"u", good, 0),
        Record(0, 1, b"u", b"{broken", 0),
        Record(1, 0, None, None, 0),
        Record(1, 1, b"other", good, 0),
    ]
    valid, invalid = split_events(records, SETTINGS.event_weights)
    assert [r.offset for r, _ in valid] == [0, 1]  # the decoder alone does not see keys
    assert [reason for _, reason in invalid] == ["invalid_json", "invalid_json"]
    labelled = {(1, 1): "key_mismatch"}
    valid, invalid = split_events(
        records, SETTINGS.event_weights, lambda r: labelled.get((r.partition, r.offset))
    )
    assert [(r.partition, r.offset) for r, _ in valid] == [(0, 0)]
    assert sorted(reason for _, reason in invalid) == ["invalid_json", "invalid_json", "key_mismatch"]
