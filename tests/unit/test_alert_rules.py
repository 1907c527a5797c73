"""The alert rules shipped in the chart: promtool accepts them, their promtool unit
tests pass (each alert fires and stays quiet), each has a runbook section, and they
name only metrics the connector exports."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.unit.test_dashboard import CONTRACT_SERIES, METRIC_NAME, exported_series

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "helm" / "gameball-connector" / "rules" / "alerts.yaml"
RULE_TESTS = sorted((ROOT / "tests" / "rules").glob("*.yaml"))
RUNBOOK = ROOT / "docs" / "alerts.md"

# What issue 5 asks to be alerted on, by the alert that covers it.
REQUIRED = {
    "lag growing for 15 minutes": "GameballConnectorLagGrowing",
    "no commits while partitions are assigned": "GameballConnectorNoCommits",
    "error ratio above 5%": "GameballConnectorErrorRatioHigh",
    "dead letters appearing": "GameballConnectorDeadLetters",
    "authentication failing (not ready)": "GameballConnectorAuthenticationFailing",
    "job failures": "GameballConnectorJobsFailed",
    "possible duplicates": "GameballConnectorPossibleDuplicates",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def alerts() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def github_anchors(markdown: str) -> set[str]:
    """Anchors GitHub generates for the headings of a Markdown page."""
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_rules_file_is_plain_rule_groups() -> None:
    doc = yaml.safe_load(RULES.read_text())
    assert set(doc) == {"groups"}
    assert doc["groups"] and all(g["name"] and g["rules"] for g in doc["groups"])


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    assert RULE_TESTS, "no promtool test files in tests/rules"
    result = promtool("test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "FAILED" not in result.stdout


def test_the_unit_tests_would_catch_a_broken_threshold(tmp_path: Path) -> None:
    # Same tests against a copy whose error-ratio threshold is 15%: they must fail.
    broken_dir = tmp_path / "helm" / "gameball-connector" / "rules"
    broken_dir.mkdir(parents=True)
    text = RULES.read_text()
    assert "> 0.05" in text
    (broken_dir / "alerts.yaml").write_text(text.replace("> 0.05", "> 0.15"))
    tests_dir = tmp_path / "tests" / "rules"
    tests_dir.mkdir(parents=True)
    for path in RULE_TESTS:
        (tests_dir / path.name).write_text(path.read_text())
    result = promtool("test", "rules", *(str(tests_dir / p.name) for p in RULE_TESTS))
    assert result.returncode != 0
    assert "GameballConnectorErrorRatioHigh" in result.stdout + result.stderr


def test_every_required_alert_exists() -> None:
    names = {rule["alert"] for rule in alerts()}
    missing = {need: name for need, name in REQUIRED.items() if name not in names}
    assert not missing, missing


def test_every_alert_has_severity_summary_description_and_runbook() -> None:
    anchors = github_anchors(RUNBOOK.read_text())
    for rule in alerts():
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        notes = rule["annotations"]
        assert notes["summary"].strip() and notes["description"].strip(), name
        url = notes["runbook_url"]
        assert url.startswith("docs/alerts.md#"), name
        assert url.split("#", 1)[1] == name.lower(), name
        assert url.split("#", 1)[1] in anchors, f"{name}: no section {url} in docs/alerts.md"


def test_every_alert_is_tested_firing_and_quiet() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        doc = yaml.safe_load(path.read_text())
        for case in doc["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - fires == set(), f"never made to fire: {sorted(names - fires)}"
    assert names - quiet == set(), f"never shown quiet: {sorted(names - quiet)}"


def test_rules_name_only_exported_metrics() -> None:
    exported = exported_series()
    for rule in alerts():
        for metric in METRIC_NAME.findall(rule["expr"]):
            assert metric in CONTRACT_SERIES, f"{rule['alert']}: {metric} not in the contract"
            assert metric in exported, f"{rule['alert']}: {metric} not exported"
