"""`python -m cluster tenants list|show|add|disable|enable|delete` in a child process, as a
user runs it, on the embedded SQLite registry and on Redis: the file's tenant seeded, a
tenant added from --json and --file, disabled and enabled, deleted and never seeded back,
the registry's refusals as exit codes, and never a secret on stdout or stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from tests.conftest import REDIS_URL

SECRET = "the-file-tenants-app-secret"
NEW_SECRET = "a-new-tenants-app-secret"
ACCESS = "a-new-tenants-access-token"

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Cli:
    """The CLI in a child process with one tenant in WA_TENANTS_FILE, on the store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_")}
    env["WA_DATA_DIR"] = str(tmp_path)
    tenants_file = tmp_path / "tenants.json"
    filed = {"id": "filed", "app_secrets": [SECRET], "phone_number_ids": ["106"], "default": True}
    tenants_file.write_bytes(orjson.dumps({"tenants": [filed]}))
    env["WA_TENANTS_FILE"] = str(tenants_file)
    if request.param == "redis":
        env["WA_REDIS_URL"] = REDIS_URL
        env["WA_REDIS_PREFIX"] = request.getfixturevalue("redis_prefix")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "cluster", "tenants", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        for secret in (SECRET, NEW_SECRET, ACCESS):
            assert secret not in done.stdout
            assert secret not in done.stderr
        return done

    return run


def new_tenant(**extra: object) -> str:
    body = {
        "id": "acme",
        "app_secrets": [NEW_SECRET],
        "access_token": ACCESS,
        "phone_number_ids": ["107"],
    }
    return orjson.dumps(body | extra).decode()


def test_list_shows_the_seeded_file_tenant(cli: Cli) -> None:
    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    tenants = orjson.loads(listed.stdout)["tenants"]
    assert [t["id"] for t in tenants] == ["filed"]
    assert tenants[0]["app_secrets"] == [{"app_id": None, "set": True}]


def test_add_disable_enable_delete(cli: Cli, tmp_path: Path) -> None:
    added = cli("add", "--json", new_tenant())
    assert added.returncode == 0, added.stderr
    assert orjson.loads(added.stdout)["tenant"]["access_token"] == {"set": True}
    disabled = cli("disable", "acme")
    assert disabled.returncode == 0, disabled.stderr
    assert orjson.loads(cli("show", "acme").stdout)["tenant"]["disabled"] is True
    assert cli("enable", "acme").returncode == 0
    shown = cli("show", "acme")
    assert shown.returncode == 0, shown.stderr
    assert orjson.loads(shown.stdout)["tenant"]["disabled"] is False
    deleted = cli("delete", "filed")
    assert deleted.returncode == 0, deleted.stderr
    listed = orjson.loads(cli("list").stdout)["tenants"]
    assert [t["id"] for t in listed] == ["acme"]  # the file's tenant is not seeded back


def test_add_from_a_file_of_several(cli: Cli, tmp_path: Path) -> None:
    many = tmp_path / "more.json"
    many.write_text(
        '{"tenants": [' + new_tenant() + "," + new_tenant(id="beta", phone_number_ids=[]) + "]}"
    )
    added = cli("add", "--file", str(many))
    assert added.returncode == 0, added.stderr
    ids = [t["id"] for t in orjson.loads(cli("list").stdout)["tenants"]]
    assert sorted(ids) == ["acme", "beta", "filed"]


def test_refusals_are_exit_codes_with_a_reason(cli: Cli) -> None:
    assert cli("add", "--json", new_tenant()).returncode == 0
    again = cli("add", "--json", new_tenant())
    assert again.returncode == 1
    assert "already registered" in again.stderr
    thief = cli("add", "--json", new_tenant(id="thief", phone_number_ids=["107"]))
    assert thief.returncode == 1
    assert "107" in thief.stderr
    invalid = cli("add", "--json", new_tenant(colour="blue"))
    assert invalid.returncode == 2
    assert "colour" in invalid.stderr
    broken = cli("add", "--json", "{not json")
    assert broken.returncode == 2
    missing = cli("show", "nobody")
    assert missing.returncode == 1
    assert "nobody" in missing.stderr
