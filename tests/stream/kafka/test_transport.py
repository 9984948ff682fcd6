"""The transport: inline delivery (a coroutine run until it waits, then resumed as a task), the
hold on stream records during a rebalance, and commits by count beside delivery. The guard of
the copy of Faust's fetch loop these plug into is in test_patches.py."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest
from faust.types import TP

from stream.kafka.transport import Consumer, RebalanceHold, resume, run_until_blocked


async def _no_wait(log: list[str]) -> str:
    log.append("ran")
    return "done"


def test_a_coroutine_that_never_waits_completes_inline() -> None:
    log: list[str] = []
    done, result = run_until_blocked(_no_wait(log))
    assert (done, result, log) == (True, "done", ["ran"])


def test_an_exception_before_waiting_propagates() -> None:
    async def fails() -> None:
        raise ValueError("bad message")

    with pytest.raises(ValueError, match="bad message"):
        run_until_blocked(fails())


def test_a_waiting_coroutine_is_resumed_with_what_it_waited_for() -> None:
    async def main() -> list[object]:
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        await queue.put(1)
        seen: list[object] = []

        async def put_then_note() -> str:
            await queue.put(2)  # full: waits until the reader below takes one
            await asyncio.sleep(0)  # a bare yield to the loop as well
            seen.append("put")
            return "delivered"

        coro = put_then_note()
        done, waited = run_until_blocked(coro)
        assert not done and isinstance(waited, asyncio.Future)
        task = asyncio.ensure_future(resume(coro, waited))
        seen.append(await queue.get())
        seen.append(await task)
        seen.append(await queue.get())
        return seen

    assert asyncio.run(main()) == [1, "put", "delivered", 2]


def test_cancelling_the_resumed_task_cancels_the_coroutine() -> None:
    async def main() -> list[str]:
        log: list[str] = []
        never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def wait_forever() -> None:
            try:
                await never
            except asyncio.CancelledError:
                log.append("cancelled inside")
                raise

        coro = wait_forever()
        done, waited = run_until_blocked(coro)
        assert not done
        task = asyncio.ensure_future(resume(coro, waited))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert never.cancelled()
        return log

    assert asyncio.run(main()) == ["cancelled inside"]


def test_an_exception_after_waiting_reaches_the_awaiting_task() -> None:
    async def main() -> None:
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def fails_later() -> None:
            await gate
            raise RuntimeError("late failure")

        coro = fails_later()
        done, waited = run_until_blocked(coro)
        assert not done
        task = asyncio.ensure_future(resume(coro, waited))
        gate.set_result(None)
        with pytest.raises(RuntimeError, match="late failure"):
            await task

    asyncio.run(main())


class _App:
    rebalancing = False


def test_stream_records_are_held_during_a_rebalance_and_a_seek_follows_once() -> None:
    app = _App()
    changelog = TP("streamrank-user_profiles-changelog", 0)
    events = TP("events", 0)
    hold = RebalanceHold(app, lambda tp: tp.topic.endswith("-changelog"))
    assert hold.admit(events) and not hold.seek_due()  # no rebalance: nothing held

    app.rebalancing = True
    assert hold.admit(changelog), "table recovery reads changelogs during the rebalance"
    assert not hold.admit(events)
    assert not hold.seek_due(), "no seek while the rebalance is under way"

    app.rebalancing = False
    assert hold.admit(events)
    assert hold.seek_due()
    assert not hold.seek_due(), "one seek per rebalance"


def test_a_rebalance_without_held_records_needs_no_seek() -> None:
    app = _App()
    hold = RebalanceHold(app, lambda tp: True)
    app.rebalancing = True
    assert hold.admit(TP("streamrank-item_popularity-changelog", 1))
    app.rebalancing = False
    assert not hold.seek_due()


class _CommittingConsumer:
    """What Consumer.commit_by_count uses of the consumer: its futures and commit."""

    _count_commit: asyncio.Future | None = None

    def __init__(self) -> None:
        self.commits_started = 0
        self.release = asyncio.Event()

    def add_future(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future:
        return asyncio.ensure_future(coro)

    async def commit(self) -> bool:
        self.commits_started += 1
        await self.release.wait()  # a producer flush that lasts
        return True


def test_a_commit_by_count_runs_beside_delivery_one_at_a_time() -> None:
    async def main() -> None:
        consumer = _CommittingConsumer()
        start = Consumer.commit_by_count
        await start(consumer)  # returns at once: no wait for the flush
        await asyncio.sleep(0)
        assert consumer.commits_started == 1
        await start(consumer)  # due again while the first runs: it covers those acks
        await asyncio.sleep(0)
        assert consumer.commits_started == 1
        consumer.release.set()
        await consumer._count_commit
        await start(consumer)
        await asyncio.sleep(0)
        assert consumer.commits_started == 2
        await consumer._count_commit

    asyncio.run(main())


def test_records_of_changelog_topics_pass_the_hold_of_a_consumer() -> None:
    class _Tables:
        changelog_topics = frozenset({"streamrank-user-profiles-changelog"})

    class _RebalancingApp:
        rebalancing = True
        tables = _Tables()

    class _ConsumerOfApp:
        app = _RebalancingApp()

    hold = Consumer.new_record_hold(_ConsumerOfApp())
    assert hold.admit(TP("streamrank-user-profiles-changelog", 0))
    assert not hold.admit(TP("events", 0))
