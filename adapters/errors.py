"""The project's own errors for infrastructure failures, raised by every adapter."""


class AdapterError(Exception):
    """Base: an infrastructure call failed."""


class TransientError(AdapterError):
    """Retry with backoff: broker/store unreachable, timeout, 5xx."""
