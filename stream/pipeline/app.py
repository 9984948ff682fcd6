"""Build the Faust app from settings: broker, security, store, and the broker profile.

Broker quirks live only in the ``embedded`` profile; the defaults target Apache Kafka.
"""

from __future__ import annotations

import ssl
from typing import Any

import faust
from mode import SupervisorStrategyT

from stream.config import Settings


def broker_credentials(settings: Settings) -> Any:
    """Faust credentials for the settings' security protocol (None for PLAINTEXT)."""
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = None
    if protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=settings.ssl_cafile or None)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=settings.sasl_password,
        ssl_context=context,
        mechanism=settings.sasl_mechanism,
    )


def broker_profile_options(settings: Settings) -> dict[str, Any]:
    """Faust options that depend on the broker implementation."""
    if not settings.is_embedded:
        return {}
    # See also stream.kafka.embedded.EmbeddedTransport (fetch wait, end offsets).
    return {
        # Tansu makes a JoinGroup wait half the group's session timeout.
        "broker_session_timeout": 2.0,
        "broker_heartbeat_interval": 0.5,
    }


def create_app(settings: Settings, agent_supervisor: type[SupervisorStrategyT] | None = None) -> faust.App:
    """The Faust app of a streamrank worker (no topics, tables or agents yet).

    Args:
        settings: Worker settings.
        agent_supervisor: The supervisor class Faust builds for each agent (it restarts
            crashed actors); None: Faust's default. The worker passes one that reports
            crashes to its liveness (``stream.pipeline.liveness.crash_reporting_supervisor``).
    """
    # streamrank:// is Faust's aiokafka transport with a cheaper per-message delivery
    # (stream.kafka.transport); tansu:// adds the embedded broker's quirks (stream.kafka.embedded).
    scheme = "tansu" if settings.is_embedded else "streamrank"
    return faust.App(
        settings.app_id,
        broker=[f"{scheme}://{server}" for server in settings.bootstrap_servers],
        broker_credentials=broker_credentials(settings),
        store=settings.store,
        datadir=settings.data_dir,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        key_serializer="raw",
        value_serializer="json",
        consumer_auto_offset_reset="earliest",
        producer_max_batch_size=settings.producer_batch_bytes,
        producer_linger=settings.producer_linger_ms / 1000.0,
        web_enabled=True,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        # stream.pipeline.worker registers the agents (stream.pipeline.agents.register_agents)
        # on this app explicitly; nothing to scan for.
        autodiscover=False,
        # No standby replicas: a partition taken over is recovered from its changelog.
        # Exactly-once state needs each store to be a prefix of its changelog
        # (docs/reliability.md), and a standby promoted under repeated rebalances was
        # seen to lack records it had reported as read (faust-streaming 0.15.3).
        table_standby_replicas=0,
        agent_supervisor=agent_supervisor,  # None: Faust's default
        **broker_profile_options(settings),
    )
