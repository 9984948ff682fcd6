"""What the ``recommendations`` topic shows of a fault: re-emitted lists, silences, answers.

Lists are read back once the pipeline is quiet; their timing comes from ``emitted_ts``,
the wall time a worker sent them (every process of a scenario runs on one host, one
clock). A list names the events-topic position of the newest event it reflects
(``input_partition``, ``input_offset``) where the workers write them; without them a
list is identified by its user, ``event_ts`` and ``profile_events``, which tells a list
sent again for the same events (after a crash, once events are applied exactly once)
but not one answering doubled events (its ``profile_events`` differs).
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from stream.chaos.topics import Record, read_records
from stream.config import Settings

POSITION_KEY = "user, input partition, input offset"
FALLBACK_KEY = "user, event_ts, profile_events (the lists carry no input position)"


@dataclass(frozen=True, slots=True)
class ListRecord:
    """One ``recommendations`` message, as far as the scenarios look at it."""

    user_id: str
    partition: int  # the events partition it answers (``input_partition``, else its own)
    input_offset: int | None
    has_position: bool  # the message carries ``input_partition``/``input_offset``
    request_id: str | None  # set on an answer to a rerank request
    event_ts: float | None
    profile_events: int
    emitted_ts: float

    @property
    def request(self) -> bool:
        """Whether the list answers a rerank request (else: a top-K list after events)."""
        return self.request_id is not None


def parse_list(record: Record) -> ListRecord:
    """A ``recommendations`` record as a :class:`ListRecord`."""
    value = json.loads(record.value or b"{}")
    has_position = "input_partition" in value or "input_offset" in value
    partition = value.get("input_partition")
    return ListRecord(
        user_id=str(value["user_id"]),
        partition=record.partition if partition is None else int(partition),
        input_offset=value.get("input_offset"),
        has_position=has_position,
        request_id=None if value.get("request_id") is None else str(value["request_id"]),
        event_ts=value.get("event_ts"),
        profile_events=int(value.get("profile_events", 0)),
        emitted_ts=float(value["emitted_ts"]),
    )


def read_lists(settings: Settings) -> list[ListRecord]:
    """Every list of the scenario's ``recommendations`` topic, in emission order."""
    lists = [parse_list(r) for r in read_records(settings, settings.recommendations_topic)]
    return sorted(lists, key=lambda item: item.emitted_ts)


def reemitted(lists: Iterable[ListRecord]) -> tuple[int, str]:
    """(top-K lists sent again for what an earlier list already answered, the key used)."""
    topk = [item for item in lists if not item.request]
    with_position = bool(topk) and all(item.has_position for item in topk)
    if with_position:
        keys = Counter((i.user_id, i.partition, i.input_offset) for i in topk if i.input_offset is not None)
        kind = POSITION_KEY
    else:
        keys = Counter((i.user_id, i.event_ts, i.profile_events) for i in topk)
        kind = FALLBACK_KEY
    return sum(n - 1 for n in keys.values()), kind


def first_list_after(lists: Sequence[ListRecord], since: float, partitions: int) -> dict[int, float | None]:
    """Per events partition: seconds from ``since`` to its first list sent after it
    (None: no list after it)."""
    out: dict[int, float | None] = dict.fromkeys(range(partitions))
    for item in lists:
        if item.emitted_ts > since and out.get(item.partition) is None:
            out[item.partition] = item.emitted_ts - since
    return out


def longest_silence(lists: Sequence[ListRecord], start: float, end: float) -> float:
    """The longest stretch of [start, end] without any list sent (lists sorted by time)."""
    times = [start, *(i.emitted_ts for i in lists if start < i.emitted_ts < end), end]
    return max(b - a for a, b in itertools.pairwise(times))


def lists_between(lists: Sequence[ListRecord], start: float, end: float) -> int:
    """How many lists were sent in [start, end)."""
    return sum(1 for i in lists if start <= i.emitted_ts < end)


def unanswered_users(
    lists: Iterable[ListRecord],
    last_event: Mapping[str, tuple[int, int, float]],
    events_of: Mapping[str, int],
) -> list[str]:
    """Users whose newest event no list reflects.

    Args:
        last_event: per user, (partition, last offset, newest event time) of their events.
        events_of: per user, how many valid events they have.
    """
    answered: set[str] = set()
    for item in lists:
        if item.request or item.user_id not in last_event:
            continue
        partition, offset, ts = last_event[item.user_id]
        if item.has_position:
            if item.partition == partition and (item.input_offset or -1) >= offset:
                answered.add(item.user_id)
        elif item.event_ts == ts and item.profile_events >= events_of[item.user_id]:
            answered.add(item.user_id)
    return sorted(last_event.keys() - answered)
