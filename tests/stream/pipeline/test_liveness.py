"""The liveness watchdog: stall decisions on a fake clock, crash reports from Faust's supervisor,
the verdict and its metrics, and the sampling of a worker's consumer and agents."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.types import TP, StreamT
from prometheus_client import CollectorRegistry

from stream.pipeline.liveness import (
    Liveness,
    PartitionSample,
    ProgressSensor,
    Stall,
    StallDetector,
    Watchdog,
    crash_reporting_supervisor,
)
from stream.pipeline.metrics import Metrics

EVENTS_0, EVENTS_1, ITEMS_0 = TP("events", 0), TP("events", 1), TP("items", 0)


def sample(
    agent: str = "update_user_interest",
    *,
    end: int | None = 10,
    highwater: int | None = 10,
    taken: int | None = 9,
    acked: int | None = 9,
) -> PartitionSample:
    """A partition fetched to its end (10) and processed to its last message (9) by default."""
    return PartitionSample(agent=agent, end=end, highwater=highwater, taken=taken, acked=acked)


def metrics() -> Metrics:
    return Metrics(CollectorRegistry(), ["view"], ["events"])


def counted(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


# --- Agent stalls -----------------------------------------------------------------------------


def test_an_agent_holding_taken_events_without_acknowledging_any_stalls_after_its_threshold() -> None:
    detector = StallDetector(agent_stall_s=60, fetch_stall_s=600)
    frozen = {EVENTS_0: sample(taken=12, acked=9, end=13, highwater=13)}  # 10..12 taken, none acked
    assert detector.observe(0.0, frozen) == []
    assert detector.observe(59.0, frozen) == []
    assert detector.observe(60.0, frozen) == [Stall("agent", "update_user_interest", 60.0)]
    assert detector.observe(75.0, frozen) == [Stall("agent", "update_user_interest", 75.0)]


def test_acknowledgements_restart_the_agent_clock_and_an_idle_agent_never_stalls() -> None:
    detector = StallDetector(agent_stall_s=60, fetch_stall_s=600)
    detector.observe(0.0, {EVENTS_0: sample(taken=12, acked=9)})
    # Slow but alive: a batch ends at 50 s, the next one is taken.
    assert detector.observe(50.0, {EVENTS_0: sample(taken=20, acked=12)}) == []
    assert detector.observe(100.0, {EVENTS_0: sample(taken=20, acked=12)}) == []
    assert detector.observe(110.0, {EVENTS_0: sample(taken=20, acked=12)}) != []
    # Everything taken is acknowledged: nothing waits, however long nothing arrives.
    idle = {EVENTS_0: sample(taken=20, acked=20, end=21, highwater=21)}
    assert detector.observe(120.0, idle) == []
    assert detector.observe(10_000.0, idle) == []


def test_progress_on_any_partition_of_an_agent_is_progress_of_the_agent() -> None:
    detector = StallDetector(agent_stall_s=60, fetch_stall_s=600)
    detector.observe(0.0, {EVENTS_0: sample(taken=12, acked=9), EVENTS_1: sample(taken=5, acked=4)})
    later = {EVENTS_0: sample(taken=12, acked=9), EVENTS_1: sample(taken=7, acked=6)}
    assert detector.observe(61.0, later) == []


def test_events_acknowledged_without_being_taken_do_not_count_as_waiting() -> None:
    # Faust acknowledges unprocessed the events of an earlier generation after a rebalance.
    detector = StallDetector(agent_stall_s=60, fetch_stall_s=600)
    stale = {EVENTS_0: sample(taken=9, acked=30, end=31, highwater=31)}
    assert detector.observe(0.0, stale) == []
    assert detector.observe(1000.0, stale) == []


def test_agents_are_judged_apart() -> None:
    detector = StallDetector(agent_stall_s=60, fetch_stall_s=600)
    partitions = {
        EVENTS_0: sample(),
        ITEMS_0: sample("embed_new_items", taken=3, acked=1, end=4, highwater=4),
    }
    detector.observe(0.0, partitions)
    assert detector.observe(60.0, partitions) == [Stall("agent", "embed_new_items", 60.0)]


def test_agent_clocks_go_on_while_fetching_is_paused() -> None:
    # Faust waits for taken events before it gives partitions up: a rebalance cannot end.
    detector = StallDetector(agent_stall_s=60, fetch_stall_s=600)
    frozen = {EVENTS_0: sample(taken=12, acked=9)}
    detector.observe(0.0, frozen, fetch_paused=True)
    assert detector.observe(60.0, frozen, fetch_paused=True) == [Stall("agent", "update_user_interest", 60.0)]


# --- Consumer stalls --------------------------------------------------------------------------


def test_a_consumer_that_does_not_fetch_while_the_end_moves_ahead_stalls() -> None:
    detector = StallDetector(agent_stall_s=600, fetch_stall_s=30)
    assert detector.observe(0.0, {EVENTS_0: sample(end=10, highwater=10)}) == []
    assert detector.observe(5.0, {EVENTS_0: sample(end=15, highwater=10)}) == []
    assert detector.observe(34.0, {EVENTS_0: sample(end=40, highwater=10)}) == []
    assert detector.observe(35.0, {EVENTS_0: sample(end=41, highwater=10)}) == [
        Stall("consumer", "events[0]", 30.0)
    ]


def test_fetching_or_acknowledging_restarts_the_consumer_clock() -> None:
    detector = StallDetector(agent_stall_s=600, fetch_stall_s=30)
    detector.observe(0.0, {EVENTS_0: sample(end=15, highwater=10)})
    # A fetch saw more of the log (a backlog read slowly): not stalled.
    assert detector.observe(25.0, {EVENTS_0: sample(end=30, highwater=20)}) == []
    assert detector.observe(50.0, {EVENTS_0: sample(end=40, highwater=20)}) == []
    # A live agent working through what was fetched holds the fetcher back: not stalled either.
    assert detector.observe(54.0, {EVENTS_0: sample(end=45, highwater=20, taken=15, acked=14)}) == []
    assert detector.observe(80.0, {EVENTS_0: sample(end=45, highwater=20, taken=15, acked=14)}) == []
    assert detector.observe(84.0, {EVENTS_0: sample(end=45, highwater=20, taken=15, acked=14)}) != []


def test_a_consumer_at_the_end_of_its_partitions_never_stalls() -> None:
    detector = StallDetector(agent_stall_s=600, fetch_stall_s=30)
    for t in (0.0, 100.0, 1000.0):
        assert detector.observe(t, {EVENTS_0: sample(end=10, highwater=10)}) == []


def test_a_partition_never_fetched_is_behind_as_soon_as_it_holds_anything() -> None:
    detector = StallDetector(agent_stall_s=600, fetch_stall_s=30)
    detector.observe(0.0, {EVENTS_0: sample(end=3, highwater=None, taken=None, acked=None)})
    assert detector.observe(30.0, {EVENTS_0: sample(end=3, highwater=None, taken=None, acked=None)}) != []
    empty = StallDetector(agent_stall_s=600, fetch_stall_s=30)
    empty.observe(0.0, {EVENTS_0: sample(end=0, highwater=None, taken=None, acked=None)})
    assert empty.observe(30.0, {EVENTS_0: sample(end=0, highwater=None, taken=None, acked=None)}) == []


def test_rebalances_and_recovery_restart_the_consumer_clock() -> None:
    detector = StallDetector(agent_stall_s=600, fetch_stall_s=30)
    behind = {EVENTS_0: sample(end=50, highwater=10)}
    detector.observe(0.0, behind)
    assert detector.observe(40.0, behind, fetch_paused=True) == []
    assert detector.observe(60.0, behind) == []  # a new clock from here
    assert detector.observe(90.0, behind) != []


def test_unknown_end_offsets_start_no_clock_and_end_no_stall() -> None:
    detector = StallDetector(agent_stall_s=600, fetch_stall_s=30)
    unknown = {EVENTS_0: sample(end=None, highwater=10)}
    detector.observe(0.0, unknown)
    assert detector.observe(100.0, unknown) == []
    behind = {EVENTS_0: sample(end=50, highwater=10)}
    detector.observe(200.0, behind)
    assert detector.observe(240.0, unknown) == [Stall("consumer", "events[0]", 40.0)]
    # ... but a fetch seen meanwhile does.
    assert detector.observe(250.0, {EVENTS_0: sample(end=None, highwater=12)}) == []


def test_partitions_no_longer_assigned_are_forgotten() -> None:
    detector = StallDetector(agent_stall_s=60, fetch_stall_s=30)
    detector.observe(0.0, {EVENTS_0: sample(end=50, highwater=10, taken=12, acked=9)})
    assert detector.observe(100.0, {}) == []
    # Assigned again: clocks start afresh.
    assert detector.observe(110.0, {EVENTS_0: sample(end=50, highwater=10, taken=12, acked=9)}) == []


# --- The verdict ------------------------------------------------------------------------------


def test_liveness_counts_each_stall_episode_once_and_recovers_when_it_ends() -> None:
    m = metrics()
    liveness = Liveness(m)
    assert liveness.live and liveness.report() == {"live": True, "reasons": []}
    stall = Stall("agent", "rerank_requests", 61.0)
    liveness.stalls_seen([stall])
    liveness.stalls_seen([Stall("agent", "rerank_requests", 66.0)])
    assert not liveness.live
    assert liveness.report() == {
        "live": False,
        "reasons": [{"kind": "agent_stalled", "agent": "rerank_requests", "seconds": 66.0}],
    }
    assert counted(m, "streamrank_stalls_total", kind="agent") == 1
    assert counted(m, "streamrank_stalls_total", kind="consumer") == 0
    liveness.stalls_seen([])
    assert liveness.live
    liveness.stalls_seen([Stall("consumer", "events[3]", 30.0)])
    assert liveness.report()["reasons"] == [
        {"kind": "consumer_stalled", "partition": "events[3]", "seconds": 30.0}
    ]
    assert counted(m, "streamrank_stalls_total", kind="consumer") == 1


def test_a_crash_fails_liveness_for_good_and_logs_no_message_of_the_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    m = metrics()
    liveness = Liveness(m)
    with caplog.at_level(logging.INFO, logger="stream.pipeline.liveness"):
        liveness.agent_crashed("rerank_requests", KeyError("user-4711"))
        liveness.agent_crashed("rerank_requests", ValueError("payload {...}"))
    liveness.stalls_seen([])
    assert not liveness.live
    assert liveness.report() == {
        "live": False,
        "reasons": [
            {"kind": "agent_crashed", "agent": "rerank_requests", "crashes": 2, "error": "ValueError"}
        ],
    }
    assert counted(m, "streamrank_agent_crashes_total", agent="rerank_requests") == 2
    assert counted(m, "streamrank_agent_crashes_total", agent="update_user_interest") == 0
    text = caplog.text
    assert "rerank_requests" in text and "KeyError" in text
    assert "user-4711" not in text and "payload" not in text


# --- Faust: crashes through the supervisor ---------------------------------------------------------


def test_faust_restarting_a_crashed_agent_reports_the_crash() -> None:
    crashes: list[tuple[str, str]] = []
    app = faust.App(
        "test-liveness-crash",
        broker="kafka://127.0.0.1:1",
        agent_supervisor=crash_reporting_supervisor(lambda agent, exc: crashes.append((agent, repr(exc)))),
    )
    channel = app.channel()
    processed: list[str] = []

    @app.agent(channel, name="frail")
    async def frail(stream: StreamT) -> None:
        async for value in stream:
            if value == "end":
                return  # lets the agent stop: Faust's stop waits for its actors to end
            if value == "bad input":
                raise ValueError("cannot take it")
            processed.append(value)

    async def wait_for(condition: Callable[[], bool]) -> None:
        for _ in range(200):  # the supervisor looks for crashed actors at least every 5 s
            if condition():
                return
            await asyncio.sleep(0.05)

    async def main() -> None:
        app.flow_control.resume()  # Faust opens the flow once partitions are assigned
        await frail.start()
        await channel.put("good")
        await channel.put("bad input")
        await wait_for(lambda: bool(crashes))
        await channel.put("after")  # the agent was restarted: Faust's supervisor still does that
        await wait_for(lambda: "after" in processed)
        await channel.put("end")
        await asyncio.wait_for(frail.stop(), timeout=30)

    asyncio.run(main())
    assert processed == ["good", "after"]
    assert crashes == [("frail", "ValueError('cannot take it')")]


# --- Faust: what the watchdog samples -----------------------------------------------------------


class _FakeConsumer:
    """The consumer calls the watchdog makes (Faust's public ConsumerT methods)."""

    def __init__(self, assignment: set[TP], highwaters: dict[TP, int], ends: dict[TP, int]) -> None:
        self.assigned = assignment
        self.highwaters_seen = highwaters
        self.ends = ends
        self.asked: list[tuple[TP, ...]] = []

    def assignment(self) -> set[TP]:
        return self.assigned

    def highwater(self, tp: TP) -> int:
        return self.highwaters_seen[tp]

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        self.asked.append(tps)
        return {tp: self.ends[tp] for tp in tps}


def _fake_app(consumer: _FakeConsumer, *, rebalancing: bool = False) -> Any:
    recovered = asyncio.Event()
    recovered.set()
    agents = {
        "events-agent": SimpleNamespace(
            name="update_user_interest", channel=SimpleNamespace(topics=("events",))
        ),
        "items-agent": SimpleNamespace(name="embed_new_items", channel=SimpleNamespace(topics=("items",))),
    }
    return SimpleNamespace(
        should_stop=False,
        consumer=consumer,
        agents=agents,
        rebalancing=rebalancing,
        flow_control=SimpleNamespace(is_active=lambda: True),
        tables=SimpleNamespace(recovery=SimpleNamespace(completed=recovered)),
    )


def test_the_watchdog_samples_the_agents_partitions_and_their_progress() -> None:
    changelog = TP("streamrank-user-profiles-changelog", 0)
    consumer = _FakeConsumer(
        {EVENTS_0, ITEMS_0, changelog},
        highwaters={EVENTS_0: 10, ITEMS_0: 4, changelog: 100},
        ends={EVENTS_0: 10, ITEMS_0: 4, changelog: 100},
    )
    sensor = ProgressSensor()
    now = [0.0]
    liveness = Liveness(metrics())
    watchdog = Watchdog(_fake_app(consumer), liveness, StallDetector(60, 60), sensor, clock=lambda: now[0])
    sensor.on_message_in(EVENTS_0, 9, None)  # type: ignore[arg-type]
    sensor.on_message_out(EVENTS_0, 9, None)  # type: ignore[arg-type]
    sensor.on_message_in(ITEMS_0, 3, None)  # type: ignore[arg-type] - taken, never acknowledged

    assert asyncio.run(watchdog.check()) == []
    (asked,) = consumer.asked
    assert set(asked) == {EVENTS_0, ITEMS_0}, "changelogs are not agents' input"
    now[0] = 61.0
    assert asyncio.run(watchdog.check()) == [Stall("agent", "embed_new_items", 61.0)]
    assert liveness.report()["reasons"] == [
        {"kind": "agent_stalled", "agent": "embed_new_items", "seconds": 61.0}
    ]


def test_the_watchdog_asks_no_end_offsets_while_the_app_rebalances() -> None:
    consumer = _FakeConsumer({EVENTS_0}, highwaters={EVENTS_0: 10}, ends={EVENTS_0: 50})
    watchdog = Watchdog(
        _fake_app(consumer, rebalancing=True), Liveness(metrics()), StallDetector(60, 1), ProgressSensor()
    )
    assert asyncio.run(watchdog.check()) == []
    assert consumer.asked == []
