"""Checking uploaded bytes: type by content, decodability, thumbnails."""

import io
import re
import struct
import unicodedata
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath

from PIL import Image, ImageOps
from zlib_ng import zlib_ng

from ..errors import ApiError

SIGNATURES = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"BM", "bmp"),
)
EXTENSIONS = {"jpeg": "jpg", "png": "png", "tiff": "tif", "bmp": "bmp"}
MIME_TYPES = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "tiff": "image/tiff",
    "bmp": "image/bmp",
}
PIL_FORMATS = {
    "JPEG": "jpeg",
    "MPO": "jpeg",
    "PNG": "png",
    "TIFF": "tiff",
    "BMP": "bmp",
    "DIB": "bmp",
}
SUPPORTED = "JPEG, PNG, TIFF or BMP"
# Stored as `<img id>_<stem>.<ext>`: well below the usual 255-byte file name limit.
MAX_STEM_BYTES = 160

# check_image() enforces its own, configurable pixel limit on the header,
# thread-safely; Pillow's global check would only warn below twice its limit.
Image.MAX_IMAGE_PIXELS = None


@dataclass(frozen=True)
class CheckedImage:
    format: str
    width: int
    height: int
    thumbnail: bytes

    @property
    def extension(self):
        return EXTENSIONS[self.format]


class InvalidImage(ApiError):
    status = 400
    code = "INVALID_IMAGE"


def sniff_format(data):
    for signature, name in SIGNATURES:
        if data.startswith(signature):
            return name
    return None


def check_image(data, *, max_pixels, thumbnail_size):
    """Decode the whole image (catching truncation and bombs) and make a thumbnail."""
    if not data:
        raise InvalidImage.of("EMPTY_FILE")
    fmt = sniff_format(data)
    if fmt is None:
        raise InvalidImage.of(
            "UNSUPPORTED_FORMAT",
            supported=SUPPORTED,
        )
    try:
        with Image.open(io.BytesIO(data)) as image:
            if PIL_FORMATS.get(image.format) != fmt:
                raise OSError(f"content decodes as {image.format}, not {fmt}")
            width, height = image.size
            # Checked on the header, before decoding: a bomb never gets decompressed.
            if width * height > max_pixels:
                raise InvalidImage.of(
                    "IMAGE_TOO_MANY_PIXELS",
                    width=width,
                    height=height,
                    limit=max_pixels,
                )
            if fmt == "jpeg":
                # Decode at the smallest DCT scale still above the thumbnail (1/4 for a
                # 1792 px input): every coefficient is still read, so truncation and
                # corruption are refused exactly as by a full decode, at a third the cost.
                image.draft(None, (thumbnail_size, thumbnail_size))
            image.load()
            thumbnail = make_thumbnail(image, thumbnail_size)
        if fmt == "png":
            # Pillow decodes a PNG cut off after its pixel data (no IEND chunk);
            # verify() walks every chunk up to IEND, checking CRCs, and refuses it.
            with Image.open(io.BytesIO(data)) as image:
                image.verify()
    except InvalidImage:
        raise
    except Exception as exc:  # Pillow raises many types for corrupt data
        raise InvalidImage.of(
            "UNDECODABLE_IMAGE",
            format=fmt.upper(),
            reason=exc,
        ) from None
    return CheckedImage(format=fmt, width=width, height=height, thumbnail=thumbnail)


def make_thumbnail(image, size):
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = image.point(lambda value: value * (1 / 256)).convert("L")
    elif image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    thumbnail = ImageOps.contain(image, (size, size))
    buffer = io.BytesIO()
    thumbnail.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def display_name(filename):
    """The name as the user gave it, minus any directory part and control characters."""
    name = unicodedata.normalize("NFC", filename or "")
    name = PureWindowsPath(PurePosixPath(name.replace("\x00", "")).name).name
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    return name[:255]


def disk_stem(filename):
    """A name stem safe on any filesystem: letters (CJK included), digits, `._-`;
    at most 80 characters and 160 UTF-8 bytes (file names are limited in bytes)."""
    stem = display_name(filename).rsplit(".", 1)[0]
    stem = re.sub(r"[^\w.\-]+", "_", stem).strip("._")[:80]
    stem = stem.encode("utf-8")[:MAX_STEM_BYTES].decode("utf-8", "ignore").strip("._")
    return stem or "image"


def disk_name(filename, extension):
    return f"{disk_stem(filename)}.{extension}"


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Bits per pixel sample count for each PNG colour type, and the bit depths it allows.
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
# Adam7 passes: (x start, y start, x step, y step).
ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
# The IDAT data is inflated in pieces of about INFLATE_INPUT compressed bytes (an
# encoder's IDAT chunks are often 8 KiB: one call each would take and give back the GIL
# hundreds of times per image) and at most INFLATE_CHUNK inflated bytes per call, so
# memory stays bounded whatever the image's size.
INFLATE_INPUT = 1 << 18
INFLATE_CHUNK = 1 << 20


def png_data_size(width, height, depth, colour, interlace):
    """Bytes the IDAT stream must inflate to: each row is a filter byte plus its pixels."""
    bits = depth * PNG_CHANNELS[colour]
    if not interlace:
        return height * (1 + (width * bits + 7) // 8)
    total = 0
    for x0, y0, dx, dy in ADAM7:
        cols = (width - x0 + dx - 1) // dx if width > x0 else 0
        rows = (height - y0 + dy - 1) // dy if height > y0 else 0
        if cols and rows:
            total += rows * (1 + (cols * bits + 7) // 8)
    return total


def png_size(data):
    """Check a PNG's structure without decoding pixels; returns (width, height).

    Walks every chunk (CRCs checked), reads IHDR, inflates the IDAT data in bounded
    pieces (zlib-ng: the zlib format, its Adler-32 checked, ~2x the speed of the
    standard zlib) and requires exactly the size IHDR implies, and IEND. Raises
    ValueError on anything else. Bytes after the end of the zlib stream are ignored,
    as libpng and Pillow do."""
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG")
    view = memoryview(data)
    pos, header, idat, ended = 8, None, None, False
    while pos + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > len(data):
            raise ValueError("chunk runs past the end")
        (crc,) = struct.unpack_from(">I", data, end - 4)
        if zlib_ng.crc32(view[pos + 4 : pos + 8 + length]) != crc:
            raise ValueError(f"bad CRC in {kind!r}")
        body = view[pos + 8 : pos + 8 + length]
        if header is None:
            if kind != b"IHDR" or length != 13:
                raise ValueError("IHDR must come first")
            header = struct.unpack(">IIBBBBB", body)
            width, height, depth, colour, method, filt, interlace = header
            if not width or not height or depth not in PNG_DEPTHS.get(colour, ()):
                raise ValueError("bad IHDR")
            if method or filt or interlace not in (0, 1):
                raise ValueError("bad IHDR")
            idat = InflatedSize(png_data_size(width, height, depth, colour, interlace))
        elif kind == b"IDAT":
            idat.add(body)
        elif kind == b"IEND":
            ended = True
            break
        pos = end
    if header is None or not ended:
        raise ValueError("no IEND chunk (truncated)")
    idat.finish()
    return header[0], header[1]


class InflatedSize:
    """Inflates a zlib stream fed in pieces, counting its bytes without keeping them.

    `finish()` raises ValueError unless the stream ended (its Adler-32 checked) and
    inflated to exactly `expected` bytes; more than `expected` is refused as soon as
    it is seen. Bytes after the stream's end are ignored."""

    def __init__(self, expected):
        self.expected = expected
        self.produced = 0
        self._inflater = zlib_ng.decompressobj()
        self._pending = []
        self._pending_size = 0

    def add(self, piece):
        self._pending.append(piece)
        self._pending_size += len(piece)
        if self._pending_size >= INFLATE_INPUT:
            self._inflate()

    def finish(self):
        self._inflate()
        try:
            self.produced += len(self._inflater.flush())
        except zlib_ng.error as exc:
            raise ValueError(f"image data does not inflate: {exc}") from None
        if not self._inflater.eof:
            raise ValueError("image data ends before its zlib stream does (truncated)")
        if self.produced != self.expected:
            raise ValueError(f"image data inflates to {self.produced} bytes, not {self.expected}")

    def _inflate(self):
        pieces, self._pending, self._pending_size = self._pending, [], 0
        if not pieces:
            return
        pending = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        try:
            while pending:
                self.produced += len(self._inflater.decompress(pending, INFLATE_CHUNK))
                if self.produced > self.expected:
                    raise ValueError("image data inflates to more than IHDR says")
                pending = self._inflater.unconsumed_tail
        except zlib_ng.error as exc:
            raise ValueError(f"image data does not inflate: {exc}") from None
