"""The command line: every command parses, flags override the environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stream.bench.batch import OWNER_STEPS, STEPS
from stream.tools.cli import build_parser, main, settings_from_args


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["worker", "--help"],
        ["demo", "--help"],
        ["replay", "movielens", "--help"],
        ["topics", "create", "--help"],
        ["eval", "movielens", "--help"],
        ["eval", "mind", "--help"],
        ["bench", "stream", "--help"],
        ["encode-server", "--help"],
        ["bench", "--help"],
        ["bench", "encoder", "--help"],
    ],
)
def test_help_exits_cleanly(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 0
    assert "usage: streamrank" in capsys.readouterr().out


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMRANK_BROKER", "from-env:9092")
    monkeypatch.setenv("STREAMRANK_WEB_PORT", "7000")
    monkeypatch.setenv("STREAMRANK_EVENT_WEIGHTS", '{"view": 1, "buy": 9}')
    args = build_parser().parse_args(["worker", "--broker", "from-flag:9092"])
    settings = settings_from_args(args)
    assert settings.bootstrap_servers == ["from-flag:9092"]
    assert settings.web_port == 7000
    assert settings.event_weights == {"view": 1.0, "buy": 9.0}


def test_encoder_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMRANK_ENCODER_PORT", "9000")
    monkeypatch.setenv("STREAMRANK_ENCODER_MAX_WAIT_MS", "7")
    argv = ["encode-server", "--port", "9100", "--host", "127.0.0.1"]
    settings = settings_from_args(build_parser().parse_args(argv))
    assert settings.encoder.port == 9100
    assert settings.encoder.host == "127.0.0.1"
    assert settings.encoder.max_wait_ms == 7.0
    assert settings_from_args(build_parser().parse_args(["encode-server"])).encoder.port == 9000


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_bench_encoder_on_cuda_without_cuda_fails_clearly(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "encoder", "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_bench_encoder_cpu_clock_needs_one_thread(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STREAMRANK_ENCODER_THREADS", "2")
    assert main(["bench", "encoder", "--device", "cpu", "--clock", "cpu"]) == 2
    assert "STREAMRANK_ENCODER_THREADS=1" in capsys.readouterr().err


@pytest.mark.model
@pytest.mark.slow
def test_bench_encoder_prints_a_table_and_a_json_line(
    movielens_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "encoder", "--device", "cpu", "--n", "24", "--runs", "1", "--batch", "8"]
    assert main([*argv, "--data", str(movielens_dir), "--no-int8", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    for key in ("items_per_s", "baseline_items_per_s", "naive_items_per_s", "min_cosine", "device", "model"):
        assert key in summary, key
    assert summary["device"] == "cpu" and summary["model"] == "all-MiniLM-L6-v2" and summary["n"] == 24
    assert summary["min_cosine"] >= 0.999
    assert any(line.startswith("streamrank (float32)") for line in out)
    assert any(line.startswith("sentence-transformers default") for line in out)


def test_unknown_command_fails() -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["serve"])
    assert info.value.code == 2


def test_eval_flags_parse() -> None:
    args = build_parser().parse_args(
        ["eval", "movielens", "--eval-fraction", "0.1", "--sample", "0.5", "--online", "--json"]
    )
    assert (args.eval_fraction, args.sample, args.online, args.json) == (0.1, 0.5, True, True)


def test_bench_stream_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMRANK_BROKER", "from-env:9092")
    args = build_parser().parse_args(
        ["bench", "stream", "--workers", "2", "--events", "5000", "--json", "--bootstrap", "k:9092"]
    )
    assert (args.command, args.benchmark) == ("bench", "stream")
    assert (args.workers, args.events, args.json, args.duration_s) == (2, 5000, True, 20.0)
    assert settings_from_args(args).bootstrap_servers == ["k:9092"]
    defaults = build_parser().parse_args(["bench", "stream"])
    assert (defaults.workers, defaults.json, defaults.report, defaults.rates) == (1, False, None, None)
    fixed = build_parser().parse_args(["bench", "stream", "--rates", "400,700.5"])
    assert fixed.rates == [400.0, 700.5]
    for bad in ("400,fast", "400,0"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["bench", "stream", "--rates", bad])
    assert settings_from_args(defaults).bootstrap_servers == ["from-env:9092"]


@pytest.mark.model
def test_bench_batch_prints_a_step_table_and_a_json_line(
    movielens_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAMRANK_CACHE_DIR", str(tmp_path))
    argv = ["bench", "batch", "--data", str(movielens_dir), "--max-items", "120", "--sizes", "4,40"]
    window = ["--window-events", "100", "--windows", "2"]
    assert main([*argv, "--events", "80", "--warmup-events", "1000", *window, "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    sizes = json.loads(out[-1])["sizes"]
    assert set(sizes) == {"4", "40"}
    for cost in sizes.values():
        steps = cost["steps_ms"]
        assert set(steps) == set(STEPS) and all(ms >= 0 for ms in steps.values())
        # The steps are the batch's whole work, timed one by one.
        assert 0 < sum(steps.values()) <= cost["ms_per_batch"] * 1.01
        assert cost["users_per_batch"] >= 1
    assert any(line.startswith("| 40 |") for line in out)
    window = json.loads(out[-1])["statistics_window"]
    assert window["events_per_window"] == 100 and window["entries_per_window"] > 0
    assert set(window["steps_us_per_event"]) == set(OWNER_STEPS)
    assert 0 < sum(window["steps_us_per_event"].values()) <= window["us_per_event"] * 1.01
