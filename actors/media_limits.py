"""What the media pipeline accepts: size caps, allowed types, bomb limits, image handling.

The defaults are Meta's own limits for the Cloud API's media (image 5 MB, video and audio
16 MB, document 100 MB, sticker 100 kB static / 500 kB animated) and Meta's supported
types per message type: a file Meta itself would not have accepted from a business is
refused from a customer too. Sizes are MiB/KiB: Meta writes "MB" and its clients round
down, so the binary unit never refuses a file Meta let through.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

KiB = 1024
MiB = 1024 * KiB

OOXML_DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
OOXML_XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
OOXML_PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
MSWORD = "application/msword"
MSEXCEL = "application/vnd.ms-excel"
MSPOWERPOINT = "application/vnd.ms-powerpoint"

META_ALLOWED_TYPES: Mapping[str, frozenset[str]] = {
    "image": frozenset({"image/jpeg", "image/png"}),
    "sticker": frozenset({"image/webp"}),
    # audio/ogg means OGG with Opus only (media_detect calls other OGG application/ogg).
    "audio": frozenset({"audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"}),
    "video": frozenset({"video/mp4", "video/3gpp"}),
    "document": frozenset(
        {
            "application/pdf",
            "text/plain",
            MSWORD,
            MSEXCEL,
            MSPOWERPOINT,
            OOXML_DOCX,
            OOXML_XLSX,
            OOXML_PPTX,
        }
    ),
}
"""Meta's supported media types (Cloud API reference, "Supported media types")."""


def _meta_allowed() -> dict[str, frozenset[str]]:
    return dict(META_ALLOWED_TYPES)


@dataclass(frozen=True, slots=True)
class MediaLimits:
    """The pipeline's limits; one instance per process, built from the settings."""

    max_bytes_image: int = 5 * MiB
    max_bytes_video: int = 16 * MiB
    max_bytes_audio: int = 16 * MiB
    max_bytes_document: int = 100 * MiB
    max_bytes_sticker: int = 100 * KiB
    max_bytes_sticker_animated: int = 500 * KiB
    # 40 MP: a 12 MP phone photo is far below, a decoded RGBA bitmap of the limit is 160 MB.
    # Must stay at or under Pillow's MAX_IMAGE_PIXELS (89 MP), whose guard warns above it.
    max_pixels: int = 40_000_000
    max_frames: int = 1_000  # frames of an animated sticker
    # Archives (zip, and OOXML documents, which are zips): what the members expand to.
    archive_max_members: int = 10_000
    archive_max_uncompressed: int = 512 * MiB
    archive_max_ratio: float = 100.0  # expanded / compressed, counted above the floor only
    archive_ratio_floor: int = 16 * MiB  # a small file compressing well is no bomb
    archive_max_depth: int = 2  # a zip inside a zip inside the file: deeper is refused
    thumbnail_px: int = 320  # the thumbnail's longest side (JPEG)
    # Images over this many bytes, or with a side over recompress_max_side, are re-encoded
    # smaller (None: never); every JPEG is re-encoded anyway to drop its EXIF.
    recompress_over_bytes: int | None = 2 * MiB
    recompress_max_side: int = 2560
    jpeg_quality: int = 85
    # Wall-clock bound on describing one file (Pillow, PyAV, pypdf) before it is refused.
    decode_timeout_s: float = 30.0
    allowed_types: Mapping[str, frozenset[str]] = field(default_factory=_meta_allowed)

    def capped(self, media_type: str, cap: int | None) -> MediaLimits:
        """These limits with a tenant's cap for one type, where it is lower (a tenant
        cannot raise the service's cap: it bounds the work folder and the memory)."""
        if cap is None:
            return self
        names = (
            ("max_bytes_sticker", "max_bytes_sticker_animated")
            if media_type == "sticker"
            else (f"max_bytes_{media_type}",)
        )
        return dataclasses.replace(self, **{n: min(getattr(self, n), cap) for n in names})

    def max_bytes(self, media_type: str, *, animated: bool = False) -> int:
        """The cap for a message type (a sticker's is the animated one when animated)."""
        if media_type == "sticker":
            return self.max_bytes_sticker_animated if animated else self.max_bytes_sticker
        caps = {
            "image": self.max_bytes_image,
            "video": self.max_bytes_video,
            "audio": self.max_bytes_audio,
            "document": self.max_bytes_document,
        }
        return caps[media_type]
