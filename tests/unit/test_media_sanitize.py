"""Sanitizing and describing real files: EXIF and GPS gone with the picture kept upright,
thumbnails, re-compression, and the metadata PyAV, Pillow and pypdf read from the bytes."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from actors.media_checks import inspect_file
from actors.media_limits import MediaLimits
from actors.media_sanitize import Sanitized, sanitize
from adapters.errors import MediaRejected
from tests.support import media_files as files

LIMITS = MediaLimits()


def clean(path: Path, media_type: str, out: Path, limits: MediaLimits = LIMITS) -> Sanitized:
    inspection = inspect_file(path, media_type=media_type, declared_mime=None, limits=limits)
    out.mkdir(exist_ok=True)
    return sanitize(path, inspection, out, limits)


def rgb(image: Image.Image, x: int, y: int) -> tuple[int, int, int]:
    pixel = image.getpixel((x, y))
    assert isinstance(pixel, tuple)
    return (int(pixel[0]), int(pixel[1]), int(pixel[2]))


def test_a_jpeg_loses_its_exif_and_gps_and_stays_upright(tmp_path: Path) -> None:
    """A phone photo (640x480, orientation 6, GPS, camera model) is stored as a 480x640
    JPEG, turned as its orientation said, with no EXIF at all; its thumbnail fits 320 px."""
    photo = files.jpeg_with_gps(tmp_path / "photo.jpg", 640, 480, orientation=6)
    with Image.open(photo) as original:
        assert original.getexif().get_ifd(0x8825)  # the GPS IFD is really there
        corner = rgb(original.convert("RGB"), 0, 0)
    out = clean(photo, "image", tmp_path / "out")
    assert out.path != photo
    assert out.content_type == "image/jpeg"
    with Image.open(out.path) as stored:
        assert stored.format == "JPEG"
        assert stored.size == (480, 640)
        assert not stored.getexif()
        assert "exif" not in stored.info
        # Orientation 6 turns the picture clockwise: the original's top-left is top-right.
        moved = rgb(stored.convert("RGB"), 479, 0)
        assert sum(abs(a - b) for a, b in zip(moved, corner, strict=True)) < 30
    assert b"GPS" not in out.path.read_bytes()
    assert b"WA-Test-Phone" not in out.path.read_bytes()
    assert out.metadata.width == 480
    assert out.metadata.height == 640
    assert out.metadata.exif_removed
    assert not out.metadata.recompressed
    assert out.thumbnail is not None
    with Image.open(out.thumbnail) as thumb:
        assert thumb.format == "JPEG"
        assert max(thumb.size) == 320


def test_a_png_loses_its_text_chunks(tmp_path: Path) -> None:
    """A PNG is written anew without its tEXt comment, same size, still a PNG."""
    source = files.png(tmp_path / "a.png", 400, 300)
    out = clean(source, "image", tmp_path / "out")
    assert b"tEXt" in source.read_bytes()
    assert b"tEXt" not in out.path.read_bytes()
    with Image.open(out.path) as stored:
        assert (stored.format, stored.size) == ("PNG", (400, 300))
    assert (out.metadata.width, out.metadata.height, out.metadata.frames) == (400, 300, 1)


def test_a_large_image_is_recompressed_smaller(tmp_path: Path) -> None:
    """Over the longest side allowed, an image is scaled down and marked recompressed."""
    photo = files.jpeg_with_gps(tmp_path / "big.jpg", 1600, 1200, orientation=1)
    limits = MediaLimits(recompress_max_side=800)
    out = clean(photo, "image", tmp_path / "out", limits)
    assert out.metadata.recompressed
    assert (out.metadata.width, out.metadata.height) == (800, 600)
    assert out.path.stat().st_size < photo.stat().st_size
    off = clean(photo, "image", tmp_path / "off", MediaLimits(recompress_over_bytes=None))
    assert not off.metadata.recompressed
    assert off.metadata.width == 1600


@pytest.mark.parametrize("animated", [False, True])
def test_a_sticker_is_kept_as_it_is_with_its_frames_counted(tmp_path: Path, animated: bool) -> None:
    """A WebP sticker without EXIF is stored byte for byte; its size and frames are read
    (every frame decoded on the way) and it gets a thumbnail."""
    sticker = files.webp_sticker(tmp_path / "s.webp", animated=animated)
    out = clean(sticker, "sticker", tmp_path / "out")
    assert out.path == sticker
    assert (out.metadata.width, out.metadata.height) == (512, 512)
    assert out.metadata.frames == (4 if animated else 1)
    assert out.thumbnail is not None
    assert out.thumbnail.exists()


def test_a_sticker_with_exif_is_written_anew_without_it(tmp_path: Path) -> None:
    """EXIF in a WebP's chunk makes the sticker re-encoded, EXIF left out."""
    exif = Image.Exif()
    exif[0x0110] = "WA-Test-Phone"
    path = tmp_path / "tagged.webp"
    Image.new("RGB", (512, 512), (10, 200, 30)).save(path, "WEBP", exif=exif.tobytes())
    assert b"EXIF" in path.read_bytes()
    out = clean(path, "sticker", tmp_path / "out")
    assert out.path != path
    assert out.metadata.exif_removed
    assert b"WA-Test-Phone" not in out.path.read_bytes()


def test_a_voice_note_has_its_duration_and_codec(tmp_path: Path) -> None:
    """An espeak-ng voice note in OGG/Opus: duration about 1.5-3 s, opus, mono."""
    voice = files.ogg_opus_voice(tmp_path / "v.ogg")
    out = clean(voice, "audio", tmp_path / "out")
    meta = out.metadata
    assert out.path == voice
    assert out.content_type == "audio/ogg"
    assert meta.duration_s is not None
    assert 1.0 < meta.duration_s < 4.0
    assert (meta.audio_codec, meta.channels, meta.video_codec) == ("opus", 1, None)


@pytest.mark.parametrize(("generator", "codec"), [(files.mp3, "mp3"), (files.aac_m4a, "aac")])
def test_music_has_its_duration_codec_and_rate(tmp_path: Path, generator, codec: str) -> None:  # type: ignore[no-untyped-def]
    """A 2 s MP3 and AAC in MP4, with their sample rate."""
    song = generator(tmp_path / "song")
    meta = clean(song, "audio", tmp_path / "out").metadata
    assert meta.duration_s is not None
    assert abs(meta.duration_s - 2.0) < 0.1
    assert meta.audio_codec is not None
    assert meta.audio_codec.startswith(codec)
    assert meta.sample_rate == 44100


def test_a_video_has_duration_codecs_and_dimensions(tmp_path: Path) -> None:
    """A 2 s 320x240 H.264 + AAC MP4."""
    clip = files.mp4_video(tmp_path / "c.mp4")
    meta = clean(clip, "video", tmp_path / "out").metadata
    assert (meta.width, meta.height, meta.video_codec, meta.audio_codec) == (
        320,
        240,
        "h264",
        "aac",
    )
    assert meta.duration_s is not None
    assert abs(meta.duration_s - 2.0) < 0.1


def test_a_truncated_video_is_corrupt(tmp_path: Path) -> None:
    """The first 2 kB of an MP4 (its ftyp, the rest gone) decodes to nothing: `corrupt`."""
    clip = files.mp4_video(tmp_path / "c.mp4")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[:2048])
    with pytest.raises(MediaRejected) as caught:
        clean(cut, "video", tmp_path / "out")
    assert caught.value.reason == "corrupt"


def test_a_pdf_has_its_page_count(tmp_path: Path) -> None:
    """pypdf counts a 5-page PDF's pages; the file is stored as it came."""
    doc = files.pdf(tmp_path / "d.pdf", pages=5)
    out = clean(doc, "document", tmp_path / "out")
    assert (out.path, out.metadata.pages) == (doc, 5)


def test_a_broken_pdf_and_a_broken_jpeg_are_corrupt(tmp_path: Path) -> None:
    """A PDF signature with nothing behind it, and a JPEG whose data is cut off after its
    headers, are refused by their decoders."""
    bad_pdf = tmp_path / "bad.pdf"
    bad_pdf.write_bytes(b"%PDF-1.7\n" + b"garbage " * 100)
    with pytest.raises(MediaRejected, match="corrupt"):
        clean(bad_pdf, "document", tmp_path / "out")
    photo = files.jpeg_with_gps(tmp_path / "p.jpg", orientation=1).read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(photo[: photo.find(b"\xff\xda") + 20])
    with pytest.raises(MediaRejected, match="corrupt"):
        clean(cut, "image", tmp_path / "out")


def test_documents_without_a_describer_are_stored_as_they_came(tmp_path: Path) -> None:
    """A .docx or text file has no metadata to read; it is stored unchanged."""
    doc = files.docx(tmp_path / "a.docx")
    out = clean(doc, "document", tmp_path / "out")
    assert out.path == doc
    assert out.thumbnail is None
    assert out.metadata.model_dump(exclude_defaults=True) == {}
