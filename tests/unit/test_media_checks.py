"""The built-in media checks on real files (tests/support/media_files.py): what each good
file is detected as, and the reason each hostile or broken one is refused with."""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from actors.media_checks import Inspection, inspect_file, normalize_sha256
from actors.media_detect import normalize_mime
from actors.media_limits import OOXML_DOCX, KiB, MediaLimits
from adapters.errors import MediaRejected
from tests.support import media_files as files

LIMITS = MediaLimits()


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, Callable[[Path], Path]], Path]:
    """A file made once per module by its generator, by name."""
    folder = tmp_path_factory.mktemp("media")
    cache: dict[str, Path] = {}

    def make(name: str, generator: Callable[[Path], Path]) -> Path:
        if name not in cache:
            cache[name] = generator(folder / name)
        return cache[name]

    return make


def check(path: Path, media_type: str, declared: str | None = None, **kwargs: Any) -> Inspection:
    return inspect_file(
        path, media_type=media_type, declared_mime=declared, limits=LIMITS, **kwargs
    )


def refused(
    path: Path, media_type: str, declared: str | None = None, **kwargs: Any
) -> MediaRejected:
    with pytest.raises(MediaRejected) as caught:
        check(path, media_type, declared, **kwargs)
    return caught.value


GOOD = [
    ("photo.jpg", files.jpeg_with_gps, "image", "image/jpeg", "image/jpeg"),
    ("photo.png", files.png, "image", "image/png", "image/png"),
    ("sticker.webp", files.webp_sticker, "sticker", "image/webp", "image/webp"),
    ("voice.ogg", files.ogg_opus_voice, "audio", "audio/ogg; codecs=opus", "audio/ogg"),
    ("song.mp3", files.mp3, "audio", "audio/mpeg", "audio/mpeg"),
    ("song.m4a", files.aac_m4a, "audio", "audio/mp4", "audio/mp4"),
    ("clip.mp4", files.mp4_video, "video", "video/mp4", "video/mp4"),
    ("paper.pdf", files.pdf, "document", "application/pdf", "application/pdf"),
    ("letter.docx", files.docx, "document", OOXML_DOCX, OOXML_DOCX),
    ("notes.txt", files.text_file, "document", "text/plain", "text/plain"),
]


@pytest.mark.parametrize(("name", "generator", "media_type", "declared", "detected"), GOOD)
def test_a_supported_file_is_detected_from_its_bytes(
    made: Callable[[str, Callable[[Path], Path]], Path],
    name: str,
    generator: Callable[[Path], Path],
    media_type: str,
    declared: str,
    detected: str,
) -> None:
    """Each of Meta's supported types, made by its real encoder, passes with its detected
    type (the declared one's parameters and aliases aside) and its own sha256 and size."""
    path = made(name, generator)
    found = check(path, media_type, declared)
    assert found.mime_type == detected
    assert found.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert found.size == path.stat().st_size
    assert check(path, media_type, None).mime_type == detected  # nothing declared: same


def test_image_dimensions_and_animation_come_from_the_header(tmp_path: Path) -> None:
    """JPEG's frame header, PNG's IHDR and WebP's VP8X say width, height and animation."""
    jpeg = check(files.jpeg_with_gps(tmp_path / "a.jpg", 640, 480), "image")
    assert (jpeg.width, jpeg.height, jpeg.animated) == (640, 480, False)
    png = check(files.png(tmp_path / "a.png", 123, 45), "image")
    assert (png.width, png.height) == (123, 45)
    animated = check(files.webp_sticker(tmp_path / "a.webp", animated=True), "sticker")
    assert (animated.width, animated.height, animated.animated) == (512, 512, True)


def test_aliases_and_parameters_of_declared_types_are_the_same_type() -> None:
    """Phones and Meta write the same type many ways; they are one type to the rule."""
    assert normalize_mime("image/jpg") == "image/jpeg"
    assert normalize_mime("Audio/OGG; codecs=opus") == "audio/ogg"
    assert normalize_mime("audio/mp3") == "audio/mpeg"
    assert normalize_mime("video/3gp") == "video/3gpp"
    assert normalize_mime(None) is None


def test_an_mp4_with_sound_only_declared_as_audio_is_audio(
    made: Callable[[str, Callable[[Path], Path]], Path],
) -> None:
    """An audio message whose MP4 has a generic brand (isom) is the audio/mp4 it says."""
    path = made("clip.mp4", files.mp4_video)
    assert check(path, "audio", "audio/mp4").mime_type == "audio/mp4"


def test_a_windows_program_declared_as_a_jpeg_is_an_executable(tmp_path: Path) -> None:
    """The issue's case: an MZ/PE file sent as image/jpeg is `executable`, not merely a
    type mismatch."""
    error = refused(files.pe_executable(tmp_path / "x.jpg"), "image", "image/jpeg")
    assert error.reason == "executable"
    assert "MZ" in error.detail


@pytest.mark.parametrize(
    "head",
    [b"\x7fELF\x02\x01\x01", b"\xcf\xfa\xed\xfe\x07", b"\xca\xfe\xba\xbe\x00", b"#!/bin/sh\n"],
    ids=["elf", "macho", "fat-macho-or-java", "shebang"],
)
def test_other_programs_are_executables(tmp_path: Path, head: bytes) -> None:
    """ELF, Mach-O and shebang scripts are refused as programs too, as a document."""
    path = tmp_path / "program"
    path.write_bytes(head + bytes(200))
    assert refused(path, "document", "application/pdf").reason == "executable"


def test_amr_audio_starts_with_hash_bang_but_is_no_script(tmp_path: Path) -> None:
    """AMR's magic is "#!AMR": audio, not a shebang."""
    path = tmp_path / "voice.amr"
    path.write_bytes(b"#!AMR\n" + bytes(64))
    assert check(path, "audio", "audio/amr").mime_type == "audio/amr"


def test_a_pdf_declared_as_a_png_is_a_type_mismatch(
    made: Callable[[str, Callable[[Path], Path]], Path],
) -> None:
    """The issue's case: a PDF sent as image/png."""
    error = refused(made("paper.pdf", files.pdf), "image", "image/png")
    assert error.reason == "type_mismatch"
    assert "application/pdf" in error.detail


def test_a_type_not_allowed_for_the_message_type_is_refused(
    made: Callable[[str, Callable[[Path], Path]], Path],
) -> None:
    """A PDF declared as nothing in an image message, and a WebP image message: real,
    honest files, but not what Meta allows for that message type."""
    assert refused(made("paper.pdf", files.pdf), "image").reason == "type_not_allowed"
    sticker = made("sticker.webp", files.webp_sticker)
    assert refused(sticker, "image", "image/webp").reason == "type_not_allowed"
    limits = MediaLimits(allowed_types={**LIMITS.allowed_types, "image": frozenset({"image/webp"})})
    assert (
        inspect_file(sticker, media_type="image", declared_mime=None, limits=limits).mime_type
        == "image/webp"
    )


def test_eicar_is_malware_whatever_it_is_declared_as(tmp_path: Path) -> None:
    """The EICAR string, alone or inside a document's zip, is malware without a scanner."""
    assert refused(files.eicar(tmp_path / "e.txt"), "document", "text/plain").reason == "malware"
    inside = files.docx_hiding(tmp_path / "e.docx", "word/media/readme.txt", files.EICAR)
    assert refused(inside, "document", OOXML_DOCX).reason == "malware"


def test_a_program_inside_a_document_is_an_executable(tmp_path: Path) -> None:
    """A PE as a member of a .docx, by its bytes (a harmless name) or its name."""
    pe = files.pe_executable(tmp_path / "pe").read_bytes()
    by_bytes = files.docx_hiding(tmp_path / "a.docx", "word/media/image1.png", pe)
    assert refused(by_bytes, "document").reason == "executable"
    by_name = files.docx_hiding(tmp_path / "b.docx", "word/embeddings/setup.exe", b"hello")
    assert refused(by_name, "document").reason == "executable"


def test_macro_enabled_office_documents_are_refused(tmp_path: Path) -> None:
    """A .docm (macro-enabled content type and a vbaProject.bin), and a .docx that only
    hides a vbaProject.bin, are `macro`."""
    assert refused(files.docm(tmp_path / "m.docm"), "document").reason == "macro"
    sneaky = files.docx_hiding(tmp_path / "s.docx", "word/vbaProject.bin", b"\xd0\xcf\x11\xe0")
    assert refused(sneaky, "document", OOXML_DOCX).reason == "macro"


def test_a_zip_bomb_is_refused_by_its_declared_size(tmp_path: Path) -> None:
    """200 MB of zeros in a 200 kB zip is refused from the central directory alone (limit
    lowered to keep the generator fast)."""
    bomb = files.zip_bomb(tmp_path / "bomb.zip", megabytes=200)
    limits = MediaLimits(
        archive_max_uncompressed=100 * 1024 * 1024,
        allowed_types={"document": frozenset({"application/zip"})},
    )
    with pytest.raises(MediaRejected) as caught:
        inspect_file(bomb, media_type="document", declared_mime="application/zip", limits=limits)
    assert caught.value.reason == "archive_bomb"
    assert "declared" in caught.value.detail


def test_a_zip_whose_ratio_is_a_bombs_is_refused(tmp_path: Path) -> None:
    """20 MB of zeros (under the size limit, over the ratio floor) expands 1000:1."""
    bomb = files.zip_bomb(tmp_path / "ratio.zip", megabytes=20)
    error = refused(bomb, "document", "application/zip")
    assert (error.reason, "ratio" in error.detail) == ("archive_bomb", True)


def test_a_zip_that_lies_about_its_sizes_is_refused_without_inflating_it(tmp_path: Path) -> None:
    """A member of 20 MB of zeros whose headers claim 1 kB passes the directory's count,
    but is never inflated past the claim: the inflated bytes do not match its CRC."""
    liar = tmp_path / "liar.zip"
    with zipfile.ZipFile(liar, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.bin", bytes(20 * 1024 * 1024))
    data = bytearray(liar.read_bytes())
    struct.pack_into("<I", data, 22, 1024)  # the local header's uncompressed size
    struct.pack_into("<I", data, data.rfind(b"PK\x01\x02") + 24, 1024)  # the directory's
    liar.write_bytes(bytes(data))
    assert zipfile.ZipFile(liar).infolist()[0].file_size == 1024
    error = refused(liar, "document", "application/zip")
    assert (error.reason, "crc" in error.detail.lower()) == ("corrupt", True)


def test_nested_archives_and_member_counts_are_bombs(tmp_path: Path) -> None:
    """Zips inside zips 4 deep (42.zip's shape), and more members than the limit."""
    nested = files.nested_zip_bomb(tmp_path / "nested.zip")
    error = refused(nested, "document", "application/zip")
    assert (error.reason, "nested" in error.detail) == ("archive_bomb", True)
    many = tmp_path / "many.docx"
    files.docx(many)
    with zipfile.ZipFile(many, "a") as archive:
        for index in range(20):
            archive.writestr(f"word/part{index}.xml", "<x/>")
    limits = MediaLimits(archive_max_members=10)
    with pytest.raises(MediaRejected) as caught:
        inspect_file(many, media_type="document", declared_mime=None, limits=limits)
    assert caught.value.reason == "archive_bomb"
    assert check(many, "document").mime_type == OOXML_DOCX  # under the default limit


def test_a_pixel_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    """A 69-byte PNG declaring 100000x100000 pixels never reaches a decoder; one under the
    limit passes."""
    bomb = files.pixel_bomb_png(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 200
    error = refused(bomb, "image", "image/png")
    assert (error.reason, "100000x100000" in error.detail) == ("pixel_bomb", True)
    big = files.png(tmp_path / "big.png", 800, 600)
    assert check(big, "image").width == 800
    small = MediaLimits(max_pixels=800 * 600 - 1)
    with pytest.raises(MediaRejected, match="pixel_bomb"):
        inspect_file(big, media_type="image", declared_mime=None, limits=small)


def test_meta_sha256_is_accepted_as_hex_or_base64_and_checked(
    made: Callable[[str, Callable[[Path], Path]], Path],
) -> None:
    """Meta's sha256 is hex in the Graph API and base64 in some webhooks: both verify; a
    wrong one (either form) or garbage is `sha256_mismatch`."""
    path = made("photo.jpg", files.jpeg_with_gps)
    digest = hashlib.sha256(path.read_bytes()).digest()
    for form in (digest.hex(), digest.hex().upper(), base64.b64encode(digest).decode()):
        assert check(path, "image", expected_sha256=[form]).sha256 == digest.hex()
    assert normalize_sha256(base64.urlsafe_b64encode(digest).decode().rstrip("=")) == digest.hex()
    other = hashlib.sha256(b"other").digest()
    for form in (other.hex(), base64.b64encode(other).decode(), "not-a-hash"):
        assert refused(path, "image", expected_sha256=[None, form]).reason == "sha256_mismatch"


def test_sizes_are_checked_against_meta_and_the_caps(tmp_path: Path) -> None:
    """A size other than Meta's file_size is `size_mismatch`; over the type's cap is
    `too_large`; a static sticker over 100 kB is too large where an animated one is not."""
    photo = files.jpeg_with_gps(tmp_path / "p.jpg")
    assert refused(photo, "image", expected_size=photo.stat().st_size + 1).reason == "size_mismatch"
    limits = MediaLimits(max_bytes_image=photo.stat().st_size - 1)
    with pytest.raises(MediaRejected, match="too_large"):
        inspect_file(photo, media_type="image", declared_mime=None, limits=limits)
    noisy = tmp_path / "noise.webp"
    from PIL import Image

    Image.frombytes("RGB", (512, 512), os.urandom(512 * 512 * 3)).save(noisy, "WEBP", quality=95)
    assert 100 * KiB < noisy.stat().st_size < 500 * KiB
    assert refused(noisy, "sticker").reason == "too_large"
    assert check(noisy, "sticker", animated=True).mime_type == "image/webp"


def test_unknown_and_empty_files_are_unrecognized(tmp_path: Path) -> None:
    """Random bytes and an empty file have no signature."""
    noise = tmp_path / "noise"
    noise.write_bytes(b"\x00\x9f" + os.urandom(4000))
    assert refused(noise, "document").reason == "unrecognized"
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert refused(empty, "document").reason == "unrecognized"
