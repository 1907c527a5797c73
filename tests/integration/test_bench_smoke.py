"""The benchmark command still works: `python -m bench.run --smoke` end to end.

Real broker, real sandbox, the real connector CLI, the limit consumer, the naive
peer, the lean forwarder and the Quix Streams peer (in its own venv, `make
.venv-quix/.done`) as subprocesses; only the data set is tiny. Checks what a
person reading the results would: every run is there, every record was read and every
event accepted, and the numbers are plausible measurements (not zeros, not placeholders).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_bench_smoke_produces_results(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]

    latest = json.loads((tmp_path / "latest.json").read_text())
    stamped = [p for p in tmp_path.glob("*.json") if p.name != "latest.json"]
    assert len(stamped) == 1 and json.loads(stamped[0].read_text()) == latest
    assert "failed" not in latest

    runs = latest["runs"]
    assert set(runs) == {"limit", "connector", "naive", "lean", "quix"}
    records = latest["parameters"]["records"]
    assert records == 5000
    for name, run in runs.items():
        assert run["exit_code"] == 0, name
        assert run["records"] == records, name
        assert 0 < run["wall_s"] <= run["total_wall_s"] < 60, (name, run)
        assert run["records_per_s"] == pytest.approx(records / run["wall_s"], rel=0.01)
        assert 0 < run["cpu_s"] < 30, (name, run)
        assert run["cpu_s_per_million"] == pytest.approx(run["cpu_s"] / records * 1e6, rel=0.01)
        # A Python process with confluent-kafka loaded is tens of MB, never a few KB.
        assert 10 < run["peak_rss_mb"] < 1000, (name, run)
    # Every event reached the sandbox (duplicates would show as more).
    assert runs["connector"]["events_accepted"] == records
    assert runs["naive"]["events_accepted"] == records
    assert runs["lean"]["events_accepted"] == records
    assert runs["quix"]["events_accepted"] == records  # Quix's last checkpoint flushed
    assert runs["connector"]["errors"] == 0

    ratios = latest["summary"]["ratios"]
    assert ratios["throughput_connector_over_limit"] == pytest.approx(
        runs["connector"]["records_per_s"] / runs["limit"]["records_per_s"], rel=0.01
    )
    assert ratios["throughput_connector_over_quix"] == pytest.approx(
        runs["connector"]["records_per_s"] / runs["quix"]["records_per_s"], rel=0.01
    )
    assert {t["target"] for t in latest["summary"]["targets"]} == {
        "connector CPU per record / lean forwarder's",
        "connector throughput / lean forwarder's",
        "connector throughput / Quix Streams peer's",
        "connector CPU per record / Quix Streams peer's",
        "connector peak RSS MB (backlog run)",
    }
    # Peak RSS is each process's own (VmHWM), not the benchmark parent's carried over.
    assert len({run["peak_rss_mb"] for run in runs.values()}) > 1
    # The table is printed with the runs first and the ratios last, and the plot drawn.
    lines = proc.stdout.splitlines()
    first_row = next(i for i, ln in enumerate(lines) if ln.startswith("limit"))
    assert first_row < lines.index("ratios and targets") < len(lines) - 3
    assert "naive peer" in proc.stdout and "Quix Streams peer" in proc.stdout
    assert ratios["cpu_per_million_connector_over_lean"] == pytest.approx(
        runs["connector"]["cpu_s_per_million"] / runs["lean"]["cpu_s_per_million"], rel=0.01
    )
    assert "lean forwarder" in proc.stdout and "reference, not a target" in proc.stdout
    png = tmp_path / "benchmark.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.integration
def test_hotpath_measures_the_loop_work_of_every_event() -> None:
    """`python -m bench.hotpath` (no broker): exits 0, so every event went through the
    loop's work and was completed, and reports a plausible CPU figure per event."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.hotpath", "--records", "3000", "--repeats", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = re.search(r"loop-thread work: ([\d.]+) us/event", proc.stdout)
    assert found, proc.stdout
    assert 0.5 < float(found[1]) < 500, proc.stdout  # microseconds of Python per event


@pytest.mark.integration
def test_mapping_bench_covers_every_example_with_agreeing_builds() -> None:
    """`python -m bench.mapping_bench --json`: a row per example mapping (event records and
    all samples) plus the plain-path cases (JSON, Avro, Protobuf), each with positive
    figures; it exits
    non-zero when the fast and the pure-JMESPath builds map any record differently."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.mapping_bench", "--json", "--seconds", "0.02"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-1000:]
    rows = {row["case"]: row for row in json.loads(proc.stdout)}
    examples = sorted(p.name for p in (ROOT / "config" / "examples").iterdir()
                      if (p / "config.yaml").is_file())
    assert examples
    wanted = {"six plain lookups", "when + three paths"} | {
        "six plain lookups (avro)", "six plain lookups (protobuf)"} | {
        f"{name} ({kind})" for name in examples for kind in ("event records", "all samples")
    }
    assert set(rows) == wanted
    for case, row in rows.items():
        assert row["records"] > 0, case
        assert row["fast_us_per_record"] > 0 and row["jmespath_us_per_record"] > 0, case
        assert row["speedup"] == pytest.approx(
            row["jmespath_us_per_record"] / row["fast_us_per_record"], rel=0.02), case
    for fmt in ("avro", "protobuf"):  # the same order as the JSON row, in wire format
        row = rows[f"six plain lookups ({fmt})"]
        assert row["vs_json_cpu"] == pytest.approx(
            row["fast_us_per_record"] / rows["six plain lookups"]["fast_us_per_record"],
            rel=0.02)


@pytest.mark.integration
def test_bench_quota_run_measures_the_sustained_rate_429s_and_crash_resends(
    tmp_path: Path,
) -> None:
    """The at-quota run, shortened (2 s warm-up, 4 s measured, batches of 20 so that the
    backlog is small): the sandbox enforces Gameball's 100/s and 1,200/30 s with 80 ms
    latency, and the figures come from its arrival log. The connector's own limiter must
    keep every request under those windows (no 429), and the rate reported is the
    accepted events inside the measured window over its length. Then the crash-exposure
    run with one SIGKILL at the same quota: the events the killed process had delivered
    past the committed offsets and those sent again after it, counted from the sandbox's
    items, against batch.max_resend_events (3 x 8 x 20 by default here)."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--records", "2000", "--customers", "200",
         "--skip-mapping", "--skip-quix", "--no-docs", "--out", str(tmp_path),
         "--quota-warm-up", "2", "--quota-seconds", "4", "--set", "batch.max_items=20",
         "--crash-kills", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    latest = json.loads((tmp_path / "latest.json").read_text())
    quota = latest["runs"]["quota"]
    assert quota["ceiling_events_per_s"] == 1200 * 20 / 30
    assert (quota["warm_up_s"], quota["wall_s"]) == (2, 4)
    assert quota["requests_after_warm_up"] > 0
    assert quota["throttled_after_warm_up"] == 0 and quota["throttled_total"] == 0
    assert quota["other_errors"] == 0
    assert 0 < quota["records"] <= quota["events_accepted_total"]
    assert quota["records_per_s"] == pytest.approx(quota["records"] / 4, rel=0.01)
    assert quota["share_of_ceiling"] == pytest.approx(quota["records_per_s"] / 800, rel=0.01)
    # The plotted timeline (accepted events per second since the first request) holds
    # the same events: seconds 2 to 5 are the measured window.
    assert sum(quota["accepted_per_second"][2:6]) == quota["records"]
    assert sum(quota["accepted_per_second"]) <= quota["events_accepted_total"]
    assert "at quota: sustained events/s / ceiling (800/s)" in proc.stdout

    crash = latest["crash"]
    bound = crash["resend_bound"]
    assert crash["kills"] == 1 and len(crash["resent_per_kill"]) == 1
    assert [p["ended_by"] for p in crash["processes"]] == ["SIGKILL", "SIGTERM"]
    assert crash["processes"][0]["exit_code"] == -9
    assert crash["processes"][1]["exit_code"] == 0
    # each process delivered its share, at least twice the bound
    assert all(p["events_delivered"] >= 2 * bound for p in crash["processes"])
    assert crash["events_delivered"] == sum(p["events_delivered"] for p in crash["processes"])
    # every delivery is a first one, a re-send after the kill, or (never) a duplicate
    # without one; what the kill left to send again stays within the configured bound,
    # and what was sent again is part of it
    assert crash["duplicates_without_kill"] == 0 and crash["out_of_order"] == 0
    assert crash["events_delivered"] == crash["distinct_events"] + crash["resent_per_kill"][0]
    assert 0 <= crash["resent_per_kill"][0] <= crash["exposed_per_kill"][0] <= bound
    assert crash["resent_after_kill"] == crash["resent_per_kill"]  # one kill: none carried
    assert crash["carried_per_kill"] == [0]
    # the broker stored at least every commit the killed process saw confirmed
    killed = crash["processes"][0]
    stored = killed["committed_after_kill"]
    assert all(o <= stored[p] for p, o in killed["core_at_kill"]["confirmed"].items())
    assert f"(bound batch.max_resend_events = {bound:,})" in proc.stdout
