"""A structlog processor that keeps secrets and personal data out of every log line.

Installed by `configure_logging` in every process (CLI, ingress replicas, shard actors),
after exceptions are formatted, so tracebacks are scrubbed too:

- a value under a key that names a credential (secret, token, signature, authorization,
  password, cookie, api key) becomes "[redacted]";
- a value under a key that names a phone number (wa_id, from, recipient_id, phone...) or
  a person's name becomes "h:<12 hex of SHA-256>" (stable, so lines still correlate);
- in every string, each configured secret value is replaced by "[redacted]" and every run
  of 11-15 digits (optionally after "+": an E.164 number) by "[phone]".
Limit: a phone number of 10 digits or fewer in free text is not recognised; a secret
shorter than 6 characters is not scrubbed from free text (it would mangle ordinary words).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, MutableMapping
from typing import Any

_CREDENTIAL = re.compile(r"secret|token|signature|authorization|password|cookie|api_?key", re.I)
_PERSONAL = frozenset(
    {
        "wa_id",
        "from",
        "to",
        "recipient_id",
        "phone",
        "phone_number",
        "phone_e164",
        "display_phone_number",
        "customer",
        "name",
        "profile_name",
        "formatted_name",
        "first_name",
        "last_name",
        "username",
    }
)
_PHONE = re.compile(r"(?<![\w.])\+?\d{11,15}(?!\d)")
_MIN_SECRET = 6


def _digest(value: Any) -> str:
    return "h:" + hashlib.sha256(str(value).encode()).hexdigest()[:12]


class Redactor:
    """The processor: `Redactor(secrets)(logger, method_name, event_dict)`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._values: frozenset[str] = frozenset()
        self._secrets: re.Pattern[str] | None = None
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Scrub these secrets too from now on (a tenant registry's new or rotated ones:
        cluster/tenant_wiring.py). Old ones stay scrubbed: a rotated-out secret is still
        a secret. One compiled pattern, swapped whole, so a concurrent line sees either."""
        values = self._values | {s for s in secrets if len(s) >= _MIN_SECRET}
        if values == self._values:
            return
        ordered = sorted(values, key=len, reverse=True)
        self._secrets = re.compile("|".join(map(re.escape, ordered)))
        self._values = values

    def _text(self, value: str) -> str:
        if self._secrets is not None:
            value = self._secrets.sub("[redacted]", value)
        return _PHONE.sub("[phone]", value)

    def _clean(self, key: str, value: Any) -> Any:
        if _CREDENTIAL.search(key):
            return "[redacted]"
        if key.lower() in _PERSONAL and value is not None:
            return _digest(value)
        if isinstance(value, str):
            return self._text(value)
        if isinstance(value, dict):
            return {k: self._clean(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._clean(key, v) for v in value]
        if isinstance(value, bytes):
            return self._text(value.decode("utf-8", "replace"))
        if isinstance(value, int | float | bool) or value is None:
            return value
        return self._text(str(value))

    def __call__(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """Redact in place and return the event dict."""
        for key in list(event_dict):
            event_dict[key] = self._clean(key, event_dict[key])
        return event_dict
