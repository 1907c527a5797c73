"""`${VAR}` and `${VAR:-default}` in a parsed config tree, and the key paths problems
are reported with. Called by `connector.config.parse` before validation; an unset
variable without a default is a problem at its key path, never a silent empty value.
"""

from __future__ import annotations

import re
from typing import Any

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def key_path(loc: tuple[int | str, ...]) -> str:
    """`("mappings", 1, "customer_id")` -> `mappings[1].customer_id`, as every config
    problem is reported."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def expand_env(
    node: Any, env: dict[str, str], loc: tuple[int | str, ...], problems: list[str]
) -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in every string of a parsed YAML tree."""
    if isinstance(node, dict):
        return {k: expand_env(v, env, (*loc, k), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [expand_env(v, env, (*loc, i), problems) for i, v in enumerate(node)]
    if not isinstance(node, str) or "${" not in node:
        return node

    def repl(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        problems.append(f"{key_path(loc)}: environment variable {name} is not set")
        return ""

    return _VAR.sub(repl, node)
