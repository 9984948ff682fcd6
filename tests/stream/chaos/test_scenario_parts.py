"""The pure parts of the scenarios: traffic layout, fuzz labels, catalog slices, reports."""

from __future__ import annotations

import json

import pytest

from stream.chaos.fuzz import FuzzPayload
from stream.chaos.fuzzing import Labels, interleave
from stream.chaos.outage import catalog_slices
from stream.chaos.result import ScenarioResult
from stream.chaos.topics import Record


def test_bad_messages_are_spread_among_valid_ones_whose_order_is_kept() -> None:
    valid = [("events", b"u", str(n).encode()) for n in range(50)]
    bad = [("items", None, f"bad-{n}".encode()) for n in range(30)]
    mixed = interleave(valid, bad, seed=3)
    assert len(mixed) == 80
    assert [m for m in mixed if m[0] == "events"] == valid
    assert interleave(valid, bad, seed=3) == mixed
    assert mixed[:50] != valid  # spread, not appended


def test_labels_find_a_payload_again_whatever_form_its_empty_key_came_back_in() -> None:
    payloads = [
        FuzzPayload("events", b"", b'{"user_id": "a"}', "missing_key", "missing_key"),
        FuzzPayload("events", b"k", None, "empty_value", "invalid_json"),
        FuzzPayload("items", b"odd", b'{"item_id": "odd", "title": "t"}', "odd_but_valid_id", None),
    ]
    labels = Labels.of(payloads, {"events": "ev-1", "items": "it-1", "rerank-requests": "rr-1"})
    reason = labels.reason("ev-1")
    assert reason(Record(0, 0, None, b'{"user_id": "a"}', 0)) == "missing_key"
    assert reason(Record(0, 1, b"k", b"", 0)) == "invalid_json"
    assert reason(Record(0, 2, b"u", b'{"user_id": "u"}', 0)) is None  # the scenario's own traffic
    assert labels.of_record("it-1", Record(1, 0, b"odd", payloads[2].value, 0)) == payloads[2]


def test_the_catalog_is_cut_into_a_first_part_and_one_slice_per_outage() -> None:
    items = [("items", str(n).encode(), b"{}") for n in range(100)]
    slices = catalog_slices(items, 3)
    assert [len(s) for s in slices] == [70, 10, 10, 10]
    assert [m for s in slices for m in s] == items
    assert catalog_slices(items, 0) == [items]


def test_the_report_ends_with_one_json_line_and_fails_on_any_check(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = ScenarioResult("kill-one")
    result.check("nothing lost", True, "0")
    result.check("nothing doubled", False, "3 profiles")
    result.figures["takeover_gap_s"] = 4.2
    result.finish().print(as_json=True)
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    assert summary["ok"] is False and summary["checks"] == {"nothing lost": True, "nothing doubled": False}
    assert summary["figures"]["takeover_gap_s"] == 4.2
    assert any("[FAIL] nothing doubled: 3 profiles" in line for line in out)
