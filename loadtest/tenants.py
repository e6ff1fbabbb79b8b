"""The simulated tenants: app secrets, WABAs, business numbers and Graph API tokens.

The harness must sign with the secrets the service was configured with, so tenants come
either from the service's own tenants file (`WA_TENANTS_FILE` format) or are generated
here and written to such a file for the service to load.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import orjson
from pydantic import SecretStr

from models.tenant import Tenant, TenantsFile

DEV_APP_SECRET = "dev-app-secret"  # noqa: S105 -- the service's documented development default


@dataclass(frozen=True, slots=True)
class BusinessNumber:
    """One business phone number of a tenant and the WABA it belongs to."""

    phone_number_id: str
    display_phone_number: str
    waba_id: str


@dataclass(frozen=True, slots=True)
class SimTenant:
    """A tenant as the simulator sees it: who signs, which numbers, which Graph token."""

    id: str
    app_secret: str
    numbers: tuple[BusinessNumber, ...]
    access_token: str

    @property
    def secret_bytes(self) -> bytes:
        """The app secret as the HMAC key."""
        return self.app_secret.encode()

    @property
    def waba_ids(self) -> tuple[str, ...]:
        """The tenant's WABA ids, in number order, without repeats."""
        return tuple(dict.fromkeys(n.waba_id for n in self.numbers))


def generate_tenants(
    count: int,
    numbers_per_tenant: int = 2,
    seed: int = 0,
    shared_secret: str | None = None,
    prefix: str = "lt",
) -> list[SimTenant]:
    """`count` tenants with distinct ids, numbers and WABAs (one secret for all if given)."""
    rng = random.Random(seed)
    tenants: list[SimTenant] = []
    for t in range(count):
        waba_a = str(1_020_000_000_000_000 + rng.randrange(10**12))
        waba_b = str(1_030_000_000_000_000 + rng.randrange(10**12))
        numbers = tuple(
            BusinessNumber(
                phone_number_id=str(1_060_000_000_000_000 + t * 1000 + n),
                display_phone_number=f"1555{t:03d}{n:04d}",
                # Every second number sits in a second WABA, so a POST spans entries.
                waba_id=waba_a if n % 2 == 0 else waba_b,
            )
            for n in range(numbers_per_tenant)
        )
        secret = shared_secret or f"lt-secret-{seed}-{t}-{rng.randrange(10**9):09d}"
        tenants.append(
            SimTenant(
                id=f"{prefix}{t}",
                app_secret=secret,
                numbers=numbers,
                access_token=f"EAALT{seed}x{t}x{rng.randrange(10**12):012d}",
            )
        )
    return tenants


def to_tenants_file(tenants: list[SimTenant]) -> TenantsFile:
    """The service-side configuration of these tenants."""
    return TenantsFile(
        tenants=[
            Tenant(
                id=t.id,
                app_secrets=(SecretStr(t.app_secret),),
                access_token=SecretStr(t.access_token),
                waba_ids=frozenset(t.waba_ids),
                phone_number_ids=frozenset(n.phone_number_id for n in t.numbers),
            )
            for t in tenants
        ]
    )


HARNESS_PUBLISH_RATE = 1000.0
"""The harness's tenants' publish budget (`rules.publish_rate_per_s`): numbers upgraded to
Meta's HIGH throughput tier (1,000/s), as the platforms that load-test the service run.
The service's default for a tenant without the rule is its numbers' tiers (80/s for a
standard number), which would measure the limiter rather than the service."""


def write_tenants_file(
    tenants: list[SimTenant], path: Path, publish_rate_per_s: float | None = HARNESS_PUBLISH_RATE
) -> None:
    """Write a `WA_TENANTS_FILE` for the service (secrets in clear: a test fixture); each
    tenant with `publish_rate_per_s` as its rule (None: the service's default)."""
    parsed = to_tenants_file(tenants)
    rules = {} if publish_rate_per_s is None else {"publish_rate_per_s": publish_rate_per_s}
    doc = {
        "tenants": [
            {
                "id": t.id,
                "app_secrets": [s.get_secret_value() for s in t.app_secrets],
                "access_token": t.access_token.get_secret_value() if t.access_token else None,
                "waba_ids": sorted(t.waba_ids),
                "phone_number_ids": sorted(t.phone_number_ids),
                **({"rules": rules} if rules else {}),
            }
            for t in parsed.tenants
        ]
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))


def load_tenants_file(path: Path, numbers_per_tenant: int = 2) -> list[SimTenant]:
    """Simulated tenants from a service tenants file (numbers it lists, else generated)."""
    parsed = TenantsFile.model_validate(orjson.loads(path.read_bytes()))
    sims: list[SimTenant] = []
    for t_idx, tenant in enumerate(parsed.tenants):
        wabas = sorted(tenant.waba_ids) or [str(1_020_000_000_000_000 + t_idx)]
        phones = sorted(tenant.phone_number_ids) or [
            str(1_070_000_000_000_000 + t_idx * 1000 + n) for n in range(numbers_per_tenant)
        ]
        numbers = tuple(
            BusinessNumber(p, f"1555{t_idx:03d}{n:04d}", wabas[n % len(wabas)])
            for n, p in enumerate(phones)
        )
        token = tenant.access_token.get_secret_value() if tenant.access_token else f"EAALT{t_idx}"
        sims.append(SimTenant(tenant.id, tenant.app_secrets[0].get_secret_value(), numbers, token))
    return sims
