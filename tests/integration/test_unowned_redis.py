"""Numbers nobody owns on the real Redis inbox: the held change is written by the same Lua
script as the delivery's items and its dedup mark, to a stream no shard reads."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis

from models.routing import UNOWNED_PARTITION
from tests.conftest import REDIS_URL
from tests.support.app import ingress_client, signed, stored_count
from tests.support.configs import redis_inbox
from tests.unit.test_unowned_numbers import TENANTS, UNOWNED, mixed

pytestmark = pytest.mark.redis


async def test_the_unowned_change_is_stored_once_beside_the_items(
    tmp_path: Path, redis_prefix: str
) -> None:
    """Four copies at once: one accepted (2 items, 2 kept aside), three duplicates; the held
    stream has exactly one entry, the raw change, and no consumer group (no shard reads it)."""
    raw, headers = signed(mixed(), "secret-a")
    inbox = redis_inbox(redis_prefix)
    async with ingress_client(tmp_path, TENANTS, inbox=inbox) as (client, _):
        replies = await asyncio.gather(
            *(client.post("/webhook", content=raw, headers=headers) for _ in range(4))
        )
        answers = sorted(r.json()["status"] for r in replies)
        assert answers == ["accepted", "duplicate", "duplicate", "duplicate"]
        assert await stored_count(inbox) == 2
        assert await inbox.backlog(UNOWNED_PARTITION) == 1
        direct = redis.Redis.from_url(REDIS_URL)
        stream = f"{redis_prefix}inbox:{UNOWNED_PARTITION}"
        assert direct.xinfo_stream(stream)["groups"] == 0
        direct.close()
        [kept] = await inbox.read(UNOWNED_PARTITION, 10, 1)
    assert kept.item.held == "unowned_number"
    assert kept.item.phone_number_id == UNOWNED
    assert kept.item.signed_by == ("a",)  # survives the Redis encoding
    assert kept.item.item == mixed()["entry"][0]["changes"][1]
