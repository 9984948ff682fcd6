"""``update_user_interest``: events -> profiles, lists, and the owners' statistics.

Each batch goes through ``core.batch.apply_batch``, the path the offline evaluation and
the batch benchmark take too: profiles are read from and written to the
``user-profiles`` table, every user of the batch gets one list (a burst of one user's
events yields one list), and the batch's popularity sums and co-visitation pairs are
forwarded to the owner of each item's partition of ``item-interactions``.

A batch read again after a crash or a rebalance changes nothing twice
(``stream.pipeline.positions``, docs/reliability.md). Its steps keep an order that a
crash between any two of them leaves recognisable:

1. the statistics intent of each partition, the range of offsets the batch's statistics
   will sum, is stored (and acknowledged) in the partition's ``user-profiles`` changelog;
2. the statistics messages, each naming its range, are sent and acknowledged;
3. the profiles, each with the position of its newest event, are written;
4. the lists are sent (at least once: each names the position it reflects).

After a crash, the events of a stored intent are applied again only to the profiles
that had not recorded them, and their statistics are sent again with the intent's
boundaries, which the owners recognise if the first sending reached them.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from faust.types import EventT, StreamT

from stream.core.batch import EventPosition, apply_batch
from stream.core.contracts import InteractionEvent, decode_event
from stream.core.formats import SourceRange
from stream.core.position_records import StatisticsIntent, decode_intent, encode_intent
from stream.core.profiles import UserProfile
from stream.kafka.partitioner import owner_partition
from stream.kafka.patches import set_current_event
from stream.pipeline.agents.context import Pipeline, decode_batch, process_bisecting, send_list
from stream.pipeline.intake import take_available
from stream.pipeline.positions import intent_key

log = logging.getLogger(__name__)

Decoded = list[tuple[InteractionEvent, EventT]]


class TableProfiles:
    """The ``user-profiles`` table as a ``core.batch.ProfileStore`` for one batch.

    Faust reads and writes a table key in the store of the current event's partition,
    and a batch holds events of many partitions: each user's read binds the user's last
    event of the batch first, and so does each write. Writes are held until
    :meth:`flush`: a profile is written only once the statistics of its events are sent.
    """

    def __init__(self, ctx: Pipeline, last_event_of: dict[str, EventT]) -> None:
        self.ctx = ctx
        self.last_event_of = last_event_of
        self.held: list[tuple[str, bytes]] = []

    def load(self, user_id: str) -> UserProfile | None:
        """The user's stored profile, from the partition of their events."""
        set_current_event(self.last_event_of[user_id])
        return self.ctx.load_profile(user_id)

    def save(self, user_id: str, profile: UserProfile) -> None:
        """Hold the user's profile until :meth:`flush`."""
        self.held.append((user_id, profile.to_bytes()))

    def flush(self) -> None:
        """Write the held profiles, each to the partition of its user's events."""
        table = self.ctx.tables.user_profiles
        for user_id, value in self.held:
            set_current_event(self.last_event_of[user_id])
            table[user_id] = value
        self.held = []


async def update_user_interest(ctx: Pipeline, stream: StreamT) -> None:
    """Take the events waiting (up to ``event_batch_size``) and process each batch.

    Malformed events are dead-lettered as they are decoded; a batch whose processing
    raises is processed again in halves, down to the event at fault, which is
    dead-lettered: what the first attempts applied is recognised and not applied twice.
    """
    settings = ctx.settings
    async for events in take_available(stream, settings.event_batch_size, settings.event_batch_linger_s):
        good = await decode_batch(ctx, events, lambda raw: decode_event(raw, settings.event_weights))
        await process_bisecting(ctx, good, lambda part: apply_events(ctx, part))
        # Dead-lettered events are done with too: a request behind one need not wait.
        newest: dict[int, int] = {}
        for event in events:
            partition = event.message.partition
            if partition in ctx.progress.intents:  # still this worker's
                newest[partition] = max(newest.get(partition, -1), event.message.offset)
        ctx.progress.advance(newest)


async def apply_events(ctx: Pipeline, good: Decoded) -> None:
    """Apply decoded events: those of a stored intent first, with its boundaries, then the new."""
    started = time.perf_counter()
    progress = ctx.progress
    for _, event in good:
        if event.message.partition not in progress.intents:
            _load_intent(ctx, event)
    replayed: Decoded = []
    fresh: Decoded = []
    done = 0
    for record, event in good:
        partition, offset = event.message.partition, event.message.offset
        if offset <= progress.sent[partition]:
            done += 1  # applied and counted before the last intent was stored
        elif offset <= progress.intents[partition].through:
            replayed.append((record, event))
        else:
            fresh.append((record, event))
    if done:
        ctx.metrics.replayed_events.labels("already_applied").inc(done)
    if replayed:
        log.info("applying again %d events of a statistics intent stored before a restart", len(replayed))
        await _apply(ctx, replayed, new_intent=False)
    if fresh:
        await _apply(ctx, fresh, new_intent=True)
    ctx.metrics.batch_size.labels("update_user_interest").observe(len(good))
    ctx.metrics.batch_processing.labels("update_user_interest").observe(time.perf_counter() - started)


def _load_intent(ctx: Pipeline, event: EventT) -> None:
    """Read the stored intent of the event's partition, which this worker just took."""
    partition = event.message.partition
    set_current_event(event)
    raw = ctx.tables.user_profiles.get(intent_key(partition))
    intent = StatisticsIntent(-1, -1) if raw is None else decode_intent(raw)
    ctx.progress.intents[partition] = intent
    ctx.progress.sent[partition] = intent.after


async def _apply(ctx: Pipeline, batch: Decoded, *, new_intent: bool) -> None:
    """Apply one sub-batch: intents, statistics, profiles, lists (module docstring)."""
    settings, metrics, progress = ctx.settings, ctx.metrics, ctx.progress
    index = ctx.catalog.active  # one model for the whole batch
    records = [record for record, _ in batch]
    positions = [EventPosition(event.message.partition, event.message.offset) for _, event in batch]
    last_of_partition: dict[int, EventT] = {}
    messages_of: dict[str, list[EventT]] = {}
    for record, event in batch:
        last_of_partition[event.message.partition] = event
        messages_of.setdefault(record.user_id, []).append(event)
    sources = {
        partition: SourceRange(partition, progress.sent[partition], event.message.offset)
        for partition, event in last_of_partition.items()
    }
    if new_intent:
        await _store_intents(ctx, sources, last_of_partition)
    profiles = TableProfiles(ctx, {user_id: group[-1] for user_id, group in messages_of.items()})
    outcome = apply_batch(
        records, profiles, index, ctx.batch_params, positions=positions, ranking=ctx.ranking
    )
    if outcome.skipped:
        metrics.replayed_events.labels("profile_had_applied").inc(outcome.skipped)
    owner = lambda key: owner_partition(key, settings.topic_partitions)  # noqa: E731
    sends = [
        await ctx.topics.item_interactions.send(value=message, partition=owner_of_message)
        for partition, increments in outcome.by_partition.items()
        for owner_of_message, message in increments.messages_by_owner(owner, sources[partition]).items()
    ]
    for sent in sends:
        await sent  # acknowledged before any profile records these events as applied
    profiles.flush()
    for partition, source in sources.items():
        progress.sent[partition] = source.through
    progress.advance({partition: source.through for partition, source in sources.items()})
    metrics.unencoded_item_events.inc(outcome.unencoded)
    for event_type, count in Counter(
        update_event.type for user in outcome.users for update_event in user.events
    ).items():
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


async def _store_intents(
    ctx: Pipeline, sources: dict[int, SourceRange], last_of_partition: dict[int, EventT]
) -> None:
    """Store each partition's intent and wait for its changelog record to be acknowledged."""
    table = ctx.tables.user_profiles
    written = []
    for partition, source in sources.items():
        key, value = intent_key(partition), encode_intent(source.after, source.through)
        set_current_event(last_of_partition[partition])
        table.data[key] = value  # the local store of the partition's current event
        written.append(table.send_changelog(partition, key, value))
        ctx.progress.intents[partition] = StatisticsIntent(source.after, source.through)
    for record in written:
        await record
