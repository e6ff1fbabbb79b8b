"""What the chaos suite asserts of the consumed stream, beyond the harness's ledger.

The ledger (loadtest/accounting.py) counts loss and duplicates per tracking key, but its
order check compares each event with the last one only, so a batch redelivered after a
crash (the same events again, same sequences and ids, after later ones) reads as a
violation there. Under faults that redelivery is the promised behaviour (at-least-once,
consumers dedupe on `event_id`), so order is checked here as a deduplicating consumer
sees it: per conversation, among distinct event ids, sequences strictly increase, and a
repeated event id always carries the sequence it had the first time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class StreamCheck:
    """Order and duplicate facts of one consumed stream (state events included)."""

    events: int = 0
    distinct: int = 0
    duplicates: int = 0  # deliveries of an event id already consumed in its conversation
    order_violations: int = 0  # a new event id with a sequence not above the conversation's
    renumbered: int = 0  # a repeated event id with a different sequence
    examples: list[dict[str, Any]] = field(default_factory=list)

    def _example(self, **facts: Any) -> None:
        if len(self.examples) < 10:
            self.examples.append(facts)


def check_stream(events: Iterable[dict[str, Any]]) -> StreamCheck:
    """Walk the events in consume order and count what a deduplicating consumer would see."""
    result = StreamCheck()
    seen: dict[str, dict[str, int]] = {}  # conversation -> event id -> sequence
    highest: dict[str, int] = {}
    for event in events:
        result.events += 1
        conversation = str(event.get("conversation_id"))
        event_id = str(event.get("event_id"))
        sequence = int(event.get("sequence", 0))
        ids = seen.setdefault(conversation, {})
        if event_id in ids:
            result.duplicates += 1
            if ids[event_id] != sequence:
                result.renumbered += 1
                result._example(
                    kind="renumbered", event_id=event_id, was=ids[event_id], got=sequence
                )
            continue
        result.distinct += 1
        ids[event_id] = sequence
        top = highest.get(conversation)
        if top is not None and sequence <= top:
            result.order_violations += 1
            result._example(kind="order", conversation_id=conversation, after=top, got=sequence)
            continue
        highest[conversation] = sequence
    return result
