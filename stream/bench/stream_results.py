"""The figures of ``streamrank bench stream``: its phases, the printed table and the report."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# The JSON line reports latency at this load (see docs/results.md, stream benchmark).
_JSON_LOAD = 0.5


@dataclass
class Phase:
    """One measured phase: offered and achieved rates, lists out, latency quantiles."""

    name: str
    offered_per_s: float | None
    achieved_per_s: float
    events: int
    lists: int
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    # CPU cores used over the phase: "workers" (all of them), and where they can be read
    # (embedded broker, Linux) "broker" and "load generator" (this process: the producer
    # offering the events, its client's thread included).
    cpu_cores: dict[str, float] = field(default_factory=dict)


@dataclass
class StreamBenchResult:
    """Everything one run measured."""

    workers: int
    events: int
    ceiling: Phase
    max_throughput: Phase
    loads: dict[float, Phase]

    @property
    def events_per_s_per_worker(self) -> float:
        """Sustained events/s of one worker (the max-throughput phase over the workers)."""
        return self.max_throughput.achieved_per_s / self.workers

    def summary(self) -> dict[str, Any]:
        """The JSON line: per-worker events/s, ceiling, latency and offered rate at 50% load.

        With fixed ``--rates``, the latency phase nearest 50% of the measured maximum.
        """
        at = self.loads[min(self.loads, key=lambda load: abs(load - _JSON_LOAD))]
        return {
            "events_per_s": round(self.events_per_s_per_worker, 1),
            "ceiling_events_per_s": round(self.ceiling.achieved_per_s, 1),
            "latency_ms": at.latency_ms,
            "offered_rate": round(at.offered_per_s or 0.0, 1),
        }

    def phases(self) -> list[Phase]:
        """Every phase in the order it ran."""
        return [self.ceiling, self.max_throughput, *self.loads.values()]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _cores(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def results_table(result: StreamBenchResult) -> str:
    """A Markdown table: phase, offered and achieved events/s, lists out, latency quantiles."""
    lines = [
        "| phase | offered events/s | achieved events/s | lists out | p50 ms | p95 ms | p99 ms "
        "| CPU cores: workers / broker / load generator |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in result.phases():
        offered = "backlog" if p.offered_per_s is None else f"{p.offered_per_s:.0f}"
        lat = p.latency_ms
        cpu = " / ".join(_cores(p.cpu_cores.get(name)) for name in ("workers", "broker", "load generator"))
        lines.append(
            f"| {p.name} | {offered} | {p.achieved_per_s:.0f} | {p.lists} | "
            f"{_ms(lat.get('p50'))} | {_ms(lat.get('p95'))} | {_ms(lat.get('p99'))} | {cpu} |"
        )
    lines.append("")
    lines.append(
        f"events/s per worker: {result.events_per_s_per_worker:.0f} ({result.workers} worker(s)); "
        f"ceiling: {result.ceiling.achieved_per_s:.0f} events/s"
    )
    return "\n".join(lines)


def write_report(directory: Path, result: StreamBenchResult, command: str) -> Path:
    """Write ``stream-bench.md`` and ``latency-vs-throughput.png``; return the .md path."""
    from stream.tools.report import line_plot

    directory.mkdir(parents=True, exist_ok=True)
    png = directory / "latency-vs-throughput.png"
    phases = list(result.loads.values())
    line_plot(
        png,
        [p.achieved_per_s for p in phases],
        {q: [p.latency_ms.get(q) or 0.0 for p in phases] for q in ("p50", "p95", "p99")},
        f"event-to-recommendation latency, {result.workers} worker(s)",
        "achieved events/s (all workers)",
        "latency (ms)",
        {"max throughput": result.max_throughput.achieved_per_s},
    )
    text = [
        "# Stream benchmark",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU(s) visible, "
        f"Python {platform.python_version()}.",
        "",
        results_table(result),
        "",
        "Latency is the workers' `streamrank_event_to_recommendation_seconds` histogram (Kafka "
        "timestamp of the newest input event to the list being sent), differenced over each "
        "phase; quantiles interpolate linearly within its buckets (1, 2.5, 5, 10, 25, 50, 75, "
        "100, 250 ms, ... 10, 30 s), so they are only as fine as the bucket they fall in; a "
        "figure near 30 s means at least that (the top bucket is open-ended).",
        "",
        "Before each latency phase the bench waits until the workers' CPU use drops (item "
        "statistics and global-table changelogs of the previous phase applied).",
        "",
        "The load generator (this benchmark's producer) sends the events due every 5 ms "
        "together, without linger; an event's latency starts at its Kafka timestamp, taken as "
        "it is sent. CPU cores are per phase, over its wall time: "
        "the workers' `process_cpu_seconds_total`, and on Linux the embedded broker's and the "
        "load generator's (for the backlog, the workers' only). On a machine shared by all "
        "three, what the broker and the load generator use is not available to the workers.",
        "",
        f"![latency vs throughput]({png.name})",
        "",
        "```json",
        json.dumps({"summary": result.summary(), "phases": [asdict(p) for p in result.phases()]}, indent=2),
        "```",
        "",
    ]
    md = directory / "stream-bench.md"
    md.write_text("\n".join(text), encoding="utf-8")
    return md
