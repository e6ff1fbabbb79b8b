"""Reading a body whose signature is not checked yet, and the memory a replica lends to it.

Until its signature is checked a body is anybody's: up to WA_MAX_BODY_BYTES (4 MiB) each,
for as many requests as the replica takes at once (Serve's max_ongoing_requests, 256:
1 GiB from unauthenticated clients). One budget per replica bounds the bytes held by such
bodies:

- each chunk is charged as it arrives, so a client that declares a large body and sends
  nothing holds nothing; a declared length that cannot fit in what is left is refused
  before a byte is read;
- everything charged is given back once the signature has been checked, and on every other
  way out (too large, deadline, client disconnect, cancellation): the charge is a context
  manager around reading and verifying;
- past the budget the answer is 503 `overloaded` with `Retry-After: 1` (Meta retries),
  never a queue (DESIGN.md: overload is answered, not queued).

The budget is a plain counter: a replica serves its requests on one event loop, and
nothing awaits between a check and its update. Joining the chunks doubles one body for a
moment with no await in between, so at most one body at a time is held twice.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from starlette.requests import Request

from ingress.rejection import BadContentLength, BodyTimeout, BodyTooLarge, Overloaded


class UnverifiedBudget:
    """The bytes of not-yet-verified bodies one replica may hold at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0

    def hold(self) -> BodyHold:
        """A new charge against the budget, released when its `with` block is left."""
        return BodyHold(self)


class BodyHold:
    """What one request has charged to the budget; released once, on leaving `with`."""

    def __init__(self, budget: UnverifiedBudget) -> None:
        self._budget = budget
        self.charged = 0

    def __enter__(self) -> BodyHold:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def release(self) -> None:
        """Give back everything charged (idempotent)."""
        self._budget.in_use -= self.charged
        self.charged = 0

    def check_fits(self, size: int) -> None:
        """Overloaded unless `size` more bytes fit in the budget right now."""
        if self._budget.in_use + size > self._budget.limit:
            raise Overloaded

    def charge(self, size: int) -> None:
        """Take `size` bytes from the budget, or Overloaded (nothing taken)."""
        self.check_fits(size)
        self._budget.in_use += size
        self.charged += size


async def read_body(request: Request, cap: int, timeout_s: float, hold: BodyHold) -> bytes:
    """The raw body, read within `timeout_s` (BodyTimeout) and `cap` (BodyTooLarge,
    declared or streamed: a body is never read past the cap), each chunk charged to `hold`
    (Overloaded past the budget); BadContentLength if the declared length is not a number."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadContentLength
        if int(declared) > cap:
            raise BodyTooLarge(cap)
        hold.check_fits(int(declared))
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > cap:
                    raise BodyTooLarge(cap)
                hold.charge(len(chunk))
                chunks.append(chunk)
    except TimeoutError as exc:
        raise BodyTimeout from exc
    return b"".join(chunks)
