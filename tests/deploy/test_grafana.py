"""Grafana provisioning and dashboards: consistent, and every panel described in docs/operations.md.

The queries themselves are evaluated by test_prometheus_live.py (worker dashboard) and
checked against the encoder contract by test_prometheus_files.py (encoder dashboard).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.observability import DASHBOARDS, dashboard_expressions
from tests.deploy.tools import ROOT

pytestmark = pytest.mark.deploy

PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
DASHBOARD_FILES = sorted(DASHBOARDS.glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_datasource_is_the_compose_prometheus() -> None:
    (source,) = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    for path in DASHBOARD_FILES:
        (var,) = [v for v in load(path)["templating"]["list"] if v["type"] == "datasource"]
        assert var["current"]["value"] == source["uid"]


def test_provider_loads_the_mounted_dashboards() -> None:
    (provider,) = yaml.safe_load((PROVISIONING / "dashboards" / "streamrank.yml").read_text())["providers"]
    assert provider["options"]["path"] == "/etc/grafana/dashboards"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_is_well_formed(path: Path) -> None:
    dashboard = load(path)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
    for panel in panels(dashboard):
        assert panel["targets"] and panel["description"], panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])
    # Every Grafana variable a query uses is defined (substitution raises otherwise).
    assert dashboard_expressions(path)


def test_dashboard_uids_are_unique_and_linked() -> None:
    dashboards = [load(p) for p in DASHBOARD_FILES]
    uids = {d["uid"] for d in dashboards}
    assert len(uids) == len(dashboards)
    for dashboard in dashboards:
        assert {link["url"].removeprefix("/d/") for link in dashboard["links"]} <= uids


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_the_operations_guide_describes_every_panel(path: Path) -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    section = guide.split("### Dashboards", 1)[1].split("\n## ", 1)[0]
    missing = [p["title"] for p in panels(load(path)) if f"**{p['title']}**" not in section]
    assert missing == []
