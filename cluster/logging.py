"""structlog JSON logs for every process the service starts, redacted (cluster/redaction)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import TextIO

import structlog

from cluster.redaction import Redactor

_current: Redactor | None = None


def _redactor(secrets: Iterable[str]) -> Redactor:
    global _current  # one redactor per process, as structlog's configuration is
    _current = Redactor(secrets)
    return _current


def redact_also(secrets: Iterable[str]) -> None:
    """Scrub these secrets too in this process's logs (configured by configure_logging);
    how the registry's new secrets are kept out of the logs without a restart."""
    if _current is not None:
        _current.add(secrets)


def configure_logging(
    level: str = "INFO", secrets: Iterable[str] = (), file: TextIO | None = None
) -> None:
    """JSON lines on stderr with ISO timestamps; the level from WA_LOG_LEVEL.

    `secrets` are scrubbed from every line; credentials and phone numbers are redacted by
    key and by shape whatever the caller logs.
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redactor(secrets),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=file or sys.stderr),
        cache_logger_on_first_use=file is None,
    )
