"""One route compiled: `Route.apply` builds the route's event for a record its topic
already matched, or says why not.

Built by `Mapper` at start-up from validated `RouteSettings`, using the parsed forms the
settings kept (`RouteSettings.expression`); `apply` is called per record per route by the
mapper's loop. Pure; `apply` never raises for data. Semantics: docs/mapping.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import orjson

from connector.decode import Decoder
from connector.mapping.closures import jp_false
from connector.mapping.codegen import MakeMapRow, generated_apply
from connector.mapping.coercion import coercer, kind, scalar_text, short
from connector.mapping.envelope import Getter
from connector.mapping.expressions import compile_expression, may_leave_json
from connector.mapping_schema import FixedEvent, RouteSettings
from connector.records import Event, MappingError, RecordError, RecordLike

FILTERED: Any = object()  # a route took the record and chose to emit nothing


class RouteInfo(NamedTuple):
    """How a route was compiled (`Mapper.route_info`): for tests, `validate` and docs.

    `code`: "generated" (one generated function for the whole route, `codegen`) or
    "closures" (a function over compiled getters); `interpreted`: the expression texts
    that run on the JMESPath interpreter; `checks_json`: metadata is checked per event
    for values JSON cannot carry.
    """

    name: str
    code: str
    interpreted: tuple[str, ...]
    checks_json: bool


class _Field(NamedTuple):
    # A tuple: unpacked in one step in the per-record loop.
    key: str
    getter: Getter | None  # None: a constant
    constant: Any
    default: Any
    coerce: Callable[[Any], Any] | None
    required: bool
    text: str


class Route:
    """One compiled route; `apply(value, record)` returns an Event, None (`when` said
    no), FILTERED, or a RecordError naming the route."""

    def __init__(
        self,
        name: str,
        settings: RouteSettings,
        key_decoder: Decoder,
        fast: bool,
        where: str,
        problems: list[str],
    ) -> None:
        self.name = name
        self.settings = settings

        # Values read from the record are decoded JSON (or text), which JSON carries; a
        # function (sum, floor, to_number of long digits) or a literal can make an integer
        # beyond 64 bits. Metadata from such expressions is checked per event.
        self.check_json = False
        interpreted: list[str] = []

        def comp(text: str, key: str, payload: bool = False) -> Getter:
            try:
                expr = settings.expression(text)
                if payload and may_leave_json(expr.compiled.parsed):
                    self.check_json = True
                getter, slow = compile_expression(expr, key_decoder, fast)
            except ValueError as exc:
                problems.append(f"{where}.{key}: {exc}")
                return lambda v, r: None
            if slow:
                interpreted.append(text)
            return getter

        s = settings
        self.when = comp(s.when, "when") if s.when is not None else None
        self.customer_id = comp(s.customer_id, "customer_id")
        self.event = s.event
        self.event_from = comp(s.event_from, "event_from") if s.event_from is not None else None
        self.event_map = s.event_map
        # `{name: X}` sends event X, even for X = "skip" or "dead_letter".
        fixed = s.event_default
        self.fixed_event = fixed.name if isinstance(fixed, FixedEvent) else None
        self.skip_unmapped = fixed == "skip"

        plain: list[tuple[str, Getter]] = []
        fields: list[_Field] = []
        for key, spec in s.metadata.items():
            if spec.path is not None and spec.is_plain():
                getter = comp(spec.path, f"metadata.{key}", payload=True)
                plain.append((key, getter))
                fields.append(_Field(key, getter, None, None, None, False, spec.path))
            elif spec.path is None:
                fields.append(_Field(key, None, spec.value, None, None, False, ""))
            else:
                getter = comp(spec.path, f"metadata.{key}.path", payload=True)
                coerce = coercer(spec)
                fields.append(
                    _Field(key, getter, None, spec.default, coerce, spec.required, spec.path)
                )
        self.include = [
            comp(text, f"include[{i}]", payload=True) for i, text in enumerate(s.include)
        ]
        self.include_text = list(s.include)
        self.exclude = [tuple(path.split(".")) for path in s.exclude]
        self.drop_nulls = s.drop_nulls
        self.source_key = s.source_key
        # The common shape (only plain expressions, no options) takes a one-line path.
        simple = len(plain) == len(fields) and not (
            self.include or self.exclude or self.drop_nulls or self.source_key
        )
        self.plain: tuple[tuple[str, Getter], ...] | None = tuple(plain) if simple else None
        self.fields = tuple(fields)
        self.interpreted = tuple(interpreted)
        generated = generated_apply(self) if fast else None
        self.code = "closures" if generated is None else "generated"
        self.apply: Callable[[Any, RecordLike], Any] = (
            generated[0] if generated is not None else self._closure_apply())
        # The pipeline's twin of a generated `apply`, made per topic (its decoder): the
        # record in, the core row out, its event encoded.
        self.make_map_row: MakeMapRow | None = generated[1] if generated is not None else None

    def info(self) -> RouteInfo:
        """How this route was compiled (see RouteInfo)."""
        return RouteInfo(self.name, self.code, self.interpreted, self.check_json)

    def _closure_apply(self) -> Callable[[Any, RecordLike], Any]:
        """The per-record function, its parts bound as locals (it runs per record per route).

        It returns an Event, None (`when` said no), FILTERED, or a RecordError, and never
        raises for data.
        """
        when = self.when
        event = self.event
        event_name = self._event_name
        customer_id = self.customer_id
        bad_customer_id = self.bad_customer_id
        build = self._metadata if self.plain is None else plain_builder(self.plain)
        check_json = self.check_json
        route = self.name
        dumps = orjson.dumps
        text_of = scalar_text

        def apply(value: Any, record: RecordLike) -> Any:
            try:
                if when is not None:
                    matched = when(value, record)
                    if matched is not True and jp_false(matched):
                        return None
                name = event
                if name is None:
                    name = event_name(value, record)
                    if name is FILTERED or name.__class__ is MappingError:
                        return name
                raw = customer_id(value, record)
                cid = (raw if raw.strip() else None) if raw.__class__ is str else text_of(raw)
                if not cid:
                    return bad_customer_id(raw)
                metadata = build(value, record)
                if check_json:
                    dumps(metadata)  # TypeError: caught below, the record's fault
                return Event(cid, name, metadata, record)
            except RecordError as err:
                err.route = route
                return err
            except Exception as exc:  # JMESPath type errors and the like: the record's fault
                return MappingError("expression_failed", f"{type(exc).__name__}: {exc}", route)

        return apply

    def bad_customer_id(self, raw: Any) -> MappingError:
        """The error for a customer id that is absent, blank or not a scalar."""
        expr = self.settings.customer_id
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return MappingError(
                "missing_customer_id", f"customer_id {expr!r} is missing, null or empty", self.name
            )
        return MappingError(
            "invalid_customer_id",
            f"customer_id {expr!r} is {kind(raw)}, not a string or number",
            self.name,
        )

    def _event_name(self, value: Any, record: RecordLike) -> Any:
        assert self.event_from is not None
        raw = self.event_from(value, record)
        text: str | None
        if raw is None or raw == "":
            text = None
        elif isinstance(raw, bool):
            text = "true" if raw else "false"
        else:
            text = scalar_text(raw)
            if text is None:
                return MappingError(
                    "invalid_event_name",
                    f"event_from {self.settings.event_from!r} is {kind(raw)}, not a name",
                    self.name,
                )
        if text is not None and not text.strip():
            # Gameball would take "  " as a name; it is a data error of its own kind.
            return MappingError(
                "blank_event_name",
                f"event_from {self.settings.event_from!r} is blank (only whitespace)",
                self.name,
            )
        if text is not None:
            if self.event_map is None:
                return text
            if text in self.event_map:
                mapped = self.event_map[text]
                return FILTERED if mapped is None else mapped
        if self.fixed_event is not None:
            return self.fixed_event
        if self.skip_unmapped:
            return FILTERED
        if text is None:
            return MappingError(
                "missing_event_name",
                f"event_from {self.settings.event_from!r} is missing, null or empty",
                self.name,
            )
        return MappingError(
            "unmapped_event", f"event_from value {short(text)} is not in event_map", self.name
        )

    def _metadata(self, value: Any, record: RecordLike) -> dict[str, Any]:
        metadata: dict[str, Any] = {}
        for i, get in enumerate(self.include):
            obj = get(value, record)
            if obj is None:
                continue
            if not isinstance(obj, dict):
                raise MappingError(
                    "include_not_object",
                    f"include {self.include_text[i]!r} is {kind(obj)}, not an object",
                )
            metadata.update(obj)
        for key, getter, constant, default, coerce, required, text in self.fields:
            if getter is None:
                metadata[key] = constant
                continue
            x = getter(value, record)
            if x is None:
                if required:
                    raise MappingError(
                        "missing_field", f"metadata.{key}: {text!r} is missing or null"
                    )
                x = default
            elif coerce is not None:
                try:
                    x = coerce(x)
                except ValueError as exc:
                    raise MappingError("coercion_failed", f"metadata.{key}: {exc}") from None
            metadata[key] = x
        for path in self.exclude:
            remove(metadata, path)
        if self.drop_nulls:
            metadata = {k: x for k, x in metadata.items() if x is not None}
        if self.source_key is not None:
            metadata[self.source_key] = {
                "topic": record.topic(),
                "partition": record.partition(),
                "offset": record.offset(),
            }
        return metadata


def plain_builder(
    fields: tuple[tuple[str, Getter], ...],
) -> Callable[[Any, RecordLike], dict[str, Any]]:
    """The metadata dict of plain expressions; unrolled for the usual few keys."""
    if not fields:
        return lambda v, r: {}
    if len(fields) == 1:
        ((k1, g1),) = fields
        return lambda v, r: {k1: g1(v, r)}
    if len(fields) == 2:
        (k1, g1), (k2, g2) = fields
        return lambda v, r: {k1: g1(v, r), k2: g2(v, r)}
    if len(fields) == 3:
        (k1, g1), (k2, g2), (k3, g3) = fields
        return lambda v, r: {k1: g1(v, r), k2: g2(v, r), k3: g3(v, r)}
    if len(fields) == 4:
        (k1, g1), (k2, g2), (k3, g3), (k4, g4) = fields
        return lambda v, r: {k1: g1(v, r), k2: g2(v, r), k3: g3(v, r), k4: g4(v, r)}
    return lambda v, r: {key: get(v, r) for key, get in fields}


def remove(metadata: dict[str, Any], path: tuple[str, ...]) -> None:
    # Nested objects may be shared with the decoded value (and other routes' events):
    # copy each level before removing from it.
    node = metadata
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            return
        child = dict(child)
        node[part] = child
        node = child
    node.pop(path[-1], None)


def topic_matches(pattern: str, topic: str) -> bool:
    return re.fullmatch(pattern, topic) is not None


def route_names(routes: Sequence[RouteSettings], problems: list[str]) -> list[str]:
    """Explicit names must be unique; derived ones (`topic/event`) get `#index` if they clash."""
    explicit: dict[str, int] = {}
    for i, r in enumerate(routes):
        if r.name is None:
            continue
        if r.name in explicit:
            problems.append(
                f"mappings[{i}].name: duplicate route name {r.name!r} "
                f"(also mappings[{explicit[r.name]}])"
            )
        else:
            explicit[r.name] = i
    derived = [
        r.name or f"{r.topic_label()}/{r.event if r.event is not None else r.event_from}"
        for r in routes
    ]
    counts: dict[str, int] = {}
    for name in derived:
        counts[name] = counts.get(name, 0) + 1
    unique = [
        r.name is not None or (counts[name] == 1 and name not in explicit)
        for name, r in zip(derived, routes, strict=True)
    ]
    return [
        name if ok else f"{name}#{i}"
        for i, (name, ok) in enumerate(zip(derived, unique, strict=True))
    ]
