"""The process faults: workers killed with SIGKILL, the broker frozen with SIGSTOP.

Each runs the same pipeline (the embedded broker, workers on RocksDB, the earliest
MovieLens ratings at a steady rate), injects its fault while the events flow, and checks
the state against the reference once the pipeline is quiet (``harness.verify``).
"""

from __future__ import annotations

import signal
import time

from stream.chaos.cluster import ChaosCluster, signal_pid
from stream.chaos.driver import Driver
from stream.chaos.harness import diagnose, movielens_workload, scenario_dir, start_pipeline, verify
from stream.chaos.lists import first_list_after
from stream.chaos.result import ChaosOptions, ScenarioResult
from stream.config import Settings
from stream.errors import StreamrankError

ROCKSDB = {"STREAMRANK_STORE": "rocksdb://"}
TAKEOVER_TARGET_S = 10.0  # with the embedded broker's 2 s session timeout


def kill_repeated(settings: Settings, options: ChaosOptions) -> ScenarioResult:
    """kill -9 the workers in turn during a replay, restarting each: the final state must
    equal the reference exactly."""
    result = ScenarioResult("kill-repeated", fault=not options.no_fault)
    n_events = options.events or 20_000
    rate = options.rate or 250.0
    kills = 0 if options.no_fault else options.kills
    with (
        scenario_dir(options, "kill-repeated") as workdir,
        ChaosCluster(settings, workdir, ROCKSDB) as cluster,
    ):
        workload = movielens_workload(cluster.settings, n_events)
        names = start_pipeline(cluster, workload, options.workers)
        driver = Driver(cluster.settings, workload.events, rate)
        driver.start()
        kill_positions: list[int] = []
        restart_s: list[float] = []
        not_ready: list[str] = []
        for k in range(kills):
            # Kills spread evenly over the replay; each waits for the last victim's return.
            driver.wait_sent(round(n_events * (k + 1) / (kills + 1)))
            victim = names[k % len(names)]
            cluster.kill(victim)
            kill_positions.append(driver.sent)
            started = time.monotonic()
            cluster.restart(victim)
            try:
                cluster.wait_ready([victim], timeout_s=options.restart_timeout_s)
            except StreamrankError as exc:
                not_ready.append(f"{victim} after kill {k + 1}: {str(exc).splitlines()[0]}")
                break
            restart_s.append(round(time.monotonic() - started, 1))
        result.check("every restarted worker ready", not not_ready, "; ".join(not_ready))
        driver.join_checked()
        found = verify(cluster, result, options)
        result.check("no dead letters", not found.dead_letters, f"{len(found.dead_letters)}")
        result.figures |= {
            "workers": len(names),
            "rate": rate,
            "kills": len(kill_positions),
            "killed_after_events": kill_positions,
            "restart_to_ready_s": restart_s,
            "replay_s": round(driver.finished_at - driver.started_at, 1),
        }
        diagnose(result, cluster, options)
    return result.finish()


def kill_one(settings: Settings, options: ChaosOptions) -> ScenarioResult:
    """kill -9 one of two workers at steady load, without restarting it: the other takes
    its partitions over within the target, nothing lost, nothing doubled."""
    result = ScenarioResult("kill-one", fault=not options.no_fault)
    n_events = options.events or 9_000
    rate = options.rate or 300.0
    with scenario_dir(options, "kill-one") as workdir, ChaosCluster(settings, workdir, ROCKSDB) as cluster:
        workload = movielens_workload(cluster.settings, n_events)
        names = start_pipeline(cluster, workload, max(options.workers, 2))
        driver = Driver(cluster.settings, workload.events, rate)
        driver.start()
        driver.wait_sent(round(n_events * options.kill_at))
        fault_at = time.time() if options.no_fault else cluster.kill(names[-1])
        fault_after = driver.sent
        driver.join_checked()
        found = verify(cluster, result, options)
        gaps = first_list_after(found.lists, fault_at, cluster.settings.topic_partitions)
        worst = max((g for g in gaps.values() if g is not None), default=None)
        result.check(
            f"takeover gap <= {TAKEOVER_TARGET_S:g} s",
            worst is not None and None not in gaps.values() and worst <= TAKEOVER_TARGET_S,
            f"{worst if worst is None else round(worst, 2)} s",
        )
        result.check("no dead letters", not found.dead_letters, f"{len(found.dead_letters)}")
        result.figures |= {
            "workers": len(names),
            "rate": rate,
            "killed_after_events": fault_after,
            "takeover_gap_s": None if worst is None else round(worst, 2),
            "gap_by_partition_s": {p: None if g is None else round(g, 2) for p, g in gaps.items()},
            "replay_s": round(driver.finished_at - driver.started_at, 1),
        }
        diagnose(result, cluster, options)
        result.notes.append(
            "takeover gap: per events partition, seconds from the kill to its first list; the "
            "partitions of the survivor pause too while the group rebalances"
        )
    return result.finish()


def broker_freeze(settings: Settings, options: ChaosOptions) -> ScenarioResult:
    """Freeze the broker (SIGSTOP) for ``freeze_s`` in the middle of a replay, then
    SIGCONT: the workers resume by themselves, nothing lost, nothing doubled."""
    result = ScenarioResult("broker-freeze", fault=not options.no_fault)
    n_events = options.events or 10_000
    rate = options.rate or 200.0
    with (
        scenario_dir(options, "broker-freeze") as workdir,
        ChaosCluster(settings, workdir, ROCKSDB, own_broker=True) as cluster,
    ):
        workload = movielens_workload(cluster.settings, n_events)
        names = start_pipeline(cluster, workload, options.workers)
        # The producer waits out the freeze: what it cannot send is delayed, not lost.
        driver = Driver(cluster.settings, workload.events, rate, patience_s=options.freeze_s + 60)
        driver.start()
        driver.wait_sent(round(n_events * 0.25))
        frozen_at = time.time()
        if not options.no_fault:
            signal_pid(cluster.broker_pid, signal.SIGSTOP)
            time.sleep(options.freeze_s)
            signal_pid(cluster.broker_pid, signal.SIGCONT)
        thawed_at = time.time()
        driver.join_checked(timeout_s=600 + options.freeze_s)
        found = verify(cluster, result, options)
        alive = [name for name in names if cluster.workers[name].alive]
        result.check("every worker still running", len(alive) == len(names), f"{len(alive)}/{len(names)}")
        resumed = first_list_after(found.lists, thawed_at, cluster.settings.topic_partitions)
        worst = max((g for g in resumed.values() if g is not None), default=None)
        result.check(
            "lists resume on every partition",
            None not in resumed.values(),
            f"last partition after {worst if worst is None else round(worst, 2)} s",
        )
        result.check("no dead letters", not found.dead_letters, f"{len(found.dead_letters)}")
        result.figures |= {
            "workers": len(names),
            "rate": rate,
            "freeze_s": round(thawed_at - frozen_at, 1),
            "resume_after_thaw_s": None if worst is None else round(worst, 2),
            "resume_by_partition_s": {p: None if g is None else round(g, 2) for p, g in resumed.items()},
            "producer_send_failures": driver.failed,
            "replay_s": round(driver.finished_at - driver.started_at, 1),
        }
        diagnose(result, cluster, options)
    return result.finish()
