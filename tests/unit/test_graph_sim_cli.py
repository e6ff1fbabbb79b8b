"""`python -m loadtest graph-sim`'s one-tenant flags: the tenant the service is told about
(WA_ACCESS_TOKEN, the default tenant's number) is exactly the simulator's."""

from __future__ import annotations

import argparse

import pytest

from loadtest.__main__ import SAMPLE_PHONE_NUMBER_ID, SAMPLE_WABA_ID, _one_tenant, main


def _args(**given: str | None) -> argparse.Namespace:
    values: dict[str, str | None] = {"tenant_id": None, "phone_number_id": None, "waba_id": None}
    return argparse.Namespace(token="sim-token", **{**values, **given})


def test_the_token_alone_defines_the_default_tenant_on_send_tests_number() -> None:
    """--token: tenant `default` (WA_TENANT_ID's default) owning send-test's number."""
    tenant = _one_tenant(_args())
    assert (tenant.id, tenant.access_token) == ("default", "sim-token")
    assert [n.phone_number_id for n in tenant.numbers] == [SAMPLE_PHONE_NUMBER_ID]
    assert tenant.waba_ids == (SAMPLE_WABA_ID,)


def test_each_flag_sets_its_field() -> None:
    tenant = _one_tenant(_args(tenant_id="acme", phone_number_id="123456", waba_id="987654"))
    assert tenant.id == "acme"
    assert [(n.phone_number_id, n.waba_id) for n in tenant.numbers] == [("123456", "987654")]


@pytest.mark.parametrize("flag", ["--tenant-id", "--phone-number-id", "--waba-id"])
def test_a_one_tenant_flag_without_a_token_is_refused(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --token the flag would be silently ignored (generated tenants instead)."""
    with pytest.raises(SystemExit) as stopped:
        main(["graph-sim", flag, "1"])
    assert stopped.value.code == 2
    assert "need --token" in capsys.readouterr().err
