"""``streamrank chaos``: its arguments, and a scenario that cannot start failing cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.chaos import runner
from stream.chaos.result import ChaosOptions, ScenarioResult
from stream.config import Settings
from stream.errors import StreamrankError
from stream.tools.cli import build_parser, main


def test_the_chaos_command_takes_a_scenario_and_its_options() -> None:
    args = build_parser().parse_args(
        ["chaos", "kill-repeated", "--json", "--events", "2000", "--kills", "1", "--workdir", "chaos-logs"]
    )
    assert (args.scenario, args.json, args.events, args.kills, args.workdir) == (
        "kill-repeated",
        True,
        2000,
        1,
        Path("chaos-logs"),
    )
    args = build_parser().parse_args(["chaos", "encoder-outage", "--outages", "503,killed", "--no-fault"])
    assert (args.outages, args.no_fault) == ("503,killed", True)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["chaos", "meteor-strike"])
    assert set(runner.DESCRIPTIONS) == {
        "kill-repeated",
        "kill-one",
        "broker-freeze",
        "encoder-outage",
        "fuzz",
    }
    for name in runner.DESCRIPTIONS:
        assert callable(runner.scenario(name))


def test_a_scenario_that_cannot_start_fails_with_a_report_and_exit_status_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def never_ready(settings: Settings, options: ChaosOptions) -> ScenarioResult:
        raise StreamrankError("worker w1 not ready after 300 s\n--- worker-w1.log:\nlast words")

    monkeypatch.setattr(runner, "scenario", lambda name: never_ready)
    assert main(["chaos", "kill-one", "--json"]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert '"ok": false' in lines[-1] and '"scenario ran to its end": false' in lines[-1]
    assert any("last words" in line for line in lines)
