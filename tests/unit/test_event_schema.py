"""The published JSON Schema is current, and every golden event conforms to it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]  # no stubs shipped; only validate() is used
import pytest

from cluster.schema import SCHEMA_PATH, render_schema, schema_command
from tests.support.webhooks import GOLDEN

VALIDATOR = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text("utf-8")))


def test_checked_in_schema_is_current() -> None:
    """docs/events/v1.schema.json equals the schema generated from the models."""
    assert SCHEMA_PATH.read_text("utf-8") == render_schema()
    assert schema_command("check") == 0


def test_check_fails_on_a_stale_schema(tmp_path: Path) -> None:
    """`schema check` exits 1 when the file differs, and `export` repairs it."""
    stale = tmp_path / "v1.schema.json"
    stale.write_text("{}\n", "utf-8")
    assert schema_command("check", stale) == 1
    assert schema_command("export", stale) == 0
    assert schema_command("check", stale) == 0


@pytest.mark.parametrize("golden", sorted(GOLDEN.glob("*.json")), ids=lambda p: p.stem)
def test_golden_events_validate_against_the_schema(golden: Path) -> None:
    """What we publish is what the schema promises consumers."""
    for event in json.loads(golden.read_text("utf-8")):
        VALIDATOR.validate(event)
