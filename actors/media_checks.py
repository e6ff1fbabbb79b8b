"""The built-in checks every downloaded file goes through, whatever the scanner says.

`inspect_file` runs in a worker thread (hashing and inflating archives are CPU work) and
either returns what the file is or raises MediaRejected with one of models/media.py's
reasons. Order matters for the reason a hostile file gets: the bytes must be Meta's
(size, sha256) before anything is said of them; then what is dangerous whatever it was
declared as (EICAR, a program, a bomb, a macro), so a Windows program declared image/jpeg
is `executable`, not merely `type_mismatch`; then the declared-vs-detected rule and the
message type's allowed list; last the image header's pixel count.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from actors.media_archive import inspect_zip, program_signature
from actors.media_detect import GENERIC_DECLARED, HEAD_BYTES, detect_mime, normalize_mime, same_type
from actors.media_image_header import image_header
from actors.media_limits import MSEXCEL, MSPOWERPOINT, MSWORD, MediaLimits
from adapters.errors import MediaRejected

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
_OLE2_MACRO_STREAMS = ("macros", "_vba_project_cur", "vba", "_vba_project")
_HASH_CHUNK = 1024 * 1024
_IMAGE_HEADER_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Inspection:
    """What the checks found the file to be."""

    mime_type: str  # detected
    sha256: str  # hex, of the bytes as downloaded
    size: int
    animated: bool = False  # an image with more than one frame
    width: int | None = None  # images: from the header
    height: int | None = None


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in chunks (never whole into memory)."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def normalize_sha256(value: str) -> str | None:
    """Meta's sha256 as hex: its webhooks send base64 in some versions and hex in others
    (and the Graph API's media lookup hex); None when it is neither."""
    text = value.strip()
    if len(text) == 64:
        try:
            return bytes.fromhex(text).hex()
        except ValueError:
            pass
    padded = text + "=" * (-len(text) % 4)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            raw = decode(padded)
        except (binascii.Error, ValueError):
            continue
        if len(raw) == 32:
            return raw.hex()
    return None


def _verify(
    path: Path, size: int, expected_size: int | None, expected_sha256: Iterable[str | None]
) -> str:
    if expected_size is not None and expected_size != size:
        raise MediaRejected("size_mismatch", f"{size} bytes, Meta announced {expected_size}")
    actual = sha256_file(path)
    for value in expected_sha256:
        if value is None:
            continue
        wanted = normalize_sha256(value)
        if wanted is None:
            raise MediaRejected(
                "sha256_mismatch", f"Meta's sha256 {value[:16]}... is not hex nor base64"
            )
        if wanted != actual:
            raise MediaRejected("sha256_mismatch", f"got {actual}, Meta sent {wanted}")
    return actual


def _ole2_macro(path: Path) -> bool:
    import olefile

    try:
        with olefile.OleFileIO(str(path)) as ole:
            entries = [
                "/".join(entry).lower() for entry in ole.listdir(streams=True, storages=True)
            ]
    except (OSError, ValueError, IndexError, TypeError):
        return False
    return any(part in _OLE2_MACRO_STREAMS for entry in entries for part in entry.split("/"))


def _dangerous(path: Path, head: bytes, detected: str | None, limits: MediaLimits) -> None:
    if EICAR in head[:4096]:
        raise MediaRejected("malware", "EICAR test file")
    if (kind := program_signature(head)) is not None:
        raise MediaRejected("executable", kind)
    if detected is None:
        return
    if (
        detected == "application/zip"
        or detected.startswith("application/vnd.openxmlformats")
        or ("macroenabled" in detected.lower())
    ):
        if inspect_zip(path, limits, EICAR) or "macroenabled" in detected.lower():
            raise MediaRejected("macro", f"{detected} with a VBA project or macro-enabled content")
    elif detected in (MSWORD, MSEXCEL, MSPOWERPOINT, "application/x-ole-storage") and _ole2_macro(
        path
    ):
        raise MediaRejected("macro", f"{detected} with VBA streams")


def _check_type(media_type: str, declared: str | None, detected: str, limits: MediaLimits) -> str:
    """The detected type as it is stored (an MP4 declared audio/mp4 is audio/mp4)."""
    wanted = normalize_mime(declared)
    if wanted is not None and wanted not in GENERIC_DECLARED:
        if not same_type(wanted, detected):
            raise MediaRejected("type_mismatch", f"declared {wanted}, detected {detected}")
        detected = wanted
    allowed = limits.allowed_types.get(media_type, frozenset())
    if detected not in allowed and not (media_type == "audio" and detected == "video/mp4"):
        raise MediaRejected("type_not_allowed", f"{detected} is not allowed for {media_type}")
    return "audio/mp4" if media_type == "audio" and detected == "video/mp4" else detected


def inspect_file(
    path: Path,
    *,
    media_type: str,
    declared_mime: str | None,
    expected_sha256: Iterable[str | None] = (),
    expected_size: int | None = None,
    animated: bool = False,
    limits: MediaLimits,
) -> Inspection:
    """Check a downloaded file; what it is, or MediaRejected with the reason it is refused."""
    size = path.stat().st_size
    cap = limits.max_bytes(media_type, animated=True)  # the sticker's own cap comes below
    if size > cap:
        raise MediaRejected("too_large", f"{size} bytes, over {cap} for {media_type}")
    sha256 = _verify(path, size, expected_size, expected_sha256)
    with path.open("rb") as file:
        head = file.read(HEAD_BYTES)
    if not head:
        raise MediaRejected("unrecognized", "empty file")
    detected = detect_mime(path, head)
    _dangerous(path, head, detected, limits)
    if detected is None:
        raise MediaRejected("unrecognized", f"no known signature (starts {head[:8].hex()})")
    mime = _check_type(media_type, declared_mime, detected, limits)
    if not mime.startswith("image/"):
        return Inspection(mime, sha256, size)
    if len(head) == HEAD_BYTES:  # a JPEG's frame header may follow 64 kB APP segments
        with path.open("rb") as file:
            head = file.read(_IMAGE_HEADER_BYTES)
    header = image_header(head, mime)
    if header is None:
        raise MediaRejected("corrupt", f"{mime} without a readable header")
    if header.width * header.height > limits.max_pixels:
        raise MediaRejected(
            "pixel_bomb",
            f"{header.width}x{header.height} declared, over {limits.max_pixels} pixels",
        )
    is_animated = animated or header.animated
    if media_type == "sticker" and size > limits.max_bytes(media_type, animated=is_animated):
        cap = limits.max_bytes(media_type, animated=is_animated)
        raise MediaRejected("too_large", f"{size} bytes, over {cap} for a static sticker")
    return Inspection(mime, sha256, size, header.animated, header.width, header.height)
