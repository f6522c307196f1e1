"""Small helpers shared by the test modules."""

import io
import re
import struct
import zlib
from pathlib import Path

from PIL import Image
from werkzeug.utils import secure_filename


def png_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def image_bytes(fmt="PNG", size=(64, 48), mode="L", color=128):
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, fmt)
    return buffer.getvalue()


def stored_files(root):
    """Every file under the storage root, relative (hidden temp files included)."""
    root = Path(root)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def upload(client, data, name="segformer_input.jpeg", **query):
    return client.post(
        "/upload",
        data={"image": (io.BytesIO(data), name)},
        query_string=query,
        content_type="multipart/form-data",
    )


def upload_batch(client, files, **query):
    """files: list of (bytes, name)."""
    return client.post(
        "/upload/batch",
        data={"images": [(io.BytesIO(data), name) for data, name in files]},
        query_string=query,
        content_type="multipart/form-data",
    )


SENT_NAME = re.compile(rb'name="image"; filename="([^"]*)"')


def sent_filename(request):
    """The file name the agent sent in its multipart model call."""
    match = SENT_NAME.search(request.body or b"")
    return match.group(1).decode() if match else None


def echo(answer):
    """A requests-mock json callback: `answer` with the name sent echoed, as the
    real service does (secure_filename of the uploaded name)."""

    def reply(request, context):
        body = {**answer, "filename": secure_filename(sent_filename(request) or "")}
        analysis = answer.get("analysis_results")
        size = sent_size(request)
        if isinstance(analysis, dict) and isinstance(analysis.get("image_shape"), dict) and size:
            shape = {"height": size[1], "width": size[0]}
            body["analysis_results"] = {**analysis, "image_shape": shape}
        return body

    return reply


def sent_size(request):
    """(width, height) of the image in the agent's model call, or None."""
    raw = request.body or b""
    start = raw.find(b"\r\n\r\n")
    end = raw.rfind(b"\r\n--")
    try:
        with Image.open(io.BytesIO(raw[start + 4 : end])) as image:
            return image.size
    except Exception:
        return None


def padded_png(total):
    """A valid 64x48 PNG of exactly `total` bytes (a private ancillary chunk pads it)."""
    base = image_bytes("PNG")
    pad = total - len(base) - 12
    chunk = b"paDd" + b"\0" * pad
    padding = struct.pack(">I", pad) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return base[:-12] + padding + base[-12:]  # before the IEND chunk
