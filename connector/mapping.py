"""Compile the `mappings` routes into a `Mapper`: one Kafka record -> events, a skip or an error.

Called by the pipeline for every record (`Mapper.map`) and by the `map` dry run
(`Mapper.explain`). Pure: no I/O, no clock. Bad data never raises: it comes back as a
`DecodeError`/`MappingError` naming the route. Semantics: docs/mapping.md.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import jmespath
import orjson
from jmespath.functions import Functions, signature

from connector.decode import Decoder, decode_json, decoder_for
from connector.mapping_schema import (
    ENVELOPE_FUNCTION,
    Expression,
    FixedEvent,
    MetadataField,
    RouteSettings,
    TopicSettings,
    ast_nodes,
    parse_expression,
)
from connector.records import (
    ConfigError,
    DecodeError,
    Event,
    MappingError,
    RecordError,
    RecordLike,
    Skip,
)

# Compiled expression: (decoded value, record) -> result; None when absent, as in JMESPath.
Getter = Callable[[Any, RecordLike], Any]

SKIP_FILTERED = Skip("filtered")
SKIP_TOMBSTONE = Skip("tombstone")
SKIP_UNMATCHED = Skip("unmatched")

_FILTERED: Any = object()  # a route took the record and chose to emit nothing
_MISSING: Any = object()
_LOOKUP_ERRORS = (KeyError, TypeError, IndexError)
_NUMBERS = (int, float)  # a tuple: `int | float` would build a union object per call


# --- the envelope: @key, @headers, @topic, @partition, @offset, @timestamp --------------


def _header_text(raw: bytes | str | None) -> str | None:
    # Header values are bytes; unrelated binary headers must not fail a record.
    if raw is None or isinstance(raw, str):
        return raw
    return raw.decode("utf-8", "replace")


def _header(record: RecordLike, name: str) -> str | None:
    headers = record.headers()
    if headers:
        for key, raw in reversed(headers):  # the last header of a name wins
            if key == name:
                return _header_text(raw)
    return None


def _all_headers(record: RecordLike) -> dict[str, str | None]:
    return {key: _header_text(raw) for key, raw in record.headers() or ()}


def _key(record: RecordLike, decode: Decoder) -> Any:
    raw = record.key()
    if raw is None:
        return None
    try:
        return decode(raw)
    except DecodeError as err:
        raise DecodeError("invalid_key", f"record key: {err.detail}") from None


def _timestamp(record: RecordLike) -> int | None:
    kind, ms = record.timestamp()
    return ms if kind != 0 else None  # 0 = TIMESTAMP_NOT_AVAILABLE


def envelope_value(record: RecordLike, name: str, key_decoder: Decoder) -> Any:
    """The value of `@name` for one record (see ENVELOPE_FIELDS)."""
    if name == "key":
        return _key(record, key_decoder)
    if name == "headers":
        return _all_headers(record)
    if name == "timestamp":
        return _timestamp(record)
    if name == "topic":
        return record.topic()
    if name == "partition":
        return record.partition()
    if name == "offset":
        return record.offset()
    raise ValueError(f"unknown envelope field {name!r}")  # parse_expression rules it out


class _EnvelopeFunctions(Functions):
    """Gives real JMESPath expressions the envelope; `record` is set before each search."""

    def __init__(self, key_decoder: Decoder) -> None:
        super().__init__()
        self.key_decoder = key_decoder
        self.record: RecordLike | None = None

    @signature({"types": ["string"]})
    def _func__gb_envelope(self, name: str) -> Any:
        assert self.record is not None
        return envelope_value(self.record, name, self.key_decoder)


# --- compiling expressions -----------------------------------------------------------


def _chain(node: dict[str, Any]) -> list[dict[str, Any]] | None:
    if node["type"] == "subexpression":
        out: list[dict[str, Any]] = []
        for child in node["children"]:
            part = _chain(child)
            if part is None:
                return None
            out.extend(part)
        return out
    if node["type"] in ("field", "current", "function_expression"):
        return [node]
    return None


def _plain(parsed: dict[str, Any]) -> tuple[str | None, list[str]] | None:
    """(envelope field or None, field names) for a plain path, None for real JMESPath."""
    chain = _chain(parsed)
    if not chain:
        return None
    root: str | None = None
    first = chain[0]
    if first["type"] == "function_expression":
        args = first["children"]
        if first["value"] != ENVELOPE_FUNCTION or len(args) != 1:
            return None
        root = args[0]["value"]
        chain = chain[1:]
    elif first["type"] == "current":
        chain = chain[1:]
    if any(n["type"] != "field" for n in chain):
        return None
    return root, [n["value"] for n in chain]


def _walk(v: Any, keys: Sequence[str]) -> Any:
    try:
        for k in keys:
            v = v[k]
    except _LOOKUP_ERRORS:
        return None
    # A list/str indexed by a name raises TypeError above; a dict miss is None, as in JMESPath.
    return v


def _value_path(keys: list[str]) -> Getter:
    # Specialised by depth: these run several times per record on the hot path.
    if not keys:
        return lambda v, r: v
    if len(keys) == 1:
        (k1,) = keys

        def get1(v: Any, r: RecordLike) -> Any:
            try:
                return v[k1]
            except _LOOKUP_ERRORS:
                return None

        return get1
    if len(keys) == 2:
        k1, k2 = keys

        def get2(v: Any, r: RecordLike) -> Any:
            try:
                return v[k1][k2]
            except _LOOKUP_ERRORS:
                return None

        return get2
    if len(keys) == 3:
        k1, k2, k3 = keys

        def get3(v: Any, r: RecordLike) -> Any:
            try:
                return v[k1][k2][k3]
            except _LOOKUP_ERRORS:
                return None

        return get3
    return lambda v, r: _walk(v, keys)


def _envelope_path(root: str, keys: list[str], key_decoder: Decoder) -> Getter:
    if root == "headers" and keys:
        name, rest = keys[0], keys[1:]
        if not rest:
            return lambda v, r: _header(r, name)
        return lambda v, r: _walk(_header(r, name), rest)
    if root == "key":
        if not keys:
            return lambda v, r: _key(r, key_decoder)
        return lambda v, r: _walk(_key(r, key_decoder), keys)
    if root == "topic" and not keys:
        return lambda v, r: r.topic()
    if root == "partition" and not keys:
        return lambda v, r: r.partition()
    if root == "offset" and not keys:
        return lambda v, r: r.offset()
    if root == "timestamp" and not keys:
        return lambda v, r: _timestamp(r)
    return lambda v, r: _walk(envelope_value(r, root, key_decoder), keys)


# --- a closure compiler for JMESPath -------------------------------------------------
# The interpreter walks the AST on every search (5-15 us for `type == 'x'`). Each node
# becomes a closure here instead, with the interpreter's exact semantics (visitor.py of
# jmespath 1.x, checked against it by tests/unit/test_mapping_properties.py). Nodes it
# does not know (expref: `sort_by(a, &b)`) leave the whole expression to the interpreter.

_FUNCTIONS = Functions()


def _jp_false(x: Any) -> bool:
    return x == "" or x == [] or x == {} or x is None or x is False


def _number(x: Any) -> bool:
    return isinstance(x, _NUMBERS) and not isinstance(x, bool)


def _jp_equals(x: Any, y: Any) -> bool:
    # 0/1 never equal false/true in JMESPath, although they do in Python.
    if _number(x) and x in (0, 1):
        if isinstance(y, bool):
            return False
    elif _number(y) and y in (0, 1) and isinstance(x, bool):
        return False
    return bool(x == y)


def _equals_literal(lit: Any) -> Callable[[Any], bool] | None:
    """`x == lit` with JMESPath's rules, specialised for a scalar literal; None otherwise."""
    if isinstance(lit, str):
        return lambda x: x == lit  # no 0/1-vs-bool case can arise with a string
    if lit is None or isinstance(lit, bool):
        return lambda x: x is lit  # only null is null; 1 and 1.0 never equal true
    if isinstance(lit, _NUMBERS):
        if lit in (0, 1):
            return lambda x: x.__class__ is not bool and x == lit
        return lambda x: x == lit  # a bool equals no number but 0 and 1 in Python
    return None


def _comparable(x: Any) -> bool:
    return _number(x) or isinstance(x, str)


_ORDER = {"lt": operator.lt, "gt": operator.gt, "lte": operator.le, "gte": operator.ge}


class _Unsupported(Exception):
    pass


def _fast_function(
    name: str, args: list[Getter], call: Callable[[str, list[Any]], Any]
) -> Getter | None:
    """The commonest functions without the generic dispatch; any argument of a type the
    fast branch does not handle goes to JMESPath's own function (and its type errors)."""
    if name == "length" and len(args) == 1:
        (only,) = args

        def length(v: Any, r: RecordLike) -> Any:
            x = only(v, r)
            if x.__class__ is str or x.__class__ is list or x.__class__ is dict:
                return len(x)
            return call(name, [x])

        return length
    if name == "to_number" and len(args) == 1:
        (only,) = args

        def to_number(v: Any, r: RecordLike) -> Any:
            x = only(v, r)
            if x.__class__ is int or x.__class__ is float:
                return x
            return call(name, [x])

        return to_number
    if name == "not_null" and args:

        def not_null(v: Any, r: RecordLike) -> Any:
            values = [a(v, r) for a in args]  # all evaluated, as the interpreter does
            for x in values:
                if x is not None:
                    return x
            return None

        return not_null
    return None


def _compile_node(node: dict[str, Any], key_decoder: Decoder) -> Getter:
    """One AST node -> a closure; raise _Unsupported to fall back to the interpreter."""
    kind = node["type"]
    children = node.get("children", [])
    plain = _plain(node)
    if plain is not None:
        root, keys = plain
        return _value_path(keys) if root is None else _envelope_path(root, keys, key_decoder)

    def sub(i: int) -> Getter:
        return _compile_node(children[i], key_decoder)

    if kind in ("subexpression", "index_expression", "pipe"):
        parts = [_compile_node(c, key_decoder) for c in children]
        if len(parts) == 2:
            first, second = parts
            return lambda v, r: second(first(v, r), r)

        def chain(v: Any, r: RecordLike) -> Any:
            for part in parts:
                v = part(v, r)
            return v

        return chain
    if kind in ("current", "identity"):
        return lambda v, r: v
    if kind == "literal":
        constant = node["value"]
        return lambda v, r: constant
    if kind == "index":
        index = node["value"]

        def at(v: Any, r: RecordLike) -> Any:
            if not isinstance(v, list):
                return None
            try:
                return v[index]
            except IndexError:
                return None

        return at
    if kind == "slice":
        cut = slice(*children)
        return lambda v, r: v[cut] if isinstance(v, list) else None
    if kind == "comparator":
        op = node["value"]
        left, right = sub(0), sub(1)
        if op in ("eq", "ne") and children[1]["type"] == "literal":
            equals = _equals_literal(children[1]["value"])
            if equals is not None:
                path = _plain(children[0])
                if op == "eq" and path is not None and path[0] is None and len(path[1]) == 1:
                    (k1,) = path[1]
                    missing = equals(None)
                    lit = children[1]["value"]
                    if isinstance(lit, str):

                        def field_is_text(v: Any, r: RecordLike) -> Any:  # the commonest `when`
                            try:
                                return v[k1] == lit
                            except _LOOKUP_ERRORS:
                                return False

                        return field_is_text

                    def field_equals(v: Any, r: RecordLike) -> Any:
                        try:
                            x = v[k1]
                        except _LOOKUP_ERRORS:
                            return missing
                        return equals(x)

                    return field_equals
                if op == "eq":
                    return lambda v, r: equals(left(v, r))
                return lambda v, r: not equals(left(v, r))
        if op == "eq":
            return lambda v, r: _jp_equals(left(v, r), right(v, r))
        if op == "ne":
            return lambda v, r: not _jp_equals(left(v, r), right(v, r))
        order = _ORDER[op]

        def compare(v: Any, r: RecordLike) -> Any:
            a, b = left(v, r), right(v, r)
            if not (_comparable(a) and _comparable(b)):
                return None
            return order(a, b)

        return compare
    if kind == "and_expression":
        left, right = sub(0), sub(1)

        def both(v: Any, r: RecordLike) -> Any:
            matched = left(v, r)
            if matched is True:
                return right(v, r)
            return matched if matched is False or _jp_false(matched) else right(v, r)

        return both
    if kind == "or_expression":
        left, right = sub(0), sub(1)

        def either(v: Any, r: RecordLike) -> Any:
            matched = left(v, r)
            return right(v, r) if _jp_false(matched) else matched

        return either
    if kind == "not_expression":
        inner = sub(0)

        def negate(v: Any, r: RecordLike) -> Any:
            x = inner(v, r)
            if _number(x) and x == 0:
                return False
            return not x

        return negate
    if kind == "function_expression":
        name = node["value"]
        if name == ENVELOPE_FUNCTION:
            field = children[0]["value"]
            return lambda v, r: envelope_value(r, field, key_decoder)
        args = [_compile_node(c, key_decoder) for c in children]
        call = _FUNCTIONS.call_function
        fast = _fast_function(name, args, call)
        if fast is not None:
            return fast
        if len(args) == 1:
            (only,) = args
            return lambda v, r: call(name, [only(v, r)])
        return lambda v, r: call(name, [a(v, r) for a in args])
    if kind in ("projection", "value_projection"):
        base, each = sub(0), sub(1)
        values = kind == "value_projection"

        def project(v: Any, r: RecordLike) -> Any:
            items = base(v, r)
            if values:
                if not isinstance(items, dict):
                    return None
                items = list(items.values())
            elif not isinstance(items, list):
                return None
            out = []
            for item in items:
                got = each(item, r)
                if got is not None:
                    out.append(got)
            return out

        return project
    if kind == "filter_projection":
        base, each, cond = sub(0), sub(1), sub(2)

        def select(v: Any, r: RecordLike) -> Any:
            items = base(v, r)
            if not isinstance(items, list):
                return None
            out = []
            for item in items:
                if not _jp_false(cond(item, r)):
                    got = each(item, r)
                    if got is not None:
                        out.append(got)
            return out

        return select
    if kind == "flatten":
        base = sub(0)

        def flatten(v: Any, r: RecordLike) -> Any:
            items = base(v, r)
            if not isinstance(items, list):
                return None
            out: list[Any] = []
            for item in items:
                if isinstance(item, list):
                    out.extend(item)
                else:
                    out.append(item)
            return out

        return flatten
    if kind == "multi_select_list":
        parts = [_compile_node(c, key_decoder) for c in children]
        return lambda v, r: None if v is None else [p(v, r) for p in parts]
    if kind == "multi_select_dict":
        pairs = [(c["value"], _compile_node(c["children"][0], key_decoder)) for c in children]
        return lambda v, r: None if v is None else {k: p(v, r) for k, p in pairs}
    raise _Unsupported(kind)


def compile_getter(expr: Expression, key_decoder: Decoder, fast: bool = True) -> Getter:
    """A callable for one checked expression: direct lookups for plain paths, closures for
    the rest of JMESPath, the interpreter only for what the closures do not cover.

    `fast=False` forces the JMESPath interpreter (the benchmark's baseline).
    """
    if fast:
        try:
            return _compile_node(dict(expr.compiled.parsed), key_decoder)
        except _Unsupported:
            pass
    search = expr.compiled.search
    if not expr.envelope:
        return lambda v, r: search(v)
    functions = _EnvelopeFunctions(key_decoder)
    options = jmespath.Options(custom_functions=functions)

    def with_envelope(v: Any, r: RecordLike) -> Any:
        functions.record = r
        return search(v, options)

    return with_envelope


def _may_leave_json(parsed: Any) -> bool:
    """Whether an expression can give a value orjson cannot encode (an integer beyond
    64 bits): a function's result, or such a literal. Reads of the record cannot."""
    for node in ast_nodes(parsed):
        kind = node.get("type")
        if kind == "function_expression" and node["value"] != ENVELOPE_FUNCTION:
            return True
        if kind == "literal":
            try:
                orjson.dumps(node["value"])
            except TypeError:
                return True
    return False


# --- value rules -----------------------------------------------------------------------


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    return "a number"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _scalar_text(value: Any) -> str | None:
    """Strings as they are, numbers as their JSON text; None for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return str(int(value)) if value.is_integer() and abs(value) < 2**63 else repr(value)
    return None


def _coerce_string(x: Any) -> Any:
    if isinstance(x, str):
        return x
    if isinstance(x, bool):
        return "true" if x else "false"
    text = _scalar_text(x)
    if text is not None:
        return text
    return orjson.dumps(x).decode()


def _int_range(n: int) -> int:
    # JSON encoders (orjson, and Gameball's side) carry 64-bit integers at most.
    if -(2**63) <= n < 2**64:
        return n
    raise ValueError(f"{_short(n)} is out of the 64-bit integer range")


_NUMBER_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", re.ASCII)


def _coerce_number(x: Any) -> Any:
    if isinstance(x, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(x, int):
        return _int_range(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            raise ValueError(f"{x!r} is not a finite number")
        return x
    if isinstance(x, str):
        text = x.strip()
        # JSON-style numbers only: no "nan", "inf", "1_000" or non-ASCII digits.
        if not _NUMBER_TEXT.fullmatch(text):
            raise ValueError(f"{_short(x)} is not a number")
        if text.lstrip("+-").isdigit():
            return _int_range(int(text))
        f = float(text)
        if not math.isfinite(f):
            raise ValueError(f"{_short(x)} is not a finite number")
        return f
    raise ValueError(f"{_kind(x)} is not a number")


def _coerce_integer(x: Any) -> Any:
    n = _coerce_number(x)
    if isinstance(n, float):
        if not n.is_integer():
            raise ValueError(f"{_short(x)} is not a whole number")
        return _int_range(int(n))
    return n


_TRUE = frozenset({"true", "yes", "y", "1", "on"})
_FALSE = frozenset({"false", "no", "n", "0", "off", ""})


def _coerce_boolean(x: Any) -> Any:
    if isinstance(x, bool):
        return x
    if isinstance(x, _NUMBERS) and x in (0, 1):
        return bool(x)
    if isinstance(x, str):
        word = x.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise ValueError(f"{_short(x)} is not a boolean")


_UNIT_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def _epoch_seconds(number: float, unit: str) -> float:
    if unit == "auto":
        # 1e11 s is the year 5138 and 1e11 ms is 1973: numbers above it are not seconds.
        size = abs(number)
        unit = "s" if size < 1e11 else "ms" if size < 1e14 else "us"
    return number * _UNIT_SECONDS[unit]


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _coerce_timestamp(unit: str) -> Callable[[Any], Any]:
    def coerce(x: Any) -> Any:
        try:
            if isinstance(x, bool):
                raise ValueError
            if isinstance(x, _NUMBERS):
                return _iso(datetime.fromtimestamp(_epoch_seconds(x, unit), UTC))
            if isinstance(x, str):
                text = x.strip()
                if _NUMBER_TEXT.fullmatch(text):
                    return _iso(datetime.fromtimestamp(_epoch_seconds(float(text), unit), UTC))
                dt = datetime.fromisoformat(text)
                return _iso(dt if dt.tzinfo else dt.replace(tzinfo=UTC))
        except (ValueError, OverflowError, OSError):
            pass
        raise ValueError(f"{_short(x)} is not a timestamp (epoch number or ISO-8601 text)")

    return coerce


def _coercer(field: MetadataField) -> Callable[[Any], Any] | None:
    if field.type is None:
        return None
    if field.type == "timestamp":
        return _coerce_timestamp(field.unit)
    return {
        "string": _coerce_string,
        "number": _coerce_number,
        "integer": _coerce_integer,
        "boolean": _coerce_boolean,
    }[field.type]


# --- routes ------------------------------------------------------------------------------


class _Field(NamedTuple):
    # A tuple: unpacked in one step in the per-record loop.
    key: str
    getter: Getter | None  # None: a constant
    constant: Any
    default: Any
    coerce: Callable[[Any], Any] | None
    required: bool
    text: str


class _Route:
    """One compiled route; `apply` builds its event for a record its topic already matched."""

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

        def comp(text: str, key: str, payload: bool = False) -> Getter:
            try:
                expr = parse_expression(text)
                if payload and _may_leave_json(expr.compiled.parsed):
                    self.check_json = True
                return compile_getter(expr, key_decoder, fast)
            except ValueError as exc:
                problems.append(f"{where}.{key}: {exc}")
                return lambda v, r: None

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
                coerce = _coercer(spec)
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
        self.apply = (self._generated_apply() if fast else None) or self._build_apply()

    def _build_apply(self) -> Callable[[Any, RecordLike], Any]:
        """The per-record function, its parts bound as locals (it runs per record per route).

        It returns an Event, None (`when` said no), _FILTERED, or a RecordError, and never
        raises for data.
        """
        when = self.when
        event = self.event
        event_name = self._event_name
        customer_id = self.customer_id
        bad_customer_id = self._bad_customer_id
        build = self._metadata if self.plain is None else _plain_builder(self.plain)
        check_json = self.check_json
        route = self.name
        dumps = orjson.dumps
        scalar_text = _scalar_text

        def apply(value: Any, record: RecordLike) -> Any:
            try:
                if when is not None:
                    matched = when(value, record)
                    if matched is not True and _jp_false(matched):
                        return None
                name = event
                if name is None:
                    name = event_name(value, record)
                    if name is _FILTERED or name.__class__ is MappingError:
                        return name
                raw = customer_id(value, record)
                cid = (raw if raw.strip() else None) if raw.__class__ is str else scalar_text(raw)
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

    def _generated_apply(self) -> Callable[[Any, RecordLike], Any] | None:
        """For the commonest route shape, `apply` as one generated function; else None.

        The shape: a literal `event`, an optional `when: path == 'text'`, and only plain
        value paths for customer_id and metadata (no envelope, no options). Written out as
        Python source (as dataclasses writes `__init__`) it makes no call per expression,
        which halves the per-record cost of such a route. Names and keys enter the source
        only through repr(), so config text cannot become code.
        """
        s = self.settings
        if s.event is None or self.plain is None or self.check_json:
            return None

        def path_of(text: str) -> list[str] | None:
            plain = _plain(dict(parse_expression(text).compiled.parsed))
            return plain[1] if plain is not None and plain[0] is None and plain[1] else None

        cid_path = path_of(s.customer_id)
        field_paths = [(key, path_of(f.path or "")) for key, f in s.metadata.items()]
        if cid_path is None or any(p is None for _, p in field_paths):
            return None
        when_path: list[str] | None = None
        when_text = ""
        if s.when is not None:
            node: dict[str, Any] = dict(parse_expression(s.when).compiled.parsed)
            kids: list[dict[str, Any]] = node.get("children", [])
            if not (
                node["type"] == "comparator"
                and node["value"] == "eq"
                and kids[1]["type"] == "literal"
                and isinstance(kids[1]["value"], str)
            ):
                return None
            plain = _plain(kids[0])
            if plain is None or plain[0] is not None or not plain[1]:
                return None
            when_path, when_text = plain[1], kids[1]["value"]

        def index(path: list[str]) -> str:
            return "".join(f"[{k!r}]" for k in path)

        lines = ["def apply(value, record):", "    try:"]
        if when_path is not None:
            lines += [
                "        try:",
                f"            if value{index(when_path)} != {when_text!r}:",
                "                return None",
                "        except _LOOKUP_ERRORS:",
                "            return None",
            ]
        lines += [
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
        lines += [
            f"        return Event(cid, {s.event!r}, {{{body}}}, record)",
            "    except RecordError as err:",
            "        err.route = route",
            "        return err",
            "    except Exception as exc:",
            '        detail = f"{type(exc).__name__}: {exc}"',
            '        return MappingError("expression_failed", detail, route)',
        ]
        namespace: dict[str, Any] = {
            "_LOOKUP_ERRORS": _LOOKUP_ERRORS,
            "Event": Event,
            "RecordError": RecordError,
            "MappingError": MappingError,
            "bad_customer_id": self._bad_customer_id,
            "scalar_text": _scalar_text,
            "route": self.name,
        }
        exec(compile("\n".join(lines), f"<route {self.name}>", "exec"), namespace)
        apply: Callable[[Any, RecordLike], Any] = namespace["apply"]
        return apply

    def _bad_customer_id(self, raw: Any) -> MappingError:
        expr = self.settings.customer_id
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return MappingError(
                "missing_customer_id", f"customer_id {expr!r} is missing, null or empty", self.name
            )
        return MappingError(
            "invalid_customer_id",
            f"customer_id {expr!r} is {_kind(raw)}, not a string or number",
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
            text = _scalar_text(raw)
            if text is None:
                return MappingError(
                    "invalid_event_name",
                    f"event_from {self.settings.event_from!r} is {_kind(raw)}, not a name",
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
                return _FILTERED if mapped is None else mapped
        if self.fixed_event is not None:
            return self.fixed_event
        if self.skip_unmapped:
            return _FILTERED
        if text is None:
            return MappingError(
                "missing_event_name",
                f"event_from {self.settings.event_from!r} is missing, null or empty",
                self.name,
            )
        return MappingError(
            "unmapped_event", f"event_from value {_short(text)} is not in event_map", self.name
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
                    f"include {self.include_text[i]!r} is {_kind(obj)}, not an object",
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
            _remove(metadata, path)
        if self.drop_nulls:
            metadata = {k: x for k, x in metadata.items() if x is not None}
        if self.source_key is not None:
            metadata[self.source_key] = {
                "topic": record.topic(),
                "partition": record.partition(),
                "offset": record.offset(),
            }
        return metadata


def _plain_builder(
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


def _remove(metadata: dict[str, Any], path: tuple[str, ...]) -> None:
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


def _decode_error(decode: Decoder, raw: bytes | str) -> DecodeError:
    """The decoder's own DecodeError for bytes that failed on the fast path."""
    try:
        decode(raw)
    except DecodeError as err:
        return err
    return DecodeError("decode_failed", "the value could not be decoded")


class _Plan:
    """What to do with one topic's records, worked out on the first record of the topic."""

    __slots__ = ("decoders", "one", "routes", "single", "unmatched")

    def __init__(
        self,
        routes: list[tuple[_Route, Decoder]],
        unmatched: str,
    ) -> None:
        self.routes = tuple(r for r, _ in routes)
        self.decoders = tuple(d for _, d in routes)
        distinct = set(self.decoders)
        self.single: Decoder | None = self.decoders[0] if len(distinct) == 1 else None
        if self.single is decode_json:
            self.single = orjson.loads  # the same result without a wrapper call
        self.unmatched = unmatched
        # One route, one decoder (the common topic): a closure without the route loop.
        self.one: Callable[[RecordLike], Any] | None = None

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


def _one_route(plan: _Plan, topic: str | None) -> Callable[[RecordLike], Any]:
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
        if out is _FILTERED:
            return SKIP_FILTERED
        return out  # an Event or a RecordError

    return map_one


@dataclass(frozen=True, slots=True)
class RouteTrace:
    """How one route treated one record (for `map --explain`)."""

    route: str
    outcome: str  # event, when_false, topic, filtered, error, not_reached
    detail: str


class Mapper:
    """Routes compiled once; `map` turns one record into events, a `Skip` or a `RecordError`.

    Built by the CLI at start-up (`run`, `validate`, `map`): building it is the complete
    check of the mapping config, and it raises `ConfigError` with key paths. Not
    thread-safe: one Mapper per thread that maps.
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
        names = _route_names(routes, problems)
        self._routes: list[_Route] = []
        for i, (name, settings) in enumerate(zip(names, routes, strict=True)):
            where = f"mappings[{i}]"
            own = self._topics.get(settings.topic or "", TopicSettings())
            key_format = settings.key_format or own.key_format or star.key_format or "string"
            try:
                key_decoder = decoder_for(key_format, self._extra_decoders)
            except KeyError:
                problems.append(f"{where}.key_format: no decoder for {key_format!r}")
                key_decoder = decoder_for("string")
            self._routes.append(_Route(name, settings, key_decoder, fast_paths, where, problems))
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
        self._plans: dict[str | None, _Plan] = {}

    @property
    def route_names(self) -> list[str]:
        return [r.name for r in self._routes]

    def _plan(self, topic: str | None) -> _Plan:
        name = topic or ""
        own = self._topics.get(name, TopicSettings())
        star = self._topics.get("*", TopicSettings())
        chosen: list[tuple[_Route, Decoder]] = []
        for route in self._routes:
            s = route.settings
            if s.topic is not None:
                if s.topic != name:
                    continue
            elif s.topic_pattern is None or not _fullmatch(s.topic_pattern, name):
                continue
            fmt = s.value_format or own.value_format or star.value_format or "json"
            chosen.append((route, decoder_for(fmt, self._extra_decoders)))
        unmatched = own.unmatched if name in self._topics else star.unmatched
        plan = _Plan(chosen, unmatched)
        if plan.single is not None and len(plan.routes) == 1:
            plan.one = _one_route(plan, topic)
        self._plans[topic] = plan
        return plan

    def map(self, record: RecordLike) -> list[Event] | Skip | RecordError:
        """Called by the pipeline per record; never raises for bad data.

        A record matching several routes yields several events; if any matching route
        fails, the whole record is the error (it goes to the dead-letter topic whole).
        """
        topic = record.topic()
        plan = self._plans.get(topic)
        if plan is None:
            plan = self._plan(topic)
        if plan.one is not None:
            out = plan.one(record)
            return [out] if out.__class__ is Event else out
        raw = record.value()
        if raw is None:
            return SKIP_TOMBSTONE
        decode = plan.single
        if decode is None:
            return self._map_general(record, plan, None)
        try:
            value = decode(raw)
        except Exception as exc:
            return plan.failed_decode(raw, exc)
        events: list[Event] = []
        filtered = False
        for route in plan.routes:
            out = route.apply(value, record)
            if out is None:
                continue
            if out.__class__ is Event:
                events.append(out)
            elif out is _FILTERED:
                filtered = True
            else:
                return out  # type: ignore[no-any-return]
        if events:
            return events
        return SKIP_FILTERED if filtered else plan.unmatched_result(topic)

    def for_topic(self, topic: str | None) -> Callable[[RecordLike], Any]:
        """The pipeline's per-record function for one topic: `map`'s result, except that
        a single event comes back bare (no list per record) on a one-route topic."""
        plan = self._plans.get(topic) or self._plan(topic)
        return plan.one or self.map

    def explain(
        self, record: RecordLike
    ) -> tuple[list[Event] | Skip | RecordError, list[RouteTrace]]:
        """`map`, plus how every route treated the record (for `map --explain`)."""
        topic = record.topic()
        plan = self._plans.get(topic) or self._plan(topic)
        trace: list[RouteTrace] = []
        result = self._map_general(record, plan, trace)
        seen = {t.route for t in trace}
        for route in self._routes:
            if route.name in seen:
                continue
            if route in plan.routes:
                why = "a tombstone has no value" if record.value() is None else "not reached"
                trace.append(RouteTrace(route.name, "not_reached", why))
            else:
                s = route.settings
                want = f"{s.topic!r}" if s.topic is not None else f"pattern {s.topic_pattern!r}"
                trace.append(RouteTrace(route.name, "topic", f"topic {topic!r} is not {want}"))
        order = {name: i for i, name in enumerate(self.route_names)}
        trace.sort(key=lambda t: order[t.route])
        return result, trace

    def _map_general(
        self, record: RecordLike, plan: _Plan, trace: list[RouteTrace] | None
    ) -> list[Event] | Skip | RecordError:
        # Routes of one topic with different value formats, and --explain: decode each
        # format once, keep going route by route.
        raw = record.value()
        if raw is None:
            return SKIP_TOMBSTONE
        values: dict[Decoder, Any] = {}
        events: list[Event] = []
        filtered = False
        for route, decode in zip(plan.routes, plan.decoders, strict=True):
            value = values.get(decode, _MISSING)
            if value is _MISSING:
                try:
                    value = values[decode] = decode(raw)
                except DecodeError as err:
                    err.route = route.name
                    if trace is not None:
                        trace.append(RouteTrace(route.name, "error", f"{err.reason}: {err.detail}"))
                    return err
            out = route.apply(value, record)
            if out is None:
                if trace is not None:
                    assert route.settings.when is not None and route.when is not None
                    got = _short(route.when(value, record))
                    why = f"when {route.settings.when!r} gave {got}"
                    trace.append(RouteTrace(route.name, "when_false", why))
            elif out.__class__ is Event:
                events.append(out)
                if trace is not None:
                    trace.append(RouteTrace(route.name, "event", out.name))
            elif out is _FILTERED:
                filtered = True
                if trace is not None:
                    why = "event_map/event_default chose to skip this event name"
                    trace.append(RouteTrace(route.name, "filtered", why))
            else:
                if trace is not None:
                    trace.append(RouteTrace(route.name, "error", f"{out.reason}: {out.detail}"))
                return out  # type: ignore[no-any-return]
        if events:
            return events
        return SKIP_FILTERED if filtered else plan.unmatched_result(record.topic())


def _fullmatch(pattern: str, topic: str) -> bool:
    return re.fullmatch(pattern, topic) is not None


def _route_names(routes: Sequence[RouteSettings], problems: list[str]) -> list[str]:
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
