"""The `Mapper`: one Kafka record -> events, a skip or an error, over the compiled routes.

Built by the CLI at start-up (`run`, `validate`, `map`); the pipeline calls the function
`for_topic` gives per record, `map --explain` calls `explain`. Pure: no I/O, no clock.
Bad data never raises: it comes back as a `DecodeError`/`MappingError` naming the route.
Semantics: docs/mapping.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from connector.decode import Decoder, decode_json, decoder_for
from connector.mapping.explain import RouteTrace, Tracer
from connector.mapping.routes import FILTERED, Route, RouteInfo, route_names, topic_matches
from connector.mapping_schema import RouteSettings, TopicSettings
from connector.records import (
    ConfigError,
    DecodeError,
    Event,
    MappingError,
    RecordError,
    RecordLike,
    Skip,
)

SKIP_FILTERED = Skip("filtered")
SKIP_TOMBSTONE = Skip("tombstone")
SKIP_UNMATCHED = Skip("unmatched")

_MISSING: Any = object()


def _decode_error(decode: Decoder, raw: bytes | str) -> DecodeError:
    """The decoder's own DecodeError for bytes that failed on the fast path."""
    try:
        decode(raw)
    except DecodeError as err:
        return err
    return DecodeError("decode_failed", "the value could not be decoded")


class Plan:
    """What to do with one topic's records, worked out on the first record of the topic."""

    __slots__ = ("decoders", "many", "one", "pairs", "routes", "row", "single", "unmatched")

    def __init__(
        self,
        routes: list[tuple[Route, Decoder]],
        unmatched: str,
    ) -> None:
        self.pairs = tuple(routes)
        self.routes = tuple(r for r, _ in routes)
        self.decoders = tuple(d for _, d in routes)
        distinct = set(self.decoders)
        self.single: Decoder | None = self.decoders[0] if len(distinct) == 1 else None
        if self.single is decode_json:
            self.single = orjson.loads  # the same result without a wrapper call
        self.unmatched = unmatched
        # One route, one decoder (the common topic): a closure without the route loop.
        self.one: Callable[[RecordLike], Any] | None = None
        # Otherwise: the mapper's loop for this topic, bound (`Mapper.for_topic`).
        self.many: Callable[[RecordLike], Any] | None = None
        # `one` for the pipeline when its route is generated code: the core row itself.
        self.row: Callable[[RecordLike], Any] | None = None

    def unmatched_result(self, topic: str | None) -> Skip | MappingError:
        if self.unmatched == "dead_letter":
            if self.routes:
                detail = f"no route of topic {topic!r} took the record (every 'when' was false)"
            else:
                detail = f"no route is configured for topic {topic!r}"
            return MappingError("unmatched", detail)
        return SKIP_UNMATCHED

    def failed_decode(self, raw: bytes | str, exc: Exception) -> DecodeError:
        """A value `single` could not decode: the decoder's own DecodeError as it is;
        orjson's is worded by the decoder (one more decode, for bad records only)."""
        err = exc if isinstance(exc, DecodeError) else _decode_error(self.decoders[0], raw)
        err.route = self.routes[0].name
        return err


def one_route(plan: Plan, topic: str | None) -> Callable[[RecordLike], Any]:
    """`map` for a topic with one route and one decoder, except that a single event comes
    back bare, not in a list: the pipeline calls it per record (`Mapper.for_topic`)."""
    decode = plan.single
    assert decode is not None and len(plan.routes) == 1
    apply = plan.routes[0].apply
    unmatched = plan.unmatched_result
    failed = plan.failed_decode

    def map_one(record: RecordLike) -> Any:
        raw = record.value()
        if raw is None:
            return SKIP_TOMBSTONE
        try:
            value = decode(raw)
        except Exception as exc:
            return failed(raw, exc)
        out = apply(value, record)
        if out is None:
            return unmatched(topic)
        if out is FILTERED:
            return SKIP_FILTERED
        return out  # an Event or a RecordError

    return map_one


def one_route_rows(plan: Plan, topic: str | None) -> Callable[[RecordLike], Any] | None:
    """`one_route` for the pipeline when the route is generated code: the core row
    instead of the Event, decode and route in one generated function (codegen.py)."""
    make = plan.routes[0].make_map_row
    if make is None:
        return None
    return make(plan.single, plan.failed_decode, lambda: plan.unmatched_result(topic),
                SKIP_TOMBSTONE)


class Mapper:
    """Routes compiled once; `map` turns one record into events, a `Skip` or a `RecordError`.

    Building it is the complete check of the mapping config: it raises `ConfigError`
    with key paths. Not thread-safe: one Mapper per thread that maps.
    """

    def __init__(
        self,
        routes: Sequence[RouteSettings],
        topics: Mapping[str, TopicSettings] | None = None,
        *,
        decoders: Mapping[str, Decoder] | None = None,
        fast_paths: bool = True,
    ) -> None:
        problems: list[str] = []
        self._topics = dict(topics or {})
        self._extra_decoders = dict(decoders or {})
        star = self._topics.get("*", TopicSettings())
        names = route_names(routes, problems)
        self._routes: list[Route] = []
        for i, (name, settings) in enumerate(zip(names, routes, strict=True)):
            where = f"mappings[{i}]"
            own = self._topics.get(settings.topic or "", TopicSettings())
            key_format = settings.key_format or own.key_format or star.key_format or "string"
            try:
                key_decoder = decoder_for(key_format, self._extra_decoders)
            except KeyError:
                problems.append(f"{where}.key_format: no decoder for {key_format!r}")
                key_decoder = decoder_for("string")
            self._routes.append(Route(name, settings, key_decoder, fast_paths, where, problems))
        for topic, ts in self._topics.items():
            if ts.value_format is not None:
                try:
                    decoder_for(ts.value_format, self._extra_decoders)
                except KeyError:
                    problems.append(
                        f"topic_settings.{topic}.value_format: no decoder for {ts.value_format!r}"
                    )
        for i, route in enumerate(self._routes):
            fmt = route.settings.value_format
            if fmt is not None and fmt not in self._extra_decoders:
                try:
                    decoder_for(fmt)
                except KeyError:
                    problems.append(f"mappings[{i}].value_format: no decoder for {fmt!r}")
        if problems:
            raise ConfigError(problems)
        self._plans: dict[str | None, Plan] = {}

    @property
    def route_names(self) -> list[str]:
        return [r.name for r in self._routes]

    def route_info(self) -> list[RouteInfo]:
        """How each route was compiled, in config order (generated code or closures,
        which expressions run on the interpreter, whether metadata is JSON-checked)."""
        return [r.info() for r in self._routes]

    def _plan(self, topic: str | None) -> Plan:
        name = topic or ""
        own = self._topics.get(name, TopicSettings())
        star = self._topics.get("*", TopicSettings())
        chosen: list[tuple[Route, Decoder]] = []
        for route in self._routes:
            s = route.settings
            if s.topic is not None:
                if s.topic != name:
                    continue
            elif s.topic_pattern is None or not topic_matches(s.topic_pattern, name):
                continue
            fmt = s.value_format or own.value_format or star.value_format or "json"
            chosen.append((route, decoder_for(fmt, self._extra_decoders)))
        unmatched = own.unmatched if name in self._topics else star.unmatched
        plan = Plan(chosen, unmatched)
        if plan.single is not None and len(plan.routes) == 1:
            plan.one = one_route(plan, topic)
            plan.row = one_route_rows(plan, topic)
        else:
            run = self._run

            def many(record: RecordLike) -> list[Event] | Skip | RecordError:
                return run(record, plan, None)

            plan.many = many
        self._plans[topic] = plan
        return plan

    def map(self, record: RecordLike) -> list[Event] | Skip | RecordError:
        """Called per record by `redrive` and the `map` dry run (the pipeline takes
        `for_topic`'s function instead); never raises for bad data.

        A record matching several routes yields several events; if any matching route
        fails, the whole record is the error (it goes to the dead-letter topic whole).
        """
        topic = record.topic()
        plan = self._plans.get(topic) or self._plan(topic)
        if plan.one is not None:
            out = plan.one(record)
            return [out] if out.__class__ is Event else out
        return self._run(record, plan, None)

    def for_topic(self, topic: str | None) -> Callable[[RecordLike], Any]:
        """The pipeline's per-record function for one topic: `map`'s result, except that
        a single event comes back bare (no list per record) on a one-route topic, and as
        the core row `(offset, customer_id, name, item JSON)` when
        that route is generated code (connector/mapping/codegen.py)."""
        plan = self._plans.get(topic) or self._plan(topic)
        found = plan.row or plan.one or plan.many
        assert found is not None
        return found

    def explain(
        self, record: RecordLike
    ) -> tuple[list[Event] | Skip | RecordError, list[RouteTrace]]:
        """`map`, plus how every route treated the record (for `map --explain`)."""
        topic = record.topic()
        plan = self._plans.get(topic) or self._plan(topic)
        tracer = Tracer()
        result = self._run(record, plan, tracer)
        return result, tracer.finish(record, self._routes, plan.routes)

    def _run(
        self, record: RecordLike, plan: Plan, tracer: Tracer | None
    ) -> list[Event] | Skip | RecordError:
        """The per-record loop over a topic's routes (`one_route` is its one-route case).

        Each value format is decoded once; with a tracer (`explain`) each route's
        outcome is noted as it goes.
        """
        raw = record.value()
        if raw is None:
            return SKIP_TOMBSTONE
        values: dict[Decoder, Any] | None = None
        single = plan.single
        if single is not None:
            try:
                value = single(raw)
            except Exception as exc:
                err = plan.failed_decode(raw, exc)
                if tracer is not None:
                    tracer.error(plan.routes[0], err)
                return err
        else:
            values = {}
        events: list[Event] = []
        filtered = False
        for route, decode in plan.pairs:
            if values is not None:
                value = values.get(decode, _MISSING)
                if value is _MISSING:
                    try:
                        value = values[decode] = decode(raw)
                    except DecodeError as err:
                        err.route = route.name
                        if tracer is not None:
                            tracer.error(route, err)
                        return err
            out = route.apply(value, record)
            if out is None:
                if tracer is not None:
                    tracer.when_false(route, value, record)
            elif out.__class__ is Event:
                events.append(out)
                if tracer is not None:
                    tracer.event(route, out)
            elif out is FILTERED:
                filtered = True
                if tracer is not None:
                    tracer.filtered(route)
            else:
                if tracer is not None:
                    tracer.error(route, out)
                return out  # type: ignore[no-any-return]
        if events:
            return events
        return SKIP_FILTERED if filtered else plan.unmatched_result(record.topic())
