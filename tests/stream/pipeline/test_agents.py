"""The events agent: table partitions bound through its own task's current event only (a
failing batch is bisected: tests/stream/pipeline/test_dead_letters.py)."""

from __future__ import annotations

import asyncio

from faust import streams as faust_streams

from stream.kafka.patches import set_current_event


class _Event:
    """Stands in for a Faust event (weak-referenceable, like the real one)."""


def test_binding_sets_the_current_event_faust_tables_read_in_this_task_only() -> None:
    async def main() -> None:
        batch_event = _Event()
        seen_elsewhere: list[object] = []
        bound = asyncio.Event()

        async def drainer() -> None:  # another task, as the stream's drainer is
            await bound.wait()
            seen_elsewhere.append(faust_streams.current_event())

        other = asyncio.create_task(drainer())
        await asyncio.sleep(0)
        set_current_event(batch_event)  # type: ignore[arg-type]
        bound.set()
        await other
        assert faust_streams.current_event() is batch_event
        assert seen_elsewhere == [None]

    asyncio.run(main())
