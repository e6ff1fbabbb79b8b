"""Property tests: whatever the body, split + normalize answers with one event per item.

Bodies are generated from scratch and by mutating the project's fixtures (keys deleted,
values replaced by arbitrary JSON). The only exception allowed is EnvelopeError (a 400).
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.envelope import EnvelopeError
from tests.support.webhooks import fixture_files, load, run_pipeline

BODIES = [load(path) for path in fixture_files()]

# What orjson.loads (the ingress parser) can produce: 64-bit integers, finite floats.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
# Values Meta plausibly gets wrong: ids and timestamps in the other type, empties, placeholders.
quirky: st.SearchStrategy[Any] = st.sampled_from(
    ["", "0", "1767225600", 1767225600, -1, 2**40, "<TIMESTAMP>", [], {}, None]
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, child in node.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += _paths(child, (*prefix, index))
    return found


@st.composite
def mutated_bodies(draw: st.DrawFn) -> Any:
    body = copy.deepcopy(draw(st.sampled_from(BODIES)))
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(body)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = body
        for part in path[:-1]:
            parent = parent[part]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(quirky | json_values)
    return body


def _check(body: Any) -> None:
    try:
        items, events = run_pipeline(body)
    except EnvelopeError:
        return
    assert len(events) == len(items)
    for item, event in zip(items, events, strict=True):
        assert event.conversation_id == item.conversation_id
        assert event.event_id


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_bodies())
def test_mutated_fixtures_never_raise_and_keep_every_item(body: Any) -> None:
    """A mutated real-shaped body: one event per item, or EnvelopeError; nothing else."""
    _check(body)


@settings(max_examples=200, deadline=None)
@given(
    st.fixed_dictionaries(
        {"object": st.just("whatsapp_business_account") | json_values},
        optional={
            "entry": st.lists(
                json_values
                | st.fixed_dictionaries(
                    {
                        "id": json_values,
                        "changes": st.lists(
                            st.fixed_dictionaries(
                                {
                                    "field": st.sampled_from(["messages", "calls", "history", "x"])
                                    | json_values,
                                    "value": json_values,
                                }
                            ),
                            max_size=3,
                        ),
                    }
                ),
                max_size=3,
            )
        },
    )
)
def test_generated_bodies_never_raise_and_keep_every_item(body: Any) -> None:
    """An arbitrary body: one event per item, or EnvelopeError; nothing else."""
    _check(body)
