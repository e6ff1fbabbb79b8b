"""`python -m cluster schema export|check`: the published JSON Schema of events, kept current.

The schema is generated from `models.event.NormalizedEvent`; `check` fails (exit 1) when
the checked-in file differs, so CI catches a model change without a schema update.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from models.event import SCHEMA_VERSION, NormalizedEvent

SCHEMA_PATH = (
    Path(__file__).resolve().parents[1] / "docs" / "events" / f"v{SCHEMA_VERSION}.schema.json"
)


def render_schema() -> str:
    """The event JSON Schema as stable, diff-friendly text."""
    schema = NormalizedEvent.model_json_schema(mode="serialization")
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:wa-ingest:events:v{SCHEMA_VERSION}",
        **schema,
    }
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def schema_command(action: str, path: Path = SCHEMA_PATH) -> int:
    """`export` writes the schema file; `check` returns 1 when it is missing or stale."""
    text = render_schema()
    if action == "export":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
        return 0
    current = path.read_text(encoding="utf-8") if path.exists() else None
    if current != text:
        print(f"{path} is stale: run `python -m cluster schema export`", file=sys.stderr)
        return 1
    print(f"{path} is current")
    return 0
