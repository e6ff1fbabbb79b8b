"""Shape bounds on a parsed body: nesting depth and array length (answered 400).

orjson refuses nesting beyond 1024 levels on its own; these bounds are far tighter and
sized from Meta's payloads (depth under 12, a few hundred items per list at most), so a
signed but hostile body cannot make the splitter or the shards walk millions of nodes.
"""

from __future__ import annotations

from typing import Any

from ingress.rejection import BodyOutOfBounds

__all__ = ["BodyOutOfBounds", "check_bounds"]


def check_bounds(body: Any, max_depth: int, max_array: int) -> None:
    """Raise BodyOutOfBounds unless every container is within both bounds (iterative)."""
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            if len(node) > max_array:
                raise BodyOutOfBounds(f"an array holds more than {max_array} elements")
            children = node
        else:
            continue
        if depth > max_depth:
            raise BodyOutOfBounds(f"the body nests deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
