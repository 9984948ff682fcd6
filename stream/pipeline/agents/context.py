"""What the agents share: the pipeline's parts, dead-lettering and sending lists."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

from faust.types import EventT

from stream.config import Settings
from stream.core.batch import BatchParams
from stream.core.covisit import CovisitParams
from stream.core.model_catalog import ModelCatalog
from stream.core.outputs import RankedItem, encode_dead_letter, encode_recommendation
from stream.core.profiles import ProfileParams, UserProfile
from stream.core.ranking import RankingConfig
from stream.encoding.embedder import ItemEmbedder
from stream.errors import InvalidMessage
from stream.pipeline.metrics import Metrics
from stream.pipeline.tables import Tables
from stream.pipeline.topics import Topics

log = logging.getLogger(__name__)

Decoded = TypeVar("Decoded")


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

    @cached_property
    def batch_params(self) -> BatchParams:
        """What decides a batch's effect on the state (``core.batch.apply_batch``)."""
        return BatchParams(
            self.profile_params,
            self.covisit_params,
            self.settings.event_weights,
            self.settings.popularity_half_life_s,
        )

    def load_profile(self, user_id: str) -> UserProfile | None:
        """The user's stored profile, from the partition of the task's current event."""
        raw = self.tables.user_profiles.get(user_id)
        return None if raw is None else UserProfile.from_bytes(raw)


async def send_dead_letter(ctx: Pipeline, event: EventT, error: InvalidMessage) -> None:
    """Forward a rejected message, with its reason and original bytes."""
    message = event.message
    value = encode_dead_letter(message.topic, message.partition, message.offset, error, message.value)
    await ctx.topics.dead_letters.send(key=message.key, value=value)
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


async def decode_batch(
    ctx: Pipeline, events: list[EventT], decode: Callable[[bytes | None], Decoded]
) -> list[tuple[Decoded, EventT]]:
    """Decode each message of a batch; dead-letter the malformed ones, keep the rest."""
    good: list[tuple[Decoded, EventT]] = []
    for event in events:
        try:
            good.append((decode(event.message.value), event))
        except InvalidMessage as exc:
            await send_dead_letter(ctx, event, exc)
    return good


async def send_list(
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
    """Send a user's list to ``recommendations``; observe each source message's latency."""
    emitted = time.time()
    value = encode_recommendation(
        user_id,
        ranked,
        model=model,
        event_ts=event_ts,
        emitted_ts=emitted,
        request_id=request_id,
        profile_events=0 if profile is None else profile.n_events,
    )
    await ctx.topics.recommendations.send(key=user_id.encode("utf-8"), value=value)
    ctx.metrics.recommendations.labels(mode).inc()
    latency = ctx.metrics.event_to_recommendation.labels(mode)
    for ts in message_ts:
        latency.observe(max(emitted - ts, 0.0))
