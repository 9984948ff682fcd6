"""Short fault scenarios: the ``streamrank chaos`` scenarios at a small scale.

Each test runs a scenario function of ``stream.chaos`` itself, the command's own code
path, on real worker processes and real MovieLens events, and asserts that every check of
the scenario holds; the report is the failure message.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.chaos.outage import encoder_outage
from stream.chaos.result import ChaosOptions, ScenarioResult
from stream.chaos.scenarios import broker_freeze, kill_repeated
from stream.config import Settings

pytestmark = [pytest.mark.chaos, pytest.mark.kafka, pytest.mark.model, pytest.mark.slow]

# Failures surface within a minute instead of the command's three.
SHORT = {"quiet_timeout_s": 60.0, "restart_timeout_s": 60.0}


def settings_for(broker: tuple[str, str], data: Path) -> Settings:
    """The scenario's settings on the session's broker and the MovieLens data."""
    return Settings(broker=broker[0], broker_profile=broker[1], data=str(data))


def assert_holds(result: ScenarioResult) -> None:
    assert result.checks, result.render()
    assert result.ok, result.render()


def test_the_harness_passes_a_replay_without_faults(
    broker: tuple[str, str], movielens_dir: Path, tmp_path: Path
) -> None:
    # The control: the same replay, checks and reference, nothing injected.
    result = kill_repeated(
        settings_for(broker, movielens_dir),
        ChaosOptions(events=2000, rate=400, no_fault=True, workdir=tmp_path, **SHORT),
    )
    assert_holds(result)
    assert result.figures["profiles_equal"] == result.figures["users"] > 30
    assert result.figures["covisit_rows"] > 300


# Known, not yet fixed (docs/reliability.md, "Open defects"): under the full suite's load
# these two sometimes fail on a stall the scenarios expose, not on their own checks' logic.
# Not strict: they run in every `make test`, and pass when the stall does not occur.
@pytest.mark.xfail(
    strict=False,
    reason="under load a worker's catalog sometimes stops growing before any event (300 s wait)",
)
def test_one_kill_of_a_worker_during_a_replay_keeps_the_state_exact(
    broker: tuple[str, str], movielens_dir: Path, tmp_path: Path
) -> None:
    result = kill_repeated(
        settings_for(broker, movielens_dir),
        ChaosOptions(events=2000, rate=200, kills=1, workdir=tmp_path, **SHORT),
    )
    assert_holds(result)
    assert result.figures["kills"] == 1


@pytest.mark.xfail(
    strict=False,
    reason="after a freeze every session has expired: a worker that has not noticed yet can "
    "finish a batch on partitions already given to the other (no transactions to fence it)",
)
def test_the_workers_resume_by_themselves_after_a_broker_freeze(
    broker: tuple[str, str], movielens_dir: Path, tmp_path: Path
) -> None:
    # The scenario starts a broker of its own: it freezes that one, not the session's.
    result = broker_freeze(
        settings_for(broker, movielens_dir),
        ChaosOptions(events=2000, rate=200, freeze_s=5.0, workdir=tmp_path, **SHORT),
    )
    assert_holds(result)
    assert result.figures["freeze_s"] >= 5.0


def test_lists_keep_flowing_while_the_encoder_service_is_killed(
    broker: tuple[str, str], movielens_dir: Path, tmp_path: Path
) -> None:
    result = encoder_outage(
        settings_for(broker, movielens_dir),
        ChaosOptions(events=2000, rate=100, outages=("killed",), outage_s=5.0, workdir=tmp_path, **SHORT),
    )
    assert_holds(result)
    (phase,) = result.figures["phases"]
    assert phase["deferred"] >= phase["items_sent"] > 0
