"""Check the paths a route reads against a registered schema (`validate --registry`).

Pure: called by `connector.registry.check_routes` with schemas it fetched. A schema is
turned into a small type tree (`Shape`); each route expression's JMESPath AST is walked
against it, and a field the schema does not have (`custmer.id`) is a problem line with
the route's key path. Types the walk cannot follow (JSON Schema `$ref`, function results)
are not checked rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connector.mapping_schema import ENVELOPE_FUNCTION, RouteSettings


@dataclass
class Shape:
    """A value's type as far as paths care: record (named fields), array, map, union,
    scalar, or any (not checked)."""

    kind: str  # record, array, map, union, scalar, any
    name: str = ""
    fields: dict[str, Shape] = field(default_factory=dict)
    item: Shape | None = None
    options: list[Shape] = field(default_factory=list)


ANY = Shape("any")
SCALAR = Shape("scalar")


# --- schemas -> shapes --------------------------------------------------------------------


def avro_shape(schema: Any, named: dict[str, Shape] | None = None, space: str = "") -> Shape:
    """An Avro schema (parsed JSON) -> Shape; named types resolve by (full) name."""
    named = {} if named is None else named
    if isinstance(schema, list):
        options = [avro_shape(s, named, space) for s in schema]
        real = [o for o in options if o.kind != "null"]
        return real[0] if len(real) == 1 else Shape("union", options=real)
    if isinstance(schema, str):
        if schema == "null":
            return Shape("null")
        full = schema if "." in schema or not space else f"{space}.{schema}"
        return named.get(full) or named.get(schema) or SCALAR
    kind = schema.get("type")
    if kind == "record" or kind == "error":
        ns = schema.get("namespace", space)
        name = schema["name"] if "." in schema["name"] or not ns else f"{ns}.{schema['name']}"
        shape = Shape("record", name=name)
        named[name] = named[schema["name"]] = shape
        for f in schema.get("fields", []):
            shape.fields[f["name"]] = avro_shape(f["type"], named, ns)
        return shape
    if kind == "array":
        return Shape("array", item=avro_shape(schema["items"], named, space))
    if kind == "map":
        return Shape("map", item=avro_shape(schema["values"], named, space))
    if kind in ("enum", "fixed") and "name" in schema:
        named[schema["name"]] = SCALAR
        return SCALAR
    if isinstance(kind, dict | list):
        return avro_shape(kind, named, space)
    return SCALAR


def json_schema_shape(schema: Any) -> Shape:
    """A JSON Schema (parsed) -> Shape. Objects with `properties` are closed unless
    `additionalProperties` says otherwise (a path outside them is most likely a typo)."""
    if not isinstance(schema, dict) or "$ref" in schema:
        return ANY
    kind = schema.get("type")
    if "properties" in schema and kind in (None, "object"):
        extra = schema.get("additionalProperties")
        if extra not in (None, False):
            return ANY
        props = schema["properties"]
        return Shape(
            "record",
            name=str(schema.get("title", "object")),
            fields={k: json_schema_shape(v) for k, v in props.items()},
        )
    if kind == "array":
        return Shape("array", item=json_schema_shape(schema.get("items")))
    if kind in ("string", "number", "integer", "boolean", "null"):
        return SCALAR
    return ANY


_WELL_KNOWN_SCALARS = ("google.protobuf.",)


def protobuf_shape(file: Any, message: str) -> Shape:
    """A FileDescriptorProto and a message name -> Shape (field names as in the schema;
    maps are maps, repeated fields arrays, Google's well-known types scalars)."""
    package = f".{file.package}" if file.package else ""
    types: dict[str, Any] = {}

    def collect(prefix: str, messages: Any) -> None:
        for m in messages:
            types[f"{prefix}.{m.name}"] = m
            collect(f"{prefix}.{m.name}", m.nested_type)

    collect(package, file.message_type)
    built: dict[str, Shape] = {}

    def build(name: str) -> Shape:
        if name.lstrip(".").startswith(_WELL_KNOWN_SCALARS) or name not in types:
            return SCALAR
        if name in built:
            return built[name]
        desc = types[name]
        shape = built[name] = Shape("record", name=name.lstrip("."))
        for f in desc.field:
            inner = build(f.type_name) if f.type == 11 else SCALAR  # 11: TYPE_MESSAGE
            if f.label == 3:  # LABEL_REPEATED
                entry = types.get(f.type_name)
                if entry is not None and entry.options.map_entry:
                    inner = Shape("map", item=build_value(entry))
                else:
                    inner = Shape("array", item=inner)
            shape.fields[f.name] = inner
        return shape

    def build_value(entry: Any) -> Shape:
        value = next(f for f in entry.field if f.name == "value")
        return build(value.type_name) if value.type == 11 else SCALAR

    return build(f"{package}.{message}")


def protobuf_main_message(file: Any) -> str:
    """The message a subject's records most likely are: the top-level one no other
    message of the file uses (the serializer's own type), else the first."""
    package = f".{file.package}" if file.package else ""
    used = {f.type_name for m in file.message_type for f in _all_fields(m) if f.type_name}
    tops: list[str] = [str(m.name) for m in file.message_type]
    free = [n for n in tops if f"{package}.{n}" not in used]
    return free[0] if len(free) == 1 else tops[0]


def _all_fields(message: Any) -> list[Any]:
    out = list(message.field)
    for nested in message.nested_type:
        out += _all_fields(nested)
    return out


# --- walking expressions ------------------------------------------------------------------


def _lookup(shape: Shape, name: str, path: str, problems: list[str]) -> Shape:
    if shape.kind in ("any", "map"):
        return shape.item or ANY if shape.kind == "map" else ANY
    if shape.kind == "union":
        found = [o.fields[name] for o in shape.options if o.kind == "record" and name in o.fields]
        if found:
            return found[0] if len(found) == 1 else Shape("union", options=found)
        if any(o.kind in ("any", "map") for o in shape.options):
            return ANY
    if shape.kind == "record":
        if name in shape.fields:
            return shape.fields[name]
        known = ", ".join(sorted(shape.fields))
        problems.append(f"{path}: no field {name!r} in {shape.name} (fields: {known})")
        return ANY
    where = f"{shape.name or shape.kind}" if shape.kind != "scalar" else "a plain value"
    problems.append(f"{path}: {name!r} is read from {where}, which has no fields")
    return ANY


def _items(shape: Shape) -> Shape:
    if shape.kind in ("array", "map"):
        return shape.item or ANY
    return ANY


def walk(node: dict[str, Any], shape: Shape, key: Shape, trail: str, problems: list[str]) -> Shape:
    """The Shape `node` evaluates to when applied to `shape`; problems appended."""
    kind = node["type"]
    children = node.get("children", [])
    if kind == "field":
        path = f"{trail}.{node['value']}" if trail else node["value"]
        return _lookup(shape, node["value"], path, problems)
    if kind == "subexpression" or kind == "pipe":
        current = shape
        for child in children:
            current = walk(child, current, key, trail, problems)
            trail = _trail(child, trail)
        return current
    if kind == "index_expression":
        left = walk(children[0], shape, key, trail, problems)
        return _items(left) if children[1]["type"] == "index" else ANY
    if kind in ("projection", "filter_projection", "value_projection", "flatten"):
        left = walk(children[0], shape, key, trail, problems)
        if kind == "flatten":
            return left
        element = _items(left)
        if len(children) > 2:  # filter_projection: the comparator reads the element
            walk(children[2], element, key, trail + "[]", problems)
        if len(children) > 1:
            walk(children[1], element, key, trail + "[]", problems)
        return ANY
    if kind == "function_expression" and node["value"] == ENVELOPE_FUNCTION:
        arg = children[0]["value"] if children else ""
        return key if arg == "key" else ANY
    if kind == "current":
        return shape
    for child in children:
        walk(child, shape, key, trail, problems)
    return ANY


def _trail(node: dict[str, Any], trail: str) -> str:
    if node["type"] == "field":
        return f"{trail}.{node['value']}" if trail else node["value"]
    if node["type"] == "function_expression" and node["value"] == ENVELOPE_FUNCTION:
        return "@" + str(node["children"][0]["value"])
    return trail


def route_expressions(route: RouteSettings, where: str) -> list[tuple[str, str]]:
    """(key path, expression text) of every expression a route evaluates."""
    out: list[tuple[str, str]] = [(f"{where}.customer_id", route.customer_id)]
    if route.when:
        out.append((f"{where}.when", route.when))
    if route.event_from:
        out.append((f"{where}.event_from", route.event_from))
    for name, meta in route.metadata.items():
        if meta.path is not None:
            out.append((f"{where}.metadata.{name}.path", meta.path))
    for i, expr in enumerate(route.include):
        out.append((f"{where}.include[{i}]", expr))
    return out


def check_route(route: RouteSettings, where: str, value: Shape, key: Shape = ANY) -> list[str]:
    """Problems (`<key path>: <expression>: no field ...`) of one route against the
    shapes of its topic's value and key."""
    problems: list[str] = []
    for path, text in route_expressions(route, where):
        found: list[str] = []
        walk(dict(route.expression(text).compiled.parsed), value, key, "", found)
        problems += [f"{path}: {text!r}: {p}" for p in found]
    return problems
