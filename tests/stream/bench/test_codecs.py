"""``streamrank bench codecs``: it runs on the production functions and prints its figures."""

from __future__ import annotations

import json

import pytest

from stream.bench.codecs import Figure, per_call_us, results_table
from stream.tools.cli import build_parser, main


def test_help_exits_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["bench", "codecs", "--help"])
    assert info.value.code == 0 and "--repeats" in capsys.readouterr().out


def test_timing_and_table() -> None:
    assert per_call_us(len, ["ab", "c"], repeats=2, seconds=0.001) > 0.0
    table = results_table([Figure("x", 1.234, None, 19.0, "note")])
    assert table.splitlines()[-1] == "| x | 1.23 |  | 19 | note |"


@pytest.mark.slow
def test_a_short_run_prints_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "codecs", "--repeats", "1", "--seconds", "0.001", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert {"user profile", "co-visitation row", "popularity entry", "input event (JSON)"} <= set(figures)
    assert figures["user profile"]["encode_us"] > 0 and figures["popularity entry"]["bytes"] == 20
