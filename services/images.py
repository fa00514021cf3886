"""Pictures people attach (chat messages, the product studio's photo): untrusted bytes made into a clean image.

Only PNG, JPEG and WebP are accepted. Every check that costs nothing comes before any decoding: the byte
size, the file's own signature (a PDF renamed ``.png`` or an SVG is refused by its first bytes, and a file
whose content is not the format its name claims is refused too), then the pixel count from the header
alone. Only then does Pillow decode it, restricted to the one format the signature named. What is kept
is re-encoded from the pixels: EXIF (camera, GPS), XMP, ICC and text chunks are gone, the orientation is
applied, large pictures are downscaled to what vision models use, and a small thumbnail is made for the
conversation. Ollama receives JPEG or PNG only (some of its image decoders have no WebP).
"""

from __future__ import annotations

import base64
import io
import warnings
from dataclasses import dataclass
from pathlib import PurePath

from PIL import Image, ImageOps, UnidentifiedImageError

from services import format as fmt
from services.errors import InvalidInput

MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_UPLOAD_MB = MAX_IMAGE_BYTES // (1024 * 1024)
MAX_PIXELS = 40_000_000
MAX_SIDE = 1568  # long side sent to a model: what common vision encoders tile up to
THUMB_SIDE = 320
MAX_IMAGES_PER_MESSAGE = 4
JPEG_QUALITY = 88
ACCEPTED_EXTENSIONS: dict[str, str] = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
FILE_TYPES = ("png", "jpg", "jpeg", "webp")
FORMAT_NAMES = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP"}

# Pillow's own guard, at our limit: a picture over it raises before its pixels are allocated (2x) or warns
# (1x; turned into an error below). The explicit header check in ``clean_image`` comes first anyway.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


@dataclass(frozen=True)
class CleanImage:
    """A picture as it is stored and sent: re-encoded pixels, no metadata, bounded size."""

    name: str
    mime: str  # image/jpeg or image/png
    width: int
    height: int
    data: bytes
    thumbnail: bytes
    original_width: int
    original_height: int
    original_bytes: int

    @property
    def downscaled(self) -> bool:
        return (self.width, self.height) != (self.original_width, self.original_height)

    def base64(self) -> str:
        """Raw base64, as Ollama wants it (a ``data:`` prefix makes it fail with a 400)."""
        return base64.b64encode(self.data).decode("ascii")

    def describe(self) -> str:
        text = f"{self.width} × {self.height} px, {fmt.size(len(self.data))}"
        if self.downscaled:
            text += f" (downscaled from {self.original_width} × {self.original_height})"
        return text


def sniff(data: bytes) -> str:
    """What the first bytes say a file is (``PNG``, ``JPEG``, ``WEBP``, or a name for a refused kind).

    >>> sniff(b"\\x89PNG\\r\\n\\x1a\\n...."), sniff(b"%PDF-1.7"), sniff(b"  <svg xmlns=..."), sniff(b"hello")
    ('PNG', 'PDF', 'SVG', '')
    """
    head = data[:64]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head.startswith(b"%PDF"):
        return "PDF"
    if head.startswith(b"BM"):
        return "BMP"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "TIFF"
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif", b"ftyphevc"):
        return "HEIC/AVIF"
    text = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<svg") or (text.startswith((b"<?xml", b"<!doctype svg")) and b"<svg" in text):
        return "SVG"
    return ""


def header_size(data: bytes, kind: str) -> tuple[int, int] | None:
    """Width and height as the file's header declares them, read before any decoder runs.

    >>> header_size(b"\\x89PNG\\r\\n\\x1a\\n\\x00\\x00\\x00\\rIHDR\\x00\\x00'\\x10\\x00\\x00'\\x10", "PNG")
    (10000, 10000)
    """
    try:
        if kind == "PNG" and data[12:16] == b"IHDR":
            return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        if kind == "WEBP":
            chunk = data[12:16]
            if chunk == b"VP8X":
                return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
            if chunk == b"VP8L":
                bits = int.from_bytes(data[21:25], "little")
                return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
            if chunk == b"VP8 ":
                return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
        if kind == "JPEG":
            return _jpeg_size(data)
    except IndexError:
        return None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Walk the JPEG markers to the first start-of-frame (SOF0-SOF15 less DHT, JPG and DAC)."""
    index = 2
    while index + 9 < len(data):
        if data[index] != 0xFF:
            return None
        marker = data[index + 1]
        if marker == 0xFF:
            index += 1
            continue
        length = int.from_bytes(data[index + 2:index + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(data[index + 7:index + 9], "big"), int.from_bytes(data[index + 5:index + 7], "big")
        index += 2 + length
    return None


REFUSED_KINDS = {
    "PDF": "is a PDF document, not a picture",
    "SVG": "is an SVG drawing (vector, not a raster picture); export it as PNG first",
    "GIF": "is a GIF; pictures must be PNG, JPEG or WebP",
    "BMP": "is a BMP bitmap; pictures must be PNG, JPEG or WebP",
    "TIFF": "is a TIFF; pictures must be PNG, JPEG or WebP",
    "HEIC/AVIF": "is a HEIC/AVIF photo; export it as JPEG first",
}


def _claimed_format(name: str) -> str:
    suffix = PurePath(name).suffix.lower()
    claimed = ACCEPTED_EXTENSIONS.get(suffix)
    if claimed is None:
        shown = suffix or "no extension"
        raise InvalidInput(f"{_shown(name)} ({shown}) is not accepted: attach a .png, .jpg, .jpeg or .webp picture.")
    return claimed


def _shown(name: str) -> str:
    line = " ".join(str(name).split()) or "The file"
    return line if len(line) <= 60 else line[:59] + "…"


def clean_image(data: bytes, name: str) -> CleanImage:
    """Check, decode and re-encode one picture; ``InvalidInput`` says what is wrong with it."""
    shown = _shown(name)
    if len(data) > MAX_IMAGE_BYTES:
        raise InvalidInput(f"{shown} is {fmt.size(len(data))}; a picture may be at most {MAX_UPLOAD_MB} MB.")
    if not data:
        raise InvalidInput(f"{shown} is empty.")
    claimed = _claimed_format(name)
    actual = sniff(data)
    if actual in REFUSED_KINDS:
        raise InvalidInput(f"{shown} {REFUSED_KINDS[actual]}.")
    if not actual:
        raise InvalidInput(f"{shown} is not a PNG, JPEG or WebP picture (its content is something else).")
    if actual != claimed:
        raise InvalidInput(f"{shown} is named like a {FORMAT_NAMES[claimed]} but is really a {FORMAT_NAMES[actual]}: "
                           "rename it with the right extension and attach it again.")
    declared = header_size(data, actual)
    if declared is not None and declared[0] * declared[1] > MAX_PIXELS:
        _too_many_pixels(shown, *declared)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[actual])
            width, height = image.size  # from the header: nothing decoded yet
            if width * height > MAX_PIXELS:
                _too_many_pixels(shown, width, height)
            if actual == "JPEG":
                image.draft("RGB", (MAX_SIDE, MAX_SIDE))  # decode at a reduced scale: far less work and memory
            image.load()
            pixels = ImageOps.exif_transpose(image)  # applies the orientation; the copy carries no EXIF
    except InvalidInput:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidInput(f"{shown} declares more pixels than allowed ({MAX_PIXELS / 1e6:.0f} megapixels).") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = " ".join(str(exc).split())[:120] or exc.__class__.__name__
        raise InvalidInput(f"{shown} is damaged or incomplete and cannot be read ({reason}).") from None
    return _encode(pixels, shown, width, height, len(data))


def _too_many_pixels(shown: str, width: int, height: int) -> None:
    raise InvalidInput(f"{shown} is {width:,} × {height:,} pixels ({width * height / 1e6:.0f} megapixels); pictures "
                       f"may have at most {MAX_PIXELS / 1e6:.0f} megapixels. Downscale it first.")


def _encode(image: Image.Image, name: str, original_width: int, original_height: int, size: int) -> CleanImage:
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    image = image.convert("RGBA" if has_alpha else "RGB")
    if max(image.size) > MAX_SIDE:
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    data = _save(image, has_alpha)
    thumb = image.copy()
    thumb.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    return CleanImage(name=name, mime="image/png" if has_alpha else "image/jpeg", width=image.width,
                      height=image.height, data=data, thumbnail=_save(thumb, has_alpha),
                      original_width=original_width, original_height=original_height, original_bytes=size)


def _save(image: Image.Image, has_alpha: bool) -> bytes:
    """Pixels only: no ``exif=``, ``icc_profile=`` or ``pnginfo=`` is passed, so none is written."""
    out = io.BytesIO()
    if has_alpha:
        image.save(out, format="PNG")
    else:
        image.save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def clean_images(files: list[tuple[str, bytes]]) -> list[CleanImage]:
    """Several attachments at once, with the per-message count limit."""
    if len(files) > MAX_IMAGES_PER_MESSAGE:
        raise InvalidInput(f"{len(files)} pictures attached; a message may carry at most {MAX_IMAGES_PER_MESSAGE}.")
    return [clean_image(data, name) for name, data in files]


def require_vision(model: str, capabilities: tuple[str, ...] | list[str], pictures: int) -> None:
    """Refuse pictures for a model that cannot see them, before anything is sent."""
    if pictures and "vision" not in capabilities:
        noun = "a picture" if pictures == 1 else f"{pictures} pictures"
        raise InvalidInput(f"{model} cannot read pictures (it has no vision capability), so {noun} cannot be sent "
                           "to it. Choose a vision model, such as gemma3 or llava, or remove the pictures.")
