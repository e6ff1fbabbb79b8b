"""The Redis client every Redis adapter builds: bounded in time and in connections.

A Redis that stops answering (a stopped process, a full network path) must never hang a
caller or pile connections up; one that is refused (killed, restarting) fails at once; one
that comes back is used again by the next call, without a restart. The bounds:

- Each reply is awaited at most SOCKET_TIMEOUT_S. The shards' commits of large batches
  (256 entries with their conversation records, one script) legitimately take longer than
  an append, and WAITAOF and blocking reads wait on purpose (Settings keeps both well
  under this), so this bound is the one for a call nobody waits on but its own retry loop.
  The ingress does not wait for it: its requests have their own, shorter deadline
  (WA_ACK_TIMEOUT_MS, ingress/receiver.py) and readiness checks theirs (ingress/health.py).
- At most MAX_CONNECTIONS connections per client, a call waiting at most POOL_WAIT_S for a
  free one. Without it, every group of appends or rate-limit counts started while Redis is
  stopped holds a connection of its own until the socket timeout: at 200 requests/s,
  grouped per millisecond, that is ~2,000 connections per replica in 10 s, and as many
  commands replayed at once when Redis resumes. With it, at most MAX_CONNECTIONS wait
  on the stopped server, and a call that finds none free fails (TransientError upstream)
  instead of queueing.

A write whose caller stopped waiting may still land when Redis resumes: every write the
adapters issue is idempotent or guarded by the mark it writes in the same script.
"""

from __future__ import annotations

import redis.asyncio as aioredis

__all__ = ["MAX_CONNECTIONS", "POOL_WAIT_S", "SOCKET_TIMEOUT_S", "bounded_client"]

SOCKET_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0
# Normal load needs few: appends and counts are grouped per millisecond (one or two in
# flight at ~1,150 requests/s on 2 cores), a shard holds at most its read and its commit.
MAX_CONNECTIONS = 32
POOL_WAIT_S = 5.0


def bounded_client(url: str) -> aioredis.Redis:
    """A client on `url` with the bounds above; closing it closes its pool."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
    )
    return aioredis.Redis.from_pool(pool)
