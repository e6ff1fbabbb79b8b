"""The project's own errors for infrastructure failures, raised by every adapter."""


class AdapterError(Exception):
    """Base: an infrastructure call failed."""


class TransientError(AdapterError):
    """Retry with backoff: broker/store unreachable, timeout, 5xx."""


class RouteUnavailable(TransientError):
    """A tenant's route (its RabbitMQ vhost or exchange, docs/tenants.md) cannot be
    connected or declared. Nothing of the batch was sent; `tenants` are those whose
    events take that route, so the shard can hold just their conversations."""

    def __init__(self, message: str, tenants: frozenset[str]) -> None:
        super().__init__(message)
        self.tenants = tenants


class Fenced(AdapterError):
    """Do not retry: a later incarnation of this partition's shard has claimed the
    partition (`Inbox.claim`) since this one did. Its reads, recorded orders and commits
    are refused from then on, so a shard left running by a dead owner can never take
    entries from, or commit over, the one that replaced it; it must stop."""


class BrokerMisconfigured(AdapterError):
    """Do not retry: the broker holds an exchange or queue declared with other arguments
    than this configuration's; fix one or the other and restart."""


class GraphError(AdapterError):
    """The Graph API answered an error that retrying now will not fix (adapters/graph.py):
    Meta's `code`, `error_subcode`, `type` and `message`, and the HTTP status."""

    def __init__(
        self, status: int, code: int | None, subcode: int | None, kind: str | None, message: str
    ) -> None:
        super().__init__(f"graph {status} code={code} subcode={subcode}: {message}")
        self.status = status
        self.code = code
        self.subcode = subcode
        self.kind = kind
        self.message = message


class GraphThrottled(TransientError):
    """Meta throttled the call (codes 4, 80007, 130429, 131056, ...): retry after
    `retry_after_s` (from `estimated_time_to_regain_access`, else a backoff)."""

    def __init__(self, code: int, retry_after_s: float, message: str) -> None:
        super().__init__(f"graph throttled code={code}, retry in {retry_after_s:.0f}s: {message}")
        self.code = code
        self.retry_after_s = retry_after_s


class MediaError(AdapterError):
    """A media file could not be had or was refused; `reason` is one of models/media.py's
    REASONS, `detail` a human word on it."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class MediaRejected(MediaError):
    """The file's own fault (REJECT_REASONS): never retried, quarantined if it was fetched."""


class MediaUnavailable(MediaError):
    """The file could not be had (FAIL_REASONS): `retryable` tries again within the
    budget (a 5xx, an expired URL), else it is published as failed at once (not found,
    token revoked)."""

    def __init__(self, reason: str, detail: str = "", *, retryable: bool = True) -> None:
        super().__init__(reason, detail)
        self.retryable = retryable


class UrlExpired(MediaUnavailable):
    """The download URL answered 401/403/404: resolve the media id again, then retry."""

    def __init__(self, detail: str = "") -> None:
        super().__init__("download_failed", detail, retryable=True)


class TenantNotFound(AdapterError):
    """No tenant by that id in the registry."""


class TenantExists(AdapterError):
    """A tenant by that id is already registered (create refused)."""
