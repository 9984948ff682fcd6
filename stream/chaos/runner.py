"""The scenarios by name, and one entry point shared by the command and the tests."""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import Callable

from stream.chaos.result import ChaosOptions, ScenarioResult
from stream.config import Settings
from stream.errors import StreamrankError

Scenario = Callable[[Settings, ChaosOptions], ScenarioResult]

DESCRIPTIONS = {
    "kill-repeated": "kill -9 the workers in turn during a replay, restarting each; the final state "
    "must equal the reference exactly",
    "kill-one": "kill -9 one of two workers at steady load; takeover gap, nothing lost or doubled",
    "broker-freeze": "SIGSTOP the broker, then SIGCONT; the workers resume by themselves",
    "encoder-outage": "the encoder service killed, hanging, answering 503: lists keep flowing, "
    "deferred items are encoded once it is back",
    "fuzz": "fuzzed payloads among valid events on every input topic: each bad one dead-lettered "
    "with its reason, each valid one applied once, the worker up, its memory flat",
}


def scenario(name: str) -> Scenario:
    """The scenario function of ``name``."""
    if name == "kill-repeated":
        from stream.chaos.scenarios import kill_repeated

        return kill_repeated
    if name == "kill-one":
        from stream.chaos.scenarios import kill_one

        return kill_one
    if name == "broker-freeze":
        from stream.chaos.scenarios import broker_freeze

        return broker_freeze
    if name == "encoder-outage":
        from stream.chaos.outage import encoder_outage

        return encoder_outage
    if name == "fuzz":
        from stream.chaos.fuzzing import fuzz_inputs

        return fuzz_inputs
    raise ValueError(f"unknown scenario {name!r}; one of {', '.join(DESCRIPTIONS)}")


def run_scenario(name: str, settings: Settings, options: ChaosOptions) -> ScenarioResult:
    """Run one scenario; every process it started is stopped on the way out, a SIGTERM
    to this process included."""
    run = scenario(name)
    began = time.monotonic()
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    # The harness's own clients see the faults too (a frozen broker, a closing producer):
    # their connection errors are expected, and the scenario reports what matters.
    kafka_log = logging.getLogger("kafka")
    kafka_level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    try:
        return run(settings, options)
    except StreamrankError as exc:
        # A pipeline that never gets going (a worker that never becomes ready, a broker
        # that never answers) fails the scenario; the processes are stopped by then.
        failed = ScenarioResult(name, fault=not options.no_fault, started=began)
        lines = str(exc).splitlines()
        failed.check("scenario ran to its end", False, lines[0] if lines else type(exc).__name__)
        failed.examples += lines[1:40]
        return failed.finish()
    finally:
        kafka_log.setLevel(kafka_level)
        signal.signal(signal.SIGTERM, previous)
