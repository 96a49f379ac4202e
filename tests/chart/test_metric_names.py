"""Every metric the rules and the dashboard query is one a real task hub server exports: the names
are read from a live /metrics scrape, not from a list kept by hand."""

import json
import re
import urllib.request

import pytest

from tests.chart.chart import MONITORING_ON, only, render
from tests.support.processes import ServerProcess, free_port

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


@pytest.fixture(scope="module")
def exported_names(tmp_path_factory) -> set[str]:
    """Series names a live server's /metrics can carry (from its TYPE lines: a family has no samples
    until something happens, but its name and type are always there)."""
    port = free_port()
    server = ServerProcess(f"sqlite:///{tmp_path_factory.mktemp('hub')}/hub.db", metrics_port=port).start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        server.stop()
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        base = name.removesuffix("_total")
        names |= {base + suffix for suffix in SUFFIXES.get(kind, ("",))}
    return names


def queried_names(expressions: list[str]) -> set[str]:
    return {name for expr in expressions for name in re.findall(r"\bdurabletask_\w+", expr)}


def test_the_scrape_has_the_hub_metrics(exported_names):
    assert {"durabletask_orchestrations", "durabletask_workers_connected",
            "durabletask_work_items_abandoned_total"} <= exported_names


def test_alert_rules_query_only_exported_metrics(exported_names):
    rule = only(render(MONITORING_ON), "PrometheusRule")
    expressions = [r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]]
    assert queried_names(expressions) and queried_names(expressions) <= exported_names


def test_dashboard_queries_only_exported_metrics(exported_names):
    dashboard = json.loads(only(render(MONITORING_ON), "ConfigMap")["data"]["durabletask.json"])
    expressions = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    expressions += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    names = queried_names(expressions)
    assert names - exported_names == set()
    assert {"durabletask_orchestrations", "durabletask_work_items_pending", "durabletask_workers_connected"} <= names
