"""Faust's aiokafka transport with a cheaper hand-off of each fetched message to the agents.

Faust's consumer delivers every fetched message by racing its delivery against flow
suspension (a rebalance) with ``Service.wait_first``: four tasks and an
``asyncio.wait`` per message. Profiling a worker at full load put 12% of its main thread
in ``wait_first`` alone, more than the ranking. Nearly every delivery completes
without waiting (the agent's queue has room), so :class:`Consumer` runs a delivery
inline first and only falls back to Faust's race when the delivery has to wait; what
happens to a waiting delivery, offsets and gaps is Faust's own code, unchanged (the copy of
Faust's fetch loop that makes this possible is ``stream.kafka.patches.DrainLoopConsumer``).
Two rules are added: stream (not changelog) records fetched during a rebalance are not
delivered, their partitions sought back to the committed offsets when it ends; and the
commit due every ``broker_commit_every`` acknowledged messages runs beside delivery
instead of inside it (see :meth:`Consumer.commit_by_count`).

Registered as the ``streamrank://`` broker scheme (entry point ``faust.transports``);
``tansu://`` (``stream.kafka.embedded``) builds on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, cast

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from stream.kafka import patches


def run_until_blocked(coro: Coroutine[Any, Any, Any]) -> tuple[bool, Any]:
    """Run ``coro`` until it completes or first waits, on the caller's stack.

    Returns:
        ``(True, result)`` when it completed; ``(False, waited)`` when it is waiting on
        ``waited`` (what it yielded to the event loop). Continue it with
        :func:`resume`. Exceptions it raises before waiting propagate.
    """
    try:
        waited = coro.send(None)
    except StopIteration as stop:
        return True, stop.value
    return False, waited


class _Resumed:
    """Awaitable continuing a coroutine that :func:`run_until_blocked` left waiting."""

    __slots__ = ("_coro", "_waited")

    def __init__(self, coro: Coroutine[Any, Any, Any], waited: Any) -> None:
        self._coro = coro
        self._waited = waited

    def __await__(self) -> Generator[Any, None, Any]:
        coro, waited = self._coro, self._waited
        while True:
            # Hand what it waits on to the task awaiting us; pass back what the task sends
            # or throws (a cancellation, say), as the task would have done with coro itself.
            try:
                yield waited
            except BaseException as exc:
                try:
                    waited = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    waited = coro.send(None)
                except StopIteration as stop:
                    return stop.value


async def resume(coro: Coroutine[Any, Any, Any], waited: Any) -> Any:
    """Continue a coroutine left waiting on ``waited`` by :func:`run_until_blocked`."""
    return await _Resumed(coro, waited)


class RebalanceHold:
    """Holds back stream records fetched while the app rebalances; says when to seek back.

    Stream records handed over while a rebalance (table recovery included) was still under
    way were lost in 6 of 15 runs of a worker restarted on a backlog: read, even committed,
    but never processed. Held records are not marked read; once the rebalance
    is over, a seek to the committed offsets fetches them again, as Faust itself does with
    records fetched while its flow is stopped. Changelog records pass: recovery reads them.
    """

    def __init__(self, app: Any, is_changelog: Callable[[TP], bool]) -> None:
        self._app = app
        self._is_changelog = is_changelog
        self._held = False

    def admit(self, tp: TP) -> bool:
        """Whether a record of ``tp`` may be delivered now (False: it is held)."""
        if self._app.rebalancing and not self._is_changelog(tp):
            self._held = True
            return False
        return True

    def seek_due(self) -> bool:
        """True once after a rebalance during which records were held."""
        if self._held and not self._app.rebalancing:
            self._held = False
            return True
        return False


class Consumer(patches.DrainLoopConsumer):
    """Faust's aiokafka consumer, delivering messages inline until a delivery waits.

    Fills the points :class:`stream.kafka.patches.DrainLoopConsumer` opens in Faust's fetch
    loop; what happens to a waiting delivery, offsets and gaps is Faust's own code.
    """

    _count_commit: asyncio.Future | None = None

    def new_record_hold(self) -> RebalanceHold:
        """Stream records fetched during a rebalance are held (see :class:`RebalanceHold`)."""
        tables = self.app.tables
        return RebalanceHold(self.app, lambda tp: tp.topic in tables.changelog_topics)

    async def commit_by_count(self) -> None:
        """Start a commit, unless one is under way, without stopping delivery for it.

        Faust awaits this commit inside the loop that delivers every fetched message to
        every agent, and a commit first flushes the producer. While the statistics agent
        writes a window's entries (thousands of changelog records, seconds of producing),
        that flush lasts until the writes end: traced at 25-75% load, event batches
        stopped for 2.4-3.9 s at the end of a third of the statistics windows. Run as a
        task of this service, the commit is the same call with the same offsets (those
        acknowledged so far), Faust's timer commits wait for it, and a failure crashes the
        consumer as before; stopping the service cancels it, and what it had not committed
        is delivered again after a restart (at-least-once, as with any crash).
        """
        running = self._count_commit
        if running is None or running.done():
            self._count_commit = self.add_future(self.commit())

    async def seek_back(self) -> None:
        """Seek back to the committed offsets after records were held during a rebalance."""
        self.log.info("Seeking back to committed offsets: stream records were held during a rebalance")
        await self.perform_seek()

    async def deliver(self, delivery: Coroutine[Any, Any, Any], suspended: bool) -> None:
        """Hand one message to the agents: inline, or raced against flow suspension if it waits."""
        if suspended:
            await self.wait_first(delivery, self.suspend_flow.wait())
            return
        done, waited = run_until_blocked(delivery)
        if not done:
            await self.wait_first(cast(Awaitable[Any], resume(delivery, waited)), self.suspend_flow.wait())


class KafkaTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with :class:`Consumer` (broker URL scheme ``streamrank://``)."""

    Consumer = Consumer
