"""How routes are compiled: each expression parsed once (at validation, kept with the
settings), the interpreter only where the fast path cannot go (`Mapper.route_info`)."""

from __future__ import annotations

from typing import Any

import jmespath
import orjson
import pytest

from connector.mapping import Mapper
from connector.mapping_schema import RouteSettings, parse_expression
from connector.records import Event, SourceRecord

ROUTE: dict[str, Any] = {
    "topic": "t",
    "when": "kind == 'order'",
    "customer_id": "customer.id",
    "event": "place_order",
    "metadata": {
        "amount": {"path": "total", "type": "number"},
        "skus": "items[].sku",
        "first": "sort_by(items, &price)[0].sku",
    },
    "include": ["extra"],
}
VALUE = {
    "kind": "order",
    "customer": {"id": "c1"},
    "total": "12.5",
    "items": [{"sku": "b", "price": 2}, {"sku": "a", "price": 1}],
    "extra": {"note": "hi"},
}
EXPECTED = {"note": "hi", "amount": 12.5, "skus": ["b", "a"], "first": "a"}


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("an expression was parsed again after validation")


def test_a_mapper_compiles_the_parsed_forms_validation_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = RouteSettings.model_validate(ROUTE)
    # From here on, parsing is an error: the mapper must use what validation parsed.
    parse_expression.cache_clear()
    monkeypatch.setattr(jmespath, "compile", _refuse)
    for fast in (True, False):
        mapper = Mapper([settings], fast_paths=fast)
        (event,) = mapper.map(SourceRecord("t", orjson.dumps(VALUE)))  # type: ignore[misc]
        assert isinstance(event, Event)
        assert (event.customer_id, event.name, event.metadata) == ("c1", "place_order", EXPECTED)


def test_validation_keeps_one_parsed_form_per_expression_text() -> None:
    settings = RouteSettings.model_validate(ROUTE)
    again = RouteSettings.model_validate(ROUTE)
    for text in ("kind == 'order'", "customer.id", "total", "items[].sku", "extra"):
        assert settings.expression(text) is again.expression(text) is parse_expression(text)


def test_only_what_the_fast_path_cannot_take_runs_on_the_interpreter() -> None:
    settings = RouteSettings.model_validate(ROUTE)
    (fast,) = Mapper([settings]).route_info()
    assert fast.interpreted == ("sort_by(items, &price)[0].sku",)
    assert fast.code == "closures"  # typed metadata and include: not the generated shape
    (slow,) = Mapper([settings], fast_paths=False).route_info()
    assert set(slow.interpreted) == {
        "kind == 'order'",
        "customer.id",
        "total",
        "items[].sku",
        "sort_by(items, &price)[0].sku",
        "extra",
    }


def test_explain_traces_the_same_outcome_the_loop_returns() -> None:
    two = [
        RouteSettings.model_validate(ROUTE),
        RouteSettings.model_validate({**ROUTE, "name": "other", "when": "kind == 'refund'"}),
    ]
    mapper = Mapper(two)
    record = SourceRecord("t", orjson.dumps(VALUE))
    result, trace = mapper.explain(record)
    assert isinstance(result, list) and [e.metadata for e in result] == [EXPECTED]
    assert [(t.outcome, t.detail) for t in trace] == [
        ("event", "place_order"),
        ("when_false", "when \"kind == 'refund'\" gave False"),
    ]
