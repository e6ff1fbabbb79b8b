"""What one delivery may store: how many items, and how many bytes once stored.

Every inbox entry is one item plus its own copy of what the item shares with the other
items of its change (the matching contact, the metadata, the entry's ids) plus a fixed
envelope (delivery id, time, kind, position, conversation id, ...). The copies are what
made one signed body expand: a 91 KB body of one 20 KB contact and 2,000 tiny messages
stored 41 MB (450x); at the 4 MiB body cap, 10,000 messages sharing a 4 MB contact would
have stored 40 GB in one Lua script. So the splitter charges each item's stored size
here before building it:

- an item may store at most `max_item_bytes` (envelope included);
- a delivery may store at most `max_stored_ratio` x its body + ITEM_ALLOWANCE x its items
  (at most `max_items`): the allowance pays for each entry's envelope (~440 bytes) and its
  copy of the change's metadata, so tiny items are never refused for their envelope.

Meta's own deliveries copy little: the contact (~100 B) and the metadata (~80 B) per item.
Measured with the project's and Meta's documented payloads and 1,000-item batches shaped
like Meta's (one sender, many senders, statuses, reactions, errors), they store at most
0.6 x the body beyond the allowance (the default ratio is 4), and at most 2.9 x the body
in content copied from it (1,000 value-level errors of 50 bytes). Sizes are
measured with the caller's JSON encoder (models stay standard-library only): the estimate
is never below the stored size and at most ~128 bytes above it (tested against
adapters/codec.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from models.inbox import InboxItem

# `{"name":value,...}`: quotes, colon and comma per field, the braces once.
_KEYS_BYTES = sum(len(name) + 4 for name in InboxItem.model_fields) + 1
# Upper bounds of the values every entry has: v 1, received_at 34 (ISO, microseconds and
# offset, quoted), kind 9, position 64 (three 64-bit ints), conversation_id 34 (32 hex,
# quoted), partition 20, held 16 ("unowned_number", quoted), registry_version 20.
_FIXED_VALUE_BYTES = 1 + 34 + 9 + 64 + 34 + 20 + 16 + 20
_NULL_BYTES = 4
ITEM_ALLOWANCE = 1024
"""Bytes each item may store beyond the ratio: its envelope plus ~580 bytes of copies."""


class TooManyItemsError(ValueError):
    """The delivery holds more items than one delivery may (answered 413)."""


class DeliveryTooLargeError(ValueError):
    """An item, or the delivery, would store more bytes than allowed (answered 413)."""


@dataclass(frozen=True, slots=True)
class DeliveryLimits:
    """The bounds on one delivery's items, and how to measure a value's JSON size."""

    max_items: int
    max_item_bytes: int
    max_stored_ratio: int
    dumps: Callable[[Any], bytes]  # a value as compact JSON (orjson.dumps in the ingress)

    def check_count(self, count: int) -> None:
        """TooManyItemsError when `count` items are more than one delivery may hold."""
        if count > self.max_items:
            raise TooManyItemsError(f"the delivery holds more than {self.max_items} items")


class DeliverySizer:
    """Charges each item's stored size against one delivery's limits, before it is built."""

    def __init__(
        self, limits: DeliveryLimits, delivery_id: str, body_bytes: int, items: int
    ) -> None:
        self._limits = limits
        self._dumps = limits.dumps
        self.envelope = _KEYS_BYTES + _FIXED_VALUE_BYTES + len(limits.dumps(delivery_id))
        self.budget = limits.max_stored_ratio * body_bytes + ITEM_ALLOWANCE * items
        self.stored_bytes = 0  # the estimate of everything charged so far
        # Contacts are shared by the items of a change: measured once each (by identity;
        # they are objects of the parsed body, alive for the whole split).
        self._contacts: dict[int, int] = {}

    def shared(self, values: Sequence[Any]) -> int:
        """The bytes of a change's shared values, measured once per change (an upper bound:
        the array's brackets and commas are counted too)."""
        return len(self._dumps(values))

    def _contact(self, contact: dict[str, Any] | None) -> int:
        if contact is None:
            return _NULL_BYTES
        size = self._contacts.get(id(contact))
        if size is None:
            size = self._contacts[id(contact)] = len(self._dumps(contact))
        return size

    def charge(self, shared: int, key: str, contact: dict[str, Any] | None, raw: Any) -> int:
        """Count one item (its change's `shared` bytes, conversation key, contact, raw item);
        DeliveryTooLargeError past the item cap or the delivery's budget. Returns the
        item's estimated stored size."""
        # One encoding for both: `["key",raw]` is their sizes plus 3 bytes.
        content = shared + len(self._dumps((key, raw))) + self._contact(contact)
        item_bytes = self.envelope + content
        if item_bytes > self._limits.max_item_bytes:
            raise DeliveryTooLargeError(
                f"an item would store more than {self._limits.max_item_bytes} bytes"
            )
        self.stored_bytes += item_bytes
        if self.stored_bytes > self.budget:
            raise DeliveryTooLargeError(
                f"the items would store more than {self._limits.max_stored_ratio} times the "
                f"body's size plus {ITEM_ALLOWANCE} bytes per item"
            )
        return item_bytes
