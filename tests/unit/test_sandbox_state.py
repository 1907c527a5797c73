"""The sandbox's memory: items, the JSONL store, customer claims, stall, stats, reset."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from connector.sandbox.faults import Faults
from connector.sandbox.state import SandboxState


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def items(*customers: str) -> list[dict[str, Any]]:
    return [{"customerId": c, "events": {"place_order": {"n": i}, "visit": {}}}
            for i, c in enumerate(customers)]


def accept(state: SandboxState, batch: list[dict[str, Any]], endpoint: str = "batch",
           request_id: str = "r1") -> int | None:
    raw = orjson.dumps({"body": batch} if endpoint == "batch" else batch[0])
    return state.accept(batch, endpoint, request_id, state.faults, raw)


def test_accepted_items_are_recorded_with_job_and_request() -> None:
    state = SandboxState(wall=lambda: 1_700_000_000.0)
    assert accept(state, items("a", "b")) == 1
    assert accept(state, items("c"), endpoint="events", request_id="r2") is None
    assert accept(state, items("d")) == 2
    got = state.items()
    assert [(i["customerId"], i["jobId"], i["endpoint"], i["index"]) for i in got] == [
        ("a", 1, "batch", 0), ("b", 1, "batch", 1), ("c", None, "events", 0),
        ("d", 2, "batch", 0)]
    assert got[0]["events"] == {"place_order": {"n": 0}, "visit": {}}
    assert got[2]["requestId"] == "r2"
    assert got[0]["receivedAt"] == "2023-11-14T22:13:20.000+00:00"
    stats = state.stats()
    assert stats["items_accepted"] == 4 and stats["events_accepted"] == 8
    assert stats["requests_accepted"] == 3 and stats["max_items_per_request"] == 2


@pytest.mark.parametrize("store", [False, True], ids=["memory", "store"])
def test_items_json_pages_across_requests(tmp_path: Path, store: bool) -> None:
    state = SandboxState(store_path=str(tmp_path / "s.jsonl") if store else None)
    for start in range(0, 9, 3):
        accept(state, items(*(f"c{n}" for n in range(start, start + 3))))
    page = orjson.loads(state.items_json(offset=2, limit=5))
    assert [i["customerId"] for i in page] == ["c2", "c3", "c4", "c5", "c6"]
    assert orjson.loads(state.items_json(offset=8)) == [state.items()[8]]
    assert orjson.loads(state.items_json(offset=20)) == []


def test_store_gets_one_line_per_item_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "store.jsonl"
    first = SandboxState(store_path=str(path))
    accept(first, items("a", "b"))
    accept(first, items("c"), endpoint="events")
    lines = path.read_bytes().splitlines()  # flushed before the answer: visible already
    assert [orjson.loads(line)["customerId"] for line in lines] == ["a", "b", "c"]
    first.close()

    second = SandboxState(store_path=str(path))
    assert [i["customerId"] for i in second.items()] == ["a", "b", "c"]
    assert accept(second, items("d")) == 2  # job ids continue after the stored ones
    assert len(path.read_bytes().splitlines()) == 4
    second.close()


def test_a_line_cut_short_by_a_kill_is_skipped_and_not_glued_to(tmp_path: Path) -> None:
    path = tmp_path / "store.jsonl"
    path.write_bytes(b'{"customerId":"a","events":{"x":{}},"jobId":4}\n{"customerId":"b","ev')
    state = SandboxState(store_path=str(path))
    assert [i["customerId"] for i in state.items()] == ["a"]
    assert state.stats()["skipped_store_lines"] == 1
    assert accept(state, items("c")) == 5
    state.close()
    last = path.read_bytes().splitlines()[-1]
    assert orjson.loads(last)["customerId"] == "c"


def test_reset_forgets_everything_but_faults_and_truncates_the_store(tmp_path: Path) -> None:
    path = tmp_path / "store.jsonl"
    state = SandboxState(Faults(latency_ms=5), store_path=str(path))
    accept(state, items("a"))
    state.record("POST", "/x", 200, 1.0, 1, True, "r")
    state.reset()
    assert state.items() == [] and path.read_bytes() == b""
    stats = state.stats()
    assert stats["requests_total"] == 0 and stats["items_accepted"] == 0
    assert stats["arrivals"] == []
    assert state.faults.latency_ms == 5
    assert accept(state, items("b")) == 2  # job numbers are never reused
    state.close()


def test_claims_conflict_only_while_held() -> None:
    state = SandboxState()
    assert state.claim(["a", "b"], exclusive=True) is None
    assert state.claim(["c", "b"], exclusive=True) == "b"
    assert state.claim(["c"], exclusive=True) is None  # the refused claim took nothing
    state.release(["c"])
    state.release(["a", "b"])
    assert state.claim(["b"], exclusive=True) is None
    assert state.stats()["conflicts"] == 1


def test_non_exclusive_claims_count_holders() -> None:
    state = SandboxState()
    assert state.claim(["a"], exclusive=False) is None
    assert state.claim(["a", "a"], exclusive=False) is None  # two requests now hold "a"
    state.release(["a"])
    assert state.claim(["a"], exclusive=True) == "a"  # still held by the other one
    state.release(["a"])
    assert state.claim(["a"], exclusive=True) is None


def test_stall_holds_until_faults_change() -> None:
    clock = Clock()
    state = SandboxState(Faults(stall_seconds=3600), clock=clock)
    held: list[bool] = []
    worker = threading.Thread(target=lambda: held.append(state.hold_while_stalled()))
    worker.start()
    worker.join(timeout=0.2)
    assert worker.is_alive()  # still held: the clock has not moved
    state.set_faults(Faults())  # stall_seconds=0 ends the stall now
    worker.join(timeout=5)
    assert held == [True]
    assert state.hold_while_stalled() is False
    assert state.stats()["stalled"] == 1


def test_stall_ends_with_the_clock() -> None:
    clock = Clock()
    state = SandboxState(clock=clock)
    state.set_faults(Faults(stall_seconds=10))
    clock.now += 10
    assert state.hold_while_stalled() is False


def test_dice_follow_the_seed() -> None:
    first = SandboxState(Faults(seed=3))
    second = SandboxState(Faults(seed=3))
    rolls = [first.roll(0.5) for _ in range(50)]
    assert rolls == [second.roll(0.5) for _ in range(50)]
    assert 5 < sum(rolls) < 45
    assert not any(first.roll(0.0) for _ in range(100))
    assert all(first.roll(1.0) for _ in range(100))


def test_job_failures_name_the_customer() -> None:
    state = SandboxState(Faults(job_fail_customers=["b"]))
    job_id = accept(state, items("a", "b", "c"))
    assert job_id is not None
    job = state.job(job_id)
    assert job is not None and set(job.failures) == {1}
    error = job.failures[1]
    assert error["code"] == 2000 and error["type"] == "Request Error"
    assert "customer b" in error["message"] and error["requestId"] == "r1"


def test_concurrency_high_water_mark() -> None:
    state = SandboxState()
    state.enter(100)
    state.enter(300)
    state.leave()
    state.enter(50)
    state.leave()
    state.leave()
    stats = state.stats()
    assert stats["max_concurrent"] == 2 and stats["in_flight"] == 0
    assert stats["max_body_bytes"] == 300
