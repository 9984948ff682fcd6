"""Every dashboard and rule expression returns data from a real Prometheus scraping a real worker.

A worker process runs against the session's broker and gets real MovieLens items and
ratings, malformed messages (so dead-letter series exist), a rerank request, an item
deletion and an event on an item not in the catalog. A real Prometheus server scrapes it
every second as job streamrank-worker (the compose configuration with the test's
targets) and evaluates the real rule files. Then:
- every panel query and template variable of the dashboards in ``LIVE_SOURCES`` (Grafana
  variables substituted), every recording rule and the series each recording creates,
  and the watched series of every alert (the left side of ``<expr> <op> <number>``,
  since a condition that is legitimately false returns nothing) must return series with
  a finite value; a name the worker does not export returns nothing and fails;
- expressions over metrics listed in ``EXTERNAL_METRICS`` are the only ones not
  evaluated, and the list names exactly the external metrics they use;
- every rule evaluates without error, and every streamrank metric family the worker
  exports appears on a dashboard.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream.datasets import movielens
from stream.tools.process import WorkerProcess, log_tail
from tests.deploy.observability import (
    EXTERNAL_METRICS,
    LIVE_SOURCES,
    Expression,
    expressions,
    metric_names,
    recorded_names,
)
from tests.deploy.services import EncoderService, PrometheusServer, live_config, wait_for
from tests.stack import Stack

pytestmark = [pytest.mark.deploy, pytest.mark.kafka, pytest.mark.model, pytest.mark.slow]

CATALOG_SIZE = 40
LATE_ITEMS = 5  # sent while Prometheus watches, so the encoder histograms move in its window
EVENTS = 200
ALL = expressions(LIVE_SOURCES)
EXTERNAL = [e for e in ALL if metric_names(e.query) & EXTERNAL_METRICS.keys()]
EVALUATED = [e for e in ALL if e not in EXTERNAL]


@dataclass
class Live:
    """The running system the expressions are evaluated against."""

    prometheus: PrometheusServer
    worker: WorkerProcess
    encoder: EncoderService

    def exported(self, url: str | None = None) -> dict[str, set[str]]:
        """Metric families and their sample names from a /metrics page (the worker's by default)."""
        with urllib.request.urlopen((url or self.worker.url) + "/metrics", timeout=5) as response:  # noqa: S310 - loopback
            text = response.read().decode()
        return {f.name: {s.name for s in f.samples} for f in text_string_to_metric_families(text)}


class EncoderFeeder(threading.Thread):
    """Every few seconds a new item to the worker and a new text to the encoder service."""

    def __init__(self, stack: Stack, encoder_url: str, every_s: float = 3.0) -> None:
        super().__init__(daemon=True, name="encoder-feeder")
        self.stack, self.encoder_url, self.every_s = stack, encoder_url, every_s
        self.stopping = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            n += 1  # new texts each time: cached ones would not reach the model
            item = {"item_id": f"feed-{n}", "title": f"Feed film number {n}", "category": "Drama"}
            self.stack.send(self.stack.settings.items_topic, item["item_id"], item)
            body = json.dumps({"texts": [f"Feed text number {n}"]}).encode()
            request = urllib.request.Request(  # noqa: S310 - loopback
                f"{self.encoder_url}/embed", data=body, headers={"Content-Type": "application/json"}
            )
            with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=30):  # noqa: S310
                pass
            self.stopping.wait(self.every_s)

    def stop(self) -> None:
        """Stop feeding and wait for the thread."""
        self.stopping.set()
        self.join(timeout=30)


def _traffic(stack: Stack, data: Path) -> tuple[list[movielens.Movie], list[dict], list[tuple[str, bytes]]]:
    """Real MovieLens items and ratings: the first rated films in time order and their ratings."""
    movies = {m.movie_id: m for m in movielens.load_movies(data)}
    ratings = movielens.load_ratings(data)
    catalog: list[str] = []
    for r in ratings:
        if r.movie_id not in catalog:
            catalog.append(r.movie_id)
        if len(catalog) == CATALOG_SIZE + LATE_ITEMS:
            break
    events = [movielens.event_message(r) for r in ratings if r.movie_id in catalog[:CATALOG_SIZE]][:EVENTS]
    topic = stack.settings
    malformed = [
        (topic.events_topic, b"\xff\xfe not utf-8"),
        (topic.events_topic, b"{broken json"),
        (topic.events_topic, b'{"user_id": "u1", "item_id": "1", "type": "teleport", "ts": 1}'),
        (topic.items_topic, b'{"item_id": "big", "title": "' + b"x" * 5000 + b'"}'),
        (topic.rerank_requests_topic, b'{"request_id": "r", "user_id": "u1"}'),
    ]
    return [movies[i] for i in catalog], events, malformed


def _counters(worker: WorkerProcess) -> dict[str, float] | str:
    """The worker's counter samples, for failure messages."""
    try:
        samples = worker.metrics()
    except OSError as exc:
        return f"(no /metrics from the worker: {exc})"
    return {k: v for k, v in samples.items() if k.split("{")[0].endswith("_total")}


def _finite(prometheus: PrometheusServer, expr: str) -> bool:
    """Whether ``expr`` returns a series with a finite value."""
    return any(math.isfinite(float(s["value"][1])) for s in prometheus.query(expr))


def _value(prometheus: PrometheusServer, expr: str) -> float:
    result = prometheus.query(expr)
    return float(result[0]["value"][1]) if result else math.nan


@pytest.fixture(scope="module")
def live(
    broker: tuple[str, str],
    movielens_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    encoder_service: EncoderService,
) -> Iterator[Live]:
    """A fed worker encoding through a real encoder service, both scraped by a real Prometheus."""
    workdir = tmp_path_factory.mktemp("live-prometheus")
    stack = Stack(broker[0], broker[1], workdir)
    prometheus = None
    feeder: EncoderFeeder | None = None
    try:
        films, events, malformed = _traffic(stack, movielens_dir)
        s = stack.settings
        for film in films[:CATALOG_SIZE]:
            stack.send(s.items_topic, film.movie_id, movielens.item_message(film, []))
        worker = stack.start_worker(STREAMRANK_ENCODER_URL=encoder_service.url)
        worker.wait_ready(timeout_s=180, min_items=CATALOG_SIZE)

        rule_files = [p for p in LIVE_SOURCES if p.suffix == ".yml"]
        targets = {
            "streamrank-worker": [f"127.0.0.1:{worker.web_port}"],
            "streamrank-encoder": [f"127.0.0.1:{encoder_service.port}"],
        }
        config = live_config(targets, rule_files)
        prometheus = PrometheusServer(config, workdir).start()
        # A first scrape before any traffic, so that every counter's increase is inside the window.
        wait_for(lambda: prometheus.query('up{job="streamrank-worker"} == 1'), 60, "the first scrape")

        for film in films[CATALOG_SIZE:]:
            stack.send(s.items_topic, film.movie_id, movielens.item_message(film, []))
        stack.send(s.items_topic, films[0].movie_id, {"item_id": films[0].movie_id, "deleted": True})
        for event in events:
            stack.send(s.events_topic, event["user_id"], event)
        user = events[0]["user_id"]
        stack.send(
            s.events_topic, user, {"user_id": user, "item_id": "not-in-catalog", "type": "view", "ts": 2e9}
        )
        candidates = [f.movie_id for f in films[1:6]]
        stack.send(
            s.rerank_requests_topic, user, {"request_id": "live-1", "user_id": user, "candidates": candidates}
        )
        for topic, raw in malformed:
            stack.send(topic, "u1", raw)
        # And one malformed request to the encoder service, so its error series exist.
        bad = urllib.request.Request(  # noqa: S310 - loopback
            f"{encoder_service.url}/embed", data=b'{"texts": 5}', headers={"Content-Type": "application/json"}
        )
        with pytest.raises(urllib.error.HTTPError) as rejected:
            urllib.request.urlopen(bad, timeout=10)  # noqa: S310 - loopback
        assert rejected.value.code == 400
        # ... and one good one late, so that the service's batch rates are recent when queried.
        good = urllib.request.Request(  # noqa: S310 - loopback
            f"{encoder_service.url}/embed",
            data=b'{"texts": ["A late film"]}',
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(good, timeout=60) as response:  # noqa: S310 - loopback
            assert response.status == 200

        wanted = {
            'streamrank_events_total{type="rate"}': len(events),
            'streamrank_recommendations_total{mode="rerank"}': 1,
            "streamrank_dead_letters_total": len(malformed),  # summed over reasons
            "streamrank_items_deleted_total": 1,
            "streamrank_items_encoded_total": CATALOG_SIZE + LATE_ITEMS,
            "streamrank_unencoded_item_events_total": 1,
        }

        def short_counts() -> dict[str, tuple[float, int]]:
            """The counts still below the traffic sent: name -> (value, wanted).

            At least, not exactly: delivery is at-least-once, and a rebalance on a loaded
            machine may hand a few events over twice. Exact counts are the pipeline tests' job.
            """
            m = worker.metrics()
            m["streamrank_dead_letters_total"] = sum(
                v for k, v in m.items() if k.startswith("streamrank_dead_letters_total")
            )
            return {k: (m.get(k, 0), n) for k, n in wanted.items() if m.get(k, 0) < n}

        wait_for(
            lambda: not short_counts(),
            180,
            "the worker to process the traffic",
            state=lambda: (
                f"short (value, wanted): {short_counts()}\n{_counters(worker)}\n{log_tail(worker.log_path)}"
            ),
        )
        # Prometheus has scraped the final counts and evaluated the rules over them.
        final = worker.metrics()['streamrank_events_total{type="rate"}']
        scraped = 'sum(streamrank_events_total{job="streamrank-worker",type="rate"})'
        wait_for(
            lambda: _value(prometheus, scraped) >= final,
            60,
            "a scrape of the final counts",
        )
        wait_for(lambda: prometheus.query("streamrank:dead_letters:rate5m > 0"), 60, "a rule evaluation")
        # Encoder batches happen when items arrive; keep some arriving so that rates over the
        # dashboards' and rules' 1-minute windows have data whenever the tests query them.
        feeder = EncoderFeeder(stack, encoder_service.url)
        feeder.start()
        for job in ("streamrank-worker", "streamrank-encoder"):
            query = f'sum(rate(streamrank_encoder_batch_size_count{{job="{job}"}}[1m])) > 0'
            wait_for(lambda query=query: prometheus.query(query), 60, f"recent encoder batches of {job}")
        # Every recording rule has been evaluated over that data: a finite value, as the tests
        # ask, since an evaluation before the first batches records NaN (a quantile of no rate).
        for name in sorted(recorded_names(LIVE_SOURCES)):
            wait_for(
                lambda name=name: _finite(prometheus, name), 60, f"a finite value of recorded series {name}"
            )
        yield Live(prometheus, worker, encoder_service)
    finally:
        if feeder is not None:
            feeder.stop()
        if prometheus is not None:
            prometheus.stop()
        stack.close()


@pytest.mark.parametrize("expression", EVALUATED, ids=lambda e: e.id)
def test_expression_returns_data(live: Live, expression: Expression) -> None:
    series = live.prometheus.query(expression.query)
    assert series, f"no data for {expression.query!r} ({expression.kind} {expression.id})"
    values = [float(s["value"][1]) for s in series]
    assert any(math.isfinite(v) for v in values), f"{expression.query!r} has no finite value: {series}"
    if expression.label is not None:
        assert all(expression.label in s["metric"] for s in series), f"${expression.label} missing: {series}"


def test_only_external_metrics_are_not_evaluated(live: Live) -> None:
    pages = (live.exported(), live.exported(live.encoder.url))
    exported = {name for page in pages for samples in page.values() for name in samples}
    known = exported | recorded_names(LIVE_SOURCES) | {"up"}
    for expression in EXTERNAL:
        unknown = metric_names(expression.query) - known
        assert unknown <= EXTERNAL_METRICS.keys(), f"{expression.id} uses {unknown}"
    # The list of external metrics names exactly those the expressions need.
    used = set().union(*(metric_names(e.query) for e in EXTERNAL)) if EXTERNAL else set()
    assert used & EXTERNAL_METRICS.keys() == EXTERNAL_METRICS.keys()
    # And no evaluated expression names a metric that neither the worker nor the service exports.
    for expression in EVALUATED:
        assert metric_names(expression.query) <= known, (
            f"{expression.id}: {metric_names(expression.query) - known}"
        )


def test_every_rule_evaluates_without_error(live: Live) -> None:
    def evaluated() -> list[dict]:
        rules = [r for g in live.prometheus.api("rules")["groups"] for r in g["rules"]]
        return rules if all(r.get("lastEvaluation", "").startswith("2") for r in rules) else []

    rules = wait_for(evaluated, 30, "every rule to be evaluated")
    expected = {e.where for e in ALL if e.kind == "alert"} | recorded_names(LIVE_SOURCES)
    assert {r["name"] for r in rules} == expected
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []


def test_dashboards_show_every_worker_metric(live: Live) -> None:
    used = set().union(*(metric_names(e.query) for e in ALL if e.kind in ("panel", "variable")))
    # The text format shows each counter's and histogram's creation time as a family of its own.
    families = {
        name: samples
        for name, samples in live.exported().items()
        if name.startswith("streamrank_") and not name.endswith("_created")
    }
    assert families, "the worker exports streamrank metrics"
    missing = sorted(name for name, samples in families.items() if not samples & used)
    assert missing == [], f"worker metrics on no dashboard panel: {missing}"
