"""Reading stored item statistics and waiting for workers, shared by the statistics tests."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest

from stream.config import Settings
from stream.core import covisit, popularity
from stream.core.profiles import decay
from stream.tools.process import WorkerProcess

REL = 1e-9  # relative difference allowed between two sums of the same terms


def held_counts(table: dict[str, bytes], ts: float, settings: Settings) -> dict[str, float]:
    """Each stored popularity count of a table, held at ``ts``."""
    out = {}
    for item_id, value in table.items():
        score, held_at = popularity.decode_entry(value)
        out[item_id] = score * float(decay(ts - held_at, settings.popularity_half_life_s))
    return out


def held_rows(table: dict[str, bytes], ts: float, settings: Settings) -> dict[str, dict[str, float]]:
    """Each stored co-visitation row of a table, its weights held at ``ts``."""
    out = {}
    for item_id, value in table.items():
        row = covisit.stored_row(value)
        if row is not None and row.scores:
            factor = float(decay(ts - row.landmark, settings.covisit_half_life_s))
            out[item_id] = {n: s * factor for n, s in row.scores.items()}
    return out


def wait_until_stable(
    workers: Sequence[WorkerProcess], quiet_s: float = 3.0, timeout_s: float = 60.0
) -> None:
    """Wait until every worker has been ready for ``quiet_s``: the group's rebalance is over,
    so no batch is delivered twice by a rebalance during the test."""
    deadline = time.monotonic() + timeout_s
    ready_since: float | None = None
    while time.monotonic() < deadline:
        if all(w.get_json("/readyz")[0] == 200 for w in workers):
            ready_since = ready_since or time.monotonic()
            if time.monotonic() - ready_since >= quiet_s:
                return
        else:
            ready_since = None
        time.sleep(0.25)
    raise AssertionError("the two workers did not settle into one group")


def unequal(name: str, got: dict[str, float], want: dict[str, float]) -> list[str]:
    """How ``got`` differs from ``want``: other keys, or values beyond rounding."""
    out = [] if got.keys() == want.keys() else [f"{name}: keys {sorted(got)} against {sorted(want)}"]
    return out + [
        f"{name}, {key}: {got[key]} against {value}"
        for key, value in want.items()
        if key in got and got[key] != pytest.approx(value, rel=REL)
    ]
