"""`gameball-connector demo` as a user runs it: events arrive, it stops by itself, exit 0."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.support import BIN


def test_demo_shows_events_arriving_and_exits_zero(tmp_path: Path) -> None:
    out = subprocess.run(
        [str(BIN), "demo", "--seconds", "12", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=90,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "NOT Gameball" in out.stdout
    accepted = re.search(r"events accepted\s+(\d+)", out.stdout)
    assert accepted and int(accepted.group(1)) > 0, out.stdout
    progress = re.findall(r"accepted events\s+(\d+)", out.stdout)
    assert progress and int(progress[-1]) > 0, "live progress shows events arriving"
    assert (tmp_path / "sandbox-accepted.jsonl").stat().st_size > 0
    assert "connector exit code     0" in out.stdout
