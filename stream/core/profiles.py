"""User profiles: a time-decayed interest vector plus bounded recent history.

The interest vector is the decayed sum  v(t) = sum_i w_i * 2^(-(t - t_i)/h) * x_i  over
the user's events (item vector x_i, event weight w_i, half-life h). It is stored decayed
to ``ref_ts``, the newest event time seen, so one update is O(dim) and out-of-order
events are folded in at their own time. Only the direction matters for scoring.

Pure functions and a plain dataclass: no Faust, no Kafka. Agents store profiles in a
changelog-backed table as ``to_bytes`` (a compact binary form); ``to_dict`` is the JSON
form of the worker's profile page and of earlier versions' tables.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# (item_id, ts, weight): compact enough for JSON, enough to rebuild a vector.
HistoryEntry = tuple[str, float, float]
VectorLookup = Callable[[str], "np.ndarray | None"]


def _vector_bytes(vector: np.ndarray) -> bytes:
    """float32 vector -> its little-endian bytes (the stored and published form)."""
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def _vector_from_bytes(data: bytes, count: int = -1, offset: int = 0) -> np.ndarray:
    """Inverse of :func:`_vector_bytes` (``count`` floats from ``offset``; -1: all)."""
    return np.frombuffer(data, dtype="<f4", count=count, offset=offset).astype(np.float32)


def encode_vector(vector: np.ndarray) -> str:
    """float32 vector -> base64 text (little-endian), for JSON tables and topics."""
    return base64.b64encode(_vector_bytes(vector)).decode("ascii")


def decode_vector(text: str) -> np.ndarray:
    """Inverse of :func:`encode_vector`."""
    return _vector_from_bytes(base64.b64decode(text))


def decay(dt: float | np.ndarray, half_life: float) -> float | np.ndarray:
    """Decay factor 2^(-dt/half_life); dt <= 0 gives 1 (no growth into the past)."""
    return np.exp2(-np.maximum(dt, 0.0) / half_life)


def fold_in(
    vector: np.ndarray,
    mass: float,
    ref_ts: float,
    item_vector: np.ndarray,
    weight: float,
    ts: float,
    half_life: float,
) -> tuple[np.ndarray, float, float]:
    """Add one weighted item vector at time ``ts`` to a decayed sum held at ``ref_ts``.

    Returns:
        (vector, mass, ref_ts) decayed to ``max(ref_ts, ts)``; ``mass`` is the decayed
        sum of weights, a confidence measure.
    """
    if ts >= ref_ts:
        keep = float(decay(ts - ref_ts, half_life))
        return vector * keep + weight * item_vector, mass * keep + weight, ts
    late = float(decay(ref_ts - ts, half_life))
    return vector + (weight * late) * item_vector, mass + weight * late, ref_ts


def fold_many(
    vector: np.ndarray,
    mass: float,
    ref_ts: float,
    item_vectors: np.ndarray,
    weights: np.ndarray,
    times: np.ndarray,
    half_life: float,
) -> tuple[np.ndarray, float, float]:
    """:func:`fold_in` of several items at once, in any order: one product for a user's
    events of a batch instead of a few array operations per event.

    Args:
        item_vectors: (k, dim); weights, times: (k,).

    Returns:
        (vector, mass, ref_ts) decayed to ``max(ref_ts, times)``, as folding them one by one.
    """
    new_ref = max(ref_ts, float(times.max()))
    factors = weights * np.exp2(-(new_ref - times) / half_life)
    keep = math.exp2(-(new_ref - ref_ts) / half_life)
    return vector * keep + factors @ item_vectors, mass * keep + float(factors.sum()), new_ref


# Binary profile: magic, header length (uint32 LE), JSON header (scalars, item ids), then
# the vector (float32) and the history and pending times and weights (float64), all LE.
_MAGIC = b"SRP1"
_HEADER_LENGTH = struct.Struct("<I")


def _entries(ids: list[str], values: np.ndarray) -> list[HistoryEntry]:
    n = len(ids)
    return list(zip(ids, values[:n].tolist(), values[n:].tolist(), strict=True))


@dataclass(slots=True)
class UserProfile:
    """What streamrank knows about one user."""

    vector: np.ndarray | None = None
    mass: float = 0.0
    ref_ts: float = 0.0
    model_id: str = ""
    history: list[HistoryEntry] = field(default_factory=list)
    pending: list[HistoryEntry] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    n_events: int = 0
    last_event_ts: float = 0.0

    @property
    def has_interest(self) -> bool:
        """Whether the profile holds a usable interest vector (else: cold start)."""
        return self.vector is not None and self.mass > 0.0

    def seen(self) -> set[str]:
        """Item ids in the bounded history (filtered out of top-K lists)."""
        return {item for item, _, _ in self.history} | {item for item, _, _ in self.pending}

    def _scalars(self) -> dict[str, Any]:
        # The fields besides the vector and the entries, shared by both stored forms.
        return {
            "mass": self.mass,
            "ref_ts": self.ref_ts,
            "model_id": self.model_id,
            "counts": self.counts,
            "n_events": self.n_events,
            "last_event_ts": self.last_event_ts,
        }

    @classmethod
    def _from_parts(
        cls,
        scalars: dict[str, Any],
        vector: np.ndarray | None,
        history: list[HistoryEntry],
        pending: list[HistoryEntry],
    ) -> UserProfile:
        # Inverse of _scalars, with the parts each form stores its own way.
        return cls(
            vector=vector,
            mass=float(scalars["mass"]),
            ref_ts=float(scalars["ref_ts"]),
            model_id=str(scalars["model_id"]),
            history=history,
            pending=pending,
            counts=dict(scalars["counts"]),
            n_events=int(scalars["n_events"]),
            last_event_ts=float(scalars["last_event_ts"]),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the worker's profile page, and the table form of earlier versions."""
        return {
            "vector": None if self.vector is None else encode_vector(self.vector),
            **self._scalars(),
            "history": [list(e) for e in self.history],
            "pending": [list(e) for e in self.pending],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UserProfile:
        """Inverse of :meth:`to_dict`."""
        vector = data.get("vector")
        return cls._from_parts(
            data,
            None if vector is None else decode_vector(vector),
            [(str(i), float(t), float(w)) for i, t, w in data["history"]],
            [(str(i), float(t), float(w)) for i, t, w in data["pending"]],
        )

    def to_bytes(self) -> bytes:
        """The stored form in the ``user-profiles`` table: binary, several times cheaper
        than JSON to write and read (a profile holds hundreds of history times and weights,
        and formatting floats as text dominates JSON's cost)."""
        header = {
            "dim": -1 if self.vector is None else len(self.vector),
            **self._scalars(),
            "history": [item for item, _, _ in self.history],
            "pending": [item for item, _, _ in self.pending],
        }
        head = json.dumps(header, separators=(",", ":")).encode("utf-8")
        parts = [_MAGIC, _HEADER_LENGTH.pack(len(head)), head]
        if self.vector is not None:
            parts.append(_vector_bytes(self.vector))
        for entries in (self.history, self.pending):
            if entries:
                times = [ts for _, ts, _ in entries]
                weights = [weight for _, _, weight in entries]
                parts.append(np.array(times + weights, dtype="<f8").tobytes())
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> UserProfile:
        """Inverse of :meth:`to_bytes`; also reads the JSON form stored by earlier versions."""
        if not data.startswith(_MAGIC):
            return cls.from_dict(json.loads(data))
        start = len(_MAGIC) + _HEADER_LENGTH.size
        (length,) = _HEADER_LENGTH.unpack_from(data, len(_MAGIC))
        header = json.loads(data[start : start + length])
        offset = start + length
        dim = int(header["dim"])
        vector = None
        if dim >= 0:
            vector = _vector_from_bytes(data, dim, offset)
            offset += 4 * dim
        history_ids, pending_ids = header["history"], header["pending"]
        n_history = 2 * len(history_ids)
        values = np.frombuffer(data, dtype="<f8", offset=offset)
        if len(values) != n_history + 2 * len(pending_ids):
            raise ValueError(f"profile of {len(data)} bytes does not match its header")
        history = _entries(history_ids, values[:n_history])
        return cls._from_parts(header, vector, history, _entries(pending_ids, values[n_history:]))


@dataclass(frozen=True, slots=True)
class ProfileParams:
    """How events change a profile."""

    half_life_s: float
    history_size: int
    pending_size: int
    model_id: str


def _fold(profile: UserProfile, item_vector: np.ndarray, weight: float, ts: float, h: float) -> None:
    if profile.vector is None:
        profile.vector = np.zeros_like(item_vector, dtype=np.float32)
        profile.ref_ts = ts
    vector, profile.mass, profile.ref_ts = fold_in(
        profile.vector, profile.mass, profile.ref_ts, item_vector, weight, ts, h
    )
    profile.vector = vector.astype(np.float32, copy=False)


def rebuild_interest(profile: UserProfile, lookup: VectorLookup, params: ProfileParams) -> None:
    """Recompute the interest vector from history with the current model's vectors.

    Used when the profile's vectors came from another model: one ranking never mixes
    vectors of two models. Events older than the bounded history are forgotten.
    """
    profile.vector, profile.mass, profile.ref_ts = None, 0.0, 0.0
    profile.model_id = params.model_id
    in_history = set(profile.history)
    late = [e for e in profile.pending if e not in in_history]
    entries = sorted(profile.history + late, key=lambda e: e[1])
    profile.pending = []
    for item_id, ts, weight in entries:
        vec = lookup(item_id)
        if vec is None:
            profile.pending.append((item_id, ts, weight))
        else:
            _fold(profile, vec, weight, ts, params.half_life_s)
    profile.pending = profile.pending[-params.pending_size :]


def resolve_pending(profile: UserProfile, lookup: VectorLookup, params: ProfileParams) -> int:
    """Fold in pending events whose item vectors have arrived; return how many."""
    if not profile.pending:
        return 0
    still: list[HistoryEntry] = []
    folded = 0
    for item_id, ts, weight in profile.pending:
        vec = lookup(item_id)
        if vec is None:
            still.append((item_id, ts, weight))
        else:
            _fold(profile, vec, weight, ts, params.half_life_s)
            folded += 1
    profile.pending = still
    return folded


def record_event(
    profile: UserProfile,
    item_id: str,
    event_type: str,
    ts: float,
    weight: float,
    encoded: bool,
    params: ProfileParams,
) -> None:
    """Everything :func:`apply_event` does but fold the item's vector in: counters, the
    bounded history, and the pending list for an item not ``encoded`` yet."""
    profile.n_events += 1
    profile.counts[event_type] = profile.counts.get(event_type, 0) + 1
    profile.last_event_ts = max(profile.last_event_ts, ts)
    profile.history.append((item_id, ts, weight))
    if len(profile.history) > params.history_size:
        del profile.history[: len(profile.history) - params.history_size]
    if not encoded:
        profile.pending.append((item_id, ts, weight))
        if len(profile.pending) > params.pending_size:
            del profile.pending[: len(profile.pending) - params.pending_size]


def fold_events(
    profile: UserProfile,
    item_vectors: list[np.ndarray],
    weights: list[float],
    times: list[float],
    half_life: float,
) -> None:
    """Fold recorded events' item vectors (positive weights) into the interest vector at once."""
    if not item_vectors:
        return
    if profile.vector is None:
        profile.vector = np.zeros_like(item_vectors[0], dtype=np.float32)
        profile.ref_ts = min(times)
    vector, profile.mass, profile.ref_ts = fold_many(
        profile.vector,
        profile.mass,
        profile.ref_ts,
        np.stack(item_vectors),
        np.asarray(weights),
        np.asarray(times),
        half_life,
    )
    profile.vector = vector.astype(np.float32)


def apply_event(
    profile: UserProfile,
    item_id: str,
    event_type: str,
    ts: float,
    weight: float,
    item_vector: np.ndarray | None,
    params: ProfileParams,
) -> bool:
    """Apply one interaction to a profile in place.

    Args:
        weight: the event's effective weight (type weight x payload weight).
        item_vector: the item's vector under ``params.model_id``, or None when the item
            is not encoded yet; the event is then kept pending, not lost.

    Returns:
        True when the event went into the interest vector, False when it is pending.
    """
    record_event(profile, item_id, event_type, ts, weight, item_vector is not None, params)
    if item_vector is None:
        return False
    if weight > 0:
        _fold(profile, item_vector, weight, ts, params.half_life_s)
    return True
