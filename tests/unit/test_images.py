"""Untrusted pictures: what is accepted, what is refused (and why), and that the checks come before decoding."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from services import images
from services.errors import InvalidInput
from services.images import MAX_SIDE, THUMB_SIDE, clean_image, clean_images, header_size, require_vision, sniff


def encode(size: tuple[int, int], fmt: str, *, mode: str = "RGB", **save: object) -> bytes:
    out = io.BytesIO()
    colour = (180, 20, 40, 128) if mode == "RGBA" else 1 if mode == "1" else (180, 20, 40)
    Image.new(mode, size, colour).save(out, fmt, **save)
    return out.getvalue()


@pytest.mark.parametrize(("name", "fmt", "mode", "mime"), [
    ("robe.png", "PNG", "RGB", "image/jpeg"), ("logo.png", "PNG", "RGBA", "image/png"),
    ("robe.jpg", "JPEG", "RGB", "image/jpeg"), ("robe.JPEG", "JPEG", "RGB", "image/jpeg"),
    ("robe.webp", "WEBP", "RGB", "image/jpeg"),
])
def test_png_jpeg_and_webp_are_accepted_as_jpeg_or_png(name: str, fmt: str, mode: str, mime: str) -> None:
    picture = clean_image(encode((640, 480), fmt, mode=mode), name)
    assert (picture.width, picture.height, picture.mime) == (640, 480, mime)
    assert Image.open(io.BytesIO(picture.data)).format == mime.split("/")[1].upper()
    assert not picture.downscaled and picture.base64().isascii() and not picture.base64().startswith("data:")


def test_exif_is_stripped_and_the_orientation_applied() -> None:
    exif = Image.Exif()
    exif[0x010F] = "Canon"  # Make
    exif[0x0112] = 6  # Orientation: rotate 90 degrees
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 24.0)}  # GPS
    picture = clean_image(encode((400, 300), "JPEG", exif=exif), "photo.jpg")
    decoded = Image.open(io.BytesIO(picture.data))
    assert decoded.size == (300, 400)
    assert not dict(decoded.getexif()) and "exif" not in decoded.info and "icc_profile" not in decoded.info


def test_large_pictures_are_downscaled_and_get_a_thumbnail() -> None:
    picture = clean_image(encode((6000, 4000), "JPEG"), "big.jpg")
    assert (picture.width, picture.height) == (MAX_SIDE, round(MAX_SIDE * 4000 / 6000))
    assert picture.downscaled and "downscaled from 6000 × 4000" in picture.describe()
    assert max(Image.open(io.BytesIO(picture.thumbnail)).size) == THUMB_SIDE


def test_a_10000_by_10000_png_is_refused_from_its_header_before_any_decoding(monkeypatch: pytest.MonkeyPatch
                                                                             ) -> None:
    data = encode((10_000, 10_000), "PNG", mode="1")
    assert header_size(data, "PNG") == (10_000, 10_000)

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("the decoder must not be reached")

    monkeypatch.setattr(images.Image, "open", no_decoding)
    with pytest.raises(InvalidInput, match=r"10,000 × 10,000 pixels \(100 megapixels\); pictures may have at most 40"):
        clean_image(data, "huge.png")


def test_the_header_pixel_count_is_read_for_jpeg_and_webp_too() -> None:
    jpeg = encode((9000, 9000), "JPEG", quality=10)
    assert header_size(jpeg, "JPEG") == (9000, 9000)
    with pytest.raises(InvalidInput, match="81 megapixels"):
        clean_image(jpeg, "big.jpg")
    for lossless in (False, True):  # VP8 and VP8L headers; sizes patched in (encoding 49 MP of WebP is slow)
        data = bytearray(encode((64, 48), "WEBP", lossless=lossless))
        assert header_size(bytes(data), "WEBP") == (64, 48)
        if lossless:
            data[21:25] = ((7000 - 1) | (7000 - 1) << 14).to_bytes(4, "little")
        else:
            data[26:30] = (7000).to_bytes(2, "little") + (7000).to_bytes(2, "little")
        assert header_size(bytes(data), "WEBP") == (7000, 7000)
        with pytest.raises(InvalidInput, match="49 megapixels"):
            clean_image(bytes(data), "big.webp")


def test_a_header_that_lies_is_still_caught_by_pillows_guard() -> None:
    data = bytearray(encode((64, 64), "PNG"))
    assert header_size(bytes(data), "PNG") == (64, 64)
    data[16:24] = (20_000).to_bytes(4, "big") + (20_000).to_bytes(4, "big")  # the IHDR now claims 400 MP
    with pytest.raises(InvalidInput, match="megapixels"):
        clean_image(bytes(data), "liar.png")


@pytest.mark.parametrize(("name", "data", "expected"), [
    ("cut.jpg", encode((800, 600), "JPEG")[:3_000], "damaged or incomplete"),
    ("cut.png", encode((800, 600), "PNG", compress_level=0)[:5_000], "damaged or incomplete"),
    ("invoice.png", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "is a PDF document, not a picture"),
    ("logo.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "(.svg) is not accepted"),
    ("logo.png", b"\xef\xbb\xbf<?xml version='1.0'?>\n<svg xmlns='http://www.w3.org/2000/svg'/>", "is an SVG drawing"),
    ("anim.png", encode((10, 10), "GIF"), "is a GIF"),
    ("photo.png", encode((10, 10), "JPEG"), "named like a PNG but is really a JPEG"),
    ("notes.txt", b"hello", "(.txt) is not accepted"),
    ("noise.png", b"\x00" * 100, "is not a PNG, JPEG or WebP picture"),
    ("empty.png", b"", "is empty"),
])
def test_files_that_are_not_the_picture_they_claim_are_refused(name: str, data: bytes, expected: str) -> None:
    with pytest.raises(InvalidInput, match=expected.replace("(", r"\(").replace(")", r"\)")):
        clean_image(data, name)


def test_the_byte_limit_is_checked_first() -> None:
    with pytest.raises(InvalidInput, match="a picture may be at most 20 MB"):
        clean_image(b"\x89PNG\r\n\x1a\n" + b"\x00" * (20 * 1024 * 1024), "big.png")


def test_sniffing_and_counts() -> None:
    assert [sniff(encode((4, 4), f)) for f in ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")] == [
        "PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"]
    with pytest.raises(InvalidInput, match="at most 4"):
        clean_images([(f"{i}.png", b"") for i in range(5)])
    require_vision("gemma3:4b", ("completion", "vision"), 2)
    require_vision("llama3.2:1b", ("completion",), 0)
    with pytest.raises(InvalidInput, match=r"llama3\.2:1b cannot read pictures"):
        require_vision("llama3.2:1b", ("completion",), 1)
