"""`map --explain`: how every route treated one record.

The mapper runs its one per-record loop (`Mapper._run`) with a `Tracer`; the tracer
notes each route's outcome as the loop goes, then `finish` adds the routes the loop
never tried (another topic, or not reached). Called by `Mapper.explain` only. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from connector.mapping.coercion import short
from connector.mapping.routes import Route
from connector.records import Event, RecordError, RecordLike


@dataclass(frozen=True, slots=True)
class RouteTrace:
    """How one route treated one record (for `map --explain`)."""

    route: str
    outcome: str  # event, when_false, topic, filtered, error, not_reached
    detail: str


class Tracer:
    """Notes, route by route, what the mapper's loop did with one record."""

    def __init__(self) -> None:
        self.traces: list[RouteTrace] = []

    def when_false(self, route: Route, value: Any, record: RecordLike) -> None:
        # Evaluated again here, for its value: only --explain pays for it.
        assert route.settings.when is not None and route.when is not None
        got = short(route.when(value, record))
        why = f"when {route.settings.when!r} gave {got}"
        self.traces.append(RouteTrace(route.name, "when_false", why))

    def event(self, route: Route, event: Event) -> None:
        self.traces.append(RouteTrace(route.name, "event", event.name))

    def filtered(self, route: Route) -> None:
        why = "event_map/event_default chose to skip this event name"
        self.traces.append(RouteTrace(route.name, "filtered", why))

    def error(self, route: Route, err: RecordError) -> None:
        self.traces.append(RouteTrace(route.name, "error", f"{err.reason}: {err.detail}"))

    def finish(
        self, record: RecordLike, routes: Sequence[Route], tried: Sequence[Route]
    ) -> list[RouteTrace]:
        """Every route's trace in config order: `routes` all of them, `tried` the ones
        of the record's topic (the loop may have stopped before some)."""
        seen = {t.route for t in self.traces}
        topic = record.topic()
        for route in routes:
            if route.name in seen:
                continue
            if route in tried:
                why = "a tombstone has no value" if record.value() is None else "not reached"
                self.traces.append(RouteTrace(route.name, "not_reached", why))
            else:
                s = route.settings
                want = f"{s.topic!r}" if s.topic is not None else f"pattern {s.topic_pattern!r}"
                self.traces.append(
                    RouteTrace(route.name, "topic", f"topic {topic!r} is not {want}")
                )
        order = {route.name: i for i, route in enumerate(routes)}
        return sorted(self.traces, key=lambda t: order[t.route])
