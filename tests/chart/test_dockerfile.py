"""The container image, checked without a Docker engine.

hadolint lints the Dockerfile; the build stage's own RUN steps run in a fresh virtualenv
standing in for the base image; the runtime stage is checked against what the chart
expects (user, command, port, venv location).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.chart.dockerfile import Stage, dockerignore_excludes, parse
from tests.chart.rendering import ROOT, render

DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"


def _hadolint(path: Path) -> tuple[int, list[dict[str, object]]]:
    result = subprocess.run(
        [str(HADOLINT), "--config", str(ROOT / ".hadolint.yaml"), "--format", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, json.loads(result.stdout or "[]")


def _stages() -> dict[str, Stage]:
    return {s.name: s for s in parse(DOCKERFILE)}


@pytest.mark.chart
def test_hadolint_passes_with_no_findings() -> None:
    code, findings = _hadolint(DOCKERFILE)
    assert findings == []
    assert code == 0


@pytest.mark.chart
def test_hadolint_config_is_in_force(tmp_path: Path) -> None:
    """A Dockerfile without the OCI licence label fails: the label schema is enforced."""
    stripped = "\n".join(
        line for line in DOCKERFILE.read_text().splitlines() if "image.licenses" not in line
    )
    broken = tmp_path / "Dockerfile"
    broken.write_text(stripped + "\n")
    code, findings = _hadolint(broken)
    assert code != 0
    assert [f["code"] for f in findings] == ["DL3049"]


@pytest.mark.chart
def test_runtime_stage_matches_what_the_chart_runs() -> None:
    stages = _stages()
    runtime = list(stages.values())[-1]
    assert runtime.name == "runtime"
    # Numeric non-root user (Kubernetes checks runAsNonRoot without reading /etc/passwd).
    (user,) = runtime.all("USER")
    uid, _, gid = user.args.partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit()
    container = render({}).container
    sc = container["securityContext"]
    assert (sc["runAsUser"], sc["runAsGroup"]) == (int(uid), int(gid))
    # Exec form: the connector is PID 1 and receives SIGTERM itself.
    (entrypoint,) = runtime.all("ENTRYPOINT")
    (cmd,) = runtime.all("CMD")
    assert entrypoint.exec_form() == ["gameball-connector"]
    assert cmd.exec_form() == container["args"]
    (expose,) = runtime.all("EXPOSE")
    assert int(expose.args) == container["ports"][0]["containerPort"]
    # Only the built virtualenv is taken from the build stage; it leads PATH.
    build_env = stages["build"].env()
    (copy,) = runtime.all("COPY")
    assert copy.flags == {"from": "build"}
    assert copy.args.split() == [build_env["VIRTUAL_ENV"], build_env["VIRTUAL_ENV"]]
    assert runtime.env()["PATH"].startswith(f"{build_env['VIRTUAL_ENV']}/bin:")
    assert runtime.all("RUN") and not any("pip" in r.args for r in runtime.all("RUN"))


@pytest.mark.chart
def test_build_context_holds_what_the_build_copies_and_no_local_clutter() -> None:
    ignore = dockerignore_excludes(ROOT / ".dockerignore")
    for copy in _stages()["build"].all("COPY"):
        *sources, _dest = copy.args.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY source {source} is missing from the repo"
            assert not ignore.excluded(source), f"{source} is excluded by .dockerignore"
    assert not ignore.excluded("connector/config.py")
    for clutter in (".venv/bin/python", ".git/config", "tests/unit/x.py",
                    "connector/__pycache__/config.cpython-311.pyc", "helm/gameball-connector"):
        assert ignore.excluded(clutter), clutter


@pytest.mark.integration
def test_build_stage_install_steps_work_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    """Run the build stage's RUN lines as written, with its paths moved under tmp_path.

    The test's Python 3.11 (with pip) plays the base image's; the venv the steps create is
    fresh. pip's index settings come from the environment, as in any build. The result
    must start the CLI from its own venv, with pip left behind.
    """
    build = _stages()["build"]
    ignore = dockerignore_excludes(ROOT / ".dockerignore")

    # The build context, as Docker would send it, then COPY into WORKDIR.
    (workdir,) = build.all("WORKDIR")
    src = tmp_path / workdir.args.lstrip("/")
    src.mkdir(parents=True)
    for copy in build.all("COPY"):
        *sources, dest = copy.args.split()
        target = src / dest
        for source in sources:
            origin = ROOT / source
            assert origin.exists(), f"COPY source {source} is missing from the repo"
            if origin.is_dir():  # Docker copies a directory's contents into dest
                shutil.copytree(
                    origin,
                    target,
                    dirs_exist_ok=True,
                    ignore=lambda d, names: [
                        n for n in names if ignore.excluded(str((Path(d) / n).relative_to(ROOT)))
                    ],
                )
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target / origin.name)

    # The stage's ENV, with absolute container paths moved under tmp_path.
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    # `python` is the test's interpreter (Python 3.11 with pip, like the base image);
    # the venv the steps create is new and empty.
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    for key, value in build.env().items():
        env[key] = str(tmp_path / value.lstrip("/")) if value.startswith("/") else value
    for run in build.all("RUN"):
        # `--mount=type=cache` only keeps pip's cache between builds: pip's default cache
        # directory does the same here.
        result = subprocess.run(
            ["/bin/sh", "-c", run.args], cwd=src, env=env, capture_output=True, text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"RUN {run.args}\n{result.stdout}\n{result.stderr}"

    venv = Path(env["VIRTUAL_ENV"])
    app = venv / "bin" / "gameball-connector"
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import connector, confluent_kafka, orjson, pydantic; print(connector.__file__)"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"},
    )
    assert probe.returncode == 0, probe.stderr
    assert Path(probe.stdout.strip()).is_relative_to(venv)  # installed, not the repo checkout
    assert not (venv / "bin" / "pip").exists()  # pip stayed in the build stage
    result = subprocess.run(
        [str(app), "run", "--help"], capture_output=True, text=True, timeout=60,
        env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin"}, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "--config" in result.stdout
