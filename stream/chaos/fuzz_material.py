"""The material of fuzzed payloads (``chaos.fuzz``): the worker's limits, and valid messages.

Most kinds of bad payload start from a valid message of their topic and break one thing.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stream.config import Settings


@dataclass(frozen=True, slots=True)
class InputLimits:
    """The worker's limits that decide a payload's reason."""

    max_message_bytes: int
    max_json_depth: int
    max_text_chars: int
    max_candidates: int
    event_types: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> InputLimits:
        """The limits a worker with ``settings`` applies."""
        return cls(
            settings.max_message_bytes,
            settings.max_json_depth,
            settings.max_text_chars,
            settings.max_candidates,
            tuple(settings.event_weights),
        )


# A kind makes (key, value, reason) from the generator's random source, the limits and a topic.
Made = tuple[bytes | None, bytes | None, str | None]
Kind = Callable[[random.Random, InputLimits, str], Made]


def valid_message(rng: random.Random, limits: InputLimits, topic: str) -> tuple[str, dict[str, Any]]:
    """A valid message of ``topic`` with fresh ids: (its key, its JSON object)."""
    user, item = f"fuzz-user-{rng.randrange(10**9)}", f"fuzz-item-{rng.randrange(10**9)}"
    if topic == "events":
        ts = round(rng.uniform(828_000_000.0, 1_900_000_000.0), 3)  # MovieLens' 1996 to 2030
        return user, {"user_id": user, "item_id": item, "type": rng.choice(limits.event_types), "ts": ts}
    if topic == "items":
        return item, {"item_id": item, "title": f"Fuzzed film {rng.randrange(10**6)}", "category": "Drama"}
    count = rng.randint(0, min(5, limits.max_candidates))
    candidates = [f"fuzz-item-{rng.randrange(10**9)}" for _ in range(count)]
    request = f"fuzz-request-{rng.randrange(10**9)}"
    return user, {"request_id": request, "user_id": user, "candidates": candidates}


def key_field(topic: str) -> str:
    """The field of ``topic``'s messages that its key must equal."""
    return "item_id" if topic == "items" else "user_id"


def dump(message: Any) -> bytes:
    """A message as a producer sends it: JSON bytes."""
    return json.dumps(message).encode()


def keyed(key: str, message: Any, reason: str | None) -> Made:
    """A made payload: ``message`` under ``key``, with the reason it must get."""
    return key.encode(), dump(message), reason
