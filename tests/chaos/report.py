"""The chaos suite's report: var/chaos/chaos-<profile>.json and a markdown table of it
(the table docs/reliability.md quotes under "Chaos suite")."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

from tests.chaos.scenario import ChaosProfile, ScenarioResult

REPORT_DIR = Path(__file__).resolve().parents[2] / "var" / "chaos"

_COLUMNS = (
    ("scenario", "scenario"),
    ("acknowledged", "acknowledged"),
    ("published", "published"),
    ("lost", "lost"),
    ("duplicates", "duplicates"),
    ("order_violations", "order violations"),
    ("answered_503", "503s"),
    ("other_errors", "other non-200"),
    ("backlog_at_fault_end", "backlog at fault end"),
    ("fault_s", "fault (s)"),
    ("recovery_s", "recovery (s)"),
    ("longest_ack_gap_s", "longest gap without a 200 (s)"),
)


def _cell(result: ScenarioResult, name: str) -> str:
    value = getattr(result, name)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in sorted(value.items())) or "0"
    return "—" if value is None else str(value)


def markdown(profile: ChaosProfile, results: list[ScenarioResult]) -> str:
    """The table, one row per scenario, with the load it ran under."""
    lines = [
        f"Profile `{profile.name}`: {profile.rate:g} POST/s of {profile.batch} "
        f"item{'' if profile.batch == 1 else 's'}, "
        f"{profile.conversations} conversations, {profile.lead_s:g} s of load before each "
        f"fault and {profile.tail_s:g} s after it; outages of {profile.fault_s:g} s; "
        f"{profile.kill_rounds} kill round(s).",
        "",
        "| " + " | ".join(title for _, title in _COLUMNS) + " |",
        "|" + "---|" * len(_COLUMNS),
    ]
    lines += ["| " + " | ".join(_cell(r, name) for name, _ in _COLUMNS) + " |" for r in results]
    return "\n".join(lines) + "\n"


def write(
    profile: ChaosProfile, results: list[ScenarioResult], directory: Path = REPORT_DIR
) -> Path:
    """Write the JSON and the markdown table; returns the JSON's path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"chaos-{profile.name}.json"
    path.write_text(
        json.dumps(
            {
                "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": {"cpus": _cpus(), "python": platform.python_version()},
                "profile": profile.name,
                "scenarios": [r.as_json() for r in results],
            },
            indent=2,
        )
    )
    (directory / f"chaos-{profile.name}.md").write_text(markdown(profile, results))
    return path


def _cpus() -> int:
    import os

    return os.cpu_count() or 0
