"""Kafka administration and clients (kafka-python): topic creation, producer, consumer.

Used by the CLI, the replay producer and the demo; the workers themselves talk to Kafka
through Faust (aiokafka).
"""

from __future__ import annotations

import logging
import ssl
import time
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from stream.config import Settings
from stream.errors import BrokerUnavailable
from stream.kafka.embedded import EMBEDDED_FETCH_MAX_WAIT_MS

log = logging.getLogger(__name__)


def client_options(settings: Settings) -> dict[str, Any]:
    """Connection options shared by every kafka-python client."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl.create_default_context(cafile=settings.ssl_cafile or None)
    if settings.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password
    return options


def admin_client(settings: Settings, timeout_s: float = 30.0) -> KafkaAdminClient:
    """An admin client, retrying until the broker answers or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return KafkaAdminClient(client_id=f"{settings.app_id}-admin", **client_options(settings))
        except (KafkaError, OSError) as exc:
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"no broker at {settings.broker!r}") from exc
            time.sleep(0.5)


def ensure_topics(settings: Settings, names: list[str] | None = None) -> list[str]:
    """Create the topics that do not exist yet; return the names created.

    Args:
        names: topics to create with the settings' partitions and replication; default
            every external topic of the settings.
    """
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
        missing = [t for t in (settings.all_topics() if names is None else names) if t not in existing]
        created = []
        for name in missing:
            try:
                admin.create_topics([NewTopic(name, settings.topic_partitions, settings.topic_replication)])
                created.append(name)
            except TopicAlreadyExistsError:
                pass  # another worker won the race
        if created:
            log.info("created topics %s with %d partitions", created, settings.topic_partitions)
        return created
    finally:
        admin.close()


def producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """A producer of raw bytes (keys and values are encoded by the caller)."""
    options: dict[str, Any] = {"linger_ms": 5, "acks": 1, **client_options(settings)}
    options.update(overrides)
    return KafkaProducer(**options)


def consumer(settings: Settings, *topics: str, **overrides: Any) -> KafkaConsumer:
    """A group-less consumer reading ``topics`` from the beginning."""
    options: dict[str, Any] = {
        "auto_offset_reset": "earliest",
        "enable_auto_commit": False,
        "group_id": None,
        **client_options(settings),
    }
    if settings.is_embedded:
        options["fetch_max_wait_ms"] = EMBEDDED_FETCH_MAX_WAIT_MS  # see stream.kafka.embedded
    options.update(overrides)
    return KafkaConsumer(*topics, **options)
