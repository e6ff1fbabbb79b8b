"""The Meta traffic generator: signed, batched webhook deliveries with duplicates and reordering.

Deliveries follow Meta's shape: one POST per app (so one tenant's secret signs it), with
one entry per WABA, one change per business number, and several messages and statuses
per change. Duplicates come in Meta's two flavours: the same body re-sent byte for byte,
and an item already delivered showing up again in a new body. Statuses of an outbound
message are planned sent → delivered → read (or sent → failed) and, at `reorder_rate`,
two adjacent ones are swapped so the later state arrives first.
"""

from __future__ import annotations

import random
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from ingress.signature import sign
from loadtest.payloads import (
    FIELD_BUILDERS,
    MESSAGE_WEIGHTS,
    STATUS_FLOW,
    Item,
    field_key,
    inbound_message,
    message_key,
    status_item,
    status_key,
)
from loadtest.tenants import BusinessNumber, SimTenant

DeliveryKind = Literal["new", "resend", "reused_item"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One POST: the exact bytes, their signature and the tracking keys of its items."""

    tenant_id: str
    body: bytes
    signature: str
    keys: tuple[str, ...]
    kind: DeliveryKind
    stream: str = "text"  # which stream of the run it belongs to ("media": media_traffic)


@dataclass(slots=True)
class Conversation:
    """A customer talking to one business number of one tenant."""

    tenant: SimTenant
    number: BusinessNumber
    customer: str
    name: str
    last_wamid: str | None = None


@dataclass(frozen=True, slots=True)
class _Sent:
    """An item already delivered once, kept for 'same wamid in a new body' duplicates."""

    conversation: Conversation
    kind: str
    item: Item


@dataclass(slots=True)
class TrafficStats:
    """What the generator produced, for the report and the tests."""

    deliveries: int = 0
    items: int = 0
    resent_bodies: int = 0
    reused_items: int = 0
    reordered_statuses: int = 0
    by_type: dict[str, int] = field(default_factory=dict)


class TrafficGenerator:
    """Produces deliveries one at a time; deterministic for a given seed and clock."""

    def __init__(
        self,
        tenants: list[SimTenant],
        conversations: int,
        batch: int = 1,
        dup_rate: float = 0.0,
        reorder_rate: float = 0.0,
        status_share: float = 0.4,
        field_rate: float = 0.0,
        seed: int = 0,
        clock: Callable[[], float] = time.time,
        message_weights: dict[str, int] | None = None,
    ) -> None:
        if not tenants:
            raise ValueError("at least one tenant is needed")
        if conversations < 1 or batch < 1:
            raise ValueError("conversations and batch must be >= 1")
        self._rng = random.Random(seed)
        self._clock = clock
        self._nonce = secrets.token_hex(4) if seed == 0 else f"{seed:08x}"[-8:]
        self._batch = batch
        self._dup_rate = dup_rate
        self._reorder_rate = reorder_rate
        self._status_share = status_share
        self._field_rate = field_rate
        self._counter = 0
        self.tenants = tenants
        self.stats = TrafficStats()
        self._convs: dict[str, list[Conversation]] = {t.id: [] for t in tenants}
        for c in range(conversations):
            tenant = tenants[c % len(tenants)]
            number = tenant.numbers[(c // len(tenants)) % len(tenant.numbers)]
            customer = f"{self._rng.randrange(1, 10)}{self._rng.randrange(10**10, 10**11)}"
            self._convs[tenant.id].append(Conversation(tenant, number, customer, f"Cust {c}"))
        self._tenant_ids = [t.id for t in tenants if self._convs[t.id]]
        self._pending: dict[str, deque[tuple[Conversation, Item]]] = {
            t.id: deque() for t in tenants
        }
        self._recent_bodies: deque[Delivery] = deque(maxlen=256)
        self._recent_items: dict[str, deque[_Sent]] = {t.id: deque(maxlen=256) for t in tenants}
        weights = MESSAGE_WEIGHTS if message_weights is None else message_weights
        self._types = list(weights)
        self._weights = list(weights.values())

    def _wamid(self) -> str:
        self._counter += 1
        return f"wamid.LT{self._nonce}{self._counter:010d}"

    def _plan_statuses(self, conv: Conversation, ts: int) -> None:
        """An outbound message to the customer and the statuses Meta will report for it."""
        wamid = self._wamid()
        flow = list(STATUS_FLOW) if self._rng.random() >= 0.05 else ["sent", "failed"]
        if self._rng.random() < self._reorder_rate:
            i = self._rng.randrange(len(flow) - 1)
            flow[i], flow[i + 1] = flow[i + 1], flow[i]
            self.stats.reordered_statuses += 1
        conv_id = f"CONV{self._nonce}{self._counter}"
        for offset, state in enumerate(flow):
            self._pending[conv.tenant.id].append(
                (conv, status_item(wamid, state, conv.customer, ts + offset, conv_id))
            )

    def _new_slot(self, tenant_id: str, ts: int) -> tuple[Conversation, str, Item]:
        pending = self._pending[tenant_id]
        if pending and self._rng.random() < self._status_share:
            conv, item = pending.popleft()
            return conv, "status", item
        conv = self._rng.choice(self._convs[tenant_id])
        if self._field_rate and self._rng.random() < self._field_rate:
            name = self._rng.choice(list(FIELD_BUILDERS))
            return conv, f"field:{name}", FIELD_BUILDERS[name](self._rng, ts)
        kind = self._rng.choices(self._types, self._weights)[0]
        wamid = self._wamid()
        message = inbound_message(self._rng, wamid, conv.customer, ts, kind, conv.last_wamid)
        conv.last_wamid = wamid
        if self._rng.random() < 0.5:
            self._plan_statuses(conv, ts)
        return conv, "message", message

    def next_delivery(self) -> Delivery:
        """The next POST Meta would make."""
        self.stats.deliveries += 1
        if self._recent_bodies and self._rng.random() < self._dup_rate / 2:
            old = self._rng.choice(self._recent_bodies)
            self.stats.resent_bodies += 1
            self.stats.items += len(old.keys)
            return Delivery(old.tenant_id, old.body, old.signature, old.keys, "resend")
        tenant_id = self._rng.choice(self._tenant_ids)
        ts = int(self._clock())
        slots = [self._new_slot(tenant_id, ts) for _ in range(self._batch)]
        kind: DeliveryKind = "new"
        recent = self._recent_items[tenant_id]
        if recent and self._rng.random() < self._dup_rate / 2:
            again = self._rng.choice(recent)
            slots[self._rng.randrange(len(slots))] = (again.conversation, again.kind, again.item)
            self.stats.reused_items += 1
            kind = "reused_item"
        for conv, slot_kind, item in slots:
            if slot_kind in ("message", "status"):
                recent.append(_Sent(conv, slot_kind, item))
        body, keys = self._render(self._tenant(tenant_id), slots)
        self.stats.items += len(keys)
        delivery = Delivery(
            tenant_id, body, sign(self._tenant(tenant_id).secret_bytes, body), keys, kind
        )
        self._recent_bodies.append(delivery)
        return delivery

    def _tenant(self, tenant_id: str) -> SimTenant:
        return next(t for t in self.tenants if t.id == tenant_id)

    def _render(
        self, tenant: SimTenant, slots: list[tuple[Conversation, str, Item]]
    ) -> tuple[bytes, tuple[str, ...]]:
        """Group the slots into entries (per WABA) and changes (per number or field)."""
        entries: dict[str, list[dict[str, Any]]] = {}
        values: dict[tuple[str, str], dict[str, Any]] = {}
        keys: list[str] = []
        for conv, kind, item in slots:
            waba = conv.number.waba_id
            changes = entries.setdefault(waba, [])
            label = f"message:{item['type']}" if kind == "message" else kind
            if kind == "status":
                label = f"status:{item['status']}"
            self.stats.by_type[label] = self.stats.by_type.get(label, 0) + 1
            if kind.startswith("field:"):
                name = kind.removeprefix("field:")
                changes.append({"field": name, "value": item})
                keys.append(field_key(name, item["message_template_id"]))
                continue
            value = values.get((waba, conv.number.phone_number_id))
            if value is None:
                value = {
                    "messaging_product": "whatsapp",
                    "metadata": {
                        "display_phone_number": conv.number.display_phone_number,
                        "phone_number_id": conv.number.phone_number_id,
                    },
                }
                values[(waba, conv.number.phone_number_id)] = value
                changes.append({"field": "messages", "value": value})
            if kind == "message":
                contacts = value.setdefault("contacts", [])
                if all(c["wa_id"] != conv.customer for c in contacts):
                    contacts.append({"profile": {"name": conv.name}, "wa_id": conv.customer})
                value.setdefault("messages", []).append(item)
                keys.append(message_key(item))
            else:
                value.setdefault("statuses", []).append(item)
                keys.append(status_key(item))
        body = {
            "object": "whatsapp_business_account",
            "entry": [{"id": waba, "changes": changes} for waba, changes in entries.items()],
        }
        return orjson.dumps(body), tuple(keys)
