"""Which app secrets a body's signature is checked against, chosen so that the path does not
tell which tenants exist.

`POST /webhook` checks every configured secret. `POST /webhook/{tenant_id}` checks that
tenant's secrets, padded with random decoys (which no body can match: 256 random bits
each, drawn per replica) up to as many as the tenant with the most secrets has; a tenant id
that is not configured gets only decoys. Every tenant path therefore costs the same number
of HMACs, and an unknown tenant is answered exactly like a wrong signature (403
`signature_mismatch`, counted as a mismatch), after the allowlist, the body checks and the
read, like any other request: tenant ids cannot be enumerated from outside.
"""

from __future__ import annotations

from secrets import token_bytes

from models.tenant import TenantDirectory

Candidates = dict[bytes, frozenset[str]]
"""App secret -> ids of the tenants whose secret it is (empty for a decoy)."""


class SecretCandidates:
    """The candidate secrets of each webhook path, computed once per replica."""

    def __init__(self, directory: TenantDirectory) -> None:
        self.every: Candidates = directory.secrets()
        own = {tenant.id: directory.secrets(tenant.id) for tenant in directory.tenants}
        self.width = max((len(secrets) for secrets in own.values()), default=1)
        decoys = [token_bytes(32) for _ in range(self.width)]
        self._unknown: Candidates = dict.fromkeys(decoys, frozenset())
        self._tenants: dict[str, Candidates] = {
            tenant_id: {**secrets, **dict.fromkeys(decoys[len(secrets) :], frozenset())}
            for tenant_id, secrets in own.items()
        }

    def for_path(self, tenant_id: str | None) -> Candidates:
        """Every secret for /webhook; the tenant's secrets padded with decoys (only decoys
        for a tenant that is not configured) for /webhook/{tenant_id}."""
        if tenant_id is None:
            return self.every
        return self._tenants.get(tenant_id, self._unknown)
