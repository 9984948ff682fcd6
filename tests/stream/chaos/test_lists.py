"""What the scenarios read from the recommendations topic: re-emitted lists, gaps, answers."""

from __future__ import annotations

import json

import pytest

from stream.chaos.lists import (
    FALLBACK_KEY,
    POSITION_KEY,
    ListRecord,
    first_list_after,
    lists_between,
    longest_silence,
    parse_list,
    reemitted,
    unanswered_users,
)
from stream.chaos.topics import Record


def topk(user: str, partition: int, offset: int | None, emitted: float, events: int = 1) -> ListRecord:
    return ListRecord(user, partition, offset, True, None, 100.0, events, emitted)


def test_a_list_names_the_position_it_answers_or_falls_back_to_its_own_partition() -> None:
    value = {
        "user_id": 42,
        "items": [],
        "model": "m",
        "event_ts": 5.0,
        "profile_events": 3,
        "emitted_ts": 9.5,
    }
    plain = parse_list(Record(2, 7, b"42", json.dumps(value).encode(), 0))
    assert (plain.user_id, plain.partition, plain.has_position, plain.request) == ("42", 2, False, False)
    placed = parse_list(
        Record(2, 8, b"42", json.dumps({**value, "input_partition": 1, "input_offset": 99}).encode(), 0)
    )
    assert (placed.partition, placed.input_offset, placed.has_position) == (1, 99, True)
    answer = parse_list(Record(0, 0, b"42", json.dumps({**value, "request_id": 7}).encode(), 0))
    assert answer.request and answer.request_id == "7"


def test_a_list_sent_again_for_the_same_position_counts_as_re_emitted() -> None:
    lists = [topk("a", 0, 10, 1.0), topk("a", 0, 10, 2.0), topk("a", 0, 11, 3.0), topk("b", 0, 10, 4.0)]
    assert reemitted(lists) == (1, POSITION_KEY)
    # Answers to requests never count.
    request = ListRecord("a", 0, 10, True, "r-1", 100.0, 1, 5.0)
    assert reemitted([*lists, request, request]) == (1, POSITION_KEY)
    # Without positions: the same user, event time and event count.
    old = [ListRecord("a", 0, None, False, None, 100.0, 3, t) for t in (1.0, 2.0)]
    assert reemitted([*old, ListRecord("a", 0, None, False, None, 100.0, 4, 3.0)]) == (1, FALLBACK_KEY)


def test_gaps_and_silences_are_measured_from_the_emission_times() -> None:
    lists = [topk("a", 0, 1, 10.0), topk("b", 1, 1, 10.5), topk("a", 0, 2, 13.0), topk("c", 2, 1, 16.0)]
    gaps = first_list_after(lists, 10.6, 4)
    assert gaps[3] is None and gaps[1] is None  # b's only list came before
    assert (gaps[0], gaps[2]) == (pytest.approx(2.4), pytest.approx(5.4))
    assert longest_silence(lists, 10.0, 20.0) == 4.0  # from the last list to the end
    assert longest_silence(lists, 11.0, 12.0) == 1.0  # no list at all in the window
    assert lists_between(lists, 10.0, 13.0) == 2


def test_a_user_is_answered_by_a_list_at_or_past_their_newest_event() -> None:
    last = {"a": (0, 5, 100.0), "b": (1, 9, 100.0), "c": (2, 3, 100.0)}
    counts = {"a": 2, "b": 4, "c": 1}
    lists = [
        topk("a", 0, 5, 1.0),
        topk("b", 1, 8, 1.0),  # an older event of b's
        ListRecord("c", 2, None, False, None, 100.0, 1, 1.0),  # no position: time and count
    ]
    assert unanswered_users(lists, last, counts) == ["b"]
