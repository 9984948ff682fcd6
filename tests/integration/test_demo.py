"""``streamrank demo --max-events N`` ends by itself with a JSON summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.model, pytest.mark.slow]


def test_demo_ends_with_a_summary(movielens_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMRANK_")}
    env["STREAMRANK_DATA"] = str(movielens_dir)
    result = subprocess.run(
        [sys.executable, "-m", "stream.tools.cli", "demo", "--max-events", "1000", "--rate", "1000"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["events"] == 1000
    assert summary["items"] == 9742
    assert summary["recommendations"] > 0
    assert summary["dead_letters"] == 0
    assert summary["latency_ms"]["p50"] > 0 and summary["latency_ms"]["p99"] >= summary["latency_ms"]["p50"]
    assert any("/metrics" in line for line in lines)
    assert any(line.startswith("  user ") for line in lines), "live lists are printed"
