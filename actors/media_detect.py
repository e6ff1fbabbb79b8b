"""A file's real type from its bytes, never from what the sender or Meta declared.

puremagic (pure Python, a kept signature database) names most formats. It is weak exactly
where WhatsApp's media live, so our own checks come first for those: OGG says nothing of
its codec (Meta accepts Opus only), an MP4's brand tells audio (M4A) from video and 3GPP
from MP4, a zip may be an OOXML document (its `[Content_Types].xml` says which), an OLE2
file may be a Word, Excel or PowerPoint file or something else (an MSI installer), AMR
starts with "#!" like a script, and plain text has no signature at all.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import olefile
import puremagic

from actors.media_limits import (
    MSEXCEL,
    MSPOWERPOINT,
    MSWORD,
    OOXML_DOCX,
    OOXML_PPTX,
    OOXML_XLSX,
)

HEAD_BYTES = 64 * 1024

_MS = "application/vnd.ms-"
_MP4_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P "}
_QUICKTIME_BRANDS = {b"qt  "}
_OOXML_MAIN = {
    "wordprocessingml.document.main+xml": OOXML_DOCX,
    "wordprocessingml.template.main+xml": OOXML_DOCX,
    "spreadsheetml.sheet.main+xml": OOXML_XLSX,
    "spreadsheetml.template.main+xml": OOXML_XLSX,
    "presentationml.presentation.main+xml": OOXML_PPTX,
    "presentationml.slideshow.main+xml": OOXML_PPTX,
    "presentationml.template.main+xml": OOXML_PPTX,
    # Macro-enabled: detected as such so the macro check and the allowed list both see it.
    "ms-word.document.macroenabled.main+xml": _MS + "word.document.macroEnabled.12",
    "ms-word.template.macroenabledtemplate.main+xml": _MS + "word.template.macroEnabled.12",
    "ms-excel.sheet.macroenabled.main+xml": _MS + "excel.sheet.macroEnabled.12",
    "ms-excel.template.macroenabled.main+xml": _MS + "excel.template.macroEnabled.12",
    "ms-excel.addin.macroenabled.main+xml": _MS + "excel.addin.macroEnabled.12",
    "ms-powerpoint.presentation.macroenabled.main+xml": _MS
    + "powerpoint.presentation.macroEnabled.12",
    "ms-powerpoint.slideshow.macroenabled.main+xml": _MS + "powerpoint.slideshow.macroEnabled.12",
}

# Declared names that mean the same type as ours (Meta and phones use all of them).
_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "audio/mp3": "audio/mpeg",
    "audio/mpeg3": "audio/mpeg",
    "audio/x-mpeg": "audio/mpeg",
    "audio/x-mp3": "audio/mpeg",
    "audio/opus": "audio/ogg",
    "audio/x-m4a": "audio/mp4",
    "audio/m4a": "audio/mp4",
    "audio/x-aac": "audio/aac",
    "audio/aacp": "audio/aac",
    "audio/amr-nb": "audio/amr",
    "video/3gp": "video/3gpp",
    "audio/3gpp": "video/3gpp",
    "application/x-pdf": "application/pdf",
}
# One container, two names: an MP4 holding only sound is audio/mp4 to its sender.
_SAME_CONTAINER = ({"video/mp4", "audio/mp4"},)
GENERIC_DECLARED = {"application/octet-stream", "binary/octet-stream", "application/unknown"}


def normalize_mime(mime: str | None) -> str | None:
    """The MIME type without parameters, lower case, aliases resolved ("audio/ogg;
    codecs=opus" is audio/ogg); None for none."""
    if not mime:
        return None
    base = mime.split(";", 1)[0].strip().lower()
    return _ALIASES.get(base, base) or None


def same_type(declared: str, detected: str) -> bool:
    """Whether a declared (normalized) type names the detected one."""
    if declared == detected.lower():
        return True
    return any(declared in group and detected in group for group in _SAME_CONTAINER)


def _ftyp(head: bytes) -> str | None:
    if len(head) < 12 or head[4:8] != b"ftyp":
        return None
    brand = head[8:12]
    if brand.startswith(b"3g"):
        return "video/3gpp"
    if brand in _MP4_AUDIO_BRANDS:
        return "audio/mp4"
    if brand in _QUICKTIME_BRANDS:
        return "video/quicktime"
    return "video/mp4"


def _ogg(head: bytes) -> str:
    # The first page's packet is the codec's identification header.
    return "audio/ogg" if b"OpusHead" in head[:512] else "application/ogg"


def _ooxml(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = {name.lower() for name in archive.namelist()}
            if "[content_types].xml" not in names:
                return "application/zip"
            info = archive.getinfo(
                next(n for n in archive.namelist() if n.lower() == "[content_types].xml")
            )
            if info.file_size > 1 * 1024 * 1024:  # a content-types list is a few kB
                return "application/zip"
            types = archive.read(info).decode("utf-8", "replace").lower()
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError):
        return "application/zip"
    for suffix, mime in _OOXML_MAIN.items():
        if suffix in types:
            return mime
    return "application/zip"


def _ole2(path: Path) -> str:
    try:
        with olefile.OleFileIO(str(path)) as ole:
            streams = {
                "/".join(entry).lower() for entry in ole.listdir(streams=True, storages=True)
            }
    except (OSError, ValueError, IndexError, TypeError):
        return "application/x-ole-storage"
    if "worddocument" in streams:
        return MSWORD
    if "workbook" in streams or "book" in streams:
        return MSEXCEL
    if "powerpoint document" in streams:
        return MSPOWERPOINT
    return "application/x-ole-storage"  # MSI installers, Outlook messages, ...


def _text(head: bytes) -> bool:
    if not head or b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        # A multibyte character cut by the head's end is still text.
        if error.start < len(head) - 4:
            return False
    printable = sum(1 for byte in head if byte >= 0x20 or byte in b"\t\n\r\f")
    return printable >= 0.95 * len(head)


def detect_mime(path: Path, head: bytes) -> str | None:  # noqa: C901 - one signature table
    """The detected MIME type of the file at `path` (`head`: its first HEAD_BYTES), None
    when nothing recognizes it."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"OggS"):
        return _ogg(head)
    if head.startswith((b"#!AMR\n", b"#!AMR-WB\n")):
        return "audio/amr"
    if (ftyp := _ftyp(head)) is not None:
        return ftyp
    if head.startswith(b"ID3") or (
        len(head) > 1 and head[0] == 0xFF and head[1] & 0xE6 in (0xE2, 0xE4, 0xE6)
    ):
        return "audio/mpeg"  # ID3 tag, or an MPEG audio frame sync with layer III/II/I
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return "audio/aac"  # ADTS: sync word, layer 00
    if head.startswith(b"PK\x03\x04"):
        return _ooxml(path)
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return _ole2(path)
    if _text(head):
        return "text/plain"
    try:
        guesses = puremagic.magic_string(head)
    except (puremagic.PureError, ValueError):
        return None
    for guess in guesses:
        if guess.mime_type and guess.confidence >= 0.5:
            return str(guess.mime_type)
    return None
