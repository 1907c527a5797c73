"""One parsed expression -> a getter: a direct lookup for a plain path, closures for the
rest of JMESPath, the JMESPath interpreter only where the closures cannot go.

Called by `routes` when a route is compiled (the parsed form comes from the settings:
`RouteSettings.expression`, nothing is parsed here). Pure.
"""

from __future__ import annotations

from typing import Any

import jmespath
import orjson

from connector.decode import Decoder
from connector.mapping.closures import Unsupported, compile_node
from connector.mapping.envelope import EnvelopeFunctions, Getter
from connector.mapping_schema import ENVELOPE_FUNCTION, Expression, ast_nodes
from connector.records import RecordLike


def compile_expression(expr: Expression, key_decoder: Decoder, fast: bool) -> tuple[Getter, bool]:
    """(getter, interpreted): `interpreted` is True when the getter runs the interpreter
    (`fast=False`, the benchmark's and the property tests' baseline, or a node the
    closures do not cover)."""
    if fast:
        try:
            return compile_node(dict(expr.compiled.parsed), key_decoder), False
        except Unsupported:
            pass
    search = expr.compiled.search
    if not expr.envelope:
        return (lambda v, r: search(v)), True
    functions = EnvelopeFunctions(key_decoder)
    options = jmespath.Options(custom_functions=functions)

    def with_envelope(v: Any, r: RecordLike) -> Any:
        functions.record = r
        return search(v, options)

    return with_envelope, True


def compile_getter(expr: Expression, key_decoder: Decoder, fast: bool = True) -> Getter:
    """A callable for one checked expression (see `compile_expression`).

    `fast=False` forces the JMESPath interpreter (the benchmark's baseline).
    """
    return compile_expression(expr, key_decoder, fast)[0]


def may_leave_json(parsed: Any) -> bool:
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
