"""The agents: one per input topic, each decode -> pure function -> table -> send.

- ``update_user_interest`` (events): batch, update profiles, emit one top-K list per
  user per batch (a burst of one user's events yields one list), forward interactions
  re-keyed by item to ``count_item_popularity``.
- ``count_item_popularity`` (internal item-interactions): decayed counts per item.
- ``embed_new_items`` (items): batch, encode off the event loop (or through the encoder
  service), publish vectors tagged with their model.
- ``rerank_requests`` (rerank-requests): reorder the given candidates for the user.

Agents that write tables run with concurrency 1. Malformed input goes to the dead-letter
topic with its reason and original bytes; the agent moves on. Each batch reads the scoring
index (``ctx.catalog.active``) once, so one ranking never mixes vectors of two models.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from faust.types import EventT, StreamT

from stream import popularity
from stream.catalog import CatalogIndex, ModelCatalog
from stream.config import Settings
from stream.embedding import ItemEmbedder
from stream.errors import InvalidMessage
from stream.metrics import Metrics
from stream.profiles import (
    ProfileParams,
    UserProfile,
    apply_event,
    encode_vector,
    rebuild_interest,
    resolve_pending,
)
from stream.ranking import RankingConfig, rank_candidates, rank_catalog_batch
from stream.records import (
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
from stream.tables import Tables, apply_catalog_entry, apply_popularity_entry
from stream.topics import Topics

if TYPE_CHECKING:
    import faust

log = logging.getLogger(__name__)


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


def _dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


def _attribute_writes_to(stream: StreamT, event: EventT) -> None:
    # Faust stores a table write under the partition of the stream's current event; in
    # a batch from take_events that is the last event taken, not necessarily the one
    # whose key is written. Point it at an event of the key being written.
    stream._set_current_event(event)  # noqa: SLF001


async def send_dead_letter(ctx: Pipeline, event: EventT, error: InvalidMessage) -> None:
    """Forward a rejected message, with its reason and original bytes."""
    message = event.message
    payload = dead_letter_payload(message.topic, message.partition, message.offset, error, message.value)
    await ctx.topics.dead_letters.send(key=message.key, value=_dumps(payload))
    ctx.metrics.dead_letters.labels(message.topic, error.reason).inc()
    log.warning("dead-lettered %s[%d]@%d: %s", message.topic, message.partition, message.offset, error)


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


def _load_profile(ctx: Pipeline, user_id: str) -> UserProfile | None:
    raw = ctx.tables.user_profiles.get(user_id)
    return None if raw is None else UserProfile.from_dict(raw)


def update_profile(
    ctx: Pipeline, index: CatalogIndex, profile: UserProfile | None, events: list[InteractionEvent]
) -> UserProfile:
    """Apply a user's events (any order) to the profile with ``index``'s vectors.

    Pure apart from metrics. A profile built on another model is rebuilt from its history.
    """
    if profile is None:
        profile = UserProfile(model_id=index.model_id)
    lookup = index.vector_of
    if profile.model_id != index.model_id:
        rebuild_interest(profile, lookup, dataclasses.replace(ctx.profile_params, model_id=index.model_id))
    resolve_pending(profile, lookup, ctx.profile_params)
    weights = ctx.settings.event_weights
    for ev in sorted(events, key=lambda e: e.ts):
        vector = lookup(ev.item_id)
        if vector is None:
            ctx.metrics.unencoded_item_events.inc()
        apply_event(
            profile, ev.item_id, ev.type, ev.ts, weights[ev.type] * ev.weight, vector, ctx.profile_params
        )
        ctx.metrics.events.labels(ev.type).inc()
    return profile


def interactions_by_partition(
    ctx: Pipeline, events: list[InteractionEvent]
) -> dict[int, dict[str, dict[str, float]]]:
    """Decayed interaction sums per item, grouped by the item's owner partition.

    One message per partition and batch (not one per item) keeps produce calls few; the
    partition is the one Kafka's partitioner would give the item id, so every forwarder
    routes an item to the same single owner.
    """
    weights = ctx.settings.event_weights
    grouped: dict[str, list[InteractionEvent]] = {}
    for ev in events:
        grouped.setdefault(ev.item_id, []).append(ev)
    out: dict[int, dict[str, dict[str, float]]] = {}
    for item_id, evs in grouped.items():
        score, ref_ts = popularity.decayed_sum(
            np.array([weights[e.type] * e.weight for e in evs]),
            np.array([e.ts for e in evs]),
            ctx.settings.popularity_half_life_s,
        )
        partition = popularity.owner_partition(item_id, ctx.settings.topic_partitions)
        out.setdefault(partition, {})[item_id] = {"score": score, "ref_ts": ref_ts}
    return out


async def _send_list(
    ctx: Pipeline,
    model: str,
    user_id: str,
    ranked: list[RankedItem],
    *,
    mode: str,
    event_ts: float | None,
    message_ts: list[float],
    request_id: str | None = None,
) -> None:
    emitted = time.time()
    payload = recommendation_payload(
        user_id, ranked, model=model, event_ts=event_ts, emitted_ts=emitted, request_id=request_id
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
        async for events in stream.take_events(
            settings.event_batch_size, within=settings.event_batch_window_s
        ):
            started = time.perf_counter()
            index = ctx.catalog.active  # one model for the whole batch
            good, bad = _decode_batch(ctx, events, decode)
            for event, exc in bad:
                await send_dead_letter(ctx, event, exc)
            by_user: dict[str, list[tuple[InteractionEvent, EventT]]] = {}
            for record, event in good:
                by_user.setdefault(record.user_id, []).append((record, event))
            profiles: list[tuple[str, UserProfile, list[InteractionEvent], list[EventT]]] = []
            for user_id, group in by_user.items():
                records = [r for r, _ in group]
                profile = update_profile(ctx, index, _load_profile(ctx, user_id), records)
                _attribute_writes_to(stream, group[-1][1])
                tables.user_profiles[user_id] = profile.to_dict()
                profiles.append((user_id, profile, records, [e for _, e in group]))
            # One list per user per batch, all users scored together.
            ranked_lists = rank_catalog_batch(
                [index.user_view(p, ctx.ranking.history_items) for _, p, _, _ in profiles],
                index.view(),
                [p.last_event_ts for _, p, _, _ in profiles],
                ctx.ranking,
            )
            for partition, items in interactions_by_partition(ctx, [r for r, _ in good]).items():
                await topics.item_interactions.send(value={"items": items}, partition=partition)
            for (user_id, _, records, user_events), ranked in zip(profiles, ranked_lists, strict=True):
                await _send_list(
                    ctx,
                    index.model_id,
                    user_id,
                    ranked,
                    mode="topk",
                    event_ts=max(r.ts for r in records),
                    message_ts=[e.message.timestamp for e in user_events],
                )
            metrics.batch_size.labels("update_user_interest").observe(len(events))
            metrics.batch_processing.labels("update_user_interest").observe(time.perf_counter() - started)

    @app.agent(topics.item_interactions, name="count_item_popularity", concurrency=1)
    async def count_item_popularity(stream: StreamT) -> None:
        half_life = settings.popularity_half_life_s
        async for events in stream.take_events(
            settings.event_batch_size, within=settings.event_batch_window_s
        ):
            started = time.perf_counter()
            merged: dict[str, tuple[float, float]] = {}
            for event in events:
                for item_id, value in event.value["items"].items():
                    score, ref_ts = merged.get(item_id) or _stored_popularity(tables, item_id)
                    merged[item_id] = popularity.merge(
                        score, ref_ts, value["score"], value["ref_ts"], half_life
                    )
            for item_id, (score, ref_ts) in merged.items():
                entry = {"score": score, "ref_ts": ref_ts}
                tables.item_popularity[item_id] = entry
                apply_popularity_entry(ctx.catalog, item_id, entry)
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
                index.user_view(profile, ctx.ranking.history_items),
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


def _stored_popularity(tables: Tables, item_id: str) -> tuple[float, float]:
    entry = tables.item_popularity.get(item_id)
    return (0.0, 0.0) if entry is None else (float(entry["score"]), float(entry["ref_ts"]))
