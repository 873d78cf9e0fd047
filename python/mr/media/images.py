"""Images from untrusted bytes to 8-bit RGB, with Pillow and nothing else.

The bytes a client sends never reach stb_image (llama.cpp's bundled decoder) or any other decoder
that mr does not pick: Pillow opens them with its PNG, JPEG, WebP and GIF plugins only, reads the
size from the header, and refuses an image over the pixel bound before a single row is decoded.
mtmd then receives the RGB (mtmd_bitmap_init), never a file to parse.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import struct

import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

from mr.media.refusal import refusal, size_text
from mr.media.types import Image, MediaLimits

FORMATS = ("PNG", "JPEG", "WEBP", "GIF")  # Pillow's names; GIF and animated WebP/PNG: first frame
ACCEPTED = "PNG, JPEG, WebP and GIF"
WHITE = (255, 255, 255)  # what transparent pixels are composited on

# Formats people send that Pillow could open but mr refuses: named in the refusal so the client
# knows what to convert. (Prefix, name.)
_REFUSED_MAGIC = (
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"8BPS", "PSD"),
    (b"qoif", "QOI"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"<svg", "SVG"),
    (b"<?xml", "XML (SVG?)"),
)
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def decode_image(data: bytes, field: str, limits: MediaLimits) -> Image:
    """Decode one image (PNG, JPEG, WebP, GIF's first frame) to RGB, upright per its EXIF
    orientation, transparent pixels on white. Every refusal is a 400 naming `field`."""
    if not data:
        raise refusal(field, "the image is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise refusal(field, f"the image is {size_text(len(data))}, more than the "
                             f"{size_text(limits.max_bytes)} allowed")
    with _open(data, field, limits) as img:
        try:
            img.load()  # the first frame only, for GIF and animated WebP/PNG
        except Exception as exc:  # any failure to decode untrusted bytes is the client's 400
            raise refusal(field, f"the {img.format} image is corrupt or truncated ({exc})") from exc
        _upright(img)
        rgb = _to_rgb(img)
    width, height = rgb.size
    pixels = rgb.tobytes()
    return Image(rgb=pixels, width=width, height=height, digest=image_digest(width, height, pixels))


def image_digest(width: int, height: int, rgb: bytes) -> str:
    """sha256 of the size and the pixels: the same picture in any encoding has the same digest."""
    digest = hashlib.sha256(struct.pack("<QQ", width, height))
    digest.update(rgb)
    return digest.hexdigest()


def pixel_bound(limits: MediaLimits) -> int:
    """The most pixels an image may have: the request bound, and never past Pillow's own
    decompression-bomb bound (past it Pillow only warns, so mr refuses there itself)."""
    pillow = PILImage.MAX_IMAGE_PIXELS
    return limits.max_pixels if pillow is None else min(limits.max_pixels, pillow)


def _open(data: bytes, field: str, limits: MediaLimits) -> PILImage.Image:
    """Pillow's image with its header read and nothing decoded, once its size is within bounds."""
    try:
        img = PILImage.open(io.BytesIO(data), formats=FORMATS)
    except PILImage.DecompressionBombError as exc:  # over twice Pillow's bound: it refuses itself
        raise refusal(field, f"the image is too large to decode ({exc}); at most "
                             f"{pixel_bound(limits)} pixels are allowed") from exc
    except UnidentifiedImageError as exc:
        raise refusal(field, _unaccepted(data)) from exc
    except Exception as exc:  # a header that a plugin accepted and then failed to parse
        raise refusal(field, f"the image is corrupt or truncated ({exc})") from exc
    width, height = img.size
    bound = pixel_bound(limits)
    if width <= 0 or height <= 0 or width * height > bound:
        img.close()
        raise refusal(field, f"the image is {width}x{height} pixels, more than the {bound} allowed")
    return img


def _unaccepted(data: bytes) -> str:
    """Why bytes that none of the accepted plugins recognised are refused."""
    head = data[:16]
    for magic, name in _REFUSED_MAGIC:
        if head.startswith(magic):
            return f"the image is {name}; only {ACCEPTED} images are accepted"
    if head[4:8] == b"ftyp":
        return f"the image is HEIF or AVIF; only {ACCEPTED} images are accepted"
    return f"the data is not a {ACCEPTED.replace(' and ', ' or ')} image"


def _upright(img: PILImage.Image) -> None:
    """Turn the image as its EXIF orientation says (phone photos are stored sideways), in place:
    a 64-megapixel image is not copied for it."""
    with contextlib.suppress(Exception):  # a malformed EXIF block: keep the pixels as stored
        ImageOps.exif_transpose(img, in_place=True)


def _to_rgb(img: PILImage.Image) -> PILImage.Image:
    """8-bit RGB of any mode the four formats produce; transparency composited on white."""
    if img.mode in _SIXTEEN_BIT:
        # Pillow's convert clips 16-bit grey to 255 instead of scaling it: keep the top 8 bits.
        grey = np.clip(np.asarray(img, dtype=np.int64) >> 8, 0, 255).astype(np.uint8)
        img = PILImage.fromarray(grey)
    if img.has_transparency_data:
        # pasted through its alpha onto white: the same blend as compositing, without an RGBA
        # canvas and its conversion (a 64-megapixel image would hold 512 MB more at its peak)
        rgba = img if img.mode == "RGBA" else img.convert("RGBA")
        canvas = PILImage.new("RGB", img.size, WHITE)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img if img.mode == "RGB" else img.convert("RGB")


__all__ = ["ACCEPTED", "FORMATS", "decode_image", "image_digest", "pixel_bound"]
