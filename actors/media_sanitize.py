"""Sanitize and describe a checked file: what is stored, and what the event says of it.

Images are decoded and written anew by Pillow: EXIF (the GPS position, the phone's model)
and text chunks are left behind, the EXIF orientation is applied to the pixels first so
the picture still stands the right way up, and bytes appended after the image (a polyglot's
payload) are gone. Large images are re-encoded smaller; every image gets a JPEG thumbnail.
A WebP sticker is kept byte for byte unless it carries EXIF or XMP: re-encoding an
animation could take it over the sticker cap, and Pillow still decodes every frame of it.

Audio and video are described by PyAV: it bundles FFmpeg's demuxers and decoders in its
wheel, so the image needs no system ffmpeg, and one library covers every container Meta
sends (MP4, 3GPP, OGG, MP3, ADTS AAC, AMR) with durations, codecs and video dimensions.
mutagen would have been pure Python but knows neither AMR nor video streams. One frame is
decoded to prove the stream is what its header says (a file no decoder accepts is
`corrupt`). PDFs are counted by pypdf.

Everything here runs in a worker thread, bounded by pixel and frame limits here and by
the pipeline's wall-clock timeout around the call (MediaLimits.decode_timeout_s).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import pypdf
from PIL import Image, ImageOps, UnidentifiedImageError

from actors.media_checks import Inspection
from actors.media_limits import MediaLimits
from adapters.errors import MediaRejected
from models.media import MediaMetadata

_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
_PROBE = {"probesize": str(5 * 1024 * 1024), "analyzeduration": str(10_000_000)}


@dataclass(frozen=True, slots=True)
class Sanitized:
    """The file to store, its type and metadata, and its thumbnail (images only)."""

    path: Path  # the download itself when nothing needed changing
    content_type: str
    metadata: MediaMetadata
    thumbnail: Path | None = None


def _open_image(path: Path, mime: str, limits: MediaLimits) -> Image.Image:
    if limits.max_pixels > (Image.MAX_IMAGE_PIXELS or limits.max_pixels):
        raise ValueError("MediaLimits.max_pixels is over Pillow's MAX_IMAGE_PIXELS")
    try:
        image = Image.open(path, formats=[_FORMATS[mime]])
    except Image.DecompressionBombError as error:
        raise MediaRejected("pixel_bomb", str(error)) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise MediaRejected("corrupt", f"{mime}: {error}") from error
    if image.width * image.height > limits.max_pixels:
        image.close()
        raise MediaRejected(
            "pixel_bomb", f"{image.width}x{image.height} over {limits.max_pixels} pixels"
        )
    return image


def _thumbnail(image: Image.Image, dest: Path, limits: MediaLimits) -> Path:
    thumb = image.copy()
    thumb.thumbnail((limits.thumbnail_px, limits.thumbnail_px))
    if thumb.mode not in ("RGB", "L"):
        thumb = thumb.convert("RGBA")
        background = Image.new("RGB", thumb.size, (255, 255, 255))
        background.paste(thumb, mask=thumb.getchannel("A"))
        thumb = background
    thumb.save(dest, "JPEG", quality=80)
    return dest


def _photo(path: Path, inspection: Inspection, out_dir: Path, limits: MediaLimits) -> Sanitized:
    """JPEG or PNG: decode, apply the orientation, drop the metadata, write anew."""
    mime = inspection.mime_type
    with _open_image(path, mime, limits) as image:
        had_exif = bool(image.getexif()) or "exif" in image.info
        icc = image.info.get("icc_profile")
        try:
            upright = ImageOps.exif_transpose(image)
        except (OSError, SyntaxError, ValueError) as error:
            raise MediaRejected("corrupt", f"{mime}: {error}") from error
    side = max(upright.size)
    recompress = limits.recompress_over_bytes is not None and (
        inspection.size > limits.recompress_over_bytes or side > limits.recompress_max_side
    )
    if recompress and side > limits.recompress_max_side:
        upright.thumbnail((limits.recompress_max_side, limits.recompress_max_side))
    out = out_dir / f"{path.name}.clean"
    extra = {"icc_profile": icc} if icc else {}
    if mime == "image/jpeg":
        if upright.mode not in ("RGB", "L", "CMYK"):
            upright = upright.convert("RGB")
        quality = min(limits.jpeg_quality, 75) if recompress else limits.jpeg_quality
        upright.save(out, "JPEG", quality=quality, optimize=True, **extra)
    else:
        upright.save(out, "PNG", optimize=recompress, **extra)
    thumb = _thumbnail(upright, out_dir / f"{path.name}.thumb.jpg", limits)
    metadata = MediaMetadata(
        width=upright.width,
        height=upright.height,
        frames=1,
        exif_removed=had_exif,
        recompressed=recompress,
    )
    return Sanitized(out, mime, metadata, thumb)


def _sticker(path: Path, out_dir: Path, limits: MediaLimits) -> Sanitized:
    """WebP: every frame decoded (bounded by max_frames), re-written only if it has EXIF/XMP."""
    with _open_image(path, "image/webp", limits) as image:
        frames = int(getattr(image, "n_frames", 1))
        if frames > limits.max_frames:
            raise MediaRejected("pixel_bomb", f"{frames} frames, over {limits.max_frames}")
        tagged = bool(image.info.get("exif") or image.info.get("xmp"))
        try:
            for index in range(frames):
                image.seek(index)
                image.load()
            image.seek(0)
            first = image.convert("RGBA")
            out = path
            if tagged:
                out = out_dir / f"{path.name}.clean"
                image.save(out, "WEBP", save_all=frames > 1, lossless=False, quality=80)
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise MediaRejected("corrupt", f"image/webp: {error}") from error
        width, height = image.size
    thumb = _thumbnail(first, out_dir / f"{path.name}.thumb.jpg", limits)
    metadata = MediaMetadata(width=width, height=height, frames=frames, exif_removed=tagged)
    return Sanitized(out, "image/webp", metadata, thumb)


def _audio_video(path: Path, mime: str) -> Sanitized:
    """Duration, codecs, sample rate, channels, dimensions; one frame decoded."""
    try:
        with av.open(str(path), options=_PROBE) as container:
            video = container.streams.video[0] if container.streams.video else None
            audio = container.streams.audio[0] if container.streams.audio else None
            if video is None and audio is None:
                raise MediaRejected("corrupt", f"{mime} without an audio or video stream")
            duration = container.duration / av.time_base if container.duration else None
            metadata = MediaMetadata(
                width=video.codec_context.width if video is not None else None,
                height=video.codec_context.height if video is not None else None,
                duration_s=round(duration, 3) if duration is not None else None,
                video_codec=video.codec_context.name if video is not None else None,
                audio_codec=audio.codec_context.name if audio is not None else None,
                sample_rate=audio.codec_context.sample_rate if audio is not None else None,
                channels=audio.codec_context.channels if audio is not None else None,
                bitrate=container.bit_rate or None,
            )
            stream = video if video is not None else audio
            if next(iter(container.decode(stream)), None) is None:
                raise MediaRejected("corrupt", f"{mime}: no frame decodes")
    except av.FFmpegError as error:
        raise MediaRejected("corrupt", f"{mime}: {error}") from error
    return Sanitized(path, mime, metadata)


def _pdf(path: Path) -> Sanitized:
    try:
        reader = pypdf.PdfReader(path, strict=False)
        pages: int | None = None if reader.is_encrypted else len(reader.pages)
    except pypdf.errors.PyPdfError as error:
        raise MediaRejected("corrupt", f"application/pdf: {error}") from error
    return Sanitized(path, "application/pdf", MediaMetadata(pages=pages))


def sanitize(path: Path, inspection: Inspection, out_dir: Path, limits: MediaLimits) -> Sanitized:
    """The stored form of a checked file and its metadata; MediaRejected (corrupt,
    pixel_bomb) when its decoder refuses it. New files are written into `out_dir`."""
    mime = inspection.mime_type
    if mime in ("image/jpeg", "image/png"):
        return _photo(path, inspection, out_dir, limits)
    if mime == "image/webp":
        return _sticker(path, out_dir, limits)
    if mime.startswith(("audio/", "video/")):
        return _audio_video(path, mime)
    if mime == "application/pdf":
        return _pdf(path)
    return Sanitized(path, mime, MediaMetadata())
