"""Shape bounds on a parsed body: nesting depth, array length and JSON values (answered 400).

orjson refuses nesting beyond 1024 levels on its own; these bounds are far tighter and
sized from Meta's payloads (depth under 12, a few hundred items per list at most), so a
signed but hostile body cannot make the splitter or the shards walk millions of nodes.

Values: Meta's documented payloads and the project's fixtures spend at least 12.9 bytes of
compact JSON per value, so a 3 MB delivery (Meta's largest) holds at most ~240,000 and the
default bound of 500,000 leaves twice that; a hostile 4 MiB body holds up to ~2,000,000
(`[0,0,...]`, 2 bytes each), whose walk would cost the event loop about four times more.
"""

from __future__ import annotations

from typing import Any

from ingress.rejection import BodyOutOfBounds

__all__ = ["BodyOutOfBounds", "check_bounds"]


def check_bounds(body: Any, max_depth: int, max_array: int, max_nodes: int) -> None:
    """Raise BodyOutOfBounds unless every container is within the depth and length bounds
    and the body holds at most `max_nodes` JSON values (iterative; a container's children
    are counted before they are walked, so the walk stops within one array of the bound)."""
    stack: list[tuple[Any, int]] = [(body, 1)]
    nodes = 1
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
        nodes += len(node)
        if nodes > max_nodes:
            raise BodyOutOfBounds(f"the body holds more than {max_nodes} JSON values")
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
