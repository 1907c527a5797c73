"""Compile the `mappings` routes into a `Mapper`: one Kafka record -> events, a skip or an error.

Called by the pipeline for every record (`Mapper.map`), and by the `map` dry run. The
mapper is pure: no I/O, no clock; bad data never raises, it comes back as a `RecordError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jmespath
import orjson
from jmespath.exceptions import JMESPathError

from connector.mapping_schema import RouteSettings
from connector.records import (
    ConfigError,
    DecodeError,
    Event,
    MappingError,
    RecordError,
    RecordLike,
    Skip,
)

Getter = Callable[[Any], Any]

SKIP_FILTERED = Skip("filtered")
SKIP_TOMBSTONE = Skip("tombstone")
SKIP_UNMATCHED = Skip("unmatched")


def _plain_path(parsed: dict[str, Any]) -> list[str] | None:
    """The field names of a plain dotted path (`a.b."c-d"`), or None for real JMESPath."""
    kind = parsed["type"]
    if kind == "field":
        return [parsed["value"]]
    if kind == "subexpression":
        out: list[str] = []
        for child in parsed["children"]:
            part = _plain_path(child)
            if part is None:
                return None
            out.extend(part)
        return out
    return None


def _path_getter(keys: list[str]) -> Getter:
    # Direct lookups, specialised by depth: a dict miss or a non-dict is None, as in JMESPath.
    if len(keys) == 1:
        (k1,) = keys

        def get1(v: Any) -> Any:
            try:
                return v[k1]
            except (KeyError, TypeError, IndexError):
                return None

        return get1
    if len(keys) == 2:
        k1, k2 = keys

        def get2(v: Any) -> Any:
            try:
                return v[k1][k2]
            except (KeyError, TypeError, IndexError):
                return None

        return get2

    def getn(v: Any) -> Any:
        try:
            for k in keys:
                v = v[k]
        except (KeyError, TypeError, IndexError):
            return None
        return v

    return getn


def compile_expression(text: str, fast: bool = True) -> Getter:
    """Compile one expression; raise ValueError with a readable reason if it is invalid."""
    try:
        compiled = jmespath.compile(text)
    except JMESPathError as exc:
        raise ValueError(f"invalid JMESPath expression {text!r}: {exc}") from None
    keys = _plain_path(dict(compiled.parsed)) if fast else None
    if keys is not None and all(isinstance(k, str) for k in keys):
        return _path_getter(keys)
    return compiled.search


class _Route:
    __slots__ = ("customer_id", "event", "metadata", "name", "when")

    def __init__(self, name: str, settings: RouteSettings, where: str, problems: list[str]):
        self.name = name
        self.when: Getter | None = None
        self.customer_id: Getter = _none
        self.metadata: list[tuple[str, Getter]] = []
        self.event = settings.event

        def comp(text: str, key: str) -> Getter:
            try:
                return compile_expression(text)
            except ValueError as exc:
                problems.append(f"{where}.{key}: {exc}")
                return _none

        if settings.when is not None:
            self.when = comp(settings.when, "when")
        self.customer_id = comp(settings.customer_id, "customer_id")
        for key, expr in settings.metadata.items():
            self.metadata.append((key, comp(expr, f"metadata.{key}")))

    def apply(self, value: Any, record: RecordLike) -> Event | RecordError | None:
        """One event, None when `when` says no, or the error; never raises for bad data."""
        try:
            when = self.when
            if when is not None and not _truthy(when(value)):
                return None
            cid = _customer_id(self.customer_id(value))
            if cid is None:
                return MappingError(
                    "missing_customer_id",
                    "customer id is missing, null, empty or not a string/number",
                    self.name,
                )
            metadata = {key: get(value) for key, get in self.metadata}
        except JMESPathError as exc:
            return MappingError("expression_failed", str(exc), self.name)
        return Event(cid, self.event, metadata, record)


def _none(_: Any) -> Any:
    return None


def _truthy(result: Any) -> bool:
    # JMESPath truthiness: false, null, empty string/list/object are false.
    return result is not None and result is not False and result != "" and result != [] and (
        result != {}
    )


def _customer_id(raw: Any) -> str | None:
    if isinstance(raw, str):
        return raw if raw.strip() else None
    if isinstance(raw, bool) or raw is None:
        return None
    if isinstance(raw, int):
        return str(raw)
    if isinstance(raw, float):
        return str(int(raw)) if raw.is_integer() else repr(raw)
    return None


class Mapper:
    """Routes compiled once; `map` turns one record into events, a `Skip` or a `RecordError`."""

    def __init__(self, routes: Sequence[RouteSettings]) -> None:
        problems: list[str] = []
        self._by_topic: dict[str, list[_Route]] = {}
        for i, settings in enumerate(routes):
            name = settings.name or f"{settings.topic}.{settings.event}"
            route = _Route(name, settings, f"mappings[{i}]", problems)
            if settings.topic is not None:
                self._by_topic.setdefault(settings.topic, []).append(route)
        if problems:
            raise ConfigError(problems)

    def map(self, record: RecordLike) -> list[Event] | Skip | RecordError:
        """Called by the pipeline per record; never raises for bad data."""
        routes = self._by_topic.get(record.topic() or "")
        raw = record.value()
        if raw is None:
            return SKIP_TOMBSTONE
        if routes is None:
            return SKIP_UNMATCHED
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return DecodeError("invalid_json", str(exc), routes[0].name)
        events: list[Event] = []
        for route in routes:
            out = route.apply(value, record)
            if out is None:
                continue
            if isinstance(out, RecordError):
                return out
            events.append(out)
        return events if events else SKIP_FILTERED
