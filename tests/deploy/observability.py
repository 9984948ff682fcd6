"""Every PromQL expression the dashboards and rules use, and which process must export it.

The dashboards and rules come in two groups:
- the worker group (``WORKER_SOURCES``): evaluated against a live worker by
  ``test_prometheus_live.py``;
- the encoder group (``ENCODER_SOURCES``): the encoder service (``streamrank encode-server``)
  and the workers' remote-encoder client, evaluated live too (a running service, scraped,
  with the worker encoding through it), and checked against ``ENCODER_CONTRACT``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.deploy.tools import ROOT

DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
RULES = ROOT / "deploy" / "prometheus" / "rules"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "tests"

WORKER_SOURCES = (DASHBOARDS / "streamrank.json", RULES / "streamrank.rules.yml")
ENCODER_SOURCES = (DASHBOARDS / "streamrank-encoder.json", RULES / "streamrank-encoder.rules.yml")
# What the live test evaluates.
LIVE_SOURCES = WORKER_SOURCES + ENCODER_SOURCES

# Series that no streamrank process exports, with the reason; the live test cannot produce them.
EXTERNAL_METRICS = {
    "kafka_consumergroup_lag": "consumer lag comes from kafka-exporter (docker-compose) or a Kafka "
    "lag exporter (Kubernetes); Faust exports none, and no such exporter runs in the tests",
}

# The metric contract of the encoder service and of the workers' remote-encoder client,
# as sample names. streamrank_encoder_batch_size and _batch_duration_seconds are also
# exported by workers encoding in-process.
ENCODER_CONTRACT = {
    "streamrank_encoder_queue_depth",
    *(
        f"streamrank_encoder_{histogram}_{suffix}"
        for histogram in ("batch_size", "batch_duration_seconds", "request_duration_seconds")
        for suffix in ("bucket", "sum", "count")
    ),
    "streamrank_encoder_requests_total",
    "streamrank_encoder_errors_total",
    "streamrank_encoder_texts_total",
    "streamrank_encoder_cache_hits_total",
    "streamrank_model_info",
    # Worker side: calls to the service, its circuit breaker, in-process fallbacks.
    "streamrank_encoder_remote_requests_total",
    "streamrank_encoder_circuit_open",
    "streamrank_encoder_fallbacks_total",
}

# What Grafana puts in place of its built-in variables, for a 1 s scrape interval:
# $__rate_interval is at least four scrape intervals; a minute also spans the whole test.
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}

# `expr <comparison> <number>`: how every alert is written, so that the part before the
# comparison (the series it watches) can be evaluated even while the condition is false.
_ALERT = re.compile(
    r"^(?P<lhs>.+?)\s*(?P<op>==|!=|>=|<=|>|<)\s*(?P<rhs>-?\d+(?:\.\d+)?(?:e[+-]?\d+)?)\s*$", re.S
)
_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>[a-zA-Z_]\w*)\s*\)$")
_STRING = re.compile(r'"(?:\\.|[^"\\])*"')
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_KEYWORDS = {
    *("by", "without", "on", "ignoring", "group_left", "group_right"),
    *("bool", "offset", "and", "or", "unless", "inf", "nan"),
}


@dataclass(frozen=True)
class Expression:
    """One PromQL expression of a dashboard or rule file."""

    source: str
    where: str
    kind: str  # "panel", "variable", "record" (its expression), "recorded" (its series) or "alert"
    expr: str
    query: str  # what the live test evaluates (variables substituted, an alert's watched series)
    label: str | None = None  # a variable's label_values label, which every series must carry

    @property
    def id(self) -> str:
        """Readable test id."""
        return f"{self.source}:{self.where}"


def metric_names(expr: str) -> set[str]:
    """Names of the series an expression selects (functions, keywords and labels left out)."""
    text = _STRING.sub('""', expr)
    text = _LABEL_LIST.sub(" ", text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.:$])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()", text):
        if match.group(1) not in _KEYWORDS:
            names.add(match.group(1))
    return names


def alert_watched_series(expr: str) -> str:
    """The left-hand side of ``expr <op> <number>``; ValueError for any other form."""
    match = _ALERT.match(expr.strip())
    if match is None:
        raise ValueError(f"alert expression is not `<expr> <comparison> <number>`: {expr}")
    return match.group("lhs")


def _grafana_values(dashboard: dict) -> dict[str, str]:
    values = dict(GRAFANA_BUILTINS)
    for var in dashboard.get("templating", {}).get("list", []):
        if var["type"] == "datasource":
            continue
        if var.get("includeAll") and var.get("allValue"):
            values[var["name"]] = var["allValue"]
        else:
            values[var["name"]] = str(var["current"]["value"])
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace Grafana's ``$name`` and ``${name}``; every variable must be known."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"unknown Grafana variable ${name} in {expr}")
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, expr)


def _panels(panels: list[dict]) -> list[dict]:
    out = []
    for panel in panels:
        out.append(panel)
        out.extend(_panels(panel.get("panels", [])))
    return out


def dashboard_expressions(path: Path) -> list[Expression]:
    """Panel targets and query variables of a Grafana dashboard."""
    dashboard = json.loads(path.read_text())
    values = _grafana_values(dashboard)
    out = []
    for var in dashboard.get("templating", {}).get("list", []):
        if var["type"] != "query":
            continue
        match = _LABEL_VALUES.match(var["definition"])
        if match is None:
            raise ValueError(f"{path.name}: variable {var['name']} is not label_values(...)")
        selector = match.group("selector")
        out.append(
            Expression(
                path.name, f"${var['name']}", "variable", var["definition"], selector, match.group("label")
            )
        )
    for panel in _panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            where = f"{panel['title']}[{target['refId']}]"
            out.append(
                Expression(path.name, where, "panel", target["expr"], substitute(target["expr"], values))
            )
    return out


def rule_expressions(path: Path) -> list[Expression]:
    """Recording rules (the expression and the recorded series) and alerts (the watched series)."""
    out = []
    for group in yaml.safe_load(path.read_text())["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                out.append(Expression(path.name, rule["record"], "record", rule["expr"], rule["expr"]))
                out.append(
                    Expression(
                        path.name, f"{rule['record']} (recorded)", "recorded", rule["record"], rule["record"]
                    )
                )
            else:
                out.append(
                    Expression(
                        path.name, rule["alert"], "alert", rule["expr"], alert_watched_series(rule["expr"])
                    )
                )
    return out


def expressions(paths: tuple[Path, ...]) -> list[Expression]:
    """Every expression of the given dashboards (.json) and rule files (.yml)."""
    out: list[Expression] = []
    for path in paths:
        out.extend(dashboard_expressions(path) if path.suffix == ".json" else rule_expressions(path))
    return out


def recorded_names(paths: tuple[Path, ...]) -> set[str]:
    """Names of the series the recording rules among ``paths`` create."""
    return {e.query for e in expressions(paths) if e.kind == "recorded"}
