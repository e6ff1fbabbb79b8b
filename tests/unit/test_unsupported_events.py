"""The `unsupported` events of poison items (actors/unsupported.py): normalize never
raises, and the last-resort event always encodes, whatever strings the item holds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.normalize import normalize
from actors.unsupported import error_issue, minimal_event
from adapters.codec import encode_event
from models.event import UnsupportedData
from tests.support.events import inbox_item
from tests.support.shards import POISON, flow_reply


def test_a_handler_that_raises_makes_the_item_unsupported_with_the_error() -> None:
    """json.loads raises RecursionError (not a ValidationError) on deep nesting: the item
    is `unsupported`, keeps its wamid and raw item, and the issue names the error."""
    item = flow_reply(7, POISON["too_deep_to_decode"])
    draft = normalize(item)
    assert (draft.parts.category, draft.event_id) == ("unsupported", "wamid.7")
    data = draft.parts.data
    assert isinstance(data, UnsupportedData)
    assert data.raw == item.item
    (issue,) = data.issues
    assert issue.type == "normalize_failed"
    assert issue.msg.startswith("RecursionError: ")
    assert draft.parts.failure == issue.msg


def test_an_issue_quoting_a_lone_surrogate_is_made_utf8_safe() -> None:
    """An exception's text may quote what made it fail; the issue must still encode."""
    issue = error_issue("publish", KeyError("\ud800" * 1000))
    assert issue.msg.encode()
    assert len(issue.msg) <= 500


anything = st.text(st.characters(), max_size=600)  # lone surrogates included


@settings(max_examples=60, deadline=None)
@given(
    tenant=anything,
    event_id=anything,
    field=anything,
    delivery=anything,
    conversation=anything,
    sequence=st.integers(1, 2**62),
    replay=st.booleans(),
    reason=anything,
)
def test_the_minimal_event_always_encodes(
    tenant: str,
    event_id: str,
    field: str,
    delivery: str,
    conversation: str,
    sequence: int,
    replay: bool,
    reason: str,
) -> None:
    """Any tenant, ids, field and reason: the minimal event encodes within the wire
    bounds (routing key, properties, headers), so the third attempt cannot be rejected."""
    item = inbox_item(1).model_copy(
        update={
            "tenant_id": tenant,
            "field": field,
            "delivery_id": delivery,
            "conversation_id": conversation,
        }
    )
    event = minimal_event(item, event_id, sequence, replay, "publish", reason)
    wire = encode_event(event)
    assert len(wire.routing_key.encode()) <= 255
    assert len(wire.message_id.encode()) <= 255
    assert len(wire.type.encode()) <= 255
    assert event.category == ("replay" if replay else "unsupported")
