"""bench.report: the generated figures section of docs/benchmarks.md, from a real run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import report
from bench.run import median_run

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "latest.json"


def test_update_docs_replaces_only_the_figures_between_the_markers(tmp_path: Path) -> None:
    results = with_quix_and_crash(json.loads(RESULTS.read_text()))
    results["summary"] = report.summarise(results["runs"], results["crash"])
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
    per_kill = ", ".join(f"{n:,}" for n in results["crash"]["exposed_per_kill"])
    assert f"SIGKILLs mid-stream left {per_kill} events to send again" in text


def with_quix_and_crash(results: dict[str, Any]) -> dict[str, Any]:
    """The recorded run plus a Quix Streams peer when it has none, and `CRASH` when its
    crash run has no exposure count (runs before them): the peer at half the lean
    forwarder's rate and twice its CPU."""
    runs = dict(results["runs"])
    lean = runs["lean"]
    runs.setdefault("quix", {**lean, "name": "quix", "records_per_s": lean["records_per_s"] / 2,
                             "cpu_s_per_million": lean["cpu_s_per_million"] * 2})
    crash = CRASH if "exposed_per_kill" not in results.get("crash", {}) else results["crash"]
    return {**results, "runs": runs, "crash": crash}


# A crash run as bench.crash_exposure reports it: the third kill leaves more than its
# bound to send again; the third restart also re-sends what the second kill left.
CRASH = {
    "kills": 3, "resend_bound": 24_000, "exposed_per_kill": [9_000, 300, 24_001],
    "resent_per_kill": [9_000, 300, 20_000], "carried_per_kill": [0, 0, 300],
    "resent_after_kill": [9_000, 0, 20_300],
    "worst_resent": 20_000, "duplicates_without_kill": 0, "throttled": 0,
    "processes": [{"events_delivered": 50_000, "seconds": 5.0, "ended_by": "SIGKILL"}] * 3
    + [{"events_delivered": 60_000, "seconds": 6.0, "ended_by": "SIGTERM"}]}


def test_summary_ratios_and_verdicts_follow_the_runs() -> None:
    results = with_quix_and_crash(json.loads(RESULTS.read_text()))
    runs, crash = results["runs"], results["crash"]
    summary = report.summarise(runs, crash)
    ratios = summary["ratios"]
    con, lean, quix = runs["connector"], runs["lean"], runs["quix"]
    assert ratios["throughput_connector_over_lean"] == round(
        con["records_per_s"] / lean["records_per_s"], 3)
    assert ratios["cpu_per_million_connector_over_lean"] == round(
        con["cpu_s_per_million"] / lean["cpu_s_per_million"], 3)
    assert ratios["throughput_connector_over_quix"] == round(
        con["records_per_s"] / quix["records_per_s"], 3)
    assert ratios["cpu_per_million_connector_over_quix"] == round(
        con["cpu_s_per_million"] / quix["cpu_s_per_million"], 3)
    verdicts = {t["target"]: t["ok"] for t in summary["targets"]}
    # issue 14's targets, each judged from its own ratio
    assert verdicts["connector CPU per record / lean forwarder's"] == (
        ratios["cpu_per_million_connector_over_lean"] <= 2.0)
    assert verdicts["connector throughput / lean forwarder's"] == (
        ratios["throughput_connector_over_lean"] >= 0.9)
    assert verdicts["connector throughput / Quix Streams peer's"] == (
        ratios["throughput_connector_over_quix"] >= 1.5)
    assert verdicts["connector CPU per record / Quix Streams peer's"] == (
        ratios["cpu_per_million_connector_over_quix"] <= 0.6)
    assert verdicts["connector peak RSS MB (backlog run)"] == (con["peak_rss_mb"] <= 150)
    assert verdicts["at quota: answers 429"] == (runs["quota"]["throttled_total"] == 0)
    kills = f"crash: events a SIGKILL leaves to send again, worst of {crash['kills']}"
    assert verdicts[kills] == (max(crash["exposed_per_kill"]) <= crash["resend_bound"])
    # The old ratios against the limit and the naive peer are still written, not judged.
    assert ratios["throughput_connector_over_naive"] == round(
        con["records_per_s"] / runs["naive"]["records_per_s"], 3)
    assert not any("limit" in t["target"] or "naive" in t["target"]
                   for t in summary["targets"])
    # Without the optional runs their targets are left out, not judged.
    partial = report.summarise({"limit": runs["limit"], "connector": runs["connector"]})
    assert not any(t["target"].startswith(("at quota", "crash")) or "Quix" in t["target"]
                   or "lean" in t["target"] for t in partial["targets"])
    assert partial["ratios"]["throughput_connector_over_quix"] is None


def test_a_crash_run_past_its_bound_is_reported_missed_with_each_kill() -> None:
    results = with_quix_and_crash(json.loads(RESULTS.read_text()))
    crash = {**results["crash"], "exposed_per_kill": [10, 20, 30],
             "resent_per_kill": [10, 20, 5], "carried_per_kill": [0, 0, 20],
             "resent_after_kill": [10, 0, 25], "resend_bound": 25}
    results = {**results, "crash": crash}
    results["summary"] = report.summarise(results["runs"], crash)
    verdict = [t for t in results["summary"]["targets"] if t["target"].startswith("crash")]
    assert [(t["value"], t["ok"]) for t in verdict] == [(30, False)]
    text = report.table(results)
    assert "3 SIGKILLs mid-stream left 10, 20, 30 events to send again" in text
    assert "by the process started after each kill: 10, 0, 25" in text
    assert "includes 0, 0, 20 left by earlier kills" in text
    assert "max_resend_events = 25" in text


def test_a_crash_run_recorded_before_the_exposure_count_is_judged_on_its_re_sends() -> None:
    results = with_quix_and_crash(json.loads(RESULTS.read_text()))
    # CRASH as a run recorded before the count: not the recorded latest.json, which may
    # already have it
    old = {k: v for k, v in CRASH.items()
           if k not in ("exposed_per_kill", "carried_per_kill", "resent_after_kill")}
    summary = report.summarise(results["runs"], old)
    verdict = [t for t in summary["targets"] if t["target"].startswith("crash")]
    assert [(t["value"], t["ok"]) for t in verdict] == [(20_000, True)]
    assert "re-sent 9,000, 300, 20,000 events" in report.crash_line(old)


def test_a_program_s_figures_are_the_medians_of_its_rounds_and_its_highest_rss() -> None:
    def round_(cpu: float, rate: float, rss: float) -> dict[str, Any]:
        return {"cpu_s_per_million": cpu, "records_per_s": rate, "wall_s": 1e5 / rate,
                "peak_rss_mb": rss, "machine_busy_cores": 1.0}

    out = median_run([round_(13.1, 74_000, 130), round_(9.6, 94_000, 141),
                      round_(11.9, 76_000, 120)])
    assert out["cpu_s_per_million"] == 11.9  # the median round's, not the mean
    assert out["records_per_s"] == 76_000 and out["wall_s"] == 1e5 / 76_000
    assert out["peak_rss_mb"] == 141  # the highest: a bound, not a typical value
    assert [r["cpu_s_per_million"] for r in out["rounds"]] == [13.1, 9.6, 11.9]
