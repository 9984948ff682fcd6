"""Dynamic batching: many concurrent requests, one model call per batch.

:class:`BatchQueue` owns the pending requests alone. One worker task cuts a batch whenever the
model is free: requests in arrival order until their summed cost (tokens) reaches the budget,
at least one. When the model is idle and the queue holds less than the budget, the oldest
request waits up to ``max_wait_s`` for company; under load the queue fills while the model is
busy and no wait applies. The model runs in an executor (never on the event loop) and each
caller gets its own rows back in its own order. Cancelled callers are dropped before the model
sees them. A full queue refuses new work (:class:`~encoders.errors.Overloaded`) instead of
growing without bound.

Generic over the item type and free of torch, so it is tested with a fake model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import numpy as np

from encoders.errors import InferenceFailed, NotReady, Overloaded

__all__ = ["BatchObserver", "BatchQueue"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class BatchObserver(Protocol):
    """Receives what the queue does (metrics)."""

    def on_queue_depth(self, items: int) -> None:
        """Items now waiting."""

    def on_batch(self, items: int, cost: int, seconds: float) -> None:
        """One model call finished (successfully or not)."""

    def on_dropped(self, requests: int) -> None:
        """Requests dropped because their caller went away."""


class _NoObserver:
    def on_queue_depth(self, items: int) -> None:
        pass

    def on_batch(self, items: int, cost: int, seconds: float) -> None:
        pass

    def on_dropped(self, requests: int) -> None:
        pass


@dataclass(slots=True)
class _Entry(Generic[T]):
    items: Sequence[T]
    cost: int
    future: asyncio.Future[np.ndarray]
    enqueued_at: float = field(default_factory=time.monotonic)


class BatchQueue(Generic[T]):
    """Batches items of concurrent callers into calls of ``run``.

    Use from one event loop: :meth:`start`, then :meth:`submit` from any number of tasks, then
    :meth:`stop`.
    """

    def __init__(
        self,
        run: Callable[[list[T]], np.ndarray],
        executor: Executor,
        *,
        max_batch_cost: int,
        max_wait_s: float,
        max_queued: int,
        observer: BatchObserver | None = None,
    ) -> None:
        """Create a stopped queue.

        Args:
            run: The model call: a flat list of items in, one row per item out, in order.
                Runs in ``executor``.
            executor: Where ``run`` runs; a single thread for a model that is not re-entrant.
            max_batch_cost: Budget of one batch in cost units (tokens); a request costlier
                than the budget forms a batch alone.
            max_wait_s: Longest an idle model waits for a batch to fill.
            max_queued: Most items waiting; a request that would exceed it is refused.
            observer: Metrics hooks.

        Raises:
            ValueError: On a non-positive budget or queue size, or a negative wait.
        """
        if max_batch_cost <= 0 or max_queued <= 0 or max_wait_s < 0:
            raise ValueError(
                "max_batch_cost and max_queued must be > 0 and max_wait_s >= 0, got "
                f"{max_batch_cost}, {max_queued}, {max_wait_s}"
            )
        self._run = run
        self._executor = executor
        self._max_cost = max_batch_cost
        self._max_wait_s = max_wait_s
        self._max_queued = max_queued
        self._observer: BatchObserver = observer or _NoObserver()
        self._pending: deque[_Entry[T]] = deque()
        self._pending_items = 0
        self._pending_cost = 0
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def depth(self) -> int:
        """Items waiting for the model."""
        return self._pending_items

    def start(self) -> None:
        """Start the worker task on the running loop."""
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work(), name="batch-queue")

    async def stop(self) -> None:
        """Refuse new requests, finish the queued ones, then stop the worker."""
        self._closing = True
        self._wake.set()
        if self._worker is not None:
            await self._worker
            self._worker = None

    async def submit(self, items: Sequence[T], cost: int) -> np.ndarray:
        """Queue items and wait for their rows.

        Args:
            items: This caller's items.
            cost: Their summed cost (tokens), counted against the batch budget.

        Returns:
            One row per item, in the caller's order.

        Raises:
            NotReady: If the queue is stopped or stopping.
            Overloaded: If the queue already holds ``max_queued`` items.
            InferenceFailed: If the model raised on the batch holding these items.
        """
        if self._closing or self._worker is None:
            raise NotReady("the encoder is not running (starting or shutting down)")
        if not items:
            raise ValueError("submit needs at least one item")
        if self._pending_items and self._pending_items + len(items) > self._max_queued:
            raise Overloaded(
                f"{self._pending_items} texts are already waiting (max_queue_texts={self._max_queued}); "
                "retry later"
            )
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._pending.append(_Entry(items, cost, future))
        self._pending_items += len(items)
        self._pending_cost += cost
        self._observer.on_queue_depth(self._pending_items)
        self._wake.set()
        return await future

    async def _work(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._fill()
            batch = self._cut()
            if batch:
                await self._execute(batch)

    async def _fill(self) -> None:
        """Let an under-budget batch wait for company, up to max_wait_s after its oldest request."""
        deadline = self._pending[0].enqueued_at + self._max_wait_s
        while self._pending_cost < self._max_cost and not self._closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)

    def _cut(self) -> list[_Entry[T]]:
        batch: list[_Entry[T]] = []
        cost = 0
        dropped = 0
        while self._pending:
            entry = self._pending[0]
            if batch and cost + entry.cost > self._max_cost:
                break
            self._pending.popleft()
            self._pending_items -= len(entry.items)
            self._pending_cost -= entry.cost
            if entry.future.done():  # the caller went away
                dropped += 1
                continue
            batch.append(entry)
            cost += entry.cost
        self._observer.on_queue_depth(self._pending_items)
        if dropped:
            self._observer.on_dropped(dropped)
        return batch

    async def _execute(self, batch: list[_Entry[T]]) -> None:
        items: list[T] = [item for entry in batch for item in entry.items]
        cost = sum(entry.cost for entry in batch)
        started = time.perf_counter()
        try:
            rows = await asyncio.get_running_loop().run_in_executor(self._executor, self._run, items)
            if len(rows) != len(items):
                raise RuntimeError(f"model returned {len(rows)} rows for {len(items)} items")
        except Exception as exc:
            log.exception("encoding a batch of %d items failed", len(items))
            error = InferenceFailed(f"encoding failed: {type(exc).__name__}: {exc}")
            for entry in batch:
                if not entry.future.done():
                    entry.future.set_exception(error)
            return
        finally:
            self._observer.on_batch(len(items), cost, time.perf_counter() - started)
        offset = 0
        for entry in batch:
            part = rows[offset : offset + len(entry.items)]
            offset += len(entry.items)
            if not entry.future.done():
                entry.future.set_result(part)
