"""Compile the `mappings` routes into a `Mapper`: one Kafka record -> events, a skip or an
error. Pure: no I/O, no clock. Semantics: docs/mapping.md; modules: docs/architecture.md.

Modules, each owning one part: `envelope` (@key, @headers... values), `paths` (plain
paths as direct lookups), `closures` (the rest of JMESPath as closures), `expressions`
(an expression -> a getter, the interpreter where closures cannot go), `coercion`
(metadata types), `codegen` (the common route shape as one generated function),
`routes` (a compiled route), `mapper` (the per-record loop), `explain` (its tracer).
"""

from connector.mapping.envelope import Getter, envelope_value
from connector.mapping.explain import RouteTrace
from connector.mapping.expressions import compile_getter
from connector.mapping.mapper import SKIP_FILTERED, SKIP_TOMBSTONE, SKIP_UNMATCHED, Mapper
from connector.mapping.routes import RouteInfo

__all__ = [
    "SKIP_FILTERED",
    "SKIP_TOMBSTONE",
    "SKIP_UNMATCHED",
    "Getter",
    "Mapper",
    "RouteInfo",
    "RouteTrace",
    "compile_getter",
    "envelope_value",
]
