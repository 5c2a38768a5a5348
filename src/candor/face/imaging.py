"""Decode and validate input images: JPEG and PNG (and WebP, which Rekognition refuses but
phones and browsers produce), from bytes or a path, within Rekognition's limits.

Everything that is not a usable photo is refused here with a typed error a person can act on,
before any model sees it. Pixel counts are read from the header, before anything is decoded:
over :data:`MAX_PIXELS` an image is refused; over :data:`MAX_DECODED_PIXELS` a JPEG is decoded
reduced (libjpeg scales by 1/2, 1/4 or 1/8 while decoding, at a fraction of the cost) and a PNG
or WebP, which cannot be decoded reduced, is refused. So a decompression bomb (a small file
that claims a huge image) costs neither seconds nor hundreds of megabytes, and no accepted
image decodes to more than 12 MP (faces are found at 1280 pixels anyway).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

from candor.errors import ImageTooLarge, InvalidImageFormat, InvalidParameter

#: Rekognition's limit on image bytes sent in a request
MAX_IMAGE_BYTES = 5 * 1024 * 1024
#: Rekognition's limit on images read from S3
MAX_S3_IMAGE_BYTES = 15 * 1024 * 1024
#: smallest width and height Rekognition accepts
MIN_SIDE = 80
#: cap on decoded pixels (about 8000 x 6000): a 5 MB JPEG can honestly hold 40 MP, not more
MAX_PIXELS = 50_000_000
#: most pixels an image is decoded to (a 12 MP phone photo): about 36 MB of RGB and well under
#: a second to decode; larger JPEGs are decoded reduced, larger PNG and WebP refused
MAX_DECODED_PIXELS = 12_000_000
#: most scans a JPEG may have (a progressive one from an encoder has about 10; each scan
#: costs a pass over every block, so thousands are a CPU bomb in a few kilobytes)
MAX_JPEG_SCANS = 100
#: most segments an image may have: JPEG markers and fill bytes before the first scan, PNG
#: chunks (encoders write tens; a 15 MB PNG in 8 KB IDAT chunks, about 2,000)
MAX_SEGMENTS = 10_000

SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP")

_SIGNATURES = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG\r\n\x1a\n": "PNG",
}
_OTHER_FORMATS = {
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"%PDF": "PDF",
}
_WEBP = (b"RIFF", b"WEBP")
_NOT_FF = re.compile(rb"[^\xff]")


@dataclass(frozen=True)
class Image:
    """A decoded photo: RGB uint8 pixels (H, W, 3), upright, plus facts about its source."""

    pixels: np.ndarray
    format: str
    sha256: str
    source: str = "<bytes>"

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


def load_image(source: Image | bytes | bytearray | memoryview | str | os.PathLike,
               max_bytes: int = MAX_IMAGE_BYTES) -> Image:
    """An :class:`Image` from bytes, a path, or an already loaded Image (returned as is)."""
    if isinstance(source, Image):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_image(bytes(source), max_bytes=max_bytes)
    if isinstance(source, (str, os.PathLike)):
        return read_image(source, max_bytes=max_bytes)
    raise InvalidParameter(
        f"an image must be bytes or a file path, not {type(source).__name__}")


def read_image(path: str | os.PathLike, max_bytes: int = MAX_IMAGE_BYTES) -> Image:
    """Read and decode the image file at ``path``; its size is checked before it is read."""
    return decode_image(read_photo(path, max_bytes), max_bytes=max_bytes, source=str(path))


def read_photo(path: str | os.PathLike, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """The bytes of the photo file at ``path``, checked before they are read: a regular file
    (not a folder, a FIFO that would block or a device such as /dev/zero that never ends), not
    empty, at most ``max_bytes``; each refusal a typed error naming the file."""
    p = Path(path)
    if not p.exists():
        raise InvalidParameter(f"{p}: no such file")
    if not p.is_file():
        raise InvalidParameter(f"{p}: not a file")
    size = p.stat().st_size
    if size > max_bytes:
        raise ImageTooLarge(f"{p}: {_mb(size)} is over the {_mb(max_bytes)} limit; "
                            "resize or recompress the photo")
    try:
        with open(p, "rb") as fh:
            data = fh.read(max_bytes + 1)  # bounded even if the file grows meanwhile
    except OSError as exc:
        raise InvalidParameter(f"{p}: cannot read the file: {exc.strerror or exc}") from None
    if not data:
        raise InvalidParameter(f"{p}: the image is empty (0 bytes)")
    return data


def decode_image(data: bytes, max_bytes: int = MAX_IMAGE_BYTES, source: str = "<bytes>") -> Image:
    """Validate and decode JPEG/PNG bytes into an upright RGB :class:`Image`."""
    where = f"{source}: " if source != "<bytes>" else ""
    if not data:
        raise InvalidParameter(f"{where}the image is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageTooLarge(f"{where}{_mb(len(data))} of image bytes is over the "
                            f"{_mb(max_bytes)} limit; resize or recompress the photo")
    fmt = sniff_format(data)
    if fmt is None:
        raise InvalidImageFormat(f"{where}not a JPEG or PNG image (unrecognised content)")
    if fmt not in SUPPORTED_FORMATS:
        raise InvalidImageFormat(f"{where}{fmt} images are not supported; use JPEG or PNG")
    check_structure(data, fmt, where)

    try:
        # Pillow refuses over twice our cap while parsing the header; between the cap and
        # that, our own check below refuses before anything is decoded
        pil = PILImage.open(io.BytesIO(data), formats=[fmt])
        width, height = pil.size  # from the header: nothing decoded yet
        check_dimensions(width, height, where)
        reduce_on_decode(pil, fmt, where)
        pil.load()
    except (ImageTooLarge, InvalidParameter):
        raise
    except PILImage.DecompressionBombError as exc:
        raise ImageTooLarge(f"{where}image has too many pixels: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidImageFormat(f"{where}corrupt or truncated {fmt} image ({exc})") from None

    ImageOps.exif_transpose(pil, in_place=True)  # in place: no second copy of the pixels
    pixels = to_rgb(pil)
    return Image(pixels=pixels, format=fmt, sha256=hashlib.sha256(data).hexdigest(), source=source)


def sniff_format(data: bytes) -> str | None:
    """The format named by the file's magic bytes, or None."""
    for table in (_SIGNATURES, _OTHER_FORMATS):
        for magic, name in table.items():
            if data.startswith(magic):
                return name
    if data[:4] == _WEBP[0] and data[8:12] == _WEBP[1]:
        return "WEBP"
    return None


def check_dimensions(width: int, height: int, where: str = "") -> None:
    """Refuse images smaller than 80x80 or larger than the decoded-pixel cap."""
    if width < MIN_SIDE or height < MIN_SIDE:
        raise InvalidParameter(f"{where}image is {width}x{height} pixels; the minimum is "
                               f"{MIN_SIDE}x{MIN_SIDE}")
    if width * height > MAX_PIXELS:
        raise ImageTooLarge(f"{where}image is {width}x{height} pixels "
                            f"({width * height / 1e6:.0f} MP); the limit is {MAX_PIXELS / 1e6:.0f} MP")


def check_structure(data: bytes, fmt: str, where: str = "") -> None:
    """Refuse, before Pillow reads it, a JPEG of more than :data:`MAX_JPEG_SCANS` scans
    (libjpeg decodes every block once per scan: a small file repeating a scan thousands of
    times costs minutes of CPU) or an image of more than :data:`MAX_SEGMENTS` segments
    (Pillow reads each JPEG marker or fill byte before the first scan, and each PNG chunk, with
    a few lines of Python: 5 MB of empty ones cost seconds). Encoders write about 10 scans
    and tens of segments. Entropy-coded data stuffs every 0xFF byte, so each ``FF DA`` is a
    start-of-scan marker."""
    if fmt == "JPEG":
        scans = data.count(b"\xff\xda")
        if scans > MAX_JPEG_SCANS:
            raise InvalidImageFormat(f"{where}JPEG image has {scans} scans; candor decodes "
                                     f"JPEGs of at most {MAX_JPEG_SCANS} (encoders write about 10)")
        segments = _jpeg_header_segments(data)
    elif fmt == "PNG":
        segments = _png_chunks(data)
    else:
        return
    if segments > MAX_SEGMENTS:
        raise InvalidImageFormat(f"{where}{fmt} image has more than {MAX_SEGMENTS} markers or "
                                 "chunks; encoders write tens")


def _jpeg_header_segments(data: bytes) -> int:
    """Markers and fill bytes before the first scan, counted to just past the limit."""
    i, n = 2, 0
    while n <= MAX_SEGMENTS and i < len(data) and data[i] == 0xFF:
        found = _NOT_FF.search(data, i + 1)
        if found is None:
            break
        j = found.start()  # the marker byte, after any fill bytes
        n += j - i
        if data[j] == 0xDA:
            break
        if data[j] == 0x01 or 0xD0 <= data[j] <= 0xD8:  # markers without a length
            i = j + 1
        else:
            i = j + 1 + int.from_bytes(data[j + 1:j + 3], "big")
    return n


def _png_chunks(data: bytes) -> int:
    """PNG chunks, counted to just past the limit."""
    i, n = 8, 0
    while n <= MAX_SEGMENTS and i + 8 <= len(data):
        n += 1
        if data[i + 4:i + 8] == b"IEND":
            break
        i += 12 + int.from_bytes(data[i:i + 4], "big")
    return n


def reduce_on_decode(pil: PILImage.Image, fmt: str, where: str = "") -> None:
    """Keep the decoded image under :data:`MAX_DECODED_PIXELS`: a JPEG is asked to decode at
    the smallest power-of-two reduction that fits; a PNG or WebP over the cap is refused."""
    width, height = pil.size
    if width * height <= MAX_DECODED_PIXELS:
        return
    if fmt != "JPEG":
        raise ImageTooLarge(
            f"{where}{fmt} image is {width}x{height} pixels; {fmt} images are limited to "
            f"{MAX_DECODED_PIXELS / 1e6:.0f} MP (send a JPEG, or resize the image)")
    scale = 2
    while scale < 8 and (width / scale) * (height / scale) > MAX_DECODED_PIXELS:
        scale *= 2
    pil.draft("RGB", (-(-width // scale), -(-height // scale)))


def to_rgb(pil: PILImage.Image) -> np.ndarray:
    """RGB uint8 pixels from any PIL mode: 16-bit scaled down, palettes expanded, alpha
    composited onto white (transparent pixels carry no face, and black would add edges)."""
    mode = pil.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(pil, dtype=np.float64)
        top = 65535.0 if mode != "F" and arr.max(initial=0) > 255 else 255.0
        gray = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode == "P" and "transparency" in pil.info:
        pil = pil.convert("RGBA")
    if mode in ("RGBA", "LA", "PA") or pil.mode == "RGBA":
        rgba = pil.convert("RGBA")
        background = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        pil = PILImage.alpha_composite(background, rgba)
    if pil.mode != "RGB":
        pil = pil.convert("RGB")
    return np.ascontiguousarray(np.asarray(pil, dtype=np.uint8))


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


# Pillow's own bomb guard, set to our cap so both agree on what "too many pixels" means
PILImage.MAX_IMAGE_PIXELS = MAX_PIXELS


def crop_jpeg(pixels: np.ndarray | None, box: dict | None, size: int = 160) -> bytes | None:
    """A JPEG of the face ``box`` (Rekognition's ratios) in ``pixels``, with a margin,
    scaled so its longest side is at most ``size``."""
    if pixels is None or not isinstance(box, dict):
        return None
    h, w = pixels.shape[:2]
    left, top = float(box.get("Left", 0)) * w, float(box.get("Top", 0)) * h
    bw, bh = float(box.get("Width", 0)) * w, float(box.get("Height", 0)) * h
    m = 0.2
    x0, y0 = max(0, int(left - m * bw)), max(0, int(top - m * bh))
    x1, y1 = min(w, int(left + bw * (1 + m))), min(h, int(top + bh * (1 + m)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    pil = PILImage.fromarray(pixels[y0:y1, x0:x1])
    pil.thumbnail((size, size))
    out = io.BytesIO()
    pil.save(out, format="JPEG", quality=80)
    return out.getvalue()
