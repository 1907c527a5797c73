"""`python -m connector.sandbox` as a real subprocess: banner, faults from flags, signals."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import urllib3

from tests.support import API_KEY, SECRET_KEY

pytestmark = pytest.mark.integration

KEYS = {"apikey": API_KEY, "secretkey": SECRET_KEY,
        "Content-Type": "application/json"}


def start(*flags: str) -> tuple[subprocess.Popen[str], list[str]]:
    """Start the sandbox on a free port; return it and its whole banner."""
    proc = subprocess.Popen([sys.executable, "-m", "connector.sandbox", "--port", "0", *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    banner: list[str] = []
    deadline = time.monotonic() + 15
    while not any("stop with" in line for line in banner):  # the banner's last line
        line = proc.stdout.readline()
        if not line or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no banner: {banner} {proc.stderr.read() if proc.stderr else ''}")
        banner.append(line)
    return proc, banner


def test_serves_from_flags_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    store = tmp_path / "accepted.jsonl"
    proc, banner = start("--reject-customer", "bad-1", "--reject-customer", "bad-2",
                         "--store", str(store), "--high-security")
    try:
        text = "".join(banner)
        assert "NOT Gameball" in text
        url = text.split("listening on ")[1].split()[0]
        assert "reject_customers=['bad-1', 'bad-2']" in text
        http = urllib3.PoolManager(retries=False, timeout=10)
        good = {"body": [{"customerId": "c1", "events": {"place_order": {"amount": 3}}}]}
        answer = http.request("POST", f"{url}/api/v4.0/integrations/batch/events",
                              body=orjson.dumps(good), headers=KEYS)
        assert answer.status == 200 and "jobId" in orjson.loads(answer.data)
        bad = {"body": [{"customerId": "bad-2", "events": {"place_order": {}}}]}
        answer = http.request("POST", f"{url}/api/v4.0/integrations/batch/events",
                              body=orjson.dumps(bad), headers=KEYS)
        assert answer.status == 412 and orjson.loads(answer.data)["code"] == 2000
        # --high-security: Send Events without the secret is refused (401, 1001).
        one = {"customerId": "c2", "events": {"place_order": {}}}
        answer = http.request("POST", f"{url}/api/v4.0/integrations/events",
                              body=orjson.dumps(one),
                              headers={k: v for k, v in KEYS.items() if k != "secretkey"})
        assert answer.status == 401 and orjson.loads(answer.data)["code"] == 1001
        banner_page = orjson.loads(http.request("GET", f"{url}/").data)
        assert "NOT Gameball" in banner_page["notice"]
        # Flushed before the answer: the store has the item while the sandbox runs.
        assert [orjson.loads(x)["customerId"] for x in store.read_bytes().splitlines()] == ["c1"]

        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "1 items accepted" in out
    assert SECRET_KEY not in err


def test_sigint_also_stops_it() -> None:
    proc, _ = start()
    try:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()


def test_bad_fault_values_exit_2_with_the_reason() -> None:
    done = subprocess.run([sys.executable, "-m", "connector.sandbox", "--error-rate", "2"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "error_rate must be between 0 and 1" in done.stderr


def test_a_taken_port_exits_1_with_the_reason() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "connector.sandbox", "--port", str(port)],
                              capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
