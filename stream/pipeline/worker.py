"""Composition root of a worker: build every component from settings and wire them."""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
import threading
from collections.abc import Callable

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
from stream.kafka.copartition import require_copartitioned
from stream.pipeline.agents import register_agents
from stream.pipeline.agents.context import Pipeline
from stream.pipeline.app import create_app
from stream.pipeline.liveness import Liveness, crash_reporting_supervisor, start_watchdog
from stream.pipeline.memory import freeze_startup_objects, time_collections
from stream.pipeline.metrics import Metrics
from stream.pipeline.reencode import register_reencoder
from stream.pipeline.tables import declare_tables
from stream.pipeline.topics import declare_topics
from stream.pipeline.web import register_pages

log = logging.getLogger(__name__)

# Exit status of a worker that did not stop within STOP_DEADLINE_S (EX_SOFTWARE).
FORCED_EXIT_STATUS = 70


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
    liveness = Liveness(metrics)
    app = create_app(settings, agent_supervisor=crash_reporting_supervisor(liveness.agent_crashed))
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
    start_watchdog(app, settings, liveness)
    register_pages(app, pipeline, liveness)

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
    require_copartitioned(settings)  # events, rerank-requests, profile changelog
    app, pipeline = build_worker(settings)
    limit_ranking_threads(settings.ranking_threads)  # after the encoder set torch's threads
    time_collections(pipeline.metrics.gc_pause)
    frozen = freeze_startup_objects()  # modules and model: never garbage, see stream.pipeline.memory
    log.info("%d objects of the start-up frozen out of garbage collection", frozen)
    faust_worker(app, settings.log_level, settings.stop_deadline_s).execute_from_commandline()


def faust_worker(app: faust.App, log_level: str, stop_deadline_s: float | None = None) -> faust.Worker:
    """The Faust worker that runs ``app``, logging at ``log_level``, without a spinner.

    At WARNING and above Faust shows a terminal spinner fed by a root-logger handler at
    DEBUG and leaves the root logger at DEBUG after start-up: every debug call of aiokafka
    and Faust then builds a record (6% of a worker's main thread at 450 events/s) that
    no handler keeps.

    Args:
        stop_deadline_s: once the worker starts stopping (SIGTERM, SIGINT, a crash), the
            process exits after this many seconds whether Faust is done or not
            (:class:`StopDeadline`); None: no deadline.
    """
    worker = DeadlineWorker(app, loglevel=log_level.upper(), quiet=True)
    worker.spinner = None
    if stop_deadline_s is not None:
        worker.stop_deadline = StopDeadline(stop_deadline_s)
    return worker


class StopDeadline:
    """Ends the process ``seconds`` after :meth:`start`, unless it has exited by then.

    Faust's stop waits until every event an agent took is acknowledged (``wait_empty``),
    without a limit: an agent that never acknowledges again holds the process until the
    orchestrator kills it, and the stop in progress (offsets, state) is cut wherever it is.
    A thread, not the event loop, keeps the time: the loop may be the thing that hangs.
    Exiting early loses nothing that a kill would not: what was not committed is
    delivered again after the restart.
    """

    def __init__(self, seconds: float, exit_process: Callable[[int], object] = os._exit) -> None:
        self.seconds = seconds
        self._exit_process = exit_process
        self._timer: threading.Timer | None = None

    def start(self) -> None:
        """Start the countdown (once; later calls do nothing)."""
        if self._timer is None:
            self._timer = threading.Timer(self.seconds, self.expire)
            self._timer.daemon = True  # a worker that stops in time exits without waiting for it
            self._timer.name = "stop-deadline"
            self._timer.start()

    def cancel(self) -> None:
        """Stop the countdown (tests)."""
        if self._timer is not None:
            self._timer.cancel()

    def expire(self) -> None:
        """Log where the process hangs and end it with :data:`FORCED_EXIT_STATUS`."""
        try:
            log.error(
                "the worker did not stop within %.0fs (STOP_DEADLINE_S); exiting now with status %d. "
                "Messages not committed are delivered again after the restart",
                self.seconds,
                FORCED_EXIT_STATUS,
            )
            # The threads' stacks show what the stop waited for (code locations, no values).
            faulthandler.dump_traceback(file=sys.__stderr__, all_threads=True)
            for handler in logging.getLogger().handlers:
                handler.flush()
        finally:  # nothing may keep the process from exiting
            self._exit_process(FORCED_EXIT_STATUS)


class DeadlineWorker(faust.Worker):
    """Faust's worker, whose stop starts a :class:`StopDeadline` (when it has one)."""

    stop_deadline: StopDeadline | None = None

    async def stop(self) -> None:
        """Stop the worker's services; the process exits at the deadline if this hangs."""
        if self.stop_deadline is not None:
            self.stop_deadline.start()
        await super().stop()


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
