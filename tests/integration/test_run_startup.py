"""The start of `run` (config, mapping, client, consumer subscribed) against a real broker
loads neither the sandbox nor the demo: a running connector is asked for its
`sys.modules` once it has logged "connector started"."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import yaml

from connector.localbroker import LocalBroker
from tests.support import API_KEY, SECRET_KEY, connector_config, unique, wait_until

# Runs the real CLI's main() in the main thread (it installs the signal handlers); a side
# thread answers one line on stdin with the loaded modules.
SCRIPT = """
import sys, threading, orjson
from connector import cli

def answer():
    sys.stdin.readline()
    sys.stdout.write("MODULES " + orjson.dumps(sorted(sys.modules)).decode() + "\\n")
    sys.stdout.flush()

threading.Thread(target=answer, daemon=True).start()
sys.exit(cli.main(["run", "--config", sys.argv[1]]))
"""


@contextlib.contextmanager
def started(broker: LocalBroker, tmp_path: Path, script: str) -> Iterator[
    tuple[subprocess.Popen[bytes], list[bytes]]
]:
    """`script` (which runs `cli.main(["run", ...])`) against a fresh topic, once it has
    logged "connector started": the process and its output lines so far (still growing).
    Killed at the end if still running."""
    topic, group = unique("lean"), unique("g-lean")
    broker.create_topics([topic], partitions=1)
    config = connector_config(broker.bootstrap, "http://127.0.0.1:9", topic, group)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "GAMEBALL_API_KEY": API_KEY, "GAMEBALL_SECRET_KEY": SECRET_KEY}
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(path)], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
    )
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, b"")),
                              daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        wait_until(lambda: any(b'"connector started"' in line for line in lines), 30,
                   "the connector to start")
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_started_run_has_not_imported_the_sandbox_or_the_demo(
    broker: LocalBroker, tmp_path: Path
) -> None:
    with started(broker, tmp_path, SCRIPT) as (proc, lines):
        assert proc.stdin is not None
        proc.stdin.write(b"modules?\n")
        proc.stdin.flush()
        found = wait_until(
            lambda: next((ln for ln in lines if ln.startswith(b"MODULES ")), None), 10,
            "the module list",
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, b"".join(lines)[-3000:]
    modules = orjson.loads(found.removeprefix(b"MODULES "))
    assert "connector.pipeline" in modules and "confluent_kafka" in modules  # it did start
    dev_only = ("connector.sandbox", "connector.demo", "connector.dryrun",
                "connector.localbroker", "connector.redrive")
    assert [m for m in modules if m.startswith(dev_only)] == []


# A thread started before `main()` (an embedding program's) does not block SIGTERM: the
# signal sent to it must stop the connector as gracefully as one sent to the process.
EARLY_THREAD_SCRIPT = """
import signal, sys, threading
from connector import cli

def early():
    sys.stdin.readline()
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

threading.Thread(target=early, daemon=True).start()
sys.exit(cli.main(["run", "--config", sys.argv[1]]))
"""


def test_sigterm_reaching_a_thread_older_than_main_stops_it_cleanly(
    broker: LocalBroker, tmp_path: Path
) -> None:
    with started(broker, tmp_path, EARLY_THREAD_SCRIPT) as (proc, lines):
        assert proc.stdin is not None
        proc.stdin.write(b"stop\n")  # the early thread sends SIGTERM to itself
        proc.stdin.flush()
        assert proc.wait(30) == 0, b"".join(lines)[-3000:]  # not -15: the default action
    assert any(b'"stopping: draining in-flight requests"' in line for line in lines)
