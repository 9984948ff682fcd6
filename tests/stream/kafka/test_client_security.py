"""Every Kafka client streamrank builds takes the settings' TLS and SASL options.

The embedded broker speaks neither TLS nor SASL, so each client is built with its
constructor replaced by a recorder that keeps the options and stops there, before any
connection: the worker's Faust producer and consumer (aiokafka), the admin client of topic
creation, the replay producer and the demo's reader (kafka-python), and the benchmark's
load generator and pass-through (aiokafka).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path
from typing import Any

import aiokafka
import pytest

from stream.bench import kafka_load
from stream.config import Settings
from stream.kafka import admin
from stream.pipeline.app import create_app
from stream.tools.demo import RecommendationWatcher
from stream.tools.replay import replay_movielens

certifi = pytest.importorskip("certifi")

SECRET = "s3cret-password"  # noqa: S105 - a test value, never sent anywhere
# (protocol, mechanism) of every supported combination.
COMBINATIONS = [
    ("PLAINTEXT", "PLAIN"),
    ("SSL", "PLAIN"),
    ("SASL_PLAINTEXT", "PLAIN"),
    ("SASL_PLAINTEXT", "SCRAM-SHA-256"),
    ("SASL_SSL", "SCRAM-SHA-256"),
    ("SASL_SSL", "SCRAM-SHA-512"),
]


class Built(Exception):
    """Raised by a recorder once a client's options are recorded: nothing connects."""


class Recorder:
    """Stands in for a client class: records the options of each client built."""

    def __init__(self) -> None:
        self.options: dict[str, dict[str, Any]] = {}

    def cls(self, name: str) -> type:
        """A class named ``name`` whose construction records its options and raises :class:`Built`."""
        recorder = self

        def __init__(self: object, *topics: str, **options: Any) -> None:
            recorder.options[name] = options
            raise Built(name)

        return type(name, (), {"__init__": __init__})


def settings_for(protocol: str, mechanism: str) -> Settings:
    """Settings of a secured cluster, as a deployment sets them."""
    return Settings(
        broker="kafka-1.example:9093,kafka-2.example:9093",
        security_protocol=protocol,
        sasl_mechanism=mechanism,
        sasl_username="streamrank",
        sasl_password=SECRET,
        ssl_cafile=certifi.where(),
        store="memory://",
    )


def assert_secured(options: dict[str, Any], settings: Settings) -> None:
    """The options of one client carry the settings' protocol, mechanism, credentials and CA."""
    protocol = settings.security_protocol
    assert options["bootstrap_servers"] == ["kafka-1.example:9093", "kafka-2.example:9093"]
    assert options["security_protocol"] == protocol
    if protocol.startswith("SASL"):
        assert options["sasl_mechanism"] == settings.sasl_mechanism
        assert options["sasl_plain_username"] == "streamrank"
        assert options["sasl_plain_password"] == SECRET
    if protocol in ("SSL", "SASL_SSL"):
        context = options["ssl_context"]
        assert isinstance(context, ssl.SSLContext)
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        # The CA bundle of the settings, not the system's.
        expected = ssl.create_default_context(cafile=settings.ssl_cafile).get_ca_certs()
        assert context.get_ca_certs() == expected
    else:
        assert options.get("ssl_context") is None


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """Every client class streamrank builds, replaced by a recorder."""
    recording = Recorder()
    for name in ("KafkaAdminClient", "KafkaProducer", "KafkaConsumer"):
        monkeypatch.setattr(admin, name, recording.cls(name))
    # Faust's driver and the benchmark look aiokafka's classes up when they build a client.
    for name in ("AIOKafkaProducer", "AIOKafkaConsumer"):
        monkeypatch.setattr(aiokafka, name, recording.cls(name))
    return recording


# The consumer thread dies of the recorder's exception, as intended.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize(("protocol", "mechanism"), COMBINATIONS)
def test_worker_producer_and_consumer(recorder: Recorder, protocol: str, mechanism: str) -> None:
    settings = settings_for(protocol, mechanism)
    app = create_app(settings)

    async def start() -> None:
        with pytest.raises(Built):
            await app.producer.start()
        # The consumer is built as Faust's consumer thread starts; the thread then crashes,
        # which its start may or may not report.
        try:
            with contextlib.suppress(Built):
                await asyncio.wait_for(app.consumer.start(), timeout=30)
        finally:
            await app.consumer.stop()  # ends the thread while this loop still runs

    asyncio.run(start())
    assert_secured(recorder.options["AIOKafkaProducer"], settings)
    assert_secured(recorder.options["AIOKafkaConsumer"], settings)


@pytest.mark.parametrize(("protocol", "mechanism"), COMBINATIONS)
def test_admin_producer_and_consumer(recorder: Recorder, protocol: str, mechanism: str) -> None:
    settings = settings_for(protocol, mechanism)
    with pytest.raises(Built):
        admin.ensure_topics(settings)  # `streamrank topics create` and the worker's start
    with pytest.raises(Built):
        admin.producer(settings)
    with pytest.raises(Built):
        admin.consumer(settings, "recommendations")
    for name in ("KafkaAdminClient", "KafkaProducer", "KafkaConsumer"):
        assert_secured(recorder.options[name], settings)


@pytest.mark.parametrize(("protocol", "mechanism"), [("SASL_SSL", "SCRAM-SHA-512")])
def test_replay_producer_and_demo_reader(
    recorder: Recorder, tmp_path: Path, protocol: str, mechanism: str
) -> None:
    settings = settings_for(protocol, mechanism)
    for name in ("movies.csv", "ratings.csv"):
        (tmp_path / name).write_text("")
    with pytest.raises(Built):
        replay_movielens(settings, str(tmp_path))
    assert_secured(recorder.options["KafkaProducer"], settings)
    with pytest.raises(Built):
        RecommendationWatcher(settings).run()  # the thread's body, run here
    assert_secured(recorder.options["KafkaConsumer"], settings)


@pytest.mark.parametrize(("protocol", "mechanism"), [("SASL_SSL", "SCRAM-SHA-256"), ("SSL", "PLAIN")])
def test_benchmark_load_generator_and_pass_through(recorder: Recorder, protocol: str, mechanism: str) -> None:
    settings = settings_for(protocol, mechanism)
    with pytest.raises(Built):
        asyncio.run(kafka_load.offer(settings, "events", []))
    assert_secured(recorder.options.pop("AIOKafkaProducer"), settings)
    with pytest.raises(Built):
        asyncio.run(kafka_load.pass_through(settings, "events", "copy", 0))
    assert_secured(recorder.options["AIOKafkaConsumer"], settings)
