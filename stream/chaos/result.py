"""A scenario's options, checks and figures, and how the command prints them."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ChaosOptions:
    """What a scenario runs; None takes the scenario's own default."""

    events: int | None = None  # MovieLens ratings replayed, the earliest ones
    rate: float | None = None  # events per second
    workers: int = 2
    kills: int = 5  # kill-repeated
    kill_at: float = 0.3  # kill-one: fraction of the events sent before the kill
    freeze_s: float = 30.0  # broker-freeze
    outage_s: float = 15.0  # encoder-outage: length of each outage
    outages: tuple[str, ...] = ("killed", "hanging", "503")  # encoder-outage: which, in order
    fuzz: int = 10_000  # fuzz: bad payloads
    seed: int = 0
    no_fault: bool = False  # run the scenario without its fault: the harness's own check
    quiet_s: float = 5.0  # no output for this long (and nothing left to commit): quiet
    quiet_timeout_s: float = 180.0  # a pipeline not quiet by then fails the scenario
    restart_timeout_s: float = 180.0  # a restarted worker not ready by then fails it
    workdir: Path | None = None  # keep logs and state here (default: a temporary directory)


@dataclass(frozen=True, slots=True)
class Check:
    """One property a scenario checks."""

    name: str
    ok: bool
    detail: str = ""


@dataclass
class ScenarioResult:
    """What a scenario found."""

    scenario: str
    fault: bool = True
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Every check holds."""
        return all(check.ok for check in self.checks)

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        """Record one property; returns whether it holds."""
        self.checks.append(Check(name, bool(ok), detail))
        return bool(ok)

    def finish(self) -> ScenarioResult:
        """Stamp the duration."""
        self.seconds = round(time.monotonic() - self.started, 1)
        return self

    def summary(self) -> dict[str, Any]:
        """The JSON line: scenario, verdict, every check, the figures, the duration."""
        return {
            "scenario": self.scenario,
            "fault": self.fault,
            "ok": self.ok,
            "checks": {c.name: c.ok for c in self.checks},
            "figures": self.figures,
            "seconds": self.seconds,
            "machine": f"{platform.machine()}, {_cpus()} CPUs",
        }

    def render(self) -> str:
        """A human-readable report: checks, figures, notes, examples of differences."""
        lines = [f"scenario {self.scenario}{'' if self.fault else ' (no fault injected)'}: "]
        lines[0] += f"{'PASS' if self.ok else 'FAIL'} in {self.seconds:.0f} s"
        lines += [
            f"  [{'ok' if c.ok else 'FAIL'}] {c.name}{': ' + c.detail if c.detail else ''}"
            for c in self.checks
        ]
        lines.append("figures:")
        lines += [f"  {key}: {_show(value)}" for key, value in self.figures.items()]
        if self.notes:
            lines.append("notes:")
            lines += [f"  - {note}" for note in self.notes]
        if self.examples:
            lines.append("examples of differences:")
            lines += [f"  - {example}" for example in self.examples]
        return "\n".join(lines)

    def print(self, as_json: bool) -> None:
        """Print the report; with ``as_json`` the last line is the JSON summary."""
        print(self.render(), flush=True)
        if as_json:
            print(json.dumps(self.summary()), flush=True)


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0
