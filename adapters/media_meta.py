"""What both media stores accept as a key and as user metadata, checked the same way.

Keys are models/media.py's (`is_media_key`): anything else is refused before it can name a
path or an object outside the store's prefix. Metadata names are lowercased (S3 and MinIO
lowercase `x-amz-meta-*` names themselves, so the folder store does too and `head` answers
alike on both) and limited to letters, digits, `-` and `_`. Values travel in HTTP headers,
which carry ASCII only: each value is percent-encoded beyond printable ASCII (and `%`,
and spaces), and decoded by `head`, so any string round-trips exactly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote, unquote

from models.media import is_media_key

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
# Printable ASCII except `%` (the escape) and space (servers strip it at the ends) stays
# as it is; the rest is percent-encoded.
_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


def checked_key(key: str) -> str:
    """`key` itself when it has the model's shape; ValueError otherwise (a caller's bug or
    a forged name, never retried)."""
    if not is_media_key(key):
        raise ValueError(f"not a media key: {key!r}")
    return key


def checked_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """The metadata with lowercased names; ValueError for a name out of the alphabet."""
    out: dict[str, str] = {}
    for name, value in metadata.items():
        lower = name.lower()
        if _NAME.fullmatch(lower) is None:
            raise ValueError(f"not a metadata name: {name!r}")
        out[lower] = value
    return out


def encode_values(metadata: Mapping[str, str]) -> dict[str, str]:
    """Header-safe values (ASCII, reversible by decode_values)."""
    return {name: quote(value, safe=_SAFE) for name, value in metadata.items()}


def decode_values(metadata: Mapping[str, str]) -> dict[str, str]:
    """The values encode_values was given."""
    return {name: unquote(value) for name, value in metadata.items()}
