"""The inbox's partition layout: how many shards its partitions were written for.

A conversation's partition is `partition_of(conversation_key, WA_SHARDS)`
(models/routing.py), so the inbox's entries are only where the shards look for them while
WA_SHARDS stays what they were written with. The store keeps that count beside the
partitions (docs/resharding.md): the runner compares it with WA_SHARDS before anything
starts, and `python -m cluster reshard` rewrites it once every entry is where the new
count puts it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from models.inbox import InboxItem


class InboxLayout(BaseModel):
    """The stored layout record.

    `shards`: the count the partitions' entries are placed for (None: unknown, a reshard
    started on an inbox that had no record yet). `resharding_to`: set while a reshard
    runs, from its first move to its last; a service never starts on such a layout (the
    entries are partly under each count) and running the reshard again finishes it.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: int = 1
    shards: int | None = Field(None, ge=1)
    resharding_to: int | None = Field(None, ge=1)


@dataclass(frozen=True, slots=True)
class Move:
    """One inbox entry to move: its id in the partition it is in now, the partition the
    new layout puts it in, and its item rewritten with that partition."""

    entry_id: str
    target: int
    item: InboxItem
