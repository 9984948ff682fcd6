"""``update_user_interest``: events -> profiles, lists, and the owners' statistics.

Each batch goes through ``core.batch.apply_batch``, the path the offline evaluation and
the batch benchmark take too: profiles are read from and written to the
``user-profiles`` table, every user of the batch gets one list (a burst of one user's
events yields one list), and the batch's popularity sums and co-visitation pairs are
forwarded to the owner of each item's partition of ``item-interactions``.
"""

from __future__ import annotations

import time
from collections import Counter

from faust.types import EventT, StreamT

from stream.core.batch import apply_batch
from stream.core.contracts import InteractionEvent, decode_event
from stream.core.profiles import UserProfile
from stream.kafka.partitioner import owner_partition
from stream.kafka.patches import set_current_event
from stream.pipeline.agents.context import Pipeline, dead_letter_failed_batch, decode_batch, send_list
from stream.pipeline.intake import take_available


class TableProfiles:
    """The ``user-profiles`` table as a ``core.batch.ProfileStore`` for one batch.

    Faust reads and writes a table key in the store of the current event's partition,
    and a batch holds events of many partitions: each user's read binds the user's last
    event of the batch first, and the write follows before the next user's read.
    """

    def __init__(self, ctx: Pipeline, last_event_of: dict[str, EventT]) -> None:
        self.ctx = ctx
        self.last_event_of = last_event_of

    def load(self, user_id: str) -> UserProfile | None:
        """The user's stored profile, from the partition of their events."""
        set_current_event(self.last_event_of[user_id])
        return self.ctx.load_profile(user_id)

    def save(self, user_id: str, profile: UserProfile) -> None:
        """Write the user's profile (to the partition bound by :meth:`load`)."""
        self.ctx.tables.user_profiles[user_id] = profile.to_bytes()


async def update_user_interest(ctx: Pipeline, stream: StreamT) -> None:
    """Take the events waiting (up to ``event_batch_size``) and process each batch."""
    settings = ctx.settings
    async for events in take_available(stream, settings.event_batch_size, settings.event_batch_linger_s):
        try:
            await process_events(ctx, events)
        except Exception as exc:  # a defect: malformed messages were dead-lettered one by one
            await dead_letter_failed_batch(ctx, events, exc)


async def process_events(ctx: Pipeline, events: list[EventT]) -> None:
    """One batch: decode, apply, send the lists, then forward the statistics."""
    started = time.perf_counter()
    settings, metrics = ctx.settings, ctx.metrics
    index = ctx.catalog.active  # one model for the whole batch
    good = await decode_batch(ctx, events, lambda raw: decode_event(raw, settings.event_weights))
    records: list[InteractionEvent] = [record for record, _ in good]
    messages_of: dict[str, list[EventT]] = {}
    for record, event in good:
        messages_of.setdefault(record.user_id, []).append(event)
    profiles = TableProfiles(ctx, {user_id: group[-1] for user_id, group in messages_of.items()})
    outcome = apply_batch(records, profiles, index, ctx.batch_params, ranking=ctx.ranking)
    metrics.unencoded_item_events.inc(outcome.unencoded)
    for event_type, count in Counter(record.type for record in records).items():
        metrics.events.labels(event_type).inc(count)
    for user, ranked in zip(outcome.users, outcome.ranked or [], strict=True):
        await send_list(
            ctx,
            index.model_id,
            user.user_id,
            ranked,
            mode="topk",
            event_ts=max(r.ts for r in user.events),
            message_ts=[e.message.timestamp for e in messages_of[user.user_id]],
            profile=user.profile,
        )
    # After the lists: the owners merge these over a window anyway, while a list sent
    # behind them waited for their sends, and what the event loop ran meanwhile.
    owner = lambda key: owner_partition(key, settings.topic_partitions)  # noqa: E731
    for partition, message in outcome.increments.messages_by_owner(owner).items():
        await ctx.topics.item_interactions.send(value=message, partition=partition)
    metrics.batch_size.labels("update_user_interest").observe(len(events))
    metrics.batch_processing.labels("update_user_interest").observe(time.perf_counter() - started)
