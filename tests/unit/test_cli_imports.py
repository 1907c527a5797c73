"""`run` stays lean: its help and its settings load nothing it never uses.

Each check runs a fresh interpreter (a subprocess) and reads its `sys.modules`, so an
import done earlier by another test cannot hide one.
"""

from __future__ import annotations

import subprocess
import sys

import orjson

DEV_ONLY = ("connector.sandbox", "connector.demo", "connector.dryrun", "connector.localbroker",
            "connector.redrive")


def _modules_after(code: str) -> tuple[list[str], str]:
    script = (
        "import sys, orjson\n"
        f"{code}\n"
        "sys.stderr.write('\\nMODULES ' + orjson.dumps(sorted(sys.modules)).decode())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    marker = out.stderr.rsplit("MODULES ", 1)
    assert len(marker) == 2, out.stderr
    return orjson.loads(marker[1]), out.stdout


def test_run_help_imports_neither_the_sandbox_nor_the_demo() -> None:
    modules, stdout = _modules_after(
        "from connector import cli\n"
        "try:\n    cli.main(['run', '--help'])\nexcept SystemExit:\n    pass"
    )
    assert "--metrics-port" in stdout  # the help was printed
    loaded = [m for m in modules if m.startswith(DEV_ONLY)]
    assert loaded == []
    assert "connector.cli" in modules


def test_other_subcommands_still_get_their_options() -> None:
    modules, stdout = _modules_after(
        "from connector import cli\n"
        "try:\n    cli.main(['demo', '--help'])\nexcept SystemExit:\n    pass"
    )
    assert "--seconds" in stdout
    assert "connector.demo" in modules
    assert "connector.redrive" not in modules  # the other subcommands stay unloaded


def test_settings_types_load_without_the_mapping_compiler() -> None:
    modules, _ = _modules_after(
        "from connector.config import GameballSettings, RetrySettings, Settings"
    )
    assert "connector.config" in modules
    assert "connector.mapping" not in modules
    assert not [m for m in modules if m.split(".")[0] == "jmespath"]
