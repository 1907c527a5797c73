"""The Grafana dashboard shipped in the chart: names only exported metrics, counters
only inside rate()/increase() over $__rate_interval, filters by the variables, and
every query is valid PromQL (checked by promtool, no server needed)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from connector.telemetry import Metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "helm" / "gameball-connector" / "dashboards" / "gameball-connector.json"

# The public contract of issue 5: metric family -> (type, labels).
CONTRACT: dict[str, tuple[str, tuple[str, ...]]] = {
    "gameball_connector_records_consumed": ("counter", ("topic",)),
    "gameball_connector_records_skipped": ("counter", ("topic", "reason")),
    "gameball_connector_records_failed": ("counter", ("topic", "stage", "reason")),
    "gameball_connector_events_accepted": ("counter", ("endpoint",)),
    "gameball_connector_requests": ("counter", ("endpoint", "code")),
    "gameball_connector_request_duration_seconds": ("histogram", ("endpoint",)),
    "gameball_connector_batch_items": ("histogram", ()),
    "gameball_connector_retries": ("counter", ("endpoint", "reason")),
    "gameball_connector_possible_duplicates": ("counter", ()),
    "gameball_connector_inflight_requests": ("gauge", ()),
    "gameball_connector_resend_exposure_events": ("gauge", ()),
    "gameball_connector_resend_bound_overruns": ("counter", ()),
    "gameball_connector_rate_limit_delay_seconds": ("counter", ()),
    "gameball_connector_dead_letter_records": ("counter", ("topic", "reason")),
    "gameball_connector_dead_letter_pending": ("gauge", ()),
    "gameball_connector_dead_letter_failing": ("gauge", ()),
    "gameball_connector_dead_letter_errors": ("counter", ("reason",)),
    "gameball_connector_dead_letter_replaced": ("counter", ()),
    "gameball_connector_records_dropped": ("counter", ("topic", "stage", "reason")),
    "gameball_connector_records_halted": ("gauge", ()),
    "gameball_connector_commits": ("counter", ("result",)),
    "gameball_connector_committed_offset": ("gauge", ("topic", "partition")),
    "gameball_connector_consumer_lag": ("gauge", ("topic", "partition")),
    "gameball_connector_assigned_partitions": ("gauge", ()),
    "gameball_connector_rebalances": ("counter", ("kind",)),
    "gameball_connector_paused_partitions": ("gauge", ()),
    "gameball_connector_end_to_end_seconds": ("histogram", ()),
    "gameball_connector_jobs": ("counter", ("status",)),
    "gameball_connector_job_items_failed": ("counter", ()),
    "gameball_connector_job_records_unavailable": ("counter", ("reason",)),
    "gameball_connector_ready": ("gauge", ()),
    "gameball_connector_build_info": ("gauge", ("version",)),
}

_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
METRIC_NAME = re.compile(r"\bgameball_connector_[a-z0-9_]+\b")


def series_names(families: dict[str, str]) -> dict[str, str]:
    """Series name (as queried) -> family type, e.g. x_total -> counter."""
    return {
        family + suffix: kind
        for family, kind in families.items()
        for suffix in _SUFFIXES[kind]
    }


def exported_families() -> dict[str, str]:
    """Family -> type, from a fresh registry filled by connector.telemetry.Metrics."""
    registry = CollectorRegistry()
    Metrics(registry)
    return {family.name: family.type for family in registry.collect()}


def exported_series() -> dict[str, str]:
    return series_names(exported_families())


CONTRACT_SERIES = series_names({name: kind for name, (kind, _) in CONTRACT.items()})
SERIES_FAMILY = {
    family + suffix: family for family, (kind, _) in CONTRACT.items() for suffix in _SUFFIXES[kind]
}
# Series that only go up: they make sense only inside rate()/increase().
MONOTONIC = {name for name, kind in CONTRACT_SERIES.items() if kind in ("counter", "histogram")}


def load_dashboard() -> dict[str, Any]:
    data = orjson.loads(DASHBOARD.read_bytes())
    assert isinstance(data, dict)
    return data


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            out.extend(panel.get("panels", []))  # collapsed rows keep their panels inside
        else:
            out.append(panel)
    return out


def panel_exprs() -> list[tuple[str, str]]:
    """(panel title / refId, PromQL) for every query of every panel."""
    return [
        (f"{p['title']} / {t['refId']}", t["expr"])
        for p in panels(load_dashboard())
        for t in p["targets"]
    ]


def test_telemetry_exports_exactly_the_contract() -> None:
    families = exported_families()
    assert families == {name: kind for name, (kind, _) in CONTRACT.items()}
    # Labels: `.labels(**contract labels)` raises ValueError on any other label set.
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    for metric in vars(metrics).values():
        if not isinstance(metric, Counter | Gauge | Histogram):
            continue
        family = next(iter(metric.describe())).name
        labels = CONTRACT[family][1]
        if labels:
            metric.labels(**dict.fromkeys(labels, "x"))
        else:
            with pytest.raises(ValueError, match="No label names"):
                metric.labels()


def test_dashboard_identity_and_schema() -> None:
    dash = load_dashboard()
    assert dash["uid"] == "gameball-connector"
    assert dash["title"] and dash["editable"] is True
    assert isinstance(dash["schemaVersion"], int) and dash["schemaVersion"] >= 36
    ids = [p["id"] for p in dash["panels"]] + [
        q["id"] for p in dash["panels"] for q in p.get("panels", [])
    ]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_panels_do_not_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in load_dashboard()["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & taken, f"panel {panel['title']!r} overlaps another"
        taken |= cells


def test_variables_exist_and_use_the_datasource_variable() -> None:
    variables = {v["name"]: v for v in load_dashboard()["templating"]["list"]}
    assert set(variables) >= {"datasource", "namespace", "pod", "topic"}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "pod", "topic"):
        var = variables[name]
        assert var["type"] == "query"
        assert var["datasource"]["uid"] == "${datasource}"
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        assert query.startswith("label_values(") and f", {name})" in query
        assert var["includeAll"] is True and var["allValue"] == ".*"
        for metric in METRIC_NAME.findall(query):
            assert metric in CONTRACT_SERIES, metric


def test_every_panel_queries_the_datasource_variable() -> None:
    for panel in panels(load_dashboard()):
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_every_metric_in_a_panel_is_exported() -> None:
    exported = exported_series()
    for where, expr in panel_exprs():
        for name in METRIC_NAME.findall(expr):
            assert name in CONTRACT_SERIES, f"{where}: {name} is not in the issue-5 contract"
            assert name in exported, f"{where}: {name} is not exported by connector.telemetry"


def test_every_contract_metric_has_a_panel() -> None:
    used = {name for _, expr in panel_exprs() for name in METRIC_NAME.findall(expr)}
    families = {name for name in CONTRACT}
    shown = {f for f in families if any(n.startswith(f) for n in used)}
    assert shown == families, f"no panel for {sorted(families - shown)}"


def _counter_uses(expr: str) -> list[tuple[str, bool]]:
    """(series, wrapped) for each monotonic series in expr: wrapped means
    rate(...)/increase(...) directly around `name{...}[$__rate_interval]`."""
    uses = []
    for match in METRIC_NAME.finditer(expr):
        name = match.group(0)
        if name not in MONOTONIC:
            continue
        before = expr[: match.start()]
        after = expr[match.end() :]
        wrapped = bool(
            re.search(r"\b(rate|increase)\(\s*$", before)
            and re.match(r"\s*(\{[^}]*\})?\s*\[\$__rate_interval\]\s*\)", after)
        )
        uses.append((name, wrapped))
    return uses


def test_counters_only_inside_rate_or_increase_over_rate_interval() -> None:
    for where, expr in panel_exprs():
        for name, wrapped in _counter_uses(expr):
            assert wrapped, f"{where}: {name} must be in rate/increase(...[$__rate_interval])"


def test_the_counter_check_catches_bare_and_fixed_window_counters() -> None:
    bad = [
        "sum(gameball_connector_records_consumed_total)",
        "rate(gameball_connector_records_consumed_total[5m])",
        "sum(irate(gameball_connector_requests_total{pod=~\"$pod\"}[$__rate_interval]))",
        "histogram_quantile(0.9, sum by (le) (gameball_connector_batch_items_bucket))",
    ]
    for expr in bad:
        assert not all(w for _, w in _counter_uses(expr)), expr
    good = 'sum(rate(gameball_connector_requests_total{pod=~"$pod"}[$__rate_interval]))'
    assert _counter_uses(good) == [("gameball_connector_requests_total", True)]


def test_gauges_are_never_rated() -> None:
    gauges = {n for n, kind in CONTRACT_SERIES.items() if kind == "gauge"}
    for where, expr in panel_exprs():
        for name in gauges:
            assert not re.search(rf"\b(rate|increase|irate)\(\s*{name}\b", expr), where


def test_every_selector_filters_by_namespace_pod_and_topic() -> None:
    with_topic = {name for name, family in SERIES_FAMILY.items() if "topic" in CONTRACT[family][1]}
    for where, expr in panel_exprs():
        for match in METRIC_NAME.finditer(expr):
            selector = re.match(r"\{([^}]*)\}", expr[match.end() :])
            assert selector, f"{where}: {match.group(0)} has no label selector"
            body = selector.group(1)
            assert 'namespace=~"$namespace"' in body, where
            assert 'pod=~"$pod"' in body, where
            if match.group(0) in with_topic:
                assert 'topic=~"$topic"' in body, where


def substitute(expr: str, rate_interval: str = "1m") -> str:
    """The variables as Grafana would expand them with "All" selected."""
    return (
        expr.replace("$__rate_interval", rate_interval)
        .replace("$namespace", ".*")
        .replace("$pod", ".*")
        .replace("$topic", ".*")
    )


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses recording-rule expressions: a cheap, server-less PromQL check.
    rules = [
        {"record": f"dashboard:query_{n}", "expr": substitute(expr)}
        for n, (_, expr) in enumerate(panel_exprs())
    ]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout
