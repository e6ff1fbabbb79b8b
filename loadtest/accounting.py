"""Matching what was sent with what was published: loss, duplicates, order, latency.

Definitions (the report and docs/benchmarks.md use exactly these):

- A *tracking key* identifies one webhook item: the wamid for a message,
  `<wamid>:<status>` for a status (both are the service's `event_id`), and
  `<field>:<message_template_id>` for the template field events the generator sends.
- *Attempted copies* of a key: how many POST attempts carried it, counting every
  deliberate duplicate (a re-sent body, an item repeated in a new body) and every retry.
- *Acked*: at least one POST that carried the key was answered 200.
- *Lost*: acked, but never published before the grace period ended.
- *Published duplicates*: publications of a key beyond its first.
- *Unexpected duplicates*: publications beyond what the senders made inevitable. Without
  delivery dedup in the service (`expect_dedup=False`) every attempted copy may legitimately
  be published once, so the allowance is the attempted copies; with dedup it is 1.
- *State events*: the service's `conversation.created` / `conversation.updated` (category
  `conversation`, actors/conversation.py). They are no item's publication, so they are
  never lost, duplicates or unexpected, and are counted apart (`state_events`, by type).
  A state event is the run's when an item event of the run is published in its
  conversation (a `conversation.created` is consumed before the item that caused it, so
  it waits for that item); one whose conversation never gets an item event of the run is
  foreign. `conversations_created`: conversations with a
  `conversation.created`; `repeated_created`: `conversation.created` events, by distinct
  event id, beyond a conversation's first (a redelivery repeats the id: not counted).
- *Order violation*: an event whose `sequence` is not greater than the last one consumed
  for its `conversation_id`, over the whole stream of the run's conversations, state
  events included (they take sequences like any event). An exact re-publication (same
  conversation, sequence and event id, i.e. a broker redelivery) is counted as
  `republished`, not as a violation.
- *Streams*: a run may send more than one stream (the text stream of `--rate`, the media
  stream of `--media-rate`: loadtest/media_traffic.py); each key belongs to the stream
  that sent it (`assign`), and `streams()` gives acked, published, lost and
  ack→published per stream, so media messages are accounted exactly like the others and
  their slower publication is not mixed into the text's latency.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from loadtest.payloads import field_key
from loadtest.stats import summarize

DEFAULT_STREAM = "text"
"""The stream of keys not assigned to another (the `--rate` traffic)."""

STATE_CATEGORY = "conversation"
"""The category of the service's state events (actors/conversation.py's
CONVERSATION_CATEGORY; not imported: the harness also measures other systems)."""


def is_state_event(event: dict[str, Any]) -> bool:
    """A state event (`conversation.created` / `.updated`), not an item's publication."""
    return event.get("category") == STATE_CATEGORY


def tracking_key_of_event(event: dict[str, Any]) -> str:
    """The tracking key of an item's published event (the inverse of what the generator
    sends); state events have none (is_state_event)."""
    event_id = str(event.get("event_id", ""))
    if event.get("category") in ("message", "status"):
        return event_id
    template_id = _find(event.get("data"), "message_template_id")
    if template_id is not None:
        return field_key(str(event.get("type")), template_id)
    return f"event:{event_id}"


def _find(data: Any, name: str, depth: int = 3) -> Any:
    """The first value of `name` in nested dicts (the service may wrap the raw value)."""
    if not isinstance(data, dict) or depth < 0:
        return None
    if name in data:
        return data[name]
    for value in data.values():
        found = _find(value, name, depth - 1)
        if found is not None:
            return found
    return None


def _numbering(event: dict[str, Any]) -> tuple[int, str]:
    """The event's (sequence, event_id), as the order checks take them."""
    return int(event.get("sequence", 0)), str(event.get("event_id"))


@dataclass(slots=True)
class OrderTracker:
    """Per-conversation sequence checks in consume order."""

    last: dict[str, tuple[int, str]] = field(default_factory=dict)
    violations: int = 0
    republished: int = 0
    gaps: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    def observe(self, conversation_id: str, sequence: int, event_id: str) -> bool:
        """Record one consumed event; False when it breaks the conversation's order."""
        previous = self.last.get(conversation_id)
        if previous is None:
            self.last[conversation_id] = (sequence, event_id)
            return True
        last_seq, last_id = previous
        if sequence == last_seq and event_id == last_id:
            self.republished += 1
            return True
        if sequence <= last_seq:
            self.violations += 1
            if len(self.examples) < 10:
                self.examples.append(
                    {"conversation_id": conversation_id, "after": last_seq, "got": sequence}
                )
            return False
        if sequence > last_seq + 1:
            self.gaps += 1
        self.last[conversation_id] = (sequence, event_id)
        return True


@dataclass(slots=True)
class LedgerSummary:
    """The accounting part of the report."""

    items_attempted: int
    keys_attempted: int
    keys_acked: int
    keys_published: int
    published_events: int
    deliberate_copies: int
    lost: int
    lost_examples: list[str]
    published_duplicates: int
    unexpected_duplicates: int
    published_unacked: int
    foreign_events: int
    order_violations: int
    republished: int
    sequence_gaps: int
    published_before_ack: int
    order_examples: list[dict[str, Any]]
    state_events: int
    state_events_by_type: dict[str, int]
    conversations_created: int
    repeated_created: int


class Ledger:
    """Sent and published items, matched by tracking key."""

    def __init__(self, expect_dedup: bool = False) -> None:
        self.expect_dedup = expect_dedup
        self.attempted: Counter[str] = Counter()
        self.first_ack: dict[str, float] = {}
        self.published: Counter[str] = Counter()
        self.first_published: dict[str, float] = {}
        self.foreign = 0
        self.order = OrderTracker()
        self.ours: set[str] = set()  # conversations an item event of the run was published in
        # State events of conversations not (yet) known to be the run's, in consume order:
        # (type, sequence, event_id), not the event (it carries the whole record).
        self.pending_state: dict[str, list[tuple[str, int, str]]] = {}
        self.state_by_type: Counter[str] = Counter()
        # The event ids of each conversation's `conversation.created`: a redelivery repeats
        # one (same id), which is no second creation.
        self.created: dict[str, set[str]] = {}
        self.stream_of: dict[str, str] = {}  # keys of a stream other than DEFAULT_STREAM

    def assign(self, keys: tuple[str, ...], stream: str) -> None:
        """These keys belong to `stream` (keys never assigned are DEFAULT_STREAM's)."""
        if stream != DEFAULT_STREAM:
            self.stream_of.update(dict.fromkeys(keys, stream))

    def stream(self, key: str) -> str:
        """The stream that sent the key."""
        return self.stream_of.get(key, DEFAULT_STREAM)

    def record_sending(self, keys: tuple[str, ...]) -> None:
        """A POST attempt carrying these keys is about to start.

        Registered before the request goes out, because the service may publish an item
        before its 200 reaches us; the event must not be mistaken for someone else's.
        """
        self.attempted.update(keys)

    def record_attempt(self, keys: tuple[str, ...], acked_at: float | None) -> None:
        """One POST attempt carrying these keys; acked_at is set when it was answered 200."""
        self.record_sending(keys)
        self.record_answer(keys, acked_at)

    def record_answer(self, keys: tuple[str, ...], acked_at: float | None) -> None:
        """The answer to an attempt already registered with record_sending."""
        if acked_at is not None:
            for key in keys:
                if key not in self.first_ack or acked_at < self.first_ack[key]:
                    self.first_ack[key] = acked_at

    def record_published(self, event: dict[str, Any], at: float) -> str | None:
        """One consumed event; returns its key, or None for someone else's event and for
        a state event (accounted apart, see the module docstring)."""
        if is_state_event(event):
            self._record_state(event)
            return None
        key = tracking_key_of_event(event)
        if key not in self.attempted:
            self.foreign += 1
            return None
        self.published[key] += 1
        self.first_published.setdefault(key, at)
        conversation_id = str(event.get("conversation_id"))
        if conversation_id not in self.ours:
            self.ours.add(conversation_id)
            # Consumed before this event: observed first, so the order checks see the
            # conversation's stream as it was consumed.
            for state in self.pending_state.pop(conversation_id, []):
                self._observe_state(conversation_id, *state)
        self.order.observe(conversation_id, *_numbering(event))
        return key

    def _record_state(self, event: dict[str, Any]) -> None:
        conversation_id = str(event.get("conversation_id"))
        state = (str(event.get("type")), *_numbering(event))
        if conversation_id in self.ours:
            self._observe_state(conversation_id, *state)
        else:
            self.pending_state.setdefault(conversation_id, []).append(state)

    def _observe_state(self, conversation_id: str, kind: str, sequence: int, event_id: str) -> None:
        self.state_by_type[kind] += 1
        if kind == "created":
            self.created.setdefault(conversation_id, set()).add(event_id)
        self.order.observe(conversation_id, sequence, event_id)

    def missing(self) -> int:
        """Acked keys not published yet (what the grace period waits for)."""
        return sum(1 for key in self.first_ack if key not in self.published)

    def ack_to_published(self) -> dict[str, float]:
        """Seconds from a key's first 200 to its first publication (negative clamped to 0)."""
        return {
            key: max(0.0, self.first_published[key] - acked)
            for key, acked in self.first_ack.items()
            if key in self.first_published
        }

    def streams(self) -> dict[str, dict[str, Any]]:
        """Per stream: keys attempted, acked, published, lost, and ack→published (ms)."""
        by: dict[str, dict[str, Any]] = {}
        delays = self.ack_to_published()
        for key in self.attempted:
            row = by.setdefault(
                self.stream(key),
                {"keys_attempted": 0, "keys_acked": 0, "keys_published": 0, "lost": 0},
            )
            row["keys_attempted"] += 1
            acked, published = key in self.first_ack, key in self.published
            row["keys_acked"] += acked
            row["keys_published"] += published
            row["lost"] += acked and not published
        for name, row in by.items():
            row["ack_to_published_ms"] = summarize(
                d for key, d in delays.items() if self.stream(key) == name
            )
        return by

    def summary(self) -> LedgerSummary:
        """Every count defined in the module docstring."""
        lost = [key for key in self.first_ack if key not in self.published]
        allowance = {
            key: 1 if self.expect_dedup else copies for key, copies in self.attempted.items()
        }
        return LedgerSummary(
            items_attempted=sum(self.attempted.values()),
            keys_attempted=len(self.attempted),
            keys_acked=len(self.first_ack),
            keys_published=len(self.published),
            published_events=sum(self.published.values()),
            deliberate_copies=sum(c - 1 for c in self.attempted.values()),
            lost=len(lost),
            lost_examples=sorted(lost)[:10],
            published_duplicates=sum(c - 1 for c in self.published.values()),
            unexpected_duplicates=sum(
                max(0, c - allowance[key]) for key, c in self.published.items()
            ),
            published_unacked=sum(1 for key in self.published if key not in self.first_ack),
            foreign_events=self.foreign + sum(len(e) for e in self.pending_state.values()),
            order_violations=self.order.violations,
            republished=self.order.republished,
            sequence_gaps=self.order.gaps,
            published_before_ack=sum(
                1
                for key, acked in self.first_ack.items()
                if key in self.first_published and self.first_published[key] < acked
            ),
            order_examples=list(self.order.examples),
            state_events=sum(self.state_by_type.values()),
            state_events_by_type=dict(self.state_by_type),
            conversations_created=len(self.created),
            repeated_created=sum(len(ids) - 1 for ids in self.created.values()),
        )
