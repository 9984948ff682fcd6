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
(at-least-once). Those per-event steps copy Faust's stream iterator; they live in
``stream.kafka.patches`` with the other uses of Faust internals.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from faust.types import EventT, StreamT
from mode.utils.queues import ThrowableQueue

from stream.kafka import patches


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
    queue = patches.channel_queue(stream)
    started_here = await stream.maybe_start()
    try:
        while not stream.should_stop:
            try:
                taken = await _take(queue, max_events, linger_s)
            except StopAsyncIteration:
                # Thrown into the queue to end the stream (as a worker stops). Raised
                # inside an async generator it would become a RuntimeError and crash
                # the agent; Faust's own iterator returns here too.
                return
            admitted, sensor_states = patches.admit_events(stream, taken)
            if admitted:
                patches.count_events(stream, len(admitted))
                yield admitted
            # Reached when the caller asks for the next batch: this one is processed.
            for event, state in zip(admitted, sensor_states, strict=True):
                patches.ack_event(stream, event, state)
    finally:
        if started_here:
            await stream.stop()


async def _take(queue: ThrowableQueue, max_events: int, linger_s: float) -> list[Any]:
    """Wait for the queue's first item, then take what is waiting (at most ``max_events``)."""
    get_nowait, empty = queue.get_nowait, queue.empty
    taken: list[Any] = [await queue.get()]
    if linger_s > 0:
        await asyncio.sleep(linger_s)
    # The consumer delivers a fetch in runs, yielding to the loop between them:
    # take runs until a turn of the loop brings nothing more.
    while True:
        while len(taken) < max_events and not empty():
            taken.append(get_nowait())
        if len(taken) >= max_events:
            return taken
        await asyncio.sleep(0)
        if empty():
            return taken
