"""WA_RABBITMQ_QUEUES: the consumer queues to provision, parsed and checked once.

Syntax: `queue=pattern,pattern;queue=pattern`, e.g.
`inbound-transformer=*.message.#,*.status.#;state-manager=*.conversation.#`. Patterns are
topic bindings on the events exchange, whose keys are `<tenant>.<category>.<type>`
(models/event_keys.py): each word is `*`, `#` or a key segment (1-64 of `a-z0-9_-`; a key
never holds another character, so a pattern that does could never match). Blank parts and
spaces are ignored.
"""

from __future__ import annotations

import re

__all__ = ["parse_queues"]

_QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}")
_WORD = re.compile(r"\*|#|[a-z0-9_-]{1,64}")


def parse_queues(
    text: str, reserved: frozenset[str] = frozenset()
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Each queue with its patterns, in the order given; ValueError naming the first bad
    part (a queue named twice, a name in `reserved`, a queue without patterns, a bad
    name or pattern)."""
    queues: dict[str, tuple[str, ...]] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        name, sep, patterns_text = (s.strip() for s in part.partition("="))
        if not sep:
            raise ValueError(f"{part!r}: expected queue=pattern[,pattern...]")
        if not _QUEUE_NAME.fullmatch(name) or name.startswith("amq."):
            raise ValueError(
                f"queue name {name!r}: 1-200 of A-Z a-z 0-9 . _ : - (not starting amq.)"
            )
        if name in queues or name in reserved:
            raise ValueError(f"queue {name!r} is named twice or is one the service declares")
        patterns = tuple(p.strip() for p in patterns_text.split(",") if p.strip())
        if not patterns:
            raise ValueError(f"queue {name!r} has no binding pattern")
        for pattern in patterns:
            if not all(_WORD.fullmatch(word) for word in pattern.split(".")):
                raise ValueError(
                    f"queue {name!r}: pattern {pattern!r}: each dot-separated word must be "
                    "*, # or 1-64 of a-z 0-9 _ - (routing keys are <tenant>.<category>.<type>)"
                )
        queues[name] = tuple(dict.fromkeys(patterns))
    return tuple(queues.items())
