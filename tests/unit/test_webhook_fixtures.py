"""Every project fixture against its golden normalized output (test id = fixture name).

Regenerate the goldens after an intended change with
`UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_webhook_fixtures.py`, then review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from models.event import NormalizedEvent
from tests.support.webhooks import GOLDEN, fixture_files, load, run_pipeline

FILES = fixture_files()
IDS = [f.stem for f in FILES]


def test_there_is_a_fixture_for_every_field_and_message_type() -> None:
    """The fixture set covers every typed message type and every typed field."""
    from models.meta.fields import FIELD_MODELS
    from models.meta.messages import MESSAGE_TYPES

    names = " ".join(IDS)
    missing_types = {t for t in MESSAGE_TYPES - {"unknown"} if f"message_{t}" not in names}
    missing_fields = {f for f in FIELD_MODELS if f"field_{f}" not in names}
    assert not missing_types
    assert not missing_fields


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_fixture_matches_golden(path: Path) -> None:
    """Normalizing the fixture gives exactly the checked-in events, one per item."""
    items, events = run_pipeline(load(path))
    assert len(events) == len(items) >= 1
    actual = [event.model_dump(mode="json") for event in events]
    golden = GOLDEN / path.name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(json.dumps(actual, indent=2, ensure_ascii=False) + "\n", "utf-8")
    assert golden.exists(), f"no golden for {path.name}: run with UPDATE_GOLDEN=1"
    assert actual == json.loads(golden.read_text("utf-8"))


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_fixture_events_round_trip_and_fit_their_category(
    path: Path,
) -> None:
    """Events survive JSON and back unchanged; only `*malformed*` fixtures are unsupported."""
    _, events = run_pipeline(load(path))
    for event in events:
        published = event.model_dump(mode="json")
        again = NormalizedEvent.model_validate_json(event.model_dump_json())
        assert again.model_dump(mode="json") == published
        assert (event.category == "unsupported") == ("malformed" in path.stem)
        assert event.routing_key == f"acme.{event.category}.{event.type}"
