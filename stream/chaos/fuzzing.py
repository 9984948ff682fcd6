"""``fuzz``: labelled bad payloads among valid traffic on every input topic.

The bad payloads come from :func:`stream.chaos.fuzz.fuzz_payloads` (seeded; each names
its topic, its kind and the dead-letter reason it must get, or None for an odd but valid
one). They are shuffled, with a seeded order, among the valid traffic: MovieLens events in
time order, and a rerank request for an event's user every ``REQUEST_EVERY`` events. One
worker takes it all. Checked once the pipeline is quiet:

- every bad payload is in ``dead-letters`` at its topic, partition and offset, with its
  reason; no valid message is;
- every valid event is applied exactly once (the state equals the offline reference of
  the valid events, fuzzed valid ones included); every valid request is answered once;
  every valid fuzzed item is in the catalog, every fuzzed deletion retired;
- the worker is still up, and its resident memory after the traffic is within
  ``RSS_GROWTH_LIMIT`` of what it was once warm (a quarter of the traffic in).
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stream.chaos.cluster import ChaosCluster
from stream.chaos.driver import Driver, Message
from stream.chaos.fuzz import FuzzPayload, InputLimits, fuzz_payloads
from stream.chaos.harness import Workload, diagnose, movielens_workload, scenario_dir, start_pipeline, verify
from stream.chaos.lists import read_lists
from stream.chaos.result import ChaosOptions, ScenarioResult
from stream.chaos.topics import Record, read_records, read_table
from stream.config import Settings

REQUEST_EVERY = 25  # a valid rerank request after every this many events
REQUEST_CANDIDATES = 5
RSS_GROWTH_LIMIT = 0.10  # of the warm worker's resident memory
ROCKSDB = {"STREAMRANK_STORE": "rocksdb://"}


def topic_names(settings: Settings) -> dict[str, str]:
    """The scenario's name of each input topic the generator speaks of."""
    return {
        "events": settings.events_topic,
        "items": settings.items_topic,
        "rerank-requests": settings.rerank_requests_topic,
    }


def valid_requests(settings: Settings, workload: Workload, seed: int) -> list[tuple[int, Message]]:
    """(position in the events, request) of the valid rerank requests: one for the user of
    every ``REQUEST_EVERY``-th event, over catalog items."""
    rng = random.Random(seed)  # noqa: S311 - reproducible traffic, not secrets
    item_ids = [key.decode() for _, key, _ in workload.items if key is not None]
    out = []
    for position in range(REQUEST_EVERY - 1, len(workload.events), REQUEST_EVERY):
        user = workload.events[position][1] or b""  # MovieLens events are keyed
        request = {
            "request_id": f"chaos-request-{position}",
            "user_id": user.decode(),
            "candidates": rng.sample(item_ids, REQUEST_CANDIDATES),
        }
        out.append((position, (settings.rerank_requests_topic, user, json.dumps(request).encode())))
    return out


def interleave(valid: list[Message], bad: list[Message], seed: int) -> list[Message]:
    """``valid`` in its order with ``bad`` spread among it, in a seeded shuffle."""
    slots = [True] * len(bad) + [False] * len(valid)
    random.Random(seed).shuffle(slots)  # noqa: S311 - reproducible traffic
    bad_iter, valid_iter = iter(bad), iter(valid)
    return [next(bad_iter) if is_bad else next(valid_iter) for is_bad in slots]


@dataclass
class Labels:
    """What each fuzzed message must become, found again by topic, key and value."""

    by_content: dict[tuple[str, bytes | None, bytes | None], list[FuzzPayload]] = field(default_factory=dict)

    @classmethod
    def of(cls, payloads: list[FuzzPayload], names: dict[str, str]) -> Labels:
        """Index ``payloads`` under the scenario's topic names."""
        labels = cls()
        for payload in payloads:
            key = (names[payload.topic], _stored(payload.key), _stored(payload.value))
            labels.by_content.setdefault(key, []).append(payload)
        return labels

    def of_record(self, topic: str, record: Record) -> FuzzPayload | None:
        """The payload a record carries (None: it is the scenario's own valid traffic)."""
        found = self.by_content.get((topic, _stored(record.key), _stored(record.value)))
        return found[0] if found else None

    def reason(self, topic: str) -> Callable[[Record], str | None]:
        """The dead-letter reason of a record of ``topic`` (None: valid)."""

        def reason_of(record: Record) -> str | None:
            payload = self.of_record(topic, record)
            return None if payload is None else payload.reason

        return reason_of


def _stored(value: bytes | None) -> bytes | None:
    # A producer's empty key or value reads back as None from some clients: one form.
    return value or None


class RssSampler:
    """The worker's resident memory, sampled as the traffic goes."""

    def __init__(self, cluster: ChaosCluster, name: str) -> None:
        self.cluster = cluster
        self.name = name
        self.samples: list[tuple[float, int]] = []

    def sample(self) -> int | None:
        """Take one sample (None: the worker is gone)."""
        rss = self.cluster.worker_rss(self.name)
        if rss is not None:
            self.samples.append((time.monotonic(), rss))
        return rss

    @property
    def peak(self) -> int:
        """Largest sample so far."""
        return max((rss for _, rss in self.samples), default=0)


def fuzz_inputs(settings: Settings, options: ChaosOptions) -> ScenarioResult:
    """Fuzzed payloads among valid traffic on every input topic; see the module's doc."""
    result = ScenarioResult("fuzz", fault=not options.no_fault)
    n_events = options.events or 10_000
    rate = options.rate or 500.0
    with scenario_dir(options, "fuzz") as workdir, ChaosCluster(settings, workdir, ROCKSDB) as cluster:
        live = cluster.settings
        names = topic_names(live)
        workload = movielens_workload(live, n_events)
        count = 0 if options.no_fault else options.fuzz
        payloads = fuzz_payloads(options.seed, count, InputLimits.from_settings(live))
        labels = Labels.of(payloads, names)
        requests = valid_requests(live, workload, options.seed)
        valid = _with_requests(workload.events, requests)
        bad = [(names[p.topic], p.key, p.value) for p in payloads]
        messages = interleave(valid, bad, options.seed)
        start_pipeline(cluster, workload, 1)
        memory = RssSampler(cluster, "w1")
        rss_ready = memory.sample()
        driver = Driver(live, messages, rate)
        driver.start()
        driver.wait_sent(len(messages) // 4)
        rss_warm = memory.sample()
        while driver.is_alive():
            memory.sample()
            time.sleep(1.0)
        driver.join_checked()
        found = verify(cluster, result, options, labels.reason(live.events_topic))
        rss_end = memory.sample()
        result.check("the worker still running", cluster.workers["w1"].alive)
        growth = None if rss_warm is None or rss_end is None else (rss_end - rss_warm) / rss_warm
        result.check(
            f"resident memory flat (within {RSS_GROWTH_LIMIT:.0%} once warm)",
            growth is not None and growth <= RSS_GROWTH_LIMIT,
            f"{_mb(rss_warm)} MB warm, {_mb(rss_end)} MB after"
            + ("" if growth is None else f" ({growth:+.1%})"),
        )
        _check_dead_letters(live, result, labels, found.dead_letters)
        _check_items_and_requests(live, result, payloads, [m for _, m in requests])
        result.figures |= {
            "fuzzed_payloads": len(payloads),
            "fuzzed_by_topic": dict(Counter(p.topic for p in payloads)),
            "fuzz_kinds": len({(p.topic, p.kind) for p in payloads}),
            "valid_requests": len(requests),
            "rate": rate,
            "rss_mb": {
                "ready": _mb(rss_ready),
                "warm": _mb(rss_warm),
                "end": _mb(rss_end),
                "peak": _mb(memory.peak),
            },
            "replay_s": round(driver.finished_at - driver.started_at, 1),
        }
        diagnose(result, cluster, options)
    return result.finish()


def _with_requests(events: list[Message], requests: list[tuple[int, Message]]) -> list[Message]:
    after = dict(requests)
    out: list[Message] = []
    for position, event in enumerate(events):
        out.append(event)
        if position in after:
            out.append(after[position])
    return out


def _mb(value: int | None) -> float | None:
    return None if value is None else round(value / 2**20, 1)


def _check_dead_letters(
    settings: Settings, result: ScenarioResult, labels: Labels, dead_letters: list[dict[str, Any]]
) -> None:
    """Every bad payload dead-lettered where it was, with its reason; no valid one."""
    by_position = {(d.get("source_topic"), d.get("partition"), d.get("offset")): d for d in dead_letters}
    right = missing = valid_dead = 0
    wrong: Counter[str] = Counter()
    matched: set[tuple[Any, Any, Any]] = set()
    for topic in topic_names(settings).values():
        for record in read_records(settings, topic):
            payload = labels.of_record(topic, record)
            dead = by_position.get((topic, record.partition, record.offset))
            if dead is not None:
                matched.add((topic, record.partition, record.offset))
            if payload is None or payload.reason is None:
                valid_dead += dead is not None
                if dead is not None:
                    result.examples.append(f"valid message on {topic} dead-lettered: {dead.get('reason')}")
            elif dead is None:
                missing += 1
                wrong[f"{payload.kind}: expected {payload.reason}, not dead-lettered"] += 1
            elif dead.get("reason") == payload.reason:
                right += 1
            else:
                wrong[f"{payload.kind}: expected {payload.reason}, got {dead.get('reason')}"] += 1
    unmatched = len(by_position.keys() - matched)
    bad = right + sum(wrong.values())
    result.check(
        "every bad payload dead-lettered with its reason", not wrong, f"{right}/{bad}; {missing} missing"
    )
    result.check("no valid message dead-lettered", not valid_dead and not unmatched, f"{valid_dead}")
    result.examples += [f"{n}x {text}" for text, n in wrong.most_common(10)]
    result.figures |= {
        "dead_letters_right": right,
        "dead_letters_wrong_reason": sum(wrong.values()) - missing,
        "dead_letters_missing": missing,
        "valid_dead_lettered": valid_dead,
        "dead_letters_elsewhere": unmatched,
    }


def _check_items_and_requests(
    settings: Settings, result: ScenarioResult, payloads: list[FuzzPayload], requests: list[Message]
) -> None:
    """Valid fuzzed items in the catalog (deletions retired); every valid request answered once."""
    catalog = {key: json.loads(raw) for key, raw in read_table(settings, "item-catalog").items()}
    misplaced = 0
    for payload in payloads:
        if payload.topic != "items" or payload.reason is not None or payload.value is None:
            continue
        message = json.loads(payload.value)
        entry = catalog.get(str(message["item_id"]))
        live = entry is not None and not entry.get("deleted")
        misplaced += live == bool(message.get("deleted"))
    result.check("valid fuzzed items applied", not misplaced, f"{misplaced} not as sent")
    request_ids = [json.loads(value)["request_id"] for _, _, value in requests if value is not None]
    request_ids += [
        str(json.loads(p.value)["request_id"])
        for p in payloads
        if p.topic == "rerank-requests" and p.reason is None and p.value is not None
    ]
    answers = Counter(item.request_id for item in read_lists(settings) if item.request_id is not None)
    unanswered = sum(1 for rid in request_ids if answers[rid] == 0)
    doubled = sum(1 for rid in request_ids if answers[rid] > 1)
    result.check(
        "every valid request answered once",
        not unanswered and not doubled,
        f"{len(request_ids)} requests; {unanswered} unanswered, {doubled} answered twice",
    )
