"""The publish budget inside a shard: per-tenant tokens leased in batches, and the
conversations held while their tenant has none (issue 13, docs/tenants.md).

A token is one published event (the item's own event, its conversation's state events, a
dead letter's placeholder). An entry takes one token when it is let into a batch (its
events are not known before it is sequenced); the commit then settles the difference
(state events cost more, duplicates give theirs back), so the balance may go below zero
by a batch's state events and the tenant's next entries wait until leases repay it.

Tokens come from the tenant's limiter actor (actors/tenant_limiter.py) in leases of up to
`lease_s` seconds of its rate, never one call per event: one lease in flight per tenant
per shard, in a background task, so the shard loop never waits on the actor. Tokens not
used within two lease periods are dropped (never handed back): a shard holding a tenant's
tokens idle must not let it burst past its rate later, nor starve the tenant's other
shards for long.

A tenant without tokens has its conversations held here from their first entry that
found none (that entry and every later one of the conversation the shard takes, in order,
uncommitted: a crash redelivers them), like the media waits and the failure park
(actors/shard_media.py, actors/shard_retry.py); the shard keeps reading and publishing the
other tenants' conversations. Held entries are bounded by `max_held` per shard: past it
the shard stops reading until tokens come (a flood of one tenant then delays the others'
entries of the same partition; the known limit, docs/tenants.md).

The limiter unreachable (restarting, its node gone): the lease fails, its task waits a
backoff and tries again; the tenant's entries stay held (fail closed: the budget is never
exceeded), the stall watch reports a partition that stops advancing.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import structlog

from actors.tenant_budget import Lease

T = TypeVar("T")
log = structlog.get_logger("shard_throttle")

_FIRST_RATE = 80.0  # the lease size before the limiter said the tenant's rate
_POLL_MS = 5  # the read's block while a lease is in flight for held entries
_RETRY_MAX_S = 5.0


class LeasePort(Protocol):
    """Where a shard's publish tokens come from (the tenant limiter actors)."""

    async def lease(self, tenant_id: str, want: int) -> Lease:
        """Up to `want` tokens of the tenant's publish budget now; raises when the
        limiter cannot be reached (the caller retries)."""
        ...


class ThrottleMetrics(Protocol):
    """What the throttle reports: must not block or raise."""

    def waited(self, tenant_id: str, seconds: float) -> None:
        """An entry held `seconds` for its tenant's tokens was let into a batch."""
        ...

    def granted(self, tenant_id: str, tokens: int) -> None:
        """A lease brought `tokens` tokens."""
        ...


class NoThrottleMetrics:
    """ThrottleMetrics that keeps counters only (tests, the default)."""

    def __init__(self) -> None:
        self.waits: list[tuple[str, float]] = []
        self.tokens: dict[str, int] = {}

    def waited(self, tenant_id: str, seconds: float) -> None:
        """See ThrottleMetrics."""
        self.waits.append((tenant_id, seconds))

    def granted(self, tenant_id: str, tokens: int) -> None:
        """See ThrottleMetrics."""
        self.tokens[tenant_id] = self.tokens.get(tenant_id, 0) + tokens


@dataclass(frozen=True, slots=True)
class PublishBudget:
    """What a shard needs to keep its tenants to their publish rates."""

    leases: LeasePort
    lease_s: float  # each lease asks for this many seconds of the tenant's rate
    max_held: int  # entries held per shard before it stops reading
    metrics: ThrottleMetrics | None = None


@dataclass(slots=True)
class _Tenant:
    balance: float = 0.0
    leased_at: float = 0.0  # when the balance was last topped up (tokens expire after)
    rate: float = _FIRST_RATE
    task: asyncio.Task[None] | None = None
    retry_at: float = 0.0  # a short lease's retry time: no read-poll until then
    # Held conversations, earliest held first: their entries with the time each was held.
    held: OrderedDict[str, list[tuple[Any, float]]] = field(default_factory=OrderedDict)
    held_count: int = 0


class ShardThrottle(Generic[T]):
    """One shard's publish tokens by tenant and the conversations held for them."""

    def __init__(
        self,
        leases: LeasePort,
        entry_id: Callable[[T], str],
        key: Callable[[T], tuple[str, str]],
        lease_s: float,
        max_held: int,
        metrics: ThrottleMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`key(entry)`: its (tenant id, conversation id)."""
        self._leases = leases
        self._entry_id = entry_id
        self._key = key
        self._lease_s = lease_s
        self.max_held = max_held
        self._metrics: ThrottleMetrics = metrics or NoThrottleMetrics()
        self._clock = clock
        self._tenants: dict[str, _Tenant] = {}
        self._held_cids: dict[str, str] = {}  # held conversation -> its tenant
        self.ids: set[str] = set()  # entry ids held (a store re-reading them: skipped)
        self._arrived = asyncio.Event()  # a lease brought tokens for held entries
        self._warmed: set[str] = set()  # tenants whose limiter was asked for once
        self._warming: set[asyncio.Future[None]] = set()

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def full(self) -> bool:
        """The shard holds `max_held` entries: read no more until tokens come."""
        return len(self.ids) >= self.max_held

    def holds(self, conversation_id: str) -> bool:
        """Whether the conversation is held (its later entries must wait behind)."""
        return conversation_id in self._held_cids

    def behind(self, conversation_id: str, entry: T, since: float | None = None) -> None:
        """A later entry of a held conversation: held behind the others (`since`: when it
        was first held, if it was before)."""
        tenant = self._tenants[self._held_cids[conversation_id]]
        tenant.held[conversation_id].append((entry, self._clock() if since is None else since))
        tenant.held_count += 1
        self.ids.add(self._entry_id(entry))

    def admit(self, entry: T, since: float | None = None) -> bool:
        """Take a token for the entry (True), or hold its conversation from it on (False:
        a lease is started; `since`: when it was first held, if it was before). The caller
        holds later entries of a held conversation `behind` it."""
        tenant_id, cid = self._key(entry)
        tenant = self._tenant(tenant_id)
        now = self._clock()
        self._expire(tenant, now)
        if tenant.balance >= 1:
            tenant.balance -= 1
            return True
        tenant.held[cid] = [(entry, now if since is None else since)]
        tenant.held_count += 1
        self._held_cids[cid] = tenant_id
        self.ids.add(self._entry_id(entry))
        self._ensure_lease(tenant_id, tenant)
        return False

    def admitted_after_hold(self, entry: T, held_since: float) -> None:
        """Report the wait of an entry that was held and is now let in."""
        tenant_id, _ = self._key(entry)
        self._metrics.waited(tenant_id, max(0.0, self._clock() - held_since))

    def take(self, conversation_id: str) -> list[T]:
        """Every held entry of the conversation, no longer held (to the failure park)."""
        tenant_id = self._held_cids.pop(conversation_id, None)
        if tenant_id is None:
            return []
        tenant = self._tenants[tenant_id]
        entries = [entry for entry, _ in tenant.held.pop(conversation_id, [])]
        tenant.held_count -= len(entries)
        self.ids.difference_update(self._entry_id(e) for e in entries)
        return entries

    def due(self) -> bool:
        """Whether some held conversation's tenant has a token now (release it)."""
        return any(t.held and t.balance >= 1 for t in self._tenants.values())

    def release(self) -> list[tuple[T, float]]:
        """Held conversations (earliest held first) whose tenant has tokens, as many as
        its balance covers (at least one conversation), each with the time it was held;
        no longer held. Their entries take their tokens when let into a batch."""
        released: list[tuple[T, float]] = []
        now = self._clock()
        for tenant_id, tenant in self._tenants.items():
            self._expire(tenant, now)
            budget = math.floor(tenant.balance)
            while tenant.held and budget > 0:
                cid, entries = tenant.held.popitem(last=False)
                del self._held_cids[cid]
                tenant.held_count -= len(entries)
                self.ids.difference_update(self._entry_id(e) for e, _ in entries)
                released += entries
                budget -= len(entries)
            if tenant.held:
                self._ensure_lease(tenant_id, tenant)
        return released

    def settle(self, tenant_id: str, tokens: int) -> None:
        """A committed batch published `tokens` more events of the tenant than its entries
        took (negative: fewer, e.g. duplicates)."""
        if tokens:
            tenant = self._tenant(tenant_id)
            tenant.balance -= tokens
            if tenant.held:
                self._ensure_lease(tenant_id, tenant)

    def next_check_ms(self) -> int | None:
        """How long the shard's read may block before looking at the holds again: 0 when
        some can go now, a few ms while a lease for held entries is in flight, until a
        short lease's retry otherwise; None when nothing is held."""
        if not self.ids:
            return None
        if self.due():
            return 0
        now = self._clock()
        waits = []
        for tenant in self._tenants.values():
            if not tenant.held:
                continue
            if tenant.retry_at > now:
                waits.append(math.ceil((tenant.retry_at - now) * 1000))
            else:
                waits.append(_POLL_MS)
        return max(1, min(waits)) if waits else None

    async def wait(self, timeout_s: float) -> None:
        """Until a lease brings tokens for held entries, or `timeout_s`."""
        self._arrived.clear()
        if self.due():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._arrived.wait(), timeout=timeout_s)

    def balance(self, tenant_id: str) -> float:
        """The tenant's tokens in this shard (tests, stats)."""
        tenant = self._tenants.get(tenant_id)
        return tenant.balance if tenant is not None else 0.0

    def warm(self, tenant_ids: Iterable[str]) -> None:
        """Make sure these tenants' limiters run before their first entry needs one: a
        new limiter is a new worker process (about 2 s on 2 cores), which the first
        entries of a tenant would otherwise wait for. One empty lease per tenant, once."""
        for tenant_id in tenant_ids:
            if tenant_id in self._warmed:
                continue
            self._warmed.add(tenant_id)
            task = asyncio.ensure_future(self._warm(tenant_id))
            self._warming.add(task)
            task.add_done_callback(self._warming.discard)

    async def _warm(self, tenant_id: str) -> None:
        try:
            lease = await self._leases.lease(tenant_id, 0)
        except Exception as exc:  # noqa: BLE001 -- only a head start: the first lease retries
            self._warmed.discard(tenant_id)
            log.info("limiter_warm_failed", tenant_id=tenant_id, error=repr(exc)[:200])
            return
        self._tenant(tenant_id).rate = lease.rate_per_s

    def close(self) -> None:
        """Cancel the leases in flight (the shard is stopping)."""
        for tenant in self._tenants.values():
            if tenant.task is not None:
                tenant.task.cancel()
        for task in list(self._warming):
            task.cancel()
        self._warmed.clear()

    def _tenant(self, tenant_id: str) -> _Tenant:
        tenant = self._tenants.get(tenant_id)
        if tenant is None:
            tenant = self._tenants[tenant_id] = _Tenant()
        return tenant

    def _expire(self, tenant: _Tenant, now: float) -> None:
        if tenant.balance > 0 and now - tenant.leased_at > 2 * self._lease_s:
            tenant.balance = 0.0

    def _ensure_lease(self, tenant_id: str, tenant: _Tenant) -> None:
        if tenant.task is None or tenant.task.done():
            tenant.task = asyncio.ensure_future(self._lease_loop(tenant_id, tenant))

    def _want(self, tenant: _Tenant) -> int:
        """A lease period's worth of the tenant's rate (one call per period at most while
        it is busy, whatever its events per second)."""
        return max(1, math.ceil(tenant.rate * self._lease_s))

    async def _lease_loop(self, tenant_id: str, tenant: _Tenant) -> None:
        """Lease until the held entries (and any debt) are covered; a short lease waits
        the limiter's retry time, a failed one a doubling backoff."""
        backoff = 0.05
        while tenant.held or tenant.balance < 0:
            want = self._want(tenant)
            try:
                lease = await self._leases.lease(tenant_id, want)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 -- the limiter restarting: retried below
                log.warning("limiter_lease_failed", tenant_id=tenant_id, error=repr(exc)[:200])
                tenant.retry_at = self._clock() + backoff
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _RETRY_MAX_S)
                continue
            backoff = 0.05
            tenant.rate = lease.rate_per_s
            now = self._clock()
            if lease.granted:
                self._expire(tenant, now)
                tenant.balance += lease.granted
                tenant.leased_at = now
                self._metrics.granted(tenant_id, lease.granted)
                if tenant.balance >= 1:
                    self._arrived.set()
            if lease.granted < want and (tenant.held or tenant.balance < 0):
                wait = min(max(lease.retry_after_s, 0.001), _RETRY_MAX_S)
                tenant.retry_at = now + wait
                await asyncio.sleep(wait)
            elif tenant.balance >= 1:
                return  # covered: the shard lets the entries in on its next pass
