"""Liveness of a worker: a stall watchdog, agent crash reports, and the verdict ``/healthz`` serves.

A worker can stay up and answer HTTP while it no longer processes anything: an agent that
crashed on bad input is restarted by Faust's supervisor over a stream it can no longer read,
an agent can wait forever on something that never comes, a consumer can stop fetching.
Kubernetes restarts a pod only when its liveness probe fails, so each of these fails it:

- **agent stall** (``agent``): an agent holds events it took from its stream but has not
  acknowledged, and acknowledges nothing for ``LIVENESS_AGENT_STALL_S``. Every agent
  acknowledges a batch when it asks for the next one, so this is a batch that does not end.
  Not paused during rebalances: Faust waits for these events before it gives partitions
  up, so a stalled agent also stalls every rebalance.
- **consumer stall** (``consumer``): for ``LIVENESS_FETCH_STALL_S``, the broker's end offset
  of an assigned input partition is ahead of the consumer's high watermark (the end as its
  last fetch saw it), that watermark does not move, and nothing of the partition is
  acknowledged: the log grows and the consumer does not fetch it. Paused (clocks reset)
  while the app rebalances or recovers its tables, when fetching is stopped on purpose;
  unknown end offsets (the broker did not answer) give no verdict.
- **agent crash** (``agent_crashed``): Faust's supervisor restarts an agent's actor after
  it raised (or was cancelled outside a shutdown). The restarted actor may never process
  again, so a crash fails liveness until the process restarts.

Each stall episode and each crash is counted (``streamrank_stalls_total{kind}``,
``streamrank_agent_crashes_total{agent}``) and logged without payloads or ids. A blocked
event loop (an agent computing forever) stops the HTTP server too, so the probe's timeout
covers it.

:class:`StallDetector` is the pure decision over samples (tested with a fake clock);
:class:`ProgressSensor`, :func:`crash_reporting_supervisor` and :class:`Watchdog` connect
it to Faust through its public sensor, supervisor and consumer APIs; :class:`Liveness`
holds the verdict.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import faust
from faust.exceptions import ConsumerNotStarted
from faust.types import TP, Message
from mode import OneForOneSupervisor, ServiceT, SupervisorStrategyT

from stream.config import Settings
from stream.pipeline.metrics import Metrics

log = logging.getLogger(__name__)

# The broker's end offsets are asked for on the consumer's connections; a broker that does
# not answer within this gives no verdict for the round.
END_OFFSETS_TIMEOUT_S = 10.0


# --- The decision, pure -------------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionSample:
    """What the watchdog saw of one assigned input partition at one check.

    Offsets of messages (``taken``, ``acked``) are those of the last message; the others
    are the next offset to be written or read, as Kafka reports them. None: not known.
    """

    agent: str  # the agent reading the partition's topic
    end: int | None  # the broker's end offset (its high watermark, asked now)
    highwater: int | None  # the end offset as the consumer's last fetch of it saw it
    taken: int | None  # last offset an agent's stream took
    acked: int | None  # last offset acknowledged (processed)


@dataclass(frozen=True)
class Stall:
    """A part of the worker that has made no progress for ``seconds``."""

    kind: str  # "agent" or "consumer" (metrics.STALL_KINDS)
    subject: str  # the agent's name, or the partition as "topic[partition]"
    seconds: float

    def describe(self) -> str:
        """One line for the log (names and numbers only, never payloads or ids)."""
        if self.kind == "agent":
            return f"agent {self.subject} has acknowledged none of its taken events for {self.seconds:.0f}s"
        return f"consumer has not fetched {self.subject} for {self.seconds:.0f}s while its end moved ahead"

    def as_json(self) -> dict[str, Any]:
        """The stall as ``/healthz`` names it."""
        where = "agent" if self.kind == "agent" else "partition"
        return {"kind": f"{self.kind}_stalled", where: self.subject, "seconds": round(self.seconds, 1)}


def partition_name(tp: TP) -> str:
    """``topic[partition]``: how stalls and logs name a partition."""
    return f"{tp.topic}[{tp.partition}]"


class StallDetector:
    """Decides, from successive samples, which agents and partitions are stalled.

    Call :meth:`observe` at each check with the time and every assigned input partition;
    it returns the stalls at that time. A clock starts when a condition is first seen and
    restarts whenever progress is seen, so a stall is reported once the condition has held,
    without progress, for its threshold.
    """

    def __init__(self, agent_stall_s: float, fetch_stall_s: float) -> None:
        self.agent_stall_s = agent_stall_s
        self.fetch_stall_s = fetch_stall_s
        self._last: dict[TP, PartitionSample] = {}
        self._agent_waiting_since: dict[str, float] = {}
        self._fetch_lagging_since: dict[TP, float] = {}

    def observe(
        self, now: float, partitions: Mapping[TP, PartitionSample], fetch_paused: bool = False
    ) -> list[Stall]:
        """The stalls at ``now``, given a sample of every assigned input partition.

        Args:
            now: a monotonic time in seconds.
            partitions: the samples; partitions no longer given are forgotten.
            fetch_paused: fetching is stopped on purpose (rebalance, table recovery):
                consumer clocks restart, agent clocks go on.
        """
        last, self._last = self._last, dict(partitions)
        waiting: dict[str, bool] = {}
        progressed: dict[str, bool] = {}
        stalls: list[Stall] = []
        for tp, sample in partitions.items():
            before = last.get(tp)  # None: newly assigned, which counts as progress
            acked_moved = before is None or sample.acked != before.acked
            fetched_moved = before is None or sample.highwater != before.highwater
            # Taken after the last acknowledgement: a batch under way. (Faust acknowledges
            # unprocessed, without taking them, events of before a rebalance: acked > taken.)
            in_flight = sample.taken is not None and (sample.acked is None or sample.taken > sample.acked)
            waiting[sample.agent] = waiting.get(sample.agent, False) or in_flight
            progressed[sample.agent] = progressed.get(sample.agent, False) or acked_moved
            stall = self._fetch_stall(now, tp, sample, fetched_moved or acked_moved, fetch_paused)
            if stall is not None:
                stalls.append(stall)
        for agent in sorted(waiting):
            stall = self._agent_stall(now, agent, waiting[agent], progressed[agent])
            if stall is not None:
                stalls.append(stall)
        # Forget what is no longer assigned (and agents with no partition here).
        for tp in set(self._fetch_lagging_since) - set(partitions):
            del self._fetch_lagging_since[tp]
        for agent in set(self._agent_waiting_since) - set(waiting):
            del self._agent_waiting_since[agent]
        return stalls

    def _agent_stall(self, now: float, agent: str, waiting: bool, progressed: bool) -> Stall | None:
        if not waiting:
            self._agent_waiting_since.pop(agent, None)
            return None
        if progressed or agent not in self._agent_waiting_since:
            self._agent_waiting_since[agent] = now
        waited = now - self._agent_waiting_since[agent]
        return Stall("agent", agent, waited) if waited >= self.agent_stall_s else None

    def _fetch_stall(
        self, now: float, tp: TP, sample: PartitionSample, moved: bool, paused: bool
    ) -> Stall | None:
        if paused:
            self._fetch_lagging_since.pop(tp, None)
            return None
        if sample.end is None:
            # The broker did not answer this round: no new clock, but progress still ends one,
            # and a stall already under way goes on.
            if moved:
                self._fetch_lagging_since.pop(tp, None)
            since = self._fetch_lagging_since.get(tp)
            if since is None or now - since < self.fetch_stall_s:
                return None
            return Stall("consumer", partition_name(tp), now - since)
        # A partition never fetched has no high watermark yet: anything in it is ahead.
        lagging = sample.end > (sample.highwater or 0)
        if not lagging:
            self._fetch_lagging_since.pop(tp, None)
            return None
        if moved or tp not in self._fetch_lagging_since:
            self._fetch_lagging_since[tp] = now
        lagged = now - self._fetch_lagging_since[tp]
        return Stall("consumer", partition_name(tp), lagged) if lagged >= self.fetch_stall_s else None


# --- The verdict ----------------------------------------------------------------------------------


class Liveness:
    """Whether the worker is live: no stall at the last check, no agent crash since start.

    Stalls are as the watchdog last saw them (a stall that ends makes the worker live
    again); crashes are kept until the process restarts. Counts each stall episode and
    each crash in ``metrics``.
    """

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.stalls: list[Stall] = []
        self.crashes: dict[str, tuple[int, str]] = {}  # agent -> (crashes, last error's type)

    @property
    def live(self) -> bool:
        """False once an agent crashed, or while a stall lasts."""
        return not self.stalls and not self.crashes

    def stalls_seen(self, stalls: Sequence[Stall]) -> None:
        """Take the stalls of a check: count and log those that begin, log those that end."""
        before = {(s.kind, s.subject) for s in self.stalls}
        now = {(s.kind, s.subject) for s in stalls}
        for stall in stalls:
            if (stall.kind, stall.subject) not in before:
                self.metrics.stalls.labels(stall.kind).inc()
                log.error("liveness fails: %s", stall.describe())
        for kind, subject in sorted(before - now):
            log.warning("liveness: the %s stall of %s is over", kind, subject)
        self.stalls = list(stalls)

    def agent_crashed(self, agent: str, error: BaseException | None) -> None:
        """Record that Faust restarts a crashed actor of ``agent``; liveness fails from now on."""
        count, _ = self.crashes.get(agent, (0, ""))
        error_type = type(error).__name__ if error is not None else "unknown"
        self.crashes[agent] = (count + 1, error_type)
        self.metrics.agent_crashes.labels(agent).inc()
        # The exception's message may quote the input that caused it: only its type above DEBUG.
        log.error("liveness fails: agent %s crashed (%s) and is restarted by Faust", agent, error_type)
        log.debug("agent %s crashed", agent, exc_info=error)

    def report(self) -> dict[str, Any]:
        """``/healthz``'s body: ``live`` and the reasons it is not."""
        reasons: list[dict[str, Any]] = [
            {"kind": "agent_crashed", "agent": agent, "crashes": count, "error": error_type}
            for agent, (count, error_type) in sorted(self.crashes.items())
        ]
        reasons += [stall.as_json() for stall in self.stalls]
        return {"live": self.live, "reasons": reasons}


# --- Faust: progress, crashes, and the periodic check ---------------------------------------------


class ProgressSensor(faust.Sensor):
    """Keeps, per partition, the offset of the last message a stream took and the last one
    acknowledged (Faust's public sensor hooks; one dictionary write per message each)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.taken: dict[TP, int] = {}
        self.acked: dict[TP, int] = {}

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        """A stream took the message (Faust tracks it until it is acknowledged)."""
        self.taken[tp] = offset

    def on_message_out(self, tp: TP, offset: int, message: Message) -> None:
        """Every stream that took the message acknowledged it."""
        self.acked[tp] = offset


def crash_reporting_supervisor(
    on_crash: Callable[[str, BaseException | None], None],
) -> type[SupervisorStrategyT]:
    """Faust's default agent supervisor (restart the crashed actor), telling ``on_crash`` first.

    Passed as the app's ``agent_supervisor`` setting: Faust builds one per agent and calls
    its ``restart_service`` for every actor found crashed.
    """

    class CrashReportingSupervisor(OneForOneSupervisor):
        async def restart_service(self, service: ServiceT) -> None:
            agent = getattr(getattr(service, "agent", None), "name", None) or type(service).__name__
            on_crash(agent, service.crash_reason)
            await super().restart_service(service)

    return CrashReportingSupervisor


class Watchdog:
    """Samples the consumer and the agents' progress and hands the stalls to :class:`Liveness`."""

    def __init__(
        self,
        app: faust.App,
        liveness: Liveness,
        detector: StallDetector,
        sensor: ProgressSensor,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.liveness = liveness
        self.detector = detector
        self.sensor = sensor
        self.clock = clock

    def agents_by_topic(self) -> dict[str, str]:
        """The agent reading each input topic."""
        return {
            topic: agent.name
            for agent in self.app.agents.values()
            for topic in getattr(agent.channel, "topics", ())
        }

    def fetch_paused(self) -> bool:
        """Whether the app stopped fetching its input on purpose (rebalance, table recovery)."""
        app = self.app
        recovered = app.tables.recovery.completed.is_set()
        return app.rebalancing or not app.flow_control.is_active() or not recovered

    async def check(self) -> list[Stall]:
        """One check: sample, decide, record. Returns the stalls found."""
        if self.app.should_stop:
            return self.liveness.stalls
        consumer = self.app.consumer
        agents = self.agents_by_topic()
        try:
            assigned = [tp for tp in consumer.assignment() if tp.topic in agents]
        except ConsumerNotStarted:
            return self.liveness.stalls
        paused = self.fetch_paused()
        ends = {} if paused or not assigned else await self._end_offsets(assigned)
        samples = {
            tp: PartitionSample(
                agent=agents[tp.topic],
                end=ends.get(tp),
                highwater=self._highwater(tp),
                taken=self.sensor.taken.get(tp),
                acked=self.sensor.acked.get(tp),
            )
            for tp in assigned
        }
        stalls = self.detector.observe(self.clock(), samples, fetch_paused=paused)
        self.liveness.stalls_seen(stalls)
        return stalls

    def _highwater(self, tp: TP) -> int | None:
        try:
            return self.app.consumer.highwater(tp)
        except (AssertionError, ConsumerNotStarted):  # revoked since the assignment was read
            return None

    async def _end_offsets(self, partitions: list[TP]) -> Mapping[TP, int]:
        try:
            return await asyncio.wait_for(self.app.consumer.highwaters(*partitions), END_OFFSETS_TIMEOUT_S)
        except Exception as exc:  # a broker that does not answer gives no verdict
            log.debug("liveness: no end offsets this round: %r", exc)
            return {}


def start_watchdog(app: faust.App, settings: Settings, liveness: Liveness) -> Watchdog:
    """Register the progress sensor and a timer checking every ``LIVENESS_CHECK_INTERVAL_S``."""
    sensor = ProgressSensor()
    app.sensors.add(sensor)
    detector = StallDetector(settings.liveness_agent_stall_s, settings.liveness_fetch_stall_s)
    watchdog = Watchdog(app, liveness, detector, sensor)

    @app.timer(settings.liveness_check_interval_s, name="liveness-watchdog")
    async def check_liveness() -> None:
        try:
            await watchdog.check()
        except Exception:  # a failing check must not take the worker down with it
            log.exception("liveness check failed; trying again in %.0fs", settings.liveness_check_interval_s)

    return watchdog
