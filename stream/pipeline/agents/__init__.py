"""The agents: one per input topic, each decode -> pure function -> table -> send.

- ``update_user_interest`` (events): batch, update profiles, emit one top-K list per
  user per batch (a burst of one user's events yields one list), forward interaction
  sums and co-visitation pairs to the owner of each item's partition.
- ``count_item_popularity`` (internal item-interactions): decayed counts and bounded
  co-visitation rows per item, each written by that item's single owner, merged over a
  window so that a busy item is written once per window.
- ``embed_new_items`` (items): batch, encode off the event loop (or through the encoder
  service), publish vectors tagged with their model.
- ``rerank_requests`` (rerank-requests): reorder the given candidates for the user.

Agents that write tables run with concurrency 1. Malformed input goes to the dead-letter
topic with its reason and original bytes; the agent moves on. Each batch reads the scoring
index (``ctx.catalog.active``) once, so one ranking never mixes vectors of two models.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from faust import streams as faust_streams
from faust.types import EventT, StreamT

from stream.config import Settings
from stream.core import covisit, popularity
from stream.core.batch import apply_user_events
from stream.core.catalog import CatalogIndex, ModelCatalog
from stream.core.contracts import (
    InteractionEvent,
    ItemDelete,
    ItemUpsert,
    RankedItem,
    dead_letter_payload,
    decode_event,
    decode_item,
    decode_rerank_request,
    recommendation_payload,
)
from stream.core.covisit import CovisitParams, CovisitRow
from stream.core.profiles import ProfileParams, UserProfile, encode_vector
from stream.core.ranking import RankingConfig, rank_candidates, rank_catalog_batch
from stream.core.statistics import (
    IncrementsMessage,
    ItemIncrements,
    decode_message,
    merge_message,
    write_window,
)
from stream.encoding.embedder import ItemEmbedder
from stream.errors import InvalidMessage
from stream.pipeline.intake import take_available
from stream.pipeline.metrics import Metrics
from stream.pipeline.tables import Tables, apply_catalog_entry
from stream.pipeline.topics import Topics

if TYPE_CHECKING:
    import faust

log = logging.getLogger(__name__)

# Table writes of a statistics batch made between two waits for the changelogs to drain,
# and how many may still be waiting when the next chunk starts.
_WRITE_CHUNK = 25
_DRAINED = 10


async def _changelogs_drained(app: faust.App) -> None:
    """Wait until at most ``_DRAINED`` table writes are waiting to be produced.

    Faust's conductor stops delivering every message to every agent while more than 100
    table writes wait in its producer buffer. A statistics window writes thousands of
    entries at once; written in chunks that fill at most a third of the buffer, they
    leave room for the events agent's profile writes, and its lists flowing.
    """
    buffer = app.producer.buffer
    while buffer.size > _DRAINED:
        await asyncio.sleep(0.001)


@dataclass(frozen=True)
class Pipeline:
    """Everything the agents share, built once by ``worker.build_worker``."""

    settings: Settings
    topics: Topics
    tables: Tables
    catalog: ModelCatalog
    embedder: ItemEmbedder
    metrics: Metrics
    ranking: RankingConfig
    profile_params: ProfileParams
    covisit_params: CovisitParams


def _dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


def _bind_table_partition(event: EventT) -> None:
    """Make ``event`` the current event of this task, for Faust's tables.

    Faust reads and writes a table key in the store of the current event's partition (a
    task-local context variable), and a batch holds events of many partitions. Only the
    task's variable is set: ``Stream._set_current_event`` also sets
    ``stream.current_event``, which Faust's ``take_events`` (used before
    ``stream.pipeline.intake``) read for a message that arrived during a batch; left at an event
    of the batch, that event was buffered in the new message's place, processed twice
    and the new message never.
    """
    faust_streams._current_event.set(weakref.ref(event))  # noqa: SLF001


async def send_dead_letter(ctx: Pipeline, event: EventT, error: InvalidMessage) -> None:
    """Forward a rejected message, with its reason and original bytes."""
    message = event.message
    payload = dead_letter_payload(message.topic, message.partition, message.offset, error, message.value)
    await ctx.topics.dead_letters.send(key=message.key, value=_dumps(payload))
    ctx.metrics.dead_letters.labels(message.topic, error.reason).inc()
    log.warning("dead-lettered %s[%d]@%d: %s", message.topic, message.partition, message.offset, error)


async def dead_letter_failed_batch(ctx: Pipeline, events: list[EventT], exc: Exception) -> None:
    """Forward every message of a batch whose processing raised, with the error, and go on.

    Malformed messages are dead-lettered one by one before processing, so an exception here
    is a defect (or a value the validation let through). Left unacknowledged, the batch
    would hold back every later commit of its partitions and every rebalance (Faust waits
    for unacknowledged messages); dead-lettered with its original bytes, it can be replayed
    once the defect is fixed. Users of the batch whose lists were sent before the failure
    have their events applied; a replay applies them again (at-least-once).
    """
    log.error("an events batch of %d messages failed; dead-lettering it", len(events), exc_info=exc)
    error = InvalidMessage("processing_failed", f"{type(exc).__name__}: {exc}")
    for event in events:
        await send_dead_letter(ctx, event, error)


def _decode_batch(
    ctx: Pipeline, events: list[EventT], decode: Callable[[bytes | None], Any]
) -> tuple[list[tuple[Any, EventT]], list[tuple[EventT, InvalidMessage]]]:
    good: list[tuple[Any, EventT]] = []
    bad: list[tuple[EventT, InvalidMessage]] = []
    for event in events:
        try:
            good.append((decode(event.message.value), event))
        except InvalidMessage as exc:
            bad.append((event, exc))
    return good, bad


def _decode_increments(raw: bytes | None) -> IncrementsMessage:
    try:
        return decode_message(raw or b"")
    except ValueError as exc:  # from our own workers: a defect, or a version that cannot be read
        raise InvalidMessage("undecodable", f"item-interactions message: {exc}") from exc


def _load_profile(ctx: Pipeline, user_id: str) -> UserProfile | None:
    raw = ctx.tables.user_profiles.get(user_id)
    return None if raw is None else UserProfile.from_bytes(raw)


def update_profile(
    ctx: Pipeline,
    index: CatalogIndex,
    profile: UserProfile | None,
    events: list[InteractionEvent],
    increments: ItemIncrements,
) -> UserProfile:
    """Apply a user's events (any order) with ``index``'s vectors, their co-visitation pairs
    added to the batch's ``increments``; return the profile.

    Pure apart from metrics. A profile built on another model is rebuilt from its history.
    """
    update = apply_user_events(
        profile,
        events,
        index.vector_of,
        dataclasses.replace(ctx.profile_params, model_id=index.model_id),
        ctx.settings.event_weights,
        ctx.covisit_params,
        increments,
    )
    ctx.metrics.unencoded_item_events.inc(update.unencoded)
    for event_type, count in Counter(ev.type for ev in events).items():  # a labels() lookup per type
        ctx.metrics.events.labels(event_type).inc(count)
    return update.profile


async def _send_list(
    ctx: Pipeline,
    model: str,
    user_id: str,
    ranked: list[RankedItem],
    *,
    mode: str,
    event_ts: float | None,
    message_ts: list[float],
    profile: UserProfile | None,
    request_id: str | None = None,
) -> None:
    emitted = time.time()
    payload = recommendation_payload(
        user_id,
        ranked,
        model=model,
        event_ts=event_ts,
        emitted_ts=emitted,
        request_id=request_id,
        profile_events=0 if profile is None else profile.n_events,
    )
    await ctx.topics.recommendations.send(key=user_id.encode("utf-8"), value=_dumps(payload))
    ctx.metrics.recommendations.labels(mode).inc()
    latency = ctx.metrics.event_to_recommendation.labels(mode)
    for ts in message_ts:
        latency.observe(max(emitted - ts, 0.0))


def register_agents(app: faust.App, ctx: Pipeline) -> None:
    """Attach the four agents to the app."""
    settings, topics, tables, metrics = ctx.settings, ctx.topics, ctx.tables, ctx.metrics

    @app.agent(topics.events, name="update_user_interest", concurrency=1)
    async def update_user_interest(stream: StreamT) -> None:
        decode = lambda raw: decode_event(raw, settings.event_weights)  # noqa: E731

        async def process_events(events: list[EventT]) -> None:
            started = time.perf_counter()
            index = ctx.catalog.active  # one model for the whole batch
            good, bad = _decode_batch(ctx, events, decode)
            for event, exc in bad:
                await send_dead_letter(ctx, event, exc)
            by_user: dict[str, list[tuple[InteractionEvent, EventT]]] = {}
            for record, event in good:
                by_user.setdefault(record.user_id, []).append((record, event))
            profiles: list[tuple[str, UserProfile, list[InteractionEvent], list[EventT]]] = []
            increments = ItemIncrements.of_batch(
                [r for r, _ in good], settings.event_weights, settings.popularity_half_life_s
            )
            for user_id, group in by_user.items():
                records = [r for r, _ in group]
                _bind_table_partition(group[-1][1])
                profile = update_profile(ctx, index, _load_profile(ctx, user_id), records, increments)
                tables.user_profiles[user_id] = profile.to_bytes()
                profiles.append((user_id, profile, records, [e for _, e in group]))
            # One list per user per batch, all users scored together.
            user_views = index.user_views(
                [p for _, p, _, _ in profiles], ctx.ranking.history_items, ctx.ranking.covisit_items
            )
            # Popularity and freshness are evaluated once, at the batch's newest event time:
            # the batch is "now" for every user in it.
            now = max((p.last_event_ts for _, p, _, _ in profiles), default=0.0)
            ranked_lists = rank_catalog_batch(user_views, index.view(), [now] * len(profiles), ctx.ranking)
            for (user_id, profile, records, user_events), ranked in zip(profiles, ranked_lists, strict=True):
                await _send_list(
                    ctx,
                    index.model_id,
                    user_id,
                    ranked,
                    mode="topk",
                    event_ts=max(r.ts for r in records),
                    message_ts=[e.message.timestamp for e in user_events],
                    profile=profile,
                )
            # After the lists: the owners merge these over a window anyway, while a list
            # sent behind them waited for their sends, and what the event loop ran meanwhile.
            statistics = increments.messages_by_owner(settings.topic_partitions)
            for partition, message in statistics.items():
                await topics.item_interactions.send(value=message, partition=partition)
            metrics.batch_size.labels("update_user_interest").observe(len(events))
            metrics.batch_processing.labels("update_user_interest").observe(time.perf_counter() - started)

        async for events in take_available(stream, settings.event_batch_size, settings.event_batch_linger_s):
            try:
                await process_events(events)
            except Exception as exc:  # a defect: malformed messages were dead-lettered one by one
                await dead_letter_failed_batch(ctx, events, exc)

    @app.agent(topics.item_interactions, name="count_item_popularity", concurrency=1)
    async def count_item_popularity(stream: StreamT) -> None:
        half_life = settings.popularity_half_life_s

        def stored_popularity(item_id: str) -> tuple[float, float]:
            return popularity.decode_entry(tables.item_popularity.get(item_id))

        def stored_covisits(item_id: str) -> CovisitRow | None:
            return covisit.stored_row(tables.item_covisits.get(item_id))

        # A long window coalesces writes: a busy item's entry changes many times a second
        # but is written, and replayed by every worker, once per window. Offsets are
        # committed only after the batch is written, so nothing is lost on a crash.
        async for events in stream.take_events(
            settings.statistics_batch_size, within=settings.statistics_batch_window_s
        ):
            started = time.perf_counter()
            merged: dict[str, tuple[float, float]] = {}
            rows: dict[str, CovisitRow] = {}
            # Decoded one at a time between turns of the loop, not up front with
            # _decode_batch: a window holds hundreds of messages of thousands of entries.
            for event in events:
                try:
                    message = _decode_increments(event.message.value)
                except InvalidMessage as exc:
                    await send_dead_letter(ctx, event, exc)
                    continue
                merge_message(
                    message,
                    merged,
                    rows,
                    stored_popularity,
                    stored_covisits,
                    half_life,
                    ctx.covisit_params,
                )
                await asyncio.sleep(0)
            written = write_window(
                merged,
                rows,
                tables.item_popularity,
                tables.item_covisits,
                ctx.catalog,
                ctx.covisit_params.max_neighbours,
            )
            for count, _ in enumerate(written, start=1):
                if count % _WRITE_CHUNK == 0:
                    await _changelogs_drained(app)
            metrics.batch_size.labels("count_item_popularity").observe(len(events))
            metrics.batch_processing.labels("count_item_popularity").observe(time.perf_counter() - started)

    @app.agent(topics.items, name="embed_new_items", concurrency=1)
    async def embed_new_items(stream: StreamT) -> None:
        decode = lambda raw: decode_item(raw, settings.max_text_chars)  # noqa: E731
        async for events in stream.take_events(settings.item_batch_size, within=settings.item_batch_window_s):
            started = time.perf_counter()
            good, bad = _decode_batch(ctx, events, decode)
            for event, exc in bad:
                await send_dead_letter(ctx, event, exc)
            latest: dict[str, ItemUpsert | ItemDelete] = {}
            for record, _ in good:  # the last message for an item in a batch wins
                latest[record.item_id] = record
            upserts = [r for r in latest.values() if isinstance(r, ItemUpsert)]
            for record in latest.values():
                if isinstance(record, ItemDelete):
                    tables.item_catalog[record.item_id] = {"deleted": True}
                    apply_catalog_entry(ctx.catalog, record.item_id, {"deleted": True})
                    metrics.items_deleted.inc()
            if upserts:
                texts = [r.encoder_text() for r in upserts]
                vectors = await ctx.embedder.embed(texts)
                for i, (record, text) in enumerate(zip(upserts, texts, strict=True)):
                    # Without a vector (deferred), the entry waits for the background re-encoder.
                    entry = catalog_entry(
                        text, record.title, record.ts, None if vectors is None else vectors[i], ctx.embedder
                    )
                    tables.item_catalog[record.item_id] = entry
                    apply_catalog_entry(ctx.catalog, record.item_id, entry)
                if vectors is not None:
                    metrics.items_encoded.inc(len(upserts))
            metrics.batch_size.labels("embed_new_items").observe(len(events))
            metrics.batch_processing.labels("embed_new_items").observe(time.perf_counter() - started)

    @app.agent(topics.rerank_requests, name="rerank_requests", concurrency=1)
    async def rerank_requests(stream: StreamT) -> None:
        decode = lambda raw: decode_rerank_request(raw, settings.max_candidates)  # noqa: E731
        async for event in stream.events():
            started = time.perf_counter()
            try:
                request = decode(event.message.value)
            except InvalidMessage as exc:
                await send_dead_letter(ctx, event, exc)
                continue
            index = ctx.catalog.active
            profile = _load_profile(ctx, request.user_id)
            now = request.ts or (profile.last_event_ts if profile else None) or event.message.timestamp
            ranked = rank_candidates(
                index.user_view(profile, ctx.ranking.history_items, ctx.ranking.covisit_items),
                index.view(),
                request.candidates,
                index.rows_of(request.candidates),
                now=now,
                config=ctx.ranking,
                k=request.k,
            )
            await _send_list(
                ctx,
                index.model_id,
                request.user_id,
                ranked,
                mode="rerank",
                event_ts=request.ts,
                message_ts=[event.message.timestamp],
                profile=profile,
                request_id=request.request_id,
            )
            metrics.batch_processing.labels("rerank_requests").observe(time.perf_counter() - started)


def catalog_entry(
    text: str, title: str, ts: float | None, vector: np.ndarray | None, embedder: ItemEmbedder
) -> dict[str, Any]:
    """The ``item-catalog`` value of an item: its vector (if any) tagged with its model, and
    the text it was encoded from, so that another model can re-encode it."""
    entry: dict[str, Any] = {"text": text, "title": title, "ts": ts}
    if vector is None:
        entry["model_id"] = ""
    else:
        entry["vector"] = encode_vector(vector)
        entry["model_id"] = embedder.model_id
    return entry
