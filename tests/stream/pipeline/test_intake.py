"""Bulk intake: batches are what is waiting, taken at once, acknowledged once processed.

Runs on a real Faust app's topic stream (nothing connects: events are put on the
stream's channel queue, as the consumer's conductor does).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import faust
import pytest
from faust.types import EventT, Message, StreamT

from stream.pipeline.intake import take_available

_offsets = itertools.count()


def _stream() -> tuple[faust.App, StreamT]:
    app = faust.App(f"test-intake-{next(_offsets)}", broker="kafka://127.0.0.1:1", store="memory://")
    app.flow_control.resume()  # as a running worker's is
    return app, app.topic("events", value_serializer="raw").stream()


def _event(app: faust.App, *, generation: int | None = None) -> EventT:
    offset = next(_offsets)
    gen = app.consumer_generation_id if generation is None else generation
    message = Message("events", 0, offset, 0.0, 0, {}, b"user", b"%d" % offset, None, generation_id=gen)
    return faust.Event(app, b"user", message.value, {}, message)


def _put(stream: StreamT, *events: EventT) -> None:
    for event in events:
        stream.channel.queue.put_nowait(event)  # type: ignore[attr-defined]


def _acked(events: list[EventT]) -> list[bool]:
    return [e.message.acked for e in events]


def _run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(main())  # type: ignore[arg-type]


def test_takes_every_waiting_event_up_to_the_limit_and_acks_each_batch_once_processed() -> None:
    async def main() -> None:
        app, stream = _stream()
        events = [_event(app) for _ in range(5)]
        _put(stream, *events)
        batches: AsyncIterator[list[EventT]] = take_available(stream, 3).__aiter__()
        first = await batches.__anext__()
        assert first == events[:3]
        assert _acked(events) == [False] * 5  # not while the batch is being processed
        second = await batches.__anext__()
        assert second == events[3:]
        assert _acked(events) == [True, True, True, False, False]
        assert stream.events_total == 5  # type: ignore[attr-defined]
        await batches.aclose()

    _run(main)


def test_an_idle_stream_yields_its_first_event_without_waiting_for_more() -> None:
    async def main() -> None:
        app, stream = _stream()
        first, later = _event(app), _event(app)
        batches = take_available(stream, 500).__aiter__()
        taking = asyncio.ensure_future(batches.__anext__())
        await asyncio.sleep(0.01)
        assert not taking.done()  # nothing waiting: it waits
        _put(stream, first)
        assert await taking == [first]
        _put(stream, later)
        assert await batches.__anext__() == [later]
        await batches.aclose()

    _run(main)


def test_events_delivered_in_runs_between_loop_turns_join_one_batch() -> None:
    async def main() -> None:
        app, stream = _stream()
        runs = [[_event(app) for _ in range(3)] for _ in range(3)]

        async def consumer_delivering_a_fetch() -> None:  # yields to the loop between runs
            for run in runs:
                _put(stream, *run)
                await asyncio.sleep(0)

        batches = take_available(stream, 500).__aiter__()
        taking = asyncio.ensure_future(batches.__anext__())
        await asyncio.sleep(0)
        await consumer_delivering_a_fetch()
        assert await taking == [e for run in runs for e in run]
        await batches.aclose()

    _run(main)


def test_linger_waits_for_events_arriving_after_the_first() -> None:
    async def main() -> None:
        app, stream = _stream()
        first, second = _event(app), _event(app)
        _put(stream, first)
        batches = take_available(stream, 500, linger_s=0.2).__aiter__()
        taking = asyncio.ensure_future(batches.__anext__())
        await asyncio.sleep(0.01)
        _put(stream, second)
        assert await taking == [first, second]
        await batches.aclose()

    _run(main)


def test_events_of_an_earlier_generation_are_acknowledged_but_not_processed() -> None:
    async def main() -> None:
        app, stream = _stream()
        stale = _event(app, generation=app.consumer_generation_id - 1)
        current = _event(app)
        _put(stream, stale, current)
        batches = take_available(stream, 500).__aiter__()
        assert await batches.__anext__() == [current]
        assert stale.message.acked
        await batches.aclose()

    _run(main)


def test_a_batch_whose_processing_fails_is_not_acknowledged() -> None:
    """Its offsets stay uncommitted, so a restart delivers it again."""

    async def main() -> None:
        app, stream = _stream()
        events = [_event(app) for _ in range(2)]
        _put(stream, *events)

        async def agent() -> Any:
            async for _batch in take_available(stream, 500):
                raise RuntimeError("ranking failed")

        with contextlib.suppress(RuntimeError):
            await agent()
        assert _acked(events) == [False, False]

    _run(main)


def test_a_stream_ended_by_its_channel_ends_the_batches_without_an_error() -> None:
    """As a worker stops, ``StopAsyncIteration`` is thrown into the channel's queue."""

    async def main() -> None:
        app, stream = _stream()
        event = _event(app)
        _put(stream, event)
        batches = take_available(stream, 500).__aiter__()
        assert await batches.__anext__() == [event]
        taking = asyncio.ensure_future(batches.__anext__())
        await asyncio.sleep(0)
        await stream.channel.throw(StopAsyncIteration())  # type: ignore[attr-defined]
        with pytest.raises(StopAsyncIteration):  # the end of the batches, not a RuntimeError
            await taking
        assert event.message.acked

    _run(main)


def test_a_stream_ended_while_a_batch_is_being_taken_ends_the_batches_without_an_error() -> None:
    """The end can be thrown between the first event and the rest of a batch."""

    async def main() -> None:
        app, stream = _stream()
        event = _event(app)
        _put(stream, event)
        batches = take_available(stream, 500, linger_s=0.2).__aiter__()
        taking = asyncio.ensure_future(batches.__anext__())
        await asyncio.sleep(0.05)  # it holds the first event and lingers for more
        await stream.channel.throw(StopAsyncIteration())  # type: ignore[attr-defined]
        with pytest.raises(StopAsyncIteration):  # the end of the batches, not a RuntimeError
            await taking
        assert not event.message.acked  # never processed: delivered again after a restart

    _run(main)
