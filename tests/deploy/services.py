"""Real servers the live deployment test starts: Prometheus, and the encoder service.

Both run as child processes on free loopback ports and are stopped by PID.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from stream.kafka.embedded import free_port
from tests.deploy.tools import ROOT, tool

T = TypeVar("T")

COMPOSE_PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"


def wait_for(
    check: Callable[[], T | None],
    timeout_s: float,
    what: str,
    interval_s: float = 0.5,
    state: Callable[[], str] | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after the timeout.

    ``state``, if given, describes what was seen instead; its text ends the failure message.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            seen = f"\n{state()}" if state is not None else ""
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}{seen}")
        time.sleep(interval_s)


def _stop(process: subprocess.Popen[bytes] | None, timeout_s: float = 20.0) -> None:
    if process is None or process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()


def live_config(targets: dict[str, list[str]], rule_files: list[Path]) -> dict[str, Any]:
    """The compose Prometheus configuration, scraping ``targets`` (job -> host:port) every second.

    Jobs keep their names (the rules and dashboards select on them); jobs without targets
    here are dropped, and the given rule files replace the relative glob.
    """
    config = yaml.safe_load(COMPOSE_PROMETHEUS_CONFIG.read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(path) for path in rule_files]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    missing = set(targets) - set(jobs)
    assert not missing, f"jobs {missing} are not in {COMPOSE_PROMETHEUS_CONFIG}"
    config["scrape_configs"] = [
        {
            "job_name": name,
            "metrics_path": jobs[name].get("metrics_path", "/metrics"),
            "static_configs": [{"targets": t}],
        }
        for name, t in targets.items()
    ]
    return config


class PrometheusServer:
    """A Prometheus server (Debian's ``prometheus`` binary) on a free loopback port."""

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        self.workdir = workdir
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> PrometheusServer:
        """Start the server and wait until it reports ready."""
        with (self.workdir / "prometheus.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    tool("prometheus"),
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self._ready, timeout_s, f"Prometheus ready (log: {self.workdir / 'prometheus.log'})")
        return self

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.process.returncode}; see {self.workdir}")
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as response:  # noqa: S310 - loopback
                return response.status == 200
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        """GET an API path; returns ``data`` of a successful answer, raises on an error answer."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query: the series of the result (a scalar is one series without labels)."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL if it does not stop."""
        _stop(self.process)


class EncoderService:
    """``streamrank encode-server`` on a free loopback port.

    Scraped as job ``streamrank-encoder`` by the live test once the encoder service is in
    this tree (``LIVE_SOURCES`` in ``observability.py``); its workers then get
    ``STREAMRANK_ENCODER_URL=self.url``.
    """

    def __init__(self, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL, the value of a worker's STREAMRANK_ENCODER_URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 180.0) -> EncoderService:
        """Start the service and wait until /healthz answers 200 (model loaded)."""
        argv = [
            sys.executable,
            "-m",
            "stream.tools.cli",
            "encode-server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        with (self.workdir / "encoder.log").open("ab") as log:
            self.process = subprocess.Popen(
                argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_for(self._healthy, timeout_s, f"encoder /healthz (log: {self.workdir / 'encoder.log'})")
        return self

    def _healthy(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"encode-server exited with {self.process.returncode}; see {self.workdir}")
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=2) as response:  # noqa: S310 - loopback
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL if it does not stop."""
        _stop(self.process)
