"""Image input: formats, conversions and every kind of bad input gets its typed error."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image as PILImage

from candor.errors import ImageTooLarge, InvalidImageFormat, InvalidParameter
from candor.face.imaging import (
    MAX_DECODED_PIXELS,
    MAX_IMAGE_BYTES,
    decode_image,
    load_image,
    read_image,
)


def encode(img: PILImage.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def gradient(w: int = 120, h: int = 90) -> PILImage.Image:
    x = np.linspace(0, 255, w, dtype=np.uint8)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.uint8)[:, None].repeat(w, 1)
    return PILImage.fromarray(np.stack([x, y, 255 - x], axis=2))


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_jpeg_and_png_decode_to_rgb():
    for fmt in ("JPEG", "PNG"):
        image = decode_image(encode(gradient(), fmt))
        assert image.format == fmt
        assert image.pixels.shape == (90, 120, 3) and image.pixels.dtype == np.uint8
        assert len(image.sha256) == 64


def test_exif_orientation_is_applied():
    exif = PILImage.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image = decode_image(encode(gradient(120, 90), "JPEG", exif=exif.tobytes()))
    assert (image.width, image.height) == (90, 120)


def test_grayscale_16bit_palette_and_alpha_become_rgb():
    gray = decode_image(encode(gradient().convert("L"), "PNG"))
    assert gray.pixels.shape == (90, 120, 3)
    deep = np.full((90, 120), 65535, dtype=np.uint16)
    deep[:, :60] = 256  # dark half: 256/65535 is nearly black, not clipped white
    deep_png = encode(PILImage.fromarray(deep), "PNG")
    image = decode_image(deep_png)
    assert image.pixels[0, 0, 0] <= 2 and image.pixels[0, -1, 0] == 255
    palette = decode_image(encode(gradient().convert("P"), "PNG"))
    assert palette.pixels.shape == (90, 120, 3)
    rgba = gradient().convert("RGBA")
    rgba.putalpha(0)  # fully transparent: composited onto white
    clear = decode_image(encode(rgba, "PNG"))
    assert (clear.pixels == 255).all()


@pytest.mark.parametrize("data, error, words", [
    (b"", InvalidParameter, "empty"),
    (b"hello, this is a text file\n" * 10, InvalidImageFormat, "not a JPEG or PNG"),
    (b"GIF89a" + b"\x00" * 200, InvalidImageFormat, "GIF"),
    (b"\xff\xd8\xff" + b"\x00" * (MAX_IMAGE_BYTES + 10), ImageTooLarge, "limit"),
])
def test_bad_bytes_get_typed_errors(data, error, words):
    with pytest.raises(error, match=words):
        decode_image(data)


def test_gif_file_refused():
    with pytest.raises(InvalidImageFormat, match="GIF"):
        decode_image(encode(gradient(), "GIF"))


def test_truncated_jpeg():
    data = encode(gradient(400, 300), "JPEG")
    with pytest.raises(InvalidImageFormat, match="truncated|corrupt"):
        decode_image(data[: len(data) // 2])


def test_tiny_png_is_refused_with_the_minimum():
    with pytest.raises(InvalidParameter, match="1x1.*80x80"):
        decode_image(encode(PILImage.new("RGB", (1, 1)), "PNG"))


def test_decompression_bomb_refused_from_the_header():
    """A 20000x20000 PNG header with almost no data behind it: refused before decoding."""
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + png_chunk(b"IEND", b""))
    with pytest.raises(ImageTooLarge, match="400000000 pixels"):
        decode_image(data)


def test_paths(tmp_path):
    good = tmp_path / "a.png"
    good.write_bytes(encode(gradient(), "PNG"))
    assert read_image(good).source == str(good)
    assert load_image(str(good)).width == 120
    with pytest.raises(InvalidParameter, match="no such file"):
        load_image(tmp_path / "missing.jpg")
    with pytest.raises(InvalidParameter, match="not a file"):
        load_image(tmp_path)
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8\xff" + b"\x00" * (6 * 1024 * 1024))
    with pytest.raises(ImageTooLarge):
        load_image(big)
    with pytest.raises(InvalidParameter, match="bytes or a file path"):
        load_image(12345)  # type: ignore[arg-type]


def test_shared_edge_cases(samples):
    alpha = load_image(samples / "edge" / "32bit.png")
    assert alpha.pixels.shape[2] == 3


def test_header_over_the_cap_refused_with_its_size():
    header = struct.pack(">IIBBBBB", 9000, 7000, 8, 2, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + png_chunk(b"IEND", b""))
    with pytest.raises(ImageTooLarge, match="9000x7000"):
        decode_image(data)


def test_png_out_of_proportion_to_its_bytes_is_refused_before_decoding():
    """A few KB of PNG declaring 7000x7000 decoded to 49 MP (~8 s, ~800 MB) before."""
    header = struct.pack(">IIBBBBB", 7000, 7000, 8, 2, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + png_chunk(b"IEND", b""))
    assert len(data) < 48 * 1024
    with pytest.raises(ImageTooLarge, match="7000x7000.*12 MP"):
        decode_image(data)


def test_large_jpeg_is_decoded_reduced():
    data = encode(PILImage.new("RGB", (6000, 4000), (90, 120, 150)), "JPEG", quality=40)
    image = decode_image(data)
    assert (image.width, image.height) == (3000, 2000)  # libjpeg's 1/2 scale, while decoding
    assert image.width * image.height <= MAX_DECODED_PIXELS
    small = decode_image(encode(gradient(4000, 3000), "JPEG"))
    assert (small.width, small.height) == (4000, 3000)  # at the cap: decoded whole
