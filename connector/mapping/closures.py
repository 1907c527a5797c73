"""A closure compiler for JMESPath: each AST node becomes a closure.

The interpreter walks the AST on every search (5-15 us for `type == 'x'`); these
closures keep its exact semantics (visitor.py of jmespath 1.x, checked against it by
tests/unit/test_mapping_properties.py). Called by `expressions.compile_getter`; a node it
does not know (expref: `sort_by(a, &b)`) raises `Unsupported`, and the whole expression
goes to the interpreter. Pure.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from jmespath.functions import Functions

from connector.decode import Decoder
from connector.mapping.envelope import LOOKUP_ERRORS, Getter, envelope_value
from connector.mapping.paths import compile_path, plain_path
from connector.mapping_schema import ENVELOPE_FUNCTION
from connector.records import RecordLike

_NUMBERS = (int, float)  # a tuple: `int | float` would build a union object per call

_FUNCTIONS = Functions()


def jp_false(x: Any) -> bool:
    """JMESPath's falsiness (empty string, list, object; null; false)."""
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


class Unsupported(Exception):
    """A node the closures do not cover: the expression goes to the interpreter."""


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


def compile_node(node: dict[str, Any], key_decoder: Decoder) -> Getter:
    """One AST node -> a closure; raise Unsupported to fall back to the interpreter."""
    kind = node["type"]
    children = node.get("children", [])
    direct = compile_path(node, key_decoder)
    if direct is not None:
        return direct

    def sub(i: int) -> Getter:
        return compile_node(children[i], key_decoder)

    if kind in ("subexpression", "index_expression", "pipe"):
        parts = [compile_node(c, key_decoder) for c in children]
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
                path = plain_path(children[0])
                if op == "eq" and path is not None and path[0] is None and len(path[1]) == 1:
                    (k1,) = path[1]
                    missing = equals(None)
                    lit = children[1]["value"]
                    if isinstance(lit, str):

                        def field_is_text(v: Any, r: RecordLike) -> Any:  # the commonest `when`
                            try:
                                return v[k1] == lit
                            except LOOKUP_ERRORS:
                                return False

                        return field_is_text

                    def field_equals(v: Any, r: RecordLike) -> Any:
                        try:
                            x = v[k1]
                        except LOOKUP_ERRORS:
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
            return matched if matched is False or jp_false(matched) else right(v, r)

        return both
    if kind == "or_expression":
        left, right = sub(0), sub(1)

        def either(v: Any, r: RecordLike) -> Any:
            matched = left(v, r)
            return right(v, r) if jp_false(matched) else matched

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
        args = [compile_node(c, key_decoder) for c in children]
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
                if not jp_false(cond(item, r)):
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
        parts = [compile_node(c, key_decoder) for c in children]
        return lambda v, r: None if v is None else [p(v, r) for p in parts]
    if kind == "multi_select_dict":
        pairs = [(c["value"], compile_node(c["children"][0], key_decoder)) for c in children]
        return lambda v, r: None if v is None else {k: p(v, r) for k, p in pairs}
    raise Unsupported(kind)
