"""The README's configuration table names every setting (the table is the users' only
list of knobs: a setting missing there is one nobody can find)."""

from __future__ import annotations

from pathlib import Path

from cluster.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    missing = [
        f"WA_{name.upper()}" for name in Settings.model_fields if f"`WA_{name.upper()}`" not in text
    ]
    assert missing == [], f"add these to the README's configuration table: {missing}"
