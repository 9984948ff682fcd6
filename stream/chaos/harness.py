"""What every scenario does around its fault: the workload, the start, the verdict.

1. :func:`movielens_workload`: the earliest ratings of MovieLens as events, and the films
   they rate as the catalog.
2. :func:`start_pipeline`: the catalog sent, the workers started, encoded and settled
   into one group, so that faults hit a pipeline at work, not one starting.
3. :func:`verify`: wait until the pipeline is quiet, then compare the state with the
   reference (``reference``), look at the lists (``lists``) and the dead letters, and
   record the checks and figures every scenario shares.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from stream.chaos.cluster import UNBOUNDED_NEIGHBOURS, ChaosCluster
from stream.chaos.driver import Message
from stream.chaos.lists import ListRecord, read_lists, reemitted, unanswered_users
from stream.chaos.reference import (
    StateCheck,
    compare_state,
    read_state,
    reference_state,
    split_events,
)
from stream.chaos.result import ChaosOptions, ScenarioResult
from stream.chaos.topics import Quiet, Record, read_records, wait_quiet
from stream.config import Settings
from stream.core.contracts import InteractionEvent
from stream.datasets import movielens
from stream.kafka.admin import producer

NEIGHBOUR_NOTE = (
    f"co-visitation rows are not cut (STREAMRANK_COVISIT_MAX_NEIGHBOURS={UNBOUNDED_NEIGHBOURS}): "
    "where a row is cut depends on the window it is written in, so only uncut rows compare exactly"
)


@dataclass(frozen=True)
class Workload:
    """A scenario's catalog and events, as messages ready to send."""

    items: list[Message]
    events: list[Message]
    users: int


def movielens_workload(settings: Settings, n_events: int) -> Workload:
    """The first ``n_events`` ratings (in time order) and the films they rate."""
    data = movielens.resolve_data_dir(settings.data, settings.cache_dir)
    ratings = movielens.load_ratings(data)[:n_events]
    rated = {r.movie_id for r in ratings}
    items = [
        (settings.items_topic, m.movie_id.encode(), json.dumps(movielens.item_message(m, [])).encode())
        for m in movielens.load_movies(data)
        if m.movie_id in rated
    ]
    events = [
        (settings.events_topic, r.user_id.encode(), json.dumps(movielens.event_message(r)).encode())
        for r in ratings
    ]
    return Workload(items, events, len({r.user_id for r in ratings}))


def send_now(settings: Settings, messages: list[Message]) -> None:
    """Send messages at once and wait until the broker has them."""
    kafka = producer(settings)
    try:
        for topic, key, value in messages:
            kafka.send(topic, key=key, value=value)
        kafka.flush()
    finally:
        kafka.close()


@contextmanager
def scenario_dir(options: ChaosOptions, name: str) -> Iterator[Path]:
    """The scenario's working directory: the one asked for, else a temporary one."""
    if options.workdir is not None:
        path = options.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix=f"streamrank-chaos-{name}-") as tmp:
        yield Path(tmp)


def start_pipeline(cluster: ChaosCluster, workload: Workload, workers: int) -> list[str]:
    """Send the catalog, start ``workers`` workers, wait until every item is encoded and
    the group has settled; returns the workers' names."""
    send_now(cluster.settings, workload.items)
    names = [f"w{n + 1}" for n in range(workers)]
    for name in names:
        cluster.start_worker(name)
    cluster.wait_ready(names, min_items=len(workload.items))
    cluster.wait_group_stable()
    return names


@dataclass
class Verification:
    """What the workers produced, against what the events must produce."""

    quiet: Quiet
    valid: list[tuple[Record, InteractionEvent]]
    invalid: list[tuple[Record, str]]  # with the reason each must be dead-lettered for
    state: StateCheck
    lists: list[ListRecord]
    dead_letters: list[dict]
    reemitted: int
    reemit_key: str
    unanswered: list[str]


def verify(
    cluster: ChaosCluster,
    result: ScenarioResult,
    options: ChaosOptions,
    expected_reason: Callable[[Record], str | None] | None = None,
) -> Verification:
    """Wait for quiet, compare, and record the checks and figures every scenario shares:
    quiet reached, state equal to the reference (nothing lost, nothing doubled), every
    user's newest event answered by a list, and the re-emitted lists.

    Args:
        expected_reason: which events records are bad, and why (``reference.split_events``).
    """
    settings = cluster.settings
    quiet = wait_quiet(
        settings,
        quiet_s=options.quiet_s,
        timeout_s=options.quiet_timeout_s,
        alive=lambda: any(slot.alive for slot in cluster.workers.values()),
    )
    records = read_records(settings, settings.events_topic)
    valid, invalid = split_events(records, settings.event_weights, expected_reason)
    observed = read_state(settings)
    events = [event for _, event in valid]
    reference = reference_state(settings, observed.catalog, events)
    state = compare_state(observed, reference, settings, max(e.ts for e in events))
    lists = read_lists(settings)
    dead = [json.loads(r.value or b"{}") for r in read_records(settings, settings.dead_letters_topic)]
    last_event: dict[str, tuple[int, int, float]] = {}
    events_of: dict[str, int] = {}
    for record, event in valid:
        events_of[event.user_id] = events_of.get(event.user_id, 0) + 1
        _, offset, ts = last_event.get(event.user_id, (0, -1, -math.inf))
        # A user's events share one partition: their last offset, and their newest time.
        last_event[event.user_id] = (record.partition, max(offset, record.offset), max(ts, event.ts))
    count, key = reemitted(lists)
    unanswered = unanswered_users(lists, last_event, events_of)
    found = Verification(quiet, valid, invalid, state, lists, dead, count, key, unanswered)

    result.check("pipeline quiet", quiet.reached, f"{quiet.seconds:.0f} s; lag {quiet.lag}")
    result.check(
        "nothing lost",
        state.nothing_lost,
        f"{state.short_profiles + state.missing_profiles} profiles short by {state.lost_events} events",
    )
    result.check(
        "nothing doubled",
        state.nothing_doubled,
        f"{state.doubled_profiles} profiles with {state.extra_events} events applied twice",
    )
    result.check(
        "state equals the reference",
        state.exact,
        f"{state.profiles_equal}/{state.users} profiles equal; popularity {state.popularity_mismatches}, "
        f"co-visitation rows {state.row_mismatches} mismatched",
    )
    result.check("every user's newest event answered", not unanswered, f"{len(unanswered)} users without")
    result.figures |= {
        "events": len(valid),
        "users": state.users,
        **state.figures(),
        "lists": len(lists),
        "reemitted_lists": count,
        "users_unanswered": len(unanswered),
        "dead_letters": len(dead),
        "quiet_after_s": round(quiet.seconds, 1),
    }
    result.notes += [NEIGHBOUR_NOTE, f"re-emitted lists keyed by {key}"]
    result.examples += state.examples
    return found


def diagnose(result: ScenarioResult, cluster: ChaosCluster, options: ChaosOptions) -> None:
    """On a failure, say where the logs are and add the workers' most frequent warnings."""
    if result.ok:
        return
    kept = options.workdir is not None
    result.notes.append(f"logs in {cluster.workdir}" if kept else "rerun with --workdir DIR to keep the logs")
    result.examples += [f"{n}x in worker logs: {text}" for text, n in cluster.log_warnings().most_common(6)]
