"""An image's declared dimensions read from its header, before any decoder sees it.

A pixel bomb is a few hundred bytes declaring 100000x100000 pixels; Pillow would allocate
the bitmap on `load()`. Its own guard (MAX_IMAGE_PIXELS) only warns up to twice its limit
and is process-global, so the pipeline reads the size itself first: PNG's IHDR, JPEG's
SOFn marker, WebP's VP8/VP8L/VP8X chunk (and VP8X's animation flag).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ImageHeader:
    """Dimensions as the header declares them."""

    width: int
    height: int
    animated: bool = False


def _png(head: bytes) -> ImageHeader | None:
    if len(head) < 24 or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    # An APNG has an acTL chunk before its first IDAT.
    idat = head.find(b"IDAT")
    actl = head.find(b"acTL")
    return ImageHeader(width, height, animated=actl != -1 and (idat == -1 or actl < idat))


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(head: bytes) -> ImageHeader | None:
    at = 2
    while at + 4 <= len(head):
        if head[at] != 0xFF:
            return None
        marker = head[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            at += 2
            continue
        (length,) = struct.unpack(">H", head[at + 2 : at + 4])
        if marker in _SOF and at + 9 <= len(head):
            height, width = struct.unpack(">HH", head[at + 5 : at + 9])
            return ImageHeader(width, height)
        if marker == 0xDA:  # start of scan before any frame header
            return None
        at += 2 + length
    return None


def _webp(head: bytes) -> ImageHeader | None:
    kind = head[12:16]
    data = head[20:]
    if kind == b"VP8X" and len(data) >= 10:
        flags = data[0]
        width = 1 + int.from_bytes(data[4:7], "little")
        height = 1 + int.from_bytes(data[7:10], "little")
        return ImageHeader(width, height, animated=bool(flags & 0x02))
    if kind == b"VP8 " and len(data) >= 10 and data[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[6:10])
        return ImageHeader(width & 0x3FFF, height & 0x3FFF)
    if kind == b"VP8L" and len(data) >= 5 and data[0] == 0x2F:
        bits = int.from_bytes(data[1:5], "little")
        return ImageHeader((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    return None


def image_header(head: bytes, mime: str) -> ImageHeader | None:
    """The header's dimensions of a JPEG, PNG or WebP (None: unreadable, or another type)."""
    if mime == "image/png":
        return _png(head)
    if mime == "image/jpeg":
        return _jpeg(head)
    if mime == "image/webp":
        return _webp(head)
    return None
