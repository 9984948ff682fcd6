"""Run a worker or the encoder service as a child process and read its HTTP pages.

Used by the demo, the tests and the benchmarks; children are stopped by PID.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Self

from prometheus_client.parser import text_string_to_metric_families

from stream.config import Settings
from stream.errors import StreamrankError

# Settings a parent may have changed from its own environment (flags, fresh names) and
# that every worker of its stack must share.
_SHARED_FIELDS = (
    "broker",
    "broker_profile",
    "app_id",
    "topic_partitions",
    "events_topic",
    "items_topic",
    "rerank_requests_topic",
    "recommendations_topic",
    "dead_letters_topic",
)


def worker_env(settings: Settings, data_dir: Path) -> dict[str, str]:
    """Environment of a worker on ``settings``' broker, app id and topics.

    The topics exist already (the parent creates them), so the worker does not.
    """
    env = {f"STREAMRANK_{name.upper()}": str(getattr(settings, name)) for name in _SHARED_FIELDS}
    env["STREAMRANK_DATA_DIR"] = str(data_dir)
    env["STREAMRANK_CREATE_TOPICS"] = "false"
    return env


def log_tail(path: Path, max_chars: int = 3000) -> str:
    """The end of a child process's log, to explain a failure."""
    if not path.exists():
        return f"(no log at {path})"
    return f"--- {path.name}:\n{path.read_text(errors='replace')[-max_chars:]}"


class _ChildProcess:
    """A ``streamrank`` subcommand in a child process with an HTTP server, stopped by PID."""

    command: tuple[str, ...] = ()

    def __init__(self, env: dict[str, str], port: int, log_path: Path) -> None:
        self.env = {**os.environ, **env}
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the child's HTTP server."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        """Start the child (returns at once; see ``wait_ready``)."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - our own CLI, fixed subcommand, no shell
            [sys.executable, "-m", "stream.tools.cli", *self.command],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    def get_json(self, path: str) -> tuple[int, Any]:
        """GET a JSON page: (status, body)."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as response:  # noqa: S310 - loopback
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def metrics(self) -> dict[str, float]:
        """Current samples of /metrics as ``{'name{label="v"}': value}``."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as response:  # noqa: S310 - loopback
            text = response.read().decode("utf-8")
        return parse_samples(text)

    def _check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise StreamrankError(
                f"{' '.join(self.command)} exited with {self.process.returncode}; log: {self.log_path}"
            )

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``; returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


class WorkerProcess(_ChildProcess):
    """``streamrank worker`` in a child process, stopped by PID."""

    command = ("worker",)

    def __init__(self, env: dict[str, str], web_port: int, log_path: Path) -> None:
        super().__init__({**env, "STREAMRANK_WEB_PORT": str(web_port)}, web_port, log_path)

    @property
    def web_port(self) -> int:
        """Port of the worker's HTTP server."""
        return self.port

    def wait_ready(self, timeout_s: float = 120.0, min_items: int = 0) -> None:
        """Wait until /readyz says ready (and at least ``min_items`` are encoded)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                status, body = self.get_json("/readyz")
                if status == 200 and body["items"] >= min_items:
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.25)
        raise StreamrankError(f"worker not ready after {timeout_s}s; log: {self.log_path}")


class EncodeServerProcess(_ChildProcess):
    """``streamrank encode-server`` on 127.0.0.1 in a child process, stopped by PID."""

    command = ("encode-server",)

    def __init__(self, env: dict[str, str], port: int, log_path: Path) -> None:
        super().__init__(
            {**env, "STREAMRANK_ENCODER_HOST": "127.0.0.1", "STREAMRANK_ENCODER_PORT": str(port)},
            port,
            log_path,
        )

    def wait_ready(self, timeout_s: float = 120.0) -> dict[str, Any]:
        """Wait until /healthz answers 200 (model loaded); returns its body."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                status, body = self.get_json("/healthz")
                if status == 200:
                    return dict(body)
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise StreamrankError(f"encode-server not ready after {timeout_s}s; log: {self.log_path}")


def parse_samples(text: str) -> dict[str, float]:
    """Flatten Prometheus text exposition into ``{'name{a="x",b="y"}': value}``."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def add_samples(*samples: dict[str, float]) -> dict[str, float]:
    """Sum of several workers' samples, key by key (counters and histogram buckets add)."""
    out: dict[str, float] = {}
    for one in samples:
        for key, value in one.items():
            out[key] = out.get(key, 0.0) + value
    return out


def sample_delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    """What counters and histogram buckets gained between two scrapes."""
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


def sample_sum(samples: dict[str, float], name: str) -> float:
    """Sum of a metric over all its label values (e.g. ``streamrank_events_total``)."""
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


def histogram_quantile(q: float, samples: dict[str, float], name: str) -> float | None:
    """Prometheus-style quantile (linear within a bucket) of a histogram, all labels summed."""
    buckets: dict[float, float] = {}
    prefix = f"{name}_bucket{{"
    for key, value in samples.items():
        if key.startswith(prefix):
            le = key.split('le="', 1)[1].split('"', 1)[0]
            bound = float("inf") if le == "+Inf" else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + value
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = bound, count
    return lower


def process_cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system, all threads) a process has used so far; None where
    unknown (no ``/proc``, or the process is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            # Fields after the parenthesised command name; utime and stime are 14th and 15th.
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
