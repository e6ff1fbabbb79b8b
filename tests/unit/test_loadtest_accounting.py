"""The harness's accounting fed with known inputs: loss, duplicates, order, percentiles."""

from __future__ import annotations

import math

import pytest

from loadtest.accounting import Ledger, OrderTracker, tracking_key_of_event
from loadtest.stats import Series, percentile, summarize


def _event(key: str, conv: str, seq: int, category: str = "message") -> dict[str, object]:
    return {"event_id": key, "category": category, "conversation_id": conv, "sequence": seq}


def test_lost_is_acked_but_never_published() -> None:
    """An acked key with no publication is lost; an unacked one is not."""
    ledger = Ledger()
    ledger.record_attempt(("w1", "w2"), acked_at=1.0)
    ledger.record_attempt(("w3",), acked_at=None)
    ledger.record_published(_event("w1", "c1", 1), at=1.5)
    summary = ledger.summary()
    assert (summary.lost, summary.lost_examples) == (1, ["w2"])
    assert summary.keys_acked == 2
    assert ledger.missing() == 1


def test_deliberate_duplicates_are_expected_extra_ones_are_not() -> None:
    """Two copies sent allow two publications; a third is unexpected."""
    ledger = Ledger()
    ledger.record_attempt(("w1",), acked_at=1.0)
    ledger.record_attempt(("w1",), acked_at=2.0)  # the same body re-sent
    ledger.record_attempt(("w2",), acked_at=2.0)
    for seq in (1, 2, 3):
        ledger.record_published(_event("w1", "c1", seq), at=3.0)
    ledger.record_published(_event("w2", "c2", 1), at=3.0)
    summary = ledger.summary()
    assert summary.deliberate_copies == 1
    assert summary.published_duplicates == 2
    assert summary.unexpected_duplicates == 1


def test_expect_dedup_makes_every_republication_unexpected() -> None:
    """With dedup in the service, one publication per key is all that is allowed."""
    ledger = Ledger(expect_dedup=True)
    ledger.record_attempt(("w1",), acked_at=1.0)
    ledger.record_attempt(("w1",), acked_at=1.1)
    ledger.record_published(_event("w1", "c1", 1), at=2.0)
    ledger.record_published(_event("w1", "c1", 2), at=2.0)
    assert ledger.summary().unexpected_duplicates == 1


def test_foreign_events_are_counted_and_ignored() -> None:
    """Events nobody in this run sent neither count as published nor break order."""
    ledger = Ledger()
    ledger.record_attempt(("w1",), acked_at=1.0)
    assert ledger.record_published(_event("other", "c1", 9), at=1.0) is None
    ledger.record_published(_event("w1", "c1", 1), at=2.0)
    summary = ledger.summary()
    assert (summary.foreign_events, summary.order_violations, summary.lost) == (1, 0, 0)


def test_order_violations_per_conversation_in_consume_order() -> None:
    """A sequence not above the last one of its conversation is a violation."""
    order = OrderTracker()
    assert order.observe("c1", 1, "a")
    assert order.observe("c2", 5, "x")
    assert order.observe("c1", 2, "b")
    assert not order.observe("c1", 2, "c")  # same sequence, another event
    assert not order.observe("c1", 1, "d")  # went backwards
    assert order.observe("c1", 4, "e")  # a gap is not a violation
    assert (order.violations, order.gaps, order.republished) == (2, 1, 0)
    assert order.examples[0] == {"conversation_id": "c1", "after": 2, "got": 2}


def test_exact_republication_is_not_an_order_violation() -> None:
    """The same (sequence, event_id) again is a broker redelivery, counted apart."""
    order = OrderTracker()
    order.observe("c1", 3, "a")
    assert order.observe("c1", 3, "a")
    assert (order.violations, order.republished) == (0, 1)


def test_ack_to_published_latency_uses_first_ack_and_first_publication() -> None:
    """Latency runs from the earliest 200 to the earliest publication, clamped at 0."""
    ledger = Ledger()
    ledger.record_attempt(("w1",), acked_at=2.0)
    ledger.record_attempt(("w1",), acked_at=1.0)
    ledger.record_attempt(("w2",), acked_at=5.0)
    ledger.record_published(_event("w1", "c1", 1), at=1.25)
    ledger.record_published(_event("w1", "c1", 2), at=9.0)
    ledger.record_published(_event("w2", "c2", 1), at=4.0)  # seen before its 200 arrived
    assert ledger.ack_to_published() == {"w1": 0.25, "w2": 0.0}
    assert ledger.summary().published_before_ack == 1


def test_tracking_keys_of_published_events() -> None:
    """Messages and statuses by event_id, template events by field and template id."""
    assert tracking_key_of_event({"category": "status", "event_id": "wamid.A:read"}) == (
        "wamid.A:read"
    )
    template = {
        "category": "template",
        "type": "message_template_status_update",
        "event_id": "h:1",
        "data": {"kind": "x", "message_template_id": "123"},
    }
    assert tracking_key_of_event(template) == "message_template_status_update:123"


def test_percentiles_are_nearest_rank() -> None:
    """p50/p90/p99/p99.9/max of 1..1000 ms are samples that exist."""
    values = [i / 1000 for i in range(1, 1001)]
    summary = summarize(reversed(values))
    assert summary["p50"] == 500.0
    assert summary["p90"] == 900.0
    assert summary["p99"] == 990.0
    assert summary["p99.9"] == 999.0
    assert summary["max"] == 1000.0
    assert summary["count"] == 1000
    assert percentile([7.0], 99.9) == 7.0
    assert math.isnan(summarize([])["p99"])
    with pytest.raises(ValueError, match="q must be"):
        percentile([1.0], 101)


def test_series_buckets_by_second() -> None:
    """Counts and quantiles per whole second; empty seconds are None."""
    series = Series()
    for t, v in ((0.1, 0.001), (0.9, 0.003), (2.5, 0.010), (-0.2, 0.002)):
        series.add(t, v)
    assert series.counts(4) == [3, 0, 1, 0]
    assert series.quantile(3, 50) == [2.0, None, 10.0]
    assert series.span == 3


def test_publication_before_the_200_arrives_is_ours_and_not_lost() -> None:
    """The service may publish before its answer reaches the client: keys are registered
    when the POST goes out, so such an event is matched, not taken for someone else's."""
    ledger = Ledger()
    ledger.record_sending(("w1",))
    assert ledger.record_published(_event("w1", "c1", 1), at=1.0) == "w1"
    ledger.record_answer(("w1",), acked_at=1.5)
    summary = ledger.summary()
    assert (summary.foreign_events, summary.lost, summary.published_before_ack) == (0, 0, 1)
    assert ledger.ack_to_published() == {"w1": 0.0}


def _state(conv: str, seq: int, kind: str = "created") -> dict[str, object]:
    return {
        "event_id": f"conv:{conv}:{kind}:{seq}",
        "category": "conversation",
        "type": kind,
        "conversation_id": conv,
        "sequence": seq,
        "data": {"kind": "conversation", "state": {"conversation_id": conv}},
    }


def test_state_events_are_counted_apart_and_take_part_in_the_order_checks() -> None:
    """A `conversation.created` consumed before its item, and a later `.updated`, are
    state events: not items (no loss, duplicate or foreign count), counted by type, and
    checked with the items over the conversation's whole stream (no gap at 1 → 2)."""
    ledger = Ledger(expect_dedup=True)
    ledger.record_attempt(("w1", "w2"), acked_at=1.0)
    assert ledger.record_published(_state("c1", 1), at=1.25) is None
    assert ledger.record_published(_event("w1", "c1", 2), at=1.5) == "w1"
    assert ledger.record_published(_state("c1", 3, "updated"), at=1.75) is None
    assert ledger.record_published(_event("w2", "c1", 4), at=2.0) == "w2"
    summary = ledger.summary()
    assert (summary.lost, summary.foreign_events, summary.published_events) == (0, 0, 2)
    assert (summary.published_duplicates, summary.unexpected_duplicates) == (0, 0)
    assert summary.state_events == 2
    assert summary.state_events_by_type == {"created": 1, "updated": 1}
    assert (summary.conversations_created, summary.repeated_created) == (1, 0)
    assert (summary.order_violations, summary.sequence_gaps) == (0, 0)
    assert ledger.ack_to_published() == {"w1": 0.5, "w2": 1.0}


def test_a_state_event_out_of_order_with_the_items_is_a_violation() -> None:
    """The item took the sequence the state event carries: the stream went backwards,
    whichever of the two is the state event."""
    ledger = Ledger()
    ledger.record_attempt(("w1", "w2"), acked_at=1.0)
    ledger.record_published(_event("w1", "c1", 2), at=1.1)
    ledger.record_published(_state("c1", 1), at=1.2)  # created after its item
    ledger.record_published(_state("c2", 2, "updated"), at=1.3)
    ledger.record_published(_event("w2", "c2", 2), at=1.4)  # same sequence as c2's update
    summary = ledger.summary()
    assert summary.order_violations == 2
    assert summary.order_examples == [
        {"conversation_id": "c1", "after": 2, "got": 1},
        {"conversation_id": "c2", "after": 2, "got": 2},
    ]


def test_a_state_event_of_a_conversation_without_the_runs_items_is_foreign() -> None:
    """Another run's conversation (no item event of this run in it) is not this run's."""
    ledger = Ledger()
    ledger.record_attempt(("w1",), acked_at=1.0)
    ledger.record_published(_state("other", 1), at=1.1)
    ledger.record_published(_event("x", "other", 2), at=1.2)  # someone else's item
    ledger.record_published(_event("w1", "c1", 5), at=1.3)  # an older conversation of ours
    summary = ledger.summary()
    assert (summary.foreign_events, summary.state_events, summary.lost) == (2, 0, 0)
    assert summary.conversations_created == 0


def test_a_second_created_is_counted_and_a_redelivered_one_is_not() -> None:
    """Two `conversation.created` with distinct ids in one conversation: one repeated;
    the same one consumed twice (a broker redelivery) is `republished`, no repeat."""
    ledger = Ledger()
    ledger.record_attempt(("w1", "w2"), acked_at=1.0)
    ledger.record_published(_state("c1", 1), at=1.1)
    ledger.record_published(_state("c1", 1), at=1.1)
    ledger.record_published(_event("w1", "c1", 2), at=1.2)
    second = {**_state("c1", 3), "event_id": "conv:c1:created:again"}
    ledger.record_published(second, at=1.3)
    ledger.record_published(_event("w2", "c1", 4), at=1.4)
    summary = ledger.summary()
    assert (summary.conversations_created, summary.repeated_created) == (1, 1)
    assert (summary.republished, summary.order_violations) == (1, 0)
    assert summary.state_events_by_type == {"created": 3}
