"""A dead letter: an accepted item the service gave up on, kept whole with why and when.

An item whose processing or publishing failed for a reason retrying did not fix (a
broker that refuses its message, an unexpected error in a step) is retried with backoff
up to the attempt budget (WA_MAX_ATTEMPTS); then it is stored in the failed store with
the raw item, the reason and every attempt, published to the dead-letter exchange
(`<exchange>.dead`, key `<tenant>.dead.<category>.<type>`), and its partition moves on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from models.inbox import InboxItem

DeadStep = Literal["normalize", "conversation", "stamp", "state_event", "publish", "broker", "pii"]
"""Where the item failed: a processing step, the publisher's own checks before anything
was sent (`publish`), or the broker refusing its message once sent (`broker`)."""


class Attempt(BaseModel):
    """One failed attempt: when, in which step, and the error (bounded text)."""

    model_config = ConfigDict(frozen=True)

    at: datetime
    step: DeadStep
    error: str


class DeadLetter(BaseModel):
    """The failed store's record of one item (and what the dead-letter exchange gets).

    `dead_letter_id` is derived from the partition and entry id, so a shard that dies
    after publishing a dead letter and before committing it stores and publishes the
    same id again (consumers of the dead letters deduplicate on it).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: Literal[1] = 1
    dead_letter_id: str
    partition: int
    entry_id: str
    tenant_id: str
    conversation_id: str
    event_id: str
    category: str
    type: str
    step: DeadStep
    reason: str
    attempts: tuple[Attempt, ...]
    dead_at: datetime
    item: InboxItem
    # Whether it reached the dead-letter exchange (False: the broker refused even the
    # dead letter; it is in the failed store only).
    published: bool = True


def dead_letter_id(partition: int, entry_id: str) -> str:
    """The id of the dead letter of a partition's entry: `p<partition>-<entry id>`."""
    return f"p{partition}-{entry_id}"
