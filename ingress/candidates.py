"""Which app secrets a body's signature is checked against, chosen so that the path does not
tell which tenants exist.

`POST /webhook` checks every configured secret. `POST /webhook/{tenant_id}` checks that
tenant's secrets, padded with random decoys (which no body can match: 256 random bits
each, drawn per replica) up to as many as the tenant with the most secrets has; a tenant id
that is not configured gets only decoys. Every tenant path therefore costs the same number
of HMACs, and an unknown tenant is answered exactly like a wrong signature (403
`signature_mismatch`, counted as a mismatch), after the allowlist, the body checks and the
read, like any other request: tenant ids cannot be enumerated from outside.

The directory is live (the registry's watcher swaps it, cluster/tenant_wiring.py), so the
candidates are rebuilt on the first request after its `version` moved: one int compare
per request otherwise. The rebuild keeps the replica's decoys (drawing more when the
widest tenant grew), so the padding stays uniform across every path of one version.
"""

from __future__ import annotations

from secrets import token_bytes

from models.tenant import TenantDirectory

Candidates = dict[bytes, frozenset[str]]
"""App secret -> ids of the tenants whose secret it is (empty for a decoy)."""


class SecretCandidates:
    """The candidate secrets of each webhook path, rebuilt when the directory changes."""

    def __init__(self, directory: TenantDirectory) -> None:
        self._directory = directory
        self._decoys: list[bytes] = []
        self._build()

    def _build(self) -> None:
        directory = self._directory
        # Read the version first: a swap during the build makes the next request rebuild.
        self._version = directory.version
        every = directory.secrets()
        own: dict[str, Candidates] = {}
        for secret, holders in every.items():
            for tenant_id in holders:
                own.setdefault(tenant_id, {})[secret] = frozenset({tenant_id})
        for tenant in directory.tenants:
            own.setdefault(tenant.id, {})
        width = max((len(secrets) for secrets in own.values()), default=1) or 1
        while len(self._decoys) < width:
            self._decoys.append(token_bytes(32))
        decoys = self._decoys[:width]
        self.every: Candidates = every
        self.width = width
        self._unknown: Candidates = dict.fromkeys(decoys, frozenset())
        self._tenants: dict[str, Candidates] = {
            tenant_id: {**secrets, **dict.fromkeys(decoys[len(secrets) :], frozenset())}
            for tenant_id, secrets in own.items()
        }

    def for_path(self, tenant_id: str | None) -> Candidates:
        """Every secret for /webhook; the tenant's secrets padded with decoys (only decoys
        for a tenant that is not configured) for /webhook/{tenant_id}; of the directory's
        current version."""
        if self._version != self._directory.version:
            self._build()
        if tenant_id is None:
            return self.every
        return self._tenants.get(tenant_id, self._unknown)
