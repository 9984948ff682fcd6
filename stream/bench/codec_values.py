"""Realistic values of every codec, for ``streamrank bench codecs``.

Synthetic users take MovieLens-like item ids (Zipf-distributed over 9,700 items) in
bursts, applied with ``batch.apply_user_events`` and a random 384-dimensional float32
vector per item, so a profile carries a full history and the batches' statistics
messages hold the pairs a real batch forms (``ItemIncrements``).
"""

from __future__ import annotations

import json
from typing import Any

from stream.config import Settings

# The catalog's size and the vectors' dimension: MovieLens ml-latest-small, all-MiniLM-L6-v2.
ITEMS = 9700
DIM = 384
_USERS = 400
# Events applied before measuring: enough for the busiest users to fill their history.
_WARMUP_EVENTS = 24000
ROW_NEIGHBOURS = 40
CANDIDATES = 100


class CodecValues:
    """Realistic values of every codec, built with the production functions."""

    def __init__(self, settings: Settings, seed: int) -> None:
        import numpy as np

        from stream.core.batch import apply_user_events
        from stream.core.contracts import InteractionEvent
        from stream.core.covisit import CovisitParams
        from stream.core.profiles import ProfileParams, UserProfile
        from stream.core.statistics import ItemIncrements

        self.settings = settings
        self.rng = rng = np.random.default_rng(seed)
        # MovieLens-like ids (1..193609, as strings), Zipf-like popularity.
        self.item_ids = [str(i) for i in np.sort(rng.choice(193609, ITEMS, replace=False) + 1)]
        weights = 1.0 / np.arange(1, ITEMS + 1) ** 0.8
        self.item_p = weights / weights.sum()
        vectors = rng.standard_normal((ITEMS, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        self.vectors = dict(zip(self.item_ids, vectors, strict=True))
        user_weights = 1.0 / np.arange(1, _USERS + 1) ** 0.7
        self.user_p = user_weights / user_weights.sum()
        self.profile_params = ProfileParams.from_settings(settings, "all-MiniLM-L6-v2")
        self.covisit_params = CovisitParams.from_settings(settings)
        self.profiles: dict[str, UserProfile] = {}
        self.ts = 1.0e9
        self._event_type = InteractionEvent
        self._apply = apply_user_events
        self._increments = ItemIncrements
        while sum(p.n_events for p in self.profiles.values()) < _WARMUP_EVENTS:
            self.batch(500)

    def events(self, n: int) -> list[Any]:
        """``n`` events in time order: users' bursts of a few items, a second apart."""
        rng, out = self.rng, []
        types = list(self.settings.event_weights)
        while len(out) < n:
            user = f"u{rng.choice(_USERS, p=self.user_p)}"
            for item in rng.choice(ITEMS, size=min(int(rng.geometric(0.15)), n - len(out)), p=self.item_p):
                self.ts += 1.0
                kind = types[int(rng.integers(len(types)))]
                out.append(self._event_type(user, self.item_ids[item], kind, self.ts, 1.0))
        return out

    def batch(self, n: int) -> Any:
        """Apply a batch of ``n`` events as the events agent does; its ``ItemIncrements``."""
        events = self.events(n)
        settings = self.settings
        increments = self._increments.of_batch(
            events, settings.event_weights, settings.popularity_half_life_s
        )
        by_user: dict[str, list[Any]] = {}
        for ev in events:
            by_user.setdefault(ev.user_id, []).append(ev)
        for user_id, user_events in by_user.items():
            update = self._apply(
                self.profiles.get(user_id),
                user_events,
                self.vectors.get,
                self.profile_params,
                settings.event_weights,
                self.covisit_params,
                increments,
            )
            self.profiles[user_id] = update.profile
        increments.pair_sums()  # paired now, so that encoding times the encoding alone
        return increments

    def full_profiles(self) -> list[Any]:
        """Profiles with a full history and an interest vector (a few pending events too)."""
        full = [p for p in self.profiles.values() if len(p.history) >= self.settings.history_size]
        for k, profile in enumerate(full):  # events on items not encoded yet, as a live worker sees
            profile.pending = [(f"new{k}-{j}", self.ts - j, 1.0) for j in range(4)]
        return full[:16]

    def rows(self) -> list[Any]:
        """Co-visitation rows of ``ROW_NEIGHBOURS`` neighbours."""
        from stream.core.covisit import CovisitRow

        rows = []
        for _ in range(16):
            picked = self.rng.choice(ITEMS, size=ROW_NEIGHBOURS, replace=False)
            scores = self.rng.gamma(0.5, 2.0, size=ROW_NEIGHBOURS) * 2.0**20
            rows.append(
                CovisitRow(
                    self.ts, dict(zip([self.item_ids[i] for i in picked], scores.tolist(), strict=True))
                )
            )
        return rows

    def event_messages(self) -> list[bytes]:
        return [
            json.dumps(
                {
                    "user_id": int(ev.user_id[1:]),
                    "item_id": int(ev.item_id),
                    "type": "rate",
                    "ts": ev.ts,
                    "weight": 0.8,
                }
            ).encode()
            for ev in self.events(64)
        ]

    def item_messages(self) -> list[bytes]:
        words = ["space", "alien", "crew", "ship", "dark", "classic", "comedy", "drama", "heist", "robot"]
        out = []
        for k in range(64):
            tags = ", ".join(self.rng.choice(words, size=6).tolist())
            message = {
                "item_id": int(self.item_ids[k]),
                "title": f"Some Movie Title Number {k} (1995)",
                "category": "Adventure, Animation, Children, Comedy, Fantasy",
                "text": f"Tags: {tags}",
                "ts": 788918400,
            }
            out.append(json.dumps(message).encode())
        return out

    def rerank_messages(self) -> list[bytes]:
        out = []
        for k in range(32):
            candidates = self.rng.choice(ITEMS, size=CANDIDATES, replace=False)
            message = {
                "request_id": f"req-{k}",
                "user_id": f"u{k}",
                "candidates": [int(self.item_ids[i]) for i in candidates],
                "k": 10,
                "ts": self.ts,
            }
            out.append(json.dumps(message).encode())
        return out
