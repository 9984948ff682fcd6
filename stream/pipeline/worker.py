"""Composition root of a worker: build every component from settings and wire them."""

from __future__ import annotations

import logging

import faust
import torch
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from threadpoolctl import threadpool_limits

from encoders.config import EncoderSettings
from encoders.signature import model_signature
from encoders.text import TextEncoder
from stream.config import Settings
from stream.core.covisit import CovisitParams
from stream.core.model_catalog import ModelCatalog
from stream.core.profiles import ProfileParams
from stream.core.ranking import RankingConfig
from stream.encoding.client import RemoteEncoder
from stream.encoding.embedder import ItemEmbedder
from stream.kafka.admin import ensure_topics
from stream.pipeline.agents import register_agents
from stream.pipeline.agents.context import Pipeline
from stream.pipeline.app import create_app
from stream.pipeline.memory import freeze_startup_objects, time_collections
from stream.pipeline.metrics import Metrics
from stream.pipeline.reencode import register_reencoder
from stream.pipeline.tables import declare_tables
from stream.pipeline.topics import declare_topics
from stream.pipeline.web import register_pages

log = logging.getLogger(__name__)


def build_worker(settings: Settings, encoder: TextEncoder | None = None) -> tuple[faust.App, Pipeline]:
    """Build the Faust app with its topics, tables, agents, background tasks and pages.

    Args:
        settings: Worker settings.
        encoder: An already loaded in-process encoder (tests); by default one is loaded from
            the settings, unless ``STREAMRANK_ENCODER_URL`` names an encoder service.
    """
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    metrics = Metrics(
        registry,
        event_types=sorted(settings.event_weights),
        source_topics=[settings.events_topic, settings.items_topic, settings.rerank_requests_topic],
    )
    embedder = build_embedder(settings.encoder, metrics, encoder)
    metrics.model.info(
        {
            "model": embedder.model_name,
            "model_id": embedder.model_id,
            "dim": str(embedder.dim),
            "device": embedder.device,
        }
    )
    catalog = ModelCatalog(
        embedder.model_id, embedder.dim, settings.similarity_cache_mb << 20, settings.similarity_precision
    )
    app = create_app(settings)
    topics = declare_topics(app, settings)
    tables = declare_tables(app, settings, catalog)
    metrics.items.set_function(lambda: catalog.current().active_count)
    metrics.users.set_function(lambda: len(tables.user_profiles))
    pipeline = Pipeline(
        settings=settings,
        topics=topics,
        tables=tables,
        catalog=catalog,
        embedder=embedder,
        metrics=metrics,
        ranking=RankingConfig.from_settings(settings),
        profile_params=ProfileParams.from_settings(settings, embedder.model_id),
        covisit_params=CovisitParams.from_settings(settings),
    )
    register_agents(app, pipeline)
    register_reencoder(app, pipeline)
    register_pages(app, pipeline)

    @app.on_before_shutdown.connect
    async def close_embedder(app: faust.App, **kwargs: object) -> None:
        await embedder.close()

    return app, pipeline


def build_embedder(
    settings: EncoderSettings, metrics: Metrics, encoder: TextEncoder | None = None
) -> ItemEmbedder:
    """In-process encoding, or the encoder service with a fallback when ``url`` is set.

    With a service, the worker reads only the model's config files (no weights) to know the
    model id and dimension it must receive; the weights are loaded only for a ``local``
    fallback, and only when first needed.
    """
    if not settings.url:
        local = encoder or TextEncoder.from_settings(settings)
        return ItemEmbedder(settings, local.model_id, local.dim, metrics, local=local)
    signature = model_signature(settings)
    remote = RemoteEncoder(settings, signature.model_id, signature.dim, metrics)
    log.info("encoding through %s (model %s, fallback %s)", remote.url, signature.model_id, settings.fallback)
    return ItemEmbedder(
        settings,
        signature.model_id,
        signature.dim,
        metrics,
        local=encoder,
        remote=remote,
        name=signature.name,
    )


def run_worker(settings: Settings) -> None:
    """Run a worker until it is stopped (SIGTERM/SIGINT)."""
    if not settings.bootstrap_servers:
        raise SystemExit("STREAMRANK_BROKER is not set: the worker needs a Kafka broker")
    if settings.create_topics:
        ensure_topics(settings)
    app, pipeline = build_worker(settings)
    limit_ranking_threads(settings.ranking_threads)  # after the encoder set torch's threads
    time_collections(pipeline.metrics.gc_pause)
    frozen = freeze_startup_objects()  # modules and model: never garbage, see stream.pipeline.memory
    log.info("%d objects of the start-up frozen out of garbage collection", frozen)
    faust_worker(app, settings.log_level).execute_from_commandline()


def faust_worker(app: faust.App, log_level: str) -> faust.Worker:
    """The Faust worker that runs ``app``, logging at ``log_level``, without a spinner.

    At WARNING and above Faust shows a terminal spinner fed by a root-logger handler at
    DEBUG and leaves the root logger at DEBUG after start-up: every debug call of aiokafka
    and Faust then builds a record (6% of a worker's main thread at 450 events/s) that
    no handler keeps.
    """
    worker = faust.Worker(app, loglevel=log_level.upper(), quiet=True)
    worker.spinner = None
    return worker


def limit_ranking_threads(threads: int) -> None:
    """Run the ranking's products on ``threads`` threads (0: the libraries' defaults).

    The products are issued from the event loop's thread, a batch at a time: numpy's BLAS
    (limited for the process) and torch's int8 kernels (``SIMILARITY_PRECISION``), which
    use OpenMP. OpenMP's thread count is per thread, and torch sets a thread's count on
    its first use of it, so this thread's is set after that: the encoder's thread keeps
    torch's own count (``ENCODER_THREADS``).
    """
    if threads > 0:
        threadpool_limits(limits=threads, user_api="blas")
        torch.get_num_threads()  # torch's first use on this thread, which would override the limit
        threadpool_limits(limits=threads, user_api="openmp")
