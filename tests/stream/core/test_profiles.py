"""Decay and profile update math."""

from __future__ import annotations

import json
import struct

import msgspec
import numpy as np
import pytest

from stream.core.batch import apply_user_events
from stream.core.contracts import InteractionEvent
from stream.core.formats import FormatError, StoredProfile
from stream.core.profiles import (
    ProfileParams,
    UserProfile,
    decay,
    decode_vector,
    encode_vector,
    fold_in,
    fold_many,
    rebuild_interest,
    resolve_pending,
)
from tests.params import covisit_params
from tests.reference import apply_event

H = 100.0
WEIGHTS = {"view": 1.0, "click": 2.0}
PARAMS = ProfileParams(half_life_s=H, history_size=3, pending_size=2, model_id="m")


def unit(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_decay_halves_each_half_life_and_never_grows() -> None:
    assert decay(0.0, H) == 1.0
    assert decay(H, H) == pytest.approx(0.5)
    assert decay(3 * H, H) == pytest.approx(0.125)
    assert decay(-50.0, H) == 1.0


def test_fold_in_matches_the_closed_form_in_any_order() -> None:
    a, b, c = unit(1, 0), unit(0, 1), unit(1, 1)
    events = [(a, 1.0, 0.0), (b, 2.0, 100.0), (c, 0.5, 250.0)]
    expected = sum(w * 2 ** (-(250.0 - t) / H) * x for x, w, t in events)
    for order in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
        v, mass, ref = np.zeros(2, np.float32), 0.0, 0.0
        first = True
        for i in order:
            x, w, t = events[i]
            if first:
                ref, first = t, False
            v, mass, ref = fold_in(v, mass, ref, x, w, t, H)
        assert ref == 250.0
        np.testing.assert_allclose(v, expected, rtol=1e-5)
        assert mass == pytest.approx(sum(w * 2 ** (-(250.0 - t) / H) for _, w, t in events))


def test_folding_many_at_once_equals_folding_one_by_one_late_events_included() -> None:
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(6, 4)).astype(np.float32)
    weights = rng.uniform(0.1, 2.0, 6)
    times = np.array([500.0, 120.0, 610.0, 610.0, 90.0, 300.0])  # some before the profile's time
    v0, mass0, ref0 = rng.normal(size=4).astype(np.float32), 1.5, 400.0
    v, mass, ref = v0, mass0, ref0
    for x, w, t in zip(xs, weights, times, strict=True):
        v, mass, ref = fold_in(v, mass, ref, x, float(w), float(t), H)
    got_v, got_mass, got_ref = fold_many(v0, mass0, ref0, xs, weights, times, H)
    assert got_ref == ref == 610.0
    np.testing.assert_allclose(got_v, v, rtol=1e-5)
    assert got_mass == pytest.approx(mass)
    # All events older than the profile: held at the profile's time.
    assert fold_many(v0, mass0, ref0, xs[:1], weights[:1], np.array([10.0]), H)[2] == ref0


def test_a_users_batch_of_events_updates_the_profile_as_one_event_at_a_time() -> None:
    vectors = {"a": unit(1, 0), "b": unit(0, 1), "c": unit(1, 1)}
    events = [
        InteractionEvent("u", "b", "view", 30.0, 1.0),
        InteractionEvent("u", "new", "view", 35.0, 1.0),  # no vector yet: pending
        InteractionEvent("u", "a", "click", 10.0, 0.5),
        InteractionEvent("u", "c", "view", 20.0, 0.0),  # weight 0: history only
    ]
    one_by_one = UserProfile(model_id="m")
    apply_event(one_by_one, "x", "view", 25.0, 1.0, unit(1, 2), PARAMS)
    batched = UserProfile.from_bytes(one_by_one.to_bytes())
    for ev in sorted(events, key=lambda e: e.ts):
        apply_event(
            one_by_one,
            ev.item_id,
            ev.type,
            ev.ts,
            WEIGHTS[ev.type] * ev.weight,
            vectors.get(ev.item_id),
            PARAMS,
        )
    update = apply_user_events(batched, events, vectors.get, PARAMS, WEIGHTS, covisit_params())
    assert update.unencoded == 1
    for field in ("history", "pending", "counts", "n_events", "last_event_ts", "ref_ts"):
        assert getattr(batched, field) == getattr(one_by_one, field)
    np.testing.assert_allclose(batched.vector, one_by_one.vector, rtol=1e-6)
    assert batched.mass == pytest.approx(one_by_one.mass)


def test_apply_event_updates_counters_history_and_vector() -> None:
    p = UserProfile(model_id="m")
    assert apply_event(p, "a", "click", 10.0, 2.0, unit(1, 0), PARAMS)
    assert apply_event(p, "b", "view", 20.0, 1.0, unit(0, 1), PARAMS)
    assert p.counts == {"click": 1, "view": 1} and p.n_events == 2 and p.last_event_ts == 20.0
    assert [h[0] for h in p.history] == ["a", "b"]
    assert p.has_interest and p.vector.dtype == np.float32
    # a (weight 2, 10 s older) outweighs b (weight 1)
    assert p.vector[0] > p.vector[1]


def test_history_is_bounded_and_seen_covers_it() -> None:
    p = UserProfile(model_id="m")
    for i in range(5):
        apply_event(p, f"i{i}", "view", float(i), 1.0, unit(1, 0), PARAMS)
    assert [h[0] for h in p.history] == ["i2", "i3", "i4"]
    assert p.seen() == {"i2", "i3", "i4"}


def test_unencoded_item_is_pending_then_folded_in() -> None:
    p = UserProfile(model_id="m")
    assert not apply_event(p, "new", "click", 5.0, 1.0, None, PARAMS)
    assert not p.has_interest and p.pending == [("new", 5.0, 1.0)]
    vectors = {"new": unit(0, 1)}
    assert resolve_pending(p, vectors.get, PARAMS) == 1
    assert p.pending == [] and p.has_interest
    np.testing.assert_allclose(p.vector, unit(0, 1))


def test_pending_is_bounded() -> None:
    p = UserProfile(model_id="m")
    for i in range(4):
        apply_event(p, f"x{i}", "view", float(i), 1.0, None, PARAMS)
    assert [e[0] for e in p.pending] == ["x2", "x3"]


def test_rebuild_uses_only_the_new_model() -> None:
    p = UserProfile(model_id="old")
    apply_event(p, "a", "view", 1.0, 1.0, unit(1, 0), PARAMS)
    apply_event(p, "b", "view", 2.0, 1.0, None, PARAMS)
    new_vectors = {"a": unit(0, 1), "b": unit(0, 1)}
    rebuild_interest(p, new_vectors.get, PARAMS)
    assert p.model_id == "m" and p.pending == []
    np.testing.assert_allclose(p.vector / np.linalg.norm(p.vector), unit(0, 1), atol=1e-6)


def test_item_vectors_round_trip_through_their_text_form() -> None:
    v = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    np.testing.assert_array_equal(decode_vector(encode_vector(v)), v)


def _fields(p: UserProfile) -> tuple:
    vector = None if p.vector is None else (p.vector.dtype, p.vector.tolist())
    return (vector, p.mass, p.ref_ts, p.model_id, p.history, p.pending, p.counts, p.n_events, p.last_event_ts)


def _busy_profile() -> UserProfile:
    rng = np.random.default_rng(3)
    params = ProfileParams(half_life_s=H, history_size=200, pending_size=5, model_id="m")
    p = UserProfile(model_id="m")
    for i in range(260):  # past the bounded history; odd ids and times included
        vector = None if i % 50 == 7 else rng.standard_normal(384).astype(np.float32)
        kind = "view" if i % 3 else "click"
        apply_event(p, f'item-{i}-é"', kind, 1e9 + i * 0.1, 0.5 + i / 7, vector, params)
    return p


@pytest.mark.parametrize(
    "profile",
    [UserProfile(), UserProfile(model_id="m", counts={"view": 0}), _busy_profile()],
    ids=["empty", "cold", "busy"],
)
def test_stored_form_round_trips_exactly(profile: UserProfile) -> None:
    decoded = UserProfile.from_bytes(profile.to_bytes())
    assert _fields(decoded) == _fields(profile)
    assert all(type(entry) is tuple for entry in decoded.history + decoded.pending)
    if decoded.vector is not None:
        decoded.vector += 1.0  # a vector of its own, writable: updates change it in place


def test_numpy_numbers_in_a_profile_are_stored_as_numbers() -> None:
    p = UserProfile(
        vector=unit(1, 0), mass=np.float64(2.0), history=[("a", np.float64(1.5), np.float32(0.5))]
    )
    q = UserProfile.from_bytes(p.to_bytes())
    assert (q.mass, q.history) == (2.0, [("a", 1.5, 0.5)])


def _earlier_forms() -> list[bytes]:
    header = b'{"dim":-1,"mass":0.0,"ref_ts":0.0,"model_id":"m","counts":{},"n_events":0,'
    header += b'"last_event_ts":0.0,"history":[],"pending":[]}'
    return [
        b"SRP1" + struct.pack("<I", len(header)) + header,  # the hand-made binary form
        json.dumps({"vector": None, "mass": 0.0, "history": [], "pending": []}).encode(),  # JSON
    ]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (_earlier_forms()[0], "not a stored user profile"),
        (_earlier_forms()[1], "not a stored user profile"),
        (_busy_profile().to_bytes()[:-8], "truncated"),
        (UserProfile().to_bytes() + b"\x00", "trailing"),
        (b"\xc1", "not a stored user profile"),
        (
            msgspec.msgpack.encode(StoredProfile(b"\x00" * 6, 0.0, 0.0, "m", {}, 0, 0.0, [], [])),
            "whole number",
        ),
        (
            msgspec.msgpack.encode(StoredProfile(None, 0.0, 0.0, "m", {}, 0, 0.0, [("a", 1.0)], [])),
            r"at `\$\.history\[0\]`",
        ),
    ],
)
def test_anything_but_a_stored_profile_is_refused_with_a_clear_error(data: bytes, match: str) -> None:
    """No reader of earlier forms is left: they, and garbage, raise FormatError."""
    with pytest.raises(FormatError, match=match):
        UserProfile.from_bytes(data)
