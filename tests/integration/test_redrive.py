"""`gameball-connector redrive` (issue 16), end to end: real broker, the CLI, the sandbox.

The connector dead-letters the orders of three customers the sandbox rejects; the
sandbox is then told to accept two of them. A dry run lists the six copies and sends
nothing; a re-drive delivers the four now accepted exactly once, writes the two still
rejected back with attempt 2 and commits; the next run reports those two as past
`--max-attempts` and sends nothing; a last run finds nothing new.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import yaml

from connector.localbroker import LocalBroker
from connector.sandbox.faults import Faults
from connector.sandbox.server import SandboxServer
from tests.support import (
    API_KEY,
    BIN,
    SECRET_KEY,
    ConnectorProcess,
    by_customer,
    committed,
    connector_config,
    delivered_orders,
    orders,
    produce,
    read_all,
    stop_when_committed,
    unique,
    wait_until,
)

CUSTOMERS = 30
FIXED = {"c3", "c7"}  # rejected at first, accepted once the sandbox is told so
STILL_BAD = {"c11"}  # rejected every time


def _redrive(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GAMEBALL_API_KEY": API_KEY, "GAMEBALL_SECRET_KEY": SECRET_KEY}
    out = subprocess.run([str(BIN), "redrive", "--config", str(config), *args],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out


def _lines(stdout: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _summary(stdout: str) -> dict[str, int]:
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("redrive"), stdout
    return {k.replace(" ", "_"): int(v) for v, k in
            ((m.group(2), m.group(1)) for m in
             re.finditer(r"(read|sent|skipped|failed again|would send|would fail again) (\d+)",
                         last))}


def _headers(msg: Any) -> dict[str, str]:
    return {k: v.decode() for k, v in msg.headers() or [] if v is not None}


def test_redrive_delivers_dead_letters_once_and_stops_at_max_attempts(
    broker: LocalBroker, tmp_path: Path
) -> None:
    topic, dlq, group = unique("redrive"), unique("dlq"), unique("g-redrive")
    broker.create_topics([topic], partitions=2)
    broker.create_topics([dlq], partitions=1)
    records = orders(60, customers=CUSTOMERS)
    ends = produce(broker.bootstrap, topic, records, key=by_customer(CUSTOMERS),
                   headers=lambda i: [("trace", f"t-{i}".encode())])
    customer_of = {r["id"]: r["customer"]["id"] for r in records}
    fixed = {o for o, c in customer_of.items() if c in FIXED}
    still_bad = {o for o, c in customer_of.items() if c in STILL_BAD}

    with SandboxServer(faults=Faults(reject_customers=sorted(FIXED | STILL_BAD))) as sandbox:
        config = connector_config(broker.bootstrap, sandbox.url, topic, group,
                                  batch={"max_items": 20, "linger_ms": 50},
                                  dead_letter={"topic": dlq})
        with ConnectorProcess(config, tmp_path) as proc:
            stop_when_committed(proc, broker.bootstrap, group, topic, ends, timeout=60)
        first = read_all(broker.bootstrap, dlq, quiet=1.0)
        assert {orjson.loads(m.value())["id"] for m in first} == fixed | still_bad
        origin = {orjson.loads(m.value())["id"]: _headers(m) for m in first}
        before = delivered_orders(sandbox.items())
        assert not (fixed | still_bad) & set(before)

        sandbox.set_faults(Faults(reject_customers=sorted(STILL_BAD)))  # told to accept

        # A dry run lists every copy with the events the current mapping makes of it...
        dry = _redrive(proc.config_path, "--dry-run")
        listed = _lines(dry.stdout)
        assert sorted(ln["events"]["place_order"]["order_id"] for ln in listed) == sorted(
            fixed | still_bad)
        assert all(ln["original"].startswith(f"{topic}[") for ln in listed)
        assert _summary(dry.stdout) == {"read": 6, "would_send": 6, "skipped": 0,
                                        "would_fail_again": 0}
        # ...and sends and commits nothing.
        assert delivered_orders(sandbox.items()) == before
        assert committed(broker.bootstrap, f"{group}-redrive", dlq, 1) == {0: -1001}

        # The re-drive: the fixed customers' orders arrive once, the others come back.
        out = _redrive(proc.config_path, "--max-attempts", "2")
        assert _summary(out.stdout) == {"read": 6, "sent": 4, "skipped": 0, "failed_again": 2}
        after = delivered_orders(sandbox.items())
        assert after - before == Counter(dict.fromkeys(fixed, 1))  # each exactly once
        assert committed(broker.bootstrap, f"{group}-redrive", dlq, 1) == {0: len(first)}

        letters = read_all(broker.bootstrap, dlq, quiet=1.0)
        again = letters[len(first):]
        assert {orjson.loads(m.value())["id"] for m in again} == still_bad
        for msg in again:
            h = _headers(msg)
            was = origin[orjson.loads(msg.value())["id"]]
            assert h["gameball.error.attempt"] == "2"
            assert h["gameball.error.reason"] == "rejected"
            # the sandbox rejects with 412/2000 Precondition Failed, as the reference has it
            assert (h["gameball.error.status"], h["gameball.error.code"]) == ("412", "2000")
            for key in ("topic", "partition", "offset"):  # still the original record's
                assert h[f"gameball.error.{key}"] == was[f"gameball.error.{key}"]
            assert h["trace"] == was["trace"]  # original headers kept, old error ones not
            assert list(dict(msg.headers()).keys()).count("gameball.error.reason") == 1

        # The next run: the copies at attempt 2 are reported, not sent.
        out = _redrive(proc.config_path, "--max-attempts", "2")
        assert _summary(out.stdout) == {"read": 2, "sent": 0, "skipped": 2, "failed_again": 0}
        reported = [ln for ln in _lines(out.stdout) if "max_attempts" in ln]
        assert len(reported) == 2 and all(ln["max_attempts"] == 2 for ln in reported)
        assert delivered_orders(sandbox.items()) == after
        assert committed(broker.bootstrap, f"{group}-redrive", dlq, 1) == {0: len(letters)}

        # And once more: nothing new to read, nothing sent.
        out = _redrive(proc.config_path)
        assert _summary(out.stdout) == {"read": 0, "sent": 0, "skipped": 0, "failed_again": 0}
        assert delivered_orders(sandbox.items()) == after
        assert len(read_all(broker.bootstrap, dlq, quiet=1.0)) == len(letters)


def test_follow_redrives_after_a_mapping_fix_and_stops_failing_copies_at_max_attempts(
    broker: LocalBroker, tmp_path: Path
) -> None:
    """A mapping that misses some customers dead-letters their orders; `redrive --follow`
    with the fixed mapping delivers them as they arrive. A record that is not JSON fails
    again on every pass: written back with attempt 2, then 3, then reported."""
    topic, dlq, group = unique("follow"), unique("dlq"), unique("g-follow")
    broker.create_topics([topic], partitions=1)
    broker.create_topics([dlq], partitions=1)
    # o-0..o-9 name their customer as customer.uid, which the first mapping misses
    records: list[bytes | dict[str, Any] | None] = [
        {"type": "order_placed", "id": f"o-{i}", "customer": {"uid": f"u{i}"},
         "total": {"amount": i}} for i in range(10)]
    records.append(b"{not json")
    ends = produce(broker.bootstrap, topic, records)

    with SandboxServer() as sandbox:
        config = connector_config(broker.bootstrap, sandbox.url, topic, group,
                                  dead_letter={"topic": dlq})
        route = {**config["mappings"][0], "customer_id": "customer.id || customer.uid"}
        fixed_path = tmp_path / "fixed.yaml"
        fixed_path.write_text(yaml.safe_dump({**config, "mappings": [route]}))
        env = {**os.environ, "GAMEBALL_API_KEY": API_KEY, "GAMEBALL_SECRET_KEY": SECRET_KEY}
        redrive = subprocess.Popen(
            [str(BIN), "redrive", "--config", str(fixed_path), "--follow"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            with ConnectorProcess(config, tmp_path) as proc:
                stop_when_committed(proc, broker.bootstrap, group, topic, ends, timeout=60)
            # 10 orders + the bad record, then its copies at attempts 2 and 3
            total = len(records) + 2
            wait_until(lambda: committed(broker.bootstrap, f"{group}-redrive", dlq, 1)
                       == {0: total}, 60, "the re-drive to commit every copy")
            redrive.send_signal(signal.SIGTERM)
            stdout, stderr = redrive.communicate(timeout=60)
        finally:
            if redrive.poll() is None:
                redrive.kill()
                redrive.communicate()
        assert redrive.returncode == 0, stderr[-3000:]
        assert delivered_orders(sandbox.items()) == Counter(f"o-{i}" for i in range(10))
    assert _summary(stdout) == {"read": total, "sent": 10, "skipped": 1, "failed_again": 2}
    copies = read_all(broker.bootstrap, dlq, quiet=1.0)
    assert len(copies) == total
    bad = [_headers(m) for m in copies if m.value() == b"{not json"]
    assert [h.get("gameball.error.attempt") for h in bad] == [None, "2", "3"]
    assert all(h["gameball.error.stage"] == "decode" for h in bad)
    assert {h["gameball.error.offset"] for h in bad} == {"10"}  # the original record's
    reported = [ln for ln in _lines(stdout) if "max_attempts" in ln]
    assert len(reported) == 1 and reported[0]["max_attempts"] == 3


def test_items_failed_in_their_batch_job_are_followed_and_written_back(
    broker: LocalBroker, tmp_path: Path
) -> None:
    """Job tracking on: a customer's items are accepted, then failed inside the job. The
    re-drive (only `--reason job_failed`) waits for its jobs' outcome and writes the items
    that fail again back with attempt 2; the other dead letters are skipped."""
    topic, dlq, group = unique("jobs"), unique("dlq"), unique("g-jobs")
    broker.create_topics([topic], partitions=1)
    broker.create_topics([dlq], partitions=1)
    records: list[bytes | dict[str, Any] | None] = list(orders(20, customers=10))
    records.append(b"{not json")  # dead-lettered too, with another reason
    ends = produce(broker.bootstrap, topic, records)
    tracking = {"job_tracking": {"enabled": True, "poll_interval_ms": 100}}
    with SandboxServer(faults=Faults(job_fail_customers=["c4"])) as sandbox:
        config = connector_config(broker.bootstrap, sandbox.url, topic, group,
                                  gameball=tracking, dead_letter={"topic": dlq})
        with ConnectorProcess(config, tmp_path) as proc:
            stop_when_committed(proc, broker.bootstrap, group, topic, ends, timeout=60)
            # job failures are written after the commit: wait for both copies
            from_job = wait_until(
                lambda: [m for m in read_all(broker.bootstrap, dlq, quiet=0.5)
                         if _headers(m).get("gameball.error.reason") == "job_failed"],
                30, "the job's failed items on the dead-letter topic")
        assert sorted(orjson.loads(m.value())["id"] for m in from_job) == ["o-14", "o-4"]
        jobs_before = len(sandbox.stats()["arrivals"])

        out = _redrive(proc.config_path, "--reason", "job_failed")
        assert _summary(out.stdout) == {"read": 3, "sent": 2, "skipped": 1, "failed_again": 0}
        assert "2 failed later in their batch job" in out.stdout
        assert len(sandbox.stats()["arrivals"]) > jobs_before  # sent, and its job polled
    letters = read_all(broker.bootstrap, dlq, quiet=1.0)
    again = [_headers(m) for m in letters[3:]]
    assert len(again) == 2
    assert all(h["gameball.error.attempt"] == "2" and h["gameball.error.stage"] == "job"
               for h in again)
    assert committed(broker.bootstrap, f"{group}-redrive", dlq, 1) == {0: 3}


def test_a_copy_whose_event_still_cannot_be_encoded_is_written_back_and_passed(
    broker: LocalBroker, tmp_path: Path
) -> None:
    """The re-drive's sender takes an event it cannot encode out of the request (stage
    `encode`): its copy comes back with attempt 2 and the re-drive's group commits past
    it, instead of stopping there."""
    topic, dlq, group = unique("deep"), unique("dlq"), unique("g-deep")
    broker.create_topics([topic], partitions=1)
    broker.create_topics([dlq], partitions=1)
    # orjson decodes 1,024 levels but encodes only 254: written out by hand
    deep = b'{"d":' * 300 + b'"bottom"' + b"}" * 300
    bad = b'{"id":"o-1","customer":{"id":"c2"},"extra":' + deep + b"}"
    good = [orjson.dumps({"id": f"o-{i}", "customer": {"id": "c1"}}) for i in (0, 2)]
    ends = produce(broker.bootstrap, topic, [good[0], bad, good[1]])
    mapping = [{"topic": topic, "customer_id": "customer.id", "event": "place_order",
                "metadata": {"order_id": "id", "extra": "extra"}}]
    with SandboxServer() as sandbox:
        config = connector_config(broker.bootstrap, sandbox.url, topic, group, mapping,
                                  dead_letter={"topic": dlq})
        with ConnectorProcess(config, tmp_path) as proc:
            stop_when_committed(proc, broker.bootstrap, group, topic, ends, timeout=60)
        (first,) = read_all(broker.bootstrap, dlq, quiet=1.0)
        assert _headers(first)["gameball.error.stage"] == "encode"
        sent_before = len(sandbox.items())

        out = _redrive(proc.config_path)
        assert _summary(out.stdout) == {"read": 1, "sent": 0, "skipped": 0, "failed_again": 1}
        assert len(sandbox.items()) == sent_before  # nothing of it reached Gameball
    copies = read_all(broker.bootstrap, dlq, quiet=1.0)
    assert len(copies) == 2
    again = _headers(copies[1])
    assert (again["gameball.error.stage"], again["gameball.error.reason"]) == (
        "encode", "unencodable")
    assert again["gameball.error.attempt"] == "2"
    assert again["gameball.error.offset"] == "1"  # still the original record's
    assert copies[1].value() == bad
    assert committed(broker.bootstrap, f"{group}-redrive", dlq, 1) == {0: 1}
