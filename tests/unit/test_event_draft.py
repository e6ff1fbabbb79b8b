"""normalize makes a draft without a sequence; the shard stamps it into the published event."""

from __future__ import annotations

import pytest

from actors.normalize import EventDraft, EventParts, normalize
from adapters.codec import dump_event
from models.meta.common import FieldValue
from models.meta.fields import FIELD_MODELS
from tests.support.events import inbox_item


def test_the_draft_knows_its_idempotency_key_before_it_is_numbered() -> None:
    """Dedup and quarantine read the draft: tenant, event_id and Meta's time, no sequence."""
    item = inbox_item(7)
    draft = normalize(item)
    assert (draft.tenant_id, draft.event_id) == ("acme", "wamid.7")
    assert draft.occurred_at is not None
    assert draft.occurred_at.timestamp() == 1_750_000_000
    event = draft.stamp(4)
    assert (event.event_id, event.sequence) == ("wamid.7", 4)
    assert event.routing_key == "acme.message.text"


def test_stamping_under_another_category_changes_only_category_and_sequence() -> None:
    """A replay is the same event, numbered, under `replay`: the rest of the JSON is equal."""
    draft = normalize(inbox_item(7, kind="status"))
    plain, replay = draft.stamp(1), draft.stamp(2, "replay")
    assert replay.routing_key == "acme.replay.read"
    assert replay.model_dump() == {**plain.model_dump(), "category": "replay", "sequence": 2}


def test_a_stamp_is_the_same_draft_each_time() -> None:
    """Stamping does not consume the draft: a batch retried after a failed publish
    publishes byte-identical events."""
    draft = normalize(inbox_item(3))
    assert dump_event(draft.stamp(9)) == dump_event(draft.stamp(9))


@pytest.mark.parametrize("field", sorted(FIELD_MODELS))
def test_every_field_model_fits_the_event_data_union(field: str) -> None:
    """The one cast in the handlers (a field model as `data`) holds for every field model,
    so stamping cannot raise for a draft normalize made."""
    model: type[FieldValue] = FIELD_MODELS[field]
    value = model.model_construct(kind=model.model_fields["kind"].default)
    parts = EventParts(
        category="account",
        type=field,
        event_id="h:1",
        occurred_at=None,
        data=value,  # type: ignore[arg-type]  # the cast under test
    )
    event = EventDraft(inbox_item(1, kind="field"), parts).stamp(1)
    assert type(event.data) is model
