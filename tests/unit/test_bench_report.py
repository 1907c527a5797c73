"""bench.report: the generated figures section of docs/benchmarks.md, from a real run."""

from __future__ import annotations

import json
from pathlib import Path

from bench import report

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "latest.json"


def test_update_docs_replaces_only_the_figures_between_the_markers(tmp_path: Path) -> None:
    results = json.loads(RESULTS.read_text())
    doc = tmp_path / "benchmarks.md"
    plot = tmp_path / "benchmarks" / "benchmark.png"
    doc.write_text(f"# Title\n\nprose before\n\n{report.BEGIN}\nold figures\n{report.END}\n\n"
                   "prose after\n")
    report.update_docs(doc, results, plot)
    report.update_docs(doc, results, plot)  # a second run replaces, never appends
    text = doc.read_text()
    assert text.startswith("# Title\n\nprose before\n\n") and text.endswith("\n\nprose after\n")
    assert text.count(report.BEGIN) == 1 and text.count(report.END) == 1
    assert "old figures" not in text
    for name, run in results["runs"].items():
        assert f"| {report.LABELS[name]} | {run['records']:,} |" in text
    for target in results["summary"]["targets"]:
        assert f"| {target['target']} |" in text
    assert "![throughput and CPU per million per run](benchmarks/benchmark.png)" in text


def test_summary_ratios_and_verdicts_follow_the_runs() -> None:
    runs = json.loads(RESULTS.read_text())["runs"]
    summary = report.summarise(runs)
    ratios = summary["ratios"]
    assert ratios["throughput_connector_over_limit"] == round(
        runs["connector"]["records_per_s"] / runs["limit"]["records_per_s"], 3)
    assert ratios["cpu_per_million_connector_over_lean"] == round(
        runs["connector"]["cpu_s_per_million"] / runs["lean"]["cpu_s_per_million"], 3)
    verdicts = {t["target"]: t["ok"] for t in summary["targets"]}
    cpu = verdicts["connector CPU per million / limit's"]
    assert cpu == (ratios["cpu_per_million_connector_over_limit"] <= 2.0)
    # Without the optional runs their targets are left out, not judged.
    partial = report.summarise({"limit": runs["limit"], "connector": runs["connector"]})
    assert not any(t["target"].startswith("at quota") for t in partial["targets"])
    assert partial["ratios"]["throughput_connector_over_naive"] is None
