"""BatchQueue with a fake model: order per caller, budgets, back-pressure, failures, shutdown."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import pytest

from encoders.batching import BatchQueue
from encoders.errors import InferenceFailed, NotReady, Overloaded

R = TypeVar("R")


class FakeModel:
    """Returns row ``[item, 2 * item]`` per item; records each call; can be held or made to fail."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()
        self.fail_next = False

    def __call__(self, items: list[int]) -> np.ndarray:
        self.calls.append(list(items))
        self.started.set()
        self.release.wait(timeout=30)
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("boom")
        return np.array([[item, 2 * item] for item in items], dtype=np.float32)


class Recorder:
    def __init__(self) -> None:
        self.depths: list[int] = []
        self.batches: list[tuple[int, int]] = []
        self.dropped = 0

    def on_queue_depth(self, items: int) -> None:
        self.depths.append(items)

    def on_batch(self, items: int, cost: int, seconds: float) -> None:
        self.batches.append((items, cost))

    def on_dropped(self, requests: int) -> None:
        self.dropped += requests


def run_with_queue(
    model: FakeModel,
    body: Callable[[BatchQueue[int]], Awaitable[R]],
    *,
    max_batch_cost: int = 1000,
    max_wait_s: float = 0.0,
    max_queued: int = 10_000,
    observer: Recorder | None = None,
) -> R:
    async def main() -> R:
        with ThreadPoolExecutor(max_workers=1) as executor:
            queue: BatchQueue[int] = BatchQueue(
                model,
                executor,
                max_batch_cost=max_batch_cost,
                max_wait_s=max_wait_s,
                max_queued=max_queued,
                observer=observer,
            )
            queue.start()
            try:
                return await body(queue)
            finally:
                model.release.set()
                await queue.stop()

    return asyncio.run(main())


async def wait_for(condition: Callable[[], bool]) -> None:
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def test_each_caller_gets_its_own_rows_in_order() -> None:
    model = FakeModel()
    requests = [list(range(start, start + n)) for start, n in [(0, 3), (100, 1), (200, 5), (300, 2)]]

    async def body(queue: BatchQueue[int]) -> list[np.ndarray]:
        return await asyncio.gather(*(queue.submit(items, len(items)) for items in requests))

    results = run_with_queue(model, body)
    for items, rows in zip(requests, results, strict=True):
        np.testing.assert_array_equal(rows[:, 0], items)
        np.testing.assert_array_equal(rows[:, 1], [2 * i for i in items])


def test_requests_waiting_together_share_one_call() -> None:
    model = FakeModel()
    model.release.clear()

    async def body(queue: BatchQueue[int]) -> None:
        first = asyncio.ensure_future(queue.submit([1], 1))
        await wait_for(model.started.is_set)  # the model is busy with the first request
        rest = [asyncio.ensure_future(queue.submit([10 + i], 1)) for i in range(5)]
        await wait_for(lambda: queue.depth == 5)
        model.release.set()
        await asyncio.gather(first, *rest)

    run_with_queue(model, body)
    assert model.calls == [[1], [10, 11, 12, 13, 14]]


def test_batches_respect_the_cost_budget() -> None:
    model = FakeModel()
    model.release.clear()
    recorder = Recorder()

    async def body(queue: BatchQueue[int]) -> None:
        first = asyncio.ensure_future(queue.submit([0], 1))
        await wait_for(model.started.is_set)
        # Costs 4, 4, 4, 20 with a budget of 10: [4, 4], [4], then the costly one alone.
        rest = [
            asyncio.ensure_future(queue.submit([i], cost)) for i, cost in [(1, 4), (2, 4), (3, 4), (4, 20)]
        ]
        await wait_for(lambda: queue.depth == 4)
        model.release.set()
        await asyncio.gather(first, *rest)

    run_with_queue(model, body, max_batch_cost=10, observer=recorder)
    assert model.calls == [[0], [1, 2], [3], [4]]
    assert recorder.batches == [(1, 1), (2, 8), (1, 4), (1, 20)]


def test_an_idle_model_waits_for_a_batch_to_fill() -> None:
    model = FakeModel()

    async def body(queue: BatchQueue[int]) -> None:
        # A long wait: the batch is cut when the budget is reached, not when the wait ends.
        first = asyncio.ensure_future(queue.submit([1], 5))
        await asyncio.sleep(0.05)
        await queue.submit([2], 5)
        await first

    run_with_queue(model, body, max_batch_cost=10, max_wait_s=60.0)
    assert model.calls == [[1, 2]]


def test_a_full_queue_refuses_work() -> None:
    model = FakeModel()
    model.release.clear()

    async def body(queue: BatchQueue[int]) -> None:
        running = asyncio.ensure_future(queue.submit([1], 1))
        await wait_for(model.started.is_set)
        waiting = asyncio.ensure_future(queue.submit([2, 3, 4], 3))
        await wait_for(lambda: queue.depth == 3)
        with pytest.raises(Overloaded, match="max_queue_texts=4"):
            await queue.submit([5, 6], 2)
        model.release.set()
        await asyncio.gather(running, waiting)
        # Drained: accepted again.
        await queue.submit([7, 8], 2)

    run_with_queue(model, body, max_queued=4)


def test_a_failing_batch_fails_its_callers_only() -> None:
    model = FakeModel()
    model.fail_next = True

    async def body(queue: BatchQueue[int]) -> np.ndarray:
        with pytest.raises(InferenceFailed, match="RuntimeError: boom"):
            await queue.submit([1], 1)
        return await queue.submit([2], 1)

    rows = run_with_queue(model, body)
    np.testing.assert_array_equal(rows, [[2, 4]])


def test_cancelled_callers_are_dropped_before_the_model() -> None:
    model = FakeModel()
    model.release.clear()
    recorder = Recorder()

    async def body(queue: BatchQueue[int]) -> None:
        running = asyncio.ensure_future(queue.submit([1], 1))
        await wait_for(model.started.is_set)
        gone = asyncio.ensure_future(queue.submit([2], 1))
        kept = asyncio.ensure_future(queue.submit([3], 1))
        await wait_for(lambda: queue.depth == 2)
        gone.cancel()
        model.release.set()
        await asyncio.gather(running, kept)

    run_with_queue(model, body, observer=recorder)
    assert model.calls == [[1], [3]]
    assert recorder.dropped == 1
    assert recorder.depths[-1] == 0


def test_stop_finishes_queued_work_then_refuses() -> None:
    model = FakeModel()
    model.release.clear()

    async def main() -> None:
        with ThreadPoolExecutor(max_workers=1) as executor:
            queue: BatchQueue[int] = BatchQueue(
                model, executor, max_batch_cost=100, max_wait_s=0.0, max_queued=100
            )
            with pytest.raises(NotReady):
                await queue.submit([0], 1)  # not started
            queue.start()
            running = asyncio.ensure_future(queue.submit([1], 1))
            await wait_for(model.started.is_set)
            queued = asyncio.ensure_future(queue.submit([2], 1))
            await wait_for(lambda: queue.depth == 1)
            stopping = asyncio.ensure_future(queue.stop())
            await asyncio.sleep(0)
            with pytest.raises(NotReady):
                await queue.submit([3], 1)
            model.release.set()
            await stopping
            assert (await running)[0, 0] == 1
            assert (await queued)[0, 0] == 2

    asyncio.run(main())
    assert model.calls == [[1], [2]]


def test_bad_configuration() -> None:
    with ThreadPoolExecutor(1) as executor, pytest.raises(ValueError, match="max_batch_cost"):
        BatchQueue(FakeModel(), executor, max_batch_cost=0, max_wait_s=0, max_queued=1)
