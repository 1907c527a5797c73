"""A route's `apply` written out as one generated function, for the commonest shape.

The shape: a literal `event`, an optional `when: path == 'text'`, and only plain value
paths for customer_id and metadata (no envelope, no options). Written out as Python
source (as dataclasses writes `__init__`) it makes no call per expression, which halves
the per-record cost of such a route against the closures (measured: docs/mapping.md).
Names and keys enter the source only through repr(), so config text cannot become code.
Its twin `map_row` (made per topic by `make_map_row`, given the topic's decoder) is what
the pipeline calls per record: the decode and the same lookups in one function, ending
in the core row with the event already encoded (`Mapper.for_topic`). Called by `Route`
when it is compiled; None for any other shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from connector.event_json import item_json
from connector.mapping.coercion import scalar_text
from connector.mapping.envelope import LOOKUP_ERRORS
from connector.mapping.paths import plain_path
from connector.records import EncodeError, Event, MappingError, RecordError, RecordLike

if TYPE_CHECKING:
    from connector.mapping.routes import Route


# make_map_row(decode, failed, unmatched, tombstone) -> map_row(record)
MakeMapRow = Callable[[Any, Any, Any, Any], Callable[[RecordLike], Any]]
Generated = tuple[Callable[[Any, RecordLike], Any], MakeMapRow]


def generated_apply(route: Route) -> Generated | None:
    """`route.apply` as one generated function, and `route.make_map_row`, which makes its
    twin for the pipeline, or None when the route has another shape. The twin,
    `map_row(record)`, decodes the record's value with the topic's `decode` and returns
    the core row itself, `(offset, customer_id, name, item JSON)`,
    its event encoded by connector/event_json.py's `item_json` (an `EncodeError` when it
    has no JSON form): no `Event` and no metadata dict outlive the call. What `decode`
    raises goes to `failed(raw, exc)`, a `when` that says no to `unmatched()`, a
    tombstone is `tombstone`."""
    s = route.settings
    if s.event is None or route.plain is None or route.check_json:
        return None

    def path_of(text: str) -> list[str] | None:
        plain = plain_path(dict(s.expression(text).compiled.parsed))
        return plain[1] if plain is not None and plain[0] is None and plain[1] else None

    cid_path = path_of(s.customer_id)
    field_paths = [(key, path_of(f.path or "")) for key, f in s.metadata.items()]
    if cid_path is None or any(p is None for _, p in field_paths):
        return None
    when_path: list[str] | None = None
    when_text = ""
    if s.when is not None:
        node: dict[str, Any] = dict(s.expression(s.when).compiled.parsed)
        kids: list[dict[str, Any]] = node.get("children", [])
        if not (
            node["type"] == "comparator"
            and node["value"] == "eq"
            and kids[1]["type"] == "literal"
            and isinstance(kids[1]["value"], str)
        ):
            return None
        plain = plain_path(kids[0])
        if plain is None or plain[0] is not None or not plain[1]:
            return None
        when_path, when_text = plain[1], kids[1]["value"]

    def index(path: list[str]) -> str:
        return "".join(f"[{k!r}]" for k in path)

    def when(no: str) -> list[str]:
        """The `when` test, returning `no` when it says no (apply: None; map_row: the
        topic's unmatched result)."""
        if when_path is None:
            return []
        return [
            "        try:",
            f"            if value{index(when_path)} != {when_text!r}:",
            f"                return {no}",
            "        except _LOOKUP_ERRORS:",
            f"            return {no}",
        ]

    lines = [
        "        try:",
        f"            raw = value{index(cid_path)}",
        "        except _LOOKUP_ERRORS:",
        "            raw = None",
        "        if raw.__class__ is str:",
        "            if not raw.strip():",
        "                return bad_customer_id(raw)",
        "            cid = raw",
        "        else:",
        "            cid = scalar_text(raw)",
        "            if not cid:",
        "                return bad_customer_id(raw)",
    ]
    for i, (_, path) in enumerate(field_paths):
        assert path is not None
        lines += [
            "        try:",
            f"            m{i} = value{index(path)}",
            "        except _LOOKUP_ERRORS:",
            f"            m{i} = None",
        ]
    body = ", ".join(f"{key!r}: m{i}" for i, (key, _) in enumerate(field_paths))
    caught = [
        "    except RecordError as err:",
        "        err.route = route",
        "        return err",
        "    except Exception as exc:",
        '        detail = f"{type(exc).__name__}: {exc}"',
        '        return MappingError("expression_failed", detail, route)',
    ]
    event = [f"        return Event(cid, {s.event!r}, {{{body}}}, record)"]
    row = [
        "        try:",
        f"            payload = _item_json(cid, {s.event!r}, {{{body}}})",
        "        except _ENCODE_ERRORS as exc:",
        '            return EncodeError("unencodable", str(exc))',
        f"        return (record.offset(), cid, {s.event!r}, payload)",
    ]

    def nested(block: list[str]) -> list[str]:
        return ["    " + line for line in block]

    source = ["def apply(value, record):", "    try:", *when("None"), *lines, *event, *caught,
              "def make_map_row(_decode, _failed, _unmatched, _tombstone):",
              "    def map_row(record):",
              "        data = record.value()",
              "        if data is None:",
              "            return _tombstone",
              "        try:",
              "            value = _decode(data)",
              "        except Exception as exc:",
              "            return _failed(data, exc)",
              *nested(["    try:", *when("_unmatched()"), *lines, *row, *caught]),
              "    return map_row"]
    namespace: dict[str, Any] = {
        "_LOOKUP_ERRORS": LOOKUP_ERRORS,
        "_ENCODE_ERRORS": (TypeError, ValueError),  # orjson.JSONEncodeError is a TypeError
        "_item_json": item_json,  # the request item's one definition
        "Event": Event,
        "EncodeError": EncodeError,
        "RecordError": RecordError,
        "MappingError": MappingError,
        "bad_customer_id": route.bad_customer_id,
        "scalar_text": scalar_text,
        "route": route.name,
    }
    exec(compile("\n".join(source), f"<route {route.name}>", "exec"), namespace)
    return namespace["apply"], namespace["make_map_row"]
