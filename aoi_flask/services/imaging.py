"""Checking uploaded bytes: type by content, decodability, thumbnails."""

import io
import re
import unicodedata
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath

from PIL import Image, ImageOps

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
        raise InvalidImage(
            "The file is empty (0 bytes). Choose a non-empty image file.", code="EMPTY_FILE"
        )
    fmt = sniff_format(data)
    if fmt is None:
        raise InvalidImage(
            f"The file is not a {SUPPORTED} image (checked by its content, not its name). "
            "Export the image in one of these formats and upload it again.",
            code="UNSUPPORTED_FORMAT",
        )
    try:
        with Image.open(io.BytesIO(data)) as image:
            if PIL_FORMATS.get(image.format) != fmt:
                raise OSError(f"content decodes as {image.format}, not {fmt}")
            width, height = image.size
            # Checked on the header, before decoding: a bomb never gets decompressed.
            if width * height > max_pixels:
                raise InvalidImage(
                    f"The image has {width}x{height} pixels, more than the limit of "
                    f"{max_pixels:,}; it may be a decompression bomb. Upload the image "
                    "at its normal resolution.",
                    code="IMAGE_TOO_MANY_PIXELS",
                )
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
        raise InvalidImage(
            f"The {fmt.upper()} file could not be decoded ({exc}). It is corrupt or "
            "truncated; upload the original file again.",
            code="UNDECODABLE_IMAGE",
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
