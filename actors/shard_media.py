"""Media messages in the shard (issue 12): their fetches, and the conversations held for them.

When the shard reads a media message it starts its fetch at once (actors/media_fetch.py),
even while the reorder window still holds the entry. When the entry is next to be batched
and its file is not ready, its conversation is held here from that entry on — it and every
later entry of that conversation the shard takes meanwhile, uncommitted, in order — while
every other conversation of the partition is batched and published as usual. When the
fetch ends (by its deadline at the latest: it never raises) the conversation is handed
back, earliest first, and the message is published with its `data.file`.

A held conversation is in this hold or in the failure park (actors/shard_retry.py), never
in both: an earlier entry of it failing moves the held entries into the park with it, and
when the park hands them back the hold takes them again if their file is still not ready.
A restarted shard starts the fetches again; the pipeline's idempotent store makes a second
fetch of a stored file one HEAD request.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Generic, TypeVar

import structlog

from actors.event_draft import EventDraft
from actors.media_fetch import MediaFetcher, media_job
from models.event_message import MediaData
from models.media import MediaFile
from models.tenant import MediaRule

T = TypeVar("T")
log = structlog.get_logger("shard_media")


def media_data(draft: EventDraft) -> MediaData | None:
    """The media content of a media message's draft (not of an edit or a reply's quote)."""
    data = draft.parts.data
    if draft.parts.category == "message" and isinstance(data, MediaData) and data.file is None:
        return data
    return None


def with_file(draft: EventDraft, file: MediaFile) -> EventDraft:
    """The draft with its file in `data.file`."""
    data = draft.parts.data
    assert isinstance(data, MediaData)
    return dataclasses.replace(
        draft, parts=dataclasses.replace(draft.parts, data=data.model_copy(update={"file": file}))
    )


def tenant_skip(rule: MediaRule | None, data: MediaData) -> MediaFile | None:
    """The `skipped` file of a media message the tenant's policy does not fetch
    (`download` false: `disabled`; its type not in `types`: `type_disabled`), else None."""
    if rule is None:
        return None
    if not rule.download:
        return MediaFile(status="skipped", reason="disabled", detail="the tenant's media policy")
    if rule.types is not None and data.media_type not in rule.types:
        return MediaFile(
            status="skipped", reason="type_disabled", detail="the tenant's media policy"
        )
    return None


class MediaWaits(Generic[T]):
    """A shard's media fetches by entry id, and the conversations held for them."""

    def __init__(
        self,
        fetcher: MediaFetcher | None,
        entry_id: Callable[[T], str],
        rules: Callable[[str], MediaRule | None] | None = None,
    ) -> None:
        """`rules`: each tenant's media policy (its rule, read at each start; None: the
        service's settings alone)."""
        self._fetcher = fetcher
        self._entry_id = entry_id
        self._rules = rules
        self._tasks: dict[str, asyncio.Task[MediaFile]] = {}
        self._held: dict[str, list[T]] = {}
        self.ids: set[str] = set()  # entry ids held (a store re-reading them: skipped)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def active(self) -> bool:
        """Whether any fetch or held conversation exists (else nothing to check)."""
        return bool(self._tasks) or bool(self._held)

    def start(self, entry_id: str, draft: EventDraft) -> EventDraft:
        """Start the fetch of a media message's file (once per entry), or return the draft
        with its `skipped` file when media is off for it. Other drafts pass unchanged."""
        data = media_data(draft)
        if data is None or self._fetcher is None:
            return draft
        try:
            if not self._fetcher.wanted(data):
                return with_file(draft, self._fetcher.skipped(data))
            rule = self._rules(draft.tenant_id) if self._rules is not None else None
            skipped = tenant_skip(rule, data)
            if skipped is not None:
                return with_file(draft, skipped)
            if entry_id not in self._tasks:
                job = media_job(draft.item, data, draft.occurred_at)
                if rule is not None:
                    cap = (rule.max_bytes or {}).get(data.media_type)
                    job = job.model_copy(update={"max_bytes": cap, "url_ttl_s": rule.url_ttl_s})
                self._tasks[entry_id] = asyncio.ensure_future(self._fetcher.fetch(job))
        except Exception as exc:
            # Read on every pass of the loop: raising here would retry the partition for
            # ever. The message goes out without its file, saying why (a replay retries).
            log.exception("media_start_failed", entry_id=entry_id)
            failed = MediaFile(
                status="failed", reason="internal_error", detail=f"{type(exc).__name__}"
            )
            return with_file(draft, failed)
        return draft

    def pending(self, entry_id: str) -> bool:
        """Whether this entry's file is still being fetched."""
        task = self._tasks.get(entry_id)
        return task is not None and not task.done()

    def attach(self, entry_id: str, draft: EventDraft) -> EventDraft:
        """The draft with its fetched file, if its fetch is done (the fetch forgotten)."""
        task = self._tasks.get(entry_id)
        if task is None or not task.done():
            return draft
        del self._tasks[entry_id]
        if task.cancelled():
            file = MediaFile(status="failed", reason="internal_error", detail="fetch cancelled")
        else:
            exc = task.exception()
            file = (
                task.result()
                if exc is None
                else MediaFile(
                    status="failed", reason="internal_error", detail=f"{type(exc).__name__}"
                )
            )
        return with_file(draft, file) if media_data(draft) is not None else draft

    def holds(self, conversation_id: str) -> bool:
        """Whether the conversation is held (its later entries must wait behind)."""
        return conversation_id in self._held

    def hold(self, conversation_id: str, entries: list[T]) -> None:
        """Hold these entries of a conversation, after those it holds already."""
        # In the order given (the ready entries' order: the publish order the reorder
        # window chose, which arrival order is not).
        self._held.setdefault(conversation_id, []).extend(entries)
        self.ids.update(self._entry_id(entry) for entry in entries)

    def behind(self, conversation_id: str, entry: T) -> None:
        """A later entry of a held conversation: held behind the others."""
        self.hold(conversation_id, [entry])

    def take(self, conversation_id: str) -> list[T]:
        """Every held entry of the conversation, no longer held (to the failure park)."""
        entries = self._held.pop(conversation_id, [])
        self.ids.difference_update(self._entry_id(entry) for entry in entries)
        return entries

    def due(self) -> bool:
        """Whether some held conversation's first file is ready (release it now)."""
        return any(not self.pending(self._entry_id(entries[0])) for entries in self._held.values())

    def release(self) -> list[T]:
        """The entries of every conversation whose first held file is ready (each
        conversation's in its order), no longer held."""
        ready = [
            cid
            for cid, entries in self._held.items()
            if not self.pending(self._entry_id(entries[0]))
        ]
        return [entry for cid in ready for entry in self.take(cid)]

    async def wait(self, timeout_s: float) -> None:
        """Until some fetch ends, or `timeout_s`."""
        pending = [task for task in self._tasks.values() if not task.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
