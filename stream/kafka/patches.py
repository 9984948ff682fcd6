"""Every use of a private internal of Faust, aiokafka or mode, in one place.

Checked against faust-streaming 0.15.3, aiokafka 0.14.0 and mode-streaming 0.7.1 (the pinned
versions). Each patch below has a guard in ``tests/stream/kafka/test_patches.py`` that fails
when the upstream code it copies or relies on changes; that test names what to re-read.
No other module of streamrank touches a private name of these libraries.

The patches, and why each is needed:

1. :class:`DrainLoopConsumer` (a copy of Faust's ``Consumer._drain_messages``, which reads
   ``Service._stopped``, ``_read_offset``, ``_commit_every``, ``_n_acked`` and ``_add_gap``):
   opens Faust's fetch loop at four points that ``stream.kafka.transport.Consumer`` fills.
   Faust delivers every message with ``wait_first`` (four tasks and an ``asyncio.wait``),
   12% of a fully loaded worker's main thread in a profile, more than the ranking; stream
   records handed over during a rebalance were lost in 6 of 15 restarts on a backlog; and
   the commit every ``broker_commit_every`` acks, awaited inside delivery, stopped event
   batches for 2.4-3.9 s at the end of a third of the statistics windows (25-75% load).
   Faust's loop is unchanged in 0.15.3 (same source as the copy), so all three remain.
2. :class:`ConsumerThread` (overrides Faust's ``_create_worker_consumer`` and
   ``_highwaters``, sets aiokafka's ``AIOKafkaConsumer._fetch_max_wait_ms``), chosen through
   ``DrainLoopConsumer._new_consumer_thread``: Faust passes ``fetch_max_wait_ms=1500`` and
   has no setting for it, and the embedded broker (Tansu) answers a fetch only when that
   wait expires (measured: 1.3 s per hop at 1500 ms, 5 ms at 100 ms). ``_highwaters`` is
   where table recovery reads end offsets, which Tansu misreports (3.).
3. :func:`consumer_client` (aiokafka's ``AIOKafkaConsumer._client``): the embedded
   broker's end-offset correction (``stream.kafka.embedded.true_end_offsets``) sends a raw
   Fetch on the consumer's connections; aiokafka has no public way to send a request.
   Tansu answers ListOffsets(latest) with its last batch's base offset plus one, so
   without it table recovery stops short of the changelog's end.
4. :func:`channel_queue`, :func:`admit_events`, :func:`ack_event`, :func:`count_events`:
   Faust's stream iterator (``Stream._py_aiter``), per event, done per batch for
   ``stream.pipeline.intake.take_available``. Faust's ``take_events`` fills its buffer one
   event loop turn per event and waits for a full buffer or its ``within`` window: a 20 ms
   window cut the worker's maximum rate by a third, a 0.2 s one is the floor of every
   list's latency. Faust 0.15.3 has no way to take what a stream's channel holds.
5. :class:`RawSchema` (replaces the decode function Faust's ``Schema.compile`` builds): on
   raw topics Faust's decode looks codecs up per message and decodes nothing, yet it was
   most of the per-message hand-off in a profile of the worker (measured with 0.15.3:
   2.68 us per message against 0.22 us).
6. :func:`set_current_event` (Faust's ``faust.streams._current_event``): tables read and
   write a key in the store of the current event's partition, and a batch of the events
   agent holds events of many partitions; Faust's only setter,
   ``Stream._set_current_event``, also sets ``stream.current_event``, which must stay
   untouched (see the function).

No longer used: Faust's ``Consumer._is_changelog_tp``, which the rebalance hold called; it only
tests ``tp.topic in app.tables.changelog_topics``, which ``stream.kafka.transport`` now reads.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Coroutine, Mapping
from typing import Any, ClassVar, Protocol, cast

import faust
from aiokafka import AIOKafkaClient, AIOKafkaConsumer
from faust import streams as faust_streams
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, AppT, EventT, Message, StreamT
from mode import Service, ServiceT
from mode.utils.queues import ThrowableQueue

# --- 1 and 2. Faust's fetch loop, opened at four points, and its consumer thread -------------


class RecordHold(Protocol):
    """Which fetched records the drain loop delivers now, and when it seeks back."""

    def admit(self, tp: TP) -> bool:
        """Whether a record of ``tp`` may be delivered now."""

    def seek_due(self) -> bool:
        """Whether to seek back to the committed offsets before going on."""


class _NoHold:
    """Faust's behaviour: every record is delivered, nothing is fetched again."""

    def admit(self, tp: TP) -> bool:
        return True

    def seek_due(self) -> bool:
        return False


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread, with the fetch wait and end offsets open to subclasses.

    With the defaults it is Faust's own. Guarded by the sha256 of Faust's
    ``_create_worker_consumer`` and ``_highwaters`` and by aiokafka's reading of
    ``_fetch_max_wait_ms`` in ``AIOKafkaConsumer.start`` (faust-streaming 0.15.3, aiokafka 0.14.0).
    """

    #: The consumer's fetch_max_wait_ms (None: Faust's fixed 1500, for which it has no setting).
    fetch_max_wait_ms: ClassVar[int | None] = None

    def _create_worker_consumer(self, transport: Any) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        if self.fetch_max_wait_ms is not None:
            # Read by AIOKafkaConsumer.start, when it builds its Fetcher.
            consumer._fetch_max_wait_ms = self.fetch_max_wait_ms  # noqa: SLF001 - patch 2
        return consumer

    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        listed = await super()._highwaters(partitions)
        return await self.correct_end_offsets(self._ensure_consumer(), listed)

    async def correct_end_offsets(
        self, consumer: AIOKafkaConsumer, listed: Mapping[TP, int]
    ) -> Mapping[TP, int]:
        """The end offsets to use (table recovery reads changelogs up to them) given those listed."""
        return listed


class DrainLoopConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer whose fetch loop calls four methods a subclass may replace.

    ``_drain_messages`` is Faust's (faust-streaming 0.15.3) with ``await self.commit()``,
    the ``wait_first`` delivery and a rebalance hold put behind :meth:`commit_by_count`,
    :meth:`deliver`, :meth:`new_record_hold` and :meth:`seek_back`; with the defaults
    here it does what Faust's does. The consumer thread is :attr:`consumer_thread_class`
    (Faust's ``_new_consumer_thread`` names its class inline).
    """

    consumer_thread_class: ClassVar[type[faust_aiokafka.AIOKafkaConsumerThread]] = ConsumerThread

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return self.consumer_thread_class(self, loop=self.loop, beacon=self.beacon)

    def new_record_hold(self) -> RecordHold:
        """The hold consulted for each fetched record (one per run of the loop)."""
        return _NoHold()

    async def seek_back(self) -> None:
        """Fetch again from the committed offsets (when the hold says a seek is due)."""
        await self.perform_seek()

    async def commit_by_count(self) -> None:
        """The commit due every ``broker_commit_every`` acknowledged messages."""
        await self.commit()

    async def deliver(self, delivery: Coroutine[Any, Any, Any], suspended: bool) -> None:
        """Hand one message to the agents, raced against flow suspension (a rebalance).

        Args:
            delivery: the conductor's coroutine delivering the message.
            suspended: whether flow was suspended when the message was reached.
        """
        await self.wait_first(delivery, self.suspend_flow.wait())

    async def _drain_messages(self, fetcher: ServiceT) -> None:  # pragma: no cover - Faust's loop
        # Faust's Consumer._drain_messages; changes are marked "hook".
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = cast(Service, self)._stopped.is_set  # noqa: SLF001 - patch 1
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set  # noqa: SLF001 - patch 1

        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        flag_consumer_fetching = CONSUMER_FETCHING
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        suspended = self.suspend_flow.is_set  # hook: deliver
        held = self.new_record_hold()  # hook: the hold

        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                if held.seek_due():  # hook: the hold
                    await self.seek_back()
                set_flag(flag_consumer_fetching)
                ait = cast(AsyncIterator, getmany(timeout=1.0))

                # Sleeping because sometimes getmany is called in a loop
                # never releasing to the event loop
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0

                        if not held.admit(tp):  # hook: the hold
                            continue
                        if held.seek_due():
                            await self.seek_back()
                            break  # the rest of this fetch predates the seek
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            # We have a gap in income messages
                            if gap > 1 and r_offset:
                                acks_enabled = acks_enabled_for(message.topic)
                                if acks_enabled:
                                    await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit_by_count()  # hook
                            await self.deliver(callback(message), suspended())  # hook
                            set_read_offset(tp, offset)
                        else:
                            self.log.dev(
                                "DROPPED MESSAGE ROFF %r: k=%r v=%r",
                                offset,
                                message.key,
                                message.value,
                            )
                    unset_flag(flag_consumer_fetching)

        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                # we're already stopping so ignore
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                # we're already stopping so ignore
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(flag_consumer_fetching)


# --- 3. Raw requests on a consumer's connections ----------------------------------------------


def consumer_client(consumer: AIOKafkaConsumer) -> AIOKafkaClient:
    """The client holding ``consumer``'s broker connections (aiokafka 0.14: ``_client``).

    Its ``cluster``, ``force_metadata_update`` and ``send`` are public; only reaching it is not.
    """
    return consumer._client  # noqa: SLF001 - patch 3


# --- 4. Faust's stream iterator, per batch ------------------------------------------------------


def channel_queue(stream: StreamT) -> ThrowableQueue:
    """The queue the conductor puts ``stream``'s events on (``Channel.queue``; not on ChannelT)."""
    return cast(ThrowableQueue, stream.channel.queue)  # type: ignore[attr-defined]


def count_events(stream: StreamT, n: int) -> None:
    """Add ``n`` to the events the stream has yielded (``Stream.events_total``; not on StreamT)."""
    stream.events_total += n  # type: ignore[attr-defined]


def admit_events(stream: StreamT, taken: list[Any]) -> tuple[list[EventT], list[Any]]:
    """The events of ``taken`` to process, and each one's sensor state, as ``Stream._py_aiter``.

    Events of an earlier consumer generation (fetched before a rebalance) or taken while
    flow is stopped are acknowledged here, unprocessed. The others are tracked until
    acknowledged (graceful shutdown waits for them) and reported to the sensors.
    """
    app = stream.app
    consumer, sensors, acking_topics = app.consumer, app.sensors, app.topics.acking_topics
    flow_active = app.flow_control.is_active()
    generation = app.consumer_generation_id
    admitted: list[EventT] = []
    states: list[Any] = []
    for event in taken:
        message = event.message
        if not flow_active or message.generation_id != generation:
            ack_event(stream, event, None)
            continue
        if message.topic in acking_topics and not message.tracked:
            message.tracked = True
            consumer.track_message(message)
        states.append(sensors.on_stream_event_in(message.tp, message.offset, stream, event))
        admitted.append(event)
    return admitted, states


def ack_event(stream: StreamT, event: EventT, sensor_state: Any) -> None:
    """Acknowledge a processed (or skipped: ``sensor_state`` None) event, as ``Stream._py_aiter``."""
    message = event.message
    sensors = stream.app.sensors
    last_stream_to_ack = event.ack()
    if sensor_state is not None:
        sensors.on_stream_event_out(message.tp, message.offset, stream, event, sensor_state)
    if last_stream_to_ack:
        sensors.on_message_out(message.tp, message.offset, message)


# --- 5. Decoding raw topics ---------------------------------------------------------------------


class RawSchema(faust.Schema):
    """Raw keys and values: an event carries the bytes fetched, made without Faust's codecs.

    Replaces the decode function of ``Schema.compile`` (faust-streaming 0.15.3), which runs
    the key and value through the app's serializer registry per message: on raw topics that
    decodes nothing and cost 2.68 us a message against 0.22 us here. The event is made as
    ``App.create_event`` makes it. Sending is Faust's own (raw serializers).
    """

    def __init__(self) -> None:
        super().__init__(key_serializer="raw", value_serializer="raw")

    def compile(self, app: AppT, **_: Any) -> Any:
        """The decode function of the topic's channel: key and value as fetched."""
        event_class = app.conf.Event

        async def decode(message: Message, *, propagate: bool = False) -> EventT:
            return event_class(app, message.key, message.value, message.headers, message)

        return decode


# --- 6. The current event of a task ----------------------------------------------------------


def set_current_event(event: EventT) -> None:
    """Make ``event`` the current event of this task, for Faust's tables.

    Faust reads and writes a table key in the store of the current event's partition
    (``faust.streams.current_event()``, a task-local context variable), and a batch holds
    events of many partitions. Only the task's variable is set: Faust's setter,
    ``Stream._set_current_event``, also sets ``stream.current_event``, which Faust's
    ``take_events`` read for a message that arrived during a batch; left at an event of
    the batch, that event was buffered in the new message's place, processed twice, and
    the new message never.
    """
    faust_streams._current_event.set(weakref.ref(event))  # noqa: SLF001 - patch 6
