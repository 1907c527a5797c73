"""bench.dataset: the benchmark's fixed data set (seeded orders of about 250 bytes)."""

from __future__ import annotations

import orjson

from bench.dataset import records
from bench.mapping_bench import BENCH_ROUTE
from connector.mapping import Mapper
from connector.mapping_schema import RouteSettings
from connector.records import Event, SourceRecord


def test_same_seed_same_records() -> None:
    whole = records(3000, 500, seed=7)
    assert records(3000, 500, seed=7) == whole
    assert records(3000, 500, seed=8) != whole


def test_orders_of_about_250_bytes_over_every_customer() -> None:
    data = records(20_000, 500, seed=20240601)
    sizes = [len(value) for _, value in data]
    assert 230 <= sum(sizes) / len(sizes) <= 290
    assert {customer for customer, _ in data} == set(range(500))
    ids = set()
    for customer, value in data:
        order = orjson.loads(value)
        assert order["type"] == "order_placed"
        assert order["customer"]["id"] == f"cust-{customer:05d}"
        ids.add(order["id"])
    assert len(ids) == len(data)


def test_every_record_maps_to_one_event_with_the_benchmark_route() -> None:
    mapper = Mapper([RouteSettings.model_validate({**BENCH_ROUTE, "topic": "orders"})])
    for i, (customer, value) in enumerate(records(2000, 100, seed=3)):
        out = mapper.map(SourceRecord("orders", value, offset_=i))
        assert isinstance(out, list) and len(out) == 1 and isinstance(out[0], Event)
        assert out[0].customer_id == f"cust-{customer:05d}"
        assert set(out[0].metadata) == {"order_id", "amount"}
