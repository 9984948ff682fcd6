"""What the agents share: the pipeline's parts, dead-lettering and sending lists."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import TypeVar

from faust.types import EventT
from prometheus_client import CollectorRegistry, Counter

from stream.config import Settings
from stream.core.batch import BatchParams
from stream.core.bounds import KeyedRecord, check_bounds, check_key
from stream.core.covisit import CovisitParams
from stream.core.model_catalog import ModelCatalog
from stream.core.outputs import RankedItem, encode_dead_letter, encode_recommendation
from stream.core.profiles import ProfileParams, UserProfile
from stream.core.ranking import RankingConfig
from stream.encoding.embedder import ItemEmbedder
from stream.errors import InvalidMessage
from stream.pipeline.metrics import Metrics
from stream.pipeline.positions import EventsProgress
from stream.pipeline.tables import Tables
from stream.pipeline.topics import Topics

log = logging.getLogger(__name__)

Decoded = TypeVar("Decoded", bound=KeyedRecord)
# A dead letter keeps its message's key (its partitioning); a longer key is cut to this,
# so that the letter fits whatever the key (a valid one is an id of 256 characters at most).
DEAD_LETTER_KEY_BYTES = 1024


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
    # Positions of the events partitions this worker holds (stream.pipeline.positions),
    # and the owner partitions whose merged positions it has loaded since it took them.
    progress: EventsProgress = field(default_factory=EventsProgress)
    owned: set[int] = field(default_factory=set)

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
    """Forward a rejected message, with its reason and original bytes; never raises.

    The letter fits ``dead_letter_max_bytes`` whatever the message: a longer value is cut
    (``core.outputs.encode_dead_letter``), a longer key too. A letter that still cannot be
    sent (the broker refuses it, the producer is stopping) is logged and counted in
    ``streamrank_dead_letter_send_failures_total``, and the message is skipped: an
    exception here would stop the agent, and with it every later message of its partitions.
    """
    message = event.message
    key = message.key[:DEAD_LETTER_KEY_BYTES] if message.key else message.key
    try:
        value = encode_dead_letter(
            message.topic,
            message.partition,
            message.offset,
            error,
            message.value,
            max_bytes=ctx.settings.dead_letter_max_bytes - len(key or b""),
        )
        await ctx.topics.dead_letters.send(key=key, value=value)
    except Exception:
        log.exception(
            "could not dead-letter %s[%d]@%d (%s); skipping it",
            message.topic,
            message.partition,
            message.offset,
            error.reason,
        )
        _dead_letter_send_failures(ctx.metrics.registry).labels(message.topic, error.reason).inc()
        return
    ctx.metrics.dead_letters.labels(message.topic, error.reason).inc()
    # Where and why only: the error's detail may quote the payload (personal data), which the
    # dead-letter topic keeps; the detail is logged at DEBUG.
    log.warning("dead-lettered %s[%d]@%d: %s", message.topic, message.partition, message.offset, error.reason)
    log.debug("dead-lettered %s[%d]@%d: %.300s", message.topic, message.partition, message.offset, error)


@cache
def _dead_letter_send_failures(registry: CollectorRegistry) -> Counter:
    """The counter of dead letters that could not be sent, on the worker's registry (made
    when first needed: a healthy worker never exports it)."""
    return Counter(
        "streamrank_dead_letter_send_failures",
        "Rejected messages that could not be sent to the dead-letter topic and were skipped "
        "(logged), by source topic and reason.",
        ["topic", "reason"],
        registry=registry,
    )


def processing_failed(exc: Exception) -> InvalidMessage:
    """The dead-letter reason of a message whose processing raised ``exc``."""
    return InvalidMessage("processing_failed", f"{type(exc).__name__}: {exc}")


async def decode_batch(
    ctx: Pipeline, events: list[EventT], decode: Callable[[bytes | None], Decoded]
) -> list[tuple[Decoded, EventT]]:
    """Decode each message of a batch; dead-letter the malformed ones, once each; keep the rest.

    Around ``decode``: the value's size and nesting are bounded before it runs
    (``max_message_bytes``, ``max_json_depth``: the parsers recurse), and the message key
    must be the record's id after it (``contracts.check_key``). A decoder that raises
    anything but ``InvalidMessage`` (a defect) dead-letters only its own message, as
    ``processing_failed``.
    """
    max_bytes, max_depth = ctx.settings.max_message_bytes, ctx.settings.max_json_depth
    good: list[tuple[Decoded, EventT]] = []
    for event in events:
        message = event.message
        try:
            check_bounds(message.value, max_bytes, max_depth)
            record = decode(message.value)
            check_key(message.key, record)
        except InvalidMessage as exc:
            await send_dead_letter(ctx, event, exc)
        except Exception as exc:
            where = (message.topic, message.partition, message.offset)
            log.error("decoding %s[%d]@%d raised %s", *where, type(exc).__name__)  # no message: input
            log.debug("decoding %s[%d]@%d raised", *where, exc_info=exc)
            await send_dead_letter(ctx, event, processing_failed(exc))
        else:
            good.append((record, event))
    return good


async def process_bisecting(
    ctx: Pipeline,
    batch: list[tuple[Decoded, EventT]],
    process: Callable[[list[tuple[Decoded, EventT]]], Awaitable[None]],
) -> None:
    """Run ``process`` on a decoded batch; when it raises, run it on each half, down to the
    single messages that fail, which are dead-lettered (``processing_failed``, the error).

    A valid message is never dead-lettered for another's fault, and none twice: decode
    first with :func:`decode_batch`, then pass its result here. One failing message costs
    about 2·log2(n) runs on parts of the batch, so ``process`` must tolerate running again
    on messages it applied in part before raising (the agents apply at least once).
    ``asyncio.CancelledError`` (the agent is stopping) is no ``Exception``: it passes
    through, never bisected.
    """
    if not batch:
        return
    try:
        await process(batch)
    except Exception as exc:
        if len(batch) == 1:
            event = batch[0][1]
            message = event.message
            where = (message.topic, message.partition, message.offset)
            log.error("processing %s[%d]@%d raised %s", *where, type(exc).__name__)  # no message: input
            log.debug("processing %s[%d]@%d raised", *where, exc_info=exc)
            await send_dead_letter(ctx, event, processing_failed(exc))
            return
        log.warning(
            "a batch of %d messages raised %s; processing it in halves", len(batch), type(exc).__name__
        )
        middle = len(batch) // 2
        await process_bisecting(ctx, batch[:middle], process)
        await process_bisecting(ctx, batch[middle:], process)


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
        input_position=None if profile is None or profile.offset < 0 else (profile.partition, profile.offset),
    )
    await ctx.topics.recommendations.send(key=user_id.encode("utf-8"), value=value)
    ctx.metrics.recommendations.labels(mode).inc()
    latency = ctx.metrics.event_to_recommendation.labels(mode)
    for ts in message_ts:
        latency.observe(max(emitted - ts, 0.0))
