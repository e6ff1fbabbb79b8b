"""The project's own errors for infrastructure failures, raised by every adapter."""


class AdapterError(Exception):
    """Base: an infrastructure call failed."""


class TransientError(AdapterError):
    """Retry with backoff: broker/store unreachable, timeout, 5xx."""


class BrokerMisconfigured(AdapterError):
    """Do not retry: the broker holds an exchange or queue declared with other arguments
    than this configuration's; fix one or the other and restart."""
