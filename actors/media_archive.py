"""Zip archives (and OOXML documents, which are zips): bombs, programs and macros inside.

The central directory is read first (cheap: it refuses a bomb by its declared sizes and
member count without inflating anything), then every member is inflated in a stream with
a running total, because the declared sizes are the attacker's to write: the stream stops
at the limit, whatever the headers said. A member that is itself a zip is looked into the
same way up to `archive_max_depth` levels; deeper is a bomb's shape (42.zip) and refused.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import IO

from actors.media_limits import MediaLimits
from adapters.errors import MediaRejected

_CHUNK = 256 * 1024
_NESTED_MAX_BYTES = 32 * 1024 * 1024  # a nested archive is read into memory: bound it
_PROGRAM_SUFFIXES = (
    ".exe", ".dll", ".scr", ".com", ".pif", ".msi", ".bat", ".cmd", ".vbs", ".vbe", ".js",
    ".jse", ".wsf", ".ps1", ".hta", ".cpl", ".jar", ".lnk", ".sh", ".elf", ".apk",
)  # fmt: skip


def program_signature(head: bytes) -> str | None:
    """What kind of program these first bytes start, or None: PE/DOS ("MZ"), ELF,
    Mach-O (thin or fat; fat's magic is also a Java class), or a script's shebang."""
    if head.startswith(b"MZ"):
        return "Windows executable (MZ/PE)"
    if head.startswith(b"\x7fELF"):
        return "ELF executable"
    if head[:4] in (
        b"\xfe\xed\xfa\xce",
        b"\xfe\xed\xfa\xcf",
        b"\xce\xfa\xed\xfe",
        b"\xcf\xfa\xed\xfe",
    ):
        return "Mach-O executable"
    if head[:4] == b"\xca\xfe\xba\xbe":
        return "Mach-O universal binary or Java class"
    if head.startswith(b"#!") and not head.startswith(b"#!AMR"):
        return "script with a shebang"
    return None


def _bomb(detail: str) -> MediaRejected:
    return MediaRejected("archive_bomb", detail)


def _check_directory(archive: zipfile.ZipFile, limits: MediaLimits, compressed: int) -> None:
    members = archive.infolist()
    if len(members) > limits.archive_max_members:
        raise _bomb(f"{len(members)} members, over {limits.archive_max_members}")
    declared = sum(member.file_size for member in members)
    _check_totals(declared, compressed, limits, "declared ")


def _check_totals(expanded: int, compressed: int, limits: MediaLimits, what: str = "") -> None:
    if expanded > limits.archive_max_uncompressed:
        raise _bomb(f"{what}{expanded} bytes expanded, over {limits.archive_max_uncompressed}")
    ratio = expanded / max(compressed, 1)
    if expanded > limits.archive_ratio_floor and ratio > limits.archive_max_ratio:
        raise _bomb(f"{what}expansion ratio {ratio:.0f}:1, over {limits.archive_max_ratio:.0f}:1")


def inspect_zip(path: Path, limits: MediaLimits, eicar: bytes) -> bool:
    """Refuse a bomb, a program or EICAR inside (MediaRejected); True when it holds a VBA
    project or a macro-enabled content type (the caller's `macro` refusal)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return _inspect(archive, limits, eicar, path.stat().st_size, depth=1, total=[0])
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        EOFError,
        NotImplementedError,
        ValueError,
    ) as error:
        raise MediaRejected("corrupt", f"zip: {error}") from error


def _inspect(
    archive: zipfile.ZipFile,
    limits: MediaLimits,
    eicar: bytes,
    compressed: int,
    depth: int,
    total: list[int],
) -> bool:
    _check_directory(archive, limits, compressed)
    macro = False
    for member in archive.infolist():
        name = member.filename.lower()
        if name.endswith("vbaproject.bin") or name.endswith("vbadata.xml"):
            macro = True
        if name == "[content_types].xml" and member.file_size < 1024 * 1024:
            types = archive.read(member).lower()
            macro = macro or b"macroenabled" in types or b"vbaproject" in types
        if member.is_dir():
            continue
        if name.endswith(_PROGRAM_SUFFIXES):
            raise MediaRejected("executable", f"archive member {member.filename!r}")
        with archive.open(member) as stream:
            head, nested = _drain(stream, member, limits, compressed, total)
        if (kind := program_signature(head)) is not None:
            raise MediaRejected("executable", f"{kind} in archive member {member.filename!r}")
        if eicar in head:
            raise MediaRejected("malware", f"EICAR test file in archive member {member.filename!r}")
        if nested is not None:
            if depth >= limits.archive_max_depth:
                raise _bomb(
                    f"archives nested over {limits.archive_max_depth} deep ({member.filename!r})"
                )
            with zipfile.ZipFile(io.BytesIO(nested)) as inner:
                macro = _inspect(inner, limits, eicar, len(nested), depth + 1, total) or macro
    return macro


def _drain(
    stream: IO[bytes],
    member: zipfile.ZipInfo,
    limits: MediaLimits,
    compressed: int,
    total: list[int],
) -> tuple[bytes, bytes | None]:
    """Inflate one member to its end, counting every byte against the archive's totals;
    its first bytes, and its whole content when it is itself a zip (bounded)."""
    head = b""
    nested: bytearray | None = None
    while chunk := stream.read(_CHUNK):
        if not head:
            head = chunk[:4096]
            if head.startswith(b"PK\x03\x04") and member.file_size <= _NESTED_MAX_BYTES:
                nested = bytearray()
        total[0] += len(chunk)
        _check_totals(total[0], compressed, limits)
        if nested is not None:
            nested += chunk
            if len(nested) > _NESTED_MAX_BYTES:
                raise _bomb(f"nested archive {member.filename!r} over {_NESTED_MAX_BYTES} bytes")
    if head.startswith(b"PK\x03\x04") and nested is None:
        raise _bomb(f"nested archive {member.filename!r} over {_NESTED_MAX_BYTES} bytes")
    return head, None if nested is None else bytes(nested)
