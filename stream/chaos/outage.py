"""``encoder-outage``: the encoder service killed, hanging, answering 503, in turn.

A worker encodes through the service (``STREAMRANK_ENCODER_FALLBACK=defer``: nothing is
encoded in-process) behind a relay (``proxy.FaultyProxy``), while MovieLens events flow.
At the start of each outage a new slice of the catalog is sent: the worker cannot encode
it and defers it. During each outage the lists must keep flowing; once the service is
back, every deferred item must be encoded (the re-encoder's rounds).

The client settings are shortened so that the scenario fits in minutes: a 5 s request
timeout, one retry, the circuit opening after 3 failures and half-opening after 2 s,
re-encoding rounds every 1 s. The state is not compared with the offline reference: an
event on a deferred item waits in its user's profile and is folded in at the user's next
event, so the profiles depend on when the vectors came back, by design.
"""

from __future__ import annotations

import signal
import time
from typing import Any

from stream.chaos.cluster import ChaosCluster, WorkerSlot, readiness, signal_pid
from stream.chaos.driver import Driver, Message
from stream.chaos.harness import diagnose, movielens_workload, scenario_dir, send_now
from stream.chaos.lists import lists_between, longest_silence, read_lists
from stream.chaos.proxy import FaultyProxy
from stream.chaos.result import ChaosOptions, ScenarioResult
from stream.chaos.topics import read_records, read_table, wait_quiet
from stream.config import Settings
from stream.core.profiles import UserProfile
from stream.kafka.embedded import free_port
from stream.tools.process import EncodeServerProcess, sample_sum

OUTAGES = ("killed", "hanging", "503")
CLIENT_ENV = {
    "STREAMRANK_ENCODER_FALLBACK": "defer",
    "STREAMRANK_ENCODER_TIMEOUT_S": "5",
    "STREAMRANK_ENCODER_RETRIES": "1",
    "STREAMRANK_ENCODER_BACKOFF_S": "0.1",
    "STREAMRANK_ENCODER_CIRCUIT_FAILURES": "3",
    "STREAMRANK_ENCODER_CIRCUIT_RESET_S": "2",
    "STREAMRANK_REENCODE_INTERVAL_S": "1",
}
MAX_SILENCE_S = 5.0  # longest stretch of an outage without a list that still counts as flowing
WARM_S = 5.0
CATCH_UP_S = 120.0  # longest wait for the deferred items once the service is back
FIRST_SLICE = 0.7  # of the catalog, sent (and encoded) before the first outage


def catalog_slices(items: list[Message], outages: int) -> list[list[Message]]:
    """The catalog cut in ``1 + outages`` slices: most of it first, the rest evenly."""
    first = round(len(items) * FIRST_SLICE) if outages else len(items)
    rest = items[first:]
    size = -(-len(rest) // max(outages, 1))
    return [items[:first]] + [rest[k * size : (k + 1) * size] for k in range(outages)]


class EncoderService:
    """The encoder service on a fixed port (restarted there after a kill)."""

    def __init__(self, cluster: ChaosCluster) -> None:
        self.cluster = cluster
        self.port = free_port()
        self.restarts = 0
        self.server: EncodeServerProcess = cluster.start_encoder(port=self.port)

    @property
    def pid(self) -> int:
        """PID of the running service."""
        if self.server.process is None:
            raise RuntimeError("the encoder service is not running")
        return self.server.process.pid

    def inject(self, outage: str, proxy: FaultyProxy) -> None:
        """Start an outage of kind ``outage``."""
        if outage == "killed":
            signal_pid(self.pid, signal.SIGKILL)
            if self.server.process is not None:
                self.server.process.wait()
        elif outage == "hanging":
            signal_pid(self.pid, signal.SIGSTOP)
        elif outage == "503":
            proxy.set_mode("503")
        else:
            raise ValueError(f"unknown outage {outage!r}; one of {OUTAGES}")

    def restore(self, outage: str, proxy: FaultyProxy) -> None:
        """End the outage: restart the killed service, resume the frozen one, pass again."""
        if outage == "killed":
            self.restarts += 1
            self.server = self.cluster.start_encoder(name=f"encoder-{self.restarts + 1}", port=self.port)
        elif outage == "hanging":
            signal_pid(self.pid, signal.SIGCONT)
        else:
            proxy.set_mode("pass")


def wait_encoded(slot: WorkerSlot, items: int, timeout_s: float) -> float | None:
    """Seconds until the worker holds ``items`` encoded items and defers none (None: never)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        status, body = readiness(slot)
        if status == 200 and body.get("items", 0) >= items and body.get("reencode_pending") == 0:
            return time.monotonic() - started
        time.sleep(0.25)
    return None


def _deferred(slot: WorkerSlot) -> float:
    try:
        return (
            sample_sum(slot.process.metrics(), "streamrank_encoder_fallbacks_total") if slot.process else 0.0
        )
    except OSError:
        return 0.0


def encoder_outage(settings: Settings, options: ChaosOptions) -> ScenarioResult:
    """Kill, freeze, then fail the encoder service during a replay; lists must keep flowing
    and every deferred item must be encoded once the service is back."""
    result = ScenarioResult("encoder-outage", fault=not options.no_fault)
    outages = () if options.no_fault else options.outages
    rate = options.rate or 100.0
    n_events = options.events or 20_000
    with scenario_dir(options, "encoder-outage") as workdir, ChaosCluster(settings, workdir) as cluster:
        workload = movielens_workload(cluster.settings, n_events)
        slices = catalog_slices(workload.items, len(outages))
        service = EncoderService(cluster)
        with FaultyProxy(service.port) as proxy:
            send_now(cluster.settings, slices[0])
            slot = cluster.start_worker("w1", {**CLIENT_ENV, "STREAMRANK_ENCODER_URL": proxy.url})
            cluster.wait_ready(["w1"], min_items=len(slices[0]))
            driver = Driver(cluster.settings, workload.events, rate)
            driver.start()
            time.sleep(WARM_S)
            sent_items = len(slices[0])
            phases: list[dict[str, Any]] = []
            for outage, items in zip(outages, slices[1:], strict=True):
                deferred_before = _deferred(slot)
                started = time.time()
                service.inject(outage, proxy)
                send_now(cluster.settings, items)
                sent_items += len(items)
                time.sleep(options.outage_s)
                ended = time.time()
                service.restore(outage, proxy)
                back = time.time()
                encoded_s = wait_encoded(slot, sent_items, CATCH_UP_S)
                phases.append(
                    {
                        "outage": outage,
                        "start": started,
                        "end": ended,
                        "restored_s": round(back - ended, 1),
                        "items_sent": len(items),
                        "deferred": round(_deferred(slot) - deferred_before),
                        "encoded_after_back_s": None if encoded_s is None else round(encoded_s, 1),
                    }
                )
            time.sleep(WARM_S)  # lists after the last return
            driver.stopping.set()
            driver.join_checked()
            proxy_figures = {"answered_503": proxy.answered_503, "connections_refused": proxy.refused}
        _verify(cluster, result, options, slot, phases, len(workload.items))
        result.figures |= {"rate": rate, "events_sent": driver.sent, "outage_s": options.outage_s}
        result.figures |= proxy_figures
        diagnose(result, cluster, options)
        result.notes.append(
            "client: " + ", ".join(f"{k.removeprefix('STREAMRANK_')}={v}" for k, v in CLIENT_ENV.items())
        )
    return result.finish()


def _verify(
    cluster: ChaosCluster,
    result: ScenarioResult,
    options: ChaosOptions,
    slot: WorkerSlot,
    phases: list[dict[str, Any]],
    n_items: int,
) -> None:
    settings = cluster.settings
    quiet = wait_quiet(
        settings, quiet_s=options.quiet_s, timeout_s=options.quiet_timeout_s, alive=lambda: slot.alive
    )
    result.check("pipeline quiet", quiet.reached, f"{quiet.seconds:.0f} s; lag {quiet.lag}")
    result.check("the worker still running", slot.alive and slot.incarnations == 1)
    lists = read_lists(settings)
    for phase in phases:
        start, end = phase.pop("start"), phase.pop("end")
        silence = longest_silence(lists, start, end)
        phase["lists"] = lists_between(lists, start, end)
        phase["longest_silence_s"] = round(silence, 2)
        result.check(
            f"lists keep flowing while {phase['outage']}",
            silence <= MAX_SILENCE_S,
            f"{phase['lists']} lists, longest silence {silence:.2f} s",
        )
        result.check(
            f"deferred items encoded once back from {phase['outage']}",
            phase["encoded_after_back_s"] is not None,
            f"{phase['deferred']} deferred, all encoded {phase['encoded_after_back_s']} s after",
        )
    catalog = read_table(settings, "item-catalog")
    encoded = sum(1 for raw in catalog.values() if b'"vector"' in raw)
    result.check("every item encoded", encoded >= n_items, f"{encoded}/{n_items}")
    profiles = read_table(settings, "user-profiles")
    waiting = [len(UserProfile.from_bytes(raw).pending) for raw in profiles.values()]
    dead = read_records(settings, settings.dead_letters_topic)
    result.check("no dead letters", not dead, f"{len(dead)}")
    result.figures |= {
        "phases": phases,
        "lists": len(lists),
        "items": n_items,
        "items_encoded": encoded,
        "pending_events_left": sum(waiting),
        "users_with_pending_events": sum(1 for n in waiting if n),
        "quiet_after_s": round(quiet.seconds, 1),
    }
    result.notes.append(
        "pending events left: events on deferred items whose user has had no event since the "
        "item's vector arrived; they are folded in at that user's next event"
    )
