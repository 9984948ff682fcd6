"""``streamrank bench codecs``: what encoding and decoding streamrank's messages costs.

Times, per value, the stored forms of the state (user profiles, co-visitation rows,
popularity entries), the item-statistics messages the events agent sends each batch and
the owners decode (and an owner's window: decoding and merging them), and the JSON
contracts: decoding and validating an input event, item and rerank request, and encoding
a recommendation list and a dead letter.

The values are realistic and built with the production functions, without Kafka or a
model: synthetic users take MovieLens-like item ids (Zipf-distributed over 9,700 items)
in bursts, applied with ``batch.apply_user_events`` and a random 384-dimensional float32
vector per item, so a profile carries a full history and the batches' statistics
messages hold the pairs a real batch forms (``ItemIncrements``). Each figure is the best
of several repeats of a timed loop, in microseconds per value.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from stream.bench.codec_values import CANDIDATES, DIM, ROW_NEIGHBOURS, CodecValues
from stream.config import Settings

HELP = "cost of encoding and decoding the stored state, statistics messages and JSON contracts"
DESCRIPTION = (
    "Time encoding and decoding per user profile, co-visitation row, popularity entry and "
    "item-statistics message (60- and 500-event batches), and JSON decoding and validation per "
    "input event, item and rerank request and encoding per list and dead letter, on realistic "
    "synthetic values (no broker, no model)."
)

_LIST_LENGTH = 10
# Batches of the merged window: 7,500 events, 5 s at 1,500 events/s.
_WINDOW_BATCHES = 125
_LIST_FIELDS: dict[str, Any] = {
    "model": "all-MiniLM-L6-v2",
    "event_ts": 1.0e9,
    "emitted_ts": 1.0e9 + 0.5,
    "profile_events": 40,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``streamrank bench codecs``."""
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats; the best is kept")
    parser.add_argument(
        "--seconds", type=float, default=0.2, help="least seconds of one repeat (the loop grows to it)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic values")
    parser.add_argument("--json", action="store_true", help="print a JSON line last")


@dataclass(frozen=True, slots=True)
class Figure:
    """What one kind of value costs: microseconds to encode and to decode it, its bytes."""

    name: str
    encode_us: float | None
    decode_us: float | None
    size: float | None
    note: str = ""

    def summary(self) -> dict[str, Any]:
        """The figure as a JSON-ready dict."""
        return {
            "encode_us": None if self.encode_us is None else round(self.encode_us, 2),
            "decode_us": None if self.decode_us is None else round(self.decode_us, 2),
            "bytes": None if self.size is None else round(self.size, 1),
            "note": self.note,
        }


def per_call_us(fn: Callable[[Any], object], values: Sequence[Any], repeats: int, seconds: float) -> float:
    """Best, over ``repeats``, of the microseconds ``fn`` takes per value of ``values``."""
    loops = 1
    while True:  # grow the loop until one pass over it takes ``seconds``
        started = time.perf_counter()
        for _ in range(loops):
            for value in values:
                fn(value)
        elapsed = time.perf_counter() - started
        if elapsed >= seconds or loops >= 1 << 20:
            break
        loops *= 2 if elapsed == 0 else max(2, min(int(seconds / elapsed) + 1, 16))
    best = elapsed
    for _ in range(repeats - 1):
        started = time.perf_counter()
        for _ in range(loops):
            for value in values:
                fn(value)
        best = min(best, time.perf_counter() - started)
    return 1e6 * best / (loops * len(values))


def measure(settings: Settings, repeats: int, seconds: float, seed: int) -> list[Figure]:
    """Every figure of the benchmark."""
    from stream.core import covisit, popularity
    from stream.core.contracts import decode_event, decode_item, decode_rerank_request
    from stream.core.covisit import CovisitParams
    from stream.core.formats import decode_message, row_arrays
    from stream.core.outputs import RankedItem, encode_dead_letter, encode_recommendation
    from stream.core.profiles import UserProfile
    from stream.core.window import StatisticsWindow
    from stream.errors import InvalidMessage
    from stream.kafka.partitioner import owner_partition

    def timed(fn: Callable[[Any], object], values: Sequence[Any]) -> float:
        return per_call_us(fn, values, repeats, seconds)

    values = CodecValues(settings, seed)
    figures: list[Figure] = []

    profiles = values.full_profiles()
    stored = [p.to_bytes() for p in profiles]
    figures.append(
        Figure(
            "user profile",
            timed(UserProfile.to_bytes, profiles),
            timed(UserProfile.from_bytes, stored),
            sum(map(len, stored)) / len(stored),
            f"{DIM}-dim vector, {len(profiles[0].history)} history + {len(profiles[0].pending)} pending",
        )
    )

    max_neighbours = settings.covisit_max_neighbours
    rows = values.rows()
    row_bytes = [covisit.published_bytes(row, max_neighbours) for row in rows]
    figures.append(
        Figure(
            "co-visitation row",
            timed(lambda row: covisit.published_bytes(row, max_neighbours), rows),
            timed(covisit.stored_row, row_bytes),
            sum(map(len, row_bytes)) / len(row_bytes),
            f"{ROW_NEIGHBOURS} neighbours; write: published_bytes, read: stored_row",
        )
    )
    figures.append(
        Figure(
            "co-visitation row, replayed",
            None,
            timed(row_arrays, row_bytes),
            None,
            "what each worker's catalog decodes of a replayed row, once a ranking reads it",
        )
    )

    entries = [(float(s), values.ts) for s in values.rng.gamma(0.5, 40.0, size=64)]
    entry_bytes = [popularity.encode_entry(s, t) for s, t in entries]
    figures.append(
        Figure(
            "popularity entry",
            timed(lambda entry: popularity.encode_entry(*entry), entries),
            timed(popularity.decode_entry, entry_bytes),
            sum(map(len, entry_bytes)) / len(entry_bytes),
        )
    )

    partitions = settings.topic_partitions

    def owner(key: str) -> int:
        return owner_partition(key, partitions)

    for size in (60, 500):
        batches = [values.batch(size) for _ in range(4)]
        messages = [list(b.messages_by_owner(owner).values()) for b in batches]
        pairs = sum(len(b.pair_sums().values) for b in batches) / len(batches)
        n_messages = sum(map(len, messages)) / len(messages)
        per_batch_encode = timed(lambda b: b.messages_by_owner(owner), batches)
        per_batch_decode = timed(lambda ms: [decode_message(m) for m in ms], messages)
        total = sum(len(m) for ms in messages for m in ms) / len(messages)
        figures.append(
            Figure(
                f"statistics messages, {size}-event batch",
                per_batch_encode,
                per_batch_decode,
                total,
                f"per batch: {n_messages:.0f} messages (one per owner of {partitions}), {pairs:.0f} pairs, "
                f"{sum(len(b.popularity) for b in batches) / len(batches):.0f} items",
            )
        )
        figures.append(
            Figure(
                f"statistics message, {size}-event batch",
                per_batch_encode / n_messages,
                per_batch_decode / n_messages,
                total / n_messages,
                "per message (the batch's figures over its messages)",
            )
        )

    # What an owner does with a window's messages: decode each, merge it into the entries
    # (dict lookups keyed by the decoded ids, whose hashes a fresh string computes once).
    window = [m for _ in range(_WINDOW_BATCHES) for m in values.batch(60).messages_by_owner(owner).values()]
    covisit_params = CovisitParams.from_settings(settings)

    def owner_window(messages: list[bytes]) -> None:
        merging = StatisticsWindow({}, {}, settings.popularity_half_life_s, covisit_params)
        for raw in messages:
            merging.merge(decode_message(raw))

    figures.append(
        Figure(
            "statistics window, per message",
            None,
            timed(owner_window, [window]) / len(window),
            None,
            f"decode and merge (StatisticsWindow.merge) of a window of {_WINDOW_BATCHES} 60-event batches",
        )
    )

    weights, max_text, max_candidates = (
        settings.event_weights,
        settings.max_text_chars,
        settings.max_candidates,
    )
    for name, decode, messages, note in (
        ("input event (JSON)", lambda raw: decode_event(raw, weights), values.event_messages(), ""),
        ("input item (JSON)", lambda raw: decode_item(raw, max_text), values.item_messages(), ""),
        (
            "rerank request (JSON)",
            lambda raw: decode_rerank_request(raw, max_candidates),
            values.rerank_messages(),
            f", {CANDIDATES} candidates",
        ),
    ):
        figures.append(Figure(name, None, timed(decode, messages), None, "decode and validate" + note))
    lists = [
        [
            RankedItem(values.item_ids[k * _LIST_LENGTH + j], 0.123456789 / (j + 1), "similar")
            for j in range(_LIST_LENGTH)
        ]
        for k in range(16)
    ]
    encode_list = lambda items: encode_recommendation("u1", items, **_LIST_FIELDS)  # noqa: E731
    figures.append(Figure("recommendation list (JSON)", timed(encode_list, lists), None, None, "encode"))
    error = InvalidMessage("invalid_json", "JSON is malformed: trailing characters (byte 24)")
    bad = [b'{"user_id": "u", "item_id": "i"} x', b"\xff\xfe\x00\x01"] * 8
    encode_letter = lambda raw: encode_dead_letter("events", 3, 1234, error, raw)  # noqa: E731
    figures.append(Figure("dead letter (JSON)", timed(encode_letter, bad), None, None, "encode"))
    return figures


def results_table(figures: list[Figure]) -> str:
    """A Markdown table: one row per kind of value."""
    lines = ["| value | encode us | decode us | bytes | note |", "|---|---:|---:|---:|---|"]

    def cell(value: float | None, digits: int) -> str:
        return "" if value is None else f"{value:.{digits}f}"

    for f in figures:
        lines.append(
            f"| {f.name} | {cell(f.encode_us, 2)} | {cell(f.decode_us, 2)} | {cell(f.size, 0)} | {f.note} |"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """``streamrank bench codecs``: measure, print the table (and the JSON line)."""
    from threadpoolctl import threadpool_limits

    if args.repeats < 1 or args.seconds <= 0:
        raise SystemExit("--repeats must be at least 1 and --seconds above 0")
    with threadpool_limits(limits=1):  # one BLAS thread, as a worker has
        figures = measure(settings, args.repeats, args.seconds, args.seed)
    print(results_table(figures), flush=True)
    if args.json:
        print(json.dumps({f.name: f.summary() for f in figures}), flush=True)
    return 0
