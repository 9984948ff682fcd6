"""The Prometheus configuration, rules and rule unit tests, checked by promtool.

Also: every alert has a unit test that makes it fire, the Kubernetes PrometheusRule
carries the same groups as the rule files, rules and dashboards select only jobs the
configuration scrapes, and the encoder group uses only the encoder metric contract.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from stream.config import Settings
from stream.pipeline.metrics import Metrics
from tests.deploy.observability import (
    ENCODER_CONTRACT,
    ENCODER_SOURCES,
    RULE_TESTS,
    RULES,
    WORKER_SOURCES,
    alert_watched_series,
    expressions,
    metric_names,
    recorded_names,
)
from tests.deploy.tools import ROOT, run, tool

pytestmark = pytest.mark.deploy

CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
PROMETHEUS_RULE = ROOT / "k8s" / "components" / "prometheus-operator" / "prometheusrule.yaml"
RULE_FILES = sorted(RULES.glob("*.yml"))
TEST_FILES = sorted(RULE_TESTS.glob("*.yml"))


def _groups(path: Path) -> list[dict]:
    return yaml.safe_load(path.read_text())["groups"]


def _alerts(path: Path) -> set[str]:
    return {r["alert"] for g in _groups(path) for r in g["rules"] if "alert" in r}


def test_promtool_check_config() -> None:
    result = run([tool("promtool"), "check", "config", str(CONFIG)])
    assert result.returncode == 0, result.stdout + result.stderr
    # The configuration loads every rule file (it checks them too).
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout


def test_promtool_check_rules() -> None:
    result = run([tool("promtool"), "check", "rules", *map(str, RULE_FILES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules() -> None:
    assert TEST_FILES, "rule unit tests exist"
    result = run([tool("promtool"), "test", "rules", *map(str, TEST_FILES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: rate(up[1m] > 1\n")
    assert run([tool("promtool"), "check", "rules", str(broken)]).returncode != 0


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.name)
def test_every_alert_has_a_unit_test_that_fires_it(rule_file: Path) -> None:
    firing: set[str] = set()
    for test_file in TEST_FILES:
        spec = yaml.safe_load(test_file.read_text())
        if not any((test_file.parent / f).resolve() == rule_file for f in spec["rule_files"]):
            continue
        for case in spec["tests"]:
            firing |= {a["alertname"] for a in case.get("alert_rule_test", []) if a["exp_alerts"]}
    assert _alerts(rule_file) - firing == set()


def test_alerts_compare_an_expression_with_a_number() -> None:
    """The form the live test relies on to evaluate what each alert watches."""
    for rule_file in RULE_FILES:
        for group in _groups(rule_file):
            for rule in group["rules"]:
                if "alert" in rule:
                    assert alert_watched_series(rule["expr"])


def test_kubernetes_prometheus_rule_has_the_rule_files_groups() -> None:
    spec = yaml.safe_load(PROMETHEUS_RULE.read_text())["spec"]
    assert spec["groups"] == _groups(RULES / "streamrank.rules.yml") + _groups(
        RULES / "streamrank-encoder.rules.yml"
    )
    assert {p.name for p in RULE_FILES} == {"streamrank.rules.yml", "streamrank-encoder.rules.yml"}


def test_rules_and_dashboards_select_only_scraped_jobs() -> None:
    jobs = {job["job_name"] for job in yaml.safe_load(CONFIG.read_text())["scrape_configs"]}
    selected = set()
    for expression in expressions(WORKER_SOURCES + ENCODER_SOURCES):
        selected |= set(re.findall(r'job="([^"]+)"', expression.query))
    assert selected and selected <= jobs


def test_worker_group_uses_only_worker_metrics() -> None:
    """A fast check of the names; the live test proves they carry data."""
    registry = CollectorRegistry()
    settings = Settings()
    Metrics(registry, sorted(settings.event_weights), [settings.events_topic]).model.info({"model": "m"})
    exported = {s.name for family in registry.collect() for s in family.samples}
    known = exported | recorded_names(WORKER_SOURCES) | {"up", "kafka_consumergroup_lag"}
    for expression in expressions(WORKER_SOURCES):
        assert metric_names(expression.query) <= known, f"{expression.id}: {expression.query}"


def test_encoder_group_uses_only_the_encoder_contract() -> None:
    """Until the encoder service is in this tree, its dashboard and rules answer to its contract."""
    used: set[str] = set()
    known = ENCODER_CONTRACT | recorded_names(ENCODER_SOURCES) | {"up"}
    for expression in expressions(ENCODER_SOURCES):
        names = metric_names(expression.query)
        assert names <= known, f"{expression.id}: {sorted(names - known)}"
        used |= names

    # The encoder dashboard and rules show every metric of the contract (a histogram
    # through any of its series).
    def family(name: str) -> str:
        return re.sub(r"_(bucket|sum|count)$", "", name)

    assert {family(n) for n in ENCODER_CONTRACT} - {family(n) for n in used} == set()
