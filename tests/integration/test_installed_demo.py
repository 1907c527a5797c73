"""A user's install: the package with the `demo` extra in a fresh virtualenv (a real,
non-editable install built from the sources), then `gameball-connector demo` from an
empty folder. Nothing of the source tree is reachable from there."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(600)
def test_installed_demo_runs_from_an_empty_folder(tmp_path: Path) -> None:
    # The files an sdist carries, copied: pip then builds a wheel from the copy and the
    # worktree gets no build/ or egg-info.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "connector", src / "connector",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
         "--disable-pip-version-check", f"{src}[demo]"],
        capture_output=True, text=True, timeout=480, env=env,
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-3000:]
    shutil.rmtree(src)  # the installed copy must stand on its own

    empty = tmp_path / "elsewhere"
    empty.mkdir()
    out = subprocess.run(
        [str(venv / "bin" / "gameball-connector"), "demo", "--seconds", "15"],
        capture_output=True, text=True, timeout=180, cwd=empty, env=env,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    accepted = re.search(r"events accepted\s+(\d+)", out.stdout)
    assert accepted and int(accepted.group(1)) > 0, out.stdout
    assert "connector exit code     0" in out.stdout
    store = empty / "demo-data" / "sandbox-accepted.jsonl"  # the default workdir: ./demo-data
    assert store.stat().st_size > 0
    assert "site-packages/connector/demo_data/demo.yaml" in out.stdout  # the packaged config
