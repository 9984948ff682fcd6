"""The stream benchmark's JSON summary, on hand-made phases (the benchmark itself runs in
tests/integration/test_bench_stream.py)."""

from __future__ import annotations

from stream.bench.stream_results import Phase, StreamBenchResult


def _phase(name: str, offered: float | None, p99: float) -> Phase:
    return Phase(name, offered, offered or 1000.0, 100, 10, {"p50": p99 / 4, "p95": p99 / 2, "p99": p99})


def _result(loads: dict[float, Phase]) -> StreamBenchResult:
    return StreamBenchResult(
        workers=2,
        events=1000,
        ceiling=_phase("ceiling", None, 0.0),
        max_throughput=_phase("max", None, 0.0),
        loads=loads,
    )


def test_summary_reports_the_half_load_phase_and_per_worker_rate() -> None:
    result = _result({0.25: _phase("25% of max", 250, 10), 0.5: _phase("50% of max", 500, 20)})
    summary = result.summary()
    assert summary["offered_rate"] == 500
    assert summary["latency_ms"]["p99"] == 20
    assert summary["events_per_s"] == 500  # 1000 events/s over two workers


def test_with_fixed_rates_the_summary_takes_the_phase_nearest_half_load() -> None:
    result = _result(
        {
            0.3: _phase("300/s (30% of max)", 300, 10),
            0.62: _phase("620/s (62% of max)", 620, 30),
            0.9: _phase("900/s (90% of max)", 900, 90),
        }
    )
    assert result.summary()["offered_rate"] == 620
    assert result.summary()["latency_ms"]["p99"] == 30
