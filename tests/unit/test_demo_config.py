"""config/demo.yaml runs the three examples' routes, unchanged (they must not drift)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_demo_routes_are_the_examples_routes() -> None:
    demo = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    examples = []
    for name in ("shop-orders", "reviews", "app-activity"):
        config = yaml.safe_load((ROOT / "config" / "examples" / name / "config.yaml").read_text())
        examples.extend(config["mappings"])
    assert demo["mappings"] == examples
    assert set(demo["kafka"]["topics"]) == {r["topic"] for r in examples}
