"""`unsupported` events: for an item that does not fit its model, and for a poison item.

A partition is shared by many conversations of many tenants, so a step that fails on one
item (normalize, stamp, serialize, publish) must cost only that item its typed event
(DESIGN.md, "Nothing accepted may stop a partition"). Its event becomes `unsupported`,
with the raw item exactly as stored and the error; when even that cannot be published,
`minimal_event` is one made only of bounded, ASCII-safe values and no body data, which
cannot fail.
"""

from __future__ import annotations

from pydantic import ValidationError

from actors.event_draft import EventDraft, EventParts, content_id, routing_token, status_event_id
from models.dead_letter import DeadLetter
from models.event import Business, NormalizedEvent, UnsupportedData, ValidationIssue
from models.event_keys import routing_segment, short_string
from models.inbox import InboxItem

UNSUPPORTED_CATEGORY = "unsupported"
REPLAY_CATEGORY = "replay"
_MESSAGE_CHARS = 500  # of an error's text in an issue


def validation_issues(exc: ValidationError) -> list[ValidationIssue]:
    """Why an item did not fit its model, one issue per pydantic error (no input echoed)."""
    return [
        ValidationIssue(
            loc=".".join(str(part) for part in error["loc"]), msg=error["msg"], type=error["type"]
        )
        for error in exc.errors(include_url=False, include_input=False)
    ]


def error_issue(step: str, error: BaseException | str) -> ValidationIssue:
    """The issue of a step that raised on the whole item: `<step>_failed`, bounded text.

    The text is made UTF-8-safe (an exception may quote the lone surrogate that made it
    fail) so that the issue itself always serializes.
    """
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > _MESSAGE_CHARS:
        text = text[: _MESSAGE_CHARS - 3] + "..."
    return ValidationIssue(loc="", msg=text, type=f"{step}_failed")


def _raw_event_id(item: InboxItem) -> str:
    """The id an unsupported item keeps: Meta's own id when the raw item has one."""
    raw = item.item
    raw_id = raw.get("id") if isinstance(raw, dict) else None
    if item.kind == "message" and isinstance(raw_id, str) and raw_id:
        return raw_id
    if item.kind == "status" and isinstance(raw_id, str) and raw_id:
        state = raw.get("status")
        participant = raw.get("recipient_participant_id")
        return status_event_id(
            raw_id,
            routing_token(state) if isinstance(state, str) else "unknown",
            participant if isinstance(participant, str) else None,
        )
    return content_id(item.tenant_id, item.kind, item.field, item.waba_id, item.entry_time, raw)


def unsupported_parts(
    item: InboxItem,
    issues: list[ValidationIssue],
    event_id: str | None = None,
    failure: str | None = None,
) -> EventParts:
    """The `unsupported` event of an item with the raw item and `issues`.

    `event_id` keeps an id already chosen (the shard's dedup mark is written for it);
    by default it is Meta's id from the raw item, or a content id. `failure` is the
    error of the step that raised, when one did.
    """
    label = item.field if item.kind == "field" else item.kind
    return EventParts(
        category=UNSUPPORTED_CATEGORY,
        type=routing_token(label),
        event_id=_raw_event_id(item) if event_id is None else event_id,
        occurred_at=None,
        data=UnsupportedData(item_kind=item.kind, field=item.field, issues=issues, raw=item.item),
        failure=failure,
    )


def failed_parts(item: InboxItem, step: str, error: BaseException) -> EventParts:
    """A poison item's `unsupported` event, normalize's answer to an unexpected error.

    The raw item holds what made the step fail, so the id is taken with that in mind: if
    even the content id cannot be made (it serializes the raw item), the item's place in
    its delivery identifies it.
    """
    issues = [error_issue(step, error)]
    try:
        return unsupported_parts(item, issues, failure=issues[0].msg)
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 -- the id of a raw item that does not serialize
        place = content_id(item.tenant_id, item.delivery_id, list(item.position))
        return unsupported_parts(item, issues, event_id=place, failure=issues[0].msg)


def failed_event(
    item: InboxItem,
    event_id: str,
    sequence: int,
    replay: bool,
    step: str,
    error: BaseException | str,
) -> NormalizedEvent:
    """The `unsupported` event numbered `sequence` that takes the place of an item's event
    a step failed on (a replay stays a replay), or the minimal one if it cannot be built.

    `event_id` is kept: the shard's dedup mark is written for it.
    """
    try:
        issue = error_issue(step, error)
        parts = unsupported_parts(item, [issue], event_id, issue.msg)
        return EventDraft(item, parts).stamp(sequence, REPLAY_CATEGORY if replay else None)
    except MemoryError:
        raise  # not the item's fault: the batch is retried, not published with less
    except Exception:  # noqa: BLE001 -- the minimal event is the answer to any failure here
        return minimal_event(item, event_id, sequence, replay, step, error)


def minimal_event(
    item: InboxItem,
    event_id: str,
    sequence: int,
    replay: bool,
    step: str,
    error: BaseException | str,
) -> NormalizedEvent:
    """The last resort: an `unsupported` event without body data (no raw item, no
    business ids), every string a bounded UTF-8 short string, so it always publishes."""
    return NormalizedEvent(
        event_id=short_string(event_id),
        tenant_id=short_string(item.tenant_id),
        category=REPLAY_CATEGORY if replay else UNSUPPORTED_CATEGORY,
        type=routing_segment(item.field if item.kind == "field" else item.kind),
        conversation_id=short_string(item.conversation_id),
        sequence=sequence,
        occurred_at=None,
        received_at=item.received_at,
        delivery_id=short_string(item.delivery_id),
        business=Business(),
        replayed=item.replayed,
        data=UnsupportedData(
            item_kind=item.kind,
            field=routing_segment(item.field),
            issues=[error_issue(step, error)],
            raw=None,
        ),
    )


def dead_letter_event_id(dead_letter_id: str) -> str:
    """The event id of a dead item's place in its conversation: its own, so that a
    consumer deduplicating on event_id still takes the item's real event when a replay
    publishes it (under the item's event_id) later."""
    return short_string(f"dead:{dead_letter_id}")


def dead_letter_event(
    item: InboxItem, sequence: int, replay: bool, letter: DeadLetter
) -> NormalizedEvent:
    """The event that holds a dead-lettered item's place in its conversation's sequence:
    `unsupported` (or `replay`), no body data (the item is in the failed store and on the
    dead-letter exchange), the dead letter's id and reason; like `minimal_event`, made of
    bounded values only, so it always publishes."""
    event = minimal_event(
        item,
        dead_letter_event_id(letter.dead_letter_id),
        sequence,
        replay,
        "dead_letter",
        letter.reason,
    )
    data = event.data
    assert isinstance(data, UnsupportedData)  # minimal_event's own
    return event.model_copy(
        update={
            "data": data.model_copy(update={"dead_letter_id": short_string(letter.dead_letter_id)})
        }
    )
