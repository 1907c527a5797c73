"""Plain paths (`a.b.c`, `@headers.x`): recognised in a parsed expression and compiled to
direct lookups, the commonest expressions of a mapping.

Called by `closures` (every node is tried as a plain path first) and by `codegen`
(which writes plain paths into a route's generated source). Pure.
"""

from __future__ import annotations

from typing import Any

from connector.decode import Decoder
from connector.mapping.envelope import LOOKUP_ERRORS, Getter, envelope_path, walk
from connector.mapping_schema import ENVELOPE_FUNCTION
from connector.records import RecordLike


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


def plain_path(parsed: dict[str, Any]) -> tuple[str | None, list[str]] | None:
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


def value_path(keys: list[str]) -> Getter:
    # Specialised by depth: these run several times per record on the hot path.
    if not keys:
        return lambda v, r: v
    if len(keys) == 1:
        (k1,) = keys

        def get1(v: Any, r: RecordLike) -> Any:
            try:
                return v[k1]
            except LOOKUP_ERRORS:
                return None

        return get1
    if len(keys) == 2:
        k1, k2 = keys

        def get2(v: Any, r: RecordLike) -> Any:
            try:
                return v[k1][k2]
            except LOOKUP_ERRORS:
                return None

        return get2
    if len(keys) == 3:
        k1, k2, k3 = keys

        def get3(v: Any, r: RecordLike) -> Any:
            try:
                return v[k1][k2][k3]
            except LOOKUP_ERRORS:
                return None

        return get3
    return lambda v, r: walk(v, keys)


def compile_path(parsed: dict[str, Any], key_decoder: Decoder) -> Getter | None:
    """A direct getter when `parsed` is a plain path (value or envelope), else None."""
    plain = plain_path(parsed)
    if plain is None:
        return None
    root, keys = plain
    return value_path(keys) if root is None else envelope_path(root, keys, key_decoder)
