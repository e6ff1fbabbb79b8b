"""Real media files for the media pipeline's tests, made by real encoders into a tmp dir.

Nothing here is a committed blob: Pillow writes the images and the PDF, ffmpeg and
espeak-ng the audio and video (Debian's packages, installed by .ci/services.sh), and the
hostile files (a PE header, EICAR, zip bombs, a pixel bomb, a macro document) are built
byte by byte with struct and zipfile, so each test shows what it feeds the pipeline.
A generator whose tool is missing raises ToolMissing; `need()` turns that into a skip.
"""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path

import pytest
from PIL import Image

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
"""The anti-malware test file (68 bytes): every scanner reports it, none is harmed."""

EICAR_MD5 = "44d88612fea8a8f36de82e1278abb02f"

TEST_MARKER = b"WA-INGEST-TEST-MALWARE-MARKER"
"""A string the tests' own clamd database (tests/support/clamd_server.py) calls malware,
to prove the scanner's verdict reaches the pipeline for a file the built-in checks pass."""

GPS_LATITUDE = (52.0, 31.0, 12.34)


class ToolMissing(Exception):
    """The encoder this generator needs is not installed."""


def need(tool: str) -> str:
    """The tool's path, or skip the calling test saying which tool is missing."""
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (apt-get install {tool}; .ci/services.sh)")
    return path


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=120)


def _gradient(width: int, height: int) -> Image.Image:
    """A picture with detail (not a flat colour), so encoders produce realistic sizes."""
    image = Image.linear_gradient("L").resize((width, height))
    return Image.merge(
        "RGB", (image, image.rotate(90), image.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    )


def jpeg_with_gps(dest: Path, width: int = 640, height: int = 480, orientation: int = 6) -> Path:
    """A JPEG whose EXIF has a GPS position, a camera model and an orientation tag (6:
    rotate 90° clockwise to view), as a phone writes it."""
    exif = Image.Exif()
    exif[0x0110] = "WA-Test-Phone"  # Model
    exif[0x0112] = orientation  # Orientation
    gps = {1: "N", 2: GPS_LATITUDE, 3: "E", 4: (13.0, 24.0, 0.0)}
    exif[0x8825] = gps  # GPSInfo IFD
    _gradient(width, height).save(dest, "JPEG", quality=90, exif=exif.tobytes())
    return dest


def png(dest: Path, width: int = 400, height: int = 300) -> Path:
    """A plain RGB PNG with a text chunk (metadata the sanitizer drops)."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "made by tests/support/media_files.py")
    _gradient(width, height).save(dest, "PNG", pnginfo=info)
    return dest


def webp_sticker(dest: Path, *, animated: bool = False, size: int = 512) -> Path:
    """A 512x512 WebP sticker, static or with 4 frames."""
    frames = [_gradient(size, size).rotate(angle) for angle in (0, 90, 180, 270)]
    if animated:
        frames[0].save(
            dest, "WEBP", save_all=True, append_images=frames[1:], duration=200, loop=0, quality=50
        )
    else:
        frames[0].save(dest, "WEBP", quality=60)
    return dest


def pdf(dest: Path, pages: int = 3) -> Path:
    """A PDF with `pages` pages (Pillow's PDF writer)."""
    images = [Image.new("RGB", (200, 280), (255, 255, 255 - 40 * i)) for i in range(pages)]
    images[0].save(dest, "PDF", save_all=True, append_images=images[1:], resolution=72.0)
    return dest


def ogg_opus_voice(dest: Path, text: str = "hello, this is a voice note") -> Path:
    """A voice note as WhatsApp sends one: speech (espeak-ng) encoded OGG/Opus mono 16 kHz."""
    espeak, ffmpeg = need("espeak-ng"), need("ffmpeg")
    wav = dest.with_name(dest.name + ".wav")
    _run(espeak, "-w", str(wav), text)
    _run(
        ffmpeg,
        "-y",
        "-loglevel",
        "error",
        "-i",
        str(wav),
        "-c:a",
        "libopus",
        "-b:a",
        "24k",
        "-ar",
        "16000",
        "-ac",
        "1",
        "-f",
        "ogg",
        str(dest),
    )
    wav.unlink()
    return dest


def _sine(dest: Path, frequency: int, seconds: float, codec: str, container: str) -> Path:
    """A sine tone encoded by ffmpeg (lavfi) with `codec` into `container`."""
    _run(
        need("ffmpeg"),
        "-y",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency={frequency}:duration={seconds}",
        "-c:a",
        codec,
        "-b:a",
        "64k",
        "-f",
        container,
        str(dest),
    )
    return dest


def mp3(dest: Path, seconds: float = 2.0) -> Path:
    """An MP3 of a sine tone (ffmpeg lavfi, libmp3lame)."""
    return _sine(dest, 440, seconds, "libmp3lame", "mp3")


def aac_m4a(dest: Path, seconds: float = 2.0) -> Path:
    """An AAC audio file in an MP4 container (.m4a, `audio/mp4`)."""
    return _sine(dest, 330, seconds, "aac", "ipod")


def mp4_video(dest: Path, seconds: float = 2.0, size: str = "320x240") -> Path:
    """An MP4 with H.264 video and AAC audio, as Meta accepts: lavfi testsrc + sine."""
    ffmpeg = need("ffmpeg")
    _run(
        ffmpeg,
        "-y",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        f"testsrc=duration={seconds}:size={size}:rate=15",
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency=500:duration={seconds}",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-b:a",
        "48k",
        "-shortest",
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
        str(dest),
    )
    return dest


_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" '
    'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>{extra}'
    '<Override PartName="/word/document.xml" ContentType="{main}"/></Types>'
)
_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships/officeDocument" Target="word/document.xml"/></Relationships>'
)
_DOCUMENT = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
    "<w:body><w:p><w:r><w:t>{text}</w:t></w:r></w:p></w:body></w:document>"
)
DOCX_MAIN = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
DOCM_MAIN = "application/vnd.ms-word.document.macroEnabled.main+xml"


def docx(dest: Path, text: str = "Hello from a test document") -> Path:
    """A minimal Word document (OOXML) that Word opens: content types, rels, the body."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES.format(extra="", main=DOCX_MAIN))
        archive.writestr("_rels/.rels", _RELS)
        archive.writestr("word/document.xml", _DOCUMENT.format(text=text))
    return dest


def docm(dest: Path) -> Path:
    """A macro-enabled Word document: the docm main content type and a vbaProject.bin
    (an OLE2 header is enough for the checks; Word would run what it holds)."""
    extra = '<Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/>'
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES.format(extra=extra, main=DOCM_MAIN))
        archive.writestr("_rels/.rels", _RELS)
        archive.writestr("word/document.xml", _DOCUMENT.format(text="Enable content"))
        archive.writestr("word/vbaProject.bin", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504))
    return dest


def docx_hiding(dest: Path, name: str, payload: bytes) -> Path:
    """A Word document carrying one more member (an executable, EICAR, ...)."""
    docx(dest)
    with zipfile.ZipFile(dest, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, payload)
    return dest


def pe_executable(dest: Path) -> Path:
    """A minimal Windows PE: DOS header ('MZ', e_lfanew), 'PE\\0\\0', a COFF header for
    x86-64 and an optional header's magic; enough for any type detector to call it a
    program, and it runs nothing."""
    dos = bytearray(64)
    dos[0:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, 64)  # e_lfanew: the PE header right after
    coff = struct.pack("<4sHHIIIHH", b"PE\0\0", 0x8664, 0, 0, 0, 0, 240, 0x0022)
    optional = struct.pack("<H", 0x20B) + bytes(238)  # PE32+ magic
    dest.write_bytes(bytes(dos) + coff + optional + b"\x90" * 512)
    return dest


def eicar(dest: Path) -> Path:
    """The EICAR test file, exactly its 68 bytes."""
    dest.write_bytes(EICAR)
    return dest


def marker_file(dest: Path) -> Path:
    """A text file carrying TEST_MARKER: plain to the built-in checks, malware to the tests'
    own clamd."""
    dest.write_bytes(b"meeting notes\n" + TEST_MARKER + b"\n")
    return dest


def zip_bomb(dest: Path, megabytes: int = 200) -> Path:
    """A zip whose one member of zeros expands to `megabytes` MB (about 1000:1), streamed
    into the archive so the generator itself stays small in memory."""
    chunk = bytes(1024 * 1024)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:  # noqa: SIM117
        with archive.open("zeros.bin", "w", force_zip64=True) as member:
            for _ in range(megabytes):
                member.write(chunk)
    return dest


def nested_zip_bomb(dest: Path, depth: int = 4) -> Path:
    """Zips inside zips `depth` deep, the innermost holding 10 MB of zeros: small at every
    level, which a depth limit refuses."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("zeros.bin", bytes(10 * 1024 * 1024))
    inner = buffer.getvalue()
    for level in range(depth):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"level{level}.zip", inner)
        inner = buffer.getvalue()
    dest.write_bytes(inner)
    return dest


def pixel_bomb_png(dest: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A PNG whose header declares width x height (10 gigapixels by default) with one tiny
    compressed row of data: a few hundred bytes that would need 30 GB to decode."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" + bytes(3 * 64), 9)
    dest.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return dest


def shell_script(dest: Path) -> Path:
    """A shell script with a shebang."""
    dest.write_bytes(b"#!/bin/sh\necho pwned\n")
    return dest


def text_file(dest: Path) -> Path:
    """A UTF-8 text document."""
    dest.write_text("Liste de courses : œufs, café, crème\n" * 20, encoding="utf-8")
    return dest
