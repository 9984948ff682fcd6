"""Composition root of a worker: build every component from settings and wire them."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import faust
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

from encoders.text import TextEncoder
from stream.admin import ensure_topics
from stream.agents import Pipeline, register_agents
from stream.app import create_app
from stream.catalog import CatalogIndex
from stream.config import Settings
from stream.metrics import Metrics
from stream.profiles import ProfileParams
from stream.ranking import RankingConfig
from stream.tables import declare_tables
from stream.topics import declare_topics
from stream.web import register_pages

log = logging.getLogger(__name__)


def build_worker(settings: Settings, encoder: TextEncoder | None = None) -> tuple[faust.App, Pipeline]:
    """Build the Faust app with its topics, tables, agents and pages."""
    encoder = encoder or TextEncoder.from_settings(settings.encoder)
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    metrics = Metrics(
        registry,
        event_types=sorted(settings.event_weights),
        source_topics=[settings.events_topic, settings.items_topic, settings.rerank_requests_topic],
    )
    metrics.model.info(
        {
            "model": encoder.model_name,
            "model_id": encoder.model_id,
            "dim": str(encoder.dim),
            "device": encoder.device,
        }
    )
    index = CatalogIndex(encoder.model_id, encoder.dim)
    app = create_app(settings)
    topics = declare_topics(app, settings)
    tables = declare_tables(app, settings, index)
    metrics.items.set_function(lambda: index.active_count)
    metrics.users.set_function(lambda: len(tables.user_profiles))
    pipeline = Pipeline(
        settings=settings,
        topics=topics,
        tables=tables,
        index=index,
        encoder=encoder,
        metrics=metrics,
        ranking=RankingConfig.from_settings(settings),
        profile_params=ProfileParams(
            half_life_s=settings.interest_half_life_s,
            history_size=settings.history_size,
            pending_size=settings.pending_size,
            model_id=encoder.model_id,
        ),
        covisit_params=settings.covisit_params(),
        encode_executor=ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder"),
    )
    register_agents(app, pipeline)
    register_pages(app, pipeline)
    return app, pipeline


def run_worker(settings: Settings) -> None:
    """Run a worker until it is stopped (SIGTERM/SIGINT)."""
    if not settings.bootstrap_servers:
        raise SystemExit("STREAMRANK_BROKER is not set: the worker needs a Kafka broker")
    if settings.create_topics:
        ensure_topics(settings)
    app, _ = build_worker(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    worker.execute_from_commandline()
