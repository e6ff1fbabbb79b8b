"""Per-tenant analytics from committed events (models/tenant_stats.py) and the shard's hook
(actors/account_hook.py) writing them, with the account changes, to the embedded store:
counted once per commit, kept while the store is down, applied in commit order."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

from actors.account_hook import AccountHook
from adapters.errors import TransientError
from adapters.sqlite_accounts import SqliteAccountStore
from models.event import NormalizedEvent
from models.media import MediaFile, MediaStatus
from models.tenant_stats import TenantStats, tally
from tests.support.failing_accounts import FailingAccountStore

GOLDEN = Path(__file__).parents[1] / "golden"


def goldens(name: str) -> list[NormalizedEvent]:
    return [
        NormalizedEvent.model_validate(e) for e in json.loads((GOLDEN / f"{name}.json").read_text())
    ]


def media_event(status: MediaStatus, size: int | None, tenant_id: str = "acme") -> NormalizedEvent:
    """The golden image message with a file of this outcome."""
    event = goldens("message_image")[0]
    file = MediaFile(status=status, size=size, reason=None if status == "stored" else "too_large")
    return event.model_copy(
        update={"tenant_id": tenant_id, "data": event.data.model_copy(update={"file": file})}
    )


def test_a_mixed_batch_is_counted_by_category_and_type() -> None:
    """Two texts, two statuses, an account review: five events of acme, four through its
    number and five through its WABA (the review names the WABA only)."""
    counts = tally(goldens("batch_mixed"))
    assert counts == {
        "acme": Counter(
            {
                "events:message:text": 2,
                "events:status:delivered": 1,
                "events:status:read": 1,
                "events:account:account_review_update": 1,
                "numbers:420000000000001": 4,
                "wabas:310000000000001": 5,
            }
        )
    }


def test_media_outcomes_failures_and_tenants_are_counted_apart() -> None:
    """Files and bytes by status, failures by kind, per tenant."""
    events = [
        media_event("stored", 1000),
        media_event("stored", 500),
        media_event("rejected", 70),
        media_event("failed", None, tenant_id="beta"),
        *goldens("status_failed"),
        *goldens("message_unsupported"),  # Meta's "unsupported" message type: no failure
        *goldens("message_malformed_no_id"),  # ours: it did not fit its model
    ]
    stats = TenantStats.from_counters("acme", tally(events)["acme"])
    assert stats.media_files == {"stored": 2, "rejected": 1}
    assert stats.media_bytes == {"stored": 1500, "rejected": 70}
    assert stats.failures == {"media_rejected": 1, "status_failed": 1, "unsupported": 1}
    assert stats.events["message"]["image"] == 3
    assert stats.events["unsupported"] == {"message": 1}
    assert stats.events_total == len(events) - 1  # beta's is beta's
    assert tally(events)["beta"]["failures:media_failed"] == 1


async def test_the_hook_writes_counts_and_changes_on_flush(tmp_path: Path) -> None:
    """committed() only collects; flush() writes both, and a second flush adds nothing."""
    store = SqliteAccountStore(tmp_path / "inbox.db")
    hook = AccountHook(store)
    try:
        hook.committed(goldens("batch_mixed") + goldens("field_message_template_status_update"))
        assert await store.counts("acme") == {}
        assert hook.pending == 2  # the review decision and the template status
        await hook.flush()
        await hook.flush()
        counts = await store.counts("acme")
        assert counts["events:message:text"] == 2
        assert counts["events:template:message_template_status_update"] == 1
        snapshot = await store.get("acme")
        assert snapshot is not None
        assert snapshot.templates["310000000000001:1200000000000001"].status == "REJECTED"
        assert snapshot.wabas["310000000000001"].account_review_status == "APPROVED"
    finally:
        await store.close()


async def test_a_store_outage_keeps_what_is_pending(tmp_path: Path) -> None:
    """Flushes that fail keep the changes (in order) and the counts; once the store
    answers, everything lands once."""
    store = SqliteAccountStore(tmp_path / "inbox.db")
    failing = FailingAccountStore(store, fail=True)
    hook = AccountHook(failing)
    try:
        status = goldens("field_message_template_status_update")[0]
        approved = status.model_copy(
            update={
                "event_id": "later",
                "received_at": status.received_at.replace(hour=1),
                "data": status.data.model_copy(update={"event": "APPROVED", "reason": None}),
            }
        )
        hook.committed([status])
        with contextlib.suppress(TransientError):
            await hook.flush()
        hook.committed([approved])
        with contextlib.suppress(TransientError):
            await hook.flush()
        assert hook.pending == 2
        failing.fail = False
        await hook.flush()
        snapshot = await store.get("acme")
        assert snapshot is not None
        assert snapshot.templates["310000000000001:1200000000000001"].status == "APPROVED"
        counts = await store.counts("acme")
        assert counts == {
            "events:template:message_template_status_update": 2,
            "wabas:310000000000001": 2,
        }
    finally:
        await store.close()


def test_the_hook_never_raises_and_bounds_its_changes(tmp_path: Path) -> None:
    """Past max_pending_changes the oldest changes go (counted); committed() survives an
    event it cannot count."""
    hook = AccountHook(SqliteAccountStore(tmp_path / "x.db"), max_pending_changes=2)
    event = goldens("field_message_template_status_update")[0]
    hook.committed([event.model_copy(update={"event_id": str(i)}) for i in range(5)])
    assert (hook.pending, hook.dropped_changes) == (2, 3)
    broken: Any = object()  # not an event: logged, not raised
    hook.committed([broken])
