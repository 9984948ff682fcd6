"""Bulk intake: a stream's waiting events, taken as soon as there is one.

Faust's ``take_events(n, within)`` yields a batch when ``n`` events are buffered or when
``within`` seconds have passed, whichever is first, and fills its buffer through the
stream's iterator, one event loop turn per event. Both cost the events agent dearly: a
window long enough to coalesce a burst of one user's events into one list (0.2 s) is the
floor of every list's latency, and a short one leaves batches as small as the events the
iterator can move during the window, each batch paying for its lists and table writes
(measured: a 20 ms window cut the worker's maximum rate by a third).

:func:`take_available` batches by what is waiting instead: it waits for the first
event, then takes every event already delivered to the stream's channel (at most
``max_events``) without a turn per event. An idle worker answers one event at a time at
once; a busy one finds the events that arrived while it worked, so batches (and the
coalescing of a user's events into one list) grow with the load and shrink with it.
What Faust's iterator does per event is done here per batch: stale events (of an
earlier generation, or taken while flow is stopped) are acknowledged unprocessed,
events are tracked for graceful shutdown and the sensors, and every event is
acknowledged once its batch is processed, so offsets are committed only after it
(at-least-once).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from faust.types import EventT, StreamT


async def take_available(
    stream: StreamT, max_events: int, linger_s: float = 0.0
) -> AsyncIterator[list[EventT]]:
    """Yield lists of ``stream``'s events: all those waiting (at most ``max_events``) once one is.

    Args:
        stream: an agent's stream over a topic (its channel's queue receives the events).
        max_events: most events in one batch.
        linger_s: after the first event, how long to wait for more (0: take what is
            there at once; the consumer still hands over what it has fetched first).

    The events of a batch are acknowledged when the caller asks for the next batch. A
    batch whose processing raised or was cancelled is not: offsets are not committed past
    it, and a restart delivers it again. (The events agent dead-letters a batch that
    raises, so that it holds back neither commits nor rebalances.)
    """
    app = stream.app
    consumer = app.consumer
    sensors = app.sensors
    acking_topics = app.topics.acking_topics
    queue = stream.channel.queue  # type: ignore[attr-defined]
    get_nowait, empty = queue.get_nowait, queue.empty
    started_here = await stream.maybe_start()
    try:
        while not stream.should_stop:
            try:
                taken: list[Any] = [await queue.get()]
            except StopAsyncIteration:
                # Thrown into the queue to end the stream (as a worker stops). Raised
                # inside an async generator it would become a RuntimeError and crash
                # the agent; Faust's own iterator returns here too.
                return
            if linger_s > 0:
                await asyncio.sleep(linger_s)
            # The consumer delivers a fetch in runs, yielding to the loop between them:
            # take runs until a turn of the loop brings nothing more.
            while True:
                while len(taken) < max_events and not empty():
                    taken.append(get_nowait())
                if len(taken) >= max_events:
                    break
                await asyncio.sleep(0)
                if empty():
                    break
            admitted, sensor_states = _admit(stream, taken, consumer, sensors, acking_topics)
            if admitted:
                stream.events_total += len(admitted)  # type: ignore[attr-defined]
                yield admitted
            # Reached when the caller asks for the next batch: this one is processed.
            for event, state in zip(admitted, sensor_states, strict=True):
                _ack(stream, event, sensors, state)
    finally:
        if started_here:
            await stream.stop()


def _admit(
    stream: StreamT, taken: list[Any], consumer: Any, sensors: Any, acking_topics: set[str]
) -> tuple[list[EventT], list[Any]]:
    """The events of ``taken`` to process, and the sensor state of each.

    As Faust's stream iterator: events of an earlier consumer generation (fetched before
    a rebalance) or taken while flow is stopped are acknowledged here, unprocessed.
    """
    flow_active = stream.app.flow_control.is_active()
    generation = stream.app.consumer_generation_id
    admitted: list[EventT] = []
    states: list[Any] = []
    for event in taken:
        message = event.message
        if not flow_active or message.generation_id != generation:
            _ack(stream, event, sensors, None)
            continue
        if message.topic in acking_topics and not message.tracked:
            message.tracked = True
            consumer.track_message(message)
        states.append(sensors.on_stream_event_in(message.tp, message.offset, stream, event))
        admitted.append(event)
    return admitted, states


def _ack(stream: StreamT, event: EventT, sensors: Any, sensor_state: Any) -> None:
    message = event.message
    last_stream_to_ack = event.ack()
    if sensor_state is not None:
        sensors.on_stream_event_out(message.tp, message.offset, stream, event, sensor_state)
    if last_stream_to_ack:
        sensors.on_message_out(message.tp, message.offset, message)
