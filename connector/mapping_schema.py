"""The mapping section of the config: routes from Kafka records to Gameball events.

Validated by pydantic when the config loads (so `validate` reports key paths); compiled
into a fast `Mapper` by `connector.mapping`. The expression syntax lives here too, so a
bad expression is a config error found at load time. Reference: docs/mapping.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PrivateAttr,
    field_validator,
    model_validator,
)

if TYPE_CHECKING:  # jmespath is imported when a config has expressions, not with the types
    from jmespath.parser import ParsedResult

# Formats a value or key can be decoded from. The Schema Registry ones (avro, protobuf,
# json_schema) are decoded by `connector.registry`, injected into the Mapper.
ValueFormat = Literal["json", "string", "bytes-base64", "avro", "protobuf", "json_schema"]
CoerceType = Literal["string", "number", "integer", "boolean", "timestamp"]

# The record's envelope, addressed as `@key`, `@headers.name`, `@topic`, ...
ENVELOPE_FIELDS = ("key", "headers", "topic", "partition", "offset", "timestamp")
# Internal JMESPath function an envelope reference is rewritten to (not for users).
ENVELOPE_FUNCTION = "_gb_envelope"


@cache
def _builtin_functions() -> frozenset[str]:
    from jmespath.functions import Functions

    return frozenset(Functions.FUNCTION_TABLE)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- expressions --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Expression:
    """A checked expression: the user's text and the compiled JMESPath it became."""

    text: str
    compiled: ParsedResult
    envelope: frozenset[str]  # envelope fields it reads ({"key", "headers"}, ...)


def _rewrite_envelope(text: str) -> str:
    """Replace `@name` (outside literals) with an envelope function call.

    `@` directly followed by a letter is not valid JMESPath, so the syntax cannot clash
    with a real expression; `@` alone and `@.x` keep their JMESPath meaning.
    """
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "'\"`":  # raw string, quoted identifier, JSON literal: copy verbatim
            j = i + 1
            while j < n and text[j] != ch:
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
            continue
        if ch == "@" and i + 1 < n and (text[i + 1].isalpha() or text[i + 1] == "_"):
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            name = text[i + 1 : j]
            if name not in ENVELOPE_FIELDS:
                known = ", ".join("@" + f for f in ENVELOPE_FIELDS)
                raise ValueError(f"unknown envelope field @{name} (known: {known})")
            out.append(f"{ENVELOPE_FUNCTION}('{name}')")
            i = j
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def ast_nodes(node: Any) -> Iterator[dict[str, Any]]:
    """Every node of a parsed JMESPath expression, depth first (slices' children are
    plain values, not nodes: skipped)."""
    if isinstance(node, dict):
        yield node
        for child in node.get("children", ()):
            yield from ast_nodes(child)


def _function_names(node: Any) -> set[str]:
    return {n["value"] for n in ast_nodes(node) if n.get("type") == "function_expression"}


def _envelope_fields(node: Any) -> set[str]:
    """The fields the envelope calls of a parsed expression read.

    A rewritten `@name` is always `_gb_envelope('name')`; a hand-written call must be
    the same (one literal field name), else ValueError.
    """
    fields: set[str] = set()
    for call in ast_nodes(node):
        if call.get("type") != "function_expression" or call["value"] != ENVELOPE_FUNCTION:
            continue
        children = call.get("children", ())
        arg = children[0] if len(children) == 1 else {}
        if arg.get("type") != "literal" or arg["value"] not in ENVELOPE_FIELDS:
            names = ", ".join(repr(f) for f in ENVELOPE_FIELDS)
            raise ValueError(f"{ENVELOPE_FUNCTION}() takes one of {names} (write @name)")
        fields.add(arg["value"])
    return fields


@lru_cache(maxsize=4096)
def parse_expression(text: str) -> Expression:
    """Check and compile one expression; raise ValueError with a one-line reason.

    Cached by text (an Expression is immutable): the field validators parse, and
    `RouteSettings.expression` hands the mapper that same object, so each text is
    parsed once per process.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("expression is empty")
    import jmespath
    from jmespath.exceptions import JMESPathError

    rewritten = _rewrite_envelope(text)
    try:
        compiled = jmespath.compile(rewritten)
    except JMESPathError as exc:
        reason = str(exc).splitlines()[0].removesuffix(", for expression:").rstrip(":")
        reason = reason.removeprefix("Invalid jmespath expression: ")
        raise ValueError(f"invalid expression {text!r}: {reason}") from None
    for fn in _function_names(compiled.parsed) - _builtin_functions() - {ENVELOPE_FUNCTION}:
        raise ValueError(f"invalid expression {text!r}: unknown function {fn}()")
    try:
        used = _envelope_fields(compiled.parsed)
    except ValueError as exc:
        raise ValueError(f"invalid expression {text!r}: {exc}") from None
    return Expression(text, compiled, frozenset(used))


def _check_expression(value: str | None) -> str | None:
    if value is not None:
        parse_expression(value)
    return value


# --- routes -------------------------------------------------------------------------


def check_regex(value: str | None) -> str | None:
    """Pydantic validator for `topic_pattern` keys (routes and `kafka.topic_pattern`)."""
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


class MetadataField(_Model):
    """One metadata value: an expression (`path`, also the short string form) or a constant."""

    path: str | None = Field(default=None, description="expression for the value")
    value: JsonValue = Field(default=None, description="a constant instead of a path")
    default: JsonValue = Field(default=None, description="used when the path gives null")
    type: CoerceType | None = None
    unit: Literal["auto", "s", "ms", "us"] = "auto"
    required: bool = False

    _check_path = field_validator("path")(_check_expression)

    @model_validator(mode="after")
    def _one_source(self) -> MetadataField:
        has_value = "value" in self.model_fields_set
        if (self.path is None) == (not has_value):
            raise ValueError("give exactly one of 'path' (an expression) or 'value' (a constant)")
        if has_value and ({"default", "type", "required"} & self.model_fields_set):
            raise ValueError("a constant 'value' takes no 'default', 'type' or 'required'")
        if "unit" in self.model_fields_set and self.type != "timestamp":
            raise ValueError("'unit' applies only to type: timestamp")
        try:
            orjson.dumps([self.value, self.default])
        except TypeError as exc:  # e.g. an integer beyond 64 bits
            raise ValueError(f"constant cannot be sent as JSON: {exc}") from None
        return self

    def is_plain(self) -> bool:
        """Only a path, no options: the value goes into metadata exactly as found."""
        return self.path is not None and not (
            {"default", "type", "required", "unit"} & self.model_fields_set
        )


class FixedEvent(_Model):
    """`event_default: {name: X}`: unmapped values become event X."""

    name: str = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("event name is blank")
        return value


class RouteSettings(_Model):
    """One route: which records it takes and how it builds one event from each."""

    name: str | None = Field(default=None, min_length=1)
    topic: str | None = Field(default=None, min_length=1)
    topic_pattern: str | None = Field(default=None, min_length=1)
    when: str | None = None
    value_format: ValueFormat | None = None
    key_format: ValueFormat | None = None
    customer_id: str
    event: str | None = Field(default=None, min_length=1)
    event_from: str | None = None
    event_map: dict[str, str | None] | None = None
    event_default: Literal["skip", "dead_letter"] | FixedEvent | None = None
    metadata: dict[str, MetadataField] = Field(default_factory=dict)
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    drop_nulls: bool = False
    source_key: str | None = Field(default=None, min_length=1)

    _check_expr = field_validator("when", "customer_id", "event_from")(_check_expression)
    # Every expression text of the route -> its parsed form, kept from validation for
    # the mapper (`expression`); filled by `_consistent`.
    _expressions: dict[str, Expression] = PrivateAttr(default_factory=dict)

    _check_regex = field_validator("topic_pattern")(check_regex)

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata_shapes(cls, value: Any) -> Any:
        # A plain string is short for {path: <string>}; anything else must be the long
        # form. Done here so errors read `metadata.<key>.path: ...`, not union noise.
        if not isinstance(value, dict):
            return value
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"metadata keys must be non-empty strings, got {key!r}")
            if isinstance(item, str):
                item = {"path": item}
            elif not isinstance(item, dict):
                raise ValueError(
                    f"{key}: must be an expression string or a mapping "
                    "{path|value, default, type, unit, required}"
                )
            out[key] = item
        return out

    @field_validator("event_default", mode="before")
    @classmethod
    def _event_default_shape(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in ("skip", "dead_letter"):
            raise ValueError(
                f"must be 'skip', 'dead_letter' or {{name: <event name>}}, got {value!r}"
            )
        return value

    @field_validator("include")
    @classmethod
    def _include_expressions(cls, value: list[str]) -> list[str]:
        for item in value:
            parse_expression(item)
        return value

    @field_validator("exclude")
    @classmethod
    def _exclude_paths(cls, value: list[str]) -> list[str]:
        for item in value:
            if not item or any(not part for part in item.split(".")):
                raise ValueError(f"exclude entries are dotted metadata keys, got {item!r}")
        return value

    @field_validator("event_map")
    @classmethod
    def _event_names(cls, value: dict[str, str | None] | None) -> dict[str, str | None] | None:
        for source, name in (value or {}).items():
            if name is not None and not name.strip():
                raise ValueError(f"{source}: event name is empty (use null to skip it)")
        return value

    @field_validator("event")
    @classmethod
    def _event_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("event name is blank")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RouteSettings:
        if (self.topic is None) == (self.topic_pattern is None):
            raise ValueError("a route needs exactly one of 'topic' or 'topic_pattern'")
        if (self.event is None) == (self.event_from is None):
            raise ValueError("a route needs exactly one of 'event' (a name) or 'event_from'")
        if self.event is not None and (self.event_map is not None or self.event_default):
            raise ValueError("'event_map' and 'event_default' need 'event_from', not 'event'")
        texts = [self.when, self.customer_id, self.event_from, *self.include]
        texts += [spec.path for spec in self.metadata.values()]
        # The field validators parsed each text already: these are cache hits.
        self._expressions = {t: parse_expression(t) for t in texts if t is not None}
        return self

    def expression(self, text: str) -> Expression:
        """The parsed form of one of this route's expression texts, as validation made it.

        Called by `connector.mapping` when it compiles the route; a text the route does
        not hold (a copy changed after validation) is parsed here, ValueError if bad.
        """
        found = self._expressions.get(text)
        return found if found is not None else parse_expression(text)

    def topic_label(self) -> str:
        """The topic or pattern, for derived route names and messages."""
        return self.topic if self.topic is not None else str(self.topic_pattern)


class TopicSettings(_Model):
    """Per-topic options (`topic_settings: {name or "*": ...}`); a route's own option wins."""

    value_format: ValueFormat | None = None
    key_format: ValueFormat | None = None
    unmatched: Literal["skip", "dead_letter"] = "skip"


def route_subscription(routes: list[RouteSettings]) -> list[str]:
    """What to subscribe to when `kafka.topics`/`topic_pattern` are empty: the routes' topics.

    Called by `Settings.subscription`; any `topic_pattern` route turns the whole list
    into one anchored regex, as librdkafka takes a regex subscription with a leading `^`.
    """
    names = sorted({r.topic for r in routes if r.topic is not None})
    patterns = [r.topic_pattern for r in routes if r.topic_pattern is not None]
    if not patterns:
        return names
    parts = [re.escape(n) for n in names] + [f"(?:{p})" for p in patterns]
    return ["^(?:" + "|".join(parts) + ")$"]
